"""Parameters of the linear mixed model and their validation.

The model (for group ``j`` and its rows ``i``)::

    y_ij = X_ij beta + Z_ij b_j + e_ij,   e_ij ~ N(0, sigma^2)
    b_j ~ N(0, Sigma),                    Sigma = diag(sigmas) R diag(sigmas)

``beta`` are the fixed effects, ``sigmas`` the standard deviations of the random
effects, ``R`` their correlation matrix and ``sigma`` the residual standard deviation.
This module knows nothing about PyMC or Stan: it holds numbers and checks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "TrueParameters",
    "correlation_matrix",
    "covariance_matrix",
]


def _as_positive_vector(name: str, value: float | Sequence[float] | np.ndarray) -> np.ndarray:
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
    sigmas: Sequence[float] | np.ndarray, R: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """``Sigma = diag(sigmas) R diag(sigmas)``, after validating both inputs.

    Examples
    --------
    >>> covariance_matrix([3.0, 2.0], correlation_matrix(0.7))
    array([[9. , 4.2],
           [4.2, 4. ]])
    """
    s = _as_positive_vector("sigmas", sigmas)
    r = validate_correlation(R)
    if r.shape[0] != s.size:
        raise ValueError(
            f"R must be {s.size} x {s.size} to match sigmas of length {s.size}, "
            f"found shape {r.shape}"
        )
    # (q, q) = diag(s) @ R @ diag(s)
    return s[:, None] * r * s[None, :]


@dataclass(frozen=True)
class TrueParameters:
    """The true values behind a simulated data set.

    Attributes
    ----------
    beta : ndarray, shape (p,)
        Fixed effects; for the tutorial's model ``(alpha_0, beta_0)`` = (intercept, slope).
    sigmas : ndarray, shape (q,)
        Standard deviations of the random effects (``sigs`` in the models).
    R : ndarray, shape (q, q)
        Correlation matrix of the random effects.
    sigma : float
        Residual standard deviation (``sigma_g`` in the models).
    b : ndarray, shape (J, q)
        Per-group random effects, row ``j`` for ``group_labels[j]``.
    group_labels : tuple
        The group labels, in the order of the rows of ``b``.
    fixed_names, random_names : tuple of str
        Names of the fixed and random effects (coords ``fixed_effect``, ``random_effect``).
    """

    beta: np.ndarray
    sigmas: np.ndarray
    R: np.ndarray
    sigma: float
    b: np.ndarray
    group_labels: tuple = field(default=())
    fixed_names: tuple[str, ...] = ("intercept", "x")
    random_names: tuple[str, ...] = ("intercept", "x")

    def __post_init__(self) -> None:
        beta = np.atleast_1d(np.asarray(self.beta, dtype=float))
        if not np.all(np.isfinite(beta)):
            raise ValueError(f"beta must be finite, found {beta.tolist()}")
        sigmas = _as_positive_vector("sigmas", self.sigmas)
        R = validate_correlation(self.R)
        if R.shape[0] != sigmas.size:
            raise ValueError(
                f"R must be {sigmas.size} x {sigmas.size} to match sigmas, found shape {R.shape}"
            )
        sigma = float(self.sigma)
        if not np.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"sigma (residual sd) must be > 0, found {self.sigma!r}")
        b = np.asarray(self.b, dtype=float)
        if b.ndim != 2 or b.shape[1] != sigmas.size:
            raise ValueError(f"b must have shape (n_groups, {sigmas.size}), found {b.shape}")
        labels = (
            tuple(self.group_labels) if len(self.group_labels) else tuple(range(1, b.shape[0] + 1))
        )
        if len(labels) != b.shape[0]:
            raise ValueError(f"group_labels must have {b.shape[0]} entries, found {len(labels)}")
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "sigmas", sigmas)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "group_labels", labels)

    @property
    def Sigma(self) -> np.ndarray:
        """Covariance of the random effects, ``diag(sigmas) R diag(sigmas)``."""
        return covariance_matrix(self.sigmas, self.R)

    @property
    def rho(self) -> float:
        """The correlation of a 2 x 2 ``R`` (random intercepts and slopes)."""
        if self.R.shape != (2, 2):
            raise ValueError(f"rho is defined for a 2 x 2 R, found shape {self.R.shape}")
        return float(self.R[0, 1])

    @property
    def b_vector(self) -> np.ndarray:
        """``b`` interleaved as in the matrix form: (intercept_g1, slope_g1, intercept_g2, ...)."""
        return self.b.reshape(-1)

    def by_name(self) -> dict[str, float | np.ndarray]:
        """True values under the names the PyMC models and the Stan files use."""
        out: dict[str, float | np.ndarray] = {
            "alpha_0": float(self.beta[0]),
            "beta_0": float(self.beta[1]),
            "sigma_g": self.sigma,
            "sigs": self.sigmas,
            "R": self.R,
            "Sigma": self.Sigma,
            "random_group": self.b,
        }
        if self.R.shape == (2, 2):
            out["rho"] = self.rho
        return out
