"""Model structure: free variables, shapes, coords, shared names, the log density itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import scipy.stats as st

import lmm_pymc
from lmm_pymc import PARAMETRIZATIONS, Priors, build_model, design_from_formula, simulate, tutorial

SHARED = {
    "beta": ("fixed_effect",),
    "sigma": (),
    "sigs": ("random_effect",),
    "R": ("random_effect", "random_effect_"),
}
CROSSED = "rt ~ 1 + cond + (1 + cond | subject) + (1 + cond | item)"


@pytest.fixture(scope="module")
def labelled_sim():
    frame = tutorial.design_frame(
        4, group_sizes=[3, 5, 4, 6], group_labels=["s1", "s2", "s3", "s4"]
    )
    return simulate(data=frame, seed=2)


@pytest.fixture(scope="module")
def crossed_design():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"subject": np.repeat([f"s{i}" for i in range(6)], 4),
                       "item": np.tile([f"i{i}" for i in range(4)], 6),
                       "cond": rng.choice([-0.5, 0.5], 24), "rt": rng.normal(size=24)})  # fmt: skip
    return design_from_formula(CROSSED, df)


@pytest.mark.parametrize(
    ("parametrization", "free"),
    [
        # beta last: the rest of the sampled vector (lmm_pymc.logdensity)
        ("lkj_corr", ["sigma", "sigs_group_id", "R_upper_group_id", "b_group_id", "beta"]),
        ("cholesky", ["sigma", "chol_cov_group_id", "z_group_id", "beta"]),
        ("marginal", ["sigma", "chol_cov_group_id", "beta"]),
    ],
)
def test_free_variables(labelled_sim, parametrization, free):
    m = build_model(labelled_sim.design, parametrization)
    assert [v.name for v in m.free_RVs] == free
    ip = m.initial_point()
    assert ip["beta_centred__"].shape == (2,)  # sampled centred (lmm_pymc.centring)
    if parametrization != "marginal":
        assert m.named_vars_to_dims["b_group_id"] == ("group_id", "group_id_effect")
        assert np.shape(ip.get("z_group_id", ip.get("b_group_id"))) == (4, 2)


def test_default_parametrization_follows_the_factors(labelled_sim, crossed_design):
    # marginal: no random effect sampled (beta last: the rest of the sampled vector)
    assert [v.name for v in build_model(labelled_sim.design).free_RVs] == [
        "sigma", "chol_cov_group_id", "beta"]
    # crossed, 6 x 2 + 4 x 2 = 20 effects: every factor's integrated out together
    free = [v.name for v in build_model(crossed_design).free_RVs]
    assert "chol_cov_item" in free and "chol_cov_subject" in free
    assert not any(name.startswith("z_") for name in free)
    # integrate=: that factor (6 subjects) integrated out, the 4 items' effects sampled
    # (non-centred: 6 rows per item)
    free = [v.name for v in build_model(crossed_design, integrate="subject").free_RVs]
    assert "z_item" in free and "z_subject" not in free and "chol_cov_subject" in free


# laplace refuses a Gaussian outcome: tests/test_laplace.py checks its names
@pytest.mark.parametrize("parametrization", [p for p in PARAMETRIZATIONS if p != "laplace"])
def test_shared_names_coords_and_finite_logp(labelled_sim, parametrization):
    m = build_model(labelled_sim.design, parametrization)
    assert m.coords["group_id"] == ("s1", "s2", "s3", "s4")
    assert m.coords["random_effect"] == ("intercept|group_id", "x|group_id")
    assert m.coords["fixed_effect"] == ("intercept", "x")
    for name, dims in SHARED.items():
        assert name in m.named_vars, name
        assert m.named_vars_to_dims.get(name, ()) == dims, name
    ip = m.initial_point()
    logp = m.compile_logp()(ip)
    grad = m.compile_dlogp()(ip)
    assert np.isfinite(logp)
    assert np.all(np.isfinite(grad)) and grad.size == sum(np.size(v) for v in ip.values())


def test_crossed_structure_names_and_coords(crossed_design):
    model = build_model(crossed_design, "cholesky")
    free = sorted(v.name for v in model.free_RVs)
    assert free == ["beta", "chol_cov_item", "chol_cov_subject", "sigma", "z_item", "z_subject"]
    assert list(model.coords["random_effect"]) == [
        "intercept|subject", "cond|subject", "intercept|item", "cond|item"]  # fmt: skip
    assert model.named_vars_to_dims["b_subject"] == ("subject", "subject_effect")
    assert model.named_vars_to_dims["R"] == ("random_effect", "random_effect_")


def test_uncorrelated_and_lkj_corr_variants(crossed_design):
    df = pd.DataFrame({"y": np.arange(12.0), "x1": np.tile([0.0, 1.0, 3.0], 4),
                       "g": np.repeat(list("abcd"), 3)})  # fmt: skip
    d = design_from_formula("y ~ x1 + (1 + x1 || g)", df)
    assert sorted(v.name for v in build_model(d, "cholesky").free_RVs) == [
        "beta", "sigma", "sigs_g", "z_g"]  # fmt: skip
    assert sorted(v.name for v in build_model(d, "lkj_corr").free_RVs) == [
        "b_g", "beta", "sigma", "sigs_g"]  # fmt: skip
    assert sorted(v.name for v in build_model(d, "marginal").free_RVs) == [
        "beta",
        "sigma",
        "sigs_g",
    ]
    d2 = design_from_formula("y ~ x1 + (1 + x1 | g)", df)
    assert sorted(v.name for v in build_model(d2, "lkj_corr").free_RVs) == [
        "R_upper_g", "b_g", "beta", "sigma", "sigs_g"]  # fmt: skip


def test_deterministics_are_consistent(labelled_sim):
    """R is a correlation matrix and sigs its sds in both explicit parametrizations."""
    for p in ("lkj_corr", "cholesky"):
        m = build_model(labelled_sim.design, p)
        outs = m.replace_rvs_by_values([m["sigs"], m["R"], m["b_group_id"]])
        f = m.compile_fn(outs, inputs=m.value_vars, on_unused_input="ignore")
        rng = np.random.default_rng(0)
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in m.initial_point().items()}
        sigs, R, b = f(point)
        assert np.all(sigs > 0) and b.shape == (4, 2)
        # a correlation matrix: unit diagonal, symmetric; rtol 1e-12 (rounding only)
        np.testing.assert_allclose(np.diag(R), 1.0, rtol=1e-12)
        np.testing.assert_allclose(R, R.T, rtol=1e-12)


def test_likelihood_equals_scipy_at_a_point(labelled_sim):
    """The latent models' y term is N(y | X beta + Z b, sigma), b flattened level by level."""
    d = labelled_sim.design
    m = build_model(d, "cholesky")
    rng = np.random.default_rng(3)
    point = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in m.initial_point().items()}
    outs = m.replace_rvs_by_values([m["beta"], m["sigma"], m["b_group_id"]])
    beta, sigma, b = m.compile_fn(outs, inputs=m.value_vars, on_unused_input="ignore")(point)
    ref = st.norm(d.X @ beta + d.Z @ b.reshape(-1), sigma).logpdf(d.y).sum()
    # rtol 1e-12: the same sum of the same terms, in another order
    assert m.point_logps(point, round_vals=20)["y"] == pytest.approx(ref, rel=1e-12)


def test_log_density_equals_the_code_before_the_redesign():
    """The tutorial's models give the log densities recorded before the one-pipeline redesign.

    The fixture holds the old code's logp at 4 points per parametrization and data set; the
    old value variables map one to one (alpha_0, beta_0 -> beta; sigma_g -> sigma; ...).
    rtol 1e-10: the same terms summed in another order (measured: 3e-16).
    """
    fixture = Path(__file__).parent / "data" / "tutorial_logp_before_redesign.json"
    rename = {"sigma_g_log__": "sigma_log__", "z": "z_group_id", "random_group": "b_group_id",
              "chol_cov_cholesky-cov-packed__": "chol_cov_group_id_cholesky-cov-packed__",
              "sigs_log__": "sigs_group_id_log__",
              "R_upper_interval__": "R_upper_group_id_interval__"}  # fmt: skip
    for case in json.loads(fixture.read_text())["cases"]:
        frame = tutorial.design_frame(group_labels=case["group_labels"])
        sim = simulate(data=frame, seed=case["seed"])
        # centre=False: the old code sampled beta itself (lmm_pymc.centring)
        logp = build_model(sim.design, case["parametrization"], priors=Priors.tutorial(),
                           centre=False).compile_logp()  # fmt: skip
        for item in case["points"]:
            old = item["point"]
            point = {rename[k]: np.asarray(v) for k, v in old.items() if k in rename}
            point["beta"] = np.array([old["alpha_0"], old["beta_0"]])
            # abs 3e-7: the recorded values passed each prior's scale as a Python scalar,
            # which PyMC folds into a float32 constant (6e-8 per HalfNormal(5) entry against
            # scipy); per-term priors pass float64 vectors, exact to 1e-15. Everything else
            # agrees to 1e-12 (the regression this test guards: a changed model)
            assert float(logp(point)) == pytest.approx(item["logp"], rel=1e-12, abs=3e-7), case
    # the check can fail: another prior moves the log density at the same point
    other = build_model(sim.design, case["parametrization"], priors=Priors(fixed="normal(0, 3)"),
                        centre=False)  # fmt: skip
    assert abs(float(other.compile_logp()(point)) - item["logp"]) > 1.0


def test_priors_reach_the_model(tutorial_sim):
    """Changing one prior changes exactly the term it governs."""
    base = build_model(tutorial_sim.design, "lkj_corr", priors=Priors.tutorial())
    wide = build_model(tutorial_sim.design, "lkj_corr", priors=Priors(fixed="normal(0, 20)"))
    ip = base.initial_point()  # beta = 0
    a, b = base.point_logps(ip), wide.point_logps(ip)
    # Normal(0, s) at 0: -log(s) - 0.5 log(2 pi); the difference is log 2 per entry (2 d.p.)
    assert a["beta"] - b["beta"] == pytest.approx(2 * np.log(2), abs=0.01)
    assert a["sigs_group_id"] == b["sigs_group_id"] and a["y"] == b["y"]


def test_model_inputs_are_packed(tutorial_sim, crossed_design, monkeypatch):
    """The marginal models take their numbers as a few packed pm.Data (nutpie compiles
    extraction code per input): every hyperparameter but beta's in ``prior_values``,
    beta's as the rows of ``prior_beta`` (no slice depends on p), the per-group columns as
    rows of ``stat_columns``, the p-sized numbers as two matrices (``stat_E``: E per
    (effect, group) row; ``stat_totals``: the quadratic form in beta summed over groups);
    crossed: the group table, Z'D and the P-sized cross-products."""
    single = build_model(tutorial_sim.design, "marginal", priors=Priors.tutorial())
    assert sorted(v.name for v in single.data_vars) == [
        "prior_beta", "prior_values", "stat_E", "stat_columns", "stat_totals"]  # fmt: skip
    # Priors.tutorial(): sigma and both sigs ~ HalfNormal(0, 5); beta ~ Normal(0, 10):
    # rows mu, sigma, one column per coefficient
    np.testing.assert_array_equal(single["prior_values"].get_value(), [5.0, 5.0, 5.0])
    # prior_beta's last row: the columns' means, beta's centring (lmm_pymc.centring)
    x_mean = tutorial_sim.design.X[:, 1].mean()
    np.testing.assert_array_equal(single["prior_beta"].get_value(),
                                  [[0.0, 0.0], [10.0, 10.0], [0.0, x_mean]])  # fmt: skip
    J, (p, q) = tutorial_sim.design.factors[0].n_levels, (2, 2)
    assert single["stat_columns"].get_value().shape[1] == J
    assert single["stat_E"].get_value().shape == (q * J, p)
    assert single["stat_totals"].get_value().shape == (p + 1, p)
    crossed = build_model(crossed_design, "marginal", integrate="subject")
    assert sorted(v.name for v in crossed.data_vars) == [
        "prior_beta", "prior_values", "stat_ZtD", "stat_groups", "stat_products"]  # fmt: skip
    joint = build_model(crossed_design, "marginal")  # every factor's effects integrated out
    assert sorted(v.name for v in joint.data_vars) == [
        "prior_beta", "prior_values", "stat_joint_effects", "stat_joint_fixed"]  # fmt: skip
    # sparse cross-products enter as their entries (row, column, value)
    monkeypatch.setattr(lmm_pymc.marginal.graph, "SPARSE_SHARE", 1.0)
    entries = build_model(crossed_design, "marginal", integrate="subject")
    assert sorted(v.name for v in entries.data_vars) == [
        "prior_beta", "prior_values", "stat_DtD_entries", "stat_ZtD_entries", "stat_groups",
        "stat_products"]  # fmt: skip
    assert entries["stat_ZtD_entries"].get_value().shape[1] == 3


def test_packed_input_slices_give_back_each_value():
    """Each call's value comes back from its slice or row of the one input, in its shape;
    rows of two lengths are refused."""
    from lmm_pymc.compiled import packed_input

    parts = [np.float64(2.5), np.arange(3.0), np.arange(6.0).reshape(2, 3)]
    with pm.Model():
        flat = [packed_input("inputs", v) for v in parts]
        rows = [packed_input("table", np.full(4, k), rows=True) for k in range(3)]
        with pytest.raises(ValueError, match=r"must share one shape, found \(5,\) after \(4,\)"):
            packed_input("table", np.zeros(5), rows=True)
    for got, want in zip(flat, parts, strict=True):
        np.testing.assert_array_equal(got.eval(), want)
    for k, got in enumerate(rows):
        np.testing.assert_array_equal(got.eval(), np.full(4, k))


def test_bad_model_input(tutorial_sim, crossed_design):
    with pytest.raises(ValueError, match=r"parametrization must be one of .* found 'centred'"):
        build_model(tutorial_sim.design, "centred")
    with pytest.raises(TypeError, match="must be a lmm_pymc.Design or GroupedStatistics"):
        build_model("nope")
    with pytest.raises(ValueError, match="integrate must name a grouping factor among"):
        build_model(crossed_design, "marginal", integrate="session")
    with pytest.raises(TypeError, match="priors must be a lmm_pymc.Priors, found dict"):
        build_model(tutorial_sim.design, priors={})
    df = pd.DataFrame({"y": np.arange(12.0), "x1": np.arange(12.0), "x2": np.arange(12.0) ** 2,
                       "g": np.repeat(list("abcd"), 3)})  # fmt: skip
    q3 = design_from_formula("y ~ x1 + (1 + x1 + x2 | g)", df)
    with pytest.raises(ValueError, match=r"limited to q <= 2 .* found \['g \(q = 3\)'\]"):
        build_model(q3, "lkj_corr")
    no_y = design_from_formula("y ~ x1 + (1 | g)", df.drop(columns="y"), require_response=False)
    with pytest.raises(ValueError, match="found y=None"):
        build_model(no_y)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("lkj_eta", 0.0, r"Priors.lkj_eta must be finite and > 0"),
     ("sigs", "halfnormal(-1)", r"halfnormal's sigma must be finite and > 0"),
     ("sigs", "normal(0, 1)", r"Priors.sigs is the prior of an sd"),
     ("fixed", "halfnormal(1)", r"Priors.fixed is the prior of a fixed effect")],
)
def test_bad_priors(field, value, message):
    with pytest.raises(ValueError, match=message):
        Priors(**{field: value})


def test_positive_definite_check_compiles_to_numba_and_agrees_with_numpy():
    """PyMC's LKJCorr check runs in numba, not object mode (no warning), and says what
    numpy's Cholesky says on positive definite, singular, indefinite and NaN matrices."""
    import warnings

    import pytensor
    import pytensor.tensor as pt
    from pymc.distributions.multivariate import matrix_pos_def

    from lmm_pymc.compiled import register_numba_positive_definite

    register_numba_positive_definite()
    x = pt.dmatrix("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an object-mode fallback warns: fail on it
        check = pytensor.function([x], matrix_pos_def(x), mode="NUMBA")
    cases = {
        "identity": np.eye(3),
        "correlation": np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]]),
        "singular": np.ones((3, 3)),
        "indefinite": np.array([[1.0, 2.0], [2.0, 1.0]]),
        "negative diagonal": -np.eye(2),
        "nan": np.array([[1.0, np.nan], [np.nan, 1.0]]),
    }
    for name, m in cases.items():
        try:
            np.linalg.cholesky(m)
            want = not np.isnan(m).any()
        except np.linalg.LinAlgError:
            want = False
        assert bool(check(m)) is want, name


def test_lkj_corr_effects_density_is_the_bivariate_normal(tutorial_sim):
    """``lkj_corr``'s centred effects: the closed-form q = 2 density equals SciPy's
    multivariate normal with Sigma = diag(sigs) R diag(sigs) at random points (1e-10:
    the same float64 arithmetic in another order), a wrong correlation's does not, the
    whole model compiles to numba without an object-mode warning, and prior draws have
    the covariance (5% on 20,000 draws: ~3 Monte Carlo sds of a correlation)."""
    import warnings

    import pytensor
    import pytensor.tensor as pt

    from lmm_pymc.effects import _bivariate_normal_draws, _bivariate_normal_logp

    rng = np.random.default_rng(5)
    b = pt.dmatrix("b")
    sigs, rho = pt.dvector("sigs"), pt.dscalar("rho")
    density = pytensor.function([b, sigs, rho], _bivariate_normal_logp(b, sigs, rho))
    for _ in range(20):
        s, r, x = rng.uniform(0.1, 5.0, 2), rng.uniform(-0.99, 0.99), rng.normal(0, 3, (7, 2))
        cov = np.outer(s, s) * np.array([[1.0, r], [r, 1.0]])
        want = st.multivariate_normal(np.zeros(2), cov).logpdf(x)
        np.testing.assert_allclose(density(x, s, r), want, rtol=1e-10)
        assert not np.allclose(density(x, s, -r / 2), want, rtol=1e-6)
    model = build_model(tutorial_sim.design, "lkj_corr")
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=UserWarning)  # object mode warns
        model.compile_dlogp(mode="NUMBA")(model.initial_point())
    draws = _bivariate_normal_draws(np.array([2.0, 0.5]), np.float64(0.6),
                                    rng=np.random.default_rng(1), size=(20_000,))  # fmt: skip
    np.testing.assert_allclose(np.cov(draws.T), [[4.0, 0.6], [0.6, 0.25]], rtol=0.05)
