"""The tutorial's experiment as one instance of the package's general model.

The tutorial *Simulation-based linear mixed effect regression models with Stan* simulates
``y ~ 1 + x + (1 + x | group_id)``: 3 groups of 10 rows with ``x = 1..10`` in every group,
fixed intercept 6 and slope 4, random intercepts and slopes with sds 3 and 2 and
correlation 0.7, residual sd 1. This module holds that formula, that design and those
values; :func:`lmm_pymc.simulate` with no arguments simulates from them, seed for seed
the numbers the package has always produced.

Examples
--------
>>> from lmm_pymc import simulate
>>> simulate(seed=1).data["fixed_outcome"].head(3).tolist()
[10.0, 14.0, 18.0]
>>> sim = simulate(data=design_frame(n_groups=30, n_per_group=20), seed=3)
>>> len(sim.data)
600
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .checks import positive_int
from .parameters import correlation_matrix

__all__ = [
    "BETA",
    "FORMULA",
    "GROUP",
    "RHO",
    "SEED",
    "SIGMA",
    "SIGS",
    "design_frame",
    "formula",
    "parameters",
]

#: The tutorial's model.
FORMULA = "y ~ 1 + x + (1 + x | group_id)"
#: Its grouping factor (a column of :func:`design_frame`).
GROUP = "group_id"
#: Fixed intercept and slope.
BETA: tuple[float, float] = (6.0, 4.0)
#: Standard deviations of the random intercepts and slopes.
SIGS: tuple[float, float] = (3.0, 2.0)
#: Correlation of the random intercepts and slopes.
RHO = 0.7
#: Residual standard deviation.
SIGMA = 1.0
#: The seed of the tutorial's data set in the demo, the notebook and the benchmark.
SEED = 2024


def formula(y: str = "y", x: str = "x", group: str = GROUP) -> str:
    """The tutorial's formula on other column names: ``y ~ 1 + x + (1 + x | group)``."""
    return f"{y} ~ 1 + {x} + (1 + {x} | {group})"


def _x_per_group(
    n_groups: int,
    n_per_group: int,
    group_sizes: Sequence[int] | None,
    x: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None,
) -> list[np.ndarray]:
    """The predictor values of every group (a list of J 1-D arrays)."""
    if x is not None and group_sizes is not None:
        raise ValueError("give either x or group_sizes, not both (x already fixes the sizes)")
    if group_sizes is not None:
        sizes = [positive_int("group_sizes[...]", s) for s in group_sizes]
        if len(sizes) != n_groups:
            raise ValueError(
                f"group_sizes must have n_groups={n_groups} entries, found {len(sizes)}"
            )
        return [np.arange(1.0, s + 1.0) for s in sizes]
    if x is None:
        return [np.arange(1.0, n_per_group + 1.0) for _ in range(n_groups)]
    shared = (isinstance(x, np.ndarray) and x.ndim == 1) or (
        not isinstance(x, np.ndarray) and len(x) and np.ndim(x[0]) == 0
    )
    if shared:
        per_group = [np.asarray(x, dtype=float)] * n_groups
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


def design_frame(
    n_groups: int = 3,
    n_per_group: int = 10,
    *,
    group_sizes: Sequence[int] | None = None,
    x: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None = None,
    group_labels: Sequence[object] | None = None,
) -> pd.DataFrame:
    """The tutorial's design as a data frame: columns ``intercept``, ``x``, ``group_id``.

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
        Labels of the groups (default ``1..J``), strings allowed; rows appear group by
        group in this order.
    """
    n_groups = positive_int("n_groups", n_groups)
    n_per_group = positive_int("n_per_group", n_per_group)
    labels = tuple(range(1, n_groups + 1)) if group_labels is None else tuple(group_labels)
    if len(labels) != n_groups or len(set(labels)) != n_groups:
        raise ValueError(f"group_labels must be {n_groups} distinct labels, found {list(labels)}")
    xs = _x_per_group(n_groups, n_per_group, group_sizes, x)
    return pd.DataFrame(
        {
            "intercept": 1.0,
            "x": np.concatenate(xs),
            GROUP: np.concatenate([[labels[j]] * len(v) for j, v in enumerate(xs)]),
        }
    )


def parameters(
    *,
    beta: Sequence[float] = BETA,
    sigs: Sequence[float] = SIGS,
    rho: float = RHO,
    R: np.ndarray | Sequence[Sequence[float]] | None = None,
    sigma: float = SIGMA,
) -> dict[str, object]:
    """Keyword arguments ``beta, groups, sigma`` of :func:`lmm_pymc.simulate` for the
    tutorial's formula: fixed intercept and slope, the sds of the random intercepts and
    slopes, their correlation ``rho`` (or the 2 x 2 ``R``) and the residual sd."""
    beta_arr = np.asarray(beta, dtype=float)
    if beta_arr.shape != (2,) or not np.all(np.isfinite(beta_arr)):
        raise ValueError(f"beta must be two finite numbers (intercept, slope), found {beta!r}")
    if len(np.atleast_1d(sigs)) != 2:
        raise ValueError(f"sigs must have 2 entries (intercept, slope), found {sigs!r}")
    R_arr = correlation_matrix(rho) if R is None else np.asarray(R, dtype=float)
    return {
        "beta": {"intercept": float(beta_arr[0]), "x": float(beta_arr[1])},
        "groups": {GROUP: {"sigs": tuple(float(s) for s in sigs), "R": R_arr}},
        "sigma": sigma,
    }
