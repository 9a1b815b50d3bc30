"""Stan engines, reference files and the data dictionary (lmm_pymc.stan)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pytest

import lmm_pymc
from lmm_pymc import stan as lstan
from lmm_pymc.stan import (
    StanUnavailableError,
    available_engines,
    bridgestan_source_available,
    flatten,
    load_model,
    stan_data,
    stan_file,
    stan_reference_dir,
    unflatten,
)

REFERENCE = ("lmm_lkj_corr.stan", "lmm_cholesky.stan", "lmm_marginal.stan")


# ------------------------------------------------------------------- files, no Stan
def test_reference_files_are_found() -> None:
    folder = stan_reference_dir()
    for name in REFERENCE:
        assert (folder / name).is_file()
    assert stan_file("lkj_corr") == folder / "lmm_lkj_corr.stan"
    assert stan_file("lmm_cholesky") == folder / "lmm_cholesky.stan"
    assert stan_file("lmm_marginal.stan") == folder / "lmm_marginal.stan"
    assert stan_file(folder / "lmm_cholesky.stan") == folder / "lmm_cholesky.stan"


def test_stan_file_error_names_value_and_choices() -> None:
    with pytest.raises(ValueError, match=r"found 'nope'.*lmm_cholesky.stan"):
        stan_file("nope")


def test_wheel_ships_the_reference_folder() -> None:
    # the installed wheel must find the files in the package: pyproject maps them there,
    # and stan_reference_dir looks in the package first
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    include = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert include["stan_reference"] == "lmm_pymc/stan_reference"


def test_package_copy_wins(tmp_path, monkeypatch) -> None:
    # an installed layout: <site>/lmm_pymc/stan.py and <site>/lmm_pymc/stan_reference/
    pkg = tmp_path / "lmm_pymc"
    (pkg / "stan_reference").mkdir(parents=True)
    (pkg / "stan_reference" / "lmm_cholesky.stan").write_text("// copy")
    monkeypatch.setattr(lstan, "__file__", str(pkg / "stan.py"))
    assert stan_reference_dir() == pkg / "stan_reference"
    (pkg / "stan_reference" / "lmm_cholesky.stan").unlink()
    with pytest.raises(FileNotFoundError, match="stan_reference"):
        stan_reference_dir()


def test_stan_programs_use_the_package_names() -> None:
    code = stan_file("lkj_corr").read_text()
    for name in ("alpha_0", "beta_0", "sigma_g", "random_group", "sigs", "R", "Sigma", "rho"):
        assert f" {name}" in code
    assert "array[N] real x;" in code  # current syntax, not `real x[N]`
    assert lstan._parameters_block_names(code) == {
        "alpha_0", "beta_0", "sigma_g", "random_group", "sigs", "R"
    }  # fmt: skip
    assert lstan._parameters_block_names(stan_file("cholesky").read_text()) == {
        "alpha_0", "beta_0", "sigma_g", "sigs", "L_corr", "z"
    }  # fmt: skip


def test_stan_data_from_design() -> None:
    sim = lmm_pymc.simulate(n_groups=3, n_per_group=2, group_labels=["b", "a", "c"], seed=3)
    data = stan_data(sim.design, lmm_pymc.Priors(lkj_eta=1.5))
    assert data["N"] == 6 and data["N_group"] == 3
    # 1-based position of each row's group in design.group_labels
    assert data["group_id"] == [1, 1, 2, 2, 3, 3]
    assert list(sim.design.group_labels) == ["b", "a", "c"]
    np.testing.assert_array_equal(data["y"], sim.design.y)  # exact: a copy
    assert data["lkj_eta"] == 1.5 and data["fixed_sd"] == 10.0


def test_stan_data_errors() -> None:
    design = lmm_pymc.simulate(seed=1).design
    with pytest.raises(ValueError, match="design must be a lmm_pymc.Design, found dict"):
        stan_data({})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="priors must be a lmm_pymc.Priors, found dict"):
        stan_data(design, {})  # type: ignore[arg-type]


def test_flatten_unflatten_round_trip() -> None:
    names = ["a", "m.1.1", "m.2.1", "m.1.2", "m.2.2", "m.1.3", "m.2.3", "v.1", "v.2"]
    values = np.arange(len(names), dtype=float)
    named = unflatten(values, names)
    assert named["m"].shape == (2, 3) and named["m"][1, 0] == 2.0  # Stan m.2.1 = m[1, 0]
    np.testing.assert_array_equal(flatten(named, names), values)  # exact: same numbers
    with pytest.raises(ValueError, match="found no 'v'"):
        flatten({"a": 1.0, "m": named["m"]}, names)
    with pytest.raises(ValueError, match="flat_name must look like"):
        unflatten([1.0], ["1bad"])


def test_engine_choice_errors(monkeypatch) -> None:
    data = stan_data(lmm_pymc.simulate(seed=1).design)
    with pytest.raises(ValueError, match="engine must be one of .* found 'cmdstan'"):
        load_model("cholesky", data, engine="cmdstan")
    monkeypatch.setattr(lstan, "bridgestan_source_available", lambda: False)
    with pytest.raises(StanUnavailableError, match="BRIDGESTAN"):
        load_model("cholesky", data, engine="bridgestan")
    monkeypatch.setattr(lstan, "_pystan_importable", lambda: False)
    with pytest.raises(StanUnavailableError, match="pip install"):
        load_model("cholesky", data)


def test_pystan_is_available_here() -> None:
    # the cross-check tests run on PyStan in CI and must not skip there
    assert "pystan" in available_engines()


# --------------------------------------------------------------- PyStan (compiles)
@pytest.fixture(scope="session")
def cholesky_pystan():
    """The cholesky program on the tutorial data (compiled once, ~90 s the first time)."""
    return load_model("cholesky", stan_data(lmm_pymc.simulate(seed=2024).design), engine="pystan")


@pytest.mark.slow
def test_pystan_engine_round_trip(cholesky_pystan) -> None:
    engine = cholesky_pystan
    assert engine.name == "pystan"
    assert engine.param_names[:4] == ["alpha_0", "beta_0", "sigma_g", "sigs.1"]
    R = np.array([[1.0, 0.6], [0.6, 1.0]])
    values = {"alpha_0": 1.0, "beta_0": -2.0, "sigma_g": 1.5, "sigs": np.array([2.0, 0.5]),
              "L_corr": np.linalg.cholesky(R), "z": np.arange(6.0).reshape(3, 2) / 10}  # fmt: skip
    theta = engine.unconstrain(values)
    assert theta.shape == (12,)  # 3 + 2 + 1 (L_corr of 2 x 2) + 6
    back = engine.constrain(theta)
    # rtol 1e-12: transforms and their inverses in double precision
    for name, value in values.items():
        np.testing.assert_allclose(back[name], value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(back["R"], R, rtol=1e-12)
    L = np.diag(values["sigs"]) @ np.linalg.cholesky(R)
    np.testing.assert_allclose(back["random_group"], values["z"] @ L.T, rtol=1e-12)
    # jacobian=True adds log|d constrained / d unconstrained|: for the <lower=0> scalars
    # log(sigma_g) + sum(log sigs), and for L_corr[2, 1] = tanh(u): log(1 - rho^2)
    # (Stan's cholesky_factor_corr transform); rtol 1e-10: sums of a few doubles
    jac = engine.log_density(theta) - engine.log_density(theta, jacobian=False)
    expected = np.log(1.5) + np.log(values["sigs"]).sum() + np.log(1 - 0.6**2)
    np.testing.assert_allclose(jac, expected, rtol=1e-10)
    with pytest.raises(ValueError, match="missing \\['z'\\]"):
        engine.unconstrain({k: v for k, v in values.items() if k != "z"})


@pytest.mark.slow
def test_load_model_is_cached(cholesky_pystan) -> None:
    again = load_model("cholesky", stan_data(lmm_pymc.simulate(seed=2024).design), engine="pystan")
    assert again is cholesky_pystan


# --------------------------------------------------------------------- BridgeStan
def _bridgestan_lib() -> str | None:
    return os.environ.get("LMM_PYMC_BRIDGESTAN_CHOLESKY_LIB")


@pytest.mark.slow
@pytest.mark.skipif(
    not (bridgestan_source_available() or _bridgestan_lib()),
    reason="BridgeStan needs a source tree ($BRIDGESTAN or ~/.bridgestan) or a prebuilt "
    "library of lmm_cholesky.stan ($LMM_PYMC_BRIDGESTAN_CHOLESKY_LIB); neither is here",
)
def test_bridgestan_matches_pystan(cholesky_pystan) -> None:
    data = stan_data(lmm_pymc.simulate(seed=2024).design)
    bs = load_model("cholesky", data, engine="bridgestan", model_lib=_bridgestan_lib())
    assert bs.name == "bridgestan" and bs.param_names == cholesky_pystan.param_names
    values = {"alpha_0": 1.0, "beta_0": -2.0, "sigma_g": 1.5, "sigs": np.array([2.0, 0.5]),
              "L_corr": np.linalg.cholesky([[1.0, 0.6], [0.6, 1.0]]),
              "z": np.arange(6.0).reshape(3, 2) / 10}  # fmt: skip
    theta = bs.unconstrain(values)
    np.testing.assert_allclose(theta, cholesky_pystan.unconstrain(values), rtol=1e-12)
    # rtol 1e-10: the same C++ model code evaluated by two loaders
    for jacobian in (True, False):
        np.testing.assert_allclose(
            bs.log_density(theta, jacobian=jacobian),
            cholesky_pystan.log_density(theta, jacobian=jacobian),
            rtol=1e-10,
        )
    np.testing.assert_allclose(
        bs.log_density_gradient(theta)[1], cholesky_pystan.log_density_gradient(theta)[1],
        rtol=1e-10,
    )  # fmt: skip
