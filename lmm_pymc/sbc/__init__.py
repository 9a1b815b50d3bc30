"""Simulation-based calibration (SBC, Talts et al. 2018) of the package's model and sampler.

One simulation ``i`` of the tutorial's model ``y ~ 1 + x + (1 + x | group_id)``::

    theta_i ~ prior                  beta, sigma, sigs, rho     (Prior.draw, numpy) prior.py
    y_i     ~ model(theta_i)         lmm_pymc.simulate (b drawn inside)
    draws   ~ posterior(. | y_i)     lmm_pymc.fit, thinned                         runner.py
    rank    = #(draws < theta_i)     one rank in 0..L per parameter                ranks.py

If the model and the sampler are right, every rank is uniform on ``0..L``. The ranked
quantities carry the package's names (``beta[x]``, ``sigma``, ``sigs[x|group_id]``,
``R[intercept|group_id, x|group_id]``, ``b_group_id[1, x|group_id]``), from
:meth:`lmm_pymc.Truth.values` like the recovery table. :func:`run_sbc` executes simulations
on Dask distributed (a ``LocalCluster`` or any scheduler address), writes each finished
simulation atomically to ``DIR/sim_<index>.json`` (:class:`SBCStore`) and resumes from
those files: a killed run loses at most the simulations that were still running.

Outcome families (``SBCConfig(family="poisson")``, :mod:`lmm_pymc.families`): the
outcome is drawn from the family and fitted with it; the family's own parameters are drawn
and ranked (``sigma`` for the Gaussian only, ``alpha`` for the negative binomial), on the
link-scale prior :data:`LINK_SCALE_PRIORS` unless ``priors`` is given.

Randomness: simulation ``i`` draws its prior, its data and its sampler seed from
``numpy.random.SeedSequence([seed, i])``, so a result does not depend on the worker, the
order of completion or on being re-run.
"""

from __future__ import annotations

from .config import DEFAULT_SAMPLING, LINK_SCALE_PRIORS, SBCConfig
from .prior import (
    draw_prior,
    parameter_names,
    ranked_targets,
    simulate_from_prior,
    simulate_targets,
    true_values,
)
from .ranks import posterior_draws, ranks_from_draws, uniformity_test
from .results import SBCResult, load_sbc
from .runner import run_one, run_sbc
from .store import SBCStore

__all__ = [
    "DEFAULT_SAMPLING",
    "LINK_SCALE_PRIORS",
    "SBCConfig",
    "SBCResult",
    "SBCStore",
    "draw_prior",
    "load_sbc",
    "parameter_names",
    "posterior_draws",
    "ranked_targets",
    "ranks_from_draws",
    "run_one",
    "run_sbc",
    "simulate_from_prior",
    "simulate_targets",
    "true_values",
    "uniformity_test",
]
