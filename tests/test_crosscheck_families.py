"""The generalised Stan program (``lmm_glmm.stan``, pair ``glmm``) against the PyMC model of
binary, count and Student-t outcomes, on PyStan; the wrong pairs must disagree."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import lmm_pymc
from lmm_pymc.crosscheck import available_pairs, crosscheck, expected_offset, select_pair
from lmm_pymc.families import family
from lmm_pymc.models import build_model
from lmm_pymc.stan import glmm_data, glmm_names, stan_data

TERMS = "1 + x + (1 + x | g) + (1 | h)"
#: family -> (formula, link, simulate's own parameters)
CASES = {
    "bernoulli": (f"y ~ {TERMS}", "logit", {}),
    "binomial": (f"y | trials(n) ~ {TERMS}", "logit", {}),
    "poisson": (f"y ~ {TERMS}", "log", {}),
    "negbinomial": (f"y ~ {TERMS}", "log", {"alpha": 3.0}),
    "student": (f"y ~ {TERMS}", "identity", {"sigma": 0.7, "nu": 4.0}),
}
# wrong pairs use prior points only (no PyMC sampling): enough to expose a wrong density
WRONG = dict(n_prior=8, n_posterior=0, engine="pystan")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """12 levels of g x 8 rows, crossed with 4 levels of h; 1-7 trials per row."""
    rng = np.random.default_rng(5)
    n = 12 * 8
    return pd.DataFrame({"x": rng.normal(size=n),
                         "g": np.repeat([f"g{i:02d}" for i in range(12)], 8),
                         "h": np.tile([f"h{i}" for i in range(4)], 24),
                         "n": rng.integers(1, 8, size=n)})  # fmt: skip


@pytest.fixture(scope="module")
def sims(frame) -> dict[str, lmm_pymc.Simulation]:
    """One simulation per family: a correlated random slope and a crossed intercept."""
    groups = {"g": {"sigs": [0.8, 0.4], "rho": 0.3}, "h": {"sigs": [0.5]}}
    return {
        name: lmm_pymc.simulate(formula, frame, beta=[0.3, 0.5], groups=groups, seed=3,
                                family=name, link=link, **own)  # fmt: skip
        for name, (formula, link, own) in CASES.items()
    }


def _priors(sim: lmm_pymc.Simulation) -> lmm_pymc.Priors:
    return lmm_pymc.default_priors(sim.design, sim.family)


# ------------------------------------------------------------------ no Stan needed
def test_glmm_pair_is_chosen_for_binary_and_count_outcomes(sims, crossed_sim) -> None:
    assert available_pairs()[-1] == "glmm"
    assert available_pairs(family="poisson") == ["glmm"]
    assert "glmm" not in available_pairs(crossed_sim.design)  # Gaussian: general's
    for name, sim in sims.items():
        assert available_pairs(sim.design, sim.family) == ["glmm"], name
        pair = select_pair(sim.design, family=sim.family)
        assert (pair.name, pair.program, pair.parametrization) == ("glmm", "lmm_glmm", "cholesky")
    with pytest.raises(ValueError, match="found 'gaussian'; binary and count"):
        select_pair(crossed_sim.design, program="glmm")
    with pytest.raises(ValueError, match="family must be one of .*'gaussian'.* found 'poisson'"):
        select_pair(sims["poisson"].design, program="general", family="poisson")
    # the offset: the LKJ constants and the random effects' -1/2 log(2 pi), no row term
    offset, text = expected_offset(sims["poisson"].design, family="poisson")
    assert "likelihood" not in text and "random effects" in text


def test_glmm_data_codes_counts_and_priors(sims) -> None:
    d = glmm_data(sims["binomial"].design, family="binomial")
    assert (d["family"], d["link"]) == (2, 3)
    assert d["y"].dtype == np.int64 and np.array_equal(d["trials"], sims["binomial"].design.trials)
    # priors the program reads but does not use: exponential(1), halfnormal(5), gamma(2, 0.1)
    assert (d["alpha_family"], d["sigma_family"], d["nu_family"]) == (5, 3, 6)
    assert not d["y_real"].any()
    nb = sims["negbinomial"]
    priors = lmm_pymc.Priors(terms={"alpha": "halfnormal(2)"})
    d = glmm_data(nb.design, priors, family=nb.family, add_jacobian=False)
    assert d["alpha_family"] == 3 and d["alpha_par"][0] == 2.0 and d["add_jacobian"] == 0
    assert np.array_equal(d["trials"], np.ones(nb.design.n_obs))
    probit = stan_data(sims["bernoulli"].design, family=family("bernoulli", "probit"))
    assert (probit["family"], probit["link"]) == (1, 4)
    with pytest.raises(ValueError, match="found 'gaussian'"):
        glmm_data(sims["poisson"].design)
    # the Student-t: a real outcome, sigma's prior the given one, nu's brms's gamma(2, 0.1)
    st = sims["student"]
    d = glmm_data(st.design, _priors(st), family=st.family)
    assert (d["family"], d["link"]) == (5, 1) and not d["y"].any()
    np.testing.assert_array_equal(d["y_real"], st.design.y)
    assert (d["nu_family"], d["nu_par"].tolist()) == (6, [2.0, 0.1, 0.0])
    assert d["sigma_family"] == 3 and d["sigma_par"][0] == _priors(st).sigma.params[0]


def test_glmm_names_map_alpha_to_a_vector(sims) -> None:
    names = glmm_names(sims["negbinomial"].design)
    point = {"alpha": np.float64(2.5)}
    assert names.stan_values(point, ["alpha"])["alpha"].tolist() == [2.5]
    draws = {"alpha": np.full((2, 3, 1), 2.5)}
    assert names.package_values(draws)["alpha"].shape == (2, 3)
    student = glmm_names(sims["student"].design)
    stan = student.stan_values({"sigma": np.float64(0.7), "nu": np.float64(4.0)}, ["sigma", "nu"])
    assert (stan["sigma"].tolist(), stan["nu"].tolist()) == ([0.7], [4.0])
    back = student.package_values({"sigma": np.full((2, 3, 1), 0.7), "nu": np.full((2, 3, 1), 4.0)})
    assert back["sigma"].shape == back["nu"].shape == (2, 3)


# ------------------------------------------------------------ the pair agrees (PyStan)
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_glmm_pair_agrees(name: str, sims) -> None:
    sim = sims[name]
    result = crosscheck(sim, priors=_priors(sim), n_prior=10, n_posterior=10, engine="pystan")
    assert result.program == "lmm_glmm" and len(result.table) == 20
    # rtol 1e-8 (lp differences and gradients): both backends add the same terms in double
    # precision; they differ in how a logit or log link's density is written out (PyMC's
    # stabilised sigmoid and exp graphs, Stan's *_logit / *_log densities) and in the
    # negative binomial's digamma terms of the alpha gradient: measured <= 1e-12 (lp),
    # <= 5e-11 (gradient; 3.4e-9 for the negative binomial)
    # the Student-t's 1e-7: d lp / d log(nu) sums N = 96 digammas of PyTensor's psi, off by
    # up to 1.5e-10 each (lmm_pymc.crosscheck.pairs); measured 2.7e-8
    rtol = 1e-7 if name == "student" else 1e-8
    assert result.ok and result.grad_rtol == rtol, result.table.to_string()
    assert result.table["rel_error"].max() < 1e-10, result.summary()
    assert result.offset_matches_expected, result.summary()
    shared = set(result.shared_coordinates)
    assert {"beta", "z_g", "z_h", "sigs_h"} <= shared
    assert ("alpha" in shared) == (name == "negbinomial")
    assert ({"sigma", "nu"} <= shared) == (name == "student")


# ---------------------------------------------------- the check can fail (PyStan)
def _dropped_slope(design: lmm_pymc.Design) -> lmm_pymc.Design:
    """The first factor's random slope dropped from the linear predictor (Z column 0)."""
    f = design.factors[0]
    Z = f.Z.copy()
    Z[:, 1] = 0.0
    return dataclasses.replace(design, factors=(dataclasses.replace(f, Z=Z), *design.factors[1:]))


def _model(sim, design=None, fam=None, priors=None):
    return build_model(sim.design if design is None else design, "cholesky",
                       priors=_priors(sim) if priors is None else priors,
                       family=sim.family if fam is None else fam)  # fmt: skip


#: (name, family of the data) -> keyword arguments of crosscheck making a wrong pair.
FAILURES = {
    # PyMC's probit against Stan's logit: another function of eta at every row
    "probit_vs_logit": ("bernoulli", lambda s: dict(
        model=_model(s, fam=family("bernoulli", "probit")))),
    # PyMC's Poisson(exp(eta)) against Stan's Bernoulli(logit^-1(eta)) on the same 0/1 outcome
    "poisson_vs_bernoulli": ("bernoulli", lambda s: dict(model=_model(s, fam=family("poisson")))),
    "dropped_slope": ("binomial", lambda s: dict(model=_model(s, _dropped_slope(s.design)))),
    # one more trial per row in PyMC: the binomial coefficients and (n - y) log(1 - p)
    "trials_plus_one": ("binomial", lambda s: dict(
        model=_model(s, dataclasses.replace(s.design, trials=s.design.trials + 1)))),
    # group sd prior scale: -sigs^2 / (2 sd^2) differs between points
    "sigs_prior_scale": ("poisson", lambda s: dict(
        stan_priors=lmm_pymc.Priors(sigs="halfnormal(2)"),
        priors=lmm_pymc.Priors(sigs="halfnormal(1)"))),
    # nu's prior rate (brms's gamma(2, 0.1) against gamma(2, 0.2)): -rate nu differs
    "nu_prior_rate": ("student", lambda s: dict(
        stan_priors=lmm_pymc.Priors(sigma=_priors(s).sigma, terms={"nu": "gamma(2, 0.2)"}),
        priors=lmm_pymc.Priors(sigma=_priors(s).sigma, terms={"nu": "gamma(2, 0.1)"}))),
    # the Student-t's scale prior: -sigma^2 / (2 s^2) differs between points
    "student_sigma_prior_scale": ("student", lambda s: dict(
        stan_priors=lmm_pymc.Priors(sigma="halfnormal(2)"),
        priors=lmm_pymc.Priors(sigma="halfnormal(1)"))),
    # alpha's prior rate: -lambda alpha differs between points
    "alpha_prior_scale": ("negbinomial", lambda s: dict(
        stan_priors=lmm_pymc.Priors(terms={"alpha": "exponential(2)"}),
        priors=lmm_pymc.Priors(terms={"alpha": "exponential(1)"}))),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("failure", list(FAILURES))
def test_wrong_glmm_pairs_disagree(failure: str, sims) -> None:
    data, make = FAILURES[failure]
    sim = sims[data]
    kwargs = make(sim)
    kwargs.setdefault("priors", _priors(sim))
    result = crosscheck(sim, **kwargs, **WRONG)
    assert result.program == "lmm_glmm"
    assert not result.ok, result.summary()
    # far above the 1e-8 tolerance, not a near miss
    assert result.table["rel_error"].max() > 1e-4, result.table.to_string()
