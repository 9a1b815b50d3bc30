"""Simulate the outcome of any formula's model in matrix form.

For the design of :func:`lmm_pymc.formula.design_from_formula`, the tutorial's three steps::

    Step 1  fixed_outcome  = X beta                                         (N,)
    Step 2  b_f[j] ~ N(0, Sigma_f),  Sigma_f = diag(sigmas_f) R_f diag(sigmas_f)
            random_outcome = Z b = sum_f (Z_f * b_f[g_f]).sum(1)            (N,)
    Step 3  y = fixed_outcome + random_outcome + e,   e ~ N(0, sigma^2)

A binary or count outcome (``family=``, :mod:`lmm_pymc.families`) replaces Step 3 by a
draw from the family given ``eta = fixed_outcome + random_outcome``, e.g.
``y ~ Bernoulli(invlogit(eta))`` or ``y ~ Binomial(n, invlogit(eta))`` with the trials of
the formula's ``y | trials(n)``.

Randomness enters only through ``seed``. With no formula, data or parameters this is the
tutorial's experiment (:mod:`lmm_pymc.tutorial`). This module knows nothing about PyMC or
Stan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import tutorial
from .checks import exact_keys
from .design import Design
from .families import Family, check_design
from .families import family as as_family
from .formula import design_from_formula
from .parameters import (
    FactorTruth,
    Truth,
    covariance_matrix,
    positive_vector,
    validate_correlation,
)

__all__ = ["Simulation", "draw_random_effects", "simulate"]

SeedLike = int | np.random.Generator | None


@dataclass(frozen=True)
class Simulation:
    """A simulated data set with the truth behind it.

    Attributes
    ----------
    data : pandas.DataFrame
        The input columns with the response, ``fixed_outcome`` (X beta) and
        ``random_outcome`` (Z b) filled in; for the tutorial ``intercept, x, group_id, y,
        fixed_outcome, random_outcome``.
    design : Design
        X, the per-factor Z and indices, with ``y`` attached.
    truth : Truth
        beta, residual sd and per factor the sds, correlation and random effects.
    epsilon : ndarray, shape (N,), or None
        The residuals drawn in Step 3, so that ``y = X beta + Z b + epsilon`` exactly (None
        for a non-Gaussian family, whose y is drawn given ``X beta + Z b``).
    family : Family
        The outcome's family and link (:mod:`lmm_pymc.families`).
    """

    data: pd.DataFrame
    design: Design
    truth: Truth
    epsilon: np.ndarray | None
    family: Family = as_family()


def draw_random_effects(Sigma: np.ndarray, n_levels: int, rng: np.random.Generator) -> np.ndarray:
    """``n_levels`` draws of ``b_j ~ N(0, Sigma)``, shape (J, q): ``z @ L'`` with ``z``
    standard normal and ``L = chol(Sigma)``."""
    L = np.linalg.cholesky(Sigma)
    return rng.standard_normal((n_levels, Sigma.shape[0])) @ L.T


def _beta_vector(beta: Mapping[str, float] | Sequence[float], names: tuple[str, ...]) -> np.ndarray:
    if isinstance(beta, Mapping):
        exact_keys("beta", beta, names, "fixed effect")
        arr = np.array([float(beta[n]) for n in names])
    else:
        arr = np.asarray(beta, dtype=float).reshape(-1)
        if arr.shape != (len(names),):
            raise ValueError(
                f"beta must have {len(names)} values for {list(names)}, found {arr.size}"
            )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"beta must be finite, found {arr.tolist()}")
    return arr


def _factor_parameters(f, spec: Mapping[str, object]) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(sigs, R)`` of factor ``f`` from ``{"sigs": ..., "R" or "rho": ...}``."""
    where = f"groups[{f.name!r}]"
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where} must be a mapping with 'sigs', found {type(spec).__name__}")
    unknown = sorted(set(map(str, spec)) - {"sigs", "R", "rho"})
    if unknown or "sigs" not in spec:
        raise ValueError(
            f"{where} takes the keys 'sigs' (required), 'R' or 'rho', "
            f"found {sorted(map(str, spec))}"
        )
    sigs = positive_vector(f"{where}['sigs']", spec.get("sigs"))
    if sigs.size != f.q:
        raise ValueError(
            f"{where}['sigs'] must have {f.q} values for {list(f.terms)}, found {sigs.size}"
        )
    if "R" in spec and "rho" in spec:
        raise ValueError(f"{where}: give R or rho, not both")
    if "rho" in spec:
        if f.q != 2:
            raise ValueError(f"{where}['rho'] needs q = 2 effects, found q = {f.q}")
        rho = float(spec["rho"])
        R = validate_correlation([[1.0, rho], [rho, 1.0]], name=f"{where}['rho']")
    elif "R" in spec:
        R = validate_correlation(spec["R"], name=f"{where}['R']")
        if R.shape != (f.q, f.q):
            raise ValueError(f"{where}['R'] must be {f.q} x {f.q}, found shape {R.shape}")
    else:
        R = np.eye(f.q)
    if not f.correlated and not np.allclose(R, np.eye(f.q)):
        raise ValueError(
            f"{where}['R'] must be the identity for the uncorrelated term (... || {f.name}), "
            f"found {R.tolist()}"
        )
    return sigs, R


def _with_defaults(formula: str, data, beta, groups, sigma, fam: Family):
    """``(data, beta, groups, sigma)``: the tutorial's where not given for its formula;
    an error naming what is missing for any other formula."""
    is_tutorial = formula == tutorial.FORMULA
    if data is None:
        if not is_tutorial:
            raise ValueError(f"data must be given for the formula {formula!r}, found None")
        data = tutorial.design_frame()
    if is_tutorial:
        defaults = tutorial.parameters()
        beta = defaults["beta"] if beta is None else beta
        groups = defaults["groups"] if groups is None else groups
        sigma = defaults["sigma"] if sigma is None and fam.is_gaussian else sigma
    needed = (("beta", beta), ("groups", groups), ("sigma", sigma if fam.is_gaussian else 0))
    missing = [n for n, v in needed if v is None]
    if missing:
        raise ValueError(
            f"{', '.join(missing)} must be given to simulate {formula!r} (only the tutorial's "
            f"formula has default values), found None"
        )
    return data, beta, groups, sigma


def _random_outcome(design: Design, specs: dict, rng: np.random.Generator):
    """Step 2: per factor ``b`` (J_f, q_f), one row per level, and the (N,) sum over the
    factors of ``(Z_f * b_f[g_f]).sum(1)``."""
    factors: dict[str, FactorTruth] = {}
    random_outcome = np.zeros(design.n_obs)
    for f in design.factors:
        sigs, R = specs[f.name]
        b = draw_random_effects(covariance_matrix(sigs, R), f.n_levels, rng)
        factors[f.name] = FactorTruth(sigs=sigs, R=R, b=b)
        random_outcome += np.sum(f.Z * b[f.index], axis=1)
    return factors, random_outcome


def _positive(name: str, value: object, what: str) -> float:
    v = float(value)  # type: ignore[arg-type]
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} ({what}) must be > 0, found {value!r}")
    return v


def _family_parameters(fam: Family, sigma, alpha, nu=None) -> dict[str, float]:
    """The family's own parameters by name, each given exactly where the family has it."""
    given = {"sigma": sigma, "alpha": alpha, "nu": nu}
    extra = [n for n, v in given.items() if v is not None and n not in fam.parameters]
    missing = [n for n in fam.parameters if given[n] is None]
    if extra or missing:
        raise ValueError(
            f"family {fam.name!r} takes the parameter(s) {list(fam.parameters)}, found "
            f"{', '.join(f'{n}={given[n]!r}' for n in extra + missing)}"
        )
    what = {"sigma": "residual sd", "alpha": "negative binomial shape",
            "nu": "Student-t degrees of freedom"}  # fmt: skip
    return {n: _positive(n, given[n], what[n]) for n in fam.parameters}


def simulate(
    formula: str | None = None,
    data: pd.DataFrame | None = None,
    *,
    beta: Mapping[str, float] | Sequence[float] | None = None,
    groups: Mapping[str, Mapping[str, object]] | None = None,
    sigma: float | None = None,
    seed: SeedLike = None,
    family: str | Family | None = None,
    link: str | None = None,
    alpha: float | None = None,
    nu: float | None = None,
) -> Simulation:
    """Simulate the response of ``formula`` for the predictors in ``data``.

    Parameters
    ----------
    formula : str, optional
        An lme4/brms formula, e.g. ``"y ~ 1 + x1 + x2 + (1 + x1 + x2 | g)"``; its response
        column is created (or overwritten) in the returned data. Default: the tutorial's
        ``y ~ 1 + x + (1 + x | group_id)``.
    data : pandas.DataFrame, optional
        The predictors and grouping columns. Default (tutorial's formula only): the
        tutorial's 3 groups x 10 rows, :func:`lmm_pymc.tutorial.design_frame`.
    beta : mapping or sequence, optional
        Fixed effects, by name (``{"intercept": 1, "x": 0.5}``) or in the design's order.
    groups : mapping, optional
        Factor name -> ``{"sigs": [...], "R": q x q matrix}``; ``R`` may be omitted
        (identity) and must be omitted or the identity for an uncorrelated ``||`` term;
        ``"rho"`` gives the correlation of a 2 x 2 ``R``.
    sigma : float, optional
        Residual sd (> 0); families ``gaussian`` and ``student`` (its scale) only.
    seed : int, numpy.random.Generator or None
        The only source of randomness; the same seed gives the same data.
    family, link : str, optional
        The outcome's family and link (:func:`lmm_pymc.families.family`), default
        ``gaussian``; ``beta`` and the random effects are then on the link's scale and a
        binomial formula names its trials, ``"y | trials(n) ~ ..."``.
    alpha : float, optional
        The negative binomial's shape (``var = mu + mu^2 / alpha``); family
        ``negbinomial`` only.
    nu : float, optional
        The Student-t's degrees of freedom (> 0; heavy tails below ~5); family ``student``
        only.

    ``beta``, ``groups`` and ``sigma`` default to the tutorial's values
    (:func:`lmm_pymc.tutorial.parameters`) for the tutorial's formula and are required
    for any other.

    Returns
    -------
    Simulation

    Examples
    --------
    >>> sim = simulate(seed=1)  # the tutorial
    >>> sim.truth.factors["group_id"].Sigma
    array([[9. , 4.2],
           [4.2, 4. ]])
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0] * 4, "g": list("aabbccddeeff")})
    >>> sim = simulate("y ~ 1 + x + (1 | g)", df, beta=[1.0, 2.0],
    ...                groups={"g": {"sigs": [0.5]}}, sigma=1.0, seed=1)
    >>> sim.truth.factors["g"].b.shape
    (6, 1)
    """
    formula = tutorial.FORMULA if formula is None else formula
    fam = as_family(family, link)
    data, beta, groups, sigma = _with_defaults(formula, data, beta, groups, sigma, fam)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, found {type(data).__name__}")
    design = design_from_formula(formula, data, require_response=False)
    if design.response is None:
        raise ValueError(f"formula must name the response to simulate (y ~ ...), found {formula!r}")
    beta_arr = _beta_vector(beta, design.fixed_names)
    params = _family_parameters(fam, sigma, alpha, nu)
    exact_keys("groups", groups, [f.name for f in design.factors], "grouping factor")
    specs = {f.name: _factor_parameters(f, groups[f.name]) for f in design.factors}

    if not fam.is_gaussian:  # the trials of a binomial (given, whole, positive) before drawing
        check_design(fam, design.with_y(np.zeros(design.n_obs)))
    rng = np.random.default_rng(seed)
    # Step 1: (N,) = X beta
    fixed_outcome = design.X @ beta_arr
    # Step 2
    factors, random_outcome = _random_outcome(design, specs, rng)
    # Step 3: y given eta = fixed_outcome + random_outcome
    epsilon = None
    if fam.is_gaussian:
        epsilon = rng.normal(0.0, params["sigma"], size=design.n_obs)
        y = fixed_outcome + random_outcome + epsilon
    else:
        y = fam.draw(rng, fixed_outcome + random_outcome, params, design.trials)
    out = data.reset_index(drop=True).copy()
    out[design.response] = y
    out["fixed_outcome"] = fixed_outcome
    out["random_outcome"] = random_outcome
    design = design.with_y(y)
    truth = Truth(beta=beta_arr, sigma=params.get("sigma"), factors=factors, design=design,
                  parameters={n: v for n, v in params.items() if n != "sigma"})  # fmt: skip
    return Simulation(data=out, design=design, truth=truth, epsilon=epsilon, family=fam)
