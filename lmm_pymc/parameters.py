"""Parameters of the linear mixed model, their validation and their names.

The model (:mod:`lmm_pymc.design`), per grouping factor ``f`` and level ``j``::

    y = X beta + sum_f (Z_f * b_f[g_f]).sum(1) + e,   e ~ N(0, sigma^2)
    b_f[j] ~ N(0, Sigma_f),                           Sigma_f = diag(sigs_f) R_f diag(sigs_f)

``beta`` are the fixed effects, ``sigs_f`` the standard deviations of factor f's random
effects, ``R_f`` their correlation matrix and ``sigma`` the residual standard deviation.

Names, the same in every parametrization, in the posterior and in :class:`Truth`:
``beta[<fixed effect>]``, ``sigma``, ``sigs[<effect>|<factor>]`` (coord ``random_effect``),
``R[<a>|<factor>, <b>|<factor>]`` (block diagonal over the factors) and, per factor with key
``k``, ``b_k[<level>, <effect>|<factor>]``. This module knows nothing about PyMC or Stan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .design import Design

__all__ = [
    "FactorTruth",
    "Truth",
    "correlation_matrix",
    "covariance_matrix",
    "positive_vector",
    "validate_correlation",
]


def positive_vector(name: str, value: float | Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of standard deviations, found shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, found {arr.tolist()}")
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0 (standard deviations), found {arr.tolist()}")
    return arr


def correlation_matrix(rho: float) -> np.ndarray:
    """The 2 x 2 correlation matrix ``[[1, rho], [rho, 1]]``.

    Raises
    ------
    ValueError
        If ``rho`` is not a finite number with ``|rho| < 1``.
    """
    rho_f = float(rho)
    if not np.isfinite(rho_f) or abs(rho_f) >= 1:
        raise ValueError(f"rho must be a correlation with |rho| < 1, found {rho!r}")
    return np.array([[1.0, rho_f], [rho_f, 1.0]])


def validate_correlation(
    R: np.ndarray | Sequence[Sequence[float]], *, name: str = "R"
) -> np.ndarray:
    """Check that ``R`` is a valid correlation matrix and return it as a float array.

    A valid correlation matrix is square, symmetric, has a unit diagonal and is
    positive definite (so every off-diagonal element satisfies ``|r| < 1``).
    """
    arr = np.asarray(R, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square matrix, found shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, found {arr.tolist()}")
    if not np.allclose(arr, arr.T, rtol=0, atol=1e-12):
        raise ValueError(f"{name} must be symmetric, found {arr.tolist()}")
    if not np.allclose(np.diag(arr), 1.0, rtol=0, atol=1e-12):
        raise ValueError(
            f"{name} must have a unit diagonal, found diagonal {np.diag(arr).tolist()}"
        )
    off = arr[~np.eye(arr.shape[0], dtype=bool)]
    if off.size and np.max(np.abs(off)) >= 1:
        raise ValueError(
            f"{name} must have off-diagonal correlations with |rho| < 1, found {off.tolist()}"
        )
    try:
        np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"{name} must be positive definite, found eigenvalues "
            f"{np.linalg.eigvalsh(arr).tolist()}"
        ) from None
    return arr


def covariance_matrix(
    sigs: Sequence[float] | np.ndarray, R: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """``Sigma = diag(sigs) R diag(sigs)``, after validating both inputs.

    Examples
    --------
    >>> covariance_matrix([3.0, 2.0], correlation_matrix(0.7))
    array([[9. , 4.2],
           [4.2, 4. ]])
    """
    s = positive_vector("sigs", sigs)
    r = validate_correlation(R)
    if r.shape[0] != s.size:
        raise ValueError(
            f"R must be {s.size} x {s.size} to match sigs of length {s.size}, "
            f"found shape {r.shape}"
        )
    # (q, q) = diag(s) @ R @ diag(s)
    return s[:, None] * r * s[None, :]


@dataclass(frozen=True)
class FactorTruth:
    """True group-level parameters of one grouping factor.

    Attributes
    ----------
    sigs : ndarray, shape (q,)
    R : ndarray, shape (q, q)
    b : ndarray, shape (J, q)
        Row ``j`` for the factor's ``labels[j]``.
    """

    sigs: np.ndarray
    R: np.ndarray
    b: np.ndarray

    @property
    def Sigma(self) -> np.ndarray:
        """``diag(sigs) R diag(sigs)``."""
        return covariance_matrix(self.sigs, self.R)


@dataclass(frozen=True)
class Truth:
    """The values behind a simulated data set.

    Attributes
    ----------
    beta : ndarray, shape (p,)
        In the order of ``design.fixed_names``.
    sigma : float or None
        Residual sd (None for a family without one, :mod:`lmm_pymc.families`).
    factors : dict
        Factor name -> :class:`FactorTruth`.
    design : Design
        The design the values belong to (names, labels).
    parameters : dict
        The outcome family's other parameters by name (the negative binomial's ``alpha``).
    """

    beta: np.ndarray
    sigma: float | None
    factors: dict[str, FactorTruth]
    design: Design
    parameters: Mapping[str, float] = field(default_factory=dict)

    def values(self, *, random_effects: bool = False) -> dict[str, tuple[str, dict, float]]:
        """Display name -> (posterior variable, coordinate selection, true value).

        Display names follow ArviZ's summary: ``beta[x]``, ``sigma``, ``sigs[x|g]``,
        ``R[intercept|g, x|g]`` (upper triangle of each correlated factor) and, with
        ``random_effects``, ``b_g[<level>, x|g]``.
        """
        d = self.design
        out: dict[str, tuple[str, dict, float]] = {
            f"beta[{n}]": ("beta", {"fixed_effect": n}, float(v))
            for n, v in zip(d.fixed_names, self.beta, strict=True)
        }
        if self.sigma is not None:
            out["sigma"] = ("sigma", {}, float(self.sigma))
        out.update({name: (name, {}, float(v)) for name, v in self.parameters.items()})
        for f in d.factors:
            t = self.factors[f.name]
            for k, term in enumerate(f.terms):
                out[f"sigs[{term}]"] = ("sigs", {"random_effect": term}, float(t.sigs[k]))
            if f.has_correlation:
                for i in range(f.q):
                    for k in range(i + 1, f.q):
                        a, b = f.terms[i], f.terms[k]
                        sel = {"random_effect": a, "random_effect_": b}
                        out[f"R[{a}, {b}]"] = ("R", sel, float(t.R[i, k]))
        if random_effects:
            for f in d.factors:
                t = self.factors[f.name]
                for j, label in enumerate(f.labels):
                    for k, term in enumerate(f.terms):
                        sel = {f.level_dim: label, f.effect_dim: term}
                        out[f"b_{f.key}[{label}, {term}]"] = (f"b_{f.key}", sel, float(t.b[j, k]))
        return out

    def by_name(self) -> dict[str, float]:
        """Scalar true values by display name (see :meth:`values`)."""
        return {name: value for name, (_, _, value) in self.values().items()}
