"""Files in and out: a CSV read with errors that name the file, and atomic writes.

Every output of the package (CSV, NetCDF, plots, SBC results, benchmark reports) is first
written to a temporary file beside its target and then moved into place with
:func:`os.replace`, so a killed command leaves either the old file or the new one, never
half of one. This module imports no PyMC.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "check_output", "read_csv"]


def read_csv(path: str | os.PathLike, *, argument: str = "csv"):
    """Read a CSV file into a data frame, or raise ``ValueError`` naming the file.

    Refused: a missing path, a directory, a file that is not text (a binary file), an empty
    file, a header without rows.
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{argument} must be an existing CSV file, found no file at {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"{argument} must be a CSV file, found the directory {str(p)!r}")
    import pandas as pd

    try:
        frame = pd.read_csv(p)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{argument} {str(p)!r} is not a text CSV file (byte {err.object[err.start]:#04x} "
            f"at position {err.start} is not UTF-8); expected comma-separated text"
        ) from None
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{argument} {str(p)!r} is empty; expected a header line and data rows"
        ) from None
    except (pd.errors.ParserError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{argument} {str(p)!r} could not be read as CSV ({first}); expected "
            "comma-separated text with a header line"
        ) from None
    except OSError as err:
        raise ValueError(f"{argument} {str(p)!r} could not be read: {err.strerror}") from None
    if frame.empty:
        raise ValueError(
            f"{argument} {str(p)!r} has a header ({list(frame.columns)}) but no data rows; "
            "expected at least one row"
        )
    return frame


def check_output(path: str | os.PathLike, *, argument: str = "--out") -> Path:
    """``path`` as a :class:`~pathlib.Path` whose folder exists and is writable, checked
    before any long computation, else ``ValueError`` naming ``argument``."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise ValueError(f"{argument} must be a file path, found the directory {str(p)!r}")
    if not folder.is_dir():
        raise ValueError(
            f"{argument} {str(p)!r}: its folder {str(folder)!r} does not exist; create it "
            "first or choose another path"
        )
    try:  # the one reliable test (permissions, read-only or pseudo file systems): try it
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{p.name}.", suffix=".probe"):
            pass
    except OSError as err:
        raise ValueError(
            f"{argument} {str(p)!r} cannot be written: folder {str(folder)!r} refuses new "
            f"files ({err.strerror}); expected a writable place"
        ) from None
    if p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"{argument} {str(p)!r} exists and is not writable")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write to; moved onto ``path`` when the block succeeds.

    Examples
    --------
    >>> with atomic_path(target) as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp, index=False)
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp{target.suffix}")
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
