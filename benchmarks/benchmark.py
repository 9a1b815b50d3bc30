"""Benchmark: the package's default fit against the Bayesian peers a user would pick (brms,
non-centred Stan), the tutorial's centred Stan program, lme4's maximum-likelihood fit and the
package's other PyMC parametrizations and samplers.

Every configuration runs in its own subprocess on the same simulated data (one data set per
size, seed 2024), so that its peak memory is its own. For each run the script records compile
time (stating whether the compiled program came from a cache), sampling time (tuning
included), divergences, the minimum bulk ESS over the scalars ``beta[intercept], beta[x],
sigma, sigs[intercept|group_id], sigs[x|group_id]`` and the correlation
``R[intercept|group_id, x|group_id]`` (the package's names; Stan's ``alpha_0, beta_0,
sigma_g, sigs, R`` are mapped to them by ``lmm_pymc.stan.names``, brms's ``b_Intercept,
b_x, sigma, sd_group_id__Intercept, sd_group_id__x, cor_group_id__Intercept__x`` here), that
ESS per second of sampling and of end-to-end time (compile + sampling), leapfrog steps per
iteration, peak RSS, the ratio of ESS/s to the tutorial's Stan program on the same size and
the ratio to the best Bayesian peer: the faster of brms and non-centred Stan on that size,
taken separately for ESS/s of sampling and ESS/s end-to-end. It writes ``<out>.json`` and
``<out>.md``.

The peers:

* brms (R; ``benchmarks/peers_brms.R``): ``y ~ 1 + x + (1 + x | group_id)`` with the
  tutorial's priors (``lmm_pymc.Priors.tutorial()``) on brms's own non-centred program,
  compiled by rstan (cached between runs) and sampled by ``rstan::sampling``;
* non-centred Stan through PyStan: ``stan_reference/lmm_cholesky.stan``;
* the tutorial's centred Stan program ``stan_reference/lmm_lkj_corr.stan`` (the reference
  of the ``x Stan`` ratios);
* lme4's ``lmer(..., REML = FALSE)``: time only, the frequentist floor.

brms and lme4 need R (``bash benchmarks/setup_peers.sh`` installs it from Debian's
packages); without ``Rscript``, brms or lme4 the benchmark runs the rest and its report
names the peers it skipped and why.

Full run (the issue's protocol; about an hour on 2 cores)::

    python benchmarks/benchmark.py

Reduced check (minutes; brms's first compile adds 1-7 minutes once)::

    python benchmarks/benchmark.py --quick

Sizes: small = the tutorial's 3 groups x 10 rows, medium = 100 x 100, large = 1000 x 1000
(10^6 rows), each the tutorial's design (``lmm_pymc.tutorial.design_frame``) and values,
simulated by ``lmm_pymc.simulate(data=..., seed=2024)``. The slow baselines (the Stan
programs, brms and PyMC/nutpie on the latent models) run ``--slow-draws`` draws (= tuning
steps) per size; ESS per second is comparable across draw counts, as ESS grows about
linearly with the number of draws, and end-to-end times are also given scaled to the full
4 x (1000 + 1000) iterations. Where a slow baseline gets 0 draws it is not run; the Stan
programs and brms are then replaced by a bound from the measured cost of one gradient of
their log density on that data: at least one gradient per iteration and an ESS of at most
the number of draws give an upper bound on their ESS/s, so the ratios to them are lower
bounds.

This file is the entry point: the command line, the plan, the runs in subprocesses (each
child runs one configuration: :func:`run_one`) and the two files. The configurations and
their runners are in ``benchmarks/peers/`` (one module per peer), the ratios and the
Markdown table in ``benchmarks/benchmark_report.py``, and the helpers it shares with
``benchmarks/scale.py`` in ``benchmarks/common.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run by its path: the repository's root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import peers  # noqa: E402
from benchmarks.benchmark_report import add_ratios, markdown  # noqa: E402
from benchmarks.common import fmt_number, machine, peak_rss_mb, write_reports  # noqa: E402
from benchmarks.peers import BOUNDED, CONFIGS, NEEDS, r  # noqa: E402
from benchmarks.peers.brms import BRMS_COMPILE_ALLOWANCE  # noqa: E402

HERE = Path(__file__).resolve().parent

SIZES: dict[str, tuple[int, int]] = {
    "small": (3, 10),
    "medium": (100, 100),
    "large": (1000, 1000),
}

#: draws (= tuning steps) per chain of the slow baselines, per size; 0: not run (Stan bound)
SLOW_DRAWS = {"small": 1000, "medium": 200, "large": 0}
QUICK_SLOW_DRAWS = {"small": 300, "medium": 0, "large": 0}

#: the issue's protocol: every ratio and scaled time refers to chains x (tune + draws)
FULL_ITERATIONS = 4 * (1000 + 1000)

#: the variables whose smallest bulk ESS is reported: every entry of ``beta`` and ``sigs``,
#: ``sigma`` and the off-diagonal of each factor's block of ``R`` (the scalars of
#: ``Truth.values()``, the rows of ``lmm_pymc.recovery_table``)
CHECKED = ("beta", "sigma", "sigs", "R")


# ----------------------------------------------------------------------- one run (child)
def _min_ess(posterior, truth) -> tuple[float, dict[str, float]]:
    """Smallest bulk ESS over the checked scalars, and each one's, by display name."""
    import arviz as az

    per = {}
    for name, (var, sel, _) in truth.values().items():
        if var not in CHECKED:
            continue
        values = posterior[var].sel(sel) if sel else posterior[var]
        per[name] = float(az.ess(values.values, method="bulk"))  # (chain, draw)
    return min(per.values()), per


def run_one(
    config: str,
    size: str,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    stan_cold: bool = False,
    bound: bool = False,
) -> dict:
    """Run one configuration on one size in this process; return its record."""
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pymc").setLevel(logging.ERROR)
    from lmm_pymc import simulate, tutorial

    n_groups, n_per_group = SIZES[size]
    sim = simulate(data=tutorial.design_frame(n_groups, n_per_group), seed=tutorial.SEED)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = peers.run(config, sim, draws, tune, chains, seed, stan_cold=stan_cold, bound=bound)
    if "posterior" in out:
        min_ess, per = _min_ess(out.pop("posterior"), sim.truth)
    else:  # a bound, or lme4 (no draws)
        min_ess, per = out.pop("min_ess_bulk"), out.pop("ess_bulk")
    iterations = chains * (tune + draws)
    scale = FULL_ITERATIONS / iterations if iterations and min_ess is not None else 1.0
    compile_s = out["compile_s"] or 0.0
    return {
        "config": config,
        "label": CONFIGS[config][0],
        "size": size,
        "n_groups": n_groups,
        "n_rows": n_groups * n_per_group,
        "chains": chains,
        "draws": draws,
        "tune": tune,
        **out,
        "min_ess_bulk": min_ess,
        "ess_bulk": per,
        "ess_per_s_sampling": None if min_ess is None else min_ess / out["sampling_s"],
        "ess_per_s_end_to_end": None if min_ess is None else min_ess / out["end_to_end_s"],
        "end_to_end_full_s": compile_s + out["sampling_s"] * scale,
        "rss_after_data_mb": rss_data,
        "load_average_1min": os.getloadavg()[0],
        **peak_rss_mb(),
    }


# ----------------------------------------------------------------------- driver (parent)
def _plan(args) -> list[tuple[str, str, int, int, bool]]:
    """(config, size, draws, tune, bound) in running order."""
    plan = []
    for size in args.sizes:
        for config, (_, kind) in CONFIGS.items():
            if config not in args.configs:
                continue
            draws, tune, bound = args.draws, args.tune, False
            if kind == "floor":
                draws = tune = 0  # a maximum-likelihood fit: no draws
            elif kind in ("slow", "peer"):
                draws = tune = args.slow_draws[size]
                if draws == 0:
                    if config not in BOUNDED:
                        continue  # not run on this size; the table says so
                    draws, tune, bound = args.draws, args.tune, True
            plan.append((config, size, draws, tune, bound))
    return plan


def _slow_draws(text: str) -> dict[str, int]:
    """Parse ``small=1000,medium=300,large=0`` (sizes left out keep their default)."""
    out = dict(SLOW_DRAWS)
    for item in filter(None, text.split(",")):
        size, _, value = item.partition("=")
        if size not in SIZES or not value.isdigit():
            raise argparse.ArgumentTypeError(
                f"--slow-draws takes SIZE=N items with SIZE in {list(SIZES)}, found {item!r}"
            )
        out[size] = int(value)
    return out


def unavailable(configs: list[str]) -> tuple[dict[str, str], str]:
    """Configurations that cannot run here, each with the reason, and the R packages'
    versions (empty without R)."""
    needs = {c: NEEDS[c] for c in configs if c in NEEDS}
    r_names = sorted({n.split(":")[1] for n in needs.values() if n.startswith("R:")})
    has_r, found, versions = r.r_packages(r_names) if r_names else (False, set(), "")
    out = {}
    for config, need in needs.items():
        kind, name = need.split(":")
        if kind == "python" and importlib.util.find_spec(name) is None:
            out[config] = f"Python module {name!r} not installed (pip install -e '.[stan]')"
        elif kind == "R" and not has_r:
            out[config] = (
                "Rscript not found on the PATH (install R: bash benchmarks/setup_peers.sh)"
            )
        elif kind == "R" and name not in found:
            out[config] = (
                f"R package {name} not installed (install it: bash benchmarks/setup_peers.sh)"
            )
    return out, versions


def _run_child(args, config: str, size: str, draws: int, tune: int, bound: bool) -> dict:
    """Run one configuration in a subprocess; its record, or one with an ``error``."""
    cmd = [sys.executable, __file__, "--one", config, size, "--draws", str(draws), "--tune",
           str(tune), "--chains", str(args.chains), "--seed", str(args.seed)]  # fmt: skip
    if args.stan_cold:
        cmd.append("--stan-cold")
    if bound:
        cmd.append("--bound")
    timeout = args.timeout + (BRMS_COMPILE_ALLOWANCE if config == "brms" else 0)
    failed = {"config": config, "label": CONFIGS[config][0], "size": size}
    # its own process group: on timeout its sampler workers (PyStan's processes, rstan's
    # cluster) are stopped with it instead of running on
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout = stderr = None
    with contextlib.suppress(ProcessLookupError):  # none left: the run ended cleanly
        os.killpg(proc.pid, signal.SIGKILL)
    if stdout is None:
        proc.communicate()
        return {**failed, "error": f"stopped after the time limit of {timeout:.0f} s"}
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {**failed, "error": (stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1].removeprefix("RESULT "))


# ------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=None,
        choices=list(SIZES),
        help="sizes to run (default: all; with --quick small and medium)",
    )
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--slow-draws",
        type=_slow_draws,
        default=None,
        help="draws (= tuning steps) per chain of the slow baselines and the peers, per "
        "size, e.g. small=1000,medium=300,large=0; 0 = not run (Stan programs and brms: bound "
        f"from one gradient's cost). Default {SLOW_DRAWS}; with --quick {QUICK_SLOW_DRAWS}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="reduced check: sizes small and medium, slow baselines and peers only on the "
        "small size with 300 draws, Stan programs and brms bounded elsewhere",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds after which one configuration is stopped and reported as failed "
        f"(default: %(default)s; brms gets {BRMS_COMPILE_ALLOWANCE} s more for its compile)",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(CONFIGS),
        choices=list(CONFIGS),
        help="configurations to run (default: all)",
    )
    parser.add_argument("--seed", type=int, default=1, help="sampler seed")
    parser.add_argument(
        "--stan-cold",
        action="store_true",
        help="force fresh builds of the Stan programs and of brms's (first-use compile "
        "time, ~65-90 s per PyStan program, minutes for brms) instead of the cached ones",
    )
    parser.add_argument(
        "--out",
        default=str(HERE / "results" / "latest"),
        help="output path without extension (default: %(default)s)",
    )
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--bound", action="store_true", help=argparse.SUPPRESS)
    return parser


def _run_plan(args, plan) -> list[dict]:
    """Every planned run in its own subprocess, in order, with a line of progress each."""
    records = []
    for config, size, draws, tune, bound in plan:
        what = "gradient timing" if bound else "ML fit" if config == "lme4" else f"{draws}+{tune}"
        print(f"[{time.strftime('%H:%M:%S')}] {config} on {size} ({what}) ...", flush=True)
        rec = _run_child(args, config, size, draws, tune, bound)
        records.append(rec)
        if "error" in rec:
            print(f"    failed: {rec['error']}", flush=True)
            continue
        print(
            f"    compile {fmt_number(rec['compile_s'])} s ({rec.get('compile_cache', '-')}), "
            f"sampling {rec['sampling_s']:.1f} s, {rec['divergences']} divergences, "
            f"min ESS {fmt_number(rec['min_ess_bulk'], 0)}, "
            f"{fmt_number(rec['ess_per_s_sampling'])} ESS/s, "
            f"peak {rec['peak_rss_mb']:.0f} MB" + (" (bound)" if rec.get("bound") else ""),
            flush=True,
        )
    return records


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.slow_draws is None:
        args.slow_draws = dict(QUICK_SLOW_DRAWS if args.quick else SLOW_DRAWS)
    if args.sizes is None:
        args.sizes = ["small", "medium"] if args.quick else list(SIZES)

    if args.one:  # child: one configuration, JSON on the last line of stdout
        config, size = args.one
        record = run_one(config, size, args.draws, args.tune, args.chains, args.seed,
                         stan_cold=args.stan_cold, bound=args.bound)  # fmt: skip
        print("RESULT " + json.dumps(record))
        return 0

    load_start = os.getloadavg()
    missing, r_versions = unavailable(args.configs)
    for config, why in missing.items():
        print(f"skipping {config}: {why}", flush=True)
    args.configs = [c for c in args.configs if c not in missing]
    plan = _plan(args)
    planned = {(c, z) for c, z, *_ in plan}
    skipped = [
        f"{CONFIGS[c][0]} on {z}" for z in args.sizes for c in args.configs if (c, z) not in planned
    ]
    records = _run_plan(args, plan)
    add_ratios(records)

    command = "python benchmarks/benchmark.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": command.strip(),
        "machine": machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "r_packages": r_versions,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
        "not_run": skipped,
        "peers_skipped": missing,
    }
    text = markdown(records, command.strip(), skipped, missing, meta)
    write_reports(out.with_suffix(".json"), out.with_suffix(".md"), {"meta": meta, "runs": records},
                  text)  # fmt: skip
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
