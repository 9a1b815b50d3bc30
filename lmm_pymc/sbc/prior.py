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
from ..families import Family
from ..families import family as as_family
from ..parameters import Truth
from ..priors import FAMILY_PARAMETERS, Prior, Priors
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


def _own_prior(priors: Priors, name: str) -> Prior:
    """Prior of an outcome family's own parameter, as the fit resolves it
    (:meth:`lmm_pymc.Priors.resolve`): ``sigma`` from ``priors.sigma``, any other from
    ``priors.terms`` or :data:`lmm_pymc.priors.FAMILY_PARAMETERS`."""
    if name == "sigma":
        return priors.sigma
    return priors.terms.get(name, FAMILY_PARAMETERS[name])


def draw_prior(
    priors: Priors, rng: np.random.Generator, family: Family | None = None
) -> dict[str, object]:
    """One draw of the tutorial model's parameters from ``priors``, with numpy.

    ``beta`` (intercept, slope) from ``priors.fixed``, the outcome family's own parameters
    (the Gaussian's ``sigma`` from ``priors.sigma``, the negative binomial's ``alpha`` from
    ``priors.terms["alpha"]`` or the fit's default, none for the others), ``sigs`` from
    ``priors.sigs`` (each :meth:`lmm_pymc.priors.Prior.draw`, so any prior family) and,
    for the 2 x 2 ``R ~ LKJ(eta)``, ``rho = 2 Beta(eta, eta) - 1`` (the marginal of LKJ for
    one correlation), in this order from ``rng``. Per-term priors of ``beta`` and ``sigs``
    are not used (:class:`SBCConfig` refuses them).

    Parameters
    ----------
    priors : Priors
    rng : numpy.random.Generator
        The only source of randomness.
    family : Family, optional
        The outcome family (:func:`lmm_pymc.families.family`); default the Gaussian.

    Returns
    -------
    dict
        ``beta`` (2 floats), ``sigs`` (2 floats), ``rho`` and the family's own parameters
        by name (``sigma`` for the Gaussian: the keyword arguments of
        :func:`lmm_pymc.tutorial.parameters`).

    Raises
    ------
    TypeError
        If ``priors`` is not a :class:`~lmm_pymc.Priors` or ``rng`` not a Generator.
    """
    if not isinstance(priors, Priors):
        raise TypeError(f"priors must be a lmm_pymc.Priors, found {type(priors).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, found {type(rng).__name__}")
    fam = as_family(family)
    beta = priors.fixed.draw(rng, 2)
    own = {name: float(_own_prior(priors, name).draw(rng)) for name in fam.parameters}
    sigs = priors.sigs.draw(rng, 2)
    rho = 2.0 * rng.beta(priors.lkj_eta, priors.lkj_eta) - 1.0
    return {
        "beta": (float(beta[0]), float(beta[1])),
        "sigs": (float(sigs[0]), float(sigs[1])),
        "rho": float(rho),
        **own,
    }


def _simulate(
    n_groups: int, n_per_group: int, fam: Family, trials: int, theta: Mapping, seed
) -> Simulation:
    """The tutorial's model on ``n_groups x n_per_group`` rows with the parameters
    ``theta`` (:func:`draw_prior`), its outcome drawn from ``fam``; a binomial's rows have
    ``trials`` trials each (column ``n``, ``y | trials(n) ~ ...``)."""
    data = tutorial.design_frame(n_groups, n_per_group)
    kwargs = tutorial.parameters(beta=theta["beta"], sigs=theta["sigs"], rho=theta["rho"])
    kwargs["sigma"] = theta.get("sigma")
    own = {name: theta[name] for name in fam.parameters if name != "sigma"}
    formula = tutorial.FORMULA
    if fam.needs_trials:
        data["n"] = int(trials)
        formula = "y | trials(n) ~ " + tutorial.FORMULA.split("~", 1)[1].strip()
    return simulate(formula, data, **kwargs, **own, family=fam, seed=seed)


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
    n_groups: int, n_per_group: int, random_effect_groups: tuple[int, ...], family: str,
    link: str, trials: int,
) -> tuple[str, ...]:  # fmt: skip
    fam = as_family(family, link)
    theta = {"beta": (0.0, 0.0), "sigs": (1.0, 1.0), "rho": 0.0}
    theta.update({name: 1.0 for name in fam.parameters})
    sim = _simulate(n_groups, n_per_group, fam, trials, theta, 0)
    return tuple(ranked_targets(sim.truth, random_effect_groups))


def parameter_names(config: SBCConfig) -> tuple[str, ...]:
    """Names of the quantities ranked under ``config``, in the package's naming
    (``beta[x]``, the family's own ``sigma`` or ``alpha``, ``sigs[x|group_id]``,
    ``R[intercept|group_id, x|group_id]``, then ``b_group_id[<label>, <effect>|group_id]``
    of the ranked groups); they do not depend on the parameter values."""
    return _ranked_names(config.n_groups, config.n_per_group, config.random_effect_groups,
                         config.family, config.link, config.trials)  # fmt: skip


def simulate_targets(config: SBCConfig, index: int) -> tuple[dict[str, Target], Simulation]:
    """Prior draw and data set of simulation ``index``, seeded by ``[config.seed, index]``.

    Returns
    -------
    targets : dict
        Display name -> (posterior variable, selection, true value) of every ranked
        quantity (:func:`ranked_targets`).
    simulation : Simulation
        From :func:`lmm_pymc.simulate` on ``tutorial.design_frame(n_groups, n_per_group)``
        with ``config``'s outcome family.
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, int(index)]))
    fam = config.outcome_family
    theta = draw_prior(config.priors, rng, fam)
    sim = _simulate(config.n_groups, config.n_per_group, fam, config.trials, theta, rng)
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
