"""Command line: ``lmm-pymc demo | simulate | fit | predict | sbc | crosscheck``.

This module runs a command (:func:`main`) and turns its errors into exit codes
(:func:`_classify`); :mod:`~lmm_pymc.cli.parsers` holds the argument parsers and
:mod:`~lmm_pymc.cli.commands` the commands.

Exit codes: 0 success; 1 a check failed (the cross-check disagrees, SBC with ``--check``
finds a non-uniform parameter); 2 bad input (one line on stderr naming the argument or
column, the value found and what was expected); 3 the check could not run (no usable Stan
engine); 4 an unexpected internal error (``--debug`` shows its traceback); 130 interrupted.
Heavy libraries (PyMC, PyTensor, the samplers) are imported inside the commands, after the
arguments are parsed, so argument errors and ``--help`` return at once.
"""

from __future__ import annotations

import sys
import warnings

from ..errors import MissingExtraError, StanUnavailableError
from .parsers import build_parser

__all__ = ["build_parser", "main"]


def _one_line_warnings() -> None:
    """Warnings on the command line as ``lmm-pymc: warning: ...``, one line each."""

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        print(f"lmm-pymc: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    """Run ``lmm-pymc`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        _one_line_warnings()
    prog = f"lmm-pymc {args.command}"
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        code, what = _classify(err)
        text = " ".join(str(err).split()) or type(err).__name__
        print(f"{prog}: {what}: {text}", file=sys.stderr)
        return code


def _classify(err: Exception) -> tuple[int, str]:
    """Exit code and kind of an error that ended a command (see the module docstring)."""
    if isinstance(err, ValueError):
        return 2, "error"
    if isinstance(err, StanUnavailableError | MissingExtraError):
        return 3, "could not run"
    if isinstance(err, OSError):
        return 2, "error"
    return 4, f"internal error ({type(err).__name__}; rerun with --debug for the traceback)"
