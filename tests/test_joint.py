"""Every factor's random effects integrated out at once (lmm_pymc.marginal.joint): the exact
log density against a dense N x N Gaussian, the exact conditional draws, and the default
plan for crossed and nested factors with few effects."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.stats as st
import xarray as xr

import lmm_pymc
from lmm_pymc import build_model, fit, simulate
from lmm_pymc.marginal import (
    JointStatistics,
    MarginalPlan,
    joint_loglik_numpy,
    joint_marginal_loglik,
    joint_random_effects_draws,
)
from lmm_pymc.marginal.statistics import block_design

CROSSED_Q1 = "y ~ 1 + (1 | plate) + (1 | sample)"
CROSSED_Q2 = "y ~ 1 + x + (1 + x | plate) + (1 | sample)"
NESTED_Q1 = "y ~ 1 + x + (1 | batch/cask)"
NESTED_Q2 = "y ~ 1 + x + (1 + x | batch) + (1 | batch:cask)"


def _frame(seed: int = 0) -> pd.DataFrame:
    """8 plates x 5 samples, a sixth of the cells missing; batches = plates, 2 casks each."""
    rng = np.random.default_rng(seed)
    plate, sample = np.meshgrid(np.arange(8), np.arange(5), indexing="ij")
    frame = pd.DataFrame({"plate": plate.ravel(), "sample": sample.ravel()})
    frame = frame[rng.random(len(frame)) > 1 / 6].reset_index(drop=True)
    frame["batch"] = frame["plate"].map(lambda k: f"b{k}")
    frame["cask"] = np.where(frame["sample"] < 3, "c1", "c2")
    frame["x"] = rng.normal(0.0, 1.0, len(frame))
    frame["y"] = rng.normal(0.0, 1.0, len(frame))  # replaced by simulate
    return frame


def _simulated(formula: str, seed: int = 0):
    frame = _frame(seed)
    design = lmm_pymc.design_from_formula(formula, frame)
    rng = np.random.default_rng(seed + 1)
    groups = {f.name: {"sigs": list(rng.uniform(0.5, 3.0, f.q))} for f in design.factors}
    beta = list(rng.normal(20.0, 2.0, design.X.shape[1]))
    return simulate(formula, frame, beta=beta, groups=groups, sigma=0.7, seed=seed)


def _points(design, n: int, seed: int):
    """Random (beta, sigma, [L_k]) points: correlated factors with random correlations."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        chols = []
        for f in design.factors:
            B = rng.normal(size=(f.q, f.q))
            C = B @ B.T + 0.2 * np.eye(f.q)
            sd = rng.uniform(0.1, 4.0, f.q)
            corr = C / np.sqrt(np.outer(np.diag(C), np.diag(C)))
            chols.append(np.linalg.cholesky(np.outer(sd, sd) * corr))
        yield rng.normal(20.0, 3.0, design.X.shape[1]), float(rng.uniform(0.2, 3.0)), chols


def _dense(design, beta, sigma, chols) -> float:
    """Brute force: log N(y | X beta, s2 I + sum_k Z_k (I kron Sigma_k) Z_k') from the rows,
    the N x N covariance built factor by factor."""
    V = sigma**2 * np.eye(design.n_obs)
    for f, L in zip(design.factors, chols, strict=True):
        Zk = block_design(f.index, f.Z, f.n_levels).toarray()
        V += Zk @ np.kron(np.eye(f.n_levels), L @ L.T) @ Zk.T
    return float(st.multivariate_normal(design.X @ beta, V).logpdf(design.y))


def _graph(js: JointStatistics):
    """The PyTensor log density as a function of (beta, sigma, *chols), compiled once."""
    beta, sigma = pt.vector("beta"), pt.scalar("sigma")
    chols = [pt.matrix(f"L_{f.key}") for f in js.factors]
    out = joint_marginal_loglik(js, beta, sigma, chols)
    return pytensor.function([beta, sigma, *chols], out)


@pytest.mark.parametrize("formula", [CROSSED_Q1, CROSSED_Q2, NESTED_Q1, NESTED_Q2])
def test_joint_loglik_equals_dense_mvnormal(formula):
    """Graph, NumPy reference and the dense N x N Gaussian agree to 1e-10 relative at random
    points (float64 sums of ~35 rows and Cholesky factorisations of at most 40 x 40
    matrices: rounding ~1e-13); the dense check fails for a model that drops a factor or
    misstates the residual variance."""
    design = _simulated(formula).design
    js = JointStatistics.from_design(design)
    assert js.n_effects == sum(f.n_levels * f.q for f in design.factors)
    if "batch" in formula:  # nested: Z'Z singular (each batch's column = its casks' sum)
        assert np.linalg.matrix_rank(js.ZtZ) < js.n_effects
    fn = _graph(js)
    for beta, sigma, chols in _points(design, 5, seed=len(formula)):
        dense = _dense(design, beta, sigma, chols)
        graph = float(fn(beta, sigma, *chols))
        numpy = joint_loglik_numpy(js, beta, sigma, chols)
        assert abs(graph - dense) <= 1e-10 * abs(dense), (graph, dense)
        assert abs(numpy - dense) <= 1e-10 * abs(dense), (numpy, dense)
        dropped = [chols[0], *(1e-9 * L for L in chols[1:])]  # the second factor left out
        for wrong in (_dense(design, beta, sigma, dropped), _dense(design, beta, 1.1 * sigma, chols)):
            assert abs(graph - wrong) > 1e-6 * abs(dense)


def test_model_likelihood_is_the_joint_loglik():
    """The default model's y_marginal (its inputs packed as pm.Data) equals the NumPy
    reference at random points of the model's own parameters (1e-10 relative)."""
    design = _simulated(CROSSED_Q2).design
    model = build_model(design)
    names = ["beta", "sigma", "chol_cov_plate", "sigs_sample"]
    outputs = model.replace_rvs_by_values([model[n] for n in names] + [model["y_marginal"]])
    fn = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")
    js = JointStatistics.from_design(design)
    rng = np.random.default_rng(3)
    for _ in range(3):
        point = {k: v + rng.normal(0.0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
        beta, sigma, packed, sigs, loglik = fn(point)
        L = np.zeros((2, 2))
        L[np.tril_indices(2)] = packed
        want = joint_loglik_numpy(js, beta, float(sigma), [L, np.diag(sigs)])
        assert abs(float(loglik) - want) <= 1e-10 * abs(want)


def test_default_plan_integrates_every_factor_when_few(monkeypatch):
    """Two or more factors with at most JOINT_LIMIT effects: no z_ sampled, every factor's
    covariance as before; integrate= keeps one factor integrated and the others sampled;
    beyond the limit the factor with the most levels alone."""
    design = _simulated(CROSSED_Q2).design
    plan = MarginalPlan.from_data(design)
    assert plan.likelihood == "joint" and plan.sampled == ()
    assert plan.integrated_names == ("plate", "sample")
    free = sorted(v.name for v in build_model(design).free_RVs)
    assert free == ["beta", "chol_cov_plate", "sigma", "sigs_sample"]
    data = sorted(v.name for v in build_model(design).data_vars)
    assert data == ["prior_beta", "prior_values", "stat_joint_effects", "stat_joint_fixed"]
    one = MarginalPlan.from_data(design, "plate")
    assert one.likelihood == "crossed" and [f.name for f in one.sampled] == ["sample"]
    assert "z_sample" in {v.name for v in build_model(design, integrate="plate").free_RVs}
    monkeypatch.setattr(lmm_pymc.marginal.joint, "JOINT_LIMIT", 20)  # M = 8 * 2 + 5 = 21
    assert MarginalPlan.from_data(design).likelihood == "crossed"
    single = _simulated("y ~ 1 + (1 | plate)").design
    assert MarginalPlan.from_data(single).likelihood == "grouped"


def _posterior(design, beta, sigma, chols, n_chain: int, n_draw: int) -> xr.Dataset:
    """A posterior whose every draw is the same point (chol_cov_ for q >= 2, sigs_ else)."""
    dims, shape = ("chain", "draw"), (n_chain, n_draw)
    variables = {"beta": (dims + ("fixed_effect",), np.broadcast_to(beta, shape + beta.shape)),
                 "sigma": (dims, np.full(shape, sigma))}  # fmt: skip
    for f, L in zip(design.factors, chols, strict=True):
        if f.q == 1:
            variables[f"sigs_{f.key}"] = (dims + (f.effect_dim,), np.full(shape + (1,), L[0, 0]))
        else:
            packed = L[np.tril_indices(f.q)]
            variables[f"chol_cov_{f.key}"] = (dims + ("packed",),
                                              np.broadcast_to(packed, shape + packed.shape))  # fmt: skip
    return xr.Dataset(variables, coords={"chain": range(n_chain), "draw": range(n_draw)})


def _conditional(design, beta, sigma, chols):
    """Dense b | y ~ N(P^-1 Z'r / s2, P^-1), P = Sigma_b^-1 + Z'Z / s2, from the rows."""
    Z = np.hstack([block_design(f.index, f.Z, f.n_levels).toarray() for f in design.factors])
    Sigma_b = np.zeros((Z.shape[1], Z.shape[1]))
    start = 0
    for f, L in zip(design.factors, chols, strict=True):
        width = f.n_levels * f.q
        Sigma_b[start : start + width, start : start + width] = np.kron(np.eye(f.n_levels), L @ L.T)
        start += width
    cov = np.linalg.inv(np.linalg.inv(Sigma_b) + Z.T @ Z / sigma**2)
    return cov @ Z.T @ (design.y - design.X @ beta) / sigma**2, cov


def _moments_agree(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> bool:
    """Means within 5 Monte Carlo SEs, covariance entries within 5 SEs of a Gaussian sample
    covariance (sqrt((c_ab^2 + c_aa c_bb) / S))."""
    S = draws.shape[0]
    sd = np.sqrt(np.diag(cov))
    emp = (draws - mean).T @ (draws - mean) / S
    se = np.sqrt((cov**2 + np.outer(sd, sd) ** 2) / S)
    return bool(np.all(np.abs(draws.mean(0) - mean) < 5 * sd / np.sqrt(S))
                and np.all(np.abs(emp - cov) < 5 * se))  # fmt: skip


@pytest.mark.parametrize("formula", [CROSSED_Q2, NESTED_Q1])
def test_joint_draws_are_the_exact_conditional(formula):
    """At one fixed hyperparameter point, 20000 draws of every factor's effects have the
    dense conditional mean and covariance (5 Monte Carlo SEs per entry); the same check
    fails for draws made with a residual sd 1.2 times too large."""
    design = _simulated(formula, seed=2).design
    js = JointStatistics.from_design(design)
    beta, sigma, chols = next(_points(design, 1, seed=5))
    mean, cov = _conditional(design, beta, sigma, chols)
    post = _posterior(design, beta, sigma, chols, 2, 10_000)
    draws = joint_random_effects_draws(post, js, seed=3, chunk_elements=300_000)
    assert [d.name for d in draws] == [f"b_{f.key}" for f in design.factors]
    for d, f in zip(draws, design.factors, strict=True):
        assert d.dims == ("chain", "draw", f.level_dim, f.effect_dim)
        assert d.shape == (2, 10_000, f.n_levels, f.q)
    flat = np.concatenate([d.values.reshape(20_000, -1) for d in draws], axis=1)
    assert _moments_agree(flat, mean, cov)
    again = joint_random_effects_draws(post, js, seed=3)  # seeded: the same draws
    np.testing.assert_allclose(again[0].values, draws[0].values, rtol=1e-12)
    wrong = joint_random_effects_draws(post.assign(sigma=post["sigma"] * 1.2), js, seed=3)
    assert not _moments_agree(np.concatenate([d.values.reshape(20_000, -1) for d in wrong], 1),
                              mean, cov)  # fmt: skip


@pytest.mark.slow
def test_fit_draws_every_factor_of_a_penicillin_like_design():
    """24 plates x 6 samples, fully crossed: the default fit integrates both factors out
    and returns b_plate and b_sample, exact draws near the simulated effects."""
    plate, sample = np.meshgrid(np.arange(24), np.arange(6), indexing="ij")
    frame = pd.DataFrame({"plate": [f"p{k:02d}" for k in plate.ravel()],
                          "sample": [f"s{k}" for k in sample.ravel()]})  # fmt: skip
    groups = {"plate": {"sigs": [0.85]}, "sample": {"sigs": [1.9]}}
    sim = simulate(CROSSED_Q1, frame, beta=[23.0], groups=groups, sigma=0.55, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm_pymc.SamplingWarning)
        idata = fit(sim, draws=300, tune=300, chains=2, random_seed=1, progressbar=False)
    post = idata.posterior
    assert "z_plate" not in post and "z_sample" not in post
    assert post["b_plate"].shape == (2, 300, 24, 1) and post["b_sample"].shape == (2, 300, 6, 1)
    for name in ("plate", "sample"):
        truth = sim.truth.factors[name].b[:, 0]
        mean, sd = post[f"b_{name}"].mean(("chain", "draw")), post[f"b_{name}"].std(("chain", "draw"))
        # 5 posterior sds: the effects are recovered, not only drawn
        assert np.all(np.abs(mean.values[:, 0] - truth) < 5 * sd.values[:, 0] + 0.3)


@pytest.mark.slow
def test_fit_with_two_correlated_factors_integrated_out_starts():
    """Two crossed factors with correlated slopes, both integrated out: every chain gets its
    initial point (PyTensor froze a prior constant's data while compiling the log density,
    under a view the initial-point function held: no chain could start) and the draws
    hold both factors' effects and correlations."""
    rng = np.random.default_rng(1)
    subject, item = np.meshgrid(np.arange(8), np.arange(6), indexing="ij")
    frame = pd.DataFrame({"subject": np.repeat(subject.ravel(), 3),
                          "item": np.repeat(item.ravel(), 3)})  # fmt: skip
    frame["x"] = rng.normal(0.0, 1.0, len(frame))
    formula = "y ~ x + (1 + x | subject) + (1 + x | item)"
    groups = {"subject": {"sigs": [1.0, 0.5]}, "item": {"sigs": [0.8, 0.4]}}
    sim = simulate(formula, frame, beta=[1.0, 0.5], groups=groups, sigma=1.0, seed=3)
    assert build_model(sim.design, "marginal")["stat_joint_effects"] is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm_pymc.SamplingWarning)
        idata = fit(sim, draws=100, tune=100, chains=2, random_seed=1, progressbar=False)
    post = idata.posterior
    assert post["b_subject"].shape == (2, 100, 8, 2) and post["b_item"].shape == (2, 100, 6, 2)
    assert post["R"].shape[-2:] == (4, 4) and np.isfinite(post["R"].values).all()
