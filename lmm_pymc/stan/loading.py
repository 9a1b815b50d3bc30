"""Loading a Stan program with its data on an engine, once: :func:`load_model`; and
sampling one with Stan's NUTS through PyStan: :func:`sample_pystan`.

:func:`load_model` picks the engine (:func:`~lmm_pymc.stan.policy.resolve_engine`),
compiles once (PyStan through httpstan's cache, BridgeStan through
:func:`~lmm_pymc.stan.bridgestan_engine.bridgestan_library`), checks that a model library
is the program it claims to be (:func:`~lmm_pymc.stan.engine.check_program`), and keeps
the engine for the rest of the process: the same program, data, engine, seed and library
return the same object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..checks import positive_int
from ..errors import StanUnavailableError
from .bridgestan_engine import BridgeStanEngine, bridgestan_library
from .engine import StanEngine, check_program, digest, stan_json
from .policy import resolve_engine
from .programs import stan_file
from .pystan_engine import PyStanEngine

__all__ = ["load_model", "sample_pystan"]

_CACHE: dict[str, StanEngine] = {}


def load_model(
    program: str | os.PathLike,
    data: Mapping[str, object],
    *,
    engine: str = "auto",
    model_lib: str | os.PathLike | None = None,
    seed: int = 1,
) -> StanEngine:
    """Compile (once) and load a Stan program with its data.

    Parameters
    ----------
    program : str or path
        A reference program (``"cholesky"``, ``"lmm_general"``) or a ``.stan`` path; see
        :func:`~lmm_pymc.stan.programs.stan_file`.
    data : dict
        The data dictionary, e.g. from :func:`~lmm_pymc.stan.programs.stan_data`.
    engine : {"auto", "bridgestan", "pystan"}
        See :func:`~lmm_pymc.stan.policy.resolve_engine`.
    model_lib : path, optional
        A prebuilt BridgeStan model library of ``program``; no compilation needed. It is
        checked against ``program`` (its parameters) before use.
    seed : int
        Seed of the program's random number generator.

    Returns
    -------
    StanEngine
        Cached: the same program, data, engine, seed and library return the same object.

    Raises
    ------
    StanUnavailableError
        When no engine can run, or BridgeStan cannot load the library (another release),
        with what was found and what to do.
    ValueError
        When ``model_lib`` is a library of another program, or cannot take ``data``.
    """
    source = stan_file(program)
    engine = resolve_engine(engine, model_lib)
    code = source.read_text()
    key = digest(engine, code, stan_json(data), str(seed), str(model_lib))
    if key not in _CACHE:
        if engine == "pystan":
            _CACHE[key] = PyStanEngine(code, data, random_seed=seed)
        else:
            lib = Path(model_lib) if model_lib is not None else bridgestan_library(source)
            try:
                loaded = BridgeStanEngine(lib, data, seed=seed)
            except RuntimeError as err:
                if isinstance(err, StanUnavailableError):
                    raise
                raise ValueError(
                    f"model_lib {str(lib)!r} cannot take the data of {source.name} ("
                    f"{' '.join(str(err).split())}): is it a library of {source.name}?"
                ) from err
            check_program(loaded, code, source)
            _CACHE[key] = loaded
    return _CACHE[key]


def sample_pystan(
    program: str | os.PathLike,
    data: Mapping[str, object],
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 1,
) -> dict[str, np.ndarray]:
    """Sample a Stan program with Stan's NUTS through PyStan.

    Returns
    -------
    dict of str to ndarray
        Every parameter, transformed parameter and generated quantity by Stan name, shape
        ``(chains, draws, *stan_shape)``.
    """
    draws, tune = positive_int("draws", draws), positive_int("tune", tune)
    chains = positive_int("chains", chains)
    engine = load_model(program, data, engine="pystan", seed=seed)
    assert isinstance(engine, PyStanEngine)
    return engine.sample(draws, tune, chains)
