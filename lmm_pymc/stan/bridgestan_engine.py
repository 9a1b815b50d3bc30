"""The BridgeStan engine: a Stan program loaded from a compiled model library.

A model library (``*_model.so``) loads without sources if it was built by the same
BridgeStan release (major.minor) as the installed ``bridgestan`` package; a library of
another release, or a file that is no model library, is refused naming both versions.
:func:`bridgestan_library` compiles a ``.stan`` file with the source tree of
:func:`~lmm_pymc.stan.bridgestan_tree.find_bridgestan_source` into
``$LMM_PYMC_CACHE/bridgestan`` (default ``~/.cache/lmm_pymc``, :func:`cache_dir`), keyed by
the program, the package's version, the source tree's version and the compiler flags.
"""

from __future__ import annotations

import ctypes
import inspect
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import StanUnavailableError
from .bridgestan_tree import (
    RELEASES,
    BridgeStanSource,
    bridgestan_package_version,
    find_bridgestan_source,
    import_bridgestan,
    release,
    version_text,
)
from .engine import StanEngine, digest, library_hint, or_pystan, stan_json, warn_once
from .names import flatten

__all__ = ["BridgeStanEngine", "bridgestan_library", "cache_dir"]

#: Environment variables and flags that change a compiled library (part of its cache key).
_FLAG_VARIABLES = ("CXX", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "LDLIBS", "STANCFLAGS", "O",
                   "STAN_THREADS", "STAN_OPENCL", "MAKE")  # fmt: skip


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
        bridgestan = import_bridgestan()
        lib = Path(model_lib)
        if not lib.is_file():
            raise ValueError(f"model_lib must be an existing model library, found {str(lib)!r}")
        package = bridgestan_package_version() or "unknown"
        built = _library_version(lib)
        if release(built) != release(package):
            raise StanUnavailableError(_mismatch_message(lib, built, package))
        kwargs = {"seed": seed}
        if "warn" in inspect.signature(bridgestan.StanModel).parameters:
            # bridgestan warns when a library is loaded twice (every data set of a program
            # loads its one library); _note_loaded warns only where the file has changed
            kwargs["warn"] = False
        _note_loaded(lib)
        try:
            self.model = bridgestan.StanModel(str(lib), stan_json(data), **kwargs)
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


# ------------------------------------------------------------------ library versions
def _library_version(lib: Path) -> tuple[int, int, int] | None:
    """The BridgeStan release a model library was built by (its ``bs_*_version`` symbols),
    None where it has none (a library of another origin)."""
    try:
        handle = ctypes.CDLL(str(lib.resolve()))
    except OSError as err:
        raise StanUnavailableError(
            f"model_lib {str(lib)!r} cannot be loaded as a shared library: {err}; rebuild it "
            f"on this machine with the BridgeStan sources of the bridgestan package "
            f"{version_text(bridgestan_package_version())}{or_pystan()}"
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
    what = (
        f"BridgeStan {version_text(built)}"
        if built
        else "no BridgeStan version (not a model library?)"
    )
    cause = f" ({type(err).__name__}: {' '.join(str(err).split())})" if err else ""
    fix = (
        f"rebuild it with the BridgeStan {package} sources ({RELEASES}, bridgestan-{package}"
        f".tar.gz, in ~/.bridgestan/bridgestan-{package} or named by BRIDGESTAN)"
    )
    if built:
        fix += f", or pip install 'bridgestan=={version_text(built)}' to match the library"
    return (
        f"model_lib {str(lib)!r} was built by {what} and the installed bridgestan package is "
        f"{package}, which cannot load it{cause}: {fix}{or_pystan()}"
    )


# ------------------------------------------------------------------ loaded libraries
_LOADED: dict[str, tuple[int, int]] = {}


def _note_loaded(lib: Path) -> None:
    """Remember a library's file state when first loaded; warn if it changed since (the
    process keeps the first version: dlopen returns the loaded copy)."""
    path, stat = str(lib.resolve()), lib.stat()
    state = (stat.st_mtime_ns, stat.st_size)
    if _LOADED.setdefault(path, state) != state:
        warn_once(f"model library {path} changed since this process loaded it: the loaded "
                  "copy is used until Python restarts")  # fmt: skip


# ----------------------------------------------------------------- compiled libraries
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


def bridgestan_library(source: Path, tree: BridgeStanSource | None = None) -> Path:
    """Compile a ``.stan`` file with BridgeStan into a cache folder whose name hashes the
    program, the bridgestan package's version, the source tree (path and version) and the
    compiler flags: an upgrade of any of them builds a new library."""
    bridgestan = import_bridgestan()
    tree = find_bridgestan_source() if tree is None else tree
    if not tree.ok:
        raise StanUnavailableError(
            f"BridgeStan cannot compile {source.name}: {tree.problem}; {library_hint()}"
            f"{or_pystan()}"
        )
    code = source.read_text()
    key = digest(code, f"bridgestan {tree.package_version}",
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
            f"{tail}; {library_hint()}{or_pystan()}"
        ) from err
    finally:
        if previous is None:
            os.environ.pop("BRIDGESTAN", None)
        else:
            os.environ["BRIDGESTAN"] = previous

