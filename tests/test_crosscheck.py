"""PyMC vs Stan cross-check (lmm_pymc.crosscheck), run on PyStan; it must not skip in CI."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pymc as pm
import pytest
from scipy.integrate import quad

import lmm_pymc
from lmm_pymc.cli import main
from lmm_pymc.crosscheck import (
    PAIRS,
    available_pairs,
    cholesky_cov_log_jacobian,
    compare_posteriors,
    crosscheck,
    lkj_log_normaliser,
    name_mapping,
)

# wrong pairs use prior points only (no PyMC sampling): enough to expose a wrong density
WRONG = dict(n_prior=8, n_posterior=0)


# ------------------------------------------------------------------ maths, no Stan
@pytest.mark.parametrize("eta", [1.0, 2.0, 3.5])
def test_lkj_normaliser_n2_integrates_the_density(eta: float) -> None:
    # c_2(eta) = integral of (1 - r^2)^(eta - 1) over (-1, 1); quad asked for 1e-13
    # relative accuracy, so 1e-10 leaves room for its error estimate
    integral, _ = quad(lambda r: (1 - r * r) ** (eta - 1), -1, 1, epsabs=1e-14, epsrel=1e-13)
    assert math.isclose(lkj_log_normaliser(2, eta), math.log(integral), rel_tol=1e-10)
    with pytest.raises(ValueError, match="found n=1"):
        lkj_log_normaliser(1, eta)


def test_pymc_lkj_constant_has_the_sign_the_offset_assumes() -> None:
    # PyMC 5.28's LKJCorr(n=2, eta=1) logp is +log 2 (the uniform density on (-1, 1) is
    # 1/2); expected_offset relies on that sign. If PyMC fixes it, flip the sign there.
    logp = pm.logp(pm.LKJCorr.dist(n=2, eta=1.0), np.array([0.3])).eval()
    assert math.isclose(float(logp), lkj_log_normaliser(2, 1.0), rel_tol=1e-6)  # float32-safe


def test_cholesky_jacobian_matches_finite_differences() -> None:
    # log|d (C11, C21, C22) / d (s1, s2, r)| against a central-difference Jacobian;
    # rtol 1e-6: step 1e-6, truncation error O(h^2)
    s1, s2, r = 1.7, 0.6, -0.4

    def chol(p):
        a, b, c = p
        return np.array([a, b * c, b * math.sqrt(1 - c * c)])

    p0, h = np.array([s1, s2, r]), 1e-6
    J = np.column_stack([(chol(p0 + h * e) - chol(p0 - h * e)) / (2 * h) for e in np.eye(3)])
    point = {"sigs": np.array([s1, s2]), "R": np.array([[1, r], [r, 1]])}
    assert math.isclose(
        cholesky_cov_log_jacobian(point), math.log(abs(np.linalg.det(J))), rel_tol=1e-6
    )


def test_name_mapping_is_zero_based_in_pymc() -> None:
    table = name_mapping(["alpha_0", "random_group.2.1", "L_corr.2.1", "sigs.1"])
    assert table["pymc"].tolist() == ["alpha_0", "random_group[1, 0]", "cholesky(R)[1, 0]",
                                      "sigs[0]"]  # fmt: skip


def test_registry_covers_the_parametrizations() -> None:
    for name in ("lkj_corr", "cholesky", "marginal"):
        assert name in PAIRS
    assert set(available_pairs()) == set(PAIRS) & set(lmm_pymc.PARAMETRIZATIONS)
    with pytest.raises(ValueError, match="found 'nope'"):
        crosscheck(lmm_pymc.simulate(seed=1), "nope")
    with pytest.raises(ValueError, match="n_posterior=0"):
        crosscheck(lmm_pymc.simulate(seed=1), "cholesky", n_prior=1, n_posterior=0)


# -------------------------------------------------------- the pairs agree (PyStan)
def _assert_agree(result, n_points: int) -> None:
    assert result.engine in ("pystan", "bridgestan")
    assert len(result.table) == n_points
    assert result.ok, result.summary() + "\n" + result.table.to_string()
    # the analytic offset explains the measured one (tolerance 1e-6 relative, see
    # CrossCheckResult.offset_matches_expected)
    assert result.offset_matches_expected, result.summary()


@pytest.mark.slow
def test_cholesky_pair_agrees_on_tutorial_data(tutorial_sim) -> None:
    result = crosscheck(tutorial_sim, "cholesky", n_prior=10, n_posterior=10, engine="pystan")
    _assert_agree(result, 20)
    assert result.shared_coordinates == ["alpha_0", "beta_0", "sigma_g", "z"]
    # rtol 1e-8 is the bar; correct pairs reach rounding level
    assert result.table["rel_error"].max() < 1e-11


@pytest.mark.slow
def test_lkj_corr_pair_agrees_on_tutorial_data(tutorial_sim) -> None:
    # the centred model samples slowly in PyMC: fewer posterior points, short tuning
    result = crosscheck(tutorial_sim, "lkj_corr", n_prior=15, n_posterior=5, tune=50,
                        engine="pystan")  # fmt: skip
    _assert_agree(result, 20)
    assert "sigs" in result.shared_coordinates and "random_group" in result.shared_coordinates


@pytest.mark.slow
def test_cholesky_pair_agrees_on_30_groups(sim_30x20) -> None:
    result = crosscheck(sim_30x20, "cholesky", n_prior=10, n_posterior=10, engine="pystan")
    _assert_agree(result, 20)


@pytest.mark.slow
@pytest.mark.skipif("marginal" not in lmm_pymc.PARAMETRIZATIONS, reason="no marginal model")
def test_marginal_pair_agrees(tutorial_sim) -> None:
    result = crosscheck(tutorial_sim, "marginal", n_prior=10, n_posterior=10, engine="pystan")
    _assert_agree(result, 20)
    # the Woodbury form sums terms of opposite sign: ~1e-10 relative, within 1e-8
    assert result.table["rel_error"].max() < 1e-8


# ------------------------------------------------------ the check can fail (PyStan)
@pytest.mark.slow
def test_lkj_eta_1_against_2_disagrees(tutorial_sim) -> None:
    result = crosscheck(tutorial_sim, "cholesky", priors=lmm_pymc.Priors(lkj_eta=1.0),
                        stan_priors=lmm_pymc.Priors(lkj_eta=2.0), **WRONG)  # fmt: skip
    assert not result.ok
    # far above the 1e-8 tolerance, not a near miss: (eta - 1) log(1 - rho^2) differs by
    # log-density units between points
    assert result.table["rel_error"].max() > 1e-5
    assert result.table["diff_from_offset"].abs().max() > 0.01


@pytest.mark.slow
def test_group_sd_5_against_10_disagrees(tutorial_sim) -> None:
    result = crosscheck(tutorial_sim, "lkj_corr", priors=lmm_pymc.Priors(group_sd=5.0),
                        stan_priors=lmm_pymc.Priors(group_sd=10.0), **WRONG)  # fmt: skip
    assert not result.ok
    assert result.table["rel_error"].max() > 1e-3
    # the sigs gradient differs too (d/d log s of -s^2 / (2 sd^2))
    assert result.table["max_grad_error"].max() > 1e-3


def _cholesky_without_random_slope(design: lmm_pymc.Design) -> pm.Model:
    """The cholesky model with the random slope dropped from the likelihood."""
    with pm.Model(coords=design.coords()) as model:
        alpha_0 = pm.Normal("alpha_0", 0.0, 10.0)
        beta_0 = pm.Normal("beta_0", 0.0, 10.0)
        sigma_g = pm.HalfNormal("sigma_g", 5.0)
        chol, corr, stds = pm.LKJCholeskyCov("chol_cov", n=2, eta=2.0, compute_corr=True,
                                             sd_dist=pm.HalfNormal.dist(5.0, shape=2))  # fmt: skip
        pm.Deterministic("sigs", stds)
        pm.Deterministic("R", corr)
        z = pm.Normal("z", 0.0, 1.0, dims=("group", "random_effect"))
        b = pm.Deterministic("random_group", z @ chol.T)
        mu = alpha_0 + beta_0 * design.x + b[design.group_index, 0]  # no b[:, 1] * x
        pm.Normal("y", mu=mu, sigma=sigma_g, observed=design.y)
    return model


@pytest.mark.slow
def test_dropped_random_slope_disagrees(tutorial_sim) -> None:
    design = tutorial_sim.design
    result = crosscheck(design, "cholesky", model=_cholesky_without_random_slope(design), **WRONG)
    assert not result.ok
    assert result.table["rel_error"].max() > 1e-3


@pytest.mark.slow
def test_missing_jacobian_disagrees(tutorial_sim) -> None:
    # without log|d chol_cov / d (sigs, L_corr)| the cholesky pair differs by a
    # non-constant term: the Jacobian is needed, not decoration
    pair = dataclasses.replace(PAIRS["cholesky"], log_jacobian=None)
    result = crosscheck(tutorial_sim, "cholesky", pair=pair, **WRONG)
    assert not result.ok
    assert result.table["rel_error"].max() > 1e-6


# ----------------------------------------------------------- posteriors (PyStan)
@pytest.fixture(scope="module")
def cholesky_posterior(tutorial_sim):
    """A short PyMC fit of the tutorial data: 2 chains x (300 tune + 300 draws)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmm_pymc.fit(tutorial_sim, parametrization="cholesky", draws=300, tune=300,
                            chains=2, cores=1, random_seed=11, progressbar=False)  # fmt: skip


@pytest.mark.slow
def test_posterior_means_agree(tutorial_sim, cholesky_posterior) -> None:
    # tolerance 4 sqrt(mcse_pymc^2 + mcse_stan^2): a 4-sigma Monte Carlo bound per scalar
    table = compare_posteriors(tutorial_sim, "cholesky", idata=cholesky_posterior, draws=300,
                               tune=300, chains=2, seed=11)  # fmt: skip
    assert table["parameter"].tolist() == ["alpha_0", "beta_0", "sigma_g", "sigs[0]",
                                           "sigs[1]", "rho"]  # fmt: skip
    assert table["agree"].all(), table.to_string()


@pytest.mark.slow
def test_posterior_check_catches_a_wrong_prior(tutorial_sim, cholesky_posterior) -> None:
    # Stan with residual sd prior HalfNormal(0.2) pulls sigma_g (~1) far below PyMC's
    table = compare_posteriors(tutorial_sim, "cholesky", idata=cholesky_posterior,
                               stan_priors=lmm_pymc.Priors(residual_sd=0.2), draws=300,
                               tune=300, chains=2, seed=11)  # fmt: skip
    assert not table.set_index("parameter").loc["sigma_g", "agree"], table.to_string()


# ------------------------------------------------------------------------------ CLI
@pytest.mark.slow
def test_cli_crosscheck(capsys) -> None:
    code = main(["crosscheck", "--parametrization", "cholesky", "--prior-points", "3",
                 "--posterior-points", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lp_pymc" in out and "max_grad_error" in out and "all pairs agree" in out
