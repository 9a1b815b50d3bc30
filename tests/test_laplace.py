"""The Laplace fast path (lmm_pymc.marginal.laplace): its log marginal against quadrature,
its mode, its NumPy twin against the graph, its implicit gradient against finite
differences, posteriors against ``cholesky``'s, and the refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import lmm_pymc
from lmm_pymc import build_model, simulate
from lmm_pymc.families import family as as_family
from lmm_pymc.marginal.laplace import (
    NEWTON_STEPS,
    laplace_loglik_numpy,
    laplace_mode_numpy,
)

FORMULA = "y ~ 1 + x + (1 + x | g)"


def _frame(J: int, n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"g": np.repeat([f"g{j}" for j in range(J)], n),
                         "x": rng.normal(size=J * n)})  # fmt: skip


def _sim(family: str, formula: str = FORMULA, J: int = 30, n: int = 20, seed: int = 2):
    q = formula.count("+ x |") + 1
    sigs = [0.8, 0.4][:q]
    groups = {"g": {"sigs": sigs, "rho": 0.3} if q == 2 else {"sigs": sigs}}
    b0 = 0.3 if family == "bernoulli" else 1.0
    return simulate(formula, _frame(J, n), beta={"intercept": b0, "x": 0.5}, groups=groups,
                    seed=seed, family=family)  # fmt: skip


def _quadrature(loglik_rows, design, offset, sd: float) -> float:
    """sum_j log int prod_i p(y_i | o_i + b) N(b | 0, sd^2) db for q = 1 (intercept), by
    the trapezoid rule on 40001 points over +-10 prior sds: the integrand is smooth and
    bounded, so the rule's error is far below the 1e-6 the comparison can see."""
    f = design.factors[0]
    grid = np.linspace(-10 * sd, 10 * sd, 40001)
    total = 0.0
    for j in range(f.n_levels):
        rows = f.index == j
        eta = offset[rows][None, :] + grid[:, None]  # (points, n_j)
        n = None if design.trials is None else design.trials[rows]
        log_f = loglik_rows(design.y[rows], n, eta).sum(1) + stats.norm.logpdf(grid, 0, sd)
        total += special.logsumexp(log_f) + np.log(grid[1] - grid[0])
    return total


def _bernoulli_rows(link: str):
    inverse = {"logit": special.expit, "probit": special.ndtr}[link]
    return lambda y, n, eta: stats.bernoulli.logpmf(y, inverse(eta))


@pytest.fixture(scope="module")
def q1_bernoulli():
    """q = 1, 12 groups x 60 rows; offset and sd near the truth."""
    sim = _sim("bernoulli", "y ~ 1 + x + (1 | g)", J=12, n=60)
    d = sim.design
    offset = d.X @ np.array([0.3, 0.5])
    sd = 0.8
    f = d.factors[0]
    args = (as_family("bernoulli"), d.y, d.trials, offset, f.Z, f.index, f.n_levels,
            np.array([[[sd]]]))  # fmt: skip
    return d, offset, sd, args


def test_laplace_matches_quadrature_q1(q1_bernoulli) -> None:
    d, offset, sd, args = q1_bernoulli
    laplace = float(laplace_loglik_numpy(*args)[0])
    exact = _quadrature(_bernoulli_rows("logit"), d, offset, sd)
    # Laplace's relative error per group is O(1/n_j): with 60 rows per group and the
    # logistic's mild skew, measured 0.003 per group (0.04 over 12 groups); 0.02 per group
    # bounds it while every mistake below moves the total by >= 3
    assert abs(laplace - exact) < 0.02 * 12, (laplace, exact)
    # the -1/2 log|H| term left out: off by 1/2 log(1 + n_j w sd^2) ~ 1 per group
    _, _, C = laplace_mode_numpy(*args)
    assert abs(laplace + np.log(C[0][0]).sum() - exact) > 3.0
    # the wrong link: the same Laplace value against the probit likelihood's integral
    probit = _quadrature(_bernoulli_rows("probit"), d, offset, sd)
    assert abs(laplace - probit) > 3.0


def test_poisson_matches_quadrature_q1() -> None:
    sim = _sim("poisson", "y ~ 1 + x + (1 | g)", J=10, n=40)
    d, f = sim.design, sim.design.factors[0]
    offset, sd = d.X @ np.array([1.0, 0.5]), 0.8
    laplace = float(laplace_loglik_numpy(as_family("poisson"), d.y, None, offset, f.Z, f.index,
                                         f.n_levels, np.array([[[sd]]]))[0])  # fmt: skip
    exact = _quadrature(lambda y, n, eta: stats.poisson.logpmf(y, np.exp(eta)), d, offset, sd)
    # counts near e: the log-likelihood is close to quadratic in eta, Laplace near exact
    # (measured 1e-3 per group); 0.01 per group
    assert abs(laplace - exact) < 0.01 * 10, (laplace, exact)


def test_negbinomial_matches_quadrature_q1() -> None:
    alpha = 5.0
    sim = simulate("y ~ 1 + x + (1 | g)", _frame(10, 40), beta=[1.0, 0.5],
                   groups={"g": {"sigs": [0.8]}}, seed=2, family="negbinomial", alpha=alpha)
    d, f = sim.design, sim.design.factors[0]
    offset, sd = d.X @ np.array([1.0, 0.5]), 0.8
    laplace = float(laplace_loglik_numpy(as_family("negbinomial"), d.y, None, offset, f.Z,
                                         f.index, f.n_levels, np.array([[[sd]]]),
                                         alpha=np.array([alpha]))[0])  # fmt: skip
    exact = _quadrature(
        lambda y, n, eta: stats.nbinom.logpmf(y, alpha, alpha / (alpha + np.exp(eta))),
        d, offset, sd,
    )  # fmt: skip
    # as the Poisson's, with more spread per row (alpha = 5): 0.01 per group
    assert abs(laplace - exact) < 0.01 * 10, (laplace, exact)


@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_mode_gradient_is_zero(family) -> None:
    """At the returned mode the inner objective's gradient (whitened: L'Z'd1 - c) is below
    1e-8 for hyperparameters spread around the truth (sds x exp(+-0.6))."""
    d = _sim(family).design
    f = d.factors[0]
    rng = np.random.default_rng(3)
    S = 40
    beta = np.array([0.3 if family == "bernoulli" else 1.0, 0.5]) + 0.2 * rng.normal(size=(S, 2))
    s = np.array([0.8, 0.4]) * np.exp(0.3 * rng.normal(size=(S, 2)))
    L = np.zeros((S, 2, 2))
    L[:, 0, 0], L[:, 1, 0], L[:, 1, 1] = s[:, 0], 0.3 * s[:, 1], np.sqrt(0.91) * s[:, 1]
    _, g, _ = laplace_mode_numpy(as_family(family), d.y, None, beta @ d.X.T, f.Z, f.index,
                                 f.n_levels, L)  # fmt: skip
    assert np.abs(g).max() < 1e-8
    # and the steps are needed: two fewer leave a visible gradient on the Poisson design
    if family == "poisson":
        _, g, _ = laplace_mode_numpy(as_family(family), d.y, None, beta @ d.X.T, f.Z,
                                     f.index, f.n_levels, L, steps=NEWTON_STEPS - 4)
        assert np.abs(g).max() > 1e-6


@pytest.fixture(scope="module", params=["bernoulli", "poisson"])
def laplace_model(request):
    design = _sim(request.param).design
    model = build_model(design, "laplace", family=request.param)
    return request.param, design, model


def test_twin_matches_graph(laplace_model) -> None:
    family, design, model = laplace_model
    f = design.factors[0]
    names = ["y_laplace", "beta", "chol_cov_g"]  # as functions of the sampled values
    out = model.compile_fn(model.replace_rvs_by_values([model[n] for n in names]))
    rng = np.random.default_rng(4)
    ip = model.initial_point()
    for _ in range(3):
        point = {k: v + 0.3 * rng.normal(size=np.shape(v)) for k, v in ip.items()}
        value, beta, packed = out(point)
        L = np.zeros((2, 2))
        L[np.tril_indices(2)] = packed
        twin = laplace_loglik_numpy(as_family(family), design.y, design.trials,
                                    design.X @ beta, f.Z, f.index, f.n_levels, L[None])
        # the same operations in the same order on the same numbers: rounding only
        assert abs(float(twin[0]) - float(value)) < 1e-10 * max(1.0, abs(float(value)))


def test_implicit_gradient_matches_finite_differences(laplace_model) -> None:
    _, _, model = laplace_model
    fn = model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    rng = np.random.default_rng(5)
    ip = model.initial_point()
    x = np.concatenate([np.ravel(ip[v.name]) for v in fn._grad_vars])
    x = x + 0.2 * rng.normal(size=x.size)
    _, grad = fn(x)
    h = 1e-5
    fd = np.array([(fn(x + h * e)[0] - fn(x - h * e)[0]) / (2 * h) for e in np.eye(x.size)])
    # central differences: error ~h^2 f''' + eps |f| / h ~ 1e-8 relative to |grad|; the
    # implicit derivative's own error is the mode's leftover gradient (< 1e-8)
    assert np.allclose(grad, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())


def test_laplace_refusals() -> None:
    gaussian = simulate(seed=1)
    with pytest.raises(ValueError, match="family='gaussian'.*'marginal'"):
        build_model(gaussian.design, "laplace")
    with pytest.raises(ValueError, match="family='gaussian'.*'marginal'"):
        lmm_pymc.fit(gaussian, parametrization="laplace")
    design = _sim("bernoulli").design
    with pytest.raises(ValueError, match="family='bernoulli' with link='probit'"):
        build_model(design, "laplace", family="bernoulli", link="probit")
    counts = _sim("poisson").design
    with pytest.raises(ValueError, match="supports .*family='poisson' with link='identity'"):
        build_model(counts, "laplace", family="poisson", link="identity")


def test_laplace_structure(laplace_model) -> None:
    family, design, model = laplace_model
    free = sorted(v.name for v in model.free_RVs)
    assert free == ["beta", "chol_cov_g"] and model.free_RVs[-1].name == "beta"
    assert model.named_vars_to_dims["sigs"] == ("random_effect",)
    assert model.named_vars_to_dims["R"] == ("random_effect", "random_effect_")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_posterior_agrees_with_cholesky(family) -> None:
    sim = _sim(family)
    common = dict(family=family, draws=500, tune=500, chains=2, random_seed=7,
                  progressbar=False, pointwise=False)  # fmt: skip
    fast = lmm_pymc.fit(sim, FORMULA, parametrization="laplace", **common)
    slow = lmm_pymc.fit(sim, FORMULA, parametrization="cholesky", **common)
    assert int(fast.sample_stats["diverging"].sum()) == 0
    b = fast.posterior["b_g"]
    assert b.dims == slow.posterior["b_g"].dims and b.shape == slow.posterior["b_g"].shape
    for name in ("beta", "sigs"):
        a, c = fast.posterior[name], slow.posterior[name]
        sd = c.std(("chain", "draw")).values
        gap = np.abs(a.mean(("chain", "draw")).values - c.mean(("chain", "draw")).values)
        # Monte Carlo error of a difference of two means from ~500 effective draws each:
        # 0.06 sd; Laplace's bias with 20 rows per group (measured) stays below 0.15 sd
        assert np.all(gap < 0.25 * sd), (name, gap / sd)
    # the drawn effects: their posterior means agree with cholesky's sampled ones
    gap = np.abs(b.mean(("chain", "draw")) - slow.posterior["b_g"].mean(("chain", "draw")))
    assert float((gap / slow.posterior["b_g"].std(("chain", "draw"))).max()) < 0.35


def test_binomial_matches_quadrature_q1() -> None:
    rng = np.random.default_rng(6)
    frame = _frame(10, 30).assign(n=rng.integers(1, 6, size=300))
    sim = simulate("y | trials(n) ~ 1 + x + (1 | g)", frame, beta=[0.3, 0.5],
                   groups={"g": {"sigs": [0.8]}}, seed=2, family="binomial")  # fmt: skip
    d, f = sim.design, sim.design.factors[0]
    offset, sd = d.X @ np.array([0.3, 0.5]), 0.8
    laplace = float(laplace_loglik_numpy(as_family("binomial"), d.y, d.trials, offset, f.Z,
                                         f.index, f.n_levels, np.array([[[sd]]]))[0])  # fmt: skip
    exact = _quadrature(lambda y, n, eta: stats.binom.logpmf(y, n, special.expit(eta)), d,
                        offset, sd)  # fmt: skip
    # 30 rows of 1-5 trials per group: as informative as the bernoulli's 60 rows or more
    assert abs(laplace - exact) < 0.02 * 10, (laplace, exact)


def test_crossed_factors_integrate_one(crossed_sim) -> None:
    """integrate= names the factor integrated out; the other's effects stay sampled."""
    data = crossed_sim.data.assign(hit=(crossed_sim.data["rt"] > crossed_sim.data["rt"].median())
                                   .astype(int))  # fmt: skip
    formula = "hit ~ 1 + cond + (1 | subject) + (1 | item)"
    design = lmm_pymc.design_from_formula(formula, data)
    model = build_model(design, "laplace", family="bernoulli", integrate="item")
    free = [v.name for v in model.free_RVs]
    assert "z_subject" in free and "z_item" not in free and free[-1] == "beta"
    fn = model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    x = np.concatenate([np.ravel(model.initial_point()[v.name]) for v in fn._grad_vars])
    logp, grad = fn(x)
    assert np.isfinite(logp) and np.all(np.isfinite(grad))


def test_few_binary_trials_per_level_warn():
    """The bias measured at 10 binary rows per level is announced; 30 rows build quietly."""
    import warnings

    few = _sim("bernoulli", J=12, n=10).design
    with pytest.warns(UserWarning, match="median of 10 binary trials per level"):
        build_model(few, "laplace", family="bernoulli")
    enough = _sim("bernoulli", J=12, n=30).design
    counts = _sim("poisson", J=12, n=10).design  # counts: no such warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        build_model(enough, "laplace", family="bernoulli")
        build_model(counts, "laplace", family="poisson")
