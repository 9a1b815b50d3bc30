"""Fixed effects sampled on centred columns (lmm_pymc.centring): the same model in other
coordinates, and coordinates in which the intercept and an uncentred slope are no longer a
ridge."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from pymc.model.transform.conditioning import remove_value_transforms

import lmm_pymc
from lmm_pymc import tutorial
from lmm_pymc.centring import CentredIntercept, column_means
from lmm_pymc.compiled import model_structure
from lmm_pymc.models import build_model


@pytest.fixture(scope="module")
def shifted():
    """The tutorial's design with x moved to 100..109: an intercept far from the data."""
    frame = tutorial.design_frame(12, 10)
    frame["x"] = frame["x"] + 99.0
    sim = lmm_pymc.simulate(data=frame, seed=5)
    return sim.design


def test_means_from_rows_and_from_sums_agree(shifted):
    i, means = column_means(shifted)
    j, from_sums = column_means(shifted.grouped_statistics())
    assert i == j == 0 and means[0] == 0.0
    # the same sum in another order: rounding only
    np.testing.assert_allclose(from_sums, means, rtol=1e-12)
    assert means[1] == pytest.approx(shifted.X[:, 1].mean(), rel=1e-12)


def test_nothing_to_centre_without_an_intercept_or_a_slope():
    frame = tutorial.design_frame(5, 4)
    frame["y"] = np.arange(len(frame), dtype=float)
    no_intercept = lmm_pymc.design_from_formula("y ~ 0 + x + (1 | group_id)", frame)
    only = lmm_pymc.design_from_formula("y ~ 1 + (1 | group_id)", frame)
    assert column_means(no_intercept) is None and column_means(only) is None
    model = build_model(no_intercept)
    assert model.rvs_to_values[model["beta"]].name == "beta"


def test_transform_round_trip_and_numpy_twin(shifted):
    i, means = column_means(shifted)
    transform = CentredIntercept(i, means).bind(pm.math.constant(means)[None, :])
    beta = np.array([3.0, -0.25])
    forward = transform.forward(pm.math.constant(beta)).eval()
    np.testing.assert_allclose(forward, transform.forward_values(beta), rtol=1e-14)
    assert forward[0] == pytest.approx(3.0 - 0.25 * means[1], rel=1e-14)
    np.testing.assert_allclose(transform.backward(pm.math.constant(forward)).eval(), beta,
                               rtol=1e-13)  # fmt: skip


@pytest.mark.parametrize("parametrization", ["marginal", "cholesky", "lkj_corr"])
def test_same_log_density_as_uncentred(shifted, parametrization):
    """On the constrained scale the two models are one model; on the sampler's scale the
    log densities at corresponding points are equal too (log-Jacobian 0). Tolerance 1e-10
    relative: the same sums in another order."""
    centred = build_model(shifted, parametrization)
    plain = build_model(shifted, parametrization, centre=False)
    assert centred.rvs_to_values[centred["beta"]].name == "beta_centred__"
    assert plain.rvs_to_values[plain["beta"]].name == "beta"
    a, b = remove_value_transforms(centred), remove_value_transforms(plain)
    logp_a, logp_b = a.compile_logp(), b.compile_logp()
    rng = np.random.default_rng(0)
    transform = centred.rvs_to_transforms[centred["beta"]]
    f_a, f_b = centred.compile_logp(), plain.compile_logp()
    for _ in range(5):
        point = a.initial_point()
        point["beta"] = rng.normal([300.0, -2.0], 5.0)
        assert logp_a(point) == pytest.approx(logp_b(point), rel=1e-10)
        free_b = plain.initial_point()
        free_b["beta"] = point["beta"]
        free_a = {k: v for k, v in free_b.items() if k != "beta"}
        free_a["beta_centred__"] = transform.forward_values(point["beta"])
        assert f_a(free_a) == pytest.approx(f_b(free_b), rel=1e-10)


def _beta_correlation(model, value_name: str) -> float:
    """The correlation of the intercept and the slope in the sampler's coordinates, from
    the negative Hessian of the log density in beta (the other variables at their start)."""
    point = model.initial_point()
    hessian = model.compile_d2logp(vars=[model["beta"]])(point)
    cov = np.linalg.inv(hessian)
    assert model.rvs_to_values[model["beta"]].name == value_name
    return float(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))


def test_centring_removes_the_intercept_slope_ridge(shifted):
    """x near 100: uncentred, the intercept and the slope are all but one direction
    (|correlation| > 0.99, which a diagonal mass matrix cannot follow); centred, < 0.3."""
    plain = _beta_correlation(build_model(shifted, centre=False), "beta")
    centred = _beta_correlation(build_model(shifted), "beta_centred__")
    assert abs(plain) > 0.99
    assert abs(centred) < 0.3


def test_means_are_a_model_input(shifted):
    """Other means, the same compiled log density (lmm_pymc.compiled)."""
    frame = tutorial.design_frame(12, 10)
    other = lmm_pymc.simulate(data=frame, seed=5).design
    assert model_structure(build_model(shifted)) == model_structure(build_model(other))
