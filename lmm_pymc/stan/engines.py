"""Stan engines behind one small interface: log density, gradient, transforms, sampling.

``bridgestan``
    The BridgeStan loader (``pip install bridgestan``). It compiles a ``.stan`` file only
    where a BridgeStan source tree exists (the ``BRIDGESTAN`` environment variable or
    ``~/.bridgestan``); a prebuilt model library (``*_model.so``) loads without sources.
``pystan``
    PyStan 3 / httpstan, which ships a complete Stan toolchain in its wheel and so compiles
    offline (builds cached in ``~/.cache/httpstan``). Every call is an in-process HTTP round
    trip: fine for checks, slow in a loop. Its log density always drops constants
    (``propto=True``); its gradient always includes the Jacobian of the transforms.

:func:`load_model` picks an engine (``"auto"``: BridgeStan when it can compile or load,
else PyStan), compiles once and caches. Parameters travel as dicts of Stan-shaped arrays
keyed by Stan names (:mod:`lmm_pymc.stan.names`); data dicts may hold NumPy arrays and are
written to JSON by ``stanio``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..checks import positive_int
from .names import flatten, split_name, unflatten
from .programs import stan_file

__all__ = [
    "ENGINES",
    "BridgeStanEngine",
    "PyStanEngine",
    "StanEngine",
    "StanUnavailableError",
    "available_engines",
    "bridgestan_source_available",
    "load_model",
    "sample_pystan",
]

#: Engine names :func:`load_model` accepts (besides ``"auto"``).
ENGINES: tuple[str, ...] = ("bridgestan", "pystan")

_INSTALL_HINT = (
    "install PyStan, which compiles offline (pip install 'lmm_pymc[stan]' or pip install "
    "pystan), or install bridgestan and set BRIDGESTAN to a BridgeStan source tree, or pass "
    "model_lib= a prebuilt BridgeStan model library"
)


class StanUnavailableError(RuntimeError):
    """No Stan engine can run here; the message says what to install."""


def _json(data: Mapping[str, object]) -> str:
    """Stan's JSON of a data dict (NumPy arrays allowed), keys sorted."""
    import stanio

    return stanio.dump_stan_json(dict(sorted(dict(data).items())))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- engines
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


class PyStanEngine(StanEngine):
    """A Stan program built by PyStan 3 (offline Stan toolchain in the httpstan wheel).

    Parameters
    ----------
    program_code : str
        The Stan program.
    data : dict
        Its data dictionary.
    random_seed : int, optional
        Seed of the program's random number generator (``_rng`` generated quantities).
    """

    name = "pystan"

    def __init__(self, program_code: str, data: Mapping[str, object], random_seed: int = 1):
        try:
            import stan
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise StanUnavailableError(f"PyStan is not installed: {_INSTALL_HINT}") from err
        _allow_nested_event_loop()
        self.model = stan.build(program_code, data=json.loads(_json(data)), random_seed=random_seed)
        self._all = list(self.model.constrained_param_names)
        declared = _parameters_block_names(program_code)
        self._params = [n for n in self._all if split_name(n)[0] in declared]

    @property
    def param_names(self) -> list[str]:
        return list(self._params)

    @property
    def all_names(self) -> list[str]:
        return list(self._all)

    def log_density(self, theta_unc: np.ndarray, *, jacobian: bool = True) -> float:
        theta = np.asarray(theta_unc, dtype=float).tolist()
        return float(self.model.log_prob(theta, adjust_transform=jacobian))

    def log_density_gradient(self, theta_unc: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.asarray(theta_unc, dtype=float).tolist()
        grad = np.asarray(self.model.grad_log_prob(theta), dtype=float)
        return float(self.model.log_prob(theta, adjust_transform=True)), grad

    def _constrain_flat(self, theta_unc: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.constrain_pars(theta_unc.tolist()), dtype=float)

    def _unconstrain_flat(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        context = {k: v.tolist() for k, v in values.items()}
        return np.asarray(self.model.unconstrain_pars(context), dtype=float)


class BridgeStanEngine(StanEngine):
    """A Stan program loaded by BridgeStan from a compiled model library.

    Parameters
    ----------
    model_lib : path
        A compiled BridgeStan model library (``*_model.so``).
    data : dict
        Its data dictionary.
    seed : int
        Seed of the program's random number generator.
    """

    name = "bridgestan"

    def __init__(self, model_lib: str | os.PathLike, data: Mapping[str, object], seed: int = 1):
        try:
            import bridgestan
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise StanUnavailableError(f"bridgestan is not installed: {_INSTALL_HINT}") from err
        lib = Path(model_lib)
        if not lib.is_file():
            raise ValueError(f"model_lib must be an existing model library, found {str(lib)!r}")
        self.model = bridgestan.StanModel(str(lib), _json(data), seed=seed)
        self._rng = self.model.new_rng(seed=seed)

    @property
    def param_names(self) -> list[str]:
        return list(self.model.param_names(include_tp=False, include_gq=False))

    @property
    def all_names(self) -> list[str]:
        return list(self.model.param_names(include_tp=True, include_gq=True))

    def log_density(self, theta_unc: np.ndarray, *, jacobian: bool = True) -> float:
        theta = np.asarray(theta_unc, dtype=float)
        return float(self.model.log_density(theta, propto=True, jacobian=jacobian))

    def log_density_gradient(self, theta_unc: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.asarray(theta_unc, dtype=float)
        lp, grad = self.model.log_density_gradient(theta, propto=True, jacobian=True)
        return float(lp), np.asarray(grad, dtype=float)

    def _constrain_flat(self, theta_unc: np.ndarray) -> np.ndarray:
        return np.asarray(
            self.model.param_constrain(theta_unc, include_tp=True, include_gq=True, rng=self._rng)
        )

    def _unconstrain_flat(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.model.param_unconstrain(flatten(values, self.param_names)))


def _parameters_block_names(program_code: str) -> set[str]:
    """Names declared in the ``parameters { ... }`` block of a Stan program."""
    match = re.search(r"(?m)^\s*parameters\s*\{", program_code)
    if match is None:
        return set()
    depth, i = 1, match.end()
    while depth and i < len(program_code):
        depth += {"{": 1, "}": -1}.get(program_code[i], 0)
        i += 1
    body = re.sub(r"//[^\n]*", "", program_code[match.end() : i - 1])
    return set(re.findall(r"([A-Za-z]\w*)\s*;", body))


def _allow_nested_event_loop() -> None:
    """PyStan runs its own asyncio loop; inside Jupyter (a running loop) that needs
    ``nest_asyncio.apply()``, as PyStan documents."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    try:
        import nest_asyncio
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise StanUnavailableError(
            "PyStan inside a running event loop (Jupyter) needs nest_asyncio: "
            "pip install nest_asyncio"
        ) from err
    nest_asyncio.apply()


# ---------------------------------------------------------------- choice and caching
def bridgestan_source_available() -> bool:
    """Whether BridgeStan can compile here: a verified source tree in ``$BRIDGESTAN`` or
    ``~/.bridgestan`` (BridgeStan would otherwise try to download one)."""
    try:
        from bridgestan import compile as bs_compile
    except ImportError:
        return False
    candidates = [os.environ.get("BRIDGESTAN", ""), os.fspath(bs_compile.CURRENT_BRIDGESTAN)]
    for path in filter(None, candidates):
        try:
            bs_compile.verify_bridgestan_path(path)
        except ValueError:
            continue
        return True
    return False


def _pystan_importable() -> bool:
    try:
        import stan  # noqa: F401
    except ImportError:
        return False
    return True


def _bridgestan_importable() -> bool:
    try:
        import bridgestan  # noqa: F401
    except ImportError:
        return False
    return True


def available_engines(model_lib: str | os.PathLike | None = None) -> list[str]:
    """Engines that can run here, preferred first."""
    out = []
    if (model_lib is not None or bridgestan_source_available()) and _bridgestan_importable():
        out.append("bridgestan")
    if _pystan_importable():
        out.append("pystan")
    return out


_CACHE: dict[str, StanEngine] = {}


def _bridgestan_library(source: Path) -> Path:
    """Compile a ``.stan`` file with BridgeStan into a per-program cache folder."""
    import bridgestan

    code = source.read_text()
    folder = Path(os.environ.get("LMM_PYMC_CACHE", Path.home() / ".cache" / "lmm_pymc"))
    folder = folder / "bridgestan" / f"{source.stem}_{_digest(code)}"
    lib = folder / f"{source.stem}_model.so"
    if lib.is_file():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / source.name)
    return Path(bridgestan.compile_model(folder / source.name))


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
        ``"auto"`` takes BridgeStan when it can compile (source tree present) or load
        (``model_lib`` given), else PyStan.
    model_lib : path, optional
        A prebuilt BridgeStan model library of ``program``; no compilation needed.
    seed : int
        Seed of the program's random number generator.

    Returns
    -------
    StanEngine
        Cached: the same program, data, engine, seed and library return the same object.

    Raises
    ------
    StanUnavailableError
        When no engine can run, with what to install.
    """
    choices = ("auto", *ENGINES)
    if engine not in choices:
        raise ValueError(f"engine must be one of {list(choices)}, found {engine!r}")
    source = stan_file(program)
    usable = available_engines(model_lib)
    if engine == "auto":
        if not usable:
            raise StanUnavailableError(f"no Stan engine is available: {_INSTALL_HINT}")
        engine = usable[0]
    elif engine not in usable:
        raise StanUnavailableError(
            f"engine {engine!r} cannot run here (usable: {usable or 'none'}): {_INSTALL_HINT}"
        )
    code = source.read_text()
    key = _digest(engine, code, _json(data), str(seed), str(model_lib))
    if key not in _CACHE:
        if engine == "pystan":
            _CACHE[key] = PyStanEngine(code, data, random_seed=seed)
        else:
            lib = Path(model_lib) if model_lib is not None else _bridgestan_library(source)
            _CACHE[key] = BridgeStanEngine(lib, data, seed=seed)
    return _CACHE[key]


# ------------------------------------------------------------------------- sampling
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
    # the seed was given to stan.build (PyStan takes it there, not in sample)
    fit = engine.model.sample(num_chains=chains, num_samples=draws, num_warmup=tune)
    out = {}
    for name, dims in zip(engine.model.param_names, engine.model.dims, strict=True):
        # PyStan: (*stan_shape, draws * chains) with the chains interleaved, draw-major
        arr = np.asarray(fit[name]).reshape(*dims, draws * chains)
        arr = np.moveaxis(arr, -1, 0).reshape(draws, chains, *dims)
        out[name] = np.swapaxes(arr, 0, 1)
    return out
