"""Every way BridgeStan can be missing or mismatched, without a BridgeStan tree: fake source
trees in tmp_path, versions and libraries simulated at the package's boundary."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import bridgestan
import pytest

import lmm_pymc
from lmm_pymc.cli import main
from lmm_pymc.stan import (
    BridgeStanEngine,
    StanUnavailableError,
    bridgestan_engine,
    bridgestan_source_available,
    check_program,
    engine,
    find_bridgestan_source,
    load_model,
    loading,
    resolve_engine,
    stan_data,
    stan_file,
)

PACKAGE = "2.9.0"
CHOLESKY = ["alpha_0", "beta_0", "sigma_g", "sigs.1", "sigs.2", "L_corr.1.1", "L_corr.2.1",
            "L_corr.1.2", "L_corr.2.2", "z.1.1", "z.2.1"]  # fmt: skip


def _tree(root: Path, version: str = PACKAGE, submodules: bool = True) -> Path:
    """A fake BridgeStan source tree: Makefile, src/version.hpp and (optionally) the files
    of the Stan and Stan Math submodules that BridgeStan's Makefile needs."""
    root.mkdir(parents=True)
    (root / "Makefile").write_text("# BridgeStan\n")
    (root / "src").mkdir()
    major, minor, patch = version.split(".")
    (root / "src" / "version.hpp").write_text(
        f"#define BRIDGESTAN_MAJOR {major}\n#define BRIDGESTAN_MINOR {minor}\n"
        f"#define BRIDGESTAN_PATCH {patch}\n"
    )
    if submodules:
        (root / "stan" / "src" / "stan").mkdir(parents=True)
        (root / "stan" / "lib" / "stan_math" / "make").mkdir(parents=True)
        (root / "stan" / "lib" / "stan_math" / "make" / "compiler_flags").write_text("")
    return root


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real ~/.bridgestan, a fixed package version, a fresh warning memory and cache."""
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    monkeypatch.delenv("BRIDGESTAN", raising=False)
    monkeypatch.setenv("LMM_PYMC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bridgestan, "__version__", PACKAGE)
    monkeypatch.setattr(engine, "_WARNED", set())
    monkeypatch.setattr(loading, "_CACHE", {})


# ---------------------------------------------------------------------- source trees
def test_a_complete_tree_is_usable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGESTAN", str(_tree(tmp_path / "bs")))
    tree = find_bridgestan_source()
    assert tree.ok and tree.version == PACKAGE and tree.path == tmp_path / "bs"
    assert resolve_engine("auto") == "bridgestan"
    # the default place: ~/.bridgestan/bridgestan-<package version>
    monkeypatch.delenv("BRIDGESTAN")
    _tree(tmp_path / "home" / ".bridgestan" / f"bridgestan-{PACKAGE}")
    assert find_bridgestan_source().ok


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing folder", r"BRIDGESTAN=.*/nowhere: .*does not exist"),
        ("no submodules", r"lacks the Stan submodule .*stan/src/stan.* and the Stan Math "
                          r"submodule.*git submodule update --init --recursive"),
        ("other release", r"version 2\.7\.0 and the bridgestan package is 2\.9\.0.*"
                          r"bridgestan-2\.9\.0.*pip install 'bridgestan==2\.7\.0'"),
        ("no version", r"no src/version.hpp: it is not a BridgeStan source tree"),
    ],
)  # fmt: skip
def test_unusable_trees_fall_back_to_pystan_with_one_warning(
    case: str, expected: str, tmp_path, monkeypatch
) -> None:
    folder = tmp_path / "nowhere"
    if case == "no submodules":
        _tree(folder, submodules=False)
    elif case == "other release":
        _tree(folder, version="2.7.0")
    elif case == "no version":
        _tree(folder)
        (folder / "src" / "version.hpp").unlink()
    monkeypatch.setenv("BRIDGESTAN", str(folder))
    tree = find_bridgestan_source()
    assert not tree.ok and tree.configured
    assert not bridgestan_source_available()
    assert re.search(expected, tree.problem), tree.problem
    with pytest.warns(RuntimeWarning) as record:
        assert resolve_engine("auto") == "pystan"
    ours = [str(r.message) for r in record if r.category is RuntimeWarning]  # not PyStan's own
    assert len(ours) == 1 and "\n" not in ours[0]
    assert ours[0].startswith("BridgeStan is not usable (BRIDGESTAN=") and ours[0].endswith(
        "; using PyStan"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second choice does not warn again
        assert resolve_engine("auto") == "pystan"


def test_make_local_may_move_the_submodules(tmp_path, monkeypatch) -> None:
    tree = _tree(tmp_path / "bs", submodules=False)
    (tree / "make").mkdir()
    (tree / "make" / "local").write_text("STAN ?= ../stan_elsewhere/\n")
    monkeypatch.setenv("BRIDGESTAN", str(tree))
    assert "stan_elsewhere" in find_bridgestan_source().problem
    (tmp_path / "stan_elsewhere" / "src" / "stan").mkdir(parents=True)
    math = tmp_path / "stan_elsewhere" / "lib" / "stan_math" / "make"
    math.mkdir(parents=True)
    (math / "compiler_flags").write_text("")
    assert find_bridgestan_source().ok


def test_no_tree_at_all_falls_back_silently(tmp_path) -> None:
    # nothing set up (this machine): PyStan is the normal choice, not worth a warning
    tree = find_bridgestan_source()
    assert not tree.ok and not tree.configured
    assert f".bridgestan/bridgestan-{PACKAGE} does not exist" in tree.problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_engine("auto") == "pystan"


def test_bridgestan_without_tree_or_library_says_what_to_do() -> None:
    with pytest.raises(StanUnavailableError) as err:
        resolve_engine("bridgestan")
    text = str(err.value)
    assert "engine 'bridgestan' cannot compile: no BridgeStan source tree" in text
    assert "model_lib= in Python, --model-lib on the command line" in text
    # PyStan is installed here: the hint is to use it, not to install it
    assert "engine='pystan'" in text and "install PyStan" not in text
    with pytest.raises(ValueError, match="engine must be one of .* found 'cmdstan'"):
        resolve_engine("cmdstan")


# ------------------------------------------------------------------- libraries
def _fake_lib(tmp_path: Path) -> Path:
    lib = tmp_path / "lmm_cholesky_model.so"
    lib.write_bytes(b"not loaded: the tests replace the loader")
    return lib


def test_a_library_of_another_release_is_refused_naming_both(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bridgestan_engine, "_library_version", lambda lib: (2, 7, 0))
    with pytest.raises(StanUnavailableError) as err:
        BridgeStanEngine(_fake_lib(tmp_path), {})
    text = str(err.value)
    assert "was built by BridgeStan 2.7.0 and the installed bridgestan package is 2.9.0" in text
    assert "pip install 'bridgestan==2.7.0'" in text and "bridgestan-2.9.0.tar.gz" in text


def test_undefined_symbol_becomes_a_clear_error(tmp_path, monkeypatch) -> None:
    # the versions look equal, yet the loader misses a symbol (as 2.9.0 on a 2.7.0 library)
    monkeypatch.setattr(bridgestan_engine, "_library_version", lambda lib: (2, 9, 0))

    def fails(*args, **kwargs):
        raise AttributeError("lmm_cholesky_model.so: undefined symbol: bs_param_initialize")

    monkeypatch.setattr(bridgestan, "StanModel", fails)
    with pytest.raises(StanUnavailableError, match=r"BridgeStan 2\.9\.0 .* package is 2\.9\.0.*"
                       r"undefined symbol: bs_param_initialize"):  # fmt: skip
        BridgeStanEngine(_fake_lib(tmp_path), {})


def test_a_file_that_is_no_library(tmp_path) -> None:
    with pytest.raises(StanUnavailableError, match="cannot be loaded as a shared library"):
        BridgeStanEngine(_fake_lib(tmp_path), {})


class _FakeStanModel:
    """bridgestan.StanModel's surface as BridgeStanEngine uses it; records its calls."""

    calls: list[dict] = []

    def __init__(self, lib, data, *, seed=1234, warn=True):
        self.lib_path = str(lib)
        _FakeStanModel.calls.append({"seed": seed, "warn": warn})

    def new_rng(self, seed):
        return None

    def name(self):
        return "lmm_cholesky_model"

    def param_names(self, include_tp=False, include_gq=False):
        return list(CHOLESKY)


def test_loading_a_library_again_does_not_warn(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bridgestan_engine, "_library_version", lambda lib: (2, 9, 0))
    monkeypatch.setattr(bridgestan, "StanModel", _FakeStanModel)
    lib = _fake_lib(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in (1, 2):  # the same library with other data
            BridgeStanEngine(lib, {"N": seed}, seed=seed)
    assert [c.get("warn") for c in _FakeStanModel.calls[-2:]] == [False, False]
    lib.write_bytes(b"rebuilt, longer than before: the process still holds the old copy")
    with pytest.warns(RuntimeWarning, match="changed since this process loaded it"):
        BridgeStanEngine(lib, {})


def test_a_library_of_another_program_is_refused(tmp_path, monkeypatch) -> None:
    class Engine:  # what a cholesky library reports
        param_names = CHOLESKY
        model_name = "lmm_cholesky_model"

    code = stan_file("lkj_corr").read_text()
    with pytest.raises(ValueError, match=r"model_lib must be a library of lmm_lkj_corr.stan .*"
                       r"found the library \(model 'lmm_cholesky_model'\) with parameters "
                       r"\['alpha_0', 'beta_0', 'sigma_g', 'sigs', 'L_corr', 'z'\]"):  # fmt: skip
        check_program(Engine(), code, stan_file("lkj_corr"))
    check_program(Engine(), stan_file("cholesky").read_text(), stan_file("cholesky"))  # its own
    # through load_model, with BridgeStan's loader replaced by the fake engine
    monkeypatch.setattr(loading, "BridgeStanEngine", lambda lib, data, seed: Engine())
    data = stan_data(lmm_pymc.simulate(seed=1).design)
    lib = _fake_lib(tmp_path)
    with pytest.raises(ValueError, match="--model-lib on the command line"):
        load_model("lkj_corr", data, model_lib=lib)
    assert isinstance(load_model("cholesky", data, model_lib=lib), Engine)


def test_library_cache_key_has_versions_and_flags(tmp_path, monkeypatch) -> None:
    built = []

    def compile_model(stan_path):
        lib = Path(stan_path).with_name(Path(stan_path).stem + "_model.so")
        lib.write_text("built")
        built.append(lib)
        return lib

    monkeypatch.setattr(bridgestan, "compile_model", compile_model)
    monkeypatch.setenv("BRIDGESTAN", str(_tree(tmp_path / "bs")))
    source = stan_file("cholesky")
    first = bridgestan_engine.bridgestan_library(source)
    assert first.is_relative_to(tmp_path / "cache" / "bridgestan")  # $LMM_PYMC_CACHE
    assert bridgestan_engine.bridgestan_library(source) == first and len(built) == 1  # cached
    monkeypatch.setenv("CXXFLAGS", "-O0")
    flags = bridgestan_engine.bridgestan_library(source)
    monkeypatch.delenv("CXXFLAGS")
    # an upgrade of the package and the sources: a new library, not the stale one
    monkeypatch.setattr(bridgestan, "__version__", "2.10.0")
    monkeypatch.setenv("BRIDGESTAN", str(_tree(tmp_path / "bs210", version="2.10.0")))
    upgraded = bridgestan_engine.bridgestan_library(source)
    assert len({first, flags, upgraded}) == 3 and len(built) == 3


# ----------------------------------------------------------------------- command line
def test_cli_bridgestan_without_tree_exits_3_in_one_line(capsys) -> None:
    code = main(["crosscheck", "--engine", "bridgestan", "--parametrization", "cholesky"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert err.count("\n") == 1 and err.startswith("lmm-pymc crosscheck: could not run: ")
    assert "--model-lib" in err and "install PyStan" not in err


def test_cli_model_lib_needs_one_pair(tmp_path, capsys) -> None:
    code = main(["crosscheck", "--model-lib", str(_fake_lib(tmp_path))])
    err = capsys.readouterr().err
    assert code == 2 and "--model-lib must come with one pair" in err, err
    assert "found 6 pairs" in err
