"""Stan engines behind one small interface, the reference ``.stan`` files and their data.

Two engines evaluate a Stan program's log density and gradient on the unconstrained scale
and map parameters between the constrained and unconstrained scales:

``bridgestan``
    The BridgeStan loader (``pip install bridgestan``). It compiles a ``.stan`` file only
    where a BridgeStan source tree exists (the ``BRIDGESTAN`` environment variable or
    ``~/.bridgestan``); a prebuilt model library (``*_model.so``) loads without sources.
``pystan``
    PyStan 3 / httpstan, which ships a complete Stan toolchain in its wheel and so compiles
    offline. Every call is an in-process HTTP round trip: fine for checks, slow in a loop.
    Its log density always drops constants (``propto=True``); its gradient always includes
    the Jacobian of the constraining transforms.

:func:`load_model` picks an engine (``"auto"``: BridgeStan when it can compile or load,
else PyStan), compiles once and caches: a second call with the same program and data
returns the same object. Parameters travel as dictionaries of Stan-shaped arrays keyed by
the Stan names of the ``parameters`` block (``random_group`` of shape ``(N_group, 2)``,
so Stan's ``random_group.2.1`` is ``values["random_group"][1, 0]``).

The data dictionary of the reference programs is built from a
:class:`~lmm_pymc.design.Design` by :func:`stan_data`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .design import Design
from .priors import Priors

__all__ = [
    "ENGINES",
    "BridgeStanEngine",
    "PyStanEngine",
    "StanEngine",
    "StanUnavailableError",
    "available_engines",
    "bridgestan_source_available",
    "flatten",
    "load_model",
    "sample_pystan",
    "stan_data",
    "stan_file",
    "stan_reference_dir",
    "unflatten",
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


# ----------------------------------------------------------------------------- files
def stan_reference_dir() -> Path:
    """The folder holding the reference ``.stan`` files.

    An installed wheel carries them as ``lmm_pymc/stan_reference``; a source checkout has
    them in ``stan_reference/`` at the repository root. The package copy wins.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "stan_reference", here.parent / "stan_reference"):
        if candidate.is_dir() and any(candidate.glob("*.stan")):
            return candidate
    raise FileNotFoundError(
        f"stan_reference folder not found: looked in {here / 'stan_reference'} (installed "
        f"wheel) and {here.parent / 'stan_reference'} (source checkout)"
    )


def stan_file(name: str | os.PathLike) -> Path:
    """Path of a reference Stan program.

    Parameters
    ----------
    name : str or path
        A parametrization (``"cholesky"``), a file stem (``"lmm_cholesky"``), a file name
        (``"lmm_cholesky.stan"``) or the path of any existing ``.stan`` file.

    Examples
    --------
    >>> stan_file("lkj_corr").name
    'lmm_lkj_corr.stan'
    """
    path = Path(name)
    if path.suffix == ".stan" and path.is_file():
        return path
    folder = stan_reference_dir()
    stem = path.name.removesuffix(".stan")
    for candidate in (folder / f"{stem}.stan", folder / f"lmm_{stem}.stan"):
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in folder.glob("*.stan"))
    raise ValueError(
        f"name must be a parametrization, a reference Stan file or a .stan path, found "
        f"{str(name)!r}; reference files in {folder}: {found}"
    )


# ------------------------------------------------------------------------------ data
def stan_data(design: Design, priors: Priors | None = None) -> dict[str, object]:
    """The data dictionary of the reference programs, built from a design.

    ``N`` rows, ``x`` and ``y`` as lists, ``N_group`` groups, ``group_id`` the 1-based
    position of each row's group in ``design.group_labels`` (so Stan's group ``j`` is the
    ``group`` coordinate ``design.group_labels[j - 1]``) and the prior hyperparameters
    ``fixed_mu, fixed_sd, residual_sd, group_sd, lkj_eta`` of :class:`Priors`.

    Examples
    --------
    >>> from lmm_pymc import simulate
    >>> d = stan_data(simulate(seed=1).design)
    >>> d["N"], d["N_group"], d["group_id"][:3], d["lkj_eta"]
    (30, 3, [1, 1, 1], 2.0)
    """
    if not isinstance(design, Design):
        raise ValueError(f"design must be a lmm_pymc.Design, found {type(design).__name__}")
    if design.y is None:
        raise ValueError("design must carry an outcome y for Stan, found y=None")
    priors = Priors() if priors is None else priors
    if not isinstance(priors, Priors):
        raise ValueError(f"priors must be a lmm_pymc.Priors, found {type(priors).__name__}")
    return {
        "N": design.n_obs,
        "x": design.x.astype(float).tolist(),
        "y": design.y.astype(float).tolist(),
        "N_group": design.n_groups,
        "group_id": (design.group_index + 1).astype(int).tolist(),
        "fixed_mu": priors.fixed_mu,
        "fixed_sd": priors.fixed_sd,
        "residual_sd": priors.residual_sd,
        "group_sd": priors.group_sd,
        "lkj_eta": priors.lkj_eta,
    }


# ------------------------------------------------------------ flat <-> named values
_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)((?:\.\d+)*)$")


def _split_name(flat_name: str) -> tuple[str, tuple[int, ...]]:
    """``"random_group.2.1"`` -> ``("random_group", (1, 0))`` (Stan 1-based -> 0-based)."""
    match = _NAME.match(flat_name)
    if match is None:
        raise ValueError(f"flat_name must look like 'name' or 'name.i.j', found {flat_name!r}")
    index = tuple(int(i) - 1 for i in match.group(2).split(".")[1:])
    return match.group(1), index


def unflatten(values: Sequence[float] | np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Flat values in the order of Stan's flat ``names`` -> dict of Stan-shaped arrays."""
    values = np.asarray(values, dtype=float)
    if values.shape != (len(names),):
        raise ValueError(f"values must have shape ({len(names)},), found {values.shape}")
    parts = [_split_name(n) for n in names]
    shapes: dict[str, tuple[int, ...]] = {}
    for base, index in parts:
        old = shapes.get(base, (0,) * len(index))
        shapes[base] = tuple(max(a, i + 1) for a, i in zip(old, index, strict=True))
    out = {base: np.zeros(shape) for base, shape in shapes.items()}
    for (base, index), v in zip(parts, values, strict=True):
        out[base][index] = v
    return out


def flatten(values: Mapping[str, object], names: Sequence[str]) -> np.ndarray:
    """Dict of Stan-shaped arrays -> flat values in the order of Stan's flat ``names``."""
    out = np.empty(len(names))
    for k, flat_name in enumerate(names):
        base, index = _split_name(flat_name)
        if base not in values:
            raise ValueError(
                f"values must hold every Stan parameter, found no {base!r} among {sorted(values)}"
            )
        out[k] = np.asarray(values[base], dtype=float)[index]
    return out


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- engines
class StanEngine(ABC):
    """A Stan program with its data: log density, gradient and transforms.

    Parameter values are dicts of Stan-shaped arrays (see :func:`unflatten`); unconstrained
    vectors are 1-d arrays in the engine's own order.
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

    def constrain(self, theta_unc: np.ndarray) -> dict[str, np.ndarray]:
        """Unconstrained vector -> every parameter, transformed parameter and generated
        quantity, by Stan name (generated quantities with ``_rng`` are random draws)."""
        return unflatten(self._constrain_flat(np.asarray(theta_unc, float)), self.all_names)

    def unconstrain(self, values: Mapping[str, object]) -> np.ndarray:
        """Dict of ``parameters``-block values (Stan shapes) -> unconstrained vector."""
        names = {_split_name(n)[0] for n in self.param_names}
        arrays = {k: np.asarray(values[k], dtype=float) for k in names if k in values}
        missing = sorted(names - set(arrays))
        if missing:
            raise ValueError(
                f"values must hold every Stan parameter {sorted(names)}, found {sorted(values)} "
                f"(missing {missing})"
            )
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
        self.model = stan.build(program_code, data=dict(data), random_seed=random_seed)
        self._params = list(self.model.constrained_param_names)
        declared = _parameters_block_names(program_code)
        # PyStan lists parameters, transformed parameters, generated quantities in order
        block = [n for n in self.model.param_names if n in declared]
        self._param_names = [n for n in self._params if _split_name(n)[0] in block]

    @property
    def param_names(self) -> list[str]:
        return list(self._param_names)

    @property
    def all_names(self) -> list[str]:
        return list(self._params)

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
        self.model = bridgestan.StanModel(str(lib), json.dumps(dict(data)), seed=seed)
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


def available_engines(model_lib: str | os.PathLike | None = None) -> list[str]:
    """Engines that can run here, preferred first."""
    out = []
    if model_lib is not None or bridgestan_source_available():
        try:
            import bridgestan  # noqa: F401

            out.append("bridgestan")
        except ImportError:
            pass
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
        A reference program (``"cholesky"``, ``"lmm_lkj_corr"``) or a ``.stan`` path; see
        :func:`stan_file`.
    data : dict
        The data dictionary, e.g. from :func:`stan_data`.
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
        Cached: the same program, data, engine and seed return the same object.

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
    key = _digest(engine, code, json.dumps(dict(data), sort_keys=True), str(seed), str(model_lib))
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
    for name, value in (("draws", draws), ("tune", tune), ("chains", chains)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, found {value!r}")
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
