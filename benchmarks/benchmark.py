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
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent

SIZES: dict[str, tuple[int, int]] = {
    "small": (3, 10),
    "medium": (100, 100),
    "large": (1000, 1000),
}

#: configuration -> (label, kind): "peer" (a Bayesian peer: the ``x best Bayesian peer``
#: ratios refer to the faster of them), "slow" (a slow baseline: ``--slow-draws``), "fast"
#: (full draws) or "floor" (lme4: a maximum-likelihood fit, time only)
CONFIGS: dict[str, tuple[str, str]] = {
    "brms": ("brms (R, rstan), its non-centred program", "peer"),
    "stan_cholesky": ("Stan (PyStan), non-centred lmm_cholesky.stan", "peer"),
    "stan": ("Stan (PyStan), tutorial's centred lkj_corr model", "slow"),
    "lme4": ("lme4 lmer, maximum likelihood (REML = FALSE), time only", "floor"),
    # Stan's NUTS on the package's algorithm: per-group sums, random effects integrated out
    "stan_marginal_stats": ("Stan, same algorithm (PyStan, lmm_marginal_stats.stan)", "fast"),
    "pymc_lkj_corr": ("PyMC NUTS, lkj_corr", "slow"),
    "pymc_cholesky": ("PyMC NUTS, cholesky", "slow"),
    "nutpie_cholesky": ("nutpie, cholesky", "slow"),
    "pymc_marginal": ("PyMC NUTS, marginal", "fast"),
    "default": ("default fit: lmm_pymc.fit(data, priors=Priors.tutorial())", "fast"),
    # the same fit after one of another data set of the same structure in the process:
    # the compiled model is reused (lmm_pymc.compiled.compile_model)
    "default_cached": ("default fit, second in the process (compile cached)", "fast"),
}

#: the Bayesian peers: the ``x best Bayesian peer`` ratios refer to the faster of them
PEERS = tuple(c for c, (_, kind) in CONFIGS.items() if kind == "peer")

#: configurations replaced by a bound from one gradient's cost where they get 0 draws
BOUNDED = ("brms", "stan_cholesky", "stan")

#: the Stan program of each PyStan configuration with the tutorial's names
STAN_PROGRAMS = {"stan": "lmm_lkj_corr", "stan_cholesky": "lmm_cholesky"}

#: what a configuration needs besides the package: "R:<package>" (Rscript with that R
#: package) or "python:<module>"
NEEDS = {
    "brms": "R:brms",
    "lme4": "R:lme4",
    "stan": "python:stan",
    "stan_cholesky": "python:stan",
    "stan_marginal_stats": "python:stan",
}

R_SCRIPT = HERE / "peers_brms.R"

#: where rstan keeps brms's compiled program between runs (``auto_write``)
R_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lmm_pymc-benchmark"

#: seconds added to ``--timeout`` for brms: its first compile takes 1-7 minutes
BRMS_COMPILE_ALLOWANCE = 600

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


def _compile_cache(compile_s: float) -> str:
    """httpstan builds a program once and keeps it: a build of seconds came from its cache."""
    return "cached" if compile_s < 10 else "cold"


def _build_stan(sim, seed: int, cold: bool, program: str = "lmm_lkj_corr"):
    import stan

    from lmm_pymc import Priors
    from lmm_pymc.stan import stan_data, stan_file

    code = stan_file(program).read_text()  # one of the tutorial's programs
    if cold:  # a unique comment changes the program's hash: httpstan builds it afresh
        code += f"\n// benchmark cold build {time.time_ns()}\n"
    data = stan_data(sim.design, Priors.tutorial(), program=program)
    t0 = time.perf_counter()
    model = stan.build(code, data=data, random_seed=seed)
    return model, time.perf_counter() - t0


def _run_stan(sim, draws: int, tune: int, chains: int, seed: int, cold: bool = False,
              program: str = "lmm_lkj_corr") -> dict:  # fmt: skip
    import arviz as az
    import numpy as np

    model, compile_s = _build_stan(sim, seed, cold, program)
    t1 = time.perf_counter()
    fit = model.sample(num_chains=chains, num_samples=draws, num_warmup=tune)
    t2 = time.perf_counter()
    stan_post = az.from_pystan(posterior=fit).posterior
    draws = {name: stan_post[name].values for name in ("alpha_0", "beta_0", "sigma_g", "sigs", "R")}
    divergences = int(np.asarray(fit["divergent__"]).sum())
    cache = _compile_cache(compile_s)
    return {
        "compile_s": compile_s,
        "compile_cache": cache,
        "sampling_s": t2 - t1,
        "end_to_end_s": compile_s + (t2 - t1),
        "divergences": divergences,
        "steps_per_draw": float(np.mean(fit["n_leapfrog__"])),
        "posterior": _stan_posterior(draws, sim.design),
        "note": f"{program}.stan; compile {cache} (httpstan)",
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
        "compile_cache": _compile_cache(t1 - t0),
        "sampling_s": t2 - t1,
        "end_to_end_s": t2 - t0,
        "divergences": int(np.asarray(fit["divergent__"]).sum()),
        "steps_per_draw": float(np.mean(fit["n_leapfrog__"])),
        "posterior": _stan_posterior(draws, sim.design, marginal_stats_names(sim.design)),
        "note": "compile from httpstan's cache" if t1 - t0 < 10 else "compile: first build",
    }


def _bound_record(compile_s: float, timings, draws: int, tune: int, chains: int) -> dict:
    """Bound a sampler's ESS/s from two timed runs ``[(seconds, leapfrog steps), ...]`` that
    differ only in their number of iterations.

    The time difference over the leapfrog difference is the cost of one gradient, with the
    fixed costs (data transfer, model instantiation) cancelled. Each NUTS iteration costs at
    least one gradient and the minimum bulk ESS is taken to be at most the number of draws,
    so ``chains * draws / (chains * (tune + draws) * t_grad / parallel)`` bounds the ESS per
    second of sampling from above.
    """
    (t_a, l_a), (t_b, l_b) = timings
    grad_s = (t_b - t_a) / (l_b - l_a) if l_b > l_a else float("nan")
    if not grad_s > 0:
        raise RuntimeError(
            f"the gradient timing is lost in noise ({t_a:.2f} s for {l_a:.0f} steps, "
            f"{t_b:.2f} s for {l_b:.0f}): give this size slow draws instead"
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
        "note": f"not sampled: one gradient in the sampler takes {grad_s * 1e3:.1f} ms "
        f"(two runs of {int(l_a)} and {int(l_b)} leapfrog steps, {t_a:.1f} s and {t_b:.1f} s); "
        "times are lower bounds (1 gradient per iteration), the ESS an upper bound (= draws)",
    }


def _run_stan_bound(sim, draws: int, tune: int, chains: int, seed: int, cold: bool,
                    program: str = "lmm_lkj_corr") -> dict:  # fmt: skip
    """No full run: measure one gradient's cost in Stan's sampler and bound Stan's ESS/s
    (:func:`_bound_record`) from two single-chain runs without adaptation, a fixed small
    step and ``max_depth=2`` (at most three leapfrog steps per iteration, counted from
    ``n_leapfrog__``)."""
    import numpy as np

    model, compile_s = _build_stan(sim, seed, cold, program)
    timings = []
    for n in (5, 45):
        t0 = time.perf_counter()
        fit = model.sample(num_chains=1, num_samples=n, num_warmup=0, max_depth=2, stepsize=1e-3)
        timings.append((time.perf_counter() - t0, float(np.sum(fit["n_leapfrog__"]))))
    out = _bound_record(compile_s, timings, draws, tune, chains)
    out["compile_cache"] = _compile_cache(compile_s)
    return out


# --------------------------------------------------------------------------- R peers
#: brms's names of the six scalars -> the tutorial's Stan names (then the package's)
BRMS_NAMES = {
    "b_Intercept": "alpha_0",
    "b_x": "beta_0",
    "sigma": "sigma_g",
    "sd_group_id__Intercept": "sigs[0]",
    "sd_group_id__x": "sigs[1]",
    "cor_group_id__Intercept__x": "rho",
}


def _rscript(mode: str, sim, *extra: str) -> tuple[dict, Path]:
    """Run ``peers_brms.R`` in ``mode`` on the simulation's data (a CSV of ``y, x,
    group_id``); return its ``times.csv`` row and the folder of its outputs (a temporary
    folder the caller removes)."""
    import pandas as pd

    out = Path(tempfile.mkdtemp(prefix=f"lmm_bench_{mode}_"))
    data = out / "data.csv"
    sim.data[["y", "x", "group_id"]].to_csv(data, index=False)
    cmd = ["Rscript", "--vanilla", str(R_SCRIPT), mode, str(data), str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:]) or "no output"
        shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError(f"Rscript {R_SCRIPT.name} {mode} failed: {tail}")
    row = pd.read_csv(out / "times.csv").iloc[0].to_dict()
    return row, out


def _brms_draws(frame, chains: int) -> dict:
    """brms's draws (one row per draw, columns ``.chain``, ``.iteration`` and
    :data:`BRMS_NAMES`) as the tutorial's Stan draws, shape ``(chain, draw, ...)``."""
    import numpy as np

    frame = frame.sort_values([".chain", ".iteration"])

    def col(name):
        return frame[name].to_numpy(dtype=float).reshape(chains, -1)

    rho = col("cor_group_id__Intercept__x")
    R = np.ones((*rho.shape, 2, 2))
    R[..., 0, 1] = R[..., 1, 0] = rho
    return {
        "alpha_0": col("b_Intercept"),
        "beta_0": col("b_x"),
        "sigma_g": col("sigma"),
        "sigs": np.stack([col("sd_group_id__Intercept"), col("sd_group_id__x")], axis=-1),
        "R": R,
    }


def _run_brms(sim, draws: int, tune: int, chains: int, seed: int, cold: bool = False,
              bound: bool = False) -> dict:  # fmt: skip
    """brms's program (non-centred, the tutorial's priors) compiled and sampled by rstan in
    ``Rscript``; compile = brms's program and data + ``rstan::stan_model`` (cold, or loaded
    from an earlier run's ``auto_write``); R's start-up, loading brms and reading the CSV are
    reported apart and left out of end-to-end, as the package's import is."""
    import pandas as pd

    R_CACHE.mkdir(parents=True, exist_ok=True)
    extra = [str(draws), str(tune), str(chains), str(seed), str(R_CACHE / "brms"),
             str(int(cold)), str(int(bound))]  # fmt: skip
    row, out = _rscript("brms", sim, *extra)
    try:
        compile_s = float(row["prepare_s"]) + float(row["compile_s"])
        cache = "cached" if bool(row["cached"]) and not cold else "cold"
        note = (
            f"brms {row['brms']}, rstan {row['rstan']}; compile {cache}: brms's program and "
            f"data {row['prepare_s']:.1f} s + rstan::stan_model {row['compile_s']:.1f} s; not "
            f"in end-to-end: R start-up {row['startup_s']:.1f} s, loading brms and rstan "
            f"{row['load_s']:.1f} s, reading the CSV {row['read_s']:.1f} s"
        )
        if bound:
            grad = pd.read_csv(out / "gradient.csv")
            timings = list(zip(grad["seconds"], grad["leapfrog"], strict=True))
            rec = _bound_record(compile_s, timings, draws, tune, chains)
            rec["note"] = f"{rec['note']}; {note}"
        else:
            frame = pd.read_csv(out / "draws.csv")
            sampling_s = float(row["sampling_s"])
            rec = {
                "compile_s": compile_s,
                "sampling_s": sampling_s,
                "end_to_end_s": compile_s + sampling_s,
                "divergences": int(frame["divergent__"].sum()),
                "steps_per_draw": float(frame["n_leapfrog__"].mean()),
                "posterior": _stan_posterior(_brms_draws(frame, chains), sim.design),
                "note": f"{note}; {int(row['cores'])} chains at a time, the longest "
                f"{row['chain_s']:.1f} s",
            }
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rec["compile_cache"] = cache
    rec.update({k: float(row[k]) for k in ("startup_s", "load_s", "read_s")})
    return rec


def _run_lme4(sim) -> dict:
    """lme4's maximum-likelihood fit (``REML = FALSE``), time only: the first ``lmer`` call
    after loading lme4 (a second one, when the first takes under 10 s, in the note)."""
    import pandas as pd

    row, out = _rscript("lme4", sim)
    shutil.rmtree(out, ignore_errors=True)
    fit_s = float(row["fit_s"])
    refit = "" if pd.isna(row["refit_s"]) else f", a second fit {row['refit_s']:.2f} s"
    return {
        "compile_s": None,
        "sampling_s": fit_s,
        "end_to_end_s": fit_s,
        "divergences": None,
        "steps_per_draw": None,
        "min_ess_bulk": None,
        "ess_bulk": {},
        "startup_s": float(row["startup_s"]),
        "load_s": float(row["load_s"]),
        "read_s": float(row["read_s"]),
        "note": f"lme4 {row['version']}: lmer(y ~ 1 + x + (1 + x | group_id), REML = FALSE) "
        f"{fit_s:.2f} s{refit}; converged without warnings: {bool(row['converged'])}; not "
        f"included: R start-up {row['startup_s']:.1f} s, loading lme4 {row['load_s']:.1f} s, "
        f"reading the CSV {row['read_s']:.1f} s",
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
    n_groups = sim.design.factors[0].n_levels if parametrization == "marginal" else None
    target_accept = config.target_accept_for(parametrization, n_groups)
    t0 = time.perf_counter()
    # the tutorial's priors: the model the Stan programs of this benchmark compute
    model = build_model(sim.design, parametrization, priors=Priors.tutorial())
    idata = sample_model(model, config, parametrization, n_groups)
    note = (
        f"target_accept {target_accept}; compile = end-to-end - sampling (model build, "
        "compilation and process start)"
    )
    return _timed_record(idata, time.perf_counter() - t0, note)


def _run_default(sim, draws, tune, chains, seed, cached: bool = False) -> dict:
    from lmm_pymc import Priors, fit

    if cached:  # first a fit of other data of the same design: pays the compile
        from lmm_pymc import simulate

        other = simulate(data=sim.data.drop(columns="y"), seed=seed + 1)
        fit(other.data, priors=Priors.tutorial(), draws=draws, tune=tune, chains=chains,
            random_seed=seed, progressbar=False, pointwise=False)  # fmt: skip

    t0 = time.perf_counter()
    idata = fit(sim.data, priors=Priors.tutorial(), draws=draws, tune=tune, chains=chains,
                random_seed=seed, progressbar=False)  # fmt: skip
    end_to_end = time.perf_counter() - t0
    note = (
        f"parametrization {idata.attrs['parametrization']!r}, sampler "
        f"{idata.attrs['sampler']!r}; compile = end-to-end - sampling, which includes the "
        "sums, the model build and the exact b_group_id draws"
    )
    rec = _timed_record(idata, end_to_end, note)
    rec["compile_cache"] = _default_compile_cache(cached)
    return rec


def _default_compile_cache(in_process: bool) -> str:
    """Where the default fit's compiled log density came from: this process (a fit of the
    same structure before), numba's on-disk cache (an earlier process), or a cold compile."""
    from lmm_pymc.compiled import _COMPILED

    if in_process:
        return "cached in process"
    if not _COMPILED:  # sampled without nutpie
        return "-"
    compiled = next(reversed(_COMPILED.values()))[1]
    return "cached on disk" if compiled.compiled_logp_func.cache_hits else "cold"


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
    if config in STAN_PROGRAMS and bound:
        out = _run_stan_bound(sim, draws, tune, chains, seed, stan_cold, STAN_PROGRAMS[config])
    elif config in STAN_PROGRAMS:
        out = _run_stan(sim, draws, tune, chains, seed, stan_cold, STAN_PROGRAMS[config])
    elif config == "brms":
        out = _run_brms(sim, draws, tune, chains, seed, cold=stan_cold, bound=bound)
    elif config == "lme4":
        out = _run_lme4(sim)
    elif config == "stan_marginal_stats":
        out = _run_stan_marginal_stats(sim, draws, tune, chains, seed)
    elif config.startswith(("pymc_", "nutpie_")):
        sampler, parametrization = config.split("_", 1)
        out = _run_sampler(sim, sampler, parametrization, draws, tune, chains, seed)
    elif config in ("default", "default_cached"):
        out = _run_default(sim, draws, tune, chains, seed, cached=config == "default_cached")
    else:
        raise ValueError(f"config must be one of {list(CONFIGS)}, found {config!r}")
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
        **_peak_rss_mb(),
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


def _r_packages(names: list[str]) -> tuple[bool, set[str], str]:
    """(is ``Rscript`` on the PATH, which of the R packages ``names`` it loads, versions)."""
    if shutil.which("Rscript") is None:
        return False, set(), ""
    code = (
        "for (p in commandArgs(TRUE)) if (requireNamespace(p, quietly = TRUE)) "
        "cat(p, format(packageVersion(p)), '\\n')"
    )
    proc = subprocess.run(["Rscript", "--vanilla", "-e", code, *names], capture_output=True,
                          text=True, check=False, timeout=120)  # fmt: skip
    found = dict(line.split()[:2] for line in proc.stdout.splitlines() if line.strip())
    versions = ", ".join(f"{name} {version}" for name, version in found.items())
    return True, set(found), versions


def unavailable(configs: list[str]) -> tuple[dict[str, str], str]:
    """Configurations that cannot run here, each with the reason, and the R packages'
    versions (empty without R)."""
    needs = {c: NEEDS[c] for c in configs if c in NEEDS}
    r_names = sorted({n.split(":")[1] for n in needs.values() if n.startswith("R:")})
    has_r, found, versions = _r_packages(r_names) if r_names else (False, set(), "")
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


def _better(records: list[dict], key: str) -> dict | None:
    """The record with the highest ``key`` (ESS/s), None if none has it."""
    known = [r for r in records if r.get(key) is not None]
    return max(known, key=lambda r: r[key], default=None)


def add_ratios(records: list[dict]) -> None:
    """Per size, each run's ESS/s divided by the tutorial's Stan program's (``ratio_*``) and
    by the best Bayesian peer's (``peer_ratio_*``): the peer (:data:`PEERS`) with the highest
    ESS/s of sampling, and separately the one with the highest ESS/s end-to-end. A ratio to
    a bound (an upper bound on ESS/s) is a lower bound (``*_is_bound``)."""
    ok = [r for r in records if "error" not in r]
    for size in dict.fromkeys(r["size"] for r in ok):
        here = [r for r in ok if r["size"] == size]
        stan = next((r for r in here if r["config"] == "stan"), None)
        peers = [r for r in here if r["config"] in PEERS]
        for what in ("sampling", "end_to_end"):
            key = f"ess_per_s_{what}"
            best = _better(peers, key)
            for r in here:
                if r.get(key) is None:
                    continue
                if stan is not None:
                    r[f"ratio_{what}"] = r[key] / stan[key]
                    r["stan_is_bound"] = bool(stan.get("bound", False))
                if best is not None:
                    r[f"peer_ratio_{what}"] = r[key] / best[key]
                    r[f"best_peer_{what}"] = best["config"]
                    r[f"best_peer_{what}_is_bound"] = bool(best.get("bound", False))


def _fmt(value: float | None, digits: int = 1, prefix: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{prefix}{value:,.0f}"
    return f"{prefix}{value:.{digits}f}"


def _machine() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one) and its core count."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPU(s) ({len(os.sched_getaffinity(0))} usable)"


COLUMNS = (
    "size", "configuration", "chains x draws (tune)", "compile s (cold / cached)",
    "sampling s", "divergences", "leapfrog steps / iteration", "min bulk ESS",
    "ESS/s sampling", "ESS/s end-to-end", "x Stan (ESS/s sampling)",
    "x Stan (ESS/s end-to-end)", "x best Bayesian peer (ESS/s sampling)",
    "x best Bayesian peer (ESS/s end-to-end)", "end-to-end s at 4 x (1000 + 1000)",
    "peak RSS MB",
)  # fmt: skip


def _row(r: dict) -> str:
    b = r.get("bound", False)
    le, ge = ("<= ", ">= ") if b else ("", "")
    stan_ge = ">= " if r.get("stan_is_bound", False) and r["config"] != "stan" else ""

    def peer(what):
        is_bound = r.get(f"best_peer_{what}_is_bound", False)
        prefix = ">= " if is_bound and r.get(f"best_peer_{what}") != r["config"] else ""
        return _fmt(r.get(f"peer_ratio_{what}"), 2, prefix)

    label = r["label"] + (" **(bound, not sampled)**" if b else "")
    compile_s = _fmt(r["compile_s"])
    if r.get("compile_cache"):
        compile_s += f" ({r['compile_cache']})"
    draws = "ML fit" if r["config"] == "lme4" else f"{r['chains']} x {r['draws']} ({r['tune']})"
    divergences = "-" if b or r["divergences"] is None else r["divergences"]
    cells = [
        f"{r['size']} ({r['n_rows']:,} rows)", label, draws, compile_s,
        ge + _fmt(r["sampling_s"]), str(divergences), ge + _fmt(r["steps_per_draw"]),
        le + _fmt(r["min_ess_bulk"], 0), le + _fmt(r["ess_per_s_sampling"]),
        le + _fmt(r["ess_per_s_end_to_end"]), _fmt(r.get("ratio_sampling"), 2, stan_ge),
        _fmt(r.get("ratio_end_to_end"), 2, stan_ge), peer("sampling"), peer("end_to_end"),
        ge + _fmt(r["end_to_end_full_s"]), _fmt(r["peak_rss_mb"], 0),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def markdown(
    records: list[dict],
    command: str,
    skipped: list[str],
    missing: dict[str, str] | None = None,
    meta: dict | None = None,
) -> str:
    """The report: header (command, machine, load average, peers skipped and why), the
    table and its notes. ``skipped``: runs left out for 0 slow draws; ``missing``:
    configuration -> why it cannot run here."""
    meta = meta or {}
    start = meta.get("load_average_at_start")
    load = f"load average (1 min) at the start {start[0]:.1f}, " if start else "load average "
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {_machine()}, Python {platform.python_version()}"
        + (f", R packages: {meta['r_packages']}" if meta.get("r_packages") else "")
        + f"; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"{load}at the end {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)",
    ]
    if missing:
        lines.append("")
        lines.append(
            "**Peers skipped** (on every size): "
            + "; ".join(f"{CONFIGS[c][0]}: {why}" for c, why in missing.items())
            + "."
        )
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in records:
        if "error" in r:
            cells = [r["size"], r["label"], f"failed: {r['error'][:120]}"]
            lines.append("| " + " | ".join(cells) + " |" * (len(COLUMNS) - 2))
        else:
            lines.append(_row(r))
    lines.append("")
    lines.append(
        "min bulk ESS over beta[intercept], beta[x], sigma, sigs[intercept|group_id], "
        "sigs[x|group_id], R[intercept|group_id, x|group_id] (Stan's alpha_0, beta_0, "
        "sigma_g, sigs, rho; brms's b_Intercept, b_x, sigma, sd_group_id__Intercept, "
        "sd_group_id__x, cor_group_id__Intercept__x), computed by ArviZ on every "
        "configuration's draws; sampling s includes tuning; end-to-end = compile + "
        "sampling (with compile cached: loading the compiled program + sampling); x Stan = "
        "ESS/s divided by that of the tutorial's centred Stan program on the same size; x best "
        "Bayesian peer = ESS/s divided by that of the faster of brms and non-centred Stan on "
        "the same size, taken separately for ESS/s of sampling and ESS/s end-to-end (>= where "
        "that peer is a bound); end-to-end s at 4 x (1000 + 1000) = compile + sampling scaled "
        "to the issue's full run; peak RSS = the larger of the run's own process and its "
        "largest child (sampler worker; Rscript for the R peers). Compile: cold = "
        "built from scratch, cached = loaded from an earlier build (httpstan's cache; rstan's "
        "auto_write for brms)."
    )
    for size in dict.fromkeys(r["size"] for r in records):
        here = [r for r in records if r["size"] == size and "error" not in r]
        best = {w: next((r.get(f"best_peer_{w}") for r in here if r.get(f"best_peer_{w}")), None)
                for w in ("sampling", "end_to_end")}  # fmt: skip
        if any(best.values()):
            lines.append("")
            lines.append(
                f"{size}: best Bayesian peer on ESS/s of sampling: "
                f"{CONFIGS[best['sampling']][0] if best['sampling'] else '-'}; on ESS/s "
                f"end-to-end: {CONFIGS[best['end_to_end']][0] if best['end_to_end'] else '-'}."
            )
        for r in here:
            if r.get("note") and (r.get("bound") or r["config"] in ("brms", "lme4")):
                lines.append("")
                lines.append(f"{size}, {r['label']}: {r['note']}.")
    if skipped:
        lines.append("")
        lines.append("Not run (0 slow draws on that size): " + "; ".join(skipped) + ".")
    return "\n".join(lines) + "\n"


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

    load_start = os.getloadavg()
    missing, r_versions = unavailable(args.configs)
    for config, why in missing.items():
        print(f"skipping {config}: {why}", flush=True)
    args.configs = [c for c in args.configs if c not in missing]
    records = []
    plan = _plan(args)
    planned = {(c, z) for c, z, *_ in plan}
    skipped = [
        f"{CONFIGS[c][0]} on {z}" for z in args.sizes for c in args.configs if (c, z) not in planned
    ]
    for config, size, draws, tune, bound in plan:
        what = "gradient timing" if bound else "ML fit" if config == "lme4" else f"{draws}+{tune}"
        print(f"[{time.strftime('%H:%M:%S')}] {config} on {size} ({what}) ...", flush=True)
        rec = _run_child(args, config, size, draws, tune, bound)
        records.append(rec)
        if "error" in rec:
            print(f"    failed: {rec['error']}", flush=True)
            continue
        print(
            f"    compile {_fmt(rec['compile_s'])} s ({rec.get('compile_cache', '-')}), "
            f"sampling {rec['sampling_s']:.1f} s, {rec['divergences']} divergences, "
            f"min ESS {_fmt(rec['min_ess_bulk'], 0)}, {_fmt(rec['ess_per_s_sampling'])} ESS/s, "
            f"peak {rec['peak_rss_mb']:.0f} MB" + (" (bound)" if rec.get("bound") else ""),
            flush=True,
        )
    add_ratios(records)

    command = "python benchmarks/benchmark.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": command.strip(),
        "machine": _machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "r_packages": r_versions,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
        "not_run": skipped,
        "peers_skipped": missing,
    }
    from lmm_pymc.files import atomic_path

    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({"meta": meta, "runs": records}, indent=2))
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(records, command.strip(), skipped, missing, meta))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
