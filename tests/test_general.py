"""General models: structure, parity with the core, the Stan cross-check, recovery, CLI."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import lmm_pymc
from lmm_pymc.cli import main
from lmm_pymc.formula import design_from_formula
from lmm_pymc.general import simulate_from_formula
from lmm_pymc.general_models import build_general_model, fit_formula
from lmm_pymc.general_recovery import general_recovery_table
from lmm_pymc.priors import Priors

TUTORIAL = "y ~ 1 + x + (1 + x | group_id)"
Q3 = "y ~ 1 + x1 + x2 + x3 + (1 + x1 + x2 | g)"
CROSSED = "rt ~ 1 + cond + (1 + cond | subject) + (1 + cond | item)"
R3 = [[1.0, 0.4, 0.2], [0.4, 1.0, -0.3], [0.2, -0.3, 1.0]]


@pytest.fixture(scope="module")
def q3_sim():
    """30 groups x 12 rows, 4 fixed effects, q = 3 correlated random effects."""
    rng = np.random.default_rng(11)
    n = 30 * 12
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "x3": rng.normal(size=n),
            "g": np.repeat([f"g{i:02d}" for i in range(30)], 12),
        }
    )
    return simulate_from_formula(Q3, df, beta=[1.0, 0.5, -0.5, 0.3],
                                 groups={"g": {"sigmas": [1.0, 0.7, 0.5], "R": R3}},
                                 sigma=0.5, seed=3)  # fmt: skip


@pytest.fixture(scope="module")
def crossed_sim():
    """24 subjects x 16 items fully crossed, correlated intercepts and slopes for both."""
    rng = np.random.default_rng(11)
    subj, item = np.repeat(np.arange(24), 16), np.tile(np.arange(16), 24)
    df = pd.DataFrame(
        {
            "subject": [f"s{i}" for i in subj],
            "item": [f"i{i}" for i in item],
            "cond": rng.choice([-0.5, 0.5], size=subj.size),
        }
    )
    groups = {"subject": {"sigmas": [1.0, 0.6], "rho": 0.5},
              "item": {"sigmas": [0.7, 0.4], "rho": -0.4}}  # fmt: skip
    return simulate_from_formula(CROSSED, df, beta=[2.0, 0.5], groups=groups, sigma=0.5, seed=3)


# ------------------------------------------------------------------------- structure
def test_structure_names_and_coords(crossed_sim):
    model = build_general_model(crossed_sim.design)
    free = sorted(v.name for v in model.free_RVs)
    assert free == ["beta", "chol_cov_item", "chol_cov_subject", "sigma_g", "z_item", "z_subject"]
    assert list(model.coords["random_effect"]) == [
        "intercept|subject", "cond|subject", "intercept|item", "cond|item"]  # fmt: skip
    assert list(model.coords["fixed_effect"]) == ["intercept", "cond"]
    assert model.named_vars_to_dims["b_subject"] == ("subject", "subject_effect")
    assert model.named_vars_to_dims["R"] == ("random_effect", "random_effect_")


def test_uncorrelated_and_lkj_corr_variants(q3_sim):
    d = design_from_formula("y ~ x1 + (1 + x1 || g)", q3_sim.data)
    free = sorted(v.name for v in build_general_model(d).free_RVs)
    assert free == ["beta", "sigma_g", "sigs_g", "z_g"]
    free = sorted(v.name for v in build_general_model(d, "lkj_corr").free_RVs)
    assert free == ["b_g", "beta", "sigma_g", "sigs_g"]
    d2 = design_from_formula("y ~ x1 + (1 + x1 | g)", q3_sim.data)
    free = sorted(v.name for v in build_general_model(d2, "lkj_corr").free_RVs)
    assert free == ["R_upper_g", "b_g", "beta", "sigma_g", "sigs_g"]


def test_lkj_corr_refused_beyond_q2(q3_sim):
    with pytest.raises(ValueError, match=r"limited to q <= 2 .* found \['g \(q = 3\)'\]"):
        build_general_model(q3_sim.design, "lkj_corr")
    with pytest.raises(ValueError, match=r"parametrization must be one of .* found 'centred'"):
        build_general_model(q3_sim.design, "centred")
    no_y = dataclasses.replace(q3_sim.design, y=None)
    with pytest.raises(ValueError, match="found y=None"):
        build_general_model(no_y)


# ------------------------------------------------------------ parity with the core
@pytest.mark.slow
@pytest.mark.parametrize("parametrization", ["cholesky", "lkj_corr"])
def test_tutorial_formula_log_density_equals_array_path(parametrization):
    sim = lmm_pymc.simulate(seed=3, group_labels=["c", "a", "b"])
    core = lmm_pymc.build_model(sim.design, parametrization)
    general = build_general_model(design_from_formula(TUTORIAL, sim.data), parametrization)
    lp_core, lp_general = core.compile_logp(), general.compile_logp()
    # core value variable -> general value variable (alpha_0, beta_0 -> beta)
    rename = {
        "sigma_g_log__": "sigma_g_log__",
        "chol_cov_cholesky-cov-packed__": "chol_cov_group_id_cholesky-cov-packed__",
        "z": "z_group_id",
        "sigs_log__": "sigs_group_id_log__",
        "R_upper_interval__": "R_upper_group_id_interval__",
        "random_group": "b_group_id",
    }
    rng = np.random.default_rng(1)
    for _ in range(4):
        point = {k: v + rng.normal(0.0, 0.3, np.shape(v)) for k, v in core.initial_point().items()}
        mapped = {rename[k]: v for k, v in point.items() if k in rename}
        mapped["beta"] = np.array([point["alpha_0"], point["beta_0"]])
        # rtol=1e-12: the same terms, summed in another order
        np.testing.assert_allclose(lp_general(mapped), lp_core(point), rtol=1e-12)
    # and a different model (other prior) is told apart at the same points
    other = build_general_model(design_from_formula(TUTORIAL, sim.data), parametrization,
                                priors=Priors(fixed_sd=3.0)).compile_logp()  # fmt: skip
    assert abs(other(mapped) - lp_core(point)) > 1.0


# --------------------------------------------------------- integrated-out fast path
def test_marginal_needs_one_factor(crossed_sim):
    with pytest.raises(
        ValueError, match=r"exactly one grouping factor, found \['subject', 'item'\]"
    ):
        build_general_model(crossed_sim.design, "marginal")


@pytest.mark.slow
def test_marginal_loglik_equals_dense_mvnormal(q3_sim):
    from lmm_pymc.general_marginal import (
        general_group_statistics,
        general_marginal_loglik,
        general_marginal_loglik_numpy,
    )

    stats = general_group_statistics(q3_sim.design)
    L = np.linalg.cholesky(q3_sim.truth.factors["g"].Sigma)
    beta = q3_sim.truth.beta + 0.1
    fast = general_marginal_loglik(stats, beta, 0.6, L).eval()
    dense = general_marginal_loglik_numpy(q3_sim.design, beta, 0.6, L @ L.T)
    # rtol=1e-9: Woodbury + sums vs a dense 12 x 12 Cholesky per group, both exact
    np.testing.assert_allclose(fast, dense, rtol=1e-9)
    wrong = general_marginal_loglik(stats, beta, 0.6, L.T).eval()  # Sigma = L'L: wrong model
    assert np.max(np.abs(wrong - dense)) > 1e-2


@pytest.mark.slow
def test_marginal_tutorial_equals_core_marginal():
    sim = lmm_pymc.simulate(seed=3, n_groups=5, group_labels=list("edcba"))
    core = lmm_pymc.build_model(sim.design, "marginal")
    general = build_general_model(design_from_formula(TUTORIAL, sim.data), "marginal")
    lp_core, lp_general = core.compile_logp(), general.compile_logp()
    rng = np.random.default_rng(0)
    for _ in range(3):
        point = {k: v + rng.normal(0.0, 0.3, np.shape(v)) for k, v in core.initial_point().items()}
        mapped = {
            "beta": np.array([point["alpha_0"], point["beta_0"]]),
            "sigma_g_log__": point["sigma_g_log__"],
            "chol_cov_group_id_cholesky-cov-packed__": point["chol_cov_cholesky-cov-packed__"],
        }
        # rtol=1e-10: the same marginal likelihood, 2 x 2 closed form vs batched Cholesky
        np.testing.assert_allclose(lp_general(mapped), lp_core(point), rtol=1e-10)


# ------------------------------------------------------------------ Stan cross-check
@pytest.mark.slow
def test_stan_crosscheck_q3_and_crossed_and_a_wrong_model(q3_sim, crossed_sim):
    pytest.importorskip("stan", reason="PyStan (optional extra lmm_pymc[stan]) not installed")
    from lmm_pymc.general_stan import crosscheck_general

    # tolerance: rtol 1e-9 of |log p| (both sides are exact double sums; seen ~1e-12)
    for sim in (q3_sim, crossed_sim):
        result = crosscheck_general(sim.design, n_points=5, seed=1)
        assert result.ok, result.summary()
        assert result.max_abs_deviation < 1e-8
    # a deliberately wrong PyMC model must be caught: another LKJ eta ...
    wrong_prior = build_general_model(crossed_sim.design, priors=Priors(lkj_eta=1.0))
    result = crosscheck_general(crossed_sim.design, model=wrong_prior, n_points=5, seed=1)
    assert not result.ok and result.max_abs_deviation > 1e-3
    # ... and rows assigned to the wrong subjects
    d = crossed_sim.design
    shifted = dataclasses.replace(d.factors[0], index=np.roll(d.factors[0].index, 1))
    wrong_design = dataclasses.replace(d, factors=(shifted, *d.factors[1:]))
    result = crosscheck_general(d, model=build_general_model(wrong_design), n_points=5, seed=1)
    assert not result.ok and result.max_grad_error > 1e-3


# ------------------------------------------------------------------------- recovery
def _check_recovery(idata, sim) -> pd.DataFrame:
    table = general_recovery_table(idata, sim.truth, hdi_prob=0.99).set_index("parameter")
    # 2 chains x 500 draws: r_hat below 1.05 (the 1.01 rule needs more draws than CI has)
    assert (table["r_hat"] < 1.05).all(), table
    # fixed effects and residual sd: the generating value inside the 99% HDI
    fixed = [p for p in table.index if p.startswith("beta[")] + ["sigma_g"]
    assert table.loc[fixed, "covered"].all(), table.loc[fixed]
    # group sds and correlations: the data identify the *realised* random effects, whose
    # sample sd differs from the generating sd by ~1/sqrt(2 J) (13 % for J = 30); their
    # realised values must lie inside the 99% HDI
    for f in sim.design.factors:
        b = sim.truth.factors[f.name].b
        sd, corr = b.std(axis=0, ddof=1), np.corrcoef(b.T)
        for k, term in enumerate(f.terms):
            row = table.loc[f"sigs[{term}]"]
            assert row.hdi_low <= sd[k] <= row.hdi_high, (term, sd[k], row)
            for m in range(k + 1, f.q):
                row = table.loc[f"R[{term}, {f.terms[m]}]"]
                assert row.hdi_low <= corr[k, m] <= row.hdi_high, (term, corr[k, m], row)
    return table


def _fit(sim, formula):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm_pymc.SamplingWarning)
        return fit_formula(formula, sim.data, sampler="nutpie", draws=500, tune=500, chains=2,
                           target_accept=0.9, random_seed=1, progressbar=False)  # fmt: skip


@pytest.mark.slow
def test_recovery_q3_correlated_slopes(q3_sim):
    pytest.importorskip("nutpie", reason="nutpie (optional extra lmm_pymc[nutpie]) not installed")
    idata = _fit(q3_sim, Q3)
    table = _check_recovery(idata, q3_sim)
    assert len(table) == 4 + 1 + 3 + 3
    assert idata.attrs["formula"] == Q3


@pytest.mark.slow
def test_recovery_crossed_subjects_and_items(crossed_sim):
    pytest.importorskip("nutpie", reason="nutpie (optional extra lmm_pymc[nutpie]) not installed")
    idata = _fit(crossed_sim, CROSSED)
    _check_recovery(idata, crossed_sim)
    assert idata.posterior["b_item"].dims[2:] == ("item", "item_effect")


# ------------------------------------------------------------------------------ CLI
def test_cli_formula_errors(tmp_path, capsys):
    csv = tmp_path / "d.csv"
    pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 3.0], "g": ["a", "b", "a"]}).to_csv(
        csv, index=False
    )
    assert main(["fit", str(csv), "--formula", "y ~ x + (1 + w | g)"]) == 2
    assert "random slope on 'w'" in capsys.readouterr().err
    assert main(["fit", str(csv), "--formula", "y ~ x + (1 + x | g"]) == 2
    assert "could not be parsed by formulae" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_fit_formula(tmp_path, capsys, crossed_sim):
    csv = tmp_path / "crossed.csv"
    crossed_sim.data.to_csv(csv, index=False)
    nc = tmp_path / "post.nc"
    code = main(["fit", str(csv), "--formula", "rt ~ 1 + cond + (1 | subject) + (1 | item)",
                 "--draws", "100", "--tune", "100", "--chains", "1", "--no-progress",
                 "--out", str(nc)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0 and nc.exists()
    assert "beta[cond]" in captured.out and "sigs[intercept|item]" in captured.out
