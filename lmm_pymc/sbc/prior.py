"""The prior side of SBC: numpy draws from :class:`~lmm_pymc.Priors` and a data set
simulated from them by :func:`lmm_pymc.simulate`.

Ranked quantities and their true values come from
:meth:`lmm_pymc.Truth.values` (``random_effects=True``), the same names, posterior
selections and values as the recovery table.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

from .. import tutorial
from ..parameters import Truth
from ..priors import Priors
from ..simulation import Simulation, simulate
from .config import SBCConfig

__all__ = [
    "Target",
    "draw_prior",
    "parameter_names",
    "ranked_targets",
    "simulate_from_prior",
    "simulate_targets",
    "true_values",
]

#: One ranked quantity: (posterior variable, coordinate selection, true value).
Target = tuple[str, dict, float]


def draw_prior(priors: Priors, rng: np.random.Generator) -> dict[str, object]:
    """One draw of the tutorial model's parameters from ``priors``, with numpy.

    ``beta`` (intercept, slope) from ``priors.fixed``, ``sigma`` from ``priors.sigma``,
    ``sigs`` from ``priors.sigs`` (each :meth:`lmm_pymc.priors.Prior.draw`, so any prior
    family) and, for the 2 x 2 ``R ~ LKJ(eta)``, ``rho = 2 Beta(eta, eta) - 1`` (the
    marginal of LKJ for one correlation), in this order from ``rng``. Per-term priors
    (``priors.terms``) are not used (:class:`SBCConfig` refuses them).

    Parameters
    ----------
    priors : Priors
    rng : numpy.random.Generator
        The only source of randomness.

    Returns
    -------
    dict
        ``beta`` (2 floats), ``sigs`` (2 floats), ``rho`` and ``sigma``: the keyword
        arguments of :func:`lmm_pymc.tutorial.parameters`.

    Raises
    ------
    TypeError
        If ``priors`` is not a :class:`~lmm_pymc.Priors` or ``rng`` not a Generator.
    """
    if not isinstance(priors, Priors):
        raise TypeError(f"priors must be a lmm_pymc.Priors, found {type(priors).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, found {type(rng).__name__}")
    beta = priors.fixed.draw(rng, 2)
    sigma = priors.sigma.draw(rng)
    sigs = priors.sigs.draw(rng, 2)
    rho = 2.0 * rng.beta(priors.lkj_eta, priors.lkj_eta) - 1.0
    return {
        "beta": (float(beta[0]), float(beta[1])),
        "sigs": (float(sigs[0]), float(sigs[1])),
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
def _ranked_names(
    n_groups: int, n_per_group: int, random_effect_groups: tuple[int, ...]
) -> tuple[str, ...]:
    sim = simulate(data=tutorial.design_frame(n_groups, n_per_group), seed=0)
    return tuple(ranked_targets(sim.truth, random_effect_groups))


def parameter_names(config: SBCConfig) -> tuple[str, ...]:
    """Names of the quantities ranked under ``config``, in the package's naming
    (``beta[x]``, ``sigma``, ``sigs[x|group_id]``, ``R[intercept|group_id, x|group_id]``,
    then ``b_group_id[<label>, <effect>|group_id]`` of the ranked groups); they do not
    depend on the parameter values."""
    return _ranked_names(config.n_groups, config.n_per_group, config.random_effect_groups)


def simulate_targets(config: SBCConfig, index: int) -> tuple[dict[str, Target], Simulation]:
    """Prior draw and data set of simulation ``index``, seeded by ``[config.seed, index]``.

    Returns
    -------
    targets : dict
        Display name -> (posterior variable, selection, true value) of every ranked
        quantity (:func:`ranked_targets`).
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
    return ranked_targets(sim.truth, config.random_effect_groups), sim


def true_values(targets: Mapping[str, Target]) -> dict[str, float]:
    """Display name -> true value of ``targets`` (:func:`ranked_targets`)."""
    return {name: value for name, (_, _, value) in targets.items()}


def simulate_from_prior(config: SBCConfig, index: int) -> tuple[dict[str, float], Simulation]:
    """Prior draw and data set of simulation ``index``, seeded by ``[config.seed, index]``.

    Returns
    -------
    truth : dict
        Display name -> true value of every ranked quantity (:func:`ranked_targets`).
    simulation : Simulation
        From :func:`lmm_pymc.simulate` on ``tutorial.design_frame(n_groups, n_per_group)``.
    """
    targets, sim = simulate_targets(config, index)
    return true_values(targets), sim
