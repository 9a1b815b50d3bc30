"""Simulate a general linear mixed model from a formula, a data frame and parameter values.

For the design of :func:`lmm_pymc.formula.design_from_formula`::

    fixed_outcome  = X beta                                      (N,)
    b_f[j] ~ N(0, Sigma_f),  Sigma_f = diag(sigmas_f) R_f diag(sigmas_f)   per factor f
    random_outcome = sum_f (Z_f * b_f[g_f]).sum(1)               (N,)
    y = fixed_outcome + random_outcome + e,   e ~ N(0, sigma^2)

Randomness enters only through ``seed``. This module knows nothing about PyMC or Stan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .formula import GeneralDesign, design_from_formula
from .parameters import _as_positive_vector, covariance_matrix, validate_correlation

__all__ = ["FactorTruth", "GeneralTruth", "GeneralSimulation", "simulate_from_formula"]

SeedLike = int | np.random.Generator | None


@dataclass(frozen=True)
class FactorTruth:
    """True group-level parameters of one grouping factor.

    Attributes
    ----------
    sigmas : ndarray, shape (q,)
    R : ndarray, shape (q, q)
    b : ndarray, shape (J, q)
        Row ``j`` for the factor's ``labels[j]``.
    """

    sigmas: np.ndarray
    R: np.ndarray
    b: np.ndarray

    @property
    def Sigma(self) -> np.ndarray:
        return covariance_matrix(self.sigmas, self.R)


@dataclass(frozen=True)
class GeneralTruth:
    """The values behind a simulated general data set.

    Attributes
    ----------
    beta : ndarray, shape (p,)
        In the order of ``design.fixed_names``.
    sigma : float
        Residual sd (``sigma_g`` in the models).
    factors : dict
        Factor name -> :class:`FactorTruth`.
    design : GeneralDesign
        The design the values belong to (names, labels).
    """

    beta: np.ndarray
    sigma: float
    factors: dict[str, FactorTruth]
    design: GeneralDesign

    def by_name(self) -> dict[str, float]:
        """Scalar true values under the display names of :func:`general_recovery_table`.

        ``beta[x]``, ``sigma_g``, ``sigs[x|g]`` and ``R[x|g, z|g]`` (upper triangle of each
        correlated factor).
        """
        out = {
            f"beta[{n}]": float(v) for n, v in zip(self.design.fixed_names, self.beta, strict=True)
        }
        out["sigma_g"] = self.sigma
        for f in self.design.factors:
            t = self.factors[f.name]
            for k, term in enumerate(f.terms):
                out[f"sigs[{term}]"] = float(t.sigmas[k])
            if f.correlated:
                for i in range(f.q):
                    for k in range(i + 1, f.q):
                        out[f"R[{f.terms[i]}, {f.terms[k]}]"] = float(t.R[i, k])
        return out


@dataclass(frozen=True)
class GeneralSimulation:
    """A simulated data set: the data frame with ``y`` filled in, the design and the truth."""

    data: pd.DataFrame
    design: GeneralDesign
    truth: GeneralTruth
    epsilon: np.ndarray


def _beta_vector(beta: Mapping[str, float] | Sequence[float], names: tuple[str, ...]) -> np.ndarray:
    if isinstance(beta, Mapping):
        unknown = sorted(set(beta) - set(names))
        missing = [n for n in names if n not in beta]
        if unknown or missing:
            raise ValueError(
                f"beta must give every fixed effect {list(names)}, found unknown {unknown} and "
                f"missing {missing}"
            )
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


def simulate_from_formula(
    formula: str,
    data: pd.DataFrame,
    *,
    beta: Mapping[str, float] | Sequence[float],
    groups: Mapping[str, Mapping[str, object]],
    sigma: float = 1.0,
    seed: SeedLike = None,
) -> GeneralSimulation:
    """Simulate the response of ``formula`` for the predictors in ``data``.

    Parameters
    ----------
    formula : str
        An lme4/brms formula, e.g. ``"y ~ 1 + x1 + x2 + (1 + x1 + x2 | g)"``; its response
        column is created (or overwritten) in the returned data.
    data : pandas.DataFrame
        The predictors and grouping columns.
    beta : mapping or sequence
        Fixed effects, by name (``{"intercept": 1, "x1": 0.5}``) or in the design's order.
    groups : mapping
        Factor name -> ``{"sigmas": [...], "R": q x q matrix}``; ``R`` may be omitted
        (identity) and must be omitted or the identity for an uncorrelated ``||`` term.
        ``"rho"`` gives the correlation of a 2 x 2 ``R``.
    sigma : float
        Residual sd (> 0).
    seed : int, numpy.random.Generator or None
        The only source of randomness.

    Returns
    -------
    GeneralSimulation

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0] * 4, "g": list("aabbccddeeff")})
    >>> sim = simulate_from_formula("y ~ 1 + x + (1 | g)", df, beta=[1.0, 2.0],
    ...                             groups={"g": {"sigmas": [0.5]}}, seed=1)
    >>> sim.truth.factors["g"].b.shape
    (6, 1)
    """
    design = design_from_formula(formula, data, require_response=False)
    if design.response is None:
        raise ValueError(f"formula must name the response to simulate (y ~ ...), found {formula!r}")
    beta_arr = _beta_vector(beta, design.fixed_names)
    sigma_f = float(sigma)
    if not np.isfinite(sigma_f) or sigma_f <= 0:
        raise ValueError(f"sigma (residual sd) must be > 0, found {sigma!r}")
    if not isinstance(groups, Mapping):
        raise ValueError(
            f"groups must be a mapping factor -> parameters, found {type(groups).__name__}"
        )
    names = [f.name for f in design.factors]
    unknown = sorted(set(groups) - set(names))
    missing = [n for n in names if n not in groups]
    if unknown or missing:
        raise ValueError(
            f"groups must give parameters for every factor {names}, found unknown {unknown} "
            f"and missing {missing}"
        )

    rng = np.random.default_rng(seed)
    factors: dict[str, FactorTruth] = {}
    # (N,) = X beta
    fixed_outcome = design.X @ beta_arr
    random_outcome = np.zeros(design.n_obs)
    for f in design.factors:
        spec = groups[f.name]
        sigmas = _as_positive_vector(f"groups[{f.name!r}]['sigmas']", spec.get("sigmas"))
        if sigmas.size != f.q:
            raise ValueError(
                f"groups[{f.name!r}]['sigmas'] must have {f.q} values for {list(f.terms)}, "
                f"found {sigmas.size}"
            )
        if "R" in spec and "rho" in spec:
            raise ValueError(f"groups[{f.name!r}]: give R or rho, not both")
        if "rho" in spec:
            if f.q != 2:
                raise ValueError(f"groups[{f.name!r}]['rho'] needs q = 2 effects, found q = {f.q}")
            rho = float(spec["rho"])
            R = validate_correlation([[1.0, rho], [rho, 1.0]], name=f"groups[{f.name!r}]['rho']")
        elif "R" in spec:
            R = validate_correlation(spec["R"], name=f"groups[{f.name!r}]['R']")
            if R.shape != (f.q, f.q):
                raise ValueError(
                    f"groups[{f.name!r}]['R'] must be {f.q} x {f.q}, found shape {R.shape}"
                )
        else:
            R = np.eye(f.q)
        if not f.correlated and not np.allclose(R, np.eye(f.q)):
            raise ValueError(
                f"groups[{f.name!r}]['R'] must be the identity for the uncorrelated term "
                f"(... || {f.name}), found {R.tolist()}"
            )
        # (J, q): b_j = L z_j, L = chol(Sigma)
        L = np.linalg.cholesky(covariance_matrix(sigmas, R))
        b = rng.standard_normal((f.n_levels, f.q)) @ L.T
        factors[f.name] = FactorTruth(sigmas=sigmas, R=R, b=b)
        # (N,) += (Z_f * b_f[g_f]).sum(1)
        random_outcome += np.sum(f.Z * b[f.index], axis=1)
    epsilon = rng.normal(0.0, sigma_f, size=design.n_obs)
    y = fixed_outcome + random_outcome + epsilon
    out = data.reset_index(drop=True).copy()
    out[design.response] = y
    design = design.with_y(y)
    truth = GeneralTruth(beta=beta_arr, sigma=sigma_f, factors=factors, design=design)
    return GeneralSimulation(data=out, design=design, truth=truth, epsilon=epsilon)
