"""PyMC vs Stan cross-check (lmm_pymc.crosscheck), run on PyStan; it must not skip in CI."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy.integrate import quad

import lmm_pymc
from lmm_pymc.crosscheck import (
    available_pairs,
    cholesky_cov_log_jacobian,
    compare_posteriors,
    covariance_log_jacobian,
    crosscheck,
    expected_offset,
    get_pair,
    lkj_log_normaliser,
    name_mapping,
    scalar_names,
    select_pair,
)
from lmm_pymc.marginal import marginal_loglik
from lmm_pymc.models import build_model

Q3 = "y ~ 1 + x1 + x2 + x3 + (1 + x1 + x2 | g)"
CROSSED = "rt ~ 1 + cond + (1 + cond | subject) + (1 + cond | item)"
UNCORRELATED = "y ~ 1 + x1 + (1 + x1 || g) + (1 | h)"
R3 = [[1.0, 0.4, 0.2], [0.4, 1.0, -0.3], [0.2, -0.3, 1.0]]

# wrong pairs use prior points only (no PyMC sampling): enough to expose a wrong density
WRONG = dict(n_prior=8, n_posterior=0, engine="pystan")


# ------------------------------------------------------------------------- data sets
@pytest.fixture(scope="module")
def q3_frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 30 * 12
    return pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                         "x3": rng.normal(size=n),
                         "g": np.repeat([f"g{i:02d}" for i in range(30)], 12),
                         "h": np.tile([f"h{i}" for i in range(6)], 60)})  # fmt: skip


@pytest.fixture(scope="module")
def q3_sim(q3_frame) -> lmm_pymc.Simulation:
    """30 groups x 12 rows, 4 fixed effects, q = 3 correlated random effects."""
    return lmm_pymc.simulate(Q3, q3_frame, beta=[1.0, 0.5, -0.5, 0.3],
                             groups={"g": {"sigs": [1.0, 0.7, 0.5], "R": R3}},
                             sigma=0.5, seed=3)  # fmt: skip


@pytest.fixture(scope="module")
def uncorrelated_sim(q3_frame) -> lmm_pymc.Simulation:
    """An uncorrelated (||) factor crossed with a random-intercept factor."""
    return lmm_pymc.simulate(UNCORRELATED, q3_frame, beta=[1.0, 0.5],
                             groups={"g": {"sigs": [1.0, 0.5]}, "h": {"sigs": [0.7]}},
                             sigma=0.5, seed=3)  # fmt: skip


# ------------------------------------------------------------------ maths, no Stan
@pytest.mark.parametrize("eta", [1.0, 2.0, 3.5])
def test_lkj_normaliser_n2_integrates_the_density(eta: float) -> None:
    # c_2(eta) = integral of (1 - r^2)^(eta - 1) over (-1, 1); quad asked for 1e-13
    # relative accuracy, so 1e-10 leaves room for its error estimate
    integral, _ = quad(lambda r: (1 - r * r) ** (eta - 1), -1, 1, epsabs=1e-14, epsrel=1e-13)
    assert math.isclose(lkj_log_normaliser(2, eta), math.log(integral), rel_tol=1e-10)
    with pytest.raises(ValueError, match="found n=1"):
        lkj_log_normaliser(1, eta)


@pytest.mark.parametrize("n", [2, 3])
def test_pymc_lkj_constant_has_the_sign_the_offset_assumes(n: int) -> None:
    # PyMC 5.28's LKJCorr(n=2, eta=1) logp is +log 2 (the uniform density on (-1, 1) is
    # 1/2), and the same sign for n = 3 (the general pair's q = 3 design); the offsets rely
    # on that sign. If PyMC fixes it, flip the sign in reference_offset. rel_tol 1e-6:
    # PyMC evaluates its constant partly in single precision
    for eta in (1.0, 2.0):
        value = np.zeros(n * (n - 1) // 2)
        logp = pm.logp(pm.LKJCorr.dist(n=n, eta=eta), value).eval()
        assert math.isclose(float(logp), lkj_log_normaliser(n, eta), rel_tol=1e-6)


def _numeric_log_jacobian(sigs: np.ndarray, lower: np.ndarray) -> float:
    """log|det d packed(diag(sigs) L) / d (sigs, strictly lower L)| by central differences."""
    q = sigs.size
    rows, cols = np.tril_indices(q, -1)

    def packed(params: np.ndarray) -> np.ndarray:
        L = np.zeros((q, q))
        L[rows, cols] = params[q:]
        L[np.diag_indices(q)] = np.sqrt(1.0 - np.sum(L * L, axis=1))
        return (params[:q, None] * L)[np.tril_indices(q)]

    p0, h = np.concatenate([sigs, lower]), 1e-6
    J = np.column_stack([(packed(p0 + h * e) - packed(p0 - h * e)) / (2 * h)
                         for e in np.eye(p0.size)])  # fmt: skip
    return math.log(abs(np.linalg.det(J)))


def test_cholesky_jacobian_matches_finite_differences() -> None:
    # rtol 1e-6: step 1e-6, truncation error O(h^2) on entries of order 1
    sigs, r = np.array([1.7, 0.6]), -0.4
    point = {"sigs": sigs, "R": np.array([[1, r], [r, 1]])}
    assert math.isclose(cholesky_cov_log_jacobian(point), _numeric_log_jacobian(sigs, [r]),
                        rel_tol=1e-6)  # fmt: skip
    # general q = 3
    sigs3 = np.array([1.3, 0.8, 2.1])
    L = np.linalg.cholesky(np.array(R3))
    point3 = {"sigs": sigs3, "R": np.array(R3)}
    numeric = _numeric_log_jacobian(sigs3, L[np.tril_indices(3, -1)])
    assert math.isclose(cholesky_cov_log_jacobian(point3), numeric, rel_tol=1e-6)


def test_covariance_jacobian_sums_the_correlated_factors(crossed_sim, uncorrelated_sim) -> None:
    d = crossed_sim.design
    R = np.eye(4)
    R[0, 1] = R[1, 0] = 0.3
    R[2, 3] = R[3, 2] = -0.5
    point = {"sigs": np.array([1.0, 2.0, 0.5, 3.0]), "R": R}
    free = ["beta", "sigma", "chol_cov_subject", "chol_cov_item", "z_subject", "z_item"]
    blocks = [cholesky_cov_log_jacobian({"sigs": point["sigs"][b], "R": R[b, b]})
              for b in (slice(0, 2), slice(2, 4))]  # fmt: skip
    # exact: the same two sums
    assert covariance_log_jacobian(point, d, free) == blocks[0] + blocks[1]
    assert covariance_log_jacobian(point, d, ["chol_cov_item"]) == blocks[1]
    # no LKJCholeskyCov in an uncorrelated design: nothing to add
    u = {"sigs": np.ones(3), "R": np.eye(3)}
    assert covariance_log_jacobian(u, uncorrelated_sim.design, ["sigs_g", "sigs_h"]) == 0.0


def test_name_mapping_is_zero_based_in_the_package() -> None:
    table = name_mapping(["alpha_0", "random_group.2.1", "L_corr.2.1", "sigs.1", "sigma_g"])
    assert table["package"].tolist() == ["beta[intercept]", "b_group_id[1, 0]",
                                         "cholesky(R)[1, 0]", "sigs[0]", "sigma"]  # fmt: skip
    with pytest.raises(ValueError, match="design must be given"):
        name_mapping(["beta.1"], "general")


def test_expected_offset_of_the_tutorial(tutorial_sim) -> None:
    # documented values (docs/crosscheck.md); abs 1e-6: printed to 6 decimals
    offset, text = expected_offset(tutorial_sim.design, "cholesky")
    assert abs(offset - -44.742840) < 1e-6 and "LKJ" in text
    assert abs(expected_offset(tutorial_sim.design, "marginal")[0] - -11.661053) < 1e-6


def test_scalar_names_use_the_package_scheme(tutorial_sim, q3_sim) -> None:
    names = [n for n, _, _ in scalar_names(tutorial_sim.design)]
    assert names == ["beta[intercept]", "beta[x]", "sigma", "sigs[intercept|group_id]",
                     "sigs[x|group_id]", "R[intercept|group_id, x|group_id]"]  # fmt: skip
    q3 = [n for n, _, _ in scalar_names(q3_sim.design) if n.startswith("R[")]
    assert q3 == ["R[intercept|g, x1|g]", "R[intercept|g, x2|g]", "R[x1|g, x2|g]"]


# ------------------------------------------------------------- registry, no Stan
def test_importing_registers_nothing_and_needs_no_stan_files() -> None:
    code = (
        "import lmm_pymc.stan.programs as p\n"
        "def missing():\n"
        "    raise FileNotFoundError('stan_reference folder not found')\n"
        "p.stan_reference_dir = missing\n"
        "import lmm_pymc.crosscheck as c\n"
        "assert c.PAIRS == {} and callable(c.crosscheck)\n"
        "try:\n"
        "    c.available_pairs()\n"
        "except FileNotFoundError:\n"
        "    print('lazy')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "lazy", out.stderr


def test_available_pairs_and_their_designs(tutorial_sim, crossed_sim, q3_sim) -> None:
    assert available_pairs() == ["marginal", "cholesky", "lkj_corr", "marginal_stats", "general",
                                 "glmm"]  # fmt: skip
    # a Gaussian outcome: every pair but the generalised one
    assert available_pairs(tutorial_sim.design) == available_pairs()[:-1]
    assert available_pairs(crossed_sim.design) == ["general"]  # marginal: one factor only
    assert available_pairs(q3_sim.design) == ["marginal_stats", "general"]
    exact = [p for p in lmm_pymc.PARAMETRIZATIONS if p != "laplace"]  # no Stan twin of laplace
    pick = {p: select_pair(tutorial_sim.design, p).program for p in exact}
    assert pick == {"marginal": "lmm_marginal", "cholesky": "lmm_cholesky",
                    "lkj_corr": "lmm_lkj_corr"}  # fmt: skip
    assert select_pair(tutorial_sim.design).name == "marginal"  # the default parametrization
    assert select_pair(tutorial_sim.design, program="general").parametrization == "cholesky"
    assert select_pair(crossed_sim.design).name == "general"
    # a single-factor design defaults to marginal: the sufficient-statistics program
    assert select_pair(q3_sim.design).name == "marginal_stats"
    assert select_pair(q3_sim.design, "cholesky").name == "general"


def test_pair_selection_errors(tutorial_sim, crossed_sim, q3_sim) -> None:
    with pytest.raises(ValueError, match=r"y ~ 1 \+ x \+ \(1 \+ x \| group_id\)"):
        crosscheck(crossed_sim, program="cholesky")
    with pytest.raises(ValueError, match="found 'lkj_corr'"):
        crosscheck(crossed_sim, "lkj_corr")
    with pytest.raises(
        ValueError, match=r"must have a Stan pair for this design .* found 'marginal'"
    ):
        crosscheck(crossed_sim, "marginal")
    with pytest.raises(ValueError, match="must be 'cholesky' for program 'general'"):
        crosscheck(tutorial_sim, "marginal", program="general")
    with pytest.raises(ValueError, match="found 'nope'"):
        crosscheck(tutorial_sim, "nope")
    with pytest.raises(ValueError, match="pair must be one of .* found 'nope'"):
        crosscheck(tutorial_sim, program="nope")
    with pytest.raises(ValueError, match="n_posterior=0"):
        crosscheck(tutorial_sim, "cholesky", n_prior=1, n_posterior=0)


# -------------------------------------------------------- the pairs agree (PyStan)
def _assert_agree(result, n_points: int) -> None:
    assert result.engine in ("pystan", "bridgestan")
    assert len(result.table) == n_points
    assert result.ok, result.summary() + "\n" + result.table.to_string()
    # the analytic offset explains the measured one (tolerance 1e-6 relative, see
    # CrossCheckResult.offset_matches_expected)
    assert result.offset_matches_expected, result.summary()


@pytest.mark.slow
def test_cholesky_pair_agrees_on_tutorial_data(tutorial_sim) -> None:
    result = crosscheck(tutorial_sim, "cholesky", n_prior=10, n_posterior=10, engine="pystan")
    _assert_agree(result, 20)
    assert result.program == "lmm_cholesky"
    assert result.shared_coordinates == ["beta", "sigma", "z_group_id"]
    # rtol 1e-8 is the bar; correct latent pairs reach rounding level (~1e-14
    # measured), so 1e-11 still leaves three orders of magnitude
    assert result.table["rel_error"].max() < 1e-11


@pytest.mark.slow
def test_lkj_corr_pair_agrees_on_tutorial_data(tutorial_sim) -> None:
    # the centred model samples slowly in PyMC: fewer posterior points, short tuning
    result = crosscheck(tutorial_sim, "lkj_corr", n_prior=15, n_posterior=5, tune=50,
                        engine="pystan")  # fmt: skip
    _assert_agree(result, 20)
    assert result.shared_coordinates == ["b_group_id", "beta", "sigma", "sigs_group_id"]
    assert result.table["rel_error"].max() < 1e-11  # as for cholesky


@pytest.mark.slow
def test_cholesky_pair_agrees_on_30_groups(sim_30x20) -> None:
    result = crosscheck(sim_30x20, "cholesky", n_prior=10, n_posterior=10, engine="pystan")
    _assert_agree(result, 20)
    assert result.table["rel_error"].max() < 1e-11  # as on the tutorial data


@pytest.mark.slow
def test_marginal_pair_agrees(tutorial_sim) -> None:
    result = crosscheck(tutorial_sim, "marginal", n_prior=10, n_posterior=10, engine="pystan")
    _assert_agree(result, 20)
    assert result.shared_coordinates == ["beta", "sigma"]
    # Stan's Woodbury form sums terms of opposite sign: ~1e-11 relative measured, and the
    # pair's tolerance is 1e-8 (see crosscheck's grad_rtol)
    assert result.table["rel_error"].max() < 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("data", ["q3_sim", "crossed_sim", "uncorrelated_sim"])
def test_general_pair_agrees(data: str, request) -> None:
    sim = request.getfixturevalue(data)
    result = crosscheck(sim, n_prior=5, n_posterior=5, engine="pystan", program="general")
    _assert_agree(result, 10)
    assert result.program == "lmm_general" and result.parametrization == "cholesky"
    # both sides are exact double-precision sums of the same terms (~1e-13 measured)
    assert result.table["rel_error"].max() < 1e-8
    keys = [f.key for f in sim.design.factors]
    assert {f"z_{k}" for k in keys} <= set(result.shared_coordinates)
    if data == "uncorrelated_sim":  # free sds of a || or q = 1 factor are shared too
        assert {"sigs_g", "sigs_h"} <= set(result.shared_coordinates)


@pytest.fixture(scope="module")
def uncorrelated_single(q3_frame) -> lmm_pymc.Simulation:
    """``(1 + x1 || g)`` on 30 groups, the last with one row: its Z'Z is singular, so the
    program's Woodbury branch runs beside the well-conditioned one."""
    frame = q3_frame.iloc[: 30 * 12 - 11]
    return lmm_pymc.simulate("y ~ 1 + x1 + (1 + x1 || g)", frame, beta=[1.0, 0.5],
                             groups={"g": {"sigs": [1.0, 0.5]}}, sigma=0.5, seed=3)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("data", ["tutorial_sim", "q3_sim", "uncorrelated_single"])
def test_marginal_stats_pair_agrees(data: str, request) -> None:
    # the tutorial (p = q = 2, every fixed column random), q = 3 with a fixed-only x3
    # (non-zero A and c), and an uncorrelated factor with a one-row group
    sim = request.getfixturevalue(data)
    result = crosscheck(sim, "marginal", n_prior=5, n_posterior=5, engine="pystan",
                        program="marginal_stats")  # fmt: skip
    _assert_agree(result, 10)
    assert result.program == "lmm_marginal_stats"
    # the same well-conditioned algorithm on both sides: measured 1.6e-12 (lp) and 2.0e-11
    # (gradient) at worst, so 1e-10 still leaves margin over rounding and the 1e-9 default
    assert result.table["rel_error"].max() < 1e-10
    assert result.table["max_grad_error"].max() < 1e-10
    if data == "uncorrelated_single":
        assert result.shared_coordinates == ["beta", "sigma", "sigs_g"]


# ------------------------------------------------------ the check can fail (PyStan)
def _shift_rows(design: lmm_pymc.Design) -> lmm_pymc.Design:
    """Rows assigned to the wrong levels of the first factor (its index rolled by one)."""
    f = design.factors[0]
    shifted = dataclasses.replace(f, index=np.roll(f.index, 1))
    return dataclasses.replace(design, factors=(shifted, *design.factors[1:]))


def _without_random_slope(design: lmm_pymc.Design, parametrization: str) -> pm.Model:
    """The pair's PyMC model with the first factor's random slope dropped from the
    likelihood: its Z column zeroed; for ``marginal`` (where that makes every Z'Z singular)
    the slope's row of the Cholesky factor zeroed in the integrated likelihood."""
    f = design.factors[0]
    if parametrization != "marginal":
        Z = f.Z.copy()
        Z[:, 1] = 0.0
        factors = (dataclasses.replace(f, Z=Z), *design.factors[1:])
        wrong = dataclasses.replace(design, factors=factors)
        return build_model(wrong, parametrization, priors=lmm_pymc.Priors.tutorial())
    grouped, priors = design.grouped_statistics(), lmm_pymc.Priors()
    with pm.Model(coords=grouped.coords()) as model:
        beta = pm.Normal("beta", **priors.fixed.kwargs, dims="fixed_effect")
        sigma = pm.HalfNormal("sigma", **priors.sigma.kwargs)
        chol, corr, stds = pm.LKJCholeskyCov(
            f"chol_cov_{f.key}", n=2, eta=priors.lkj_eta, compute_corr=True,
            sd_dist=pm.HalfNormal.dist(**priors.sigs.kwargs, shape=2), store_in_trace=False)  # fmt: skip
        keep = np.array([[1.0], [0.0]])  # Sigma without the slope's variance
        pm.Potential(
            "y_marginal", marginal_loglik(grouped.statistics, beta, sigma, chol * keep).sum()
        )
        pm.Deterministic("sigs", stds, dims="random_effect")
        pm.Deterministic("R", corr, dims=("random_effect", "random_effect_"))
    return model


#: failure -> keyword arguments of crosscheck, from (design, pair). Each wrong pair must
#: disagree by more than 1e-4 relative, far above the 1e-8 tolerance: not a near miss
#: (measured values per pair in docs/crosscheck.md).
FAILURES = {
    # PyMC LKJ eta 1 against Stan's 2: (eta - 1) log det R differs between points
    "lkj_eta_1_vs_2": lambda d, p: dict(priors=lmm_pymc.Priors(lkj_eta=1.0),
                                        stan_priors=lmm_pymc.Priors(lkj_eta=2.0)),
    # group sd prior 5 against 10: -sigs^2 / (2 sd^2) differs between points
    "group_sd_5_vs_10": lambda d, p: dict(priors=lmm_pymc.Priors(sigs="halfnormal(5)"),
                                          stan_priors=lmm_pymc.Priors(sigs="halfnormal(10)")),
    "dropped_random_slope": lambda d, p: dict(model=_without_random_slope(d, p.parametrization)),
    # without log|d chol_cov / d (sigs, L_corr)| the pairs differ by a non-constant term
    "missing_jacobian": lambda d, p: dict(pair=dataclasses.replace(p, log_jacobian=None)),
    "rows_in_wrong_groups": lambda d, p: dict(
        model=build_model(_shift_rows(d), p.parametrization, priors=lmm_pymc.Priors.tutorial())
    ),
}  # fmt: skip
CASES = [
    (kind, failure)
    for kind in ("lkj_corr", "cholesky", "marginal", "marginal_stats", "general")
    for failure in FAILURES
    if (kind, failure) != ("lkj_corr", "missing_jacobian")
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "failure"), CASES)
def test_wrong_pairs_disagree(kind: str, failure: str, tutorial_sim, crossed_sim) -> None:
    # lkj_corr has no Jacobian to miss: LKJCorr and Stan's corr_matrix share coordinates
    design = (crossed_sim if kind == "general" else tutorial_sim).design
    pair = get_pair(kind)
    result = crosscheck(design, program=kind, **FAILURES[failure](design, pair), **WRONG)
    assert not result.ok, result.summary()
    # smallest value measured over the cases: 1.2e-3 (docs/crosscheck.md)
    assert result.table["rel_error"].max() > 1e-4, result.table.to_string()
    if (kind, failure) == ("lkj_corr", "group_sd_5_vs_10"):
        # the shared sigs gradient differs too (d/d log s of -s^2 / (2 sd^2)); measured 3.3
        assert result.table["max_grad_error"].max() > 1e-3, result.table.to_string()


# --------------------------------------------- per-term priors reach Stan (PyStan)
#: Every family and a per-term value somewhere: a Student-t slope, half-Student-t sds of one
#: factor, an exponential residual sd (a gamma one too, below), an LKJ shape of its own.
PER_TERM = {"beta[x1]": "student_t(4, 0.5, 2)", "sigs[g]": "halfstudent_t(3, 1.5)",
            "sigs[x2|g]": "halfstudent_t(5, 0.7)", "R[g]": 3.0}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("program", ["general", "marginal_stats"])
def test_per_term_priors_reach_stan(program: str, q3_sim) -> None:
    """The programs that take any design take every prior as data: the pair agrees with
    per-term priors and with the data-scale defaults, and fails with a prior of another
    family or another scale on one term."""
    design = q3_sim.design
    priors = lmm_pymc.Priors(terms=PER_TERM, sigma="exponential(0.5)")
    gamma = lmm_pymc.Priors(terms=PER_TERM, sigma="gamma(2, 0.5)")  # shape, rate
    for p in (priors, lmm_pymc.default_priors(design), gamma):
        result = crosscheck(design, program=program, priors=p, **WRONG)
        # the same terms on both sides: rounding only (measured below 1e-12)
        assert result.ok and result.table["rel_error"].max() < 1e-9, result.summary()
    for term, other in (("beta[x1]", "normal(0.5, 2)"), ("beta[x1]", "student_t(4, 0.5, 3)"),
                        ("sigs[x2|g]", "halfnormal(0.7)")):  # fmt: skip
        wrong = lmm_pymc.Priors(terms={**PER_TERM, term: other}, sigma="exponential(0.5)")
        result = crosscheck(design, program=program, priors=priors, stan_priors=wrong, **WRONG)
        # one prior term of ~1000 in the log density: measured 5e-7 relative at worst (a
        # normal against a Student-t of the same location and scale), 50x the 1e-8 tolerance
        assert not result.ok and result.table["rel_error"].max() > 1e-7, (term, other)


# ----------------------------------------------------------- posteriors (PyStan)
@pytest.fixture(scope="module")
def cholesky_posterior(tutorial_sim):
    """A short PyMC fit of the tutorial data: 2 chains x (300 tune + 300 draws)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmm_pymc.fit(tutorial_sim, parametrization="cholesky",
                            priors=lmm_pymc.Priors.tutorial(), draws=300, tune=300,
                            chains=2, cores=1, random_seed=11, progressbar=False)  # fmt: skip


@pytest.mark.slow
def test_posterior_means_agree(tutorial_sim, cholesky_posterior) -> None:
    # tolerance 4 sqrt(mcse_pymc^2 + mcse_stan^2): a 4-sigma Monte Carlo bound per scalar
    table = compare_posteriors(tutorial_sim, "cholesky", idata=cholesky_posterior, draws=300,
                               tune=300, chains=2, seed=11)  # fmt: skip
    assert table["parameter"].tolist() == [n for n, _, _ in scalar_names(tutorial_sim.design)]
    assert list(table.columns) == ["parameter", "mean_pymc", "mean_stan", "diff", "mcse_pymc",
                                   "mcse_stan", "tolerance", "agree"]  # fmt: skip
    assert table["agree"].all(), table.to_string()


@pytest.mark.slow
def test_posterior_check_catches_a_wrong_prior(tutorial_sim, cholesky_posterior) -> None:
    # Stan with residual sd prior HalfNormal(0.2) pulls sigma (~1) far below PyMC's
    table = compare_posteriors(tutorial_sim, "cholesky", idata=cholesky_posterior,
                               stan_priors=lmm_pymc.Priors(sigma="halfnormal(0.2)"), draws=300,
                               tune=300, chains=2, seed=11)  # fmt: skip
    assert not table.set_index("parameter").loc["sigma", "agree"], table.to_string()
