"""Binary and count outcomes (lmm_pymc.families): the family and link choices, the checks of
the outcome's values, the model's log density against scipy.stats, default priors on the
link's scale, simulation, and small recovery fits with their pointwise groups and
predictions."""

from __future__ import annotations

import re
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import lmm_pymc
from lmm_pymc.families import FAMILIES, family
from lmm_pymc.formula import design_from_formula
from lmm_pymc.models import build_model
from lmm_pymc.options import FAMILY_NAMES
from lmm_pymc.priors import Normal, Priors, default_priors
from lmm_pymc.response import Response, parse_response


def frame(groups: int = 8, rows: int = 6, seed: int = 0) -> pd.DataFrame:
    """``groups`` x ``rows`` rows: a predictor, two crossed factors and outcomes of every
    family (0/1 ``y``, successes ``k`` of ``n`` trials, counts ``c``)."""
    rng = np.random.default_rng(seed)
    n_obs = groups * rows
    df = pd.DataFrame({"g": np.repeat([f"g{j}" for j in range(groups)], rows),
                       "h": rng.choice(["a", "b", "c", "d"], n_obs),
                       "x": rng.normal(size=n_obs)})  # fmt: skip
    df["y"] = rng.binomial(1, 0.4, n_obs)
    df["n"] = rng.integers(1, 7, n_obs)
    df["k"] = rng.binomial(df["n"], 0.3)
    df["c"] = rng.poisson(2.5, n_obs)
    return df


# ------------------------------------------------------------------ names and choices
def test_family_names_are_the_options_ones():
    # the command line offers lmm_pymc.options.FAMILY_NAMES without importing the families
    assert tuple(FAMILIES) == FAMILY_NAMES
    assert family() == family("gaussian") and family().link == "identity"
    assert [family(n).link for n in ("bernoulli", "binomial", "poisson", "negbinomial")] == [
        "logit", "logit", "log", "log"]  # fmt: skip


@pytest.mark.parametrize(
    "name, link, match",
    [
        ("binom", None, r"family must be one of \['gaussian', 'bernoulli', .*found 'binom'"),
        ("bernoulli", "log", r"link of family 'bernoulli' must be one of \['logit', 'probit', "
                             r"'cloglog'\], found 'log'"),  # fmt: skip
        ("poisson", "logit", r"link of family 'poisson' must be one of \['log', 'identity'\], "
                             r"found 'logit'"),  # fmt: skip
        ("gaussian", "log", r"link of family 'gaussian' must be one of \['identity'\]"),
    ],
)
def test_unknown_family_or_link_names_the_choices(name, link, match):
    with pytest.raises(ValueError, match=match):
        family(name, link)
    with pytest.raises(ValueError, match=match):  # as fit says it, before any PyMC work
        lmm_pymc.fit(frame(), "y ~ x + (1 | g)", family=name, link=link)


def test_response_syntax_brms_and_bambi():
    assert parse_response("y | trials(n)", "f") == Response("y", "n")
    assert parse_response("p(y, n)", "f") == Response("y", "n")
    assert parse_response(" k|trials( 12 ) ", "f") == Response("k", 12)
    assert parse_response("y", "f") == Response("y")
    with pytest.raises(ValueError, match=r"single column name .*found 'log\(y\)'"):
        parse_response("log(y)", "log(y) ~ x")
    df = frame()
    brms = design_from_formula("k | trials(n) ~ x + (1 | g)", df)
    bambi = design_from_formula("p(k, n) ~ x + (1 | g)", df)
    np.testing.assert_array_equal(brms.trials, df["n"].to_numpy(float))
    np.testing.assert_array_equal(bambi.trials, brms.trials)
    np.testing.assert_array_equal(brms.y, df["k"].to_numpy(float))
    fixed = design_from_formula("k | trials(6) ~ x + (1 | g)", df)
    np.testing.assert_array_equal(fixed.trials, np.full(len(df), 6.0))
    assert design_from_formula("k ~ x + (1 | g)", df).trials is None


# ------------------------------------------------------------------ outcome checks
@pytest.mark.parametrize(
    "change, formula, name, match",
    [
        ({"y": 2}, "y ~ x + (1 | g)", "bernoulli",
         r"outcome column 'y' must hold 0 and 1 only for family 'bernoulli', found 2\.0 at row 3"),
        ({"c": -1}, "c ~ x + (1 | g)", "poisson",
         r"outcome column 'c' must hold non-negative whole numbers .*'poisson', found -1\.0 at "
         r"row 3"),
        ({"c": 1.5}, "c ~ x + (1 | g)", "negbinomial",
         r"outcome column 'c' must hold non-negative whole numbers .*'negbinomial', found 1\.5"),
        ({"k": 9}, "k | trials(n) ~ x + (1 | g)", "binomial",
         r"outcome column 'k' must not exceed the trials 'n' .*found 9 successes out of \d+ at "
         r"row 3"),
        ({"n": 0}, "k | trials(n) ~ x + (1 | g)", "binomial",
         r"trials 'n' must hold positive whole numbers .*found 0\.0 at row 3"),
        ({}, "k ~ x + (1 | g)", "binomial",
         r"family 'binomial' needs the number of trials .*'k \| trials\(n\)'"),
        ({}, "k | trials(n) ~ x + (1 | g)", "poisson",
         r"trials \(n\) apply to family 'binomial' only, found family='poisson'"),
        ({}, "k | trials(m) ~ x + (1 | g)", "binomial", r"trials column 'm' .* is not in data"),
    ],
)
def test_bad_outcomes_name_the_column_and_values(change, formula, name, match):
    df = frame()
    for column, value in change.items():
        df[column] = df[column].astype(float)
        df.loc[3, column] = value
    if "k" in change:
        df.loc[3, "n"] = 4
    with pytest.raises(ValueError, match=match):
        lmm_pymc.fit(df, formula, family=name)


def test_boolean_outcome_is_read_as_0_1_and_a_gaussian_0_1_outcome_warns():
    df = frame()
    as_bool = df.assign(y=df["y"].astype(bool))
    design = design_from_formula("y ~ x + (1 | g)", as_bool)
    np.testing.assert_array_equal(design.y, df["y"].to_numpy(dtype=float))  # exact: 0/1
    build_model(design, family="bernoulli")
    with pytest.warns(UserWarning, match=r"'y' holds only 0 and 1: .*family='bernoulli'"):
        build_model(design)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        build_model(design_from_formula("c ~ x + (1 | g)", df))  # counts: no such warning


@pytest.mark.parametrize("kind", ["object", "category"])
def test_factor_outcome_names_its_values_and_the_0_1_coding(kind):
    """lme4's VerbAgg codes its binary outcome as a factor N/Y: named with the coding."""
    df = frame()
    df["r2"] = np.where(df["y"] == 1, "Y", "N")
    df["r2"] = df["r2"].astype("category") if kind == "category" else df["r2"]
    values = "['N', 'Y']"
    match = (rf"outcome column 'r2' must be numeric, found dtype \w+ with 2 distinct value\(s\) "
             rf"{re.escape(values)}; .*'bernoulli' one coded 0/1, e\.g\. data\['r2'\] = "
             rf"\(data\['r2'\] == {re.escape(values[1:-1].split(', ')[1])}\)\.astype\(int\)")
    with pytest.raises(ValueError, match=match):
        lmm_pymc.fit(df, "r2 ~ x + (1 | g)", family="bernoulli")
    df["r3"] = [f"level{i % 4}" for i in range(len(df))]  # more levels: no coding offered
    with pytest.raises(ValueError, match=r"'r3' .* 4 distinct value\(s\) \['level0', .*'level3'\]$"):
        lmm_pymc.fit(df, "r3 ~ x + (1 | g)", family="poisson")


def test_marginal_files_and_group_loo_refused_for_other_families(tmp_path):
    design = design_from_formula("y ~ x + (1 | g)", frame())
    with pytest.raises(ValueError, match=r"'marginal' .* family 'gaussian' only, found "
                                         r"family='bernoulli'; use 'cholesky'"):  # fmt: skip
        build_model(design, "marginal", family="bernoulli")
    with pytest.raises(ValueError, match=r"family 'poisson' needs the rows in memory"):
        lmm_pymc.fit(str(tmp_path / "*.csv"), "c ~ x + (1 | g)", family="poisson")
    with pytest.raises(ValueError, match=r"family 'bernoulli' needs the rows .*per-group sums"):
        lmm_pymc.fit(design_from_formula("c ~ x + (1 | g)", frame()).grouped_statistics(),
                     family="bernoulli")  # fmt: skip
    idata = az.InferenceData(posterior=az.convert_to_dataset({"beta": np.zeros((1, 2, 2))}))
    idata.attrs.update(family="poisson", link="log")
    with pytest.raises(ValueError, match=r"family 'gaussian' only, found a fit of family "
                                         r"'poisson'"):  # fmt: skip
        lmm_pymc.group_log_likelihood(idata)


def test_no_sigma_for_other_families_and_alpha_for_negbinomial():
    df = frame()
    free = {n: sorted(v.name for v in build_model(design_from_formula(f, df), family=n).free_RVs)
            for n, f in (("bernoulli", "y ~ x + (1 + x | g)"), ("negbinomial", "c ~ x + (1 | g)"),
                         ("binomial", "k | trials(n) ~ x + (1 || g) + (1 | h)"))}  # fmt: skip
    assert free == {"bernoulli": ["beta", "chol_cov_g", "z_g"],
                    "negbinomial": ["alpha", "beta", "sigs_g", "z_g"],
                    "binomial": ["beta", "sigs_g", "sigs_h", "z_g", "z_h"]}  # fmt: skip
    # the centred lkj_corr parametrization serves them too
    model = build_model(design_from_formula("y ~ x + (1 + x | g)", df), "lkj_corr",
                        family="bernoulli")  # fmt: skip
    assert sorted(v.name for v in model.free_RVs) == ["R_upper_g", "b_g", "beta", "sigs_g"]
    assert np.isfinite(model.compile_logp()(model.initial_point()))


# ------------------------------------------------------------------ log density vs scipy
def reference(name: str, link: str, y, eta, n, alpha) -> np.ndarray:
    """Each row's log pmf by scipy.stats, the inverse links written out."""
    p = {"logit": special.expit(eta), "probit": stats.norm.cdf(eta), "log": np.exp(eta),
         "cloglog": 1 - np.exp(-np.exp(eta)), "identity": eta}[link]  # fmt: skip
    if name == "bernoulli":
        return stats.bernoulli.logpmf(y, p)
    if name == "binomial":
        return stats.binom.logpmf(y, n, p)
    if name == "poisson":
        return stats.poisson.logpmf(y, p)
    return stats.nbinom.logpmf(y, alpha, alpha / (alpha + p))


#: (family, link, formula): every family and link, correlated, uncorrelated and crossed terms
CASES = [
    ("bernoulli", "logit", "y ~ x + (1 + x | g)"),
    ("bernoulli", "probit", "y ~ x + (1 | g) + (1 | h)"),
    ("bernoulli", "cloglog", "y ~ x + (1 + x || g)"),
    ("binomial", "logit", "k | trials(n) ~ x + (1 + x | g)"),
    ("binomial", "probit", "p(k, n) ~ x + (1 | g)"),
    ("binomial", "cloglog", "k | trials(n) ~ x + (1 | g)"),
    ("poisson", "log", "c ~ x + (1 + x | g) + (1 | h)"),
    ("poisson", "identity", "c ~ x + (1 | g)"),
    ("negbinomial", "log", "c ~ x + (1 + x | g)"),
    ("poisson", "log", "c ~ x + (1 | g/h)"),  # nested: (1 | g) + (1 | g:h)
]


def model_and_reference_at_a_point(name, link, formula, seed=1):
    """The model's per-row log density of y at a random point of the unconstrained space,
    and the values (y, eta, n, alpha) there from which scipy computes its own."""
    df = frame()
    design = design_from_formula(formula, df)
    model = build_model(design, family=name, link=link)
    rng = np.random.default_rng(seed)
    point = {k: 0.3 * rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}
    if link == "identity":  # a positive Poisson mean: eta = 3 + small effects
        # beta is sampled with its intercept centred (lmm_pymc.centring)
        centred = model.rvs_to_transforms[model["beta"]].forward_values(np.array([3.0, 0.1]))
        point[model.rvs_to_values[model["beta"]].name] = centred
    logp = model.compile_fn(model.logp(vars=[model["y"]], sum=False)[0])(point)
    names = ["beta", *(f"b_{f.key}" for f in design.factors)]
    names += ["alpha"] if name == "negbinomial" else []
    outputs = model.replace_rvs_by_values([model[v] for v in names])  # in the point's values
    values = dict(zip(names, model.compile_fn(outputs)(point), strict=True))
    eta = design.X @ values["beta"]
    for f in design.factors:
        eta = eta + (f.Z * values[f"b_{f.key}"][f.index]).sum(1)
    return logp, (design.y, eta, design.trials, values.get("alpha")), design


@pytest.mark.parametrize("name, link, formula", CASES)
def test_log_density_equals_scipy(name, link, formula):
    """The model's log density of y equals scipy.stats' at a point: rtol 1e-9, two exact
    float64 computations (PyMC's log-gamma and log1p forms against scipy's) that differ by
    rounding only; every effect of the formula enters eta."""
    logp, (y, eta, n, alpha), design = model_and_reference_at_a_point(name, link, formula)
    np.testing.assert_allclose(logp, reference(name, link, y, eta, n, alpha), rtol=1e-9,
                               atol=1e-12)  # fmt: skip
    # the family's own NumPy log density (the fit's pointwise log-likelihood) too
    params = {} if alpha is None else {"alpha": np.array([[alpha]])}
    own = family(name, link).log_density(y[None], eta[None], params, n)[0]
    np.testing.assert_allclose(own, logp, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "case, wrong",
    [(0, ("bernoulli", "probit")), (3, ("binomial", "cloglog")), (6, ("negbinomial", "log")),
     (8, ("poisson", "log")), (4, ("bernoulli", "probit"))],
)  # fmt: skip
def test_log_density_check_catches_a_wrong_family_or_link(case, wrong):
    """The comparison above can fail: scipy's density of another family or link differs."""
    logp, (y, eta, n, alpha), _ = model_and_reference_at_a_point(*CASES[case])
    y = np.minimum(y, 1) if wrong[0] == "bernoulli" else y
    other = reference(*wrong, y, eta, n, 2.0 if alpha is None else alpha)
    assert not np.allclose(logp, other, rtol=1e-9, atol=1e-12)
    assert np.max(np.abs(logp - other)) > 1e-3


# ------------------------------------------------------------------ priors
def test_default_priors_on_the_link_scale():
    df = frame()
    design = design_from_formula("y ~ x + (1 + x | g)", df)
    priors = default_priors(design, family("bernoulli"))
    s_x = df["x"].std(ddof=0)
    assert priors.terms["beta[intercept]"].params[0] == pytest.approx(special.logit(df.y.mean()))
    assert priors.terms["beta[x]"].params == pytest.approx((0.0, 2.5 / s_x))
    assert priors.terms["sigs[intercept|g]"].params == pytest.approx((2.5,))
    assert default_priors(design, "bernoulli") == priors  # the family by its name
    counts = design_from_formula("c ~ x + (1 | g)", df)
    centre = default_priors(counts, family("poisson")).terms["beta[intercept]"].params[0]
    assert centre == pytest.approx(np.log(df.c.mean()))
    binomial = design_from_formula("k | trials(n) ~ x + (1 | g)", df)
    p = (df.k.sum() + 0.5) / (df.n.sum() + 1)
    centre = default_priors(binomial, family("binomial", "probit")).terms["beta[intercept]"]
    assert centre.params[0] == pytest.approx(stats.norm.ppf(p))
    # the Gaussian's are those of the data's scale, unchanged
    assert default_priors(counts, family("gaussian")) == default_priors(counts)
    # alpha: rstanarm's exponential(1) unless named; no sigma in the table
    table = dict(Priors().resolve(counts.fixed_names, counts.factors, ("alpha",)).table(
        counts.factors))  # fmt: skip
    assert table["alpha"] == "exponential(1)" and "sigma" not in table
    with pytest.raises(ValueError, match=r"Priors.terms names \['alpha'\]"):
        Priors(terms={"alpha": "exponential(2)"}).resolve(counts.fixed_names, counts.factors)


# ------------------------------------------------------------------ simulation
def test_simulate_is_seeded_and_in_the_support():
    df = frame(10, 10)
    groups = {"g": {"sigs": [0.5]}}
    kw = dict(beta=[0.2, 0.5], groups=groups, seed=4)
    a = lmm_pymc.simulate("y ~ x + (1 | g)", df, family="bernoulli", **kw)
    b = lmm_pymc.simulate("y ~ x + (1 | g)", df, family="bernoulli", **kw)
    c = lmm_pymc.simulate("y ~ x + (1 | g)", df, family="bernoulli", **(kw | {"seed": 5}))
    np.testing.assert_array_equal(a.data["y"], b.data["y"])
    assert not np.array_equal(a.data["y"], c.data["y"])
    assert set(a.data["y"]) == {0, 1} and a.epsilon is None and a.truth.sigma is None
    assert a.family == family("bernoulli") and "sigma" not in a.truth.by_name()
    k = lmm_pymc.simulate("k | trials(n) ~ x + (1 | g)", df, family="binomial", **kw).data
    assert (k["k"] <= k["n"]).all() and (k["k"] >= 0).all()
    nb = lmm_pymc.simulate("c ~ x + (1 | g)", df, family="negbinomial", alpha=3.0, **kw)
    assert nb.truth.by_name()["alpha"] == 3.0 and (nb.data["c"] >= 0).all()
    with pytest.raises(ValueError, match=r"family 'negbinomial' takes the parameter\(s\) "
                                         r"\['alpha'\], found alpha=None"):  # fmt: skip
        lmm_pymc.simulate("c ~ x + (1 | g)", df, family="negbinomial", **kw)
    with pytest.raises(ValueError, match=r"family 'poisson' takes the parameter\(s\) \[\], "
                                         r"found sigma=1\.0"):  # fmt: skip
        lmm_pymc.simulate("c ~ x + (1 | g)", df, family="poisson", sigma=1.0, **kw)
    with pytest.raises(ValueError, match=r"family 'binomial' needs the number of trials"):
        lmm_pymc.simulate("k ~ x + (1 | g)", df, family="binomial", **kw)


# ------------------------------------------------------------------ fits
def recovery_frame(seed: int = 7) -> pd.DataFrame:
    """40 groups x 20 rows, a crossed factor of 10 levels and 1..8 trials per row."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"g": np.repeat([f"g{j}" for j in range(40)], 20),
                       "h": rng.integers(0, 10, 800), "x": rng.normal(size=800)})  # fmt: skip
    df["n"] = rng.integers(1, 9, 800)
    return df


#: family, formula, beta, groups, extra simulate arguments, per-term priors of the fit
RECOVERY = {
    "bernoulli": ("y ~ x + (1 + x | g)", [-0.3, 0.8],
                  {"g": {"sigs": [0.7, 0.4], "rho": 0.3}}, {}, None),
    "binomial": ("k | trials(n) ~ x + (1 | g)", [0.2, -0.6], {"g": {"sigs": [0.5]}}, {},
                 Priors(terms={"beta[x]": Normal(0.0, 1.0)})),
    "poisson": ("c ~ x + (1 | g) + (1 | h)", [1.0, 0.4],
                {"g": {"sigs": [0.4]}, "h": {"sigs": [0.3]}}, {}, None),
    "negbinomial": ("c ~ x + (1 + x || g)", [1.2, 0.5], {"g": {"sigs": [0.5, 0.2]}},
                    {"alpha": 4.0}, None),
}  # fmt: skip


def recovery_fit(name: str):
    formula, beta, groups, extra, priors = RECOVERY[name]
    sim = lmm_pymc.simulate(formula, recovery_frame(), beta=beta, groups=groups,
                            family=name, seed=11, **extra)  # fmt: skip
    if priors is None:
        priors = default_priors(sim.design, family(name))
    else:  # per-term priors over the defaults
        base = default_priors(sim.design, family(name))
        priors = Priors(fixed=base.fixed, sigs=base.sigs, terms={**base.terms, **priors.terms})
    # a simulation brings its family (and the binomial its trials) to fit
    idata = lmm_pymc.fit(sim, priors=priors, draws=300, tune=300, chains=2, random_seed=3,
                         progressbar=False)  # fmt: skip
    return sim, idata


@pytest.fixture(scope="module")
def bernoulli_fit():
    return recovery_fit("bernoulli")


def check_recovery(sim, idata) -> None:
    """Fixed effects within 3 posterior sd of the truth (a 0.3% miss for a calibrated
    posterior), no divergence."""
    post = idata.posterior["beta"]
    mean, sd = post.mean(("chain", "draw")).values, post.std(("chain", "draw")).values
    z = np.abs(mean - sim.truth.beta) / sd
    assert np.all(z < 3), (mean, sd, sim.truth.beta)
    assert int(idata.sample_stats["diverging"].sum()) == 0


@pytest.mark.slow
def test_bernoulli_recovery_pointwise_and_summary(bernoulli_fit):
    sim, idata = bernoulli_fit
    check_recovery(sim, idata)
    assert "sigma" not in idata.posterior and idata.attrs["family"] == "bernoulli"
    assert idata.attrs["parametrization"] == "cholesky"
    assert set(np.unique(idata.posterior_predictive["y"])) == {0, 1}
    assert np.isfinite(az.loo(idata).elpd_loo)
    text = str(lmm_pymc.summary(idata))
    assert "Family: bernoulli (link: logit)" in text and "Residual" not in text
    table = lmm_pymc.recovery_table(idata, sim.truth)
    assert "sigma" not in set(table["parameter"]) and "beta[x]" in set(table["parameter"])
    # the pointwise log-likelihood at one posterior draw is scipy's density of the rows given
    # that draw's beta and b (so the model's: test_log_density_equals_scipy); rtol 1e-9: the
    # same density, rounding apart
    draw = idata.posterior.isel(chain=1, draw=17)
    d, (f,) = sim.design, sim.design.factors
    eta = d.X @ draw["beta"].values + (f.Z * draw["b_g"].values[f.index]).sum(1)
    np.testing.assert_allclose(idata.log_likelihood["y"].isel(chain=1, draw=17).values,
                               reference("bernoulli", "logit", d.y, eta, None, None),
                               rtol=1e-9)  # fmt: skip


@pytest.mark.slow
def test_bernoulli_predictions(bernoulli_fit):
    _, idata = bernoulli_fit
    new = pd.DataFrame({"x": [-1.0, 0.0, 2.0], "g": ["g0", "g3", "new"]})
    kinds = {k: lmm_pymc.predict(idata, new, kind=k, seed=2).predictions["y"].values
             for k in ("mean", "response", "link")}  # fmt: skip
    for values in kinds.values():
        assert values.shape == (2, 300, 3)
    assert np.all((kinds["mean"] > 0) & (kinds["mean"] < 1))
    assert set(np.unique(kinds["response"])) <= {0, 1}
    np.testing.assert_allclose(kinds["mean"], special.expit(kinds["link"]), rtol=1e-12)
    again = lmm_pymc.predict(idata, new, kind="response", seed=2).predictions["y"].values
    np.testing.assert_array_equal(again, kinds["response"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["binomial", "poisson", "negbinomial"])
def test_recovery_of_counts(name):
    sim, idata = recovery_fit(name)
    check_recovery(sim, idata)
    assert (idata.attrs["family"], idata.attrs["link"]) == (name, "logit" if name == "binomial"
                                                            else "log")  # fmt: skip
    ppc = idata.posterior_predictive["y"].values
    assert np.all(ppc >= 0) and np.all(ppc == np.round(ppc))
    if name == "binomial":
        assert np.all(ppc <= sim.design.trials)
        mean = lmm_pymc.predict(idata, sim.data.head(5), kind="mean").predictions["y"].values
        assert np.all((mean > 0) & (mean < sim.data["n"].head(5).to_numpy()))
    assert np.isfinite(az.loo(idata).elpd_loo)


@pytest.mark.slow
def test_prior_predictive_of_a_bernoulli_outcome():
    idata = lmm_pymc.prior_predictive(frame(), "y ~ x + (1 | g)", family="bernoulli", draws=50,
                                      random_seed=1)  # fmt: skip
    assert set(np.unique(idata.prior_predictive["y"])) <= {0, 1}
    assert "sigma" not in idata.prior and idata.attrs["family"] == "bernoulli"


# ------------------------------------------------------------------ command line
def test_cli_family_options_and_errors(tmp_path, capsys):
    from lmm_pymc.cli import build_parser, main
    from lmm_pymc.cli.commands import priors_from_args

    csv = tmp_path / "d.csv"
    frame().assign(y=lambda d: 2 * d["y"]).to_csv(csv, index=False)
    fit = ["fit", str(csv), "--formula", "y ~ x + (1 | g)"]
    assert main([*fit, "--family", "bernoulli"]) == 2
    assert "outcome column 'y' must hold 0 and 1 only for family 'bernoulli', found 2.0" in (
        capsys.readouterr().err)  # fmt: skip
    assert main([*fit, "--family", "poisson", "--link", "logit"]) == 2
    assert "link of family 'poisson' must be one of ['log', 'identity'], found 'logit'" in (
        capsys.readouterr().err)  # fmt: skip
    with pytest.raises(SystemExit):
        build_parser().parse_args([*fit, "--family", "gamma"])
    assert "invalid choice: 'gamma'" in capsys.readouterr().err
    args = build_parser().parse_args([*fit, "--family", "negbinomial", "--prior",
                                      "alpha=exponential(2)"])  # fmt: skip
    design = design_from_formula("c ~ x + (1 | g)", frame())
    priors = priors_from_args(args, design, family("negbinomial"))
    assert str(priors.terms["alpha"]) == "exponential(2)"


@pytest.mark.slow
def test_cli_fits_and_predicts_a_bernoulli_outcome(tmp_path, capsys):
    from lmm_pymc.cli import main

    csv, nc, out = tmp_path / "d.csv", tmp_path / "post.nc", tmp_path / "pred.csv"
    frame(12, 10).to_csv(csv, index=False)
    code = main(["fit", str(csv), "--formula", "y ~ x + (1 | g)", "--family", "bernoulli",
                 "--link", "probit", "--draws", "100", "--tune", "200", "--chains", "2",
                 "--no-progress", "--out", str(nc)])  # fmt: skip
    assert code == 0
    assert "Family: bernoulli (link: probit)" in capsys.readouterr().out
    code = main(["predict", str(nc), str(csv), "--kind", "mean", "--out", str(out)])
    assert code == 0
    mean = pd.read_csv(out)["mean"]
    assert len(mean) == 120 and ((mean > 0) & (mean < 1)).all()


# ------------------------------------------------------------------ Student-t outcome
def student_point(formula: str = "y ~ x + (1 + x | g) + (1 | h)", seed: int = 1):
    """A Student-t model of a real outcome at a random point of the unconstrained space:
    the per-row log density of y and the (y, eta, sigma, nu) there."""
    df = frame().assign(y=lambda d: np.random.default_rng(seed).standard_t(3, len(d)))
    design = design_from_formula(formula, df)
    model = build_model(design, family="student")
    rng = np.random.default_rng(seed)
    point = {k: 0.3 * rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}
    logp = model.compile_fn(model.logp(vars=[model["y"]], sum=False)[0])(point)
    names = ["beta", "sigma", "nu", *(f"b_{f.key}" for f in design.factors)]
    outputs = model.replace_rvs_by_values([model[v] for v in names])
    values = dict(zip(names, model.compile_fn(outputs)(point), strict=True))
    eta = design.X @ values["beta"]
    for f in design.factors:
        eta = eta + (f.Z * values[f"b_{f.key}"][f.index]).sum(1)
    return model, logp, (design.y, eta, values["sigma"], values["nu"])


def test_student_model_and_log_density_equal_scipy():
    """The non-Gaussian path (``cholesky``: effects sampled, no marginal likelihood, which
    holds for a normal outcome only) with sigma and nu; the row densities equal
    scipy.stats.t's at a point (rtol 1e-9: two float64 computations of the same
    log-gamma form), and so does the family's NumPy log density (az.loo's)."""
    model, logp, (y, eta, sigma, nu) = student_point()
    assert sorted(v.name for v in model.free_RVs) == ["beta", "chol_cov_g", "nu", "sigma",
                                                      "sigs_h", "z_g", "z_h"]  # fmt: skip
    expected = stats.t.logpdf(y, nu, loc=eta, scale=sigma)
    np.testing.assert_allclose(logp, expected, rtol=1e-9, atol=1e-12)
    own = family("student").log_density(y[None], eta[None], {"sigma": np.array([[sigma]]),
                                                            "nu": np.array([[nu]])})[0]  # fmt: skip
    np.testing.assert_allclose(own, logp, rtol=1e-9, atol=1e-12)
    # the check can fail: the normal density of the same rows differs
    assert np.max(np.abs(logp - stats.norm.logpdf(y, eta, sigma))) > 1e-3
    with pytest.raises(ValueError, match=r"'marginal' .* found family='student'"):
        build_model(design_from_formula("c ~ x + (1 | g)", frame()), "marginal", family="student")
    assert family("student").mean(np.array([0.5])) == 0.5
    with pytest.raises(ValueError, match=r"link of family 'student' must be one of \['identity'\]"):
        family("student", "log")


def test_student_outcome_check_names_the_column_and_value():
    df = frame().assign(c=lambda d: d["c"].astype(float))
    y = np.where(np.arange(len(df)) == 5, np.inf, df["c"])  # a Design refuses it before
    with pytest.raises(ValueError, match=r"outcome column 'c' must hold finite numbers for "
                                         r"family 'student', found inf at row 5"):  # fmt: skip
        family("student").check_outcome(y, "c")
    df.loc[3, "c"] = np.nan  # a data frame's missing value: refused when read, row and column
    with pytest.raises(ValueError, match=r"column 'c' must be finite and not missing, found nan "
                                         r"at row 3"):  # fmt: skip
        lmm_pymc.fit(df, "c ~ x + (1 | g)", family="student")
    with pytest.raises(ValueError, match=r"trials \(n\) apply to family 'binomial' only"):
        lmm_pymc.fit(frame(), "k | trials(n) ~ x + (1 | g)", family="student")


def test_simulate_student_needs_sigma_and_nu():
    df = frame(10, 10)
    kw = dict(beta=[0.2, 0.5], groups={"g": {"sigs": [0.5]}}, seed=4, family="student")
    sim = lmm_pymc.simulate("y ~ x + (1 | g)", df, sigma=0.5, nu=2.5, **kw)
    assert sim.truth.sigma == 0.5 and sim.truth.by_name()["nu"] == 2.5
    again = lmm_pymc.simulate("y ~ x + (1 | g)", df, sigma=0.5, nu=2.5, **kw)
    np.testing.assert_array_equal(sim.data["y"], again.data["y"])
    residual = sim.data["y"] - sim.data["fixed_outcome"] - sim.data["random_outcome"]
    assert stats.kurtosis(residual) > 1  # heavier tails than the normal's 0
    with pytest.raises(ValueError, match=r"family 'student' takes the parameter\(s\) "
                                         r"\['sigma', 'nu'\], found nu=None"):  # fmt: skip
        lmm_pymc.simulate("y ~ x + (1 | g)", df, sigma=0.5, **kw)
    with pytest.raises(ValueError, match=r"nu \(Student-t degrees of freedom\) must be > 0"):
        lmm_pymc.simulate("y ~ x + (1 | g)", df, sigma=0.5, nu=-1.0, **kw)
    with pytest.raises(ValueError, match=r"family 'gaussian' takes .*found nu=3"):
        lmm_pymc.simulate("y ~ x + (1 | g)", df, sigma=0.5, nu=3.0, beta=[0.2, 0.5],
                          groups={"g": {"sigs": [0.5]}})  # fmt: skip


def test_student_default_priors_are_the_gaussians_with_nu():
    design = design_from_formula("c ~ x + (1 | g)", frame())
    assert default_priors(design, family("student")) == default_priors(design)
    table = dict(default_priors(design, family("student")).resolve(
        design.fixed_names, design.factors, family("student").parameters).table(design.factors))
    assert table["nu"] == "gamma(2, 0.1)" and table["sigma"].startswith("halfnormal(")


@pytest.mark.slow
def test_student_recovery_with_heavy_tailed_noise():
    """800 rows with t(2.5) residuals (infinite kurtosis, a few outliers at 5-10 sigma):
    the fixed effects within 3 posterior sd of the truth (check_recovery: a 0.3% miss for
    a calibrated posterior, whose sd is the Student-t model's own), sigma and nu inside
    their 99% intervals, no divergence; the pointwise log-likelihood is scipy's t density
    at a draw, predictions of the mean are the linear predictor (identity link)."""
    sim = lmm_pymc.simulate("y ~ x + (1 + x | g)", recovery_frame(), beta=[1.0, 0.5],
                            groups={"g": {"sigs": [0.6, 0.3], "rho": 0.3}}, sigma=0.5, nu=2.5,
                            family="student", seed=11)  # fmt: skip
    idata = lmm_pymc.fit(sim, draws=300, tune=300, chains=2, random_seed=3, progressbar=False)
    check_recovery(sim, idata)
    assert (idata.attrs["family"], idata.attrs["parametrization"]) == ("student", "cholesky")
    for name, truth in (("sigma", 0.5), ("nu", 2.5)):
        low, high = np.quantile(idata.posterior[name].values, [0.005, 0.995])
        assert low < truth < high, (name, low, high)
    text = str(lmm_pymc.summary(idata))
    assert "Family: student (link: identity)" in text and "nu" in text
    draw = idata.posterior.isel(chain=0, draw=42)
    d, (f,) = sim.design, sim.design.factors
    eta = d.X @ draw["beta"].values + (f.Z * draw["b_g"].values[f.index]).sum(1)
    np.testing.assert_allclose(idata.log_likelihood["y"].isel(chain=0, draw=42).values,
                               stats.t.logpdf(d.y, float(draw["nu"]), eta, float(draw["sigma"])),
                               rtol=1e-9)  # fmt: skip
    assert np.isfinite(az.loo(idata).elpd_loo)
    assert np.all(np.isfinite(idata.posterior_predictive["y"].values))
    new = sim.data.head(4)
    kinds = {k: lmm_pymc.predict(idata, new, kind=k, seed=2).predictions["y"].values
             for k in ("mean", "link")}  # fmt: skip
    np.testing.assert_array_equal(kinds["mean"], kinds["link"])


def test_cli_student_family_priors_and_crosscheck_data(tmp_path, capsys):
    from lmm_pymc.cli import build_parser, main
    from lmm_pymc.cli.commands import _crosscheck_data, priors_from_args

    csv = tmp_path / "d.csv"
    frame().assign(c=lambda d: d["c"] + 0.5).to_csv(csv, index=False)
    fit = ["fit", str(csv), "--formula", "c ~ x + (1 | g)", "--family", "student"]
    args = build_parser().parse_args([*fit, "--prior", "nu=gamma(3, 0.2)", "--prior",
                                      "sigma=halfnormal(2)"])  # fmt: skip
    design = design_from_formula("c ~ x + (1 | g)", frame())
    priors = priors_from_args(args, design, family("student"))
    assert (str(priors.terms["nu"]), str(priors.sigma)) == ("gamma(3, 0.2)", "halfnormal(2)")
    assert main([*fit, "--link", "log"]) == 2
    assert "link of family 'student' must be one of ['identity'], found 'log'" in (
        capsys.readouterr().err)  # fmt: skip
    cc = build_parser().parse_args(["crosscheck", "--family", "student"])
    sim, priors = _crosscheck_data(cc)
    assert sim.family == family("student") and sim.truth.by_name()["nu"] == 4.0
    assert priors == default_priors(sim.design, family("student"))
