"""The interface every Stan engine offers, and what the engine modules share.

:class:`StanEngine` is a Stan program with its data behind one small interface: log
density, gradient and transforms. Parameters travel as dicts of Stan-shaped arrays keyed
by Stan names (:mod:`lmm_pymc.stan.names`); data dicts may hold NumPy arrays and are
written to JSON by ``stanio`` (:func:`stan_json`). :func:`check_program` refuses an
engine (a model library) that does not declare the parameters of its program.

Every way an engine cannot run raises :class:`~lmm_pymc.errors.StanUnavailableError`
saying what was found, what is needed and how to get it; the advice those messages end
with (:func:`or_pystan`, :func:`pystan_hint`, :func:`library_hint`) and the one-time
warnings of a fallback (:func:`warn_once`) are here, so that every engine module words
them alike.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import require
from .names import split_name, unflatten
from .programs import parameters_block_names

__all__ = [
    "ENGINES",
    "StanEngine",
    "check_program",
    "digest",
    "library_hint",
    "or_pystan",
    "pystan_hint",
    "pystan_importable",
    "stan_json",
    "warn_once",
]

#: Engine names :func:`~lmm_pymc.stan.loading.load_model` accepts (besides ``"auto"``).
ENGINES: tuple[str, ...] = ("bridgestan", "pystan")


class StanEngine(ABC):
    """A Stan program with its data: log density, gradient and transforms.

    Parameter values are dicts of Stan-shaped arrays (:func:`~lmm_pymc.stan.names.unflatten`);
    unconstrained vectors are 1-d arrays in the engine's own order.
    """

    #: Engine name, one of :data:`ENGINES`.
    name: str = ""

    @property
    @abstractmethod
    def param_names(self) -> list[str]:
        """Flat names of the ``parameters`` block (``"random_group.2.1"``)."""

    @property
    @abstractmethod
    def all_names(self) -> list[str]:
        """Flat names of parameters, transformed parameters and generated quantities."""

    @abstractmethod
    def log_density(self, theta_unc: np.ndarray, *, jacobian: bool = True) -> float:
        """Log density (constants dropped, ``propto=True``) at an unconstrained vector."""

    @abstractmethod
    def log_density_gradient(self, theta_unc: np.ndarray) -> tuple[float, np.ndarray]:
        """Log density and its gradient w.r.t. the unconstrained vector, Jacobian included."""

    @abstractmethod
    def _constrain_flat(self, theta_unc: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _unconstrain_flat(self, values: Mapping[str, np.ndarray]) -> np.ndarray: ...

    @property
    def parameters(self) -> list[str]:
        """Names (no indices) of the ``parameters`` block, in declaration order."""
        return list(dict.fromkeys(split_name(n)[0] for n in self.param_names))

    def constrain(self, theta_unc: np.ndarray) -> dict[str, np.ndarray]:
        """Unconstrained vector -> every parameter, transformed parameter and generated
        quantity, by Stan name (generated quantities with ``_rng`` are random draws)."""
        return unflatten(self._constrain_flat(np.asarray(theta_unc, float)), self.all_names)

    def unconstrain(self, values: Mapping[str, object]) -> np.ndarray:
        """Dict of ``parameters``-block values (Stan shapes) -> unconstrained vector."""
        names = self.parameters
        missing = [k for k in names if k not in values]
        if missing:
            raise ValueError(
                f"values must hold every Stan parameter {names}, found {sorted(values)} "
                f"(missing {missing})"
            )
        arrays = {k: np.asarray(values[k], dtype=float) for k in names}
        return np.asarray(self._unconstrain_flat(arrays), dtype=float)


def check_program(engine: object, program_code: str, source: str | os.PathLike) -> None:
    """``ValueError`` unless ``engine`` (anything with ``param_names``, e.g. a model
    library loaded by BridgeStan) declares the parameters of ``program_code``: a library
    of another program must not stand in for it."""
    declared = parameters_block_names(program_code)
    names = list(engine.param_names)  # type: ignore[attr-defined]
    found = list(dict.fromkeys(split_name(n)[0] for n in names))
    if set(found) == declared:
        return
    lib = getattr(getattr(engine, "model", None), "lib_path", None) or "the library"
    model = getattr(engine, "model_name", None)
    raise ValueError(
        f"model_lib must be a library of {Path(source).name} (parameters "
        f"{sorted(declared)}), found {lib}"
        + (f" (model {model!r})" if model else "")
        + f" with parameters {found}: pass the library compiled from {Path(source).name} "
        "(model_lib= in Python, --model-lib on the command line), or none to compile it"
    )


# ------------------------------------------------------------------ data and cache keys
def stan_json(data: Mapping[str, object]) -> str:
    """Stan's JSON of a data dict (NumPy arrays allowed), keys sorted."""
    stanio = require("stanio", "stan", "Stan data as JSON")
    return stanio.dump_stan_json(dict(sorted(dict(data).items())))


def digest(*parts: str) -> str:
    """A short hash of ``parts``: the key of a cached engine or compiled library."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


# ----------------------------------------------------------- advice when one cannot run
def pystan_importable() -> bool:
    """Whether PyStan (``import stan``) is installed."""
    try:
        import stan  # noqa: F401
    except ImportError:
        return False
    return True


def or_pystan() -> str:
    """The alternative worth naming: PyStan where it is installed, else how to get it."""
    if pystan_importable():
        return (
            "; or use the PyStan engine, which is installed and compiles offline "
            "(engine='pystan', --engine pystan)"
        )
    return "; or install PyStan, which compiles offline (pip install pystan)"


def pystan_hint() -> str:
    """How to install PyStan."""
    return "pip install pystan (or pip install 'lmm_pymc[stan]'); it compiles offline"


def library_hint() -> str:
    """The way around compiling: a prebuilt BridgeStan library."""
    return ("or give a prebuilt BridgeStan library of the program (model_lib= in Python, "
            "--model-lib on the command line)")  # fmt: skip


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """A ``RuntimeWarning`` the first time ``message`` comes in this process, pointing at
    the caller's caller."""
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
