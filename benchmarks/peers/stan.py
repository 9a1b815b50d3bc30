"""The Stan programs through PyStan: the tutorial's centred ``lmm_lkj_corr.stan``, the
non-centred ``lmm_cholesky.stan``, Stan's NUTS on the package's algorithm
(``lmm_marginal_stats.stan``), and a program's bound from one gradient's cost where it gets
no draws. :func:`stan_posterior` maps Stan's draws (and brms's, through them) to the
package's names."""

from __future__ import annotations

import time

from benchmarks.peers.bound import bound_record


def stan_posterior(draws: dict, design, names=None):
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


def compile_cache(compile_s: float) -> str:
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


def run_stan(sim, draws: int, tune: int, chains: int, seed: int, cold: bool = False,
             program: str = "lmm_lkj_corr") -> dict:  # fmt: skip
    """One of the tutorial's Stan programs (``program``), built (``cold``: afresh instead of
    from httpstan's cache) and sampled by PyStan."""
    import arviz as az
    import numpy as np

    model, compile_s = _build_stan(sim, seed, cold, program)
    t1 = time.perf_counter()
    fit = model.sample(num_chains=chains, num_samples=draws, num_warmup=tune)
    t2 = time.perf_counter()
    stan_post = az.from_pystan(posterior=fit).posterior
    draws = {name: stan_post[name].values for name in ("alpha_0", "beta_0", "sigma_g", "sigs", "R")}
    divergences = int(np.asarray(fit["divergent__"]).sum())
    cache = compile_cache(compile_s)
    return {
        "compile_s": compile_s,
        "compile_cache": cache,
        "sampling_s": t2 - t1,
        "end_to_end_s": compile_s + (t2 - t1),
        "divergences": divergences,
        "steps_per_draw": float(np.mean(fit["n_leapfrog__"])),
        "posterior": stan_posterior(draws, sim.design),
        "note": f"{program}.stan; compile {cache} (httpstan)",
    }


def run_stan_marginal_stats(sim, draws: int, tune: int, chains: int, seed: int) -> dict:
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
        "compile_cache": compile_cache(t1 - t0),
        "sampling_s": t2 - t1,
        "end_to_end_s": t2 - t0,
        "divergences": int(np.asarray(fit["divergent__"]).sum()),
        "steps_per_draw": float(np.mean(fit["n_leapfrog__"])),
        "posterior": stan_posterior(draws, sim.design, marginal_stats_names(sim.design)),
        "note": "compile from httpstan's cache" if t1 - t0 < 10 else "compile: first build",
    }


def run_stan_bound(sim, draws: int, tune: int, chains: int, seed: int, cold: bool,
                   program: str = "lmm_lkj_corr") -> dict:  # fmt: skip
    """No full run: measure one gradient's cost in Stan's sampler and bound Stan's ESS/s
    (:func:`benchmarks.peers.bound.bound_record`) from two single-chain runs without
    adaptation, a fixed small step and ``max_depth=2`` (at most three leapfrog steps per
    iteration, counted from ``n_leapfrog__``)."""
    import numpy as np

    model, compile_s = _build_stan(sim, seed, cold, program)
    timings = []
    for n in (5, 45):
        t0 = time.perf_counter()
        fit = model.sample(num_chains=1, num_samples=n, num_warmup=0, max_depth=2, stepsize=1e-3)
        timings.append((time.perf_counter() - t0, float(np.sum(fit["n_leapfrog__"]))))
    out = bound_record(compile_s, timings, draws, tune, chains)
    out["compile_cache"] = compile_cache(compile_s)
    return out
