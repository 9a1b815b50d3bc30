"""Simulation: the tutorial's design and numbers, the matrix form, any formula, seeds, inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmm_pymc import correlation_matrix, covariance_matrix, simulate, tutorial
from lmm_pymc.simulation import draw_random_effects

TUTORIAL_COLUMNS = ["intercept", "x", "group_id", "y", "fixed_outcome", "random_outcome"]


def test_tutorial_defaults(tutorial_sim):
    df = tutorial_sim.data
    assert list(df.columns) == TUTORIAL_COLUMNS
    assert len(df) == 30
    assert df["group_id"].tolist() == [1] * 10 + [2] * 10 + [3] * 10
    assert df["x"].tolist() == list(range(1, 11)) * 3
    # X beta with beta = (6, 4): 10, 14, ..., 46 in every group (exact integer arithmetic)
    assert df["fixed_outcome"].tolist() == list(range(10, 47, 4)) * 3
    t = tutorial_sim.truth
    g = t.factors["group_id"]
    np.testing.assert_array_equal(t.beta, [6.0, 4.0])
    np.testing.assert_array_equal(g.sigs, [3.0, 2.0])
    assert g.R[0, 1] == 0.7 and t.sigma == 1.0
    np.testing.assert_allclose(g.Sigma, [[9.0, 4.2], [4.2, 4.0]], rtol=1e-15)
    assert g.b.shape == (3, 2)
    assert tutorial_sim.design.formula == tutorial.FORMULA


def test_tutorial_numbers_are_seed_exact(tutorial_sim):
    """simulate(seed=2024) draws b first, then the residuals: the same numbers as ever."""
    rng = np.random.default_rng(2024)
    Sigma = covariance_matrix([3.0, 2.0], correlation_matrix(0.7))
    b = rng.standard_normal((3, 2)) @ np.linalg.cholesky(Sigma).T
    e = rng.normal(0.0, 1.0, 30)
    np.testing.assert_array_equal(tutorial_sim.truth.factors["group_id"].b, b)
    np.testing.assert_array_equal(tutorial_sim.epsilon, e)
    # the first outcome, printed by every earlier version of the demo
    assert tutorial_sim.data["y"].iloc[0] == pytest.approx(17.733452, abs=1e-6)


def test_matrix_form(tutorial_sim):
    d, t = tutorial_sim.design, tutorial_sim.truth
    X, Z = d.X, d.Z
    b = t.factors["group_id"].b
    (f,) = d.factors
    assert X.shape == (30, 2) and Z.shape == (30, 6)
    assert Z.format == "csr" and Z.nnz == 60  # block diagonal: 2 non-zeros per row
    # column 2j is the intercept of group j, column 2j+1 its slope
    np.testing.assert_array_equal(Z[:10, :2].toarray(), X[:10])
    np.testing.assert_array_equal(Z[:10, 2:].toarray(), 0)
    # Z b equals the R script's row-wise form sum(X * b[group]); same products, summed in a
    # different order, so agreement to a few ulps (rtol 1e-12)
    rowwise = np.sum(X * b[f.index], axis=1)
    np.testing.assert_allclose(Z @ b.reshape(-1), rowwise, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tutorial_sim.data["random_outcome"], rowwise, rtol=1e-12)
    # y = X beta + Z b + e exactly (same arithmetic up to summation order)
    np.testing.assert_allclose(
        X @ t.beta + Z @ b.reshape(-1) + tutorial_sim.epsilon, d.y, rtol=1e-12, atol=1e-12
    )


def test_random_effect_covariance_matches_sigma():
    sigma = covariance_matrix([3.0, 2.0], correlation_matrix(0.7))
    n = 200_000
    b = draw_random_effects(sigma, n, np.random.default_rng(11))
    emp = np.cov(b, rowvar=False)
    # Monte Carlo sd of a sample covariance entry is sqrt((S_ii S_jj + S_ij^2) / n):
    # at most sqrt(2 * 81 / 2e5) ~ 0.028 here; allow 4 sds
    mc_sd = np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma**2) / n)
    assert np.all(np.abs(emp - sigma) < 4 * mc_sd), (emp, sigma)
    # and the means are zero within 4 standard errors
    assert np.all(np.abs(b.mean(axis=0)) < 4 * np.sqrt(np.diag(sigma) / n))


def test_random_effect_covariance_through_simulate():
    sim = simulate(data=tutorial.design_frame(20_000, 1), seed=5)
    g = sim.truth.factors["group_id"]
    emp = np.cov(g.b, rowvar=False)
    # Monte Carlo tolerance: 4 sds of the sample covariance with 20 000 groups
    mc_sd = np.sqrt((np.outer(np.diag(g.Sigma), np.diag(g.Sigma)) + g.Sigma**2) / 20_000)
    assert np.all(np.abs(emp - g.Sigma) < 4 * mc_sd)


def test_seed_reproducibility():
    a, b = simulate(seed=3), simulate(seed=3)
    pd.testing.assert_frame_equal(a.data, b.data)
    np.testing.assert_array_equal(a.truth.factors["group_id"].b, b.truth.factors["group_id"].b)
    c = simulate(seed=np.random.default_rng(3))
    pd.testing.assert_frame_equal(a.data, c.data)
    assert not np.allclose(simulate(seed=4).data["y"], a.data["y"])


def test_tutorial_design_options():
    frame = tutorial.design_frame(4, group_sizes=[2, 5, 7, 3], group_labels=["d", "a", "c", "b"])
    sim = simulate(data=frame, **tutorial.parameters(beta=(1.0, -2.0), sigs=(0.5, 0.1),
                                                     rho=-0.3, sigma=0.2), seed=1)  # fmt: skip
    (f,) = sim.design.factors
    assert f.sizes.tolist() == [2, 5, 7, 3]
    assert f.labels == ("d", "a", "c", "b")
    assert sim.data["group_id"].tolist()[:3] == ["d", "d", "a"]
    assert sim.data["x"].tolist()[:4] == [1.0, 2.0, 1.0, 2.0]
    np.testing.assert_array_equal(sim.data["fixed_outcome"].to_numpy()[:2], [-1.0, -3.0])
    custom = tutorial.design_frame(2, x=[[0.5, 1.5], [2.0, 3.0, 4.0]])
    assert custom["x"].tolist() == [0.5, 1.5, 2.0, 3.0, 4.0]
    assert len(tutorial.design_frame(2, x=np.linspace(0, 1, 4))) == 8
    R = np.array([[1.0, 0.2], [0.2, 1.0]])
    assert simulate(**tutorial.parameters(R=R), seed=1).truth.factors["group_id"].R[0, 1] == 0.2


def test_any_formula_follows_the_matrix_form():
    """A crossed, q = 3, categorical-predictor formula: y recomputed term by term."""
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"x": rng.normal(size=40), "z": rng.normal(size=40),
                       "c": rng.choice(["lo", "mid", "hi"], size=40),
                       "subject": rng.choice(["ann", "bob", "cy", "dee", "eve"], size=40),
                       "item": rng.choice(["i1", "i2", "i3", "i4"], size=40)})  # fmt: skip
    R = [[1.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 1.0]]
    formula = "y ~ 1 + x + c + (1 + x + z | subject) + (1 | item)"
    groups = {"subject": {"sigs": [1.0, 0.5, 0.3], "R": R}, "item": {"sigs": [0.7]}}
    beta = {"intercept": 1.0, "x": 0.5, "c[lo]": -1.0, "c[mid]": 2.0}
    sim = simulate(formula, df, beta=beta, groups=groups, sigma=0.4, seed=3)
    d, t = sim.design, sim.truth
    # rtol=1e-12: the same sums in another order
    by_hand = d.X @ t.beta + sim.epsilon
    for f in d.factors:
        by_hand = by_hand + np.einsum("nq,nq->n", f.Z, t.factors[f.name].b[f.index])
    np.testing.assert_allclose(sim.data["y"], by_hand, rtol=1e-12)
    np.testing.assert_allclose(sim.data["fixed_outcome"], d.X @ t.beta, rtol=1e-12)
    assert t.factors["subject"].b.shape == (5, 3) and t.factors["item"].b.shape == (4, 1)
    again = simulate(formula, df, beta=t.beta, groups=groups, sigma=0.4, seed=3)
    np.testing.assert_array_equal(again.data["y"], sim.data["y"])  # same seed, same data
    names = t.by_name()
    assert names["R[intercept|subject, z|subject]"] == 0.1 and names["sigs[intercept|item]"] == 0.7
    assert "R[intercept|item" not in " ".join(names)  # q = 1: no correlation
    assert set(df.columns) <= set(sim.data.columns)  # the user's frame is kept ...
    assert "y" not in df.columns  # ... and not modified


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigs": (3.0, 0.0)}, r"sigs'\] must be > 0.*0\.0"),
        ({"sigs": (-1.0, 2.0)}, r"sigs'\] must be > 0.*-1\.0"),
        ({"rho": 1.0}, r"\|rho\| < 1, found 1\.0"),
        ({"rho": -1.5}, r"\|rho\| < 1, found -1\.5"),
        ({"sigma": 0.0}, r"sigma \(residual sd\) must be > 0, found 0\.0"),
        ({"R": [[1.0, 0.5], [0.4, 1.0]]}, "R'] must be symmetric"),
        ({"R": [[2.0, 0.5], [0.5, 1.0]]}, "R'] must have a unit diagonal"),
        ({"beta": (1.0,)}, "beta must be two finite numbers"),
        ({"sigs": (1.0,)}, "sigs must have 2 entries"),
    ],
)
def test_bad_tutorial_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(**tutorial.parameters(**kwargs))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_groups": 0}, "n_groups must be a positive integer, found 0"),
        ({"group_labels": ["a", "a", "b"]}, "distinct labels"),
        ({"group_sizes": [3, 0, 2]}, r"group_sizes\[...\] must be a positive integer, found 0"),
        ({"x": [1.0, np.nan]}, "x must be finite"),
    ],
)
def test_bad_tutorial_design(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tutorial.design_frame(**kwargs)


def test_bad_general_simulation_input():
    df = pd.DataFrame({"x": np.arange(12.0), "subject": list("aabbccddeeff")})
    f = "y ~ 1 + x + (1 + x || subject)"
    ok = {"subject": {"sigs": [1.0, 0.5]}}
    with pytest.raises(ValueError, match=r"beta must have 2 values"):
        simulate(f, df, beta=[1.0], groups=ok, sigma=1.0)
    with pytest.raises(ValueError, match=r"missing \['x'\]"):
        simulate(f, df, beta={"intercept": 1.0}, groups=ok, sigma=1.0)
    with pytest.raises(ValueError, match=r"must be the identity for the uncorrelated"):
        simulate(f, df, beta=[1.0, 1.0], groups={"subject": {"sigs": [1.0, 0.5], "rho": 0.5}},
                 sigma=1.0)  # fmt: skip
    with pytest.raises(ValueError, match=r"groups\['subject'\]\['sigs'\] must have 2 values"):
        simulate(f, df, beta=[1.0, 1.0], groups={"subject": {"sigs": [1.0]}}, sigma=1.0)
    with pytest.raises(ValueError, match=r"missing \['subject'\]"):
        simulate(f, df, beta=[1.0, 1.0], groups={}, sigma=1.0)
    # a misspelt key is named, not read as a missing value
    with pytest.raises(ValueError, match=r"groups\['subject'\] takes the keys.*found \['sds'\]"):
        simulate(f, df, beta=[1.0, 1.0], groups={"subject": {"sds": [1.0, 0.5]}}, sigma=1.0)
    with pytest.raises(ValueError, match="beta, groups, sigma must be given"):
        simulate(f, df)
    with pytest.raises(ValueError, match="data must be given"):
        simulate(f)


def test_correlation_validation():
    with pytest.raises(ValueError, match="positive definite"):
        covariance_matrix([1.0, 1.0, 1.0], [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
    with pytest.raises(ValueError, match="must be 2 x 2 to match sigs"):
        covariance_matrix([1.0, 1.0], np.eye(3))


def test_sim_30x20_is_typical(sim_30x20):
    """The recovery data set's realized statistics are within 1 standard error of the truth."""
    t, n_groups, n_obs = sim_30x20.truth, 30, 600
    g = t.factors["group_id"]
    z_mean = g.b.mean(axis=0) / (g.sigs / np.sqrt(n_groups))
    z_sd = (g.b.std(axis=0, ddof=1) - g.sigs) / (g.sigs / np.sqrt(2 * n_groups))
    z_resid = (sim_30x20.epsilon.std(ddof=1) - t.sigma) / (t.sigma / np.sqrt(2 * n_obs))
    assert np.all(np.abs(z_mean) < 1) and np.all(np.abs(z_sd) < 1) and abs(z_resid) < 1
