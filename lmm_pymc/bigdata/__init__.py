"""Per-group sufficient statistics of data sets larger than memory, with dask.dataframe.

The Gaussian LMM's likelihood with one factor's random effects integrated out needs only,
per group ``j``, the sums ``n, X'X, X'Z, Z'Z, X'y, Z'y, y'y``
(:class:`lmm_pymc.GroupStatistics`; :meth:`lmm_pymc.Design.grouped_statistics` computes them
from rows in memory). :func:`group_statistics_from_files` computes them for any formula with
one grouping factor (numeric and categorical predictors, interactions, any number of random
effects) from CSV or Parquet files:

1. dask.dataframe opens the files lazily, reading only the columns the formula names;
2. one cheap pass over the categorical predictors finds their levels, so that every block
   is coded alike (:mod:`lmm_pymc.bigdata.coding`);
3. every block is reduced at once to its per-group sums in float64 (formulae's coding of the
   block, then one ``numpy.bincount`` per sum), and the blocks' tables are added up by group
   label in a tree of small pandas additions.

Memory holds a few blocks and a few ``J x (p + q + 1)^2`` tables, whatever the number of
rows. The result fits like rows in memory: ``lmm_pymc.fit(stats)`` (``marginal``, exact
draws of the random effects afterwards).

Crossed and nested factors (``(1 + x | subject) + (1 | item)``, ``(1 | a/b)``) add a pass
over the grouping columns (every factor's levels) and, per block, the cross-products of the
integrated factor with the sampled factors' levels (:mod:`lmm_pymc.bigdata.crossed`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

import pandas as pd

from ..design import GroupedStatistics
from ..errors import require
from ..formula import grouping_column
from . import crossed
from .coding import BlockCoding
from .files import check_files, checked_format, open_frame, resolve_paths

__all__ = ["group_statistics_from_files"]

#: the schedulers ``scheduler=`` accepts (Dask's names)
_SCHEDULERS = ("threads", "processes", "synchronous", "sync", "single-threaded")
#: how many tables one addition of the tree reduction takes
_FAN_IN = 8
#: the package's own source files start with this path (dask's, pandas' do not)
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
#: rows of the files' first block that fix the coding (with the categorical levels)
_TEMPLATE_ROWS = 1000


def _add_tables(*parts):
    """The sum of several blocks' ``(table, counts)``, the tables added by label."""
    import pandas as pd

    tables = [t for t, _ in parts]
    table = tables[0] if len(tables) == 1 else pd.concat(tables).groupby(level=0, sort=False).sum()
    return table, sum(m for _, m in parts)


def _template(dask, frame, formula: str, scheduler):
    """The first rows of the files with finite values, plus one row for each level of a
    categorical column (text or boolean) that they lack: the levels come from one pass over
    those columns alone."""
    import pandas as pd

    from ..formula import formula_columns, split_formula

    with warnings.catch_warnings():  # a first block shorter than the template: fine
        warnings.filterwarnings("ignore", message="Insufficient elements for `head`")
        head = frame.head(_TEMPLATE_ROWS)
    rhs, response, _, correlated = split_formula(formula)
    groups = {c for name in correlated for c in name.split(":")}
    used = sorted((formula_columns(rhs, head) | {response}) & set(head.columns))
    numeric = [c for c in used if pd.api.types.is_numeric_dtype(head[c].dtype)
               and not pd.api.types.is_bool_dtype(head[c].dtype)]  # fmt: skip
    finite = np.isfinite(head[numeric].to_numpy(dtype=float, na_value=np.nan)).all(axis=1)
    head = head[finite & head[used].notna().all(axis=1).to_numpy()].reset_index(drop=True)
    categorical = [c for c in used if c not in numeric and c not in groups]
    if not categorical or head.empty:
        return head
    # each block's levels, added up in a tree: no shuffle (Dask's unique() shuffles)
    blocks = [dask.delayed(_block_levels)(b, categorical) for b in frame[categorical].to_delayed()]
    levels = _reduce(dask, blocks, _union_labels, scheduler)
    extra = []
    for column, found in zip(categorical, levels, strict=True):
        for level in sorted(set(found) - set(head[column]), key=str):
            row = head.iloc[[0]].copy()
            row[column] = level
            extra.append(row)
    return pd.concat([head, *extra], ignore_index=True) if extra else head


def _raised_here(err: BaseException) -> bool:
    """Whether ``err`` was raised by this package's code (not by dask, pandas or pyarrow)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_ROOT)


def _reduce(dask, blocks: list, add, scheduler):
    """The sum of ``blocks`` (delayed), added in a tree of ``add`` calls."""
    level = blocks
    while len(level) > 1:
        level = [dask.delayed(add)(*level[i : i + _FAN_IN]) for i in range(0, len(level), _FAN_IN)]
    (result,) = dask.compute(level[0], scheduler=scheduler)
    return result


def _block_levels(block, columns: list[str]) -> list:
    """The distinct values of each of ``columns`` in a block."""
    return [block[c].dropna().unique() for c in columns]


def _block_labels(block, groups: tuple[str, ...]) -> list:
    """The distinct labels of each grouping factor in a block."""
    return [grouping_column(block, g).dropna().unique() for g in groups]


def _union_labels(*parts: list) -> list:
    return [pd.unique(np.concatenate(found)) for found in zip(*parts, strict=True)]


def _levels(dask, frame, coding: BlockCoding, scheduler) -> list:
    """Every grouping factor's labels in all the files, sorted (one pass over the grouping
    columns alone)."""
    columns = sorted({c for g in coding.groups for c in g.split(":")})
    blocks = [dask.delayed(_block_labels)(b, coding.groups) for b in frame[columns].to_delayed()]
    found = _reduce(dask, blocks, _union_labels, scheduler)
    out = []
    for labels in found:
        try:
            out.append(pd.Index(labels).sort_values())
        except TypeError:  # labels of mixed types: sorted by their text
            out.append(pd.Index(sorted(labels, key=str)))
    return out


def _sums(dask, frame, formula: str, scheduler, integrate: str | None):
    """The statistics of the files: the coding fixed on a template, then one pass over the
    blocks (each to its sums) and a tree of additions; with crossed factors the levels of
    every factor first (:mod:`lmm_pymc.bigdata.crossed`)."""
    template = _template(dask, frame, formula, scheduler)
    coding = BlockCoding.from_template(formula, template)
    frame = frame[list(coding.columns)]  # only these columns are read from the files
    if len(coding.terms) == 1:
        if integrate is not None and integrate != coding.groups[0]:
            raise ValueError(
                f"integrate must name a grouping factor among {list(coding.groups)}, found "
                f"{integrate!r}"
            )
        blocks = [dask.delayed(coding.sums)(block) for block in frame.to_delayed()]
        table, counts = _reduce(dask, blocks, _add_tables, scheduler)
        coding.check_counts(counts)
        return coding.grouped(table.sort_index())
    layout = crossed.CrossedLayout(coding, _levels(dask, frame, coding, scheduler), integrate)
    # the outcome less its mean in the first rows, where an intercept column can carry it
    shift = float(template[coding.response].mean()) if "intercept" in coding.fixed_names else 0.0
    blocks = [dask.delayed(crossed.block_sums)(b, layout, shift) for b in frame.to_delayed()]
    sums, counts = _reduce(dask, blocks, crossed.add_sums, scheduler)
    coding.check_counts(counts)
    return crossed.statistics(layout, sums, shift)


def group_statistics_from_files(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    formula: str | None = None,
    *,
    file_format: str | None = None,
    blocksize: str | int = "64MB",
    group_labels: Sequence[object] | None = None,
    scheduler: str | None = None,
    integrate: str | None = None,
) -> GroupedStatistics:
    """Per-group sufficient statistics of CSV or Parquet files for ``formula``, with
    dask.dataframe (module docstring).

    Parameters
    ----------
    paths : path, glob pattern, or sequence of them
        CSV files, Parquet files or a Parquet data set directory.
    formula : str, optional
        An lme4/brms formula, e.g. ``"score ~ 1 + week * cond + (1 + week | school)"`` or
        with crossed factors ``"rt ~ x + (1 + x | subject) + (1 | item)"``; default the
        tutorial's ``"y ~ 1 + x + (1 + x | group_id)"``. Transforms learnt from all the
        rows (``scale``, ``center``) are refused.
    file_format : {"csv", "parquet"}, optional
        Inferred from the file names when not given.
    blocksize : str or int
        Bytes per CSV block read at a time (Parquet is read by row group).
    group_labels : sequence, optional
        Order of the (integrated factor's) groups in the result (e.g.
        ``design.factors[0].labels``, order of first appearance); default: labels sorted.
        The other factors' levels are sorted.
    scheduler : str, optional
        Dask scheduler of the pass over the data (``"threads"``, ``"processes"``,
        ``"synchronous"``); default Dask's own: threads in this process, or the
        ``dask.distributed`` client in use.
    integrate : str, optional
        With crossed factors: the factor whose effects ``marginal`` integrates out, whose
        per-group sums these are (default: the one with the most levels); the sums add its
        cross-products with the other factors' levels
        (:class:`~lmm_pymc.marginal.CrossedStatistics`, in ``crossed``).

    Returns
    -------
    GroupedStatistics
        Equal to ``design_from_formula(formula, all rows).grouped_statistics()`` for the
        same order of groups, up to floating-point summation order; with crossed factors,
        the integrated factor's sums and ``crossed``, which give the same likelihood as
        the rows.

    Raises
    ------
    ValueError
        On a missing column, a non-numeric outcome, non-finite values or missing group
        labels (naming the column and the count), fewer than two groups, or crossed factors
        whose cross-products would exceed
        :data:`~lmm_pymc.bigdata.crossed.FILE_CROSS_PRODUCT_LIMIT` numbers.

    Examples
    --------
    >>> stats = group_statistics_from_files("data/*.parquet", "y ~ x * c + (1 + x | g)")  # doctest: +SKIP
    >>> lmm_pymc.fit(stats)  # doctest: +SKIP
    """
    dask = require("dask", "dask", "group_statistics_from_files")
    dd = require("dask.dataframe", "dask", "group_statistics_from_files")
    from .. import tutorial

    formula = tutorial.FORMULA if formula is None else formula
    resolved = resolve_paths(paths)
    fmt = checked_format(resolved, file_format)
    if scheduler is not None and scheduler not in _SCHEDULERS:
        raise ValueError(f"scheduler must be one of {list(_SCHEDULERS)}, found {scheduler!r}")
    check_files(resolved, fmt)
    frame = open_frame(dd, resolved, fmt, blocksize)
    try:
        result = _sums(dask, frame, formula, scheduler, integrate)
    except (ValueError, TypeError) as err:
        if _raised_here(err):  # the package's own errors pass unchanged
            raise
        # dask, pandas or pyarrow could not read or convert a block
        raise ValueError(
            f"reading the files {resolved} failed: {type(err).__name__}: "
            f"{' '.join(str(err).split())[:400]}"
        ) from None
    return result if group_labels is None else result.reorder(group_labels)
