"""The design of a linear mixed model, for any lme4/brms formula, in matrix form.

For ``N`` rows, ``p`` fixed effects and grouping factors ``f = 1..F``::

    y = X beta + sum_f (Z_f * b_f[g_f]).sum(1) + e,     e ~ N(0, sigma^2)
    b_f[j] ~ N(0, Sigma_f)    (q_f x q_f; diagonal for an uncorrelated ``||`` term)

    X   : (N, p)     fixed-effects design, columns named by the formula's terms
    Z_f : (N, q_f)   per-row random-effects design of factor f
    g_f : (N,)       position of each row's level of factor f in ``labels``

Stacked over the levels of every factor, ``Z`` is the sparse (N, sum_f q_f J_f) matrix of
the tutorial's ``y = X beta + Z b + e``. The tutorial, ``y ~ 1 + x + (1 + x | group_id)``,
is one instance (:mod:`lmm_pymc.tutorial`). A :class:`Design` is built from a formula and a
data frame by :func:`lmm_pymc.formula.design_from_formula`.

Per group of a single factor the Gaussian likelihood needs only the sums
``n, X'X, X'Z, Z'Z, X'y, Z'y, y'y`` (:class:`GroupStatistics`), which is what the
integrated-out model (:mod:`lmm_pymc.marginal`) evaluates. This module knows nothing about
PyMC or Stan.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "factor_labels",
    "RESERVED_DIMS",
    "Design",
    "GroupStatistics",
    "GroupedStatistics",
    "GroupingFactor",
    "model_coords",
]

#: Dimension names the models use themselves; a grouping factor may not be called like them.
RESERVED_DIMS: tuple[str, ...] = ("obs", "fixed_effect", "random_effect", "random_effect_")

_STAT_FIELDS = ("n", "XtX", "XtZ", "ZtZ", "Xty", "Zty", "yty")


@dataclass(frozen=True)
class GroupingFactor:
    """One grouping factor and its random effects.

    Attributes
    ----------
    name : str
        The factor as written in the formula (``"subject"``, ``"g:h"``).
    labels : tuple
        The factor's levels, in order of first appearance in the data.
    index : ndarray of int, shape (N,)
        Position of each row's level in ``labels``.
    Z : ndarray, shape (N, q)
        Per-row random-effects design (the columns multiplying ``b[index]``).
    effect_names : tuple of str
        Names of the q random effects (``"intercept"``, ``"x"``, ``"c[b]"``).
    correlated : bool
        ``True`` for ``(... | g)`` (LKJ over q x q), ``False`` for ``(... || g)``.
    """

    name: str
    labels: tuple
    index: np.ndarray
    Z: np.ndarray
    effect_names: tuple[str, ...]
    correlated: bool = True

    @property
    def q(self) -> int:
        return len(self.effect_names)

    @property
    def n_levels(self) -> int:
        return len(self.labels)

    @property
    def key(self) -> str:
        """The factor name usable inside variable names (``g:h`` -> ``g_h``)."""
        return re.sub(r"\W", "_", self.name)

    @property
    def terms(self) -> tuple[str, ...]:
        """Coordinate labels of the random effects, ``"x|subject"``."""
        return tuple(f"{e}|{self.name}" for e in self.effect_names)

    @property
    def level_dim(self) -> str:
        """Dimension of the levels (coords: ``labels``)."""
        return self.name

    @property
    def effect_dim(self) -> str:
        """Dimension of the random effects (coords: ``terms``)."""
        return f"{self.name}_effect"

    @property
    def has_correlation(self) -> bool:
        """Whether the factor has an LKJ correlation matrix (correlated and q >= 2)."""
        return self.correlated and self.q > 1

    @property
    def sizes(self) -> np.ndarray:
        """Rows per level, shape (J,)."""
        return np.bincount(self.index, minlength=self.n_levels)


def model_coords(
    fixed_names: tuple[str, ...], factors: tuple[GroupingFactor, ...], n_obs: int | None
) -> dict[str, list]:
    """Coordinates shared by every parametrization: ``obs`` (if rows are known),
    ``fixed_effect``, ``random_effect`` (all factors' terms) and per factor its levels and
    effects."""
    terms = [t for f in factors for t in f.terms]
    out: dict[str, list] = {} if n_obs is None else {"obs": list(range(n_obs))}
    out.update({"fixed_effect": list(fixed_names), "random_effect": terms, "random_effect_": terms})
    for f in factors:
        out[f.level_dim] = list(f.labels)
        out[f.effect_dim] = list(f.terms)
        out[f.effect_dim + "_"] = list(f.terms)
    return out


#: From this many products (rows x pairs of columns of ``[X, Z, y]``) the per-group sums
#: run as one compiled pass over the rows (numba, without the GIL: blocks of files summed on
#: threads run in parallel; compiled once, then loaded from numba's disk cache in ~0.5 s)
#: instead of a ``numpy.bincount`` per pair of columns (~9 ns per product, ~0.2 s here):
#: 625,000 rows of 15 columns took 0.57 s with bincount, 0.18 s compiled. Both add each
#: group's rows in their order, so the sums are the same to the last bit.
COMPILED_SUMS_FROM = 20_000_000


def _pair_sums(W: np.ndarray, index: np.ndarray, n_groups: int) -> np.ndarray:
    """``G[g] = sum over the rows r of group g of outer(W[r], W[r])`` (rows in order)."""
    N, m = W.shape
    if N * m * (m + 1) // 2 >= COMPILED_SUMS_FROM:
        return _compiled_pair_sums()(np.ascontiguousarray(W), index, n_groups)
    G = np.empty((n_groups, m, m))
    for i in range(m):
        for j in range(i, m):
            G[:, i, j] = np.bincount(index, weights=W[:, i] * W[:, j], minlength=n_groups)
            G[:, j, i] = G[:, i, j]
    return G


def _pair_sums_loop(W, index, n_groups):  # pragma: no cover - compiled by numba
    N, m = W.shape
    G = np.zeros((n_groups, m, m))
    for r in range(N):
        g = index[r]
        for i in range(m):
            for j in range(i, m):
                G[g, i, j] += W[r, i] * W[r, j]
    for i in range(m):
        for j in range(i + 1, m):
            G[:, j, i] = G[:, i, j]
    return G


@functools.cache
def _compiled_pair_sums():
    import numba

    return numba.njit(cache=True, nogil=True)(_pair_sums_loop)


@dataclass(frozen=True)
class GroupStatistics:
    """Per-group sufficient statistics of the Gaussian LMM with one grouping factor.

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

    @classmethod
    def from_rows(
        cls, X: np.ndarray, Z: np.ndarray, y: np.ndarray, index: np.ndarray, n_groups: int
    ) -> GroupStatistics:
        """The sums of rows ``X`` (N, p), ``Z`` (N, q), ``y`` (N,) within each group.

        Every sum of products is one ``numpy.bincount`` over the rows of one product of two
        columns of ``W = [X, Z, y]``: memory O(N) whatever p and q (never an (N, p, p)
        array), and bitwise-symmetric matrices."""
        W = np.column_stack([X, Z, y]).astype(float, copy=False)
        p, q, m = X.shape[1], Z.shape[1], W.shape[1]
        G = _pair_sums(W, np.asarray(index, dtype=np.intp), n_groups)
        x, z = slice(0, p), slice(p, p + q)
        return cls(
            n=np.bincount(index, minlength=n_groups).astype(float),
            XtX=G[:, x, x].copy(), XtZ=G[:, x, z].copy(), ZtZ=G[:, z, z].copy(),
            Xty=G[:, x, m - 1].copy(), Zty=G[:, z, m - 1].copy(), yty=G[:, m - 1, m - 1].copy(),
        )  # fmt: skip

    def check(self) -> tuple[int, int, int]:
        """Validate shapes and values; return ``(J, p, q)``.

        Raises
        ------
        ValueError
            Naming the field, the shape or value found and what was expected.
        """
        arrays = {f: np.asarray(getattr(self, f), dtype=float) for f in _STAT_FIELDS}
        if arrays["n"].ndim != 1 or arrays["n"].shape[0] < 2:
            raise ValueError(
                f"stats.n must have shape (J,) with J >= 2 groups, found shape {arrays['n'].shape}"
            )
        J = arrays["n"].shape[0]
        if arrays["XtZ"].ndim != 3:
            raise ValueError(f"stats.XtZ must have shape (J, p, q), found {arrays['XtZ'].shape}")
        p, q = arrays["XtZ"].shape[1:]
        expected = {"n": (J,), "XtX": (J, p, p), "XtZ": (J, p, q), "ZtZ": (J, q, q),
                    "Xty": (J, p), "Zty": (J, q), "yty": (J,)}  # fmt: skip
        for f, shape in expected.items():
            if arrays[f].shape != shape:
                raise ValueError(f"stats.{f} must have shape {shape}, found {arrays[f].shape}")
            if not np.all(np.isfinite(arrays[f])):
                raise ValueError(f"stats.{f} must be finite, found non-finite values")
        if np.any(arrays["n"] < 1):
            raise ValueError(
                f"stats.n must count at least one row per group, found min {arrays['n'].min()}"
            )
        return J, p, q

    def take(self, order: np.ndarray) -> GroupStatistics:
        """The statistics of the groups at positions ``order``."""
        return GroupStatistics(*(np.asarray(getattr(self, f))[order] for f in _STAT_FIELDS))


@dataclass(frozen=True)
class GroupedStatistics:
    """Per-group sums with the names of the model they belong to: all the integrated-out
    model needs, with or without the rows (e.g. sums accumulated from files).

    Attributes
    ----------
    statistics : GroupStatistics
        One leading row per level of ``factor``.
    fixed_names : tuple of str
        Names of the columns of ``X``.
    factor : GroupingFactor
        The grouping factor (its ``index`` and ``Z`` may be empty when no rows are kept).
    crossed : CrossedStatistics, optional
        With crossed factors: the cross-products with the other factors
        (:class:`lmm_pymc.marginal.CrossedStatistics`), whose effects are sampled while
        ``factor``'s are integrated out; None for one grouping factor.
    """

    statistics: GroupStatistics
    fixed_names: tuple[str, ...]
    factor: GroupingFactor
    crossed: object | None = None  # CrossedStatistics (lmm_pymc.marginal imports this module)

    def __post_init__(self) -> None:
        J, p, q = self.statistics.check()
        if (J, p, q) != (self.factor.n_levels, len(self.fixed_names), self.factor.q):
            raise ValueError(
                f"statistics must have one row per level of {self.factor.name!r} and "
                f"(p, q) = ({len(self.fixed_names)}, {self.factor.q}), found "
                f"(J, p, q) = {(J, p, q)} for {self.factor.n_levels} levels"
            )

    @property
    def factors(self) -> tuple[GroupingFactor, ...]:
        """Every grouping factor, in the formula's order (as a :class:`Design`'s
        ``factors``): ``(factor,)`` for one factor."""
        return (self.factor,) if self.crossed is None else self.crossed.factors

    @property
    def group_labels(self) -> tuple:
        return self.factor.labels

    @property
    def n_obs(self) -> int:
        return int(self.statistics.n.sum())

    def coords(self) -> dict[str, list]:
        return model_coords(self.fixed_names, self.factors, None)

    def reorder(self, group_labels: tuple | list) -> GroupedStatistics:
        """The same statistics with the groups in the order of ``group_labels``."""
        labels = tuple(group_labels)
        position = {label: i for i, label in enumerate(self.group_labels)}
        unknown = [g for g in labels if g not in position]
        if unknown or len(labels) != len(self.group_labels) or len(set(labels)) != len(labels):
            raise ValueError(
                f"group_labels must be a permutation of the {len(self.group_labels)} groups "
                f"found in the data, found {len(labels)} labels, unknown {unknown[:5]}"
            )
        order = np.array([position[g] for g in labels])
        factor = replace(self.factor, labels=labels, index=np.zeros(0, dtype=np.int64),
                         Z=np.zeros((0, self.factor.q)))  # fmt: skip
        crossed = None if self.crossed is None else self.crossed.take(order, factor)
        return GroupedStatistics(self.statistics.take(order), self.fixed_names, factor, crossed)


@dataclass(frozen=True)
class Design:
    """Design of a linear mixed model (see the module docstring).

    Build it with :func:`lmm_pymc.formula.design_from_formula`.

    Attributes
    ----------
    X : ndarray, shape (N, p)
    fixed_names : tuple of str
        Names of the columns of ``X`` (``"intercept"``, ``"x"``, ``"c[b]"``, ``"x:c[b]"``).
    factors : tuple of GroupingFactor
    y : ndarray, shape (N,), or None
        The outcome; absent for a design used only to simulate.
    formula : str
    response : str or None
        Name of the outcome column.
    trials : ndarray, shape (N,), or None
        A binomial outcome's trials per row (``y | trials(n)``, :mod:`lmm_pymc.response`).
    """

    X: np.ndarray
    fixed_names: tuple[str, ...]
    factors: tuple[GroupingFactor, ...]
    y: np.ndarray | None = None
    formula: str = ""
    response: str | None = None
    trials: np.ndarray | None = None

    @property
    def n_obs(self) -> int:
        return int(self.X.shape[0])

    @property
    def terms(self) -> tuple[str, ...]:
        """All random-effect labels, factor after factor (coord ``random_effect``)."""
        return tuple(t for f in self.factors for t in f.terms)

    @property
    def Z(self) -> sp.csr_matrix:
        """Full sparse random-effects design, shape (N, sum_f q_f J_f).

        Factor after factor; within a factor the columns are interleaved per level
        (effects of level 1, effects of level 2, ...), matching ``b_f`` flattened row-wise.
        """
        blocks = []
        for f in self.factors:
            rows = np.repeat(np.arange(self.n_obs), f.q)
            cols = (f.index[:, None] * f.q + np.arange(f.q)[None, :]).reshape(-1)
            blocks.append(
                sp.csr_matrix((f.Z.reshape(-1), (rows, cols)), shape=(self.n_obs, f.q * f.n_levels))
            )
        return sp.hstack(blocks, format="csr")

    def coords(self) -> dict[str, list]:
        """Coordinates of every model of this design (see :func:`model_coords`)."""
        return model_coords(self.fixed_names, self.factors, self.n_obs)

    def factor(self, name: str) -> GroupingFactor:
        for f in self.factors:
            if f.name == name:
                return f
        raise ValueError(f"factor must be one of {[f.name for f in self.factors]}, found {name!r}")

    def with_y(self, y: np.ndarray) -> Design:
        """The same design with a new outcome vector."""
        y_arr = np.asarray(y, dtype=float)
        if y_arr.shape != (self.n_obs,):
            raise ValueError(f"y must have shape ({self.n_obs},), found {y_arr.shape}")
        if not np.all(np.isfinite(y_arr)):
            raise ValueError("y must be finite, found non-finite values")
        return replace(self, y=y_arr)

    def grouped_statistics(self) -> GroupedStatistics:
        """Per-group sums of a single-factor design with outcome.

        Raises
        ------
        ValueError
            Without ``y``, or with more than one grouping factor (crossed factors do not
            factorise by group).
        """
        if self.y is None:
            raise ValueError("design must carry an outcome y, found y=None")
        if len(self.factors) != 1:
            raise ValueError(
                "the per-group sums need exactly one grouping factor, found "
                f"{[f.name for f in self.factors]}"
            )
        (f,) = self.factors
        stats = GroupStatistics.from_rows(self.X, f.Z, self.y, f.index, f.n_levels)
        return GroupedStatistics(stats, self.fixed_names, f)


def factor_labels(raw: pd.Series, name: str) -> tuple[np.ndarray, tuple]:
    """Integer codes (order of first appearance) and labels of a grouping column.

    Labels stay as they are when they are all strings, all integers that fit int64 or all
    finite floats; anything else (integers beyond int64, mixed types) becomes text, which
    every sampler and ArviZ accept as a coordinate.
    """
    codes, uniques = pd.factorize(raw, sort=False)
    values = uniques.tolist()
    kinds = {_label_kind(v) for v in values}
    if len(kinds) > 1 or kinds <= {"other"}:
        text = [str(v) for v in values]
        if len(set(text)) < len(text):
            clash = sorted({t for t in text if text.count(t) > 1})
            raise ValueError(
                f"grouping column {name!r} mixes label types whose text coincides "
                f"({clash[:3]}); expected labels of one type (all text or all numbers)"
            )
        values = text
    elif kinds == {"int"}:
        values = [int(v) for v in values]
    elif kinds == {"float"}:
        values = [float(v) for v in values]
    return codes.astype(np.int64), tuple(values)


def _label_kind(value: object) -> str:
    if isinstance(value, str):
        return "str"
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return "int" if -(2**63) <= int(value) < 2**63 else "other"
    return "float" if isinstance(value, float | np.floating) else "other"
