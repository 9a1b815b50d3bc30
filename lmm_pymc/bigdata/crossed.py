"""Crossed (and nested) factors from files: the integrated factor's sums and its
cross-products with the other factors' levels, block by block.

With several grouping factors the ``marginal`` likelihood integrates one factor ``a``'s
effects out and samples the others'; given the sampled effects it needs
(:class:`lmm_pymc.marginal.CrossedStatistics`), with ``D = [X, W_o, ...]`` (``W_o`` a
sampled factor's (N, J_o q_o) design) and ``Z_a`` the integrated factor's (N, J q) design:

- per level of ``a``: the sums of :class:`~lmm_pymc.design.GroupStatistics` (``n``,
  ``Z'Z``, ...);
- ``D'D`` (P x P), ``D'y``, ``y'y`` and ``Z_a'D`` (J q x P), ``Z_a'y``.

All are sums over rows, so every block is reduced to them (sparse matrices: a block
touches few levels) and the blocks are added up. The levels of every factor are found
first, in one pass over the grouping columns alone, so that every block indexes them
alike (sorted labels). The outcome is summed less a shift (its mean in the files' first
rows times the intercept column), which keeps ``e0'e0`` free of cancellation
(:meth:`~lmm_pymc.marginal.CrossedStatistics.from_sums`). What travels from a worker is
one block's sums: O(levels touched x effects) numbers, never rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design import GroupedStatistics, GroupStatistics, factor_labels
from ..formula import grouping_column
from ..marginal.statistics import CrossedStatistics, block_design
from .coding import BlockCoding

__all__ = ["FILE_CROSS_PRODUCT_LIMIT", "CrossedLayout", "add_sums", "block_sums", "statistics"]

#: Largest dense ``Z_a'D`` made from files (numbers): 1e8 (800 MB). In memory the rows are a
#: fallback beyond :data:`~lmm_pymc.marginal.CROSS_PRODUCT_LIMIT`; from files there are none.
FILE_CROSS_PRODUCT_LIMIT = 100_000_000


class CrossedLayout:
    """Where each factor's levels sit: the sorted raw labels of every factor (found in
    every file), the integrated factor and the columns of ``D``."""

    def __init__(self, coding: BlockCoding, levels: list[pd.Index], integrate: str | None):
        self.coding = coding
        self.levels = levels
        counts = [len(x) for x in levels]
        for group, n in zip(coding.groups, counts, strict=True):
            if n < 2:
                raise ValueError(
                    f"column {group!r} must have at least 2 levels to estimate group-level "
                    f"variation, found {n}"
                )
        if integrate is None:  # the factor with the most levels (the first of equals)
            self.integrated = int(np.argmax(counts))
        elif integrate in coding.groups:
            self.integrated = coding.groups.index(integrate)
        else:
            raise ValueError(
                f"integrate must name a grouping factor among {list(coding.groups)}, found "
                f"{integrate!r}"
            )
        self.others = [k for k in range(len(levels)) if k != self.integrated]
        widths = [counts[k] * len(coding.terms[k].effect_names) for k in self.others]
        self.P = len(coding.fixed_names) + sum(widths)
        term = coding.terms[self.integrated]
        self.Jq = counts[self.integrated] * len(term.effect_names)
        if self.Jq * self.P > FILE_CROSS_PRODUCT_LIMIT:
            raise ValueError(
                f"crossed factors from files: integrating out {term.group!r} needs a "
                f"{self.Jq} x {self.P} cross-product matrix ({self.Jq * self.P:.3g} numbers), "
                f"more than {FILE_CROSS_PRODUCT_LIMIT:.0e}; integrate out another factor "
                f"(integrate=...) or fit the rows"
            )

    def codes(self, block: pd.DataFrame, k: int) -> np.ndarray:
        """The position of each row's level of factor ``k`` among its sorted labels."""
        raw = grouping_column(block, self.coding.groups[k])
        return pd.Categorical(raw, categories=self.levels[k]).codes.astype(np.int64)


def block_sums(block: pd.DataFrame, layout: CrossedLayout, shift: float) -> tuple[dict, np.ndarray]:
    """A block's sums (module docstring) of the outcome less ``shift``, and its counts of
    missing labels and non-finite values (:meth:`BlockCoding.counts`)."""
    from scipy import sparse

    coding = layout.coding
    counts = coding.counts(block)
    if counts.any() or len(block) == 0:  # an error is raised from the counts
        return {}, counts
    X, Zs, y = coding.code(block)
    a = layout.integrated
    index = [layout.codes(block, k) for k in range(len(Zs))]
    J = len(layout.levels[a])
    D = sparse.hstack([sparse.csr_matrix(X),
                       *(block_design(index[k], Zs[k], len(layout.levels[k]))
                         for k in layout.others)]).tocsr()  # fmt: skip
    Za = block_design(index[a], Zs[a], J).tocsc()
    ys = y - shift
    sums = {
        "grouped": GroupStatistics.from_rows(X, Zs[a], y, index[a], J),
        "DtD": (D.T @ D).tocsr(), "Dty": D.T @ ys, "yty": float(ys @ ys),
        "ZtD": (Za.T @ D).tocsr(), "Zty": Za.T @ ys,
    }  # fmt: skip
    return sums, counts


def add_sums(*parts: tuple[dict, np.ndarray]) -> tuple[dict, np.ndarray]:
    """The sum of several blocks' ``(sums, counts)``."""
    counts = sum(c for _, c in parts)
    filled = [s for s, _ in parts if s]
    if not filled:
        return {}, counts
    out = dict(filled[0])
    for sums in filled[1:]:
        for key, value in sums.items():
            if key == "grouped":
                out[key] = GroupStatistics(*(getattr(out[key], f) + getattr(value, f)
                                             for f in _FIELDS))  # fmt: skip
            else:
                out[key] = out[key] + value
    return out, counts


_FIELDS = ("n", "XtX", "XtZ", "ZtZ", "Xty", "Zty", "yty")


def statistics(layout: CrossedLayout, sums: dict, shift: float) -> GroupedStatistics:
    """The summed blocks as :class:`GroupedStatistics` of the integrated factor with its
    :class:`~lmm_pymc.marginal.CrossedStatistics`."""
    coding, a = layout.coding, layout.integrated
    factors = []
    for k, term in enumerate(coding.terms):
        _, labels = factor_labels(pd.Series(layout.levels[k]), term.group)
        factors.append(term.factor(labels))
    grouped = sums["grouped"]
    missing = np.flatnonzero(grouped.n == 0)
    if missing.size:  # impossible unless files changed between the passes
        raise ValueError(
            f"column {coding.groups[a]!r}: levels {list(layout.levels[a][missing[:5]])} "
            "were found in the files' labels but hold no rows"
        )
    theta_shift = np.zeros(layout.P)
    if "intercept" in coding.fixed_names:
        theta_shift[coding.fixed_names.index("intercept")] = shift
    dense = {"n": grouped.n, "ZtZ": grouped.ZtZ, "DtD": sums["DtD"].toarray(),
             "Dty": np.asarray(sums["Dty"]), "yty": sums["yty"],
             "ZtD": sums["ZtD"].toarray(), "Zty": np.asarray(sums["Zty"])}  # fmt: skip
    crossed = CrossedStatistics.from_sums(
        factors[a], tuple(factors[k] for k in layout.others), dense,
        shift=theta_shift, position=a,
    )  # fmt: skip
    return GroupedStatistics(grouped, coding.fixed_names, factors[a], crossed)
