"""Which files, in which format: the paths a user gives, checked before dask reads a byte."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["checked_format", "open_frame", "resolve_paths"]


def resolve_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The files, glob patterns or Parquet directories of ``paths``, each checked to exist
    (a glob pattern is expanded by dask)."""
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


def checked_format(paths: list[str], given: str | None) -> str:
    """``given`` checked, or the format the file names show (one format for all)."""
    if given is not None:
        if given not in ("csv", "parquet"):
            raise ValueError(f"file_format must be 'csv' or 'parquet', found {given!r}")
        return given
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


def open_frame(dd, paths: list[str], fmt: str, blocksize: str | int):
    """The lazy dask frame of the files (nothing is read but the schema)."""
    if fmt == "csv":
        return dd.read_csv(paths, blocksize=blocksize)
    from ..errors import require

    require("pyarrow", "dask", "reading Parquet files")
    return dd.read_parquet(paths)
