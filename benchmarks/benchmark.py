"""Benchmark: Stan (PyStan) vs PyMC parametrizations vs nutpie vs the package's default fit.

Every configuration runs in its own subprocess on the same simulated data (one data set per
size, seed 2024), so that its peak memory is its own. For each run the script records compile
time, sampling time (tuning included), divergences, the minimum bulk ESS over the scalars
``beta[intercept], beta[x], sigma, sigs[intercept|group_id], sigs[x|group_id]`` and the
correlation ``R[intercept|group_id, x|group_id]`` (the package's names; Stan's draws,
``alpha_0, beta_0, sigma_g, sigs, R``, are mapped to them by ``lmm_pymc.stan.names``), that
ESS per second of sampling and of end-to-end time, leapfrog steps per iteration, peak RSS,
and the ratio of ESS/s to Stan's on the same size. It writes ``<out>.json`` and ``<out>.md``.

Full run (the issue's protocol; about an hour on 2 cores)::

    python benchmarks/benchmark.py

Reduced check (minutes)::

    python benchmarks/benchmark.py --quick

Sizes: small = the tutorial's 3 groups x 10 rows, medium = 100 x 100, large = 1000 x 1000
(10^6 rows), each the tutorial's design (``lmm_pymc.tutorial.design_frame``) and values,
simulated by ``lmm_pymc.simulate(data=..., seed=2024)``. The slow baselines (Stan and
PyMC/nutpie on the latent models) run ``--slow-draws`` draws (= tuning steps) per size;
ESS per second is comparable across draw counts, as ESS grows about linearly with the
number of draws, and end-to-end times are also given scaled to the full 4 x (1000 + 1000)
iterations. Where a slow baseline gets 0 draws it is not run; Stan is then replaced by a
bound from the measured cost of one gradient of its log density on that data: at least one
gradient per iteration and an ESS of at most the number of draws give an upper bound on
Stan's ESS/s, so the ratios are lower bounds.
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

SIZES: dict[str, tuple[int, int]] = {
    "small": (3, 10),
    "medium": (100, 100),
    "large": (1000, 1000),
}

#: configuration -> (label, is it a slow baseline?)
CONFIGS: dict[str, tuple[str, bool]] = {
    "stan": ("Stan (PyStan), tutorial's lkj_corr model", True),
    # Stan's NUTS on the package's algorithm: per-group sums, random effects integrated out
    "stan_marginal_stats": ("Stan, same algorithm (PyStan, lmm_marginal_stats.stan)", False),
    "pymc_lkj_corr": ("PyMC NUTS, lkj_corr", True),
    "pymc_cholesky": ("PyMC NUTS, cholesky", True),
    "nutpie_cholesky": ("nutpie, cholesky", True),
    "pymc_marginal": ("PyMC NUTS, marginal", False),
    "default": ("default fit: lmm_pymc.fit(data, priors=Priors.tutorial())", False),
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
def _peak_rss_mb() -> dict[str, float]:
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN is the largest child (sampler workers)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": max(own, kids), "peak_rss_self_mb": own, "peak_rss_children_mb": kids}


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


def _stan_posterior(draws: dict, design, names=None):
    """Stan's draws (``alpha_0, beta_0, sigma_g, sigs, R``, shape ``(chain, draw, ...)``)
    as a posterior under the package's names, with the design's coordinates; ``names``:
    another program's registry (default the tutorial's)."""
    import xarray as xr

    from lmm_pymc.stan.names import TUTORIAL_NAMES

    values = (names or TUTORIAL_NAMES).package_values(draws)
    coords = design.coords()
    dims = {
        "beta": ("fixed_effect",),
        "sigma": (),
        "sigs": ("random_effect",),
        "R": ("random_effect", "random_effect_"),
    }
    return xr.Dataset(
        {name: (("chain", "draw", *d), values[name]) for name, d in dims.items()},
        coords={k: coords[k] for k in ("fixed_effect", "random_effect", "random_effect_")},
    )


def _build_stan(sim, seed: int, cold: bool):
    import stan

    from lmm_pymc.stan import stan_data, stan_file

    code = stan_file("lmm_lkj_corr").read_text()  # the tutorial's program
    if cold:  # a unique comment changes the program's hash: httpstan builds it afresh
        code += f"\n// benchmark cold build {time.time_ns()}\n"
    t0 = time.perf_counter()
    model = stan.build(code, data=stan_data(sim.design), random_seed=seed)
    return model, time.perf_counter() - t0


def _run_stan(sim, draws: int, tune: int, chains: int, seed: int, cold: bool = False) -> dict:
    import arviz as az
    import numpy as np

    model, compile_s = _build_stan(sim, seed, cold)
    t1 = time.perf_counter()
    fit = model.sample(num_chains=chains, num_samples=draws, num_warmup=tune)
    t2 = time.perf_counter()
    stan_post = az.from_pystan(posterior=fit).posterior
    draws = {name: stan_post[name].values for name in ("alpha_0", "beta_0", "sigma_g", "sigs", "R")}
    divergences = int(np.asarray(fit["divergent__"]).sum())
    return {
        "compile_s": compile_s,
        "sampling_s": t2 - t1,
        "end_to_end_s": compile_s + (t2 - t1),
        "divergences": divergences,
        "steps_per_draw": float(np.mean(fit["n_leapfrog__"])),
        "posterior": _stan_posterior(draws, sim.design),
        "note": "compile from httpstan's cache" if compile_s < 10 else "compile: first build",
    }


def _run_stan_marginal_stats(sim, draws: int, tune: int, chains: int, seed: int) -> dict:
    """Stan's NUTS on ``lmm_marginal_stats.stan``: the default fit's algorithm (the data are
    per-group sums, so neither data nor gradient grow with the rows) in Stan."""
    import arviz as az
    import numpy as np

    from lmm_pymc.stan import load_model, marginal_stats_data, marginal_stats_names

    t0 = time.perf_counter()
    model = load_model("marginal_stats", marginal_stats_data(sim.design), engine="pystan",
                       seed=seed).model  # fmt: skip
    t1 = time.perf_counter()
    fit = model.sample(num_chains=chains, num_samples=draws, num_warmup=tune)
    t2 = time.perf_counter()
    post = az.from_pystan(posterior=fit).posterior
    draws = {name: post[name].values for name in ("beta", "sigma", "sigs", "R")}
    return {
        "compile_s": t1 - t0,
        "sampling_s": t2 - t1,
        "end_to_end_s": t2 - t0,
        "divergences": int(np.asarray(fit["divergent__"]).sum()),
        "steps_per_draw": float(np.mean(fit["n_leapfrog__"])),
        "posterior": _stan_posterior(draws, sim.design, marginal_stats_names(sim.design)),
        "note": "compile from httpstan's cache" if t1 - t0 < 10 else "compile: first build",
    }


def _run_stan_bound(sim, draws: int, tune: int, chains: int, seed: int, cold: bool) -> dict:
    """No full run: measure one gradient's cost in Stan's sampler and bound Stan's ESS/s.

    Two single-chain runs without adaptation, a fixed small step and ``max_depth=2`` (at most
    three leapfrog steps per iteration, counted from ``n_leapfrog__``) differ only in their
    number of iterations; the time difference over the leapfrog difference is the cost of
    one gradient, with the fixed costs (data transfer, model instantiation) cancelled. Each NUTS
    iteration costs at least one gradient and the minimum bulk ESS is taken to be at most
    the number of draws, so ``chains * draws / (chains * (tune + draws) * t_grad /
    parallel)`` bounds Stan's ESS per second of sampling from above.
    """
    import numpy as np

    model, compile_s = _build_stan(sim, seed, cold)
    timings = []
    for n in (5, 45):
        t0 = time.perf_counter()
        fit = model.sample(num_chains=1, num_samples=n, num_warmup=0, max_depth=2, stepsize=1e-3)
        timings.append((time.perf_counter() - t0, float(np.sum(fit["n_leapfrog__"]))))
    (t_a, l_a), (t_b, l_b) = timings
    grad_s = (t_b - t_a) / (l_b - l_a)
    if not grad_s > 0:
        raise RuntimeError(
            f"the gradient timing is lost in noise ({t_a:.2f} s for {l_a:.0f} steps, "
            f"{t_b:.2f} s for {l_b:.0f}): run the Stan baseline on this size instead"
        )
    parallel = min(chains, len(os.sched_getaffinity(0)))
    sampling_lower = chains * (tune + draws) * grad_s / parallel
    return {
        "bound": True,
        "compile_s": compile_s,
        "grad_s": grad_s,
        "sampling_s": sampling_lower,
        "end_to_end_s": compile_s + sampling_lower,
        "divergences": None,
        "steps_per_draw": 1.0,
        "min_ess_bulk": float(chains * draws),
        "ess_bulk": {},
        "note": f"not sampled: one gradient in Stan's sampler takes {grad_s * 1e3:.1f} ms "
        f"(two runs of {int(l_a)} and {int(l_b)} leapfrog steps, {t_a:.1f} s and {t_b:.1f} s); "
        "times are lower bounds (1 gradient per iteration), the ESS an upper bound (= draws)",
    }


def _timed_record(idata, end_to_end_s: float, note: str) -> dict:
    """Record of a run whose ``posterior.attrs["sampling_time"]`` holds its sampling time."""
    sampling = float(idata.posterior.attrs["sampling_time"])
    return {
        "compile_s": end_to_end_s - sampling,
        "sampling_s": sampling,
        "end_to_end_s": end_to_end_s,
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "steps_per_draw": float(idata.sample_stats["n_steps"].mean()),
        "posterior": idata.posterior,
        "note": note,
    }


def _run_sampler(sim, sampler: str, parametrization: str, draws, tune, chains, seed) -> dict:
    """A latent or marginal model sampled by ``lmm_pymc.sampling.sample_model``, with the
    sampler's defaults for the parametrization."""
    from lmm_pymc import Priors, SamplerConfig, build_model
    from lmm_pymc.sampling import sample_model

    config = SamplerConfig(
        draws=draws,
        tune=tune,
        chains=chains,
        sampler=sampler,
        random_seed=seed,
        progressbar=False,
    )
    target_accept = config.target_accept_for(parametrization)
    t0 = time.perf_counter()
    # the tutorial's priors: the model the Stan programs of this benchmark compute
    model = build_model(sim.design, parametrization, priors=Priors.tutorial())
    idata = sample_model(model, config, parametrization)
    note = (
        f"target_accept {target_accept}; compile = end-to-end - sampling (model build, "
        "compilation and process start)"
    )
    return _timed_record(idata, time.perf_counter() - t0, note)


def _run_default(sim, draws, tune, chains, seed) -> dict:
    from lmm_pymc import Priors, fit

    t0 = time.perf_counter()
    idata = fit(sim.data, priors=Priors.tutorial(), draws=draws, tune=tune, chains=chains,
                random_seed=seed, progressbar=False)  # fmt: skip
    note = (
        f"parametrization {idata.attrs['parametrization']!r}, sampler "
        f"{idata.attrs['sampler']!r}; compile = end-to-end - sampling, which includes the "
        "sums, the model build and the exact b_group_id draws"
    )
    return _timed_record(idata, time.perf_counter() - t0, note)


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
    if config == "stan" and bound:
        out = _run_stan_bound(sim, draws, tune, chains, seed, cold=stan_cold)
    elif config == "stan":
        out = _run_stan(sim, draws, tune, chains, seed, cold=stan_cold)
    elif config == "stan_marginal_stats":
        out = _run_stan_marginal_stats(sim, draws, tune, chains, seed)
    elif config.startswith(("pymc_", "nutpie_")):
        sampler, parametrization = config.split("_", 1)
        out = _run_sampler(sim, sampler, parametrization, draws, tune, chains, seed)
    elif config == "default":
        out = _run_default(sim, draws, tune, chains, seed)
    else:
        raise ValueError(f"config must be one of {list(CONFIGS)}, found {config!r}")
    if "posterior" in out:
        min_ess, per = _min_ess(out.pop("posterior"), sim.truth)
    else:  # the Stan bound
        min_ess, per = out.pop("min_ess_bulk"), out.pop("ess_bulk")
    scale = FULL_ITERATIONS / (chains * (tune + draws))
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
        "end_to_end_full_s": out["compile_s"] + out["sampling_s"] * scale,
        "rss_after_data_mb": rss_data,
        "load_average_1min": os.getloadavg()[0],
        **_peak_rss_mb(),
    }


# ----------------------------------------------------------------------- driver (parent)
def _plan(args) -> list[tuple[str, str, int, int, bool]]:
    """(config, size, draws, tune, bound) in running order."""
    plan = []
    for size in args.sizes:
        for config, (_, slow) in CONFIGS.items():
            if config not in args.configs:
                continue
            draws, tune, bound = args.draws, args.tune, False
            if slow:
                draws = tune = args.slow_draws[size]
                if draws == 0:
                    if config != "stan":
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


def _fmt(value: float | None, digits: int = 1, prefix: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{prefix}{value:,.0f}"
    return f"{prefix}{value:.{digits}f}"


def markdown(records: list[dict], command: str, skipped: list[str]) -> str:
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
        f"Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average at the end {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)",
        "",
        "| size | configuration | chains x draws (tune) | compile s | sampling s | divergences "
        "| leapfrog steps / iteration | min bulk ESS | ESS/s sampling | ESS/s end-to-end "
        "| x Stan (ESS/s sampling) | x Stan (ESS/s end-to-end) "
        "| end-to-end s at 4 x (1000 + 1000) | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['label']} | failed: {r['error'][:80]} |" + " |" * 11)
            continue
        b = r.get("bound", False)
        le, ge = ("<= ", ">= ") if b else ("", "")
        stan_bound = r.get("stan_is_bound", False) and r["config"] != "stan"
        ratio = ">= " if stan_bound else ""
        label = r["label"] + (" **(bound, not sampled)**" if b else "")
        lines.append(
            f"| {r['size']} ({r['n_rows']:,} rows) | {label} "
            f"| {r['chains']} x {r['draws']} ({r['tune']}) | {_fmt(r['compile_s'])} "
            f"| {ge}{_fmt(r['sampling_s'])} | {'-' if b else r['divergences']} "
            f"| {ge}{_fmt(r['steps_per_draw'])} | {le}{_fmt(r['min_ess_bulk'], 0)} "
            f"| {le}{_fmt(r['ess_per_s_sampling'])} | {le}{_fmt(r['ess_per_s_end_to_end'])} "
            f"| {_fmt(r.get('ratio_sampling'), 2, ratio)} "
            f"| {_fmt(r.get('ratio_end_to_end'), 2, ratio)} "
            f"| {ge}{_fmt(r['end_to_end_full_s'])} | {_fmt(r['peak_rss_mb'], 0)} |"
        )
    lines.append("")
    lines.append(
        "min bulk ESS over beta[intercept], beta[x], sigma, sigs[intercept|group_id], "
        "sigs[x|group_id], R[intercept|group_id, x|group_id] (Stan's alpha_0, beta_0, "
        "sigma_g, sigs, rho); "
        "sampling s includes tuning; x Stan = ESS/s divided by Stan's on the same size; "
        "end-to-end s at 4 x (1000 + 1000) = compile + sampling scaled to the issue's full "
        "run; peak RSS = the larger of the run's own process and its largest child (sampler "
        "worker)."
    )
    for r in records:
        if r.get("bound"):
            lines.append("")
            lines.append(f"{r['size']}: Stan {r['note']}.")
    if skipped:
        lines.append("")
        lines.append("Not run (0 slow draws on that size): " + "; ".join(skipped) + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
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
        help="draws (= tuning steps) per chain of the slow baselines, per size, e.g. "
        "small=1000,medium=300,large=0; 0 = not run (Stan: bound from one gradient's cost). "
        f"Default {SLOW_DRAWS}; with --quick {QUICK_SLOW_DRAWS}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="reduced check: sizes small and medium, slow baselines only on the small size "
        "with 300 draws, Stan bounded elsewhere",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds after which one configuration is stopped and reported as failed "
        "(default: %(default)s)",
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
    parser.add_argument("--bound", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.slow_draws is None:
        args.slow_draws = dict(QUICK_SLOW_DRAWS if args.quick else SLOW_DRAWS)
    if args.sizes is None:
        args.sizes = ["small", "medium"] if args.quick else list(SIZES)

    if args.one:  # child: one configuration, JSON on the last line of stdout
        record = run_one(
            args.one[0],
            args.one[1],
            args.draws,
            args.tune,
            args.chains,
            args.seed,
            stan_cold=args.stan_cold,
            bound=args.bound,
        )
        print("RESULT " + json.dumps(record))
        return 0

    records = []
    plan = _plan(args)
    planned = {(c, z) for c, z, *_ in plan}
    skipped = [
        f"{CONFIGS[c][0]} on {z}" for z in args.sizes for c in args.configs if (c, z) not in planned
    ]
    for config, size, draws, tune, bound in plan:
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
        if bound:
            cmd.append("--bound")
        what = "gradient timing" if bound else f"{draws}+{tune}"
        print(f"[{time.strftime('%H:%M:%S')}] {config} on {size} ({what}) ...", flush=True)
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, check=False, timeout=args.timeout
            )
        except subprocess.TimeoutExpired:
            print(f"    stopped after {args.timeout:.0f} s", flush=True)
            records.append(
                {
                    "config": config,
                    "label": CONFIGS[config][0],
                    "size": size,
                    "error": f"stopped after the --timeout of {args.timeout:.0f} s",
                }
            )
            continue
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
            f"{rec['ess_per_s_sampling']:.1f} ESS/s, peak {rec['peak_rss_mb']:.0f} MB"
            + (" (Stan bound)" if rec.get("bound") else ""),
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
                r["stan_is_bound"] = bool(stan.get("bound", False))

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
    meta["not_run"] = skipped
    from lmm_pymc.files import atomic_path

    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({"meta": meta, "runs": records}, indent=2))
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(records, command.strip(), skipped))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
