"""Which files, in which format: the paths a user gives, checked before dask reads a byte."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["check_files", "checked_format", "open_frame", "resolve_paths"]


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


def _files(paths: list[str], fmt: str) -> list[Path]:
    """The concrete files behind ``paths`` (globs expanded, a Parquet directory's files)."""
    import glob

    out: list[Path] = []
    for text in paths:
        for match in sorted(glob.glob(text)) if any(c in text for c in "*?[") else [text]:
            path = Path(match)
            if path.is_dir():
                out += sorted(p for p in path.rglob("*") if p.is_file()
                              and p.suffix in (".parquet", ".pq", ".parq"))  # fmt: skip
            else:
                out.append(path)
    if not out:
        raise ValueError(f"paths must match at least one {fmt} file, found none in {paths}")
    return out


def check_files(paths: list[str], fmt: str) -> None:
    """``ValueError`` naming the first file that is empty or (Parquet) whose footer cannot be
    read, before any block is: the cheap checks, metadata only."""
    for path in _files(paths, fmt):
        if path.stat().st_size == 0:
            raise ValueError(f"file {str(path)!r} is empty; expected a {fmt} file with a header")
        if fmt != "parquet":
            continue
        import pyarrow.parquet as pq

        try:
            pq.read_metadata(path)
        except Exception as err:  # noqa: BLE001 - any failure of pyarrow, said in one line
            raise ValueError(
                f"file {str(path)!r} is not a readable Parquet file "
                f"({type(err).__name__}: {' '.join(str(err).split())[:200]})"
            ) from None
