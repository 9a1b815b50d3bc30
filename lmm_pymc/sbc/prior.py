"""The prior side of SBC: numpy draws from :class:`~lmm_pymc.Priors` and a data set
simulated from them by :func:`lmm_pymc.simulate`.

Ranked quantities and their true values come from
:meth:`lmm_pymc.Truth.values` (``random_effects=True``), the same names, posterior
selections and values as the recovery table.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from .. import tutorial
from ..parameters import Truth
from ..priors import Priors
from ..simulation import Simulation, simulate
from .config import SBCConfig

__all__ = ["Target", "draw_prior", "ranked_names", "ranked_targets", "simulate_from_prior"]

#: One ranked quantity: (posterior variable, coordinate selection, true value).
Target = tuple[str, dict, float]


def draw_prior(priors: Priors, rng: np.random.Generator) -> dict[str, object]:
    """One draw of the tutorial model's parameters from ``priors``, with numpy.

    ``beta ~ Normal(fixed_mu, fixed_sd)`` (intercept, slope), ``sigma ~
    HalfNormal(residual_sd)``, ``sigmas ~ HalfNormal(group_sd)`` and, for the 2 x 2 ``R ~
    LKJ(eta)``, ``rho = 2 Beta(eta, eta) - 1`` (the marginal of LKJ for one correlation).

    Parameters
    ----------
    priors : Priors
    rng : numpy.random.Generator
        The only source of randomness.

    Returns
    -------
    dict
        ``beta`` (2 floats), ``sigmas`` (2 floats), ``rho`` and ``sigma``: the keyword
        arguments of :func:`lmm_pymc.tutorial.parameters`.
    """
    beta = priors.fixed.draw(rng, 2)
    sigma = priors.sigma.draw(rng)
    sigmas = priors.sigs.draw(rng, 2)
    rho = 2.0 * rng.beta(priors.lkj_eta, priors.lkj_eta) - 1.0
    return {
        "beta": (float(beta[0]), float(beta[1])),
        "sigmas": (float(sigmas[0]), float(sigmas[1])),
        "rho": float(rho),
        "sigma": float(sigma),
    }


def ranked_targets(truth: Truth, random_effect_groups: Sequence[int]) -> dict[str, Target]:
    """The ranked quantities of a simulation: display name -> (variable, selection, value).

    Every scalar of :meth:`Truth.values` (``beta``, ``sigma``, ``sigs``, ``R``) and the
    random effects ``b_<factor>[<label>, <effect>]`` of the groups at the positions
    ``random_effect_groups`` (of every factor; the tutorial has one).
    """
    keep: dict[str, set] = {}
    for f in truth.design.factors:
        keep[f"b_{f.key}"] = {f.labels[g] for g in random_effect_groups}
    level_dim = {f"b_{f.key}": f.level_dim for f in truth.design.factors}
    out: dict[str, Target] = {}
    for name, (var, sel, value) in truth.values(random_effects=True).items():
        if var in keep and sel[level_dim[var]] not in keep[var]:
            continue
        out[name] = (var, dict(sel), float(value))
    return out


@functools.lru_cache(maxsize=16)
def ranked_names(
    n_groups: int, n_per_group: int, random_effect_groups: tuple[int, ...]
) -> tuple[str, ...]:
    """Names of the ranked quantities for the tutorial's design (any parameter values)."""
    sim = simulate(data=tutorial.design_frame(n_groups, n_per_group), seed=0)
    return tuple(ranked_targets(sim.truth, random_effect_groups))


def simulate_from_prior(config: SBCConfig, index: int) -> tuple[dict[str, float], Simulation]:
    """Prior draw and data set of simulation ``index``, seeded by ``[config.seed, index]``.

    Returns
    -------
    truth : dict
        Display name -> true value of every ranked quantity (:func:`ranked_targets`).
    simulation : Simulation
        From :func:`lmm_pymc.simulate` on ``tutorial.design_frame(n_groups, n_per_group)``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, int(index)]))
    theta = draw_prior(config.priors, rng)
    sim = simulate(
        data=tutorial.design_frame(config.n_groups, config.n_per_group),
        **tutorial.parameters(**theta),
        seed=rng,
    )
    targets = ranked_targets(sim.truth, config.random_effect_groups)
    return {name: value for name, (_, _, value) in targets.items()}, sim
