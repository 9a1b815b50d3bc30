"""Stan engines, reference programs, data dictionaries and names (lmm_pymc.stan)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmm_pymc
from lmm_pymc import tutorial
from lmm_pymc.stan import (
    TUTORIAL_NAMES,
    BridgeStanSource,
    StanUnavailableError,
    available_engines,
    bridgestan_source_available,
    flatten,
    general_data,
    general_names,
    load_model,
    marginal_stats_data,
    marginal_stats_names,
    policy,
    programs,
    stan_data,
    stan_file,
    stan_reference_dir,
    tutorial_data,
    unflatten,
)
from lmm_pymc.stan import names as lnames

REFERENCE = ("lmm_lkj_corr.stan", "lmm_cholesky.stan", "lmm_marginal.stan", "lmm_general.stan",
             "lmm_marginal_stats.stan", "lmm_glmm.stan")  # fmt: skip
CROSSED = "rt ~ 1 + cond + (1 + cond | subject) + (1 | item)"


@pytest.fixture(scope="module")
def crossed_small() -> lmm_pymc.Simulation:
    """4 subjects x 3 items: a correlated 2-effect factor and a 1-effect factor."""
    subj, item = np.repeat(np.arange(4), 3), np.tile(np.arange(3), 4)
    df = pd.DataFrame({"subject": [f"s{i}" for i in subj], "item": [f"i{i}" for i in item],
                       "cond": np.tile([-0.5, 0.5], 6)})  # fmt: skip
    groups = {"subject": {"sigs": [1.0, 0.5], "rho": 0.3}, "item": {"sigs": [0.7]}}
    return lmm_pymc.simulate(CROSSED, df, beta=[2.0, 0.5], groups=groups, sigma=0.5, seed=3)


# ------------------------------------------------------------------- files, no Stan
def test_reference_files_are_found() -> None:
    folder = stan_reference_dir()
    for name in REFERENCE:
        assert (folder / name).is_file()
    assert stan_file("lkj_corr") == folder / "lmm_lkj_corr.stan"
    assert stan_file("general") == folder / "lmm_general.stan"
    assert stan_file("glmm") == folder / "lmm_glmm.stan"
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
    # an installed layout: <site>/lmm_pymc/stan/programs.py, <site>/lmm_pymc/stan_reference/
    pkg = tmp_path / "lmm_pymc"
    (pkg / "stan_reference").mkdir(parents=True)
    (pkg / "stan_reference" / "lmm_cholesky.stan").write_text("// copy")
    monkeypatch.setattr(programs, "__file__", str(pkg / "stan" / "programs.py"))
    assert stan_reference_dir() == pkg / "stan_reference"
    (pkg / "stan_reference" / "lmm_cholesky.stan").unlink()
    with pytest.raises(FileNotFoundError, match="stan_reference"):
        stan_reference_dir()


def test_stan_programs_declare_the_registry_names() -> None:
    code = stan_file("lkj_corr").read_text()
    for name in ("alpha_0", "beta_0", "sigma_g", "random_group", "sigs", "R", "Sigma", "rho"):
        assert f" {name}" in code
    assert "array[N] real x;" in code  # current syntax, not `real x[N]`
    assert programs.parameters_block_names(code) == {
        "alpha_0", "beta_0", "sigma_g", "random_group", "sigs", "R"
    }  # fmt: skip
    assert programs.parameters_block_names(stan_file("cholesky").read_text()) == {
        "alpha_0", "beta_0", "sigma_g", "sigs", "L_corr", "z"
    }  # fmt: skip
    general = stan_file("general").read_text()
    assert programs.parameters_block_names(general) == {"beta", "sigma", "sigs", "L_free", "z"}
    assert "sigma_g" not in general and 'build_model(design, "cholesky")' in general
    stats = stan_file("marginal_stats").read_text()
    assert programs.parameters_block_names(stats) == {"beta", "sigma", "sigs", "L_corr"}
    assert 'build_model(design, "marginal")' in stats and "N;" not in stats  # no rows
    # every Stan name of the tutorial's programs has a rule in the registry
    stan_names = {r.target for r in TUTORIAL_NAMES.to_stan}
    assert {"alpha_0", "beta_0", "sigma_g", "sigs", "R", "L_corr", "z", "random_group",
            "Sigma", "rho"} <= stan_names  # fmt: skip


# ------------------------------------------------------------------------- data
def test_tutorial_data_from_design() -> None:
    frame = tutorial.design_frame(3, 2, group_labels=["b", "a", "c"])
    sim = lmm_pymc.simulate(data=frame, seed=3)
    data = tutorial_data(sim.design, lmm_pymc.Priors(lkj_eta=1.5))
    assert data["N"] == 6 and data["N_group"] == 3
    # 1-based position of each row's group in the factor's labels
    assert data["group_id"].tolist() == [1, 1, 2, 2, 3, 3]
    assert list(sim.design.factors[0].labels) == ["b", "a", "c"]
    np.testing.assert_array_equal(data["y"], sim.design.y)  # exact: a copy
    np.testing.assert_array_equal(data["x"], frame["x"])
    assert data["lkj_eta"] == 1.5 and data["fixed_sd"] == 10.0
    assert stan_data(sim.design).keys() == data.keys()  # the tutorial's design
    # the tutorial's programs hold one number per prior: other families are refused
    custom = lmm_pymc.Priors(sigs="halfstudent_t(3, 1)")
    with pytest.raises(ValueError, match="take the tutorial's prior families only"):
        tutorial_data(sim.design, custom)
    with pytest.raises(ValueError, match="take the tutorial's prior families only"):
        tutorial_data(sim.design, lmm_pymc.Priors(terms={"beta[x]": "normal(1, 2)"}))


def test_general_data_from_design(crossed_small) -> None:
    d = crossed_small.design
    data = general_data(d, add_jacobian=False)
    assert (data["N"], data["p"], data["F"]) == (12, 2, 2)
    assert data["q"].tolist() == [2, 1] and data["J"].tolist() == [4, 3]
    assert data["correlated"].tolist() == [1, 1] and data["add_jacobian"] == 0
    # Z side by side in the order of design.terms; g 1-based per factor (exact copies)
    np.testing.assert_array_equal(data["Z"], np.column_stack([f.Z for f in d.factors]))
    assert data["g"][:4].tolist() == [[1, 1], [1, 2], [1, 3], [2, 1]]
    assert stan_data(d).keys() == data.keys() and stan_data(d)["add_jacobian"] == 1


def test_marginal_stats_data_are_the_group_sums(crossed_small) -> None:
    sim = lmm_pymc.simulate(seed=2024)
    data = marginal_stats_data(sim.design, lmm_pymc.Priors(lkj_eta=1.5))
    grouped = sim.design.grouped_statistics()
    assert (data["J"], data["p"], data["q"], data["correlated"]) == (3, 2, 2, 1)
    for name in ("n", "XtX", "XtZ", "ZtZ", "Xty", "Zty", "yty"):  # exact: the same sums
        np.testing.assert_array_equal(data[name], getattr(grouped.statistics, name))
    assert data["lkj_eta"] == 1.5 and "y" not in data and "N" not in data
    # from the sums alone (no rows), and through stan_data by program name
    assert marginal_stats_data(grouped).keys() == data.keys()
    assert stan_data(sim.design, program="marginal_stats").keys() == data.keys()
    with pytest.raises(ValueError, match="exactly one grouping factor"):
        marginal_stats_data(crossed_small.design)
    with pytest.raises(TypeError, match="data must be a lmm_pymc.Design or GroupedStatistics"):
        marginal_stats_data({})  # type: ignore[arg-type]


def test_marginal_stats_registry(crossed_small) -> None:
    R = np.array([[1.0, 0.3], [0.3, 1.0]])
    point = {"beta": np.ones(2), "sigma": np.array(1.0), "sigs": np.ones(2), "R": R}
    stan = marginal_stats_names(lmm_pymc.simulate(seed=1).design).stan_values(point, ["L_corr"])
    np.testing.assert_allclose(stan["L_corr"] @ stan["L_corr"].T, R, rtol=1e-12)  # Cholesky
    frame = tutorial.design_frame(3, 4)
    uncorrelated = lmm_pymc.simulate("y ~ 1 + x + (1 + x || group_id)", frame, beta=[1.0, 0.5],
                                     groups={"group_id": {"sigs": [1.0, 0.5]}}, sigma=0.5,
                                     seed=1).design  # fmt: skip
    names = marginal_stats_names(uncorrelated)  # the program's unused 1 x 1 L_corr
    assert names.stan_values({"R": np.eye(2)}, ["L_corr"])["L_corr"].tolist() == [[1.0]]
    assert names.package_values({"b": np.zeros((3, 2))}).keys() == {"b_group_id"}
    with pytest.raises(ValueError, match="exactly one grouping factor"):
        marginal_stats_names(crossed_small.design)


def test_tutorial_programs_refuse_other_designs(crossed_small) -> None:
    with pytest.raises(ValueError, match=r"y ~ 1 \+ x \+ \(1 \+ x \| group_id\).*'general'"):
        tutorial_data(crossed_small.design)
    with pytest.raises(ValueError, match="program='general'"):
        stan_data(crossed_small.design, program="cholesky")


def test_stan_data_errors() -> None:
    design = lmm_pymc.simulate(seed=1).design
    with pytest.raises(TypeError, match="design must be a lmm_pymc.Design, found dict"):
        stan_data({})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="priors must be a lmm_pymc.Priors, found dict"):
        stan_data(design, {})  # type: ignore[arg-type]


# ------------------------------------------------------------------------ names
def test_flatten_unflatten_round_trip() -> None:
    # Stan lists arrays column-major: m.1.1, m.2.1, m.1.2, ...
    names = ["a", "m.1.1", "m.2.1", "m.1.2", "m.2.2", "m.1.3", "m.2.3", "v.1", "v.2"]
    values = np.arange(len(names), dtype=float)
    named = unflatten(values, names)
    assert named["a"].shape == () and named["v"].shape == (2,)
    assert named["m"].shape == (2, 3) and named["m"][1, 0] == 2.0  # Stan m.2.1 = m[1, 0]
    np.testing.assert_array_equal(flatten(named, names), values)  # exact: same numbers
    with pytest.raises(ValueError, match="found no 'v'"):
        flatten({"a": 1.0, "m": named["m"]}, names)
    with pytest.raises(ValueError, match=r"shape \(2, 3\), found \(3, 2\)"):
        flatten({**named, "m": named["m"].T}, names)
    with pytest.raises(ValueError, match="flat_name must look like"):
        unflatten([1.0], ["1bad"])


def test_cholesky_corr_free_round_trip() -> None:
    y = np.array([0.3, -1.2, 0.8, 0.1, -0.4, 2.0])
    L = lnames.cholesky_corr_free(y, 4)
    # a Cholesky factor of a correlation matrix: lower triangular, unit rows; rtol 1e-12:
    # a few double operations per entry
    np.testing.assert_allclose(np.sum(L * L, axis=1), 1.0, rtol=1e-12)
    assert np.all(np.triu(L, 1) == 0.0) and np.all(np.diag(L) > 0)
    np.testing.assert_allclose(lnames.cholesky_corr_unfree(L), y, rtol=1e-12)


def test_tutorial_registry_both_directions() -> None:
    rng = np.random.default_rng(1)
    sigs, R = np.array([2.0, 0.5]), np.array([[1.0, 0.6], [0.6, 1.0]])
    z = rng.normal(size=(3, 2))
    L = np.linalg.cholesky(np.diag(sigs) @ R @ np.diag(sigs))
    point = {"beta": np.array([6.0, 4.0]), "sigma": np.array(1.5), "sigs": sigs, "R": R,
             "z_group_id": z, "b_group_id": z @ L.T}  # fmt: skip
    stan = TUTORIAL_NAMES.stan_values(point, ["alpha_0", "beta_0", "sigma_g", "L_corr", "rho"])
    assert (stan["alpha_0"], stan["beta_0"], stan["sigma_g"], stan["rho"]) == (6.0, 4.0, 1.5, 0.6)
    # back, with leading (chain, draw) dimensions as on Stan draws; rtol 1e-12: one
    # Cholesky factorisation and a product
    values = {**stan, "sigs": sigs, "R": R, "z": z, "random_group": point["b_group_id"]}
    draws = {k: np.broadcast_to(v, (2, 3, *np.shape(v))) for k, v in values.items()}
    package = TUTORIAL_NAMES.package_values(draws)
    np.testing.assert_array_equal(package["beta"][1, 2], [6.0, 4.0])
    np.testing.assert_array_equal(package["z_group_id"][0, 0], z)
    assert package["sigma"].shape == (2, 3)
    np.testing.assert_allclose(package["chol_cov_group_id"][0, 1], L[np.tril_indices(2)],
                               rtol=1e-12)  # fmt: skip
    with pytest.raises(ValueError, match=r"needs \['z_group_id'\]"):
        TUTORIAL_NAMES.stan_values({"beta": point["beta"]}, ["z"])


def test_general_registry(crossed_small) -> None:
    d = crossed_small.design
    names = general_names(d)
    rng = np.random.default_rng(2)
    R = np.eye(3)
    R[0, 1] = R[1, 0] = -0.4  # subject's block; item has q = 1
    point = {"beta": np.ones(2), "sigma": np.array(1.0), "sigs": np.ones(3), "R": R,
             "z_subject": rng.normal(size=(4, 2)), "z_item": rng.normal(size=(3, 1))}  # fmt: skip
    stan = names.stan_values(point, ["z", "L_free"])
    # z: z_subject row-major, then z_item (exact: the same numbers)
    np.testing.assert_array_equal(stan["z"][:8], point["z_subject"].reshape(-1))
    np.testing.assert_array_equal(stan["z"][8:], point["z_item"][:, 0])
    # L_free: Stan's own transform gives back cholesky of the subject block (rtol 1e-12)
    L = lnames.cholesky_corr_free(stan["L_free"], 2)
    np.testing.assert_allclose(L @ L.T, R[:2, :2], rtol=1e-12)
    table = names.table(["beta.2", "z.3"])
    assert table["package"].tolist()[0] == "beta[1]"


# ------------------------------------------------------------------- engine choice
def test_engine_choice_errors(monkeypatch) -> None:
    data = stan_data(lmm_pymc.simulate(seed=1).design)
    with pytest.raises(ValueError, match="engine must be one of .* found 'cmdstan'"):
        load_model("cholesky", data, engine="cmdstan")
    no_tree = BridgeStanSource(None, None, "2.9.0", "BRIDGESTAN names no tree", True)
    monkeypatch.setattr(policy, "find_bridgestan_source", lambda: no_tree)
    with pytest.raises(StanUnavailableError, match="cannot compile: BRIDGESTAN names no tree"):
        load_model("cholesky", data, engine="bridgestan")
    monkeypatch.setattr(policy, "pystan_importable", lambda: False)
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


VALUES = {"alpha_0": 1.0, "beta_0": -2.0, "sigma_g": 1.5, "sigs": np.array([2.0, 0.5]),
          "L_corr": np.linalg.cholesky([[1.0, 0.6], [0.6, 1.0]]),
          "z": np.arange(6.0).reshape(3, 2) / 10}  # fmt: skip


@pytest.mark.slow
def test_pystan_engine_round_trip(cholesky_pystan) -> None:
    engine = cholesky_pystan
    assert engine.name == "pystan"
    assert engine.param_names[:4] == ["alpha_0", "beta_0", "sigma_g", "sigs.1"]
    assert engine.parameters == ["alpha_0", "beta_0", "sigma_g", "sigs", "L_corr", "z"]
    theta = engine.unconstrain(VALUES)
    assert theta.shape == (12,)  # 3 + 2 + 1 (L_corr of 2 x 2) + 6
    back = engine.constrain(theta)
    # rtol 1e-12: transforms and their inverses in double precision
    for name, value in VALUES.items():
        np.testing.assert_allclose(back[name], value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(back["R"], [[1.0, 0.6], [0.6, 1.0]], rtol=1e-12)
    L = np.diag(VALUES["sigs"]) @ VALUES["L_corr"]
    np.testing.assert_allclose(back["random_group"], VALUES["z"] @ L.T, rtol=1e-12)
    # jacobian=True adds log|d constrained / d unconstrained|: for the <lower=0> scalars
    # log(sigma_g) + sum(log sigs), and for L_corr[2, 1] = tanh(u): log(1 - rho^2)
    # (Stan's cholesky_factor_corr transform); rtol 1e-10: sums of a few doubles
    jac = engine.log_density(theta) - engine.log_density(theta, jacobian=False)
    expected = np.log(1.5) + np.log(VALUES["sigs"]).sum() + np.log(1 - 0.6**2)
    np.testing.assert_allclose(jac, expected, rtol=1e-10)
    with pytest.raises(ValueError, match="missing \\['z'\\]"):
        engine.unconstrain({k: v for k, v in VALUES.items() if k != "z"})


@pytest.mark.slow
def test_pystan_density_and_gradient_in_process(cholesky_pystan) -> None:
    # httpstan's compiled module, called in-process, is what PyStan's HTTP calls reach:
    # the same C++ code on the same numbers, so exactly equal
    engine, theta = cholesky_pystan, cholesky_pystan.unconstrain(VALUES)
    assert engine._services is not None  # the fast path is used here
    lp, grad = engine.log_density_gradient(theta)
    assert lp == engine.model.log_prob(theta.tolist(), adjust_transform=True)
    np.testing.assert_array_equal(grad, engine.model.grad_log_prob(theta.tolist()))
    assert engine.log_density(theta, jacobian=False) == engine.model.log_prob(
        theta.tolist(), adjust_transform=False
    )


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
    reason="BridgeStan needs a source tree of its release ($BRIDGESTAN or "
    "~/.bridgestan/bridgestan-<version>) or a prebuilt library of lmm_cholesky.stan "
    "($LMM_PYMC_BRIDGESTAN_CHOLESKY_LIB); neither is here",
)
def test_bridgestan_matches_pystan(cholesky_pystan) -> None:
    data = stan_data(lmm_pymc.simulate(seed=2024).design)
    bs = load_model("cholesky", data, engine="bridgestan", model_lib=_bridgestan_lib())
    assert bs.name == "bridgestan" and bs.param_names == cholesky_pystan.param_names
    theta = bs.unconstrain(VALUES)
    np.testing.assert_allclose(theta, cholesky_pystan.unconstrain(VALUES), rtol=1e-12)
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
    np.testing.assert_allclose(bs.constrain(theta)["R"], cholesky_pystan.constrain(theta)["R"],
                               rtol=1e-12)  # fmt: skip
