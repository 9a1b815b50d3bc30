"""The design of the tutorial's model ``y ~ 1 + x + (1 + x | group)`` in matrix form.

For ``N`` rows in ``J`` groups::

    X : (N, 2)     columns (intercept, x)             fixed-effects design
    Z : (N, 2 J)   block diagonal, sparse             random-effects design
    b : (2 J,)     (intercept_g1, slope_g1, intercept_g2, slope_g2, ...)

so that ``Z b`` equals the row-wise form ``sum(X * b[group], axis=1)`` used by the
tutorial's R script (here the random-effects columns equal the fixed ones).
This module knows nothing about PyMC or Stan.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["Design", "EFFECT_NAMES", "GroupStatistics"]

#: Names of the fixed and the random effects of the tutorial's model (coords
#: ``fixed_effect`` and ``random_effect``).
EFFECT_NAMES: tuple[str, str] = ("intercept", "x")


def _finite_numeric(name: str, values: object) -> np.ndarray:
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    if not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)):
        raise ValueError(
            f"column {name!r} must be numeric, found dtype {series.dtype} "
            f"(first values {series.head(3).tolist()})"
        )
    arr = series.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"column {name!r} must be finite, found {arr[rows[0]]} at row {rows[0]} "
            f"({bad.sum()} non-finite value(s) in total)"
        )
    return arr


@dataclass(frozen=True)
class GroupStatistics:
    """Per-group sufficient statistics of the Gaussian LMM.

    Shapes for ``J`` groups, ``p`` fixed and ``q`` random effects: ``n`` (J,),
    ``XtX`` (J, p, p), ``XtZ`` (J, p, q), ``ZtZ`` (J, q, q), ``Xty`` (J, p),
    ``Zty`` (J, q), ``yty`` (J,).
    """

    n: np.ndarray
    XtX: np.ndarray
    XtZ: np.ndarray
    ZtZ: np.ndarray
    Xty: np.ndarray
    Zty: np.ndarray
    yty: np.ndarray


@dataclass(frozen=True)
class Design:
    """Design matrices and grouping of ``y ~ 1 + x + (1 + x | group)``.

    Build it with :meth:`from_dataframe` or :meth:`from_arrays`; both validate input.

    Attributes
    ----------
    x : ndarray, shape (N,)
        The predictor.
    group_index : ndarray of int, shape (N,)
        Position of each row's group in ``group_labels``.
    group_labels : tuple
        The user's group labels, in order of first appearance, one per group.
    y : ndarray, shape (N,), or None
        The outcome, absent for a design used only to simulate.
    """

    x: np.ndarray
    group_index: np.ndarray
    group_labels: tuple
    y: np.ndarray | None = None
    fixed_names: tuple[str, ...] = field(default=EFFECT_NAMES)
    random_names: tuple[str, ...] = field(default=EFFECT_NAMES)

    # ----------------------------------------------------------------- builders
    @classmethod
    def from_arrays(
        cls,
        x: Sequence[float] | np.ndarray,
        group: Sequence[object] | np.ndarray,
        y: Sequence[float] | np.ndarray | None = None,
    ) -> Design:
        """Validate ``x``, ``group`` (any hashable labels) and optional ``y``."""
        frame = {"x": np.asarray(x), "group": np.asarray(group)}
        if y is not None:
            frame["y"] = np.asarray(y)
        lengths = {k: len(v) for k, v in frame.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"x, group and y must have the same length, found {lengths}")
        return cls.from_dataframe(
            pd.DataFrame(frame), y="y" if y is not None else None, x="x", group="group"
        )

    @classmethod
    def from_dataframe(
        cls,
        data: pd.DataFrame,
        *,
        y: str | None = "y",
        x: str = "x",
        group: str = "group_id",
    ) -> Design:
        """Build the design from a data frame with an outcome, a predictor and a group column.

        Parameters
        ----------
        data : pandas.DataFrame
            One row per observation.
        y, x, group : str
            Column names of the outcome (``None`` for a design without outcome), the
            predictor and the grouping factor.

        Raises
        ------
        ValueError
            On a missing column, non-numeric or non-finite ``x`` or ``y``, missing group
            labels, or fewer than two groups. Groups with a single row give a warning:
            the model is still defined, but such a group tells little about its slope.
        """
        if not isinstance(data, pd.DataFrame):
            raise ValueError(f"data must be a pandas DataFrame, found {type(data).__name__}")
        needed = [c for c in (y, x, group) if c is not None]
        missing = [c for c in needed if c not in data.columns]
        if missing:
            raise ValueError(
                f"data is missing column(s) {missing}; expected columns {needed}, "
                f"found {list(data.columns)}"
            )
        if len(data) == 0:
            raise ValueError("data must have at least one row, found 0 rows")
        x_arr = _finite_numeric(x, data[x])
        y_arr = _finite_numeric(y, data[y]) if y is not None else None
        groups = data[group]
        if groups.isna().any():
            row = int(np.flatnonzero(groups.isna().to_numpy())[0])
            raise ValueError(
                f"column {group!r} must not contain missing labels, found NaN at row {row}"
            )
        codes, labels = pd.factorize(groups, sort=False)  # order of first appearance
        if len(labels) < 2:
            raise ValueError(
                f"column {group!r} must have at least 2 groups to estimate group-level "
                f"variation, found {len(labels)} ({list(labels)})"
            )
        sizes = np.bincount(codes, minlength=len(labels))
        singles = labels[sizes == 1].tolist()
        if singles:
            warnings.warn(
                f"column {group!r} has {len(singles)} group(s) with one row ({singles[:5]}): "
                "their random slopes are informed by the prior and the other groups only",
                UserWarning,
                stacklevel=2,
            )
        return cls(
            x=x_arr,
            group_index=codes.astype(np.int64),
            group_labels=tuple(labels.tolist()),
            y=y_arr,
        )

    def with_y(self, y: np.ndarray) -> Design:
        """The same design with a new outcome vector."""
        y_arr = np.asarray(y, dtype=float)
        if y_arr.shape != (self.n_obs,):
            raise ValueError(f"y must have shape ({self.n_obs},), found {y_arr.shape}")
        if not np.all(np.isfinite(y_arr)):
            raise ValueError("y must be finite, found non-finite values")
        return replace(self, y=y_arr)

    # --------------------------------------------------------------- properties
    @property
    def n_obs(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_groups(self) -> int:
        return len(self.group_labels)

    @property
    def group_sizes(self) -> np.ndarray:
        """Rows per group, shape (J,)."""
        return np.bincount(self.group_index, minlength=self.n_groups)

    @property
    def X(self) -> np.ndarray:
        """Fixed-effects design, shape (N, 2): columns (intercept, x)."""
        return np.column_stack([np.ones(self.n_obs), self.x])

    @property
    def Z_rows(self) -> np.ndarray:
        """Per-row random-effects design, shape (N, 2); equals ``X`` in this model."""
        return self.X

    @property
    def Z(self) -> sp.csr_matrix:
        """Block-diagonal random-effects design, sparse, shape (N, 2 J).

        Row ``i`` of group ``j`` holds ``Z_rows[i]`` in columns ``2 j`` and ``2 j + 1``,
        matching the interleaved ``b`` = (intercept_g1, slope_g1, intercept_g2, ...).
        """
        q = self.Z_rows.shape[1]
        rows = np.repeat(np.arange(self.n_obs), q)
        cols = (self.group_index[:, None] * q + np.arange(q)[None, :]).reshape(-1)
        return sp.csr_matrix(
            (self.Z_rows.reshape(-1), (rows, cols)), shape=(self.n_obs, q * self.n_groups)
        )

    def coords(self) -> dict[str, list]:
        """Named coordinates shared by every parametrization and the Stan output."""
        return {
            "obs": list(range(self.n_obs)),
            "group": list(self.group_labels),
            "fixed_effect": list(self.fixed_names),
            "random_effect": list(self.random_names),
            "random_effect_": list(self.random_names),
        }

    def group_statistics(self) -> GroupStatistics:
        """Per-group sums ``n, X'X, X'Z, Z'Z, X'y, Z'y, y'y`` (needs ``y``)."""
        if self.y is None:
            raise ValueError("group_statistics needs an outcome y, found a design without y")
        J, g = self.n_groups, self.group_index
        X, Zr, y = self.X, self.Z_rows, self.y

        def per_group(values: np.ndarray) -> np.ndarray:
            # sum rows of `values` (N, ...) within each group -> (J, ...)
            out = np.zeros((J,) + values.shape[1:])
            np.add.at(out, g, values)
            return out

        return GroupStatistics(
            n=self.group_sizes.astype(float),
            XtX=per_group(X[:, :, None] * X[:, None, :]),
            XtZ=per_group(X[:, :, None] * Zr[:, None, :]),
            ZtZ=per_group(Zr[:, :, None] * Zr[:, None, :]),
            Xty=per_group(X * y[:, None]),
            Zty=per_group(Zr * y[:, None]),
            yty=per_group(y * y),
        )
