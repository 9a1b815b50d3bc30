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

__all__ = ["STATEFUL", "BlockCoding", "TermCoding"]

#: Transforms whose result depends on all the rows (formulae learns them from the data it
#: sees first): from files they would be learnt from the template alone, so they are refused.
STATEFUL = ("scale(", "center(", "standardize(")


def _numeric(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


@dataclass(frozen=True)
class TermCoding:
    """One random term ``(expr | group)`` of the formula, coded on the template.

    Attributes
    ----------
    group : str
        The grouping factor's name (``"subject"``, ``"a:b"``).
    effect_names : tuple of str
        The names of the columns of its ``Z``, as in memory.
    correlated : bool
        Whether its effects are correlated (``|``) or not (``||``).
    design : object
        formulae's ``CommonComponent`` of the term's expression (codes new rows).
    """

    group: str
    effect_names: tuple[str, ...]
    correlated: bool
    design: object

    def factor(self, labels: tuple) -> GroupingFactor:
        """The term's :class:`GroupingFactor` with ``labels`` and no rows."""
        return GroupingFactor(
            name=self.group, labels=labels, index=np.zeros(0, dtype=np.int64),
            Z=np.zeros((0, len(self.effect_names))), effect_names=self.effect_names,
            correlated=self.correlated,
        )  # fmt: skip


@dataclass(frozen=True)
class BlockCoding:
    """The formula's design, fixed on a template, for blocks of rows.

    Attributes
    ----------
    formula, response : str
        The formula (as cleaned) and its response column.
    columns : tuple of str
        Every column the formula reads (the only ones read from the files).
    numeric : tuple of str
        The numeric columns among them (each block counts their non-finite values).
    fixed_names : tuple of str
        The names of the columns of ``X``, as in memory.
    fixed_design : object
        formulae's ``CommonComponent`` of the fixed part.
    terms : tuple of TermCoding
        The random terms, one per grouping factor, in the formula's order.
    """

    formula: str
    response: str
    columns: tuple[str, ...]
    numeric: tuple[str, ...]
    fixed_names: tuple[str, ...]
    fixed_design: object
    terms: tuple[TermCoding, ...]

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
        fixed_rhs, split = split_terms(rhs)
        frame = template.reset_index(drop=True)
        fixed = term_design(fixed_rhs, frame, formula, rhs, what="fixed effect")
        terms = []
        for expr, group in split:
            design = term_design(expr, frame, formula, rhs, what=f"effect in ({expr} | {group})")
            names = column_names(design, np.asarray(design.design_matrix).shape[1])
            terms.append(TermCoding(group, names, correlated[group], design))
        if not _numeric(frame[response].dtype):
            raise ValueError(
                f"column {response!r} must be numeric, found dtype {frame[response].dtype}"
            )
        groups = {c for _, g in split for c in g.split(":")}
        used = sorted(formula_columns(rhs, frame) | {response} | groups)
        return cls(
            formula=cleaned, response=response, columns=tuple(used),
            numeric=tuple(c for c in used if _numeric(frame[c].dtype) and c not in groups),
            fixed_names=column_names(fixed, np.asarray(fixed.design_matrix).shape[1]),
            fixed_design=fixed, terms=tuple(terms),
        )  # fmt: skip

    @property
    def groups(self) -> tuple[str, ...]:
        """The grouping factors' names, in the formula's order."""
        return tuple(t.group for t in self.terms)

    def counts(self, block: pd.DataFrame) -> np.ndarray:
        """``[rows without label of each factor..., non-finite values of each numeric
        column...]`` of a block (an error is raised from their sums)."""
        values = block[list(self.numeric)].to_numpy(dtype=np.float64, na_value=np.nan)
        missing = [int(grouping_column(block, g).isna().sum()) for g in self.groups]
        return np.concatenate([missing, np.count_nonzero(~np.isfinite(values), axis=0)]).astype(
            np.int64
        )

    def code(self, block: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """``(X, [Z of each term], y)`` of a block's rows, coded as the template."""
        frame = block.reset_index(drop=True)
        # text as NumPy objects: formulae reads a text column value by value, which is ~50x
        # slower through pandas' Arrow-backed strings
        text = [c for c in frame.columns if c not in self.numeric and not _numeric(frame[c].dtype)]
        if text:
            frame = frame.astype({c: object for c in text})
        X = np.asarray(self.fixed_design.evaluate_new_data(frame)).astype(float)
        Zs = [np.asarray(t.design.evaluate_new_data(frame)).astype(float) for t in self.terms]
        return X, Zs, frame[self.response].to_numpy(dtype=np.float64)

    def sums(self, block: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """A single-factor block's per-group sums (a frame indexed by label, the statistics
        flattened in the order of :data:`~lmm_pymc.design.GroupStatistics` fields) and its
        :meth:`counts`."""
        counts = self.counts(block)
        (term,) = self.terms
        p, q = len(self.fixed_names), len(term.effect_names)
        width = 2 + p * p + p * q + q * q + p + q
        if counts.any() or len(block) == 0:  # an error is raised from the counts
            return pd.DataFrame(np.zeros((0, width))), counts
        X, (Z,), y = self.code(block)
        codes, labels = pd.factorize(grouping_column(block, term.group), sort=False)
        stats = GroupStatistics.from_rows(X, Z, y, codes, len(labels))
        table = np.column_stack([
            stats.n, stats.XtX.reshape(len(labels), -1), stats.XtZ.reshape(len(labels), -1),
            stats.ZtZ.reshape(len(labels), -1), stats.Xty, stats.Zty, stats.yty,
        ])  # fmt: skip
        return pd.DataFrame(table, index=pd.Index(labels)), counts

    def check_counts(self, counts: np.ndarray) -> None:
        """``ValueError`` naming the column of any missing label or non-finite value."""
        k = len(self.terms)
        for group, bad in zip(self.groups, counts[:k], strict=True):
            if bad:
                raise ValueError(
                    f"column {group!r} must not contain missing labels, found {bad}"
                )
        for name, bad in zip(self.numeric, counts[k:], strict=True):
            if bad:
                raise ValueError(
                    f"column {name!r} must be finite, found {bad} non-finite value(s)"
                )

    def grouped(self, table: pd.DataFrame) -> GroupedStatistics:
        """The summed table of a single-factor formula (one row per label, sorted) as
        :class:`GroupedStatistics`."""
        (term,) = self.terms
        if len(table) < 2:
            raise ValueError(
                f"column {term.group!r} must have at least 2 groups to estimate group-level "
                f"variation, found {len(table)} ({list(table.index)})"
            )
        p, q = len(self.fixed_names), len(term.effect_names)
        J, values = len(table), table.to_numpy(dtype=float)
        cuts = np.cumsum([1, p * p, p * q, q * q, p, q])
        n, XtX, XtZ, ZtZ, Xty, Zty, yty = np.split(values, cuts, axis=1)
        stats = GroupStatistics(
            n=n[:, 0], XtX=XtX.reshape(J, p, p), XtZ=XtZ.reshape(J, p, q),
            ZtZ=ZtZ.reshape(J, q, q), Xty=Xty, Zty=Zty, yty=yty[:, 0],
        )  # fmt: skip
        _, labels = factor_labels(pd.Series(table.index), term.group)
        return GroupedStatistics(stats, self.fixed_names, term.factor(labels))
