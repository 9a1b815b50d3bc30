"""The marginal parametrization: exact log-likelihood for any p and q, O(groups) graph, exact
random effects, and posteriors that agree with the fully sampled model."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
import xarray as xr
from pytensor.graph.basic import Constant
from pytensor.tensor.sharedvar import TensorSharedVariable

import lmm_pymc
from lmm_pymc import SamplerConfig, build_model, design_from_formula, fit, simulate, tutorial
from lmm_pymc.marginal import marginal_loglik, marginal_loglik_numpy, random_effects_draws

Q3 = "y ~ 1 + x1 + x2 + x3 + (1 + x1 + x2 | g)"
TWO = "y ~ 1 + x1 + x2 + (1 + x1 || g)"
R3 = [[1.0, 0.4, 0.2], [0.4, 1.0, -0.3], [0.2, -0.3, 1.0]]


@pytest.fixture(scope="module")
def unbalanced():
    """5 groups of unequal size with string labels: exercises every per-group sum."""
    frame = tutorial.design_frame(5, group_sizes=[2, 7, 4, 11, 5], group_labels=list("abcde"))
    return simulate(data=frame, seed=11)


def _predictors(n_groups: int, rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_groups * rows
    return pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                         "x3": rng.normal(size=n),
                         "g": np.repeat([f"g{i:02d}" for i in range(n_groups)], rows)})  # fmt: skip


@pytest.fixture(scope="module")
def q3_sim():
    """30 groups x 12 rows, 4 fixed effects (x3 without a random slope), q = 3 correlated."""
    groups = {"g": {"sigs": [1.0, 0.7, 0.5], "R": R3}}
    beta = [1.0, 0.5, -0.5, 0.3]
    return simulate(Q3, _predictors(30, 12, 11), beta=beta, groups=groups, sigma=0.5, seed=3)


@pytest.fixture(scope="module")
def two_sim():
    """Two predictors, an uncorrelated random intercept and slope: 25 groups x 8 rows."""
    return simulate(TWO, _predictors(25, 8, 12), beta=[2.0, 1.0, -0.7],
                    groups={"g": {"sigs": [0.8, 0.5]}}, sigma=0.6, seed=4)  # fmt: skip


def _points(n: int, q: int = 2, p: int = 2, seed: int = 0):
    """Random (beta, sigma, Sigma) points, from near-singular Sigma to wide ones."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        A = rng.normal(size=(q, q))
        C = A @ A.T + 0.1 * np.eye(q)
        corr = C / np.sqrt(np.outer(np.diag(C), np.diag(C)))
        sigs = rng.uniform(0.05, 5.0, q)
        yield rng.normal(0, 5, p), float(rng.uniform(0.3, 3.0)), np.outer(sigs, sigs) * corr


def _dense_loglik(design, beta, sigma, Sigma) -> np.ndarray:
    """Brute force: per group log N(y_j | X_j beta, sigma^2 I + Z_j Sigma Z_j'), dense."""
    (f,) = design.factors
    out = []
    for j in range(f.n_levels):
        rows = f.index == j
        V = sigma**2 * np.eye(rows.sum()) + f.Z[rows] @ Sigma @ f.Z[rows].T
        out.append(st.multivariate_normal(design.X[rows] @ beta, V).logpdf(design.y[rows]))
    return np.array(out)


def _loglik(design, beta, sigma, Sigma, **kw) -> np.ndarray:
    stats = design.grouped_statistics().statistics
    return marginal_loglik(stats, beta, sigma, np.linalg.cholesky(Sigma), **kw).eval()


# ------------------------------------------------------------------ log-likelihood
def test_loglik_equals_dense_mvnormal(unbalanced):
    stats = unbalanced.design.grouped_statistics().statistics
    for beta, sigma, Sigma in _points(6):
        dense = _dense_loglik(unbalanced.design, beta, sigma, Sigma)
        # rtol 1e-9: the same quantity by exact identities, float64 round-off only
        np.testing.assert_allclose(_loglik(unbalanced.design, beta, sigma, Sigma), dense, rtol=1e-9)
        np.testing.assert_allclose(
            marginal_loglik_numpy(stats, beta, sigma, Sigma), dense, rtol=1e-9
        )


def test_numpy_loglik_of_many_draws_equals_one_at_a_time(unbalanced):
    """Draws at once ((S, p), (S,), (S, q, q) -> (S, J)) give each draw's own values, to
    1e-12 relative (the same operations, batched); the draws are not mixed up: the first
    draw's values differ from the second's."""
    stats = unbalanced.design.grouped_statistics().statistics
    points = list(_points(5))
    beta, sigma, Sigma = (np.stack([pt[k] for pt in points]) for k in range(3))
    batched = marginal_loglik_numpy(stats, beta, sigma, Sigma)
    assert batched.shape == (5, stats.n.size)
    for s, (b, sg, Sg) in enumerate(points):
        np.testing.assert_allclose(batched[s], marginal_loglik_numpy(stats, b, sg, Sg), rtol=1e-12)
    assert np.abs(batched[0] - batched[1]).max() > 1e-3


@pytest.mark.parametrize("formula", [Q3, TWO, "y ~ 1 + x1 + (0 + x2 | g)"])
def test_any_p_and_q_equals_dense_mvnormal(q3_sim, formula):
    """q = 3 with a fixed-only column, uncorrelated (1 + x1 || g), a slope-only term."""
    design = design_from_formula(formula, q3_sim.data)
    p, q = design.X.shape[1], design.factors[0].q
    for beta, sigma, Sigma in _points(3, q=q, p=p, seed=q):
        # rtol 1e-9: exact identities vs a dense 12 x 12 density per group
        dense = _dense_loglik(design, beta, sigma, Sigma)
        np.testing.assert_allclose(_loglik(design, beta, sigma, Sigma), dense, rtol=1e-9)
    # the check can fail: Sigma = L'L instead of L L' is another model
    stats = design.grouped_statistics().statistics
    L = np.linalg.cholesky(Sigma)
    if q > 1:
        wrong = marginal_loglik(stats, beta, sigma, L.T).eval()
        assert np.max(np.abs(wrong - _dense_loglik(design, beta, sigma, Sigma))) > 1e-2


def test_singular_groups_fall_back_to_woodbury():
    """Groups with one row, a constant x, or a categorical slope level absent from the group
    (singular Z'Z) still match the dense density."""
    df = pd.DataFrame(
        {
            "y": [1.0, 2.5, 3.1, 0.4, 0.9, 1.7, 2.2, 5.0, 4.1],
            "x": [1.0, 2.0, 3.0, 7.0, 2.0, 2.0, 2.0, 1.0, 4.0],
            "c": ["u", "v", "u", "u", "u", "u", "v", "v", "u"],
            "group_id": ["a", "a", "a", "single", "flat", "flat", "flat", "b", "b"],
        }
    )
    with pytest.warns(UserWarning, match="one row"):
        design = design_from_formula(tutorial.FORMULA, df)
    categorical = design_from_formula("y ~ 1 + x + (1 + c | group_id)", df.iloc[1:7])
    for d in (design, categorical):
        for beta, sigma, Sigma in _points(4, p=d.X.shape[1]):
            # rtol 1e-9: exact identities in both branches, float64 round-off only
            np.testing.assert_allclose(_loglik(d, beta, sigma, Sigma),
                                       _dense_loglik(d, beta, sigma, Sigma), rtol=1e-9)  # fmt: skip


def test_wide_x_log_density_is_smooth():
    """With x = 1..1000 the density has no rounding noise along a line in beta.

    The plain Woodbury form subtracts terms of order y'y (~1e9 per group) at every point;
    its rounding shows as noise in the summed log density (0.1-1 with a 2 x 2 determinant
    formula, where NUTS stalled at 10^6 rows; 2e-5 with the unrolled Cholesky kernel used
    now). The well-conditioned form keeps that noise below 1e-6: the residual of a quadratic
    fit along a 2e-5 step in the slope, where the density is exactly quadratic, measures it.
    """
    import pytensor
    import pytensor.tensor as pt

    sim = simulate(data=tutorial.design_frame(50, 1000), seed=1)
    stats = sim.design.grouped_statistics().statistics
    L = np.linalg.cholesky(sim.truth.factors["group_id"].Sigma)
    b, s = pt.vector("b"), pt.scalar("s")
    steps = np.arange(21)

    def noise(stable: bool) -> float:
        f = pytensor.function([b, s], marginal_loglik(stats, b, s, L, stable=stable).sum())
        vals = np.array([f(np.array([6.0, 4.0 + k * 1e-6]), 1.0) for k in steps])
        return float(np.abs(vals - np.polyval(np.polyfit(steps, vals, 2), steps)).max())

    assert noise(stable=True) < 1e-6
    # the check can fail: the plain form is noisier (measured 2.2e-5, deterministic: the
    # same data and arithmetic every run)
    assert noise(stable=False) > 1e-5


def test_dense_check_catches_a_wrong_likelihood(unbalanced):
    """The comparison above fails for a deliberately wrong model: Z Sigma Z' left out."""
    beta, sigma, Sigma = next(_points(1))
    dense = _dense_loglik(unbalanced.design, beta, sigma, Sigma)
    wrong = _loglik(unbalanced.design, beta, sigma, 1e-8 * np.eye(2))
    assert not np.allclose(wrong, dense, rtol=1e-9)


def _statsmodels_check(design, beta, cov_re_rel, *, forget_scale: bool = False):
    """(statsmodels ML loglik, ours) at the same point.

    statsmodels parametrizes by ``cov_re = Sigma / sigma^2`` and profiles the scale out of
    the ML log-likelihood: ``scale = r' V_rel^-1 r / N`` with ``V_rel = I + Z cov_re Z'``.
    Ours is evaluated at ``sigma^2 = scale`` and ``Sigma = cov_re * scale``.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

    (f,) = design.factors
    model = MixedLM(design.y, design.X, groups=f.index, exog_re=f.Z)
    # what MixedLM.fit(reml=False) sets before it calls loglike: ML, no penalties
    model.reml, model.cov_pen, model.fe_pen = False, None, None
    params = MixedLMParams.from_components(fe_params=beta, cov_re=cov_re_rel)
    sm = model.loglike(params, profile_fe=False)
    qf = 0.0
    for j in range(f.n_levels):
        rows = f.index == j
        r = design.y[rows] - design.X[rows] @ beta
        qf += r @ np.linalg.solve(np.eye(rows.sum()) + f.Z[rows] @ cov_re_rel @ f.Z[rows].T, r)
    scale = qf / design.n_obs
    Sigma = cov_re_rel if forget_scale else cov_re_rel * scale
    return sm, _loglik(design, beta, np.sqrt(scale), Sigma).sum()


def test_loglik_equals_statsmodels_ml(unbalanced):
    for beta, _, Sigma in _points(4, seed=1):
        sm, ours = _statsmodels_check(unbalanced.design, beta, Sigma / 2.0)
        # rtol 1e-9: both exact in float64 (statsmodels uses the same Woodbury identities)
        assert ours == pytest.approx(sm, rel=1e-9)
    # the check can fail: forgetting that statsmodels' cov_re is relative to the scale
    sm, ours = _statsmodels_check(unbalanced.design, beta, Sigma / 2.0, forget_scale=True)
    assert ours != pytest.approx(sm, rel=1e-9)


# ------------------------------------------------------------------ model structure
def test_marginal_model_names_coords_and_free_variables(unbalanced):
    m = build_model(unbalanced.design, "marginal")
    # beta last: the rest of the sampled vector (lmm_pymc.logdensity)
    assert [v.name for v in m.free_RVs] == ["sigma", "chol_cov_group_id", "beta"]
    assert m.coords["group_id"] == ("a", "b", "c", "d", "e")
    assert "obs" not in m.coords  # nothing N-sized
    for name in ("beta", "sigma", "sigs", "R"):
        assert name in m.named_vars, name
    ip = m.initial_point()
    assert np.isfinite(m.compile_logp()(ip))
    # same priors as the cholesky parametrization
    chol = build_model(unbalanced.design, "cholesky")
    a, b = m.point_logps(ip), chol.point_logps({**chol.initial_point(), **ip})
    for name in ("beta", "sigma", "chol_cov_group_id"):
        # the same prior terms: equal to float64 round-off
        assert a[name] == pytest.approx(b[name], rel=1e-12), name


def test_model_logp_is_prior_plus_marginal_loglik(q3_sim):
    """The model's likelihood term is exactly the summed per-group marginal log-likelihood."""
    d = q3_sim.design
    m = build_model(d)
    rng = np.random.default_rng(4)
    point = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in m.initial_point().items()}
    outs = m.replace_rvs_by_values([m["beta"], m["sigma"], m["sigs"], m["R"]])
    beta, s, sigs, R = m.compile_fn(outs, inputs=m.value_vars, on_unused_input="ignore")(point)
    term = m.point_logps(point, round_vals=20)["y_marginal"]
    Sigma = sigs[:, None] * R * sigs[None, :]
    # rtol 1e-9: exact identities (see test_any_p_and_q_equals_dense_mvnormal)
    assert term == pytest.approx(_dense_loglik(d, beta, s, Sigma).sum(), rel=1e-9)


def _row_sized(fn, n_rows: int) -> list[str]:
    """Constants, shared variables and static shapes in a compiled graph that have n_rows."""
    found = []
    for var in fn.maker.fgraph.variables:
        shape = getattr(var.type, "shape", None) or ()
        if any(s == n_rows for s in shape if s is not None):
            found.append(f"{var} static shape {shape}")
        if isinstance(var, Constant | TensorSharedVariable):
            value = var.data if isinstance(var, Constant) else var.get_value(borrow=True)
            if n_rows in np.shape(value) or np.size(value) >= n_rows:
                found.append(f"{var} of shape {np.shape(value)}")
    return found


def test_gradient_graph_has_no_row_sized_tensor():
    """One gradient costs O(groups): nothing in the compiled logp/dlogp has N entries."""
    sim = simulate(data=tutorial.design_frame(3, 2003), seed=5)  # N = 6009 rows, J = 3
    n_rows = sim.design.n_obs
    marginal = build_model(sim.design, "marginal")
    for fn in (marginal.compile_logp(), marginal.compile_dlogp()):
        assert _row_sized(fn.f, n_rows) == []
    # the check can fail: the cholesky model's likelihood holds X and y (N,)
    assert _row_sized(build_model(sim.design, "cholesky").compile_logp().f, n_rows)


def test_all_regular_groups_drop_the_woodbury_branch(tutorial_sim):
    """Every group regular: the graph holds the stable form only (no switch); one group
    with a single row brings the Woodbury branch back for that group."""
    from pytensor.graph.traversal import ancestors
    from pytensor.scalar import Switch
    from pytensor.tensor.elemwise import Elemwise

    def has_switch(design):
        stats = design.grouped_statistics().statistics
        out = marginal_loglik(stats, np.array([6.0, 4.0]), 1.0, np.diag([3.0, 2.0]))
        return any(
            v.owner is not None
            and isinstance(v.owner.op, Elemwise)
            and isinstance(v.owner.op.scalar_op, Switch)
            for v in ancestors([out])
        )

    assert not has_switch(tutorial_sim.design)
    one_row = simulate(data=tutorial.design_frame(3, group_sizes=[10, 10, 1]), seed=4)
    assert has_switch(one_row.design)


# ------------------------------------------------------------------ random effects
def _exact_conditional(design, beta, sigma, Sigma):
    """Dense b_j | y ~ N(M^-1 Z'r / s2, M^-1) from the raw rows (not the sums)."""
    (f,) = design.factors
    means, covs = [], []
    for j in range(f.n_levels):
        rows = f.index == j
        Z = f.Z[rows]
        r = design.y[rows] - design.X[rows] @ beta
        M = np.linalg.inv(Sigma) + Z.T @ Z / sigma**2
        covs.append(np.linalg.inv(M))
        means.append(covs[-1] @ Z.T @ r / sigma**2)
    return np.array(means), np.array(covs)


def _fake_posterior(beta, sigma, Sigma, n_chain: int, n_draw: int):
    dims, shape = ("chain", "draw"), (n_chain, n_draw)
    L = np.linalg.cholesky(Sigma)
    packed = L[np.tril_indices(L.shape[0])]
    return xr.Dataset(
        {
            "beta": (dims + ("fixed_effect",), np.broadcast_to(beta, shape + beta.shape).copy()),
            "sigma": (dims, np.full(shape, sigma)),
            "chol_cov_group_id": (
                dims + ("packed",),
                np.broadcast_to(packed, shape + packed.shape),
            ),
        },
        coords={"chain": range(n_chain), "draw": range(n_draw)},
    )


def _moments_agree(draws, mean, cov) -> bool:
    """Mean within 5 Monte Carlo standard errors, covariance entries within 5 of their SEs."""
    S = draws.shape[0]
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))  # (J, q)
    mean_ok = np.all(np.abs(draws.mean(0) - mean) < 5 * sd / np.sqrt(S))
    emp = np.einsum("sja,sjb->jab", draws - mean, draws - mean) / S
    # SE of a sample covariance of Gaussians: sqrt((c_ab^2 + c_aa c_bb) / S)
    se = np.sqrt((cov**2 + sd[:, :, None] ** 2 * sd[:, None, :] ** 2) / S)
    return bool(mean_ok and np.all(np.abs(emp - cov) < 5 * se))


def test_random_effects_are_the_exact_conditional(unbalanced):
    d = unbalanced.design
    grouped = d.grouped_statistics()
    beta, sigma, Sigma = np.array([5.0, 3.5]), 1.2, np.array([[6.0, 2.0], [2.0, 3.0]])
    post = _fake_posterior(beta, sigma, Sigma, 2, 10_000)
    draws = random_effects_draws(post, grouped, seed=3, chunk_elements=7_000)
    assert draws.name == "b_group_id"
    assert draws.dims == ("chain", "draw", "group_id", "group_id_effect")
    assert list(draws.coords["group_id"].values) == ["a", "b", "c", "d", "e"]
    flat = draws.values.reshape(-1, 5, 2)
    mean, cov = _exact_conditional(d, beta, sigma, Sigma)
    # tolerance: 5 Monte Carlo SEs of 20000 independent draws (per entry, 40 entries)
    assert _moments_agree(flat, mean, cov)
    # the check can fail: draws from the prior N(0, Sigma) instead of the conditional
    prior = np.random.default_rng(0).multivariate_normal(np.zeros(2), Sigma, (20_000, 5))
    assert not _moments_agree(prior, mean, cov)
    # explicit seed: same seed, same draws; another seed, other draws
    np.testing.assert_array_equal(random_effects_draws(post, grouped, seed=3).values, draws.values)
    assert not np.array_equal(random_effects_draws(post, grouped, seed=4).values, draws.values)


# ------------------------------------------------------------------ defaults and inputs
def test_bad_statistics_input(unbalanced):
    grouped = unbalanced.design.grouped_statistics()
    with pytest.raises(ValueError, match="parametrization='marginal', found parametrization="):
        fit(grouped, parametrization="cholesky")
    with pytest.raises(ValueError, match="chunk_elements must be a positive integer"):
        random_effects_draws(_fake_posterior(np.zeros(2), 1.0, np.eye(2), 1, 2), grouped,
                             seed=1, chunk_elements=0)  # fmt: skip


def test_default_target_accept_per_parametrization():
    config = SamplerConfig()
    assert config.target_accept_for("marginal") == 0.99
    assert config.target_accept_for("cholesky") == 0.95
    assert SamplerConfig(target_accept=0.8).target_accept_for("marginal") == 0.8
    assert config.kwargs_for("marginal") == {"low_rank_modified_mass_matrix": True}


@pytest.mark.slow
def test_default_fit_is_clean_and_timed(tutorial_sim):
    """The default fit (marginal on nutpie, 4 x 1000 draws) of the tutorial's data is clean
    and timed, over three seeds: no divergence in any, the median of the max r_hat <= 1.01
    and every max r_hat <= 1.02. Tolerance: the sds of a 3-level factor reach a min bulk ESS
    of 570-770 of 4000, at which max r_hat's own Monte Carlo spread is a few thousandths
    (seeds 1-8 measured 1.004-1.0105, one above 1.01); a chain that does not mix gives > 1.05.
    The sampler's own clock is a positive duration within the fit's wall time."""
    import time
    import warnings

    r_hats = []
    for seed in (1, 2, 3):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lmm_pymc.SamplingWarning)  # diagnosed below
            idata = fit(tutorial_sim, random_seed=seed, progressbar=False)
        wall = time.perf_counter() - start
        assert (idata.attrs["sampler"], idata.attrs["parametrization"]) == ("nutpie", "marginal")
        report = lmm_pymc.diagnose(idata, warn=False)
        assert report.divergences == 0 and report.max_r_hat <= 1.02, (seed, report)
        r_hats.append(report.max_r_hat)
        assert 0 < idata.posterior.attrs["sampling_time"] < wall
    assert np.median(r_hats) <= 1.01, r_hats
    # nutpie's unconstrained values are dropped, as PyMC never stores them
    assert not [v for v in idata.posterior.data_vars if str(v).endswith("__")]
    assert {"beta", "sigma", "sigs", "R", "b_group_id"} <= set(idata.posterior.data_vars)


# ------------------------------------------------------------------ sampling
def _disagreement(a, b, var: str) -> np.ndarray:
    """|mean_a - mean_b| in units of their combined Monte Carlo standard error; entries that
    are constant in both (the unit diagonal of R) count as agreeing."""
    import arviz as az

    ma, mb = a.posterior[var].mean(("chain", "draw")), b.posterior[var].mean(("chain", "draw"))
    sa, sb = az.mcse(a, var_names=[var])[var], az.mcse(b, var_names=[var])[var]
    diff, se = np.abs((ma - mb).values), np.sqrt(sa.values**2 + sb.values**2)
    constant = (se == 0) & (diff < 1e-12)
    return np.where(constant, 0.0, diff / np.where(constant, 1.0, se))


def _fit_both(sim, formula=None, **kw):
    kw = dict(draws=500, tune=500, chains=2, random_seed=5, progressbar=False) | kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm_pymc.SamplingWarning)  # diagnostics checked below
        marginal = fit(sim, formula, **kw)
        cholesky = fit(sim, formula, parametrization="cholesky", **kw)
    assert marginal.attrs["parametrization"] == "marginal"  # the default for one factor
    return marginal, cholesky


@pytest.fixture(scope="module")
def tutorial_fits():
    """marginal and cholesky on the same small data: 20 groups x 4 rows, residual sd 4.

    Weakly informative groups keep the non-centred cholesky model cheap (about 60 leapfrog
    steps per draw, no divergences); with 12 rows per group and sd 1 it needs ~700.
    """
    sim = simulate(data=tutorial.design_frame(20, 4), **tutorial.parameters(sigma=4.0), seed=21)
    return (sim, *_fit_both(sim))


def _assert_agree(marginal, cholesky, variables, z_max=4.5, sd_tol=0.25):
    assert lmm_pymc.diagnose(marginal, warn=False).divergences == 0
    # tolerance: 4.5 combined MCSEs (a false alarm per compared mean has probability ~7e-6)
    for var in variables:
        z = _disagreement(marginal, cholesky, var)
        assert np.all(z < z_max), (var, z)
    # posterior sds agree to 25%: an sd estimated from ESS ~300 has a relative error of
    # ~1/sqrt(2 ESS) = 4%, so the ratio of two is within 25% at about 4 standard errors
    for var in ("sigma", "sigs", variables[-1]):
        ratio = marginal.posterior[var].std(("chain", "draw")) / cholesky.posterior[var].std(
            ("chain", "draw")
        )
        assert np.all(np.abs(ratio.values - 1) < sd_tol), (var, ratio.values)


@pytest.mark.slow
def test_marginal_and_cholesky_posteriors_agree(tutorial_fits):
    sim, marginal, cholesky = tutorial_fits
    b = marginal.posterior["b_group_id"]
    assert b.dims == ("chain", "draw", "group_id", "group_id_effect")
    assert b.sizes == {"chain": 2, "draw": 500, "group_id": 20, "group_id_effect": 2}
    _assert_agree(marginal, cholesky, ["beta", "sigma", "sigs", "R", "b_group_id"])


@pytest.mark.slow
def test_posterior_comparison_catches_wrong_random_effects(tutorial_fits):
    """Random effects drawn from another data set's statistics are flagged by the check."""
    sim, marginal, cholesky = tutorial_fits
    other = simulate(data=tutorial.design_frame(20, 4), **tutorial.parameters(sigma=4.0), seed=22)
    wrong = marginal.copy()
    wrong.posterior["b_group_id"] = random_effects_draws(
        marginal.posterior, other.design.grouped_statistics(), seed=1
    )
    assert np.any(_disagreement(wrong, cholesky, "b_group_id") > 4.5)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["q3", "two_predictors"])
def test_general_formulas_fit_marginal_by_default(case, q3_sim, two_sim):
    """A q = 3 formula and a two-predictor uncorrelated one: marginal by default, exact
    draws of b_g, in agreement with the fully sampled cholesky fit."""
    sim, formula = (q3_sim, Q3) if case == "q3" else (two_sim, TWO)
    marginal, cholesky = _fit_both(sim, formula, target_accept=0.9)
    assert marginal.posterior["b_g"].shape[2:] == (sim.design.factors[0].n_levels,
                                                   sim.design.factors[0].q)  # fmt: skip
    _assert_agree(marginal, cholesky, ["beta", "sigma", "sigs", "R", "b_g"], sd_tol=0.3)


# ------------------------------------------------------------ crossed factors, fast path
CROSSED = "y ~ 1 + x + (1 + x | subject) + (1 | item)"


@pytest.fixture(scope="module")
def crossed_sim():
    """9 subjects x 6 items, a fifth of the cells missing (unbalanced), residual sd 2."""
    rng = np.random.default_rng(11)
    s, i = np.meshgrid(np.arange(9), np.arange(6), indexing="ij")
    frame = pd.DataFrame(
        {"subject": s.ravel(), "item": i.ravel(), "x": rng.normal(0.0, 1.0, s.size)}
    )
    frame = frame[rng.random(len(frame)) > 0.2].reset_index(drop=True)
    groups = {"subject": {"sigs": [3.0, 1.0], "rho": 0.4}, "item": {"sigs": [2.0]}}
    return simulate(CROSSED, frame, beta=[10.0, 2.0], groups=groups, sigma=2.0, seed=4)


def _crossed_dense(design, beta, sigma, Sigma, b_item) -> float:
    """log N(r | 0, s2 I + Z_s (I_J kron Sigma) Z_s') with r = y - X beta - z_item b_item,
    from the dense N x N covariance (subject integrated out, item given)."""
    subject, item = design.factors
    r = design.y - design.X @ beta - (item.Z * b_item[item.index]).sum(1)
    N = design.n_obs
    Zfull = np.zeros((N, subject.n_levels * subject.q))  # block design of the subjects
    for k in range(subject.q):
        Zfull[np.arange(N), subject.index * subject.q + k] = subject.Z[:, k]
    V = sigma**2 * np.eye(N) + Zfull @ np.kron(np.eye(subject.n_levels), Sigma) @ Zfull.T
    return float(st.multivariate_normal(np.zeros(N), V).logpdf(r))


def _crossed_model_values(sim, seed: int):
    """The crossed marginal model's likelihood term and its parameters at a random point."""
    model = build_model(sim.design, integrate="subject")  # subject (9 levels) integrated
    names = ["beta", "sigma", "chol_cov_subject", "b_item"]
    outputs = model.replace_rvs_by_values([model[n] for n in names] + [model["y_marginal"]])
    fn = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(seed)
    point = {k: v + rng.normal(0.0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    beta, sigma, packed, b_item, loglik = fn(point)
    L = np.zeros((2, 2))
    L[np.tril_indices(2)] = packed
    return beta, float(sigma), L @ L.T, b_item, float(loglik)


@pytest.mark.parametrize("limit, share", [(None, None), (None, 1.0), (0, None)],
                         ids=["cross-products", "cross-product entries", "rows"])
def test_crossed_loglik_equals_dense_evaluation(crossed_sim, limit, share, monkeypatch):
    """The model's partly integrated likelihood equals the dense N x N Gaussian of the same
    model at random points, from the cross-products (dense, and as their nonzero entries:
    SPARSE_SHARE = 1 sends every matrix that way) and (CROSS_PRODUCT_LIMIT = 0) from one
    pass over the rows. Tolerance 1e-9 relative: both are float64 sums of ~50 terms of
    size ~100, with a Cholesky factorisation of at most a 2 x 2 (fast) or 43 x 43 (dense)
    matrix; their rounding differs by ~1e-13."""
    if limit is not None:
        monkeypatch.setattr(lmm_pymc.marginal.statistics, "CROSS_PRODUCT_LIMIT", limit)
    if share is not None:
        monkeypatch.setattr(lmm_pymc.marginal.graph, "SPARSE_SHARE", share)
    design = crossed_sim.design
    assert [f.name for f in design.factors] == ["subject", "item"]
    for seed in range(4):
        beta, sigma, Sigma, b_item, loglik = _crossed_model_values(crossed_sim, seed)
        dense = _crossed_dense(design, beta, sigma, Sigma, b_item)
        assert abs(loglik - dense) <= 1e-9 * abs(dense), (seed, loglik, dense)
        # the check can fail: a likelihood that forgot the sampled item effects, or the
        # integrated subjects' covariance, is off by far more than the tolerance
        no_items = _crossed_dense(design, beta, sigma, Sigma, np.zeros_like(b_item))
        no_subjects = _crossed_dense(design, beta, sigma, 1e-12 * np.eye(2), b_item)
        for wrong in (no_items, no_subjects):
            assert abs(loglik - wrong) > 1e-6 * abs(dense)


def test_crossed_model_samples_all_but_the_integrated_factor(crossed_sim):
    model = build_model(crossed_sim.design, integrate="subject")
    free = sorted(v.name for v in model.free_RVs)
    assert free == ["beta", "chol_cov_subject", "sigma", "sigs_item", "z_item"]
    # by default the 9 x 2 + 6 = 24 effects are integrated out together (tests/test_joint.py)
    default = sorted(v.name for v in build_model(crossed_sim.design).free_RVs)
    assert default == ["beta", "chol_cov_subject", "sigma", "sigs_item"]
    # the user's choice of the factor to integrate out
    other = build_model(crossed_sim.design, integrate="item")
    assert "z_subject" in {v.name for v in other.free_RVs}
    with pytest.raises(ValueError, match="integrate must name a grouping factor among"):
        build_model(crossed_sim.design, integrate="session")
    with pytest.raises(ValueError, match="integrate applies to parametrization 'marginal'"):
        build_model(crossed_sim.design, "cholesky", integrate="item")


def test_crossed_random_effects_are_the_exact_conditional(crossed_sim):
    """b_subject | y, b_item is drawn from the dense conditional of each subject."""
    design = crossed_sim.design
    subject, item = design.factors
    beta, sigma, Sigma = np.array([10.0, 2.0]), 2.0, np.array([[9.0, 1.2], [1.2, 1.0]])
    b_item = np.random.default_rng(1).normal(0, 2, (item.n_levels, 1))
    post = _fake_posterior(beta, sigma, Sigma, 2, 10_000)
    post = post.rename({"chol_cov_group_id": "chol_cov_subject"})
    post["b_item"] = (("chain", "draw", "item", "item_effect"),
                      np.broadcast_to(b_item, (2, 10_000) + b_item.shape))  # fmt: skip
    stats = lmm_pymc.design.GroupStatistics.from_rows(
        design.X, subject.Z, design.y, subject.index, subject.n_levels
    )
    grouped = lmm_pymc.design.GroupedStatistics(stats, design.fixed_names, subject)
    draws = random_effects_draws(post, grouped, seed=3, design=design)
    assert draws.name == "b_subject"
    # from the cross-products: the same draws (same normal numbers) to rounding, 1e-9
    # relative to the draws' scale (both are float64 sums of ~50 products of size ~10)
    crossed = lmm_pymc.marginal.crossed_statistics(design, subject)
    products = random_effects_draws(post, grouped, seed=3, design=design, crossed=crossed)
    np.testing.assert_allclose(products.values, draws.values, rtol=0, atol=1e-9 * 10)
    r = design.y - design.X @ beta - (item.Z * b_item[item.index]).sum(1)
    means, covs = [], []
    for j in range(subject.n_levels):
        Z = subject.Z[subject.index == j]
        M = np.linalg.inv(Sigma) + Z.T @ Z / sigma**2
        covs.append(np.linalg.inv(M))
        means.append(covs[-1] @ Z.T @ r[subject.index == j] / sigma**2)
    mean, cov = np.array(means), np.array(covs)
    # tolerance: 5 Monte Carlo SEs of 20000 independent draws per entry (_moments_agree)
    assert _moments_agree(draws.values.reshape(-1, subject.n_levels, 2), mean, cov)
    # the check can fail: the same draws computed without the item effects
    no_items = post.assign(b_item=post["b_item"] * 0.0)
    wrong = random_effects_draws(no_items, grouped, seed=3, design=design)
    assert not _moments_agree(wrong.values.reshape(-1, subject.n_levels, 2), mean, cov)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("integrate", "loglik"),
    [("subject", "crossed_marginal_loglik"), (None, "joint_marginal_loglik")],
    ids=["subject-integrated", "joint"],
)
def test_crossed_marginal_and_cholesky_posteriors_agree(crossed_sim, integrate, loglik):
    """The integrated fits (subject integrated out, items sampled; and by default both
    integrated out together) and the fully sampled one agree within Monte Carlo error
    (tolerances of _assert_agree); a deliberately wrong variant (the likelihood with a
    residual sd 1.3 times too large) is caught by the same check."""
    kw = dict(draws=1000, tune=1000, chains=2, random_seed=5, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm_pymc.SamplingWarning)
        marginal = fit(crossed_sim, integrate=integrate, **kw)
        cholesky = fit(crossed_sim, parametrization="cholesky", target_accept=0.99, **kw)
    assert marginal.attrs["parametrization"] == "marginal"
    assert marginal.posterior["b_subject"].sizes["subject"] == 9
    _assert_agree(marginal, cholesky, ["beta", "sigma", "sigs", "b_subject", "b_item"])

    import lmm_pymc.models as models

    right = getattr(models, loglik)

    def wrong_sigma(stats, beta, *args, **kw):  # (..., sigma, chol(s)): sigma second to last
        *others, sigma, chol = args
        return right(stats, beta, *others, 1.3 * sigma, chol, **kw)

    setattr(models, loglik, wrong_sigma)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lmm_pymc.SamplingWarning)
            wrong = fit(crossed_sim, integrate=integrate, **kw)
    finally:
        setattr(models, loglik, right)
    with pytest.raises(AssertionError):
        _assert_agree(wrong, cholesky, ["beta", "sigma", "sigs", "b_subject", "b_item"])


def test_many_groups_lower_the_default_target_accept():
    from lmm_pymc.sampling import MANY_GROUPS

    config = SamplerConfig()
    assert config.target_accept_for("marginal", MANY_GROUPS - 1) == 0.99
    assert config.target_accept_for("marginal", MANY_GROUPS) == 0.9
    assert config.target_accept_for("cholesky", 1000) == 0.95
    assert SamplerConfig(target_accept=0.97).target_accept_for("marginal", 1000) == 0.97
