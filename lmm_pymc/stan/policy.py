"""Which Stan engine runs here: :func:`available_engines` and :func:`resolve_engine`.

``"auto"`` takes BridgeStan where it can load a given model library or compile (a usable
source tree, :func:`~lmm_pymc.stan.bridgestan_tree.find_bridgestan_source`), else PyStan,
with one warning saying why where a BridgeStan set-up was found unusable. An engine asked
for by name that cannot run raises :class:`~lmm_pymc.errors.StanUnavailableError` with
what was found and what to do.
"""

from __future__ import annotations

import os

from ..errors import StanUnavailableError
from .bridgestan_tree import (
    bridgestan_package_version,
    bridgestan_source_available,
    find_bridgestan_source,
    import_bridgestan,
)
from .engine import ENGINES, library_hint, or_pystan, pystan_hint, pystan_importable, warn_once

__all__ = ["available_engines", "resolve_engine"]


def _bridgestan_importable() -> bool:
    return bridgestan_package_version() is not None


def available_engines(model_lib: str | os.PathLike | None = None) -> list[str]:
    """Engines that can run here, preferred first."""
    out = []
    if _bridgestan_importable() and (model_lib is not None or bridgestan_source_available()):
        out.append("bridgestan")
    if pystan_importable():
        out.append("pystan")
    return out


def resolve_engine(engine: str = "auto", model_lib: str | os.PathLike | None = None) -> str:
    """The engine :func:`~lmm_pymc.stan.loading.load_model` will use (``"bridgestan"`` or
    ``"pystan"``).

    ``"auto"`` takes BridgeStan where it can load ``model_lib`` or compile (a usable source
    tree), else PyStan; where a BridgeStan set-up exists but cannot be used (a ``BRIDGESTAN``
    naming a missing folder, a tree without its submodules or of another release) it warns
    once, in one line, why it falls back.

    Raises
    ------
    StanUnavailableError
        When the engine asked for cannot run, with what was found and what to do.
    """
    choices = ("auto", *ENGINES)
    if engine not in choices:
        raise ValueError(f"engine must be one of {list(choices)}, found {engine!r}")
    if engine == "pystan":
        if not pystan_importable():
            raise StanUnavailableError(f"engine 'pystan' needs PyStan: {pystan_hint()}")
        return engine
    bridgestan = _bridgestan_importable()
    if engine == "bridgestan":
        import_bridgestan() if not bridgestan else None
        if model_lib is None:
            tree = find_bridgestan_source()
            if not tree.ok:
                raise StanUnavailableError(
                    f"engine 'bridgestan' cannot compile: {tree.problem}; {library_hint()}"
                    f"{or_pystan()}"
                )
        return engine
    if bridgestan and model_lib is not None:
        return "bridgestan"
    tree = find_bridgestan_source()
    if model_lib is None and tree.ok:
        return "bridgestan"
    if pystan_importable():
        if model_lib is not None:  # a library without the bridgestan package
            warn_once(f"model_lib={str(model_lib)!r} is not used, the bridgestan package is not "
                      "installed (pip install bridgestan); using PyStan")  # fmt: skip
        elif tree.configured:
            warn_once(f"BridgeStan is not usable ({tree.problem}); using PyStan")
        return "pystan"
    raise StanUnavailableError(
        f"no Stan engine can run here: {pystan_hint()}; or install bridgestan with a "
        f"source tree ({tree.problem}) {library_hint()}"
    )
