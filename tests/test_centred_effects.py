"""Data-rich sampled factors of a crossed fit, centred on the fixed effects
(``MarginalPlan.centred``, ``coef_<key>`` in :func:`lmm_pymc.build_model`): when the rule
picks them, that the model is the same model, and that a fit recovers the truth."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lmm_pymc
from lmm_pymc import build_model, fit, simulate
from lmm_pymc.marginal import MarginalPlan
from lmm_pymc.marginal import plan as plan_module

SUBJECT = {"sigs": [0.5, 0.3], "rho": 0.3}


def _crossed(item: dict, formula: str, seed: int = 4) -> lmm_pymc.Simulation:
    """60 subjects x 6 items, fully crossed: 60 rows per item, residual sd 1."""
    rng = np.random.default_rng(seed)
    s, i = np.meshgrid(np.arange(60), np.arange(6), indexing="ij")
    frame = pd.DataFrame({"subject": s.ravel(), "item": i.ravel(),
                          "x": rng.choice([-0.5, 0.5], s.size)})  # fmt: skip
    groups = {"subject": SUBJECT, "item": item}
    return simulate(formula, frame, beta=[10.0, 2.0], groups=groups, sigma=1.0, seed=seed)


RICH = "y ~ 1 + x + (1 + x | subject) + (1 | item)"
RICH_SLOPES = "y ~ 1 + x + (1 + x | subject) + (1 + x | item)"


@pytest.fixture(scope="module")
def rich():
    """Item sd 3 against residual sd 1 and 60 rows per item: ~500 times the prior's precision."""
    return _crossed({"sigs": [3.0]}, RICH)


def test_the_rule_centres_only_factors_the_rows_pin(rich, monkeypatch):
    """The information ratio (data precision over prior precision, from the least-squares
    point) picks the items where the rows outweigh the prior and leaves weak ones alone."""
    plan = MarginalPlan.from_data(rich.design, "subject")
    item = rich.design.factors[1]
    kappa = plan.crossed.information(item)
    # 60 rows x 3^2 / (1 + the subjects' spread, left in e0): a few hundred
    assert kappa.shape == (1,) and 100 < kappa[0] < 600, kappa
    assert plan.centred == ("item",)
    weak = _crossed({"sigs": [0.3]}, RICH)  # 60 x 0.09 / ~1.3: ~5
    weak_plan = MarginalPlan.from_data(weak.design, "subject")
    assert weak_plan.crossed.information(weak.design.factors[1])[0] < 20
    assert weak_plan.centred == ()
    # every effect must be rich: an item slope of sd 0.1 (x = +-0.5) keeps the factor as it was
    mixed = _crossed({"sigs": [3.0, 0.1], "rho": 0.0}, RICH_SLOPES)
    mixed_plan = MarginalPlan.from_data(mixed.design, "subject")
    assert mixed_plan.crossed.information(mixed.design.factors[1])[1] < 100
    assert mixed_plan.centred == ()
    # the default (both factors integrated together when their effects are few) has none
    assert MarginalPlan.from_data(rich.design).centred in ((), ("item",))
    monkeypatch.setattr(plan_module, "CENTRE_INFORMATION", np.inf)
    assert MarginalPlan.from_data(rich.design, "subject").centred == ()


def _logp_pairs(design, seed: int):
    """Log densities of the centred and the non-centred model at corresponding random
    points: ``(centred, non_centred, log |d b / d z|)`` for each of 3 points."""
    centred = build_model(design, integrate="subject")
    assert {v.name for v in centred.free_RVs} >= {"coef_item"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_module, "CENTRE_INFORMATION", np.inf)
        plain = build_model(design, integrate="subject")
    assert "z_item" in {v.name for v in plain.free_RVs}
    item = design.factors[1]
    names = ["beta", "b_item", "sigs_item" if item.q == 1 else "chol_cov_item"]
    values = centred.compile_fn(centred.replace_rvs_by_values([centred[n] for n in names]),
                                inputs=centred.value_vars, on_unused_input="ignore")  # fmt: skip
    logp_c, logp_p = centred.compile_logp(), plain.compile_logp()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(3):
        point = {k: v + rng.normal(0.0, 0.3, np.shape(v))
                 for k, v in centred.initial_point().items()}  # fmt: skip
        beta, b, scale = values(point)
        if item.q == 1:
            L = np.diag(scale)
        else:  # LKJCholeskyCov's packed lower triangle, rows first
            L = np.zeros((item.q, item.q))
            L[np.tril_indices(item.q)] = scale
        z = np.linalg.solve(L, b.T).T  # b_j = L z_j
        other = {k: v for k, v in point.items() if k != "coef_item"}
        other["z_item"] = z
        log_jacobian = item.n_levels * np.log(abs(np.linalg.det(L)))
        out.append((float(logp_c(point)), float(logp_p(other)), log_jacobian))
    return out


@pytest.mark.parametrize("formula", [RICH, RICH_SLOPES], ids=["intercepts", "correlated"])
def test_centred_effects_are_the_same_model(formula):
    """At corresponding points (``coef = mu + b``, ``b_j = L z_j``) the centred model's log
    density is the non-centred one's less ``J log|det L|`` (the density of ``b`` against
    that of ``z``): the same posterior of ``beta``, ``b`` and the covariances. Tolerance
    1e-10 relative: both are float64 sums of the same ~400 terms in other orders."""
    item = {"sigs": [3.0]} if formula == RICH else {"sigs": [3.0, 6.0], "rho": -0.3}
    sim = _crossed(item, formula)
    for centred, plain, log_jacobian in _logp_pairs(sim.design, seed=1):
        assert abs(centred - (plain - log_jacobian)) <= 1e-10 * abs(plain), (centred, plain)
        # the check can fail: without the Jacobian the two differ by J log|det L|
        assert abs(log_jacobian) > 1e-6 * abs(plain)
        assert abs(centred - plain) > 1e-10 * abs(plain)


@pytest.mark.slow
def test_centred_fit_recovers_the_truth_and_draws_every_effect(rich):
    """A fit with the items centred: no divergences, ``b_item`` (the named result) and the
    integrated subjects' exact draws in the posterior, and the fixed effects and the item
    sd within 4 posterior sds of the realized values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm_pymc.SamplingWarning)
        idata = fit(rich, integrate="subject", draws=500, tune=500, chains=2, random_seed=3,
                    progressbar=False)  # fmt: skip
    post = idata.posterior
    assert "coef_item" in post and post["b_item"].sizes["item"] == 6
    assert post["b_subject"].sizes["subject"] == 60
    assert lmm_pymc.diagnose(idata, warn=False).divergences == 0
    # b_item is coef_item less beta's intercept, draw by draw
    np.testing.assert_allclose(post["b_item"].values[..., 0],
                               post["coef_item"].values[..., 0]
                               - post["beta"].sel(fixed_effect="intercept").values[..., None],
                               rtol=0, atol=1e-9)  # fmt: skip
    b_true = rich.truth.factors["item"].b[:, 0]
    coef = post["b_item"].mean(("chain", "draw")).values[:, 0]
    sd = post["b_item"].std(("chain", "draw")).values[:, 0]
    assert np.all(np.abs(coef - b_true) < 4 * sd + 1e-9), (coef, b_true, sd)
    beta = post["beta"].mean(("chain", "draw")).values
    beta_sd = post["beta"].std(("chain", "draw")).values
    realized = np.array([10.0 + rich.truth.factors["item"].b[:, 0].mean()
                         + rich.truth.factors["subject"].b[:, 0].mean(),
                         2.0 + rich.truth.factors["subject"].b[:, 1].mean()])  # fmt: skip
    assert np.all(np.abs(beta - realized) < 4 * beta_sd), (beta, realized, beta_sd)
