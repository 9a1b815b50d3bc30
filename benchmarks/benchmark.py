"""Benchmark: Stan (PyStan) vs PyMC parametrizations vs nutpie vs the package's default fit.

Every configuration runs in its own subprocess on the same simulated data (one data set per
size, seed 2024), so that its peak memory is its own. For each run the script records compile
time, sampling time, divergences, the minimum bulk ESS over (alpha_0, beta_0, sigma_g,
sigs[intercept], sigs[x], rho), that ESS per second of sampling and of end-to-end time, peak
RSS, and the ratio of ESS/s to Stan's on the same size. It writes ``<out>.json`` and
``<out>.md``.

Full run (the issue's protocol; hours on 2 cores because of the slow baselines)::

    python benchmarks/benchmark.py

Reduced check (slow baselines only on the small size, fewer draws for them)::

    python benchmarks/benchmark.py --quick

Sizes: small = the tutorial's 3 groups x 10 rows, medium = 100 x 100, large = 1000 x 1000
(10^6 rows). Slow baselines may run fewer draws (``--slow-draws``); ESS per second is
comparable across draw counts, as ESS grows about linearly with the number of draws.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAN_FILE = ROOT / "stan_reference" / "lmm_lkj_corr.stan"

SIZES: dict[str, tuple[int, int]] = {
    "small": (3, 10),
    "medium": (100, 100),
    "large": (1000, 1000),
}

#: configuration -> (label, is it a slow baseline?)
CONFIGS: dict[str, tuple[str, bool]] = {
    "stan": ("Stan (PyStan), tutorial's lkj_corr model", True),
    "pymc_lkj_corr": ("PyMC NUTS, lkj_corr", True),
    "pymc_cholesky": ("PyMC NUTS, cholesky", True),
    "nutpie_cholesky": ("nutpie, cholesky", True),
    "nutpie_marginal": ("nutpie, marginal", False),
    "default": ("default fit: lmm_pymc.fit(data)", False),
}

CHECKED = ("alpha_0", "beta_0", "sigma_g", "sigs", "rho")


# ----------------------------------------------------------------------- one run (child)
def _peak_rss_mb() -> dict[str, float]:
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN is the largest child (sampler workers)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": max(own, kids), "peak_rss_self_mb": own, "peak_rss_children_mb": kids}


def _min_ess(posterior) -> tuple[float, dict[str, float]]:
    import arviz as az

    ess = az.ess(posterior[list(CHECKED)], method="bulk")
    per = {}
    for name in CHECKED:
        values = ess[name].values.reshape(-1)
        if name == "sigs":
            per["sigs[intercept]"], per["sigs[x]"] = float(values[0]), float(values[1])
        else:
            per[name] = float(values[0])
    return min(per.values()), per


def _run_stan(sim, draws: int, tune: int, chains: int, seed: int, cold: bool = False) -> dict:
    import arviz as az
    import numpy as np
    import stan

    from lmm_pymc import Priors

    if not STAN_FILE.is_file():
        raise FileNotFoundError(f"the Stan baseline needs {STAN_FILE}, which does not exist")
    code = STAN_FILE.read_text()
    if cold:  # a unique comment changes the program's hash: httpstan builds it afresh
        code += f"\n// benchmark cold build {time.time_ns()}\n"
    d = sim.design
    data = {
        "N": d.n_obs,
        "x": d.x.tolist(),
        "y": d.y.tolist(),
        "N_group": d.n_groups,
        "group_id": (d.group_index + 1).tolist(),
        **{k: float(v) for k, v in Priors().__dict__.items()},
    }
    t0 = time.perf_counter()
    model = stan.build(code, data=data, random_seed=seed)
    t1 = time.perf_counter()
    fit = model.sample(num_chains=chains, num_samples=draws, num_warmup=tune)
    t2 = time.perf_counter()
    idata = az.from_pystan(posterior=fit)
    post = idata.posterior
    post["rho"] = post["R"][..., 0, 1]
    divergences = int(np.asarray(fit["divergent__"]).sum())
    return {
        "compile_s": t1 - t0,
        "sampling_s": t2 - t1,
        "end_to_end_s": t2 - t0,
        "divergences": divergences,
        "posterior": post,
        "note": "compile from httpstan's cache" if t1 - t0 < 10 else "compile: first build",
    }


def _run_pymc(sim, parametrization: str, draws, tune, chains, seed) -> dict:
    import pymc as pm

    from lmm_pymc import build_model

    t0 = time.perf_counter()
    model = build_model(sim.design, parametrization)
    with model:
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=min(chains, len(os.sched_getaffinity(0))),
            target_accept=0.95,
            random_seed=seed,
            progressbar=False,
            compute_convergence_checks=False,
        )
    t1 = time.perf_counter()
    sampling = float(idata.posterior.attrs["sampling_time"])
    return {
        "compile_s": (t1 - t0) - sampling,
        "sampling_s": sampling,
        "end_to_end_s": t1 - t0,
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "posterior": idata.posterior,
        "note": "target_accept 0.95; compile = end-to-end - sampling (incl. process start)",
    }


def _run_nutpie(sim, parametrization: str, draws, tune, chains, seed) -> dict:
    import nutpie

    from lmm_pymc import build_model

    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(build_model(sim.design, parametrization))
    t1 = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        target_accept=0.95,
        progress_bar=False,
    )
    t2 = time.perf_counter()
    return {
        "compile_s": t1 - t0,
        "sampling_s": t2 - t1,
        "end_to_end_s": t2 - t0,
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "posterior": idata.posterior,
        "note": "target_accept 0.95; numba backend",
    }


def _run_default(sim, draws, tune, chains, seed) -> dict:
    from lmm_pymc import fit

    t0 = time.perf_counter()
    idata = fit(
        sim.data, draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=False
    )
    t1 = time.perf_counter()
    sampling = float(idata.posterior.attrs["sampling_time"])
    return {
        "compile_s": (t1 - t0) - sampling,
        "sampling_s": sampling,
        "end_to_end_s": t1 - t0,
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "posterior": idata.posterior,
        "note": f"parametrization {idata.attrs['parametrization']!r}, sampler "
        f"{idata.attrs['sampler']!r}; end-to-end includes the sums and random_group draws",
    }


def run_one(
    config: str, size: str, draws: int, tune: int, chains: int, seed: int, stan_cold: bool = False
) -> dict:
    """Run one configuration on one size in this process; return its record."""
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pymc").setLevel(logging.ERROR)
    from lmm_pymc import simulate

    n_groups, n_per_group = SIZES[size]
    sim = simulate(n_groups=n_groups, n_per_group=n_per_group, seed=2024)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if config == "stan":
        out = _run_stan(sim, draws, tune, chains, seed, cold=stan_cold)
    elif config.startswith("pymc_"):
        out = _run_pymc(sim, config.removeprefix("pymc_"), draws, tune, chains, seed)
    elif config.startswith("nutpie_"):
        out = _run_nutpie(sim, config.removeprefix("nutpie_"), draws, tune, chains, seed)
    elif config == "default":
        out = _run_default(sim, draws, tune, chains, seed)
    else:
        raise ValueError(f"config must be one of {list(CONFIGS)}, found {config!r}")
    min_ess, per = _min_ess(out.pop("posterior"))
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
        "ess_per_s_sampling": min_ess / out["sampling_s"],
        "ess_per_s_end_to_end": min_ess / out["end_to_end_s"],
        "rss_after_data_mb": rss_data,
        "load_average_1min": os.getloadavg()[0],
        **_peak_rss_mb(),
    }


# ----------------------------------------------------------------------- driver (parent)
def _plan(args) -> list[tuple[str, str, int, int]]:
    """(config, size, draws, tune) in running order."""
    import importlib.util

    have_nutpie = importlib.util.find_spec("nutpie") is not None
    plan = []
    for size in args.sizes:
        for config, (_, slow) in CONFIGS.items():
            if config not in args.configs:
                continue
            if config.startswith("nutpie") and not have_nutpie:
                continue
            draws, tune = args.draws, args.tune
            if slow and size != "small":
                if args.quick and not (config == "stan" and size == "medium"):
                    continue  # quick: slow baselines on the small size (and Stan on medium)
                draws, tune = args.slow_draws, args.slow_draws
            if args.quick and slow and config != "stan":
                draws, tune = args.slow_draws, args.slow_draws
            if args.quick and config == "nutpie_cholesky":
                continue  # its numba compile alone is ~1 min; in the full run only
            plan.append((config, size, draws, tune))
    return plan


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def markdown(records: list[dict], command: str) -> str:
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
        f"Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average at the end {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)",
        "",
        "| size | configuration | chains x draws (tune) | compile s | sampling s | divergences "
        "| min bulk ESS | ESS/s sampling | ESS/s end-to-end | x Stan (sampling) "
        "| x Stan (end-to-end) | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['label']} | failed: {r['error'][:80]} |" + " |" * 9)
            continue
        lines.append(
            f"| {r['size']} ({r['n_rows']:,} rows) | {r['label']} "
            f"| {r['chains']} x {r['draws']} ({r['tune']}) | {_fmt(r['compile_s'])} "
            f"| {_fmt(r['sampling_s'])} | {r['divergences']} | {_fmt(r['min_ess_bulk'], 0)} "
            f"| {_fmt(r['ess_per_s_sampling'])} | {_fmt(r['ess_per_s_end_to_end'])} "
            f"| {_fmt(r.get('ratio_sampling'), 2)} | {_fmt(r.get('ratio_end_to_end'), 2)} "
            f"| {_fmt(r['peak_rss_mb'], 0)} |"
        )
    lines.append("")
    lines.append(
        "min bulk ESS over alpha_0, beta_0, sigma_g, sigs[intercept], sigs[x], rho; "
        "x Stan = ESS/s divided by Stan's on the same size; peak RSS = the larger of the "
        "run's own process and its largest child (sampler worker)."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--slow-draws",
        type=int,
        default=None,
        help="draws (= tune) of the slow baselines beyond the small size "
        "(default 200; with --quick, 300 for every slow baseline but Stan "
        "on the small size)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="reduced check: slow baselines only on the small size (and Stan "
        "on medium), with --slow-draws draws",
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
        help="force a fresh Stan build (first-use compile time, ~65-90 s) "
        "instead of httpstan's cached program",
    )
    parser.add_argument(
        "--out",
        default=str(HERE / "results" / "latest"),
        help="output path without extension (default: %(default)s)",
    )
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.slow_draws is None:
        args.slow_draws = 300 if args.quick else 200

    if args.one:  # child: one configuration, JSON on the last line of stdout
        record = run_one(
            args.one[0],
            args.one[1],
            args.draws,
            args.tune,
            args.chains,
            args.seed,
            stan_cold=args.stan_cold,
        )
        print("RESULT " + json.dumps(record))
        return 0

    records = []
    for config, size, draws, tune in _plan(args):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            config,
            size,
            "--draws",
            str(draws),
            "--tune",
            str(tune),
            "--chains",
            str(args.chains),
            "--seed",
            str(args.seed),
        ]
        if args.stan_cold:
            cmd.append("--stan-cold")
        print(f"[{time.strftime('%H:%M:%S')}] {config} on {size} ({draws}+{tune}) ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"    failed: {err}", flush=True)
            records.append(
                {"config": config, "label": CONFIGS[config][0], "size": size, "error": err}
            )
            continue
        rec = json.loads(lines[-1].removeprefix("RESULT "))
        records.append(rec)
        print(
            f"    compile {rec['compile_s']:.1f} s, sampling {rec['sampling_s']:.1f} s, "
            f"{rec['divergences']} divergences, min ESS {rec['min_ess_bulk']:.0f}, "
            f"{rec['ess_per_s_sampling']:.1f} ESS/s, peak {rec['peak_rss_mb']:.0f} MB",
            flush=True,
        )

    for size in args.sizes:
        stan = next(
            (
                r
                for r in records
                if r["size"] == size and r["config"] == "stan" and "error" not in r
            ),
            None,
        )
        for r in records:
            if r["size"] == size and stan and "error" not in r:
                r["ratio_sampling"] = r["ess_per_s_sampling"] / stan["ess_per_s_sampling"]
                r["ratio_end_to_end"] = r["ess_per_s_end_to_end"] / stan["ess_per_s_end_to_end"]

    command = "python benchmarks/benchmark.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": command.strip(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_end": os.getloadavg(),
    }
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": records}, indent=2))
    out.with_suffix(".md").write_text(markdown(records, command.strip()))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
