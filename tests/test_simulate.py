"""Simulation: the tutorial's design, the matrix form, the distribution of b, seeds, inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmm_pymc import TrueParameters, correlation_matrix, covariance_matrix, simulate
from lmm_pymc.simulate import draw_random_effects

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
    np.testing.assert_array_equal(t.beta, [6.0, 4.0])
    np.testing.assert_array_equal(t.sigmas, [3.0, 2.0])
    assert t.rho == 0.7 and t.sigma == 1.0
    np.testing.assert_allclose(t.Sigma, [[9.0, 4.2], [4.2, 4.0]], rtol=1e-15)
    assert t.b.shape == (3, 2)


def test_matrix_form(tutorial_sim):
    d, t = tutorial_sim.design, tutorial_sim.truth
    X, Z = d.X, d.Z
    assert X.shape == (30, 2) and Z.shape == (30, 6)
    assert Z.format == "csr" and Z.nnz == 60  # block diagonal: 2 non-zeros per row
    # column 2j is the intercept of group j, column 2j+1 its slope
    np.testing.assert_array_equal(Z[:10, :2].toarray(), X[:10])
    np.testing.assert_array_equal(Z[:10, 2:].toarray(), 0)
    np.testing.assert_array_equal(t.b_vector, t.b.reshape(-1))
    # Z b equals the R script's row-wise form sum(X * b[group]); same products, summed in a
    # different order, so agreement to a few ulps (rtol 1e-12)
    rowwise = np.sum(X * t.b[d.group_index], axis=1)
    np.testing.assert_allclose(Z @ t.b_vector, rowwise, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tutorial_sim.data["random_outcome"], rowwise, rtol=1e-12)
    # y = X beta + Z b + e exactly (same arithmetic up to summation order)
    np.testing.assert_allclose(
        X @ t.beta + Z @ t.b_vector + tutorial_sim.epsilon, d.y, rtol=1e-12, atol=1e-12
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
    sim = simulate(n_groups=20_000, n_per_group=1, seed=5)
    emp = np.cov(sim.truth.b, rowvar=False)
    S = sim.truth.Sigma
    # Monte Carlo tolerance: 4 sds of the sample covariance with 20 000 groups
    mc_sd = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / 20_000)
    assert np.all(np.abs(emp - S) < 4 * mc_sd)


def test_seed_reproducibility():
    a, b = simulate(seed=3), simulate(seed=3)
    pd.testing.assert_frame_equal(a.data, b.data)
    np.testing.assert_array_equal(a.truth.b, b.truth.b)
    c = simulate(seed=np.random.default_rng(3))
    pd.testing.assert_frame_equal(a.data, c.data)
    assert not np.allclose(simulate(seed=4).data["y"], a.data["y"])


def test_general_inputs():
    sim = simulate(
        n_groups=4,
        group_sizes=[2, 5, 7, 3],
        group_labels=["d", "a", "c", "b"],
        beta=(1.0, -2.0),
        sigmas=(0.5, 0.1),
        rho=-0.3,
        sigma=0.2,
        seed=1,
    )
    assert sim.design.group_sizes.tolist() == [2, 5, 7, 3]
    assert sim.design.group_labels == ("d", "a", "c", "b")
    assert sim.data["group_id"].tolist()[:3] == ["d", "d", "a"]
    assert sim.data["x"].tolist()[:4] == [1.0, 2.0, 1.0, 2.0]
    np.testing.assert_array_equal(sim.data["fixed_outcome"].to_numpy()[:2], [-1.0, -3.0])
    custom = simulate(n_groups=2, x=[[0.5, 1.5], [2.0, 3.0, 4.0]], seed=1)
    assert custom.data["x"].tolist() == [0.5, 1.5, 2.0, 3.0, 4.0]
    shared = simulate(n_groups=2, x=np.linspace(0, 1, 4), seed=1)
    assert len(shared.data) == 8
    R = np.array([[1.0, 0.2], [0.2, 1.0]])
    assert simulate(R=R, seed=1).truth.rho == 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigmas": (3.0, 0.0)}, r"sigmas must be > 0.*0\.0"),
        ({"sigmas": (-1.0, 2.0)}, r"sigmas must be > 0.*-1\.0"),
        ({"rho": 1.0}, r"\|rho\| < 1, found 1\.0"),
        ({"rho": -1.5}, r"\|rho\| < 1, found -1\.5"),
        ({"sigma": 0.0}, r"sigma \(residual sd\) must be > 0, found 0\.0"),
        ({"R": [[1.0, 0.5], [0.4, 1.0]]}, "R must be symmetric"),
        ({"R": [[2.0, 0.5], [0.5, 1.0]]}, "R must have a unit diagonal"),
        ({"n_groups": 0}, "n_groups must be a positive integer, found 0"),
        ({"beta": (1.0,)}, "beta must be two finite numbers"),
        ({"group_labels": ["a", "a", "b"]}, "distinct labels"),
        ({"group_sizes": [3, 0, 2]}, r"group_sizes\[...\] must be a positive integer, found 0"),
        ({"x": [1.0, np.nan]}, "x must be finite"),
    ],
)
def test_bad_simulation_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(**kwargs)


def test_correlation_validation():
    with pytest.raises(ValueError, match="positive definite"):
        covariance_matrix([1.0, 1.0, 1.0], [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
    with pytest.raises(ValueError, match="must be 2 x 2 to match sigmas"):
        covariance_matrix([1.0, 1.0], np.eye(3))
    with pytest.raises(ValueError, match="b must have shape"):
        TrueParameters(beta=[1, 2], sigmas=[1, 1], R=np.eye(2), sigma=1.0, b=np.zeros((3, 3)))


def test_sim_30x20_is_typical(sim_30x20):
    """The recovery data set's realized statistics are within 1 standard error of the truth."""
    t, n_groups, n_obs = sim_30x20.truth, 30, 600
    z_mean = t.b.mean(axis=0) / (t.sigmas / np.sqrt(n_groups))
    z_sd = (t.b.std(axis=0, ddof=1) - t.sigmas) / (t.sigmas / np.sqrt(2 * n_groups))
    z_resid = (sim_30x20.epsilon.std(ddof=1) - t.sigma) / (t.sigma / np.sqrt(2 * n_obs))
    assert np.all(np.abs(z_mean) < 1) and np.all(np.abs(z_sd) < 1) and abs(z_resid) < 1
