"""Stan engines behind one small interface: log density, gradient, transforms, sampling.

``bridgestan``
    The BridgeStan loader (``pip install bridgestan``). It compiles a ``.stan`` file only
    where a BridgeStan source tree of the same release exists: the folder named by the
    ``BRIDGESTAN`` environment variable, else ``~/.bridgestan/bridgestan-<version>`` (the
    ``bridgestan`` package's own version). A prebuilt model library (``*_model.so``) loads
    without sources, if it was built by the same BridgeStan release (major.minor) as the
    package. Libraries compiled here are cached in ``$LMM_PYMC_CACHE/bridgestan``
    (default ``~/.cache/lmm_pymc``), keyed by the program, the package's version, the
    source tree's version and the compiler flags.
``pystan``
    PyStan 3 / httpstan, which ships a complete Stan toolchain in its wheel and so compiles
    offline (builds cached in ``~/.cache/httpstan``). Its log density always drops constants
    (``propto=True``); its gradient always includes the Jacobian of the transforms. Log
    densities and gradients are evaluated in-process by httpstan's compiled module where
    it can be imported, else by PyStan's HTTP calls.

:func:`load_model` picks an engine (``"auto"``: BridgeStan when it can compile or load,
else PyStan, with one warning saying why where a BridgeStan set-up was found unusable),
compiles once, checks that a library is the program it claims to be, and caches.
Parameters travel as dicts of Stan-shaped arrays keyed by Stan names
(:mod:`lmm_pymc.stan.names`); data dicts may hold NumPy arrays and are written to JSON by
``stanio``. Every way an engine cannot run raises :class:`StanUnavailableError` saying what
was found, what is needed and how to get it.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import inspect
import json
import os
import re
import shutil
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StanUnavailableError, require

from ..checks import positive_int
from .names import flatten, split_name, unflatten
from .programs import stan_file

__all__ = [
    "ENGINES",
    "BridgeStanEngine",
    "BridgeStanSource",
    "PyStanEngine",
    "StanEngine",
    "StanUnavailableError",
    "available_engines",
    "bridgestan_source_available",
    "cache_dir",
    "check_program",
    "find_bridgestan_source",
    "load_model",
    "resolve_engine",
    "sample_pystan",
]

#: Engine names :func:`load_model` accepts (besides ``"auto"``).
ENGINES: tuple[str, ...] = ("bridgestan", "pystan")

#: Where BridgeStan's sources of a release are published (with the Stan submodules).
_RELEASES = "https://github.com/roualdes/bridgestan/releases"
#: Environment variables and flags that change a compiled library (part of its cache key).
_FLAG_VARIABLES = ("CXX", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "LDLIBS", "STANCFLAGS", "O",
                   "STAN_THREADS", "STAN_OPENCL", "MAKE")  # fmt: skip


def _json(data: Mapping[str, object]) -> str:
    """Stan's JSON of a data dict (NumPy arrays allowed), keys sorted."""
    stanio = require("stanio", "stan", "Stan data as JSON")
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
            raise StanUnavailableError(
                f"engine 'pystan' needs PyStan, which is not installed: {_pystan_hint()}"
            ) from err
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

    @property
    def _services(self):
        """httpstan's compiled module of this program, imported afresh at each use as
        httpstan's own HTTP views do (a module kept across the loading of other programs'
        modules was seen to run another program's code), or None."""
        return _httpstan_services(self.model.model_name)

    def log_density(self, theta_unc: np.ndarray, *, jacobian: bool = True) -> float:
        theta = np.asarray(theta_unc, dtype=float).tolist()
        services = self._services
        if services is not None:
            return float(services.log_prob(self.model.data, theta, jacobian))
        return float(self.model.log_prob(theta, adjust_transform=jacobian))

    def log_density_gradient(self, theta_unc: np.ndarray) -> tuple[float, np.ndarray]:
        # PyStan has no call that returns both: httpstan's log_prob_grad (the HTTP endpoint
        # and the C++ function behind it) evaluates stan::model::log_prob_grad, which computes
        # the log density, but returns only the gradient. Where httpstan's compiled module
        # imports, both calls run in-process without an HTTP round trip; else two round trips.
        theta = np.asarray(theta_unc, dtype=float).tolist()
        services = self._services
        if services is not None:
            lp = services.log_prob(self.model.data, theta, True)
            grad = services.log_prob_grad(self.model.data, theta, True)
            return float(lp), np.asarray(grad, dtype=float)
        grad = np.asarray(self.model.grad_log_prob(theta), dtype=float)
        return float(self.model.log_prob(theta, adjust_transform=True)), grad

    def _constrain_flat(self, theta_unc: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.constrain_pars(theta_unc.tolist()), dtype=float)

    def _unconstrain_flat(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        context = {k: v.tolist() for k, v in values.items()}
        return np.asarray(self.model.unconstrain_pars(context), dtype=float)


def _httpstan_services(model_name: str):
    """httpstan's compiled module of a built program (what its HTTP views call), or None
    where this httpstan does not expose it (then PyStan's HTTP calls are used)."""
    try:
        import httpstan.models

        return httpstan.models.import_services_extension_module(model_name)
    except Exception:  # noqa: BLE001 - a private API: any failure means "use HTTP"
        return None


class BridgeStanEngine(StanEngine):
    """A Stan program loaded by BridgeStan from a compiled model library.

    Parameters
    ----------
    model_lib : path
        A compiled BridgeStan model library (``*_model.so``), built by the same BridgeStan
        release (major.minor) as the installed ``bridgestan`` package.
    data : dict
        Its data dictionary.
    seed : int
        Seed of the program's random number generator.

    Raises
    ------
    StanUnavailableError
        Without the ``bridgestan`` package, or for a library that this package cannot load
        (another BridgeStan release, a missing shared dependency), naming both versions.
    """

    name = "bridgestan"

    def __init__(self, model_lib: str | os.PathLike, data: Mapping[str, object], seed: int = 1):
        bridgestan = _import_bridgestan()
        lib = Path(model_lib)
        if not lib.is_file():
            raise ValueError(f"model_lib must be an existing model library, found {str(lib)!r}")
        package = _bridgestan_package_version() or "unknown"
        built = _library_version(lib)
        if _release(built) != _release(package):
            raise StanUnavailableError(_mismatch_message(lib, built, package))
        kwargs = {"seed": seed}
        if "warn" in inspect.signature(bridgestan.StanModel).parameters:
            # bridgestan warns when a library is loaded twice (every data set of a program
            # loads its one library); _note_loaded warns only where the file has changed
            kwargs["warn"] = False
        _note_loaded(lib)
        try:
            self.model = bridgestan.StanModel(str(lib), _json(data), **kwargs)
        except (AttributeError, OSError) as err:  # e.g. "undefined symbol: bs_param_initialize"
            raise StanUnavailableError(_mismatch_message(lib, built, package, err)) from err
        self._rng = self.model.new_rng(seed=seed)

    @property
    def model_name(self) -> str:
        """The name stanc gave the program (``lmm_cholesky_model``)."""
        return str(self.model.name())

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


def check_program(engine: object, program_code: str, source: str | os.PathLike) -> None:
    """``ValueError`` unless ``engine`` (anything with ``param_names``, e.g. a model
    library loaded by BridgeStan) declares the parameters of ``program_code``: a library
    of another program must not stand in for it."""
    declared = _parameters_block_names(program_code)
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


# ---------------------------------------------------------- BridgeStan: versions, sources
def _import_bridgestan():
    try:
        import bridgestan
    except ImportError as err:
        raise StanUnavailableError(
            f"engine 'bridgestan' needs the bridgestan package, which is not installed: "
            f"pip install bridgestan{_or_pystan()}"
        ) from err
    return bridgestan


def _bridgestan_package_version() -> str | None:
    """Version of the installed ``bridgestan`` package, None without it."""
    try:
        import bridgestan
    except ImportError:
        return None
    return str(bridgestan.__version__)


def _release(version: str | tuple[int, ...] | None) -> tuple[int, ...] | None:
    """``(major, minor)`` of a version: what must agree between loader and library."""
    if version is None:
        return None
    parts = version if isinstance(version, tuple) else tuple(map(int, re.findall(r"\d+", version)))
    return tuple(parts[:2]) if len(parts) >= 2 else None


def _text(version: tuple[int, ...] | str | None) -> str:
    if version is None:
        return "unknown"
    return version if isinstance(version, str) else ".".join(map(str, version))


def _library_version(lib: Path) -> tuple[int, int, int] | None:
    """The BridgeStan release a model library was built by (its ``bs_*_version`` symbols),
    None where it has none (a library of another origin)."""
    try:
        handle = ctypes.CDLL(str(lib.resolve()))
    except OSError as err:
        raise StanUnavailableError(
            f"model_lib {str(lib)!r} cannot be loaded as a shared library: {err}; rebuild it "
            f"on this machine with the BridgeStan sources of the bridgestan package "
            f"{_text(_bridgestan_package_version())}{_or_pystan()}"
        ) from err
    try:
        return tuple(
            ctypes.c_int.in_dll(handle, f"bs_{part}_version").value
            for part in ("major", "minor", "patch")
        )  # type: ignore[return-value]
    except ValueError:
        return None


def _mismatch_message(
    lib: Path, built: tuple[int, ...] | None, package: str, err: Exception | None = None
) -> str:
    """Library built by one BridgeStan release, loader of another: found, needed, how."""
    what = f"BridgeStan {_text(built)}" if built else "no BridgeStan version (not a model library?)"
    cause = f" ({type(err).__name__}: {' '.join(str(err).split())})" if err else ""
    fix = (
        f"rebuild it with the BridgeStan {package} sources ({_RELEASES}, bridgestan-{package}"
        f".tar.gz, in ~/.bridgestan/bridgestan-{package} or named by BRIDGESTAN)"
    )
    if built:
        fix += f", or pip install 'bridgestan=={_text(built)}' to match the library"
    return (
        f"model_lib {str(lib)!r} was built by {what} and the installed bridgestan package is "
        f"{package}, which cannot load it{cause}: {fix}{_or_pystan()}"
    )


@dataclass(frozen=True)
class BridgeStanSource:
    """The BridgeStan source tree that would compile here, or why none can.

    Attributes
    ----------
    path : Path or None
        The folder looked at: ``$BRIDGESTAN``, else ``~/.bridgestan/bridgestan-<version>``.
    version : str or None
        The tree's BridgeStan version (``src/version.hpp``).
    package_version : str or None
        The installed ``bridgestan`` package's version (None: not installed).
    problem : str or None
        Why BridgeStan cannot compile here; None when it can.
    configured : bool
        Whether the user set BridgeStan up (``BRIDGESTAN`` set, a ``~/.bridgestan`` folder,
        or the package installed with a tree): only then is a fallback worth a warning.
    """

    path: Path | None
    version: str | None
    package_version: str | None
    problem: str | None
    configured: bool

    @property
    def ok(self) -> bool:
        return self.problem is None


def _make_variable(folder: Path, name: str, default: Path) -> Path | None:
    """A path the BridgeStan Makefile uses (``STAN``, ``MATH``), as ``make/local`` may set
    it; None where it is set to something only make can evaluate."""
    local = folder / "make" / "local"
    if local.is_file():
        for line in local.read_text(errors="replace").splitlines():
            m = re.match(rf"\s*{name}\s*[:?]?=\s*(\S+)", line)
            if m:
                value = m.group(1)
                return None if "$" in value else (folder / value).resolve()
    return default


def _tree_problem(folder: Path, package: str | None) -> tuple[str | None, str | None]:
    """``(tree version, problem)`` of a BridgeStan source tree."""
    if not folder.is_dir():
        return None, f"{folder} does not exist or is not a folder"
    if not (folder / "Makefile").is_file():
        return None, f"{folder} has no Makefile: it is not a BridgeStan source tree"
    version_file = folder / "src" / "version.hpp"
    numbers = re.findall(
        r"#define\s+BRIDGESTAN_(?:MAJOR|MINOR|PATCH)\s+(\d+)",
        version_file.read_text(errors="replace") if version_file.is_file() else "",
    )
    if len(numbers) != 3:
        return None, f"{folder} has no src/version.hpp: it is not a BridgeStan source tree"
    version = ".".join(numbers)
    stan = _make_variable(folder, "STAN", folder / "stan")
    math = _make_variable(folder, "MATH", (stan or folder / "stan") / "lib" / "stan_math")
    needed = {"the Stan submodule": stan and stan / "src" / "stan",
              "the Stan Math submodule": math and math / "make" / "compiler_flags"}  # fmt: skip
    missing = [f"{what} ({path})" for what, path in needed.items() if path and not path.exists()]
    if missing:
        return version, (
            f"the BridgeStan tree {folder} lacks {' and '.join(missing)}: a git clone needs "
            "`git submodule update --init --recursive`; the release tarball "
            f"bridgestan-{version}.tar.gz from {_RELEASES} includes them"
        )
    if package is not None and _release(version) != _release(package):
        return version, (
            f"the BridgeStan sources in {folder} are version {version} and the bridgestan "
            f"package is {package}: a library built from them cannot be loaded by it; put the "
            f"{package} sources (bridgestan-{package}.tar.gz from {_RELEASES}) there or in "
            f"~/.bridgestan/bridgestan-{package}, or pip install 'bridgestan=={version}'"
        )
    return version, None


def find_bridgestan_source() -> BridgeStanSource:
    """Where BridgeStan would compile: ``$BRIDGESTAN``, else the folder the ``bridgestan``
    package looks in, ``~/.bridgestan/bridgestan-<package version>``; with the reason
    when it cannot (no package, no tree, a tree without its Stan submodules, a tree of
    another release). Offline, bridgestan cannot download a tree itself."""
    package = _bridgestan_package_version()
    env = os.environ.get("BRIDGESTAN", "")
    home = Path.home() / ".bridgestan"
    if package is None:
        problem = "the bridgestan package is not installed (pip install bridgestan)"
        return BridgeStanSource(None, None, None, problem, bool(env))
    if env:
        folder = Path(env).expanduser()
        version, problem = _tree_problem(folder, package)
        if problem is not None:
            problem = f"BRIDGESTAN={env}: {problem}"
        return BridgeStanSource(folder, version, package, problem, True)
    folder = home / f"bridgestan-{package}"
    if not folder.exists():
        others = sorted(p.name for p in home.glob("bridgestan-*")) if home.is_dir() else []
        problem = (
            f"no BridgeStan source tree: BRIDGESTAN is not set and {folder} does not exist "
            f"(bridgestan {package} looks there"
            + (f"; {home} holds only {others}" if others else "")
            + f"); put the sources of release {package} there (bridgestan-{package}.tar.gz "
            f"from {_RELEASES}) or set BRIDGESTAN to such a tree"
        )
        return BridgeStanSource(folder, None, package, problem, bool(others))
    version, problem = _tree_problem(folder, package)
    return BridgeStanSource(folder, version, package, problem, True)


def bridgestan_source_available() -> bool:
    """Whether BridgeStan can compile here (see :func:`find_bridgestan_source`, whose
    ``problem`` says why not)."""
    return find_bridgestan_source().ok


# ---------------------------------------------------------------- choice and caching
def _pystan_importable() -> bool:
    try:
        import stan  # noqa: F401
    except ImportError:
        return False
    return True


def _bridgestan_importable() -> bool:
    return _bridgestan_package_version() is not None


def _or_pystan() -> str:
    """The alternative worth naming: PyStan where it is installed, else how to get it."""
    if _pystan_importable():
        return (
            "; or use the PyStan engine, which is installed and compiles offline "
            "(engine='pystan', --engine pystan)"
        )
    return "; or install PyStan, which compiles offline (pip install pystan)"


def _pystan_hint() -> str:
    return "pip install pystan (or pip install 'lmm_pymc[stan]'); it compiles offline"


def _library_hint() -> str:
    return ("or give a prebuilt BridgeStan library of the program (model_lib= in Python, "
            "--model-lib on the command line)")  # fmt: skip


def available_engines(model_lib: str | os.PathLike | None = None) -> list[str]:
    """Engines that can run here, preferred first."""
    out = []
    if _bridgestan_importable() and (model_lib is not None or bridgestan_source_available()):
        out.append("bridgestan")
    if _pystan_importable():
        out.append("pystan")
    return out


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve_engine(engine: str = "auto", model_lib: str | os.PathLike | None = None) -> str:
    """The engine :func:`load_model` will use (``"bridgestan"`` or ``"pystan"``).

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
        if not _pystan_importable():
            raise StanUnavailableError(f"engine 'pystan' needs PyStan: {_pystan_hint()}")
        return engine
    bridgestan = _bridgestan_importable()
    if engine == "bridgestan":
        _import_bridgestan() if not bridgestan else None
        if model_lib is None:
            tree = find_bridgestan_source()
            if not tree.ok:
                raise StanUnavailableError(
                    f"engine 'bridgestan' cannot compile: {tree.problem}; {_library_hint()}"
                    f"{_or_pystan()}"
                )
        return engine
    if bridgestan and model_lib is not None:
        return "bridgestan"
    tree = find_bridgestan_source()
    if model_lib is None and tree.ok:
        return "bridgestan"
    if _pystan_importable():
        if model_lib is not None:  # a library without the bridgestan package
            _warn_once(f"model_lib={str(model_lib)!r} is not used, the bridgestan package is not "
                       "installed (pip install bridgestan); using PyStan")  # fmt: skip
        elif tree.configured:
            _warn_once(f"BridgeStan is not usable ({tree.problem}); using PyStan")
        return "pystan"
    raise StanUnavailableError(
        f"no Stan engine can run here: {_pystan_hint()}; or install bridgestan with a "
        f"source tree ({tree.problem}) {_library_hint()}"
    )


_CACHE: dict[str, StanEngine] = {}
_LOADED: dict[str, tuple[int, int]] = {}


def _note_loaded(lib: Path) -> None:
    """Remember a library's file state when first loaded; warn if it changed since (the
    process keeps the first version: dlopen returns the loaded copy)."""
    path, stat = str(lib.resolve()), lib.stat()
    state = (stat.st_mtime_ns, stat.st_size)
    if _LOADED.setdefault(path, state) != state:
        _warn_once(f"model library {path} changed since this process loaded it: the loaded "
                   "copy is used until Python restarts")  # fmt: skip


def _compiler_flags(tree: Path) -> str:
    """Everything besides the program and versions that changes a compiled library: the
    flag variables of the environment and the tree's ``make/local``."""
    local = tree / "make" / "local"
    env = [f"{k}={os.environ[k]}" for k in _FLAG_VARIABLES if k in os.environ]
    return "\n".join([*env, local.read_text(errors="replace") if local.is_file() else ""])


def cache_dir() -> Path:
    """Root of the package's compiled-library cache: ``$LMM_PYMC_CACHE``, default
    ``~/.cache/lmm_pymc``."""
    return Path(os.environ.get("LMM_PYMC_CACHE", Path.home() / ".cache" / "lmm_pymc"))


def _bridgestan_library(source: Path, tree: BridgeStanSource | None = None) -> Path:
    """Compile a ``.stan`` file with BridgeStan into a cache folder whose name hashes the
    program, the bridgestan package's version, the source tree (path and version) and the
    compiler flags: an upgrade of any of them builds a new library."""
    bridgestan = _import_bridgestan()
    tree = find_bridgestan_source() if tree is None else tree
    if not tree.ok:
        raise StanUnavailableError(
            f"BridgeStan cannot compile {source.name}: {tree.problem}; {_library_hint()}"
            f"{_or_pystan()}"
        )
    code = source.read_text()
    key = _digest(code, f"bridgestan {tree.package_version}",
                  f"sources {tree.version} in {tree.path}", _compiler_flags(tree.path))  # fmt: skip
    folder = cache_dir() / "bridgestan" / f"{source.stem}_{key}"
    lib = folder / f"{source.stem}_model.so"
    if lib.is_file():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / source.name)
    previous = os.environ.get("BRIDGESTAN")
    os.environ["BRIDGESTAN"] = str(tree.path)  # the tree checked above, whatever the default
    try:
        return Path(bridgestan.compile_model(folder / source.name))
    except (RuntimeError, ValueError) as err:
        tail = " | ".join(str(err).strip().splitlines()[-3:])
        raise StanUnavailableError(
            f"BridgeStan could not compile {source.name} with the sources in {tree.path}: "
            f"{tail}; {_library_hint()}{_or_pystan()}"
        ) from err
    finally:
        if previous is None:
            os.environ.pop("BRIDGESTAN", None)
        else:
            os.environ["BRIDGESTAN"] = previous


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
        See :func:`resolve_engine`.
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
    key = _digest(engine, code, _json(data), str(seed), str(model_lib))
    if key not in _CACHE:
        if engine == "pystan":
            _CACHE[key] = PyStanEngine(code, data, random_seed=seed)
        else:
            lib = Path(model_lib) if model_lib is not None else _bridgestan_library(source)
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
