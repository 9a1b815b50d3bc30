"""Priors: families, per-term priors, data-scale defaults, the tutorial's preset."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest

import lmm_pymc
from lmm_pymc import tutorial
from lmm_pymc.models import build_model
from lmm_pymc.priors import (
    Exponential,
    Gamma,
    HalfNormal,
    HalfStudentT,
    Normal,
    Priors,
    StudentT,
    default_priors,
    parse_prior,
)
from lmm_pymc.sampling import SamplingWarning


def test_families_parse_and_print() -> None:
    assert parse_prior("normal(0, 10)") == Normal(0, 10)
    assert parse_prior("student_t(3, 250, 50)") == StudentT(3, 250, 50)
    assert parse_prior("HalfStudentT(3, 2)") == HalfStudentT(3, 2)
    assert parse_prior(" exponential(0.5) ") == Exponential(0.5)
    assert str(HalfNormal(2.5)) == "halfnormal(2.5)"
    assert parse_prior("gamma(2, 0.1)") == Gamma(2, 0.1)  # shape, rate: brms's nu prior
    assert str(Gamma(2, 0.1)) == "gamma(2, 0.1)" and Gamma(2, 0.1).positive
    with pytest.raises(ValueError, match="family of .*'normal'.*found 'weibull\\(2, 1\\)'"):
        parse_prior("weibull(2, 1)")
    with pytest.raises(ValueError, match="halfnormal's sigma must be finite and > 0, found -1"):
        HalfNormal(-1)
    with pytest.raises(ValueError, match="takes 2 parameter"):
        parse_prior("normal(1)")


@pytest.mark.parametrize("prior", [Normal(1, 2), StudentT(4, 1, 2), HalfNormal(2),
                                   HalfStudentT(5, 2), Exponential(0.5), Gamma(2, 2)])  # fmt: skip
def test_numpy_draws_match_pymc(prior) -> None:
    # 20000 draws each: the medians agree within 4 standard errors (~0.05 at these scales)
    rng = np.random.default_rng(1)
    ours = prior.draw(rng, 20000)
    with pm.Model():
        v = prior.create_variable("v")
    theirs = pm.draw(v, draws=20000, random_seed=2)
    assert np.median(ours) == pytest.approx(np.median(theirs), abs=0.08)


def test_term_names_are_checked_against_the_design(tutorial_sim) -> None:
    d = tutorial_sim.design
    with pytest.raises(ValueError, match=r"\['beta\[z\]'\].*beta\[x\]"):
        Priors(terms={"beta[z]": Normal(0, 1)}).resolve(d.fixed_names, d.factors)
    with pytest.raises(ValueError, match="keys must be posterior names"):
        Priors(terms={"x": Normal(0, 1)})
    with pytest.raises(ValueError, match="prior of an sd and needs a positive family"):
        Priors(terms={"sigs[group_id]": Normal(0, 1)})
    with pytest.raises(ValueError, match="fixed effect and needs a family on the real line"):
        Priors(terms={"beta[x]": HalfNormal(1)})
    with pytest.raises(ValueError, match="LKJ shape"):
        Priors(terms={"R[group_id]": -1})
    mixed = Priors(terms={"sigs[x|group_id]": Exponential(1)})
    with pytest.raises(ValueError, match="must share one prior family"):
        build_model(d, "cholesky", priors=mixed)


def test_one_slope_prior_changes_that_slope_only(tutorial_sim) -> None:
    """A prior on beta[x] moves beta[x]'s prior draws and no other parameter's."""
    d = tutorial_sim.design
    base = Priors.tutorial()
    tight = Priors(terms={"beta[x]": Normal(3.0, 0.01)})
    draws = {}
    for name, priors in (("base", base), ("tight", tight)):
        with build_model(d, "cholesky", priors=priors):
            draws[name] = pm.sample_prior_predictive(draws=400, random_seed=5).prior
    x = draws["tight"]["beta"].sel(fixed_effect="x").values
    assert abs(x.mean() - 3.0) < 0.005 and x.std() < 0.02
    # every other parameter: the same seed gives the same draws
    for var in ("sigma", "sigs"):
        np.testing.assert_allclose(draws["tight"][var].values, draws["base"][var].values)
    np.testing.assert_allclose(
        draws["tight"]["beta"].sel(fixed_effect="intercept").values,
        draws["base"]["beta"].sel(fixed_effect="intercept").values,
    )


def test_mixed_fixed_families_build_one_beta(tutorial_sim) -> None:
    priors = Priors(terms={"beta[intercept]": StudentT(3, 0, 10)})
    m = build_model(tutorial_sim.design, "marginal", priors=priors)
    names = sorted(v.name for v in m.free_RVs)
    assert names[:2] == ["beta_0", "beta_1"] and "beta" in m.named_vars
    assert m["beta"].eval({m["beta_0"]: 1.5, m["beta_1"]: -2.0}).tolist() == [1.5, -2.0]


def test_defaults_follow_the_data_scale(tutorial_sim) -> None:
    """Shifting y by 1000 and scaling by 100 moves every default accordingly (exactly)."""
    df = tutorial_sim.data
    base = default_priors(lmm_pymc.design_from_formula(tutorial.FORMULA, df))
    moved = default_priors(
        lmm_pymc.design_from_formula(tutorial.FORMULA, df.assign(y=1000 + 100 * df["y"]))
    )
    # rel 1e-12: affine maps of the same moments, only rounding differs
    for key, prior in base.terms.items():
        other = moved.terms[key]
        if key == "beta[intercept]":
            assert other.params[0] == pytest.approx(1000 + 100 * prior.params[0], rel=1e-12)
            assert other.params[1] == pytest.approx(100 * prior.params[1], rel=1e-12)
        else:
            assert other.params[-1] == pytest.approx(100 * prior.params[-1], rel=1e-12)
    assert moved.sigma.params[0] == pytest.approx(100 * base.sigma.params[0], rel=1e-12)
    # the defaults of per-group sums equal those of the rows they summarise
    design = tutorial_sim.design
    assert _same(default_priors(design.grouped_statistics()), default_priors(design))


def _same(a: Priors, b: Priors) -> bool:
    # rel 1e-9: sums of squares per group versus over rows, same numbers in another order
    keys = set(a.terms) | set(b.terms)
    return all(np.allclose(a.terms[k].params, b.terms[k].params, rtol=1e-9) for k in keys)


def test_tutorial_preset_and_round_trip() -> None:
    p = Priors.tutorial()
    assert (p.fixed, p.sigs, p.sigma, p.lkj_eta) == (Normal(0, 10), HalfNormal(5), HalfNormal(5), 2)
    assert Priors(fixed="normal(0, 3)").fixed == Normal(0, 3)
    assert Priors.from_dict(Priors(terms={"beta[x]": "normal(1, 2)"}).to_dict()) == Priors(
        terms={"beta[x]": Normal(1, 2)}
    )
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['sd'\]"):
        Priors.from_dict({"sd": ["halfnormal", 2.0]})
    with pytest.raises(TypeError, match="Priors.sigs must be a lmm_pymc Prior"):
        Priors(sigs=2.0)


def _sleep_like(shift: float, scale: float) -> pd.DataFrame:
    sim = lmm_pymc.simulate(data=tutorial.design_frame(12, 10), seed=4)
    return sim.data.assign(y=shift + scale * sim.data["y"])


@pytest.mark.slow
def test_default_priors_make_the_fit_unit_free() -> None:
    """With the defaults, y -> 1000 + 100 y moves the posterior medians of the fixed effects
    and sds the same way; with the tutorial's Normal(0, 10) / HalfNormal(5) it does not."""
    medians = {}
    for name, priors in (("default", None), ("tutorial", Priors.tutorial())):
        for shift, scale in ((0.0, 1.0), (1000.0, 100.0)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SamplingWarning)
                data = _sleep_like(shift, scale)
                idata = lmm_pymc.fit(data, priors=priors, draws=500, tune=500, chains=2,
                                     random_seed=1, progressbar=False)  # fmt: skip
            post = idata.posterior
            medians[name, shift] = (
                np.r_[
                    post["beta"].median(("chain", "draw")).values - [shift, 0.0],
                    post["sigs"].median(("chain", "draw")).values,
                ]
                / scale
            )
    # the default fits agree in the data's units within Monte Carlo error (5% of the value,
    # ~3 MC standard errors at 1000 draws)
    np.testing.assert_allclose(medians["default", 1000.0], medians["default", 0.0], rtol=0.05)
    # the tutorial's priors pull the scaled intercept (~1600 on that scale) towards 0
    gap = np.abs(medians["tutorial", 1000.0] - medians["tutorial", 0.0])
    assert gap[0] > 1.0, medians


def test_student_degrees_of_freedom_prior(tutorial_sim) -> None:
    """``nu`` (family student) has brms's gamma(2, 0.1) unless ``Priors.terms`` names it;
    it must be a positive family and belongs to a model with a Student-t outcome only."""
    d = tutorial_sim.design
    table = dict(Priors().resolve(d.fixed_names, d.factors, ("sigma", "nu")).table(d.factors))
    assert (table["nu"], table["sigma"]) == ("gamma(2, 0.1)", "halfnormal(5)")
    own = Priors(terms={"nu": "gamma(3, 0.5)"}).resolve(d.fixed_names, d.factors, ("sigma", "nu"))
    assert own.parameters["nu"] == Gamma(3, 0.5)
    again = Priors.from_dict(Priors(terms={"nu": Gamma(3, 0.5)}).to_dict())
    assert again.terms["nu"] == Gamma(3, 0.5)
    with pytest.raises(ValueError, match=r"Priors.terms\['nu'\] is the prior of an sd"):
        Priors(terms={"nu": "normal(0, 1)"})
    with pytest.raises(ValueError, match=r"Priors.terms names \['nu'\]"):
        Priors(terms={"nu": "gamma(2, 0.1)"}).resolve(d.fixed_names, d.factors)
