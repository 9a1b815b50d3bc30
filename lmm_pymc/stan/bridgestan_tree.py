"""Where BridgeStan would compile here, and which releases agree.

BridgeStan compiles a ``.stan`` file only where a BridgeStan source tree of the same
release exists: the folder named by the ``BRIDGESTAN`` environment variable, else
``~/.bridgestan/bridgestan-<version>`` (the ``bridgestan`` package's own version).
:func:`find_bridgestan_source` returns the tree looked at, its version and the package's,
and why it cannot compile (no package, no tree, a tree without its Stan submodules, a tree
of another release); offline, bridgestan cannot download a tree itself. A release is
``major.minor`` (:func:`release`): what must agree between the package and a tree or a
library it loads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import StanUnavailableError
from .engine import or_pystan

__all__ = [
    "RELEASES",
    "BridgeStanSource",
    "bridgestan_package_version",
    "bridgestan_source_available",
    "find_bridgestan_source",
    "import_bridgestan",
    "release",
    "version_text",
]

#: Where BridgeStan's sources of a release are published (with the Stan submodules).
RELEASES = "https://github.com/roualdes/bridgestan/releases"


# -------------------------------------------------------------------------- versions
def import_bridgestan():
    """The ``bridgestan`` package, or a :class:`StanUnavailableError` saying how to get it."""
    try:
        import bridgestan
    except ImportError as err:
        raise StanUnavailableError(
            f"engine 'bridgestan' needs the bridgestan package, which is not installed: "
            f"pip install bridgestan{or_pystan()}"
        ) from err
    return bridgestan


def bridgestan_package_version() -> str | None:
    """Version of the installed ``bridgestan`` package, None without it."""
    try:
        import bridgestan
    except ImportError:
        return None
    return str(bridgestan.__version__)


def release(version: str | tuple[int, ...] | None) -> tuple[int, ...] | None:
    """``(major, minor)`` of a version: what must agree between loader and library."""
    if version is None:
        return None
    parts = version if isinstance(version, tuple) else tuple(map(int, re.findall(r"\d+", version)))
    return tuple(parts[:2]) if len(parts) >= 2 else None


def version_text(version: tuple[int, ...] | str | None) -> str:
    """A version as written in messages (``"2.9.0"``, ``"unknown"``)."""
    if version is None:
        return "unknown"
    return version if isinstance(version, str) else ".".join(map(str, version))


# ---------------------------------------------------------------------- source trees
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
        """Whether BridgeStan can compile here."""
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
            f"bridgestan-{version}.tar.gz from {RELEASES} includes them"
        )
    if package is not None and release(version) != release(package):
        return version, (
            f"the BridgeStan sources in {folder} are version {version} and the bridgestan "
            f"package is {package}: a library built from them cannot be loaded by it; put the "
            f"{package} sources (bridgestan-{package}.tar.gz from {RELEASES}) there or in "
            f"~/.bridgestan/bridgestan-{package}, or pip install 'bridgestan=={version}'"
        )
    return version, None


def find_bridgestan_source() -> BridgeStanSource:
    """Where BridgeStan would compile: ``$BRIDGESTAN``, else the folder the ``bridgestan``
    package looks in, ``~/.bridgestan/bridgestan-<package version>``; with the reason
    when it cannot (no package, no tree, a tree without its Stan submodules, a tree of
    another release). Offline, bridgestan cannot download a tree itself."""
    package = bridgestan_package_version()
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
            f"from {RELEASES}) or set BRIDGESTAN to such a tree"
        )
        return BridgeStanSource(folder, None, package, problem, bool(others))
    version, problem = _tree_problem(folder, package)
    return BridgeStanSource(folder, version, package, problem, True)


def bridgestan_source_available() -> bool:
    """Whether BridgeStan can compile here (see :func:`find_bridgestan_source`, whose
    ``problem`` says why not)."""
    return find_bridgestan_source().ok

