"""Where the chains start (lmm_pymc.initial): moment estimates near the truth, a jitter
per chain that is seeded and bounded, and nutpie starting there."""

from __future__ import annotations

import numpy as np
import pytest

import lmm_pymc
from lmm_pymc import tutorial
from lmm_pymc.initial import BETA_JITTER, LOG_JITTER, jittered_start
from lmm_pymc.models import build_model


@pytest.fixture(scope="module")
def sim():
    return lmm_pymc.simulate(data=tutorial.design_frame(200, 50), seed=11)


def test_moment_estimates_are_near_the_truth(sim):
    model = build_model(sim.design)
    start = model.lmm_start_point
    truth = sim.truth
    sigma = np.exp(start["sigma_log__"][0])
    # 10^4 rows: sigma's moment estimate has relative se ~ 1/sqrt(2 N) = 0.7%; 5% is 7 se
    assert sigma == pytest.approx(truth.sigma, rel=0.05)
    packed = start["chol_cov_group_id_cholesky-cov-packed__"][0]
    L = np.array([[np.exp(packed[0]), 0.0], [packed[1], np.exp(packed[2])]])
    Sigma = L @ L.T
    true_Sigma = lmm_pymc.covariance_matrix(truth.factors["group_id"].sigs,
                                            truth.factors["group_id"].R)  # fmt: skip
    # 200 groups: a variance's relative se ~ sqrt(2 / 200) = 10%; 35% is 3.5 se
    np.testing.assert_allclose(np.diag(Sigma), np.diag(true_Sigma), rtol=0.35)
    # beta starts in the sampler's coordinates, the intercept centred (lmm_pymc.centring)
    beta, half_width = start["beta_centred__"]
    true_beta = model.rvs_to_transforms[model["beta"]].forward_values(truth.beta)
    # beta's jitter is twice its approximate se: the estimate lies within 3 of them
    assert np.all(np.abs(beta - true_beta) < 1.5 * half_width)
    assert np.all(half_width < 0.5 * np.abs(true_beta))


def test_jitter_is_seeded_bounded_and_differs_between_chains():
    start = {"b": (np.array([1.0, 2.0]), np.array([0.1, 0.5]))}
    shape_info = (["a", "b"], [slice(0, 1), slice(1, 3)], [(1,), (2,)])
    run = jittered_start(lambda seed: np.array([7.0, 0.0, 0.0]), start, shape_info)
    first, again, other = run(1), run(1), run(2)
    np.testing.assert_array_equal(first, again)  # exact: the same seed
    assert first[0] == 7.0 and not np.array_equal(first, other)  # 'a' left as it was
    assert np.all(np.abs(first[1:] - [1.0, 2.0]) <= [0.1, 0.5])


def test_non_gaussian_beta_jitter_scales_with_the_predictor():
    rng = np.random.default_rng(3)
    frame = tutorial.design_frame(10, 10)
    frame["height"] = rng.normal(500.0, 35.0, len(frame))  # an unscaled predictor
    frame["y"] = rng.poisson(3.0, len(frame))
    design = lmm_pymc.design_from_formula("y ~ height + (1 | group_id)", frame)
    _, half_width = build_model(design, family="poisson").lmm_start_point["beta_centred__"]
    # the slope moves the log-rate by at most 0.1 x 2.5 / sd x (height's spread ~ 3.5 sd)
    assert half_width[1] * 35.0 == pytest.approx(BETA_JITTER * 2.5, rel=0.1)
    # the intercept, centred at the heights' mean: 0.04 x the default prior's 2.5, not the
    # uncentred intercept's spread of 2.5 x sqrt(1 + (500 / 35)^2)
    assert half_width[0] == pytest.approx(BETA_JITTER * 2.5, rel=1e-6)
    assert LOG_JITTER == 0.1


def test_nutpie_starts_at_the_estimates(sim):
    idata = lmm_pymc.fit(sim.data, draws=20, tune=20, chains=2, random_seed=4,
                         progressbar=False)  # fmt: skip
    first = idata.warmup_posterior["sigma"].isel(draw=0).to_numpy()
    # the start is within 10% of the estimate (jitter 0.1 on log sigma) and one NUTS step
    # from it; PyMC's start is the prior's centre, halfnormal(2.5 sd(y)): about 30 x sigma
    assert np.all(np.abs(first / sim.truth.sigma - 1) < 0.3)
