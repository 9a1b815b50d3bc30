"""The configurations of ``benchmarks/benchmark.py``: the registry and one run of each.

One module per kind of runner: :mod:`.stan` (the Stan programs through PyStan, and their
bound from one gradient's cost), :mod:`.bound` (that bound's arithmetic), :mod:`.r` (the
bridge to ``Rscript``), :mod:`.brms`, :mod:`.lme4` and :mod:`.own` (the package's own
PyMC and nutpie configurations). Every runner returns a record without the ESS, which
``benchmark.py`` computes from its ``posterior`` the same way for all.
"""

from __future__ import annotations

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
    # the Stan file's model term for term, sampled as fit(..., parametrization="lkj_corr")
    "nutpie_lkj_corr": ("nutpie, lkj_corr (the tutorial's Stan model term for term)", "fast"),
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


def run(config: str, sim, draws: int, tune: int, chains: int, seed: int,
        stan_cold: bool = False, bound: bool = False) -> dict:  # fmt: skip
    """Run ``config`` on the simulation ``sim`` in this process: its record, with the draws
    as ``posterior`` (under the package's names), or, for a bound and for lme4, with
    ``min_ess_bulk`` and ``ess_bulk`` already set."""
    from . import brms, lme4, own, stan

    if config in STAN_PROGRAMS and bound:
        return stan.run_stan_bound(sim, draws, tune, chains, seed, stan_cold,
                                   STAN_PROGRAMS[config])  # fmt: skip
    if config in STAN_PROGRAMS:
        return stan.run_stan(sim, draws, tune, chains, seed, stan_cold, STAN_PROGRAMS[config])
    if config == "brms":
        return brms.run_brms(sim, draws, tune, chains, seed, cold=stan_cold, bound=bound)
    if config == "lme4":
        return lme4.run_lme4(sim)
    if config == "stan_marginal_stats":
        return stan.run_stan_marginal_stats(sim, draws, tune, chains, seed)
    if config.startswith(("pymc_", "nutpie_")):
        sampler, parametrization = config.split("_", 1)
        return own.run_sampler(sim, sampler, parametrization, draws, tune, chains, seed)
    if config in ("default", "default_cached"):
        return own.run_default(sim, draws, tune, chains, seed, cached=config == "default_cached")
    raise ValueError(f"config must be one of {list(CONFIGS)}, found {config!r}")
