"""Per-group sufficient statistics of data sets larger than memory, with dask.dataframe.

The Gaussian LMM's likelihood with the random effects integrated out needs only, per
group ``j``, the sums ``n, X'X, X'Z, Z'Z, X'y, Z'y, y'y``
(:class:`lmm_pymc.GroupStatistics`; :meth:`lmm_pymc.Design.grouped_statistics` computes them
from rows in memory). For ``y ~ 1 + x + (1 + x | group)`` with
``X = Z = (1, x)`` these follow from six column sums per group::

    n = sum 1,  Sx = sum x,  Sxx = sum x^2,  Sy = sum y,  Sxy = sum x y,  Syy = sum y^2
    X'X = X'Z = Z'Z = [[n, Sx], [Sx, Sxx]],   X'y = Z'y = [Sy, Sxy],   y'y = Syy

dask.dataframe reads the CSV or Parquet files block by block, only the three columns
needed; every block is reduced at once to these sums in float64 (the labels factorized,
then one ``numpy.bincount`` per sum), and the blocks' tables are added up in a tree of
small pandas additions. Memory holds a few blocks and a few ``J x 8`` tables, whatever the
number of rows; on 10^7 rows in Parquet the pass takes a few seconds
(``benchmarks/scale.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .design import GroupedStatistics, GroupingFactor, GroupStatistics
from .errors import require

__all__ = ["group_statistics_from_files"]

_SUMS = ("n", "Sx", "Sxx", "Sy", "Sxy", "Syy")
#: the schedulers ``scheduler=`` accepts (Dask's names)
_SCHEDULERS = ("threads", "processes", "synchronous", "sync", "single-threaded")
#: how many tables one addition of the tree reduction takes
_FAN_IN = 8


def _resolve_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise ValueError("paths must name at least one CSV or Parquet file, found an empty list")
    out: list[str] = []
    for item in items:
        text = str(item)
        if any(c in text for c in "*?["):
            out.append(text)  # a glob pattern, expanded by dask
            continue
        path = Path(text)
        if not path.exists():
            raise ValueError(f"paths must name existing files or directories, found {text!r}")
        out.append(text)
    return out


def _file_format(paths: list[str], file_format: str | None) -> str:
    if file_format is not None:
        if file_format not in ("csv", "parquet"):
            raise ValueError(f"file_format must be 'csv' or 'parquet', found {file_format!r}")
        return file_format
    kinds = set()
    for p in paths:
        stem = p.rstrip("/").lower()
        if stem.endswith((".csv", ".csv.gz", ".txt")):
            kinds.add("csv")
        elif stem.endswith((".parquet", ".pq")) or Path(p).is_dir():
            kinds.add("parquet")
        else:
            kinds.add(f"unknown ({p!r})")
    if len(kinds) != 1 or next(iter(kinds)).startswith("unknown"):
        raise ValueError(
            f"file_format could not be inferred from the file names, found {sorted(kinds)}; "
            "pass file_format='csv' or 'parquet'"
        )
    return kinds.pop()


def _block_sums(block, y: str, x: str, group: str):
    """One block's per-group sums (a pandas frame indexed by label, columns :data:`_SUMS`)
    and its counts ``[missing labels, non-finite x, non-finite y]``."""
    import pandas as pd

    codes, labels = pd.factorize(block[group], sort=False, use_na_sentinel=True)
    xv = block[x].to_numpy(dtype=np.float64, na_value=np.nan)
    yv = block[y].to_numpy(dtype=np.float64, na_value=np.nan)
    keep = codes >= 0
    counts = np.array([codes.size - np.count_nonzero(keep), 0, 0], dtype=np.int64)
    if counts[0]:
        codes, xv, yv = codes[keep], xv[keep], yv[keep]
    counts[1:] = [xv.size - np.count_nonzero(np.isfinite(xv)),
                  yv.size - np.count_nonzero(np.isfinite(yv))]  # fmt: skip
    k = len(labels)
    table = np.empty((k, len(_SUMS)))
    table[:, 0] = np.bincount(codes, minlength=k)
    for col, w in enumerate((xv, xv * xv, yv, xv * yv, yv * yv), start=1):
        table[:, col] = np.bincount(codes, weights=w, minlength=k)
    return pd.DataFrame(table, index=pd.Index(labels, name=group), columns=list(_SUMS)), counts


def _add_tables(*parts):
    """The sum of several blocks' ``(table, counts)``, the tables added by label."""
    import pandas as pd

    tables = [t for t, _ in parts]
    table = tables[0] if len(tables) == 1 else pd.concat(tables).groupby(level=0, sort=False).sum()
    return table, sum(m for _, m in parts)


def _read_columns(dd, paths, file_format, blocksize, columns: list[str], scheduler):
    """The lazy dask frame of ``columns`` (outcome, predictor, group) of the files, checked:
    three different names, all present, the first two numeric."""
    y, x, group = columns
    resolved = _resolve_paths(paths)
    fmt = _file_format(resolved, file_format)
    if len(set(columns)) != 3:
        raise ValueError(f"y, x and group must name three different columns, found {columns}")
    if scheduler is not None and scheduler not in _SCHEDULERS:
        raise ValueError(f"scheduler must be one of {list(_SCHEDULERS)}, found {scheduler!r}")
    if fmt == "csv":
        frame = dd.read_csv(resolved, blocksize=blocksize)
    else:
        require("pyarrow", "dask", "reading Parquet files")
        frame = dd.read_parquet(resolved)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"data is missing column(s) {missing}; expected columns {columns}, "
            f"found {list(frame.columns)}"
        )
    frame = frame[columns]  # only these columns are read from the files
    for name in (x, y):
        dtype = frame[name].dtype
        if not (np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.bool_)):
            raise ValueError(f"column {name!r} must be numeric, found dtype {dtype}")

    return frame


def _grouped(table, x: str, group: str) -> GroupedStatistics:
    """The :class:`GroupedStatistics` of ``y ~ 1 + x + (1 + x | group)`` from the table of
    the six sums per group (one row per label)."""
    n, Sx, Sxx, Sy, Sxy, Syy = (table[c].to_numpy(dtype=float) for c in _SUMS)
    # (J, 2, 2) = [[n, Sx], [Sx, Sxx]]
    gram = np.stack([np.stack([n, Sx], -1), np.stack([Sx, Sxx], -1)], axis=1)
    # (J, 2) = [Sy, Sxy]
    cross = np.stack([Sy, Sxy], axis=-1)
    names = ("intercept", x)  # the names the formula y ~ 1 + x + (1 + x | group) gives
    factor = GroupingFactor(name=group, labels=tuple(table.index.tolist()),
                            index=np.zeros(0, dtype=np.int64), Z=np.zeros((0, 2)),
                            effect_names=names)  # fmt: skip
    stats = GroupStatistics(
        n=n, XtX=gram, XtZ=gram.copy(), ZtZ=gram.copy(), Xty=cross, Zty=cross.copy(), yty=Syy
    )
    return GroupedStatistics(stats, names, factor)


def group_statistics_from_files(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    y: str = "y",
    x: str = "x",
    group: str = "group_id",
    file_format: str | None = None,
    blocksize: str | int = "64MB",
    group_labels: Sequence[object] | None = None,
    scheduler: str | None = None,
) -> GroupedStatistics:
    """Per-group sufficient statistics of CSV or Parquet files, computed with dask.dataframe.

    Parameters
    ----------
    paths : path, glob pattern, or sequence of them
        CSV files, Parquet files or a Parquet data set directory.
    y, x, group : str
        Column names of the outcome, the predictor and the grouping factor.
    file_format : {"csv", "parquet"}, optional
        Inferred from the file names when not given.
    blocksize : str or int
        Bytes per CSV block read at a time (Parquet is read by row group).
    group_labels : sequence, optional
        Order of the groups in the result (e.g. ``design.factors[0].labels``, order of first
        appearance); default: labels sorted.
    scheduler : str, optional
        Dask scheduler of the pass over the data (``"threads"``, ``"processes"``,
        ``"synchronous"``); default Dask's own: threads in this process, or the
        ``dask.distributed`` client in use.

    Returns
    -------
    GroupedStatistics
        Equal to ``design_from_formula(f"{y} ~ 1 + {x} + (1 + {x} | {group})", all
        rows).grouped_statistics()`` for the same order of groups, up to floating-point
        summation order.

    Raises
    ------
    ValueError
        On a missing column, non-numeric or non-finite ``x`` or ``y``, missing group labels,
        or fewer than two groups (the checks :func:`lmm_pymc.design_from_formula` makes on
        rows in memory).

    Examples
    --------
    >>> stats = group_statistics_from_files("data/*.parquet")  # doctest: +SKIP
    >>> stats.statistics.XtX.shape  # doctest: +SKIP
    (1000, 2, 2)
    """
    dask = require("dask", "dask", "group_statistics_from_files")
    dd = require("dask.dataframe", "dask", "group_statistics_from_files")

    frame = _read_columns(dd, paths, file_format, blocksize, [y, x, group], scheduler)

    # one pass over the data: every block to J x 8 sums, then a tree of additions
    level = [dask.delayed(_block_sums)(block, y, x, group) for block in frame.to_delayed()]
    while len(level) > 1:
        level = [dask.delayed(_add_tables)(*level[i : i + _FAN_IN])
                 for i in range(0, len(level), _FAN_IN)]  # fmt: skip
    ((table, counts),) = dask.compute(level[0], scheduler=scheduler)
    if counts[0]:
        raise ValueError(f"column {group!r} must not contain missing labels, found {counts[0]}")
    for name, bad in ((x, counts[1]), (y, counts[2])):
        if bad:
            raise ValueError(f"column {name!r} must be finite, found {bad} non-finite value(s)")
    if len(table) < 2:
        raise ValueError(
            f"column {group!r} must have at least 2 groups to estimate group-level variation, "
            f"found {len(table)} ({list(table.index)})"
        )
    result = _grouped(table.sort_index(), x, group)
    return result if group_labels is None else result.reorder(group_labels)
