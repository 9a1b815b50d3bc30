"""One coding of a formula for every block of the files: :class:`BlockCoding`.

The in-memory design (:func:`lmm_pymc.design_from_formula`) codes a categorical predictor
by the levels it finds in all the rows. A block holds some of them only, so the coding is
fixed once, on a *template*: the first rows of the files plus one row for each level of a
categorical column that they lack (the levels come from one cheap pass over those columns
alone). Every block is then coded by formulae's ``evaluate_new_data`` of the template's
design: the same columns, in the same order, with the same names as in memory. A block's
per-group sums (:class:`~lmm_pymc.design.GroupStatistics` of its rows) are a table indexed
by the group label, so blocks add up by label whatever groups they hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..design import GroupedStatistics, GroupingFactor, GroupStatistics, factor_labels
from ..formula import (
    check_formula,
    column_names,
    formula_columns,
    grouping_column,
    split_terms,
    term_design,
)

__all__ = ["STATEFUL", "BlockCoding"]

#: Transforms whose result depends on all the rows (formulae learns them from the data it
#: sees first): from files they would be learnt from the template alone, so they are refused.
STATEFUL = ("scale(", "center(", "standardize(")


def _numeric(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


@dataclass(frozen=True)
class BlockCoding:
    """The formula's design, fixed on a template, for blocks of rows.

    Attributes
    ----------
    formula, response, group : str
        The formula (as cleaned), its response column and its grouping factor's name.
    columns : tuple of str
        Every column the formula reads (the only ones read from the files).
    numeric : tuple of str
        The numeric columns among them (each block counts their non-finite values).
    fixed_names, effect_names : tuple of str
        The names of the columns of ``X`` and ``Z``, as in memory.
    correlated : bool
        Whether the factor's effects are correlated (``|``) or not (``||``).
    """

    formula: str
    response: str
    group: str
    columns: tuple[str, ...]
    numeric: tuple[str, ...]
    fixed_names: tuple[str, ...]
    effect_names: tuple[str, ...]
    correlated: bool
    fixed_design: object  # formulae's CommonComponent of the fixed part
    random_design: object  # formulae's CommonComponent of the random term's expression

    @classmethod
    def from_template(cls, formula: str, template: pd.DataFrame) -> BlockCoding:
        """The coding of ``formula`` on ``template`` (rows with every level of every
        categorical column); errors name the formula's problem as in memory."""
        rhs, response, cleaned, correlated = check_formula(formula, template, True)
        stateful = [s.rstrip("(") for s in STATEFUL if s in rhs.replace(" ", "")]
        if stateful:
            raise ValueError(
                f"formula {formula!r} uses {stateful}, which depend on all the rows; from "
                "files, transform the columns beforehand"
            )
        fixed_rhs, terms = split_terms(rhs)
        if len(terms) != 1:
            raise ValueError(
                f"formula from files takes one grouping factor, found {[f for _, f in terms]} "
                f"in {formula!r}"
            )
        (expr, group), frame = terms[0], template.reset_index(drop=True)
        fixed = term_design(fixed_rhs, frame, formula, rhs, what="fixed effect")
        random = term_design(expr, frame, formula, rhs, what=f"effect in ({expr} | {group})")
        if not _numeric(frame[response].dtype):
            raise ValueError(
                f"column {response!r} must be numeric, found dtype {frame[response].dtype}"
            )
        used = sorted(formula_columns(rhs, frame) | {response} | set(group.split(":")))
        numeric = tuple(c for c in used if _numeric(frame[c].dtype) and c not in group.split(":"))
        return cls(
            formula=cleaned, response=response, group=group, columns=tuple(used),
            numeric=numeric,
            fixed_names=column_names(fixed, np.asarray(fixed.design_matrix).shape[1]),
            effect_names=column_names(random, np.asarray(random.design_matrix).shape[1]),
            correlated=correlated[group], fixed_design=fixed, random_design=random,
        )  # fmt: skip

    @property
    def widths(self) -> tuple[int, int]:
        """``(p, q)``."""
        return len(self.fixed_names), len(self.effect_names)

    def sums(self, block: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """A block's per-group sums (a frame indexed by label, the statistics flattened in
        the order of :data:`~lmm_pymc.design.GroupStatistics` fields) and its counts
        ``[rows without label, non-finite values of each numeric column...]``."""
        raw = grouping_column(block, self.group)
        values = block[list(self.numeric)].to_numpy(dtype=np.float64, na_value=np.nan)
        counts = np.concatenate([[int(raw.isna().sum())],
                                 np.count_nonzero(~np.isfinite(values), axis=0)])  # fmt: skip
        p, q = self.widths
        width = 2 + p * p + p * q + q * q + p + q
        if counts.any() or len(block) == 0:  # an error is raised from the counts
            return pd.DataFrame(np.zeros((0, width))), counts.astype(np.int64)
        frame = block.reset_index(drop=True)
        X = np.asarray(self.fixed_design.evaluate_new_data(frame)).astype(float)
        Z = np.asarray(self.random_design.evaluate_new_data(frame)).astype(float)
        y = frame[self.response].to_numpy(dtype=np.float64)
        codes, labels = pd.factorize(raw, sort=False)
        stats = GroupStatistics.from_rows(X, Z, y, codes, len(labels))
        table = np.column_stack([
            stats.n, stats.XtX.reshape(len(labels), -1), stats.XtZ.reshape(len(labels), -1),
            stats.ZtZ.reshape(len(labels), -1), stats.Xty, stats.Zty, stats.yty,
        ])  # fmt: skip
        return pd.DataFrame(table, index=pd.Index(labels)), counts.astype(np.int64)

    def check_counts(self, counts: np.ndarray) -> None:
        """``ValueError`` naming the column of any missing label or non-finite value."""
        if counts[0]:
            raise ValueError(
                f"column {self.group!r} must not contain missing labels, found {counts[0]}"
            )
        for name, bad in zip(self.numeric, counts[1:], strict=True):
            if bad:
                raise ValueError(
                    f"column {name!r} must be finite, found {bad} non-finite value(s)"
                )

    def grouped(self, table: pd.DataFrame) -> GroupedStatistics:
        """The summed table (one row per label, sorted) as :class:`GroupedStatistics`."""
        if len(table) < 2:
            raise ValueError(
                f"column {self.group!r} must have at least 2 groups to estimate group-level "
                f"variation, found {len(table)} ({list(table.index)})"
            )
        p, q = self.widths
        J, values = len(table), table.to_numpy(dtype=float)
        cuts = np.cumsum([1, p * p, p * q, q * q, p, q])
        n, XtX, XtZ, ZtZ, Xty, Zty, yty = np.split(values, cuts, axis=1)
        stats = GroupStatistics(
            n=n[:, 0], XtX=XtX.reshape(J, p, p), XtZ=XtZ.reshape(J, p, q),
            ZtZ=ZtZ.reshape(J, q, q), Xty=Xty, Zty=Zty, yty=yty[:, 0],
        )  # fmt: skip
        _, labels = factor_labels(pd.Series(table.index), self.group)
        factor = GroupingFactor(
            name=self.group, labels=labels, index=np.zeros(0, dtype=np.int64),
            Z=np.zeros((0, q)), effect_names=self.effect_names, correlated=self.correlated,
        )  # fmt: skip
        return GroupedStatistics(stats, self.fixed_names, factor)
