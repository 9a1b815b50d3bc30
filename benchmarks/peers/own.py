"""The package's own configurations: the default fit (:func:`lmm_pymc.fit`, also a second
time in the process, its compile cached) and the latent and marginal models sampled by PyMC's
NUTS or nutpie (:func:`lmm_pymc.sampling.sample_model`), all on the tutorial's priors."""

from __future__ import annotations

import time


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


def run_sampler(sim, sampler: str, parametrization: str, draws, tune, chains, seed) -> dict:
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


def run_default(sim, draws, tune, chains, seed, cached: bool = False) -> dict:
    """The default fit on the tutorial's priors; ``cached``: after a fit of other data of
    the same design in this process, so that the compiled model is reused."""
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
    from lmm_pymc.compiled import last_compiled

    if in_process:
        return "cached in process"
    compiled = last_compiled()
    if compiled is None:  # sampled without nutpie
        return "-"
    return "cached on disk" if compiled.compiled_logp_func.cache_hits else "cold"
