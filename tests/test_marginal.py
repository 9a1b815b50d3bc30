"""The marginal parametrization: exact log-likelihood, O(groups) graph, exact random effects."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import scipy.stats as st
from pytensor.graph.basic import Constant
from pytensor.tensor.sharedvar import TensorSharedVariable

import lmm_pymc
import lmm_pymc.cli
from lmm_pymc import build_model, fit, simulate
from lmm_pymc.design import GroupStatistics
from lmm_pymc.marginal import (
    build_marginal_model,
    check_statistics,
    marginal_loglik,
    marginal_loglik_numpy,
    random_effects_draws,
)

SHARED = ("alpha_0", "beta_0", "sigma_g", "sigs", "R", "Sigma", "rho")


@pytest.fixture(scope="module")
def unbalanced():
    """5 groups of unequal size with string labels: exercises every per-group sum."""
    return simulate(
        n_groups=5,
        group_sizes=[2, 7, 4, 11, 5],
        group_labels=["a", "b", "c", "d", "e"],
        seed=11,
    )


def _points(n: int, seed: int = 0):
    """Random (beta, sigma, Sigma) points, from near-singular Sigma to wide ones."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        beta = rng.normal(0, 5, 2)
        sigma = float(rng.uniform(0.3, 3.0))
        sigs = rng.uniform(0.05, 5.0, 2)
        rho = rng.uniform(-0.95, 0.95)
        Sigma = np.outer(sigs, sigs) * np.array([[1.0, rho], [rho, 1.0]])
        yield beta, sigma, Sigma


def _dense_loglik(design, beta, sigma, Sigma) -> np.ndarray:
    """Brute force: per group log N(y_j | X_j beta, sigma^2 I + Z_j Sigma Z_j'), dense."""
    out = []
    for j in range(design.n_groups):
        rows = design.group_index == j
        X = design.X[rows]
        V = sigma**2 * np.eye(rows.sum()) + X @ Sigma @ X.T
        out.append(st.multivariate_normal(X @ beta, V).logpdf(design.y[rows]))
    return np.array(out)


def _pytensor_loglik(stats, beta, sigma, Sigma) -> np.ndarray:
    return marginal_loglik(stats, beta, sigma, np.linalg.cholesky(Sigma)).eval()


# ------------------------------------------------------------------ log-likelihood
def test_loglik_equals_dense_mvnormal(unbalanced):
    stats = unbalanced.design.group_statistics()
    for beta, sigma, Sigma in _points(6):
        dense = _dense_loglik(unbalanced.design, beta, sigma, Sigma)
        # rtol 1e-9: the same quantity by exact identities, float64 round-off only
        np.testing.assert_allclose(_pytensor_loglik(stats, beta, sigma, Sigma), dense, rtol=1e-9)
        np.testing.assert_allclose(
            marginal_loglik_numpy(stats, beta, sigma, Sigma), dense, rtol=1e-9
        )


def test_singular_groups_fall_back_to_woodbury():
    """Groups with one row or a constant x (singular Z'Z) still match the dense density."""
    import pandas as pd

    df = pd.DataFrame(
        {
            "y": [1.0, 2.5, 3.1, 0.4, 0.9, 1.7, 2.2, 5.0, 4.1],
            "x": [1.0, 2.0, 3.0, 7.0, 2.0, 2.0, 2.0, 1.0, 4.0],
            "group_id": ["a", "a", "a", "single", "flat", "flat", "flat", "b", "b"],
        }
    )
    with pytest.warns(UserWarning, match="one row"):
        design = lmm_pymc.Design.from_dataframe(df)
    stats = design.group_statistics()
    for beta, sigma, Sigma in _points(4):
        # rtol 1e-9: exact identities in both branches, float64 round-off only
        np.testing.assert_allclose(
            _pytensor_loglik(stats, beta, sigma, Sigma),
            _dense_loglik(design, beta, sigma, Sigma),
            rtol=1e-9,
        )


def test_wide_x_log_density_is_smooth():
    """With x = 1..1000 the density has no rounding noise along a line in beta.

    The plain Woodbury form subtracts terms of order y'y (~1e9 per group) at every point;
    its rounding shows as noise of order 0.1-1 in the summed log density (NUTS then
    stalls at 10^6 rows). The well-conditioned form keeps that noise below 1e-6: the
    residual of a quadratic fit along a 2e-5 step in beta_0, where the density is exactly
    quadratic, measures it.
    """
    import pytensor
    import pytensor.tensor as pt

    sim = simulate(n_groups=50, n_per_group=1000, seed=1)
    stats = sim.design.group_statistics()
    L = np.linalg.cholesky(sim.truth.Sigma)
    b, s = pt.vector("b"), pt.scalar("s")
    steps = np.arange(21)

    def noise(stable: bool) -> float:
        f = pytensor.function([b, s], marginal_loglik(stats, b, s, L, stable=stable).sum())
        vals = np.array([f(np.array([6.0, 4.0 + k * 1e-6]), 1.0) for k in steps])
        return float(np.abs(vals - np.polyval(np.polyfit(steps, vals, 2), steps)).max())

    assert noise(stable=True) < 1e-6
    assert noise(stable=False) > 1e-3  # the check can fail: the plain form is noisy here


def test_dense_check_catches_a_wrong_likelihood(unbalanced):
    """The comparison above fails for a deliberately wrong model: Z Sigma Z' left out."""
    stats = unbalanced.design.group_statistics()
    beta, sigma, Sigma = next(_points(1))
    dense = _dense_loglik(unbalanced.design, beta, sigma, Sigma)
    wrong = _pytensor_loglik(stats, beta, sigma, 1e-8 * np.eye(2))
    assert not np.allclose(wrong, dense, rtol=1e-9)
    # and a transposed Cholesky factor (L' instead of L) is caught as well
    L = np.linalg.cholesky(Sigma)
    wrong_t = marginal_loglik(stats, beta, sigma, L.T).eval()
    assert not np.allclose(wrong_t, dense, rtol=1e-9)


def _statsmodels_check(design, beta, cov_re_rel, *, forget_scale: bool = False):
    """(statsmodels ML loglik, ours) at the same point.

    statsmodels parametrizes by ``cov_re = Sigma / sigma^2`` and profiles the scale out of the
    ML log-likelihood: ``scale = r' V_rel^-1 r / N`` with ``V_rel = I + Z cov_re Z'``. Ours
    is evaluated at ``sigma^2 = scale`` and ``Sigma = cov_re * scale``.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

    model = MixedLM(design.y, design.X, groups=design.group_index, exog_re=design.X)
    # what MixedLM.fit(reml=False) sets before it calls loglike: ML, no penalties
    model.reml, model.cov_pen, model.fe_pen = False, None, None
    params = MixedLMParams.from_components(fe_params=beta, cov_re=cov_re_rel)
    sm = model.loglike(params, profile_fe=False)
    qf = 0.0
    for j in range(design.n_groups):
        rows = design.group_index == j
        X = design.X[rows]
        r = design.y[rows] - X @ beta
        qf += r @ np.linalg.solve(np.eye(rows.sum()) + X @ cov_re_rel @ X.T, r)
    scale = qf / design.n_obs
    Sigma = cov_re_rel if forget_scale else cov_re_rel * scale
    ours = _pytensor_loglik(design.group_statistics(), beta, np.sqrt(scale), Sigma).sum()
    return sm, ours


def test_loglik_equals_statsmodels_ml(unbalanced):
    for beta, _, Sigma in _points(4, seed=1):
        sm, ours = _statsmodels_check(unbalanced.design, beta, Sigma / 2.0)
        # rtol 1e-9: both exact in float64 (statsmodels uses the same Woodbury identities)
        assert ours == pytest.approx(sm, rel=1e-9)


def test_statsmodels_check_catches_a_wrong_mapping(unbalanced):
    """Forgetting that statsmodels' cov_re is relative to the scale is caught."""
    beta, _, Sigma = next(_points(1, seed=1))
    sm, ours = _statsmodels_check(unbalanced.design, beta, Sigma / 2.0, forget_scale=True)
    assert ours != pytest.approx(sm, rel=1e-9)


# ------------------------------------------------------------------ model structure
def test_marginal_model_names_coords_and_free_variables(unbalanced):
    m = build_model(unbalanced.design, "marginal")
    assert [v.name for v in m.free_RVs] == ["alpha_0", "beta_0", "sigma_g", "chol_cov"]
    assert m.coords["group"] == ("a", "b", "c", "d", "e")
    assert "obs" not in m.coords  # nothing N-sized
    for name in SHARED:
        assert name in m.named_vars, name
    assert m.named_vars_to_dims["Sigma"] == ("random_effect", "random_effect_")
    ip = m.initial_point()
    assert np.isfinite(m.compile_logp()(ip))
    # same named outputs as the cholesky parametrization, same priors
    chol = build_model(unbalanced.design, "cholesky")
    a, b = m.point_logps(ip), chol.point_logps({**chol.initial_point(), **ip})
    for name in ("alpha_0", "beta_0", "sigma_g", "chol_cov"):
        # the same prior terms: equal to float64 round-off
        assert a[name] == pytest.approx(b[name], rel=1e-12), name


def test_model_logp_is_prior_plus_marginal_loglik(unbalanced):
    """The model's likelihood term is exactly the summed per-group marginal log-likelihood."""
    d = unbalanced.design
    m = build_model(d, "marginal")
    rng = np.random.default_rng(4)
    point = {
        k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in m.initial_point(random_seed=0).items()
    }
    # replace_rvs_by_values: evaluate at `point`, not at fresh draws of the free variables
    outs = m.replace_rvs_by_values([m["alpha_0"], m["beta_0"], m["sigma_g"], m["Sigma"]])
    f = m.compile_fn(outs, inputs=m.value_vars, on_unused_input="ignore")
    a, b, s, Sigma = f(point)
    term = m.point_logps(point, round_vals=20)["y_marginal"]
    # rtol 1e-9: exact identities (see test_loglik_equals_dense_mvnormal)
    assert term == pytest.approx(_dense_loglik(d, np.array([a, b]), s, Sigma).sum(), rel=1e-9)


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
    sim = simulate(n_groups=3, n_per_group=2003, seed=5)  # N = 6009 rows, J = 3
    n_rows = sim.design.n_obs
    marginal = build_model(sim.design, "marginal")
    for fn in (marginal.compile_logp(), marginal.compile_dlogp()):
        assert _row_sized(fn.f, n_rows) == []
    # the check can fail: the cholesky model's likelihood holds x and y (N,)
    chol = build_model(sim.design, "cholesky")
    assert _row_sized(chol.compile_logp().f, n_rows)


# ------------------------------------------------------------------ random effects
def _exact_conditional(design, beta, sigma, Sigma):
    """Dense b_j | y ~ N(M^-1 Z'r / s2, M^-1) from the raw rows (not the sums)."""
    means, covs = [], []
    for j in range(design.n_groups):
        rows = design.group_index == j
        Z = design.X[rows]
        r = design.y[rows] - Z @ beta
        M = np.linalg.inv(Sigma) + Z.T @ Z / sigma**2
        covs.append(np.linalg.inv(M))
        means.append(covs[-1] @ Z.T @ r / sigma**2)
    return np.array(means), np.array(covs)


def _fake_posterior(beta, sigma, Sigma, n_chain: int, n_draw: int, labels):
    import xarray as xr

    dims = ("chain", "draw")
    shape = (n_chain, n_draw)
    return xr.Dataset(
        {
            "alpha_0": (dims, np.full(shape, beta[0])),
            "beta_0": (dims, np.full(shape, beta[1])),
            "sigma_g": (dims, np.full(shape, sigma)),
            "Sigma": (
                dims + ("random_effect", "random_effect_"),
                np.broadcast_to(Sigma, shape + (2, 2)).copy(),
            ),
        },
        coords={"chain": range(n_chain), "draw": range(n_draw), "group": labels},
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
    beta, sigma, Sigma = np.array([5.0, 3.5]), 1.2, np.array([[6.0, 2.0], [2.0, 3.0]])
    post = _fake_posterior(beta, sigma, Sigma, 2, 10_000, list(d.group_labels))
    draws = random_effects_draws(post, d.group_statistics(), seed=3, chunk_elements=7_000)
    assert draws.dims == ("chain", "draw", "group", "random_effect")
    assert list(draws.coords["group"].values) == ["a", "b", "c", "d", "e"]
    flat = draws.values.reshape(-1, d.n_groups, 2)
    mean, cov = _exact_conditional(d, beta, sigma, Sigma)
    # tolerance: 5 Monte Carlo SEs of 20000 independent draws (per entry, 40 entries)
    assert _moments_agree(flat, mean, cov)
    # the check can fail: draws from the prior N(0, Sigma) instead of the conditional
    prior = np.random.default_rng(0).multivariate_normal(np.zeros(2), Sigma, (20_000, d.n_groups))
    assert not _moments_agree(prior, mean, cov)
    # explicit seed: same seed, same draws; another seed, other draws
    again = random_effects_draws(post, d.group_statistics(), seed=3)
    np.testing.assert_array_equal(again.values, draws.values)
    other = random_effects_draws(post, d.group_statistics(), seed=4)
    assert not np.array_equal(other.values, draws.values)


# ------------------------------------------------------------------ input checks
def test_bad_statistics_and_labels(unbalanced):
    stats = unbalanced.design.group_statistics()
    with pytest.raises(
        ValueError, match="stats must be a lmm_pymc.design.GroupStatistics, found dict"
    ):
        check_statistics({})
    bad = GroupStatistics(**{**stats.__dict__, "Zty": stats.Zty[:, :1]})
    with pytest.raises(ValueError, match=r"stats.Zty must have shape \(5, 2\), found \(5, 1\)"):
        check_statistics(bad)
    nan = GroupStatistics(**{**stats.__dict__, "yty": np.full(5, np.nan)})
    with pytest.raises(ValueError, match="stats.yty must be finite"):
        check_statistics(nan)
    with pytest.raises(ValueError, match=r"group_labels must hold 5 distinct labels.* found 2"):
        build_marginal_model(stats, ["a", "b"])
    with pytest.raises(
        ValueError, match="parametrization='marginal', found parametrization='cholesky'"
    ):
        fit(stats, parametrization="cholesky")


def test_marginal_on_nutpie_is_the_default():
    params = inspect.signature(fit).parameters
    assert params["parametrization"].default == "marginal"
    assert params["sampler"].default == "nutpie"
    args = lmm_pymc.cli.build_parser().parse_args(["demo"])
    assert (args.parametrization, args.sampler) == ("marginal", "nutpie")


def test_default_fit_is_clean_and_timed(tutorial_sim):
    """The default fit: no divergences at 0.99 on the tutorial's data, PyMC-like output."""
    idata = fit(tutorial_sim, draws=300, tune=300, random_seed=3, progressbar=False)
    assert idata.attrs["sampler"] == "nutpie"
    assert lmm_pymc.diagnose(idata, warn=False).divergences == 0
    # nutpie's unconstrained values are dropped, as PyMC never stores them
    assert not [v for v in idata.posterior.data_vars if str(v).endswith("__")]
    assert {"alpha_0", "beta_0", "sigma_g", "sigs", "rho", "random_group"} <= set(
        idata.posterior.data_vars
    )
    assert idata.posterior.attrs["sampling_time"] > 0


def test_default_target_accept_per_parametrization():
    from lmm_pymc.fit import target_accept_for

    assert target_accept_for("marginal") == 0.99
    assert target_accept_for("cholesky") == 0.95
    assert target_accept_for("marginal", 0.8) == 0.8


def test_all_regular_groups_drop_the_woodbury_branch(tutorial_sim):
    """Every group regular: the graph holds the stable form only (no switch); one group
    with a single row brings the Woodbury branch back for that group."""
    from pytensor.graph.traversal import ancestors
    from pytensor.scalar import Switch
    from pytensor.tensor.elemwise import Elemwise

    def has_switch(stats):
        out = marginal_loglik(stats, np.array([6.0, 4.0]), 1.0, np.diag([3.0, 2.0]))
        return any(
            v.owner is not None
            and isinstance(v.owner.op, Elemwise)
            and isinstance(v.owner.op.scalar_op, Switch)
            for v in ancestors([out])
        )

    assert not has_switch(tutorial_sim.design.group_statistics())
    one_row = simulate(group_sizes=[10, 10, 1], seed=4).design.group_statistics()
    assert has_switch(one_row)


# ------------------------------------------------------------------ sampling
@pytest.fixture(scope="module")
def two_fits():
    """marginal and cholesky on the same small data: 20 groups x 4 rows, residual sd 4.

    Weakly informative groups keep the non-centred cholesky model cheap (about 60 leapfrog
    steps per draw, no divergences); with 12 rows per group and sd 1 it needs ~700.
    """
    sim = simulate(n_groups=20, n_per_group=4, sigma=4.0, seed=21)
    kw = dict(draws=500, tune=500, chains=2, random_seed=5, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm_pymc.SamplingWarning)  # diagnostics checked below
        marginal = fit(sim, parametrization="marginal", **kw)
        cholesky = fit(sim, parametrization="cholesky", **kw)
    return sim, marginal, cholesky


def _disagreement(a, b, var: str) -> np.ndarray:
    """|mean_a - mean_b| in units of their combined Monte Carlo standard error."""
    import arviz as az

    ma, mb = a.posterior[var].mean(("chain", "draw")), b.posterior[var].mean(("chain", "draw"))
    sa, sb = az.mcse(a, var_names=[var])[var], az.mcse(b, var_names=[var])[var]
    return np.abs((ma - mb).values) / np.sqrt(sa.values**2 + sb.values**2)


@pytest.mark.slow
def test_marginal_and_cholesky_posteriors_agree(two_fits):
    sim, marginal, cholesky = two_fits
    assert lmm_pymc.diagnose(marginal, warn=False).divergences == 0
    rg = marginal.posterior["random_group"]
    assert rg.dims == ("chain", "draw", "group", "random_effect")
    assert rg.sizes == {"chain": 2, "draw": 500, "group": 20, "random_effect": 2}
    # tolerance: 4.5 combined MCSEs (46 compared means: a false alarm has probability ~3e-4)
    for var in ("alpha_0", "beta_0", "sigma_g", "sigs", "rho", "random_group"):
        z = _disagreement(marginal, cholesky, var)
        assert np.all(z < 4.5), (var, z)
    # posterior sds agree to 25%: an sd estimated from ESS ~300 has a relative error of
    # ~1/sqrt(2 ESS) = 4%, so the ratio of two is within 25% at about 4 standard errors
    for var in ("sigma_g", "sigs", "random_group"):
        ratio = marginal.posterior[var].std(("chain", "draw")) / cholesky.posterior[var].std(
            ("chain", "draw")
        )
        assert np.all(np.abs(ratio.values - 1) < 0.25), (var, ratio.values)


@pytest.mark.slow
def test_posterior_comparison_catches_wrong_random_effects(two_fits):
    """Random effects drawn from another data set's statistics are flagged by the check."""
    sim, marginal, cholesky = two_fits
    other = simulate(n_groups=20, n_per_group=4, sigma=4.0, seed=22).design.group_statistics()
    wrong = marginal.copy()
    wrong.posterior["random_group"] = random_effects_draws(
        marginal.posterior, other, seed=1, group_labels=sim.design.group_labels
    )
    assert np.any(_disagreement(wrong, cholesky, "random_group") > 4.5)
