"""Simulate data from ``y ~ 1 + x + (1 + x | group)`` in matrix form.

The three steps of the tutorial::

    Step 1  fixed_outcome  = X beta                          (N,)
    Step 2  b_j ~ N(0, Sigma), Sigma = diag(sigmas) R diag(sigmas)
            random_outcome = Z b = sum(X * b[group], axis=1) (N,)
    Step 3  y = fixed_outcome + random_outcome + e,  e ~ N(0, sigma^2)

Randomness enters only through ``seed`` (an int, ``None`` or a ``numpy.random.Generator``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .design import Design
from .parameters import TrueParameters, correlation_matrix, covariance_matrix

__all__ = ["SimulatedData", "simulate", "simulate_outcome", "draw_random_effects"]

SeedLike = int | np.random.Generator | None


@dataclass(frozen=True)
class SimulatedData:
    """A simulated data set with the truth behind it.

    Attributes
    ----------
    data : pandas.DataFrame
        The tutorial's columns: ``intercept, x, group_id, y, fixed_outcome, random_outcome``.
    truth : TrueParameters
        beta, sigmas, R, Sigma, residual sd and the per-group random effects ``b`` (J x 2).
    design : Design
        X, the sparse block-diagonal Z and the group index, with ``y`` attached.
    epsilon : ndarray, shape (N,)
        The residuals drawn in Step 3, so that ``y = X beta + Z b + epsilon`` exactly.
    """

    data: pd.DataFrame
    truth: TrueParameters
    design: Design
    epsilon: np.ndarray


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, found {value!r}")
    return int(value)


def _x_per_group(
    n_groups: int,
    n_per_group: int,
    group_sizes: Sequence[int] | None,
    x: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None,
) -> list[np.ndarray]:
    """Resolve the predictor values of every group (a list of J 1-D arrays)."""
    if x is not None and group_sizes is not None:
        raise ValueError("give either x or group_sizes, not both (x already fixes the sizes)")
    if group_sizes is not None:
        sizes = [_positive_int("group_sizes[...]", s) for s in group_sizes]
        if len(sizes) != n_groups:
            raise ValueError(
                f"group_sizes must have n_groups={n_groups} entries, found {len(sizes)}"
            )
        return [np.arange(1.0, s + 1.0) for s in sizes]
    if x is None:
        return [np.arange(1.0, n_per_group + 1.0) for _ in range(n_groups)]
    if (
        isinstance(x, np.ndarray)
        and x.ndim == 1
        or (not isinstance(x, np.ndarray) and len(x) and np.ndim(x[0]) == 0)
    ):
        shared = np.asarray(x, dtype=float)
        per_group = [shared] * n_groups
    else:
        per_group = [np.asarray(v, dtype=float).reshape(-1) for v in x]
        if len(per_group) != n_groups:
            raise ValueError(
                f"x as one array per group must have n_groups={n_groups} arrays, "
                f"found {len(per_group)}"
            )
    for j, v in enumerate(per_group):
        if v.size == 0:
            raise ValueError(f"x for group {j} is empty; every group needs at least one row")
        if not np.all(np.isfinite(v)):
            raise ValueError(
                f"x must be finite, found {v[~np.isfinite(v)][:3].tolist()} in group {j}"
            )
    return per_group


def draw_random_effects(Sigma: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """``n_groups`` draws of ``b_j ~ N(0, Sigma)``, shape (J, q).

    Drawn as ``z @ L'`` with ``z`` standard normal and ``L = chol(Sigma)``.
    """
    L = np.linalg.cholesky(Sigma)
    return rng.standard_normal((n_groups, Sigma.shape[0])) @ L.T


def simulate_outcome(
    design: Design, truth: TrueParameters, seed: SeedLike = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``y = X beta + Z b + e`` for a design and known ``b``; returns ``(y, e)``."""
    if truth.b.shape[0] != design.n_groups:
        raise ValueError(
            f"truth.b must have {design.n_groups} rows (groups), found {truth.b.shape[0]}"
        )
    rng = np.random.default_rng(seed)
    # (N,) = X @ beta + (Z_rows * b[group]).sum(1)
    mean = design.X @ truth.beta + np.sum(design.Z_rows * truth.b[design.group_index], axis=1)
    e = rng.normal(0.0, truth.sigma, size=design.n_obs)
    return mean + e, e


def simulate(
    *,
    n_groups: int = 3,
    n_per_group: int = 10,
    group_sizes: Sequence[int] | None = None,
    x: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None = None,
    group_labels: Sequence[object] | None = None,
    beta: Sequence[float] = (6.0, 4.0),
    sigmas: Sequence[float] = (3.0, 2.0),
    rho: float = 0.7,
    R: np.ndarray | None = None,
    sigma: float = 1.0,
    seed: SeedLike = None,
) -> SimulatedData:
    """Simulate a data set from ``y ~ 1 + x + (1 + x | group)``.

    The defaults are the tutorial's design: 3 groups of 10 rows, ``x = 1..10`` in every
    group, ``beta = (6, 4)``, sds of the random intercepts and slopes 3 and 2,
    correlation 0.7 and residual sd 1, so ``fixed_outcome`` is 10, 14, ..., 46 in every group.

    Parameters
    ----------
    n_groups : int
        Number of groups ``J``.
    n_per_group : int
        Rows per group when neither ``x`` nor ``group_sizes`` is given (``x = 1..n``).
    group_sizes : sequence of int, optional
        Unequal group sizes; group ``j`` then has ``x = 1..group_sizes[j]``.
    x : array or sequence of arrays, optional
        Predictor values: one 1-D array used in every group, or one array per group.
    group_labels : sequence, optional
        Labels of the groups (default ``1..J``), strings allowed.
    beta : (float, float)
        Fixed intercept and slope.
    sigmas : (float, float)
        Standard deviations of the random intercepts and slopes (> 0).
    rho : float
        Correlation of random intercepts and slopes (``|rho| < 1``); ignored if ``R`` is given.
    R : ndarray, optional
        The 2 x 2 correlation matrix (validated: symmetric, unit diagonal, positive definite).
    sigma : float
        Residual standard deviation (> 0).
    seed : int, numpy.random.Generator or None
        The only source of randomness; the same seed gives the same data.

    Returns
    -------
    SimulatedData

    Examples
    --------
    >>> sim = simulate(seed=1)
    >>> sim.data["fixed_outcome"].head(3).tolist()
    [10.0, 14.0, 18.0]
    """
    n_groups = _positive_int("n_groups", n_groups)
    n_per_group = _positive_int("n_per_group", n_per_group)
    beta_arr = np.asarray(beta, dtype=float)
    if beta_arr.shape != (2,) or not np.all(np.isfinite(beta_arr)):
        raise ValueError(f"beta must be two finite numbers (intercept, slope), found {beta!r}")
    R_arr = correlation_matrix(rho) if R is None else np.asarray(R, dtype=float)
    Sigma = covariance_matrix(sigmas, R_arr)  # validates sigmas and R
    if Sigma.shape != (2, 2):
        raise ValueError(f"sigmas must have 2 entries (intercept, slope), found {len(sigmas)}")
    sigma_f = float(sigma)
    if not np.isfinite(sigma_f) or sigma_f <= 0:
        raise ValueError(f"sigma (residual sd) must be > 0, found {sigma!r}")
    labels = tuple(range(1, n_groups + 1)) if group_labels is None else tuple(group_labels)
    if len(labels) != n_groups or len(set(labels)) != n_groups:
        raise ValueError(f"group_labels must be {n_groups} distinct labels, found {list(labels)}")

    rng = np.random.default_rng(seed)
    xs = _x_per_group(n_groups, n_per_group, group_sizes, x)
    x_all = np.concatenate(xs)
    group_all = np.concatenate([[labels[j]] * len(v) for j, v in enumerate(xs)])
    # keep the user's label order: codes follow `labels`, not a sort of them
    design = Design(
        x=x_all,
        group_index=np.repeat(np.arange(n_groups), [len(v) for v in xs]),
        group_labels=labels,
    )

    # Step 2: b (J, 2), one row per group
    b = draw_random_effects(Sigma, n_groups, rng)
    truth = TrueParameters(
        beta=beta_arr,
        sigmas=np.asarray(sigmas, float),
        R=R_arr,
        sigma=sigma_f,
        b=b,
        group_labels=labels,
    )
    # Step 1 and Step 3
    fixed_outcome = design.X @ beta_arr
    random_outcome = np.sum(design.X * b[design.group_index], axis=1)
    y, epsilon = simulate_outcome(design, truth, rng)
    data = pd.DataFrame(
        {
            "intercept": 1.0,
            "x": x_all,
            "group_id": group_all,
            "y": y,
            "fixed_outcome": fixed_outcome,
            "random_outcome": random_outcome,
        }
    )
    return SimulatedData(data=data, truth=truth, design=design.with_y(y), epsilon=epsilon)
