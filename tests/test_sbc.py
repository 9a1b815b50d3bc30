"""Simulation-based calibration: prior draws, ranks, uniformity test, storage, Dask runner,
kill-and-resume (real SIGKILL of the driver and of a worker), real fits and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import arviz as az
import cloudpickle
import numpy as np
import pytest
from scipy import stats

from lmm_pymc import tutorial
from lmm_pymc.families import family
from lmm_pymc.priors import Priors
from lmm_pymc.sampling import SamplerConfig, SamplingWarning, diagnose
from lmm_pymc.sbc import (
    SBCConfig,
    SBCStore,
    draw_prior,
    load_sbc,
    parameter_names,
    posterior_draws,
    ranks_from_draws,
    run_one,
    run_sbc,
    simulate_from_prior,
    simulate_targets,
    uniformity_test,
)
from lmm_pymc.sbc.config import LINK_SCALE_PRIORS
from lmm_pymc.sbc.runner import fit_seed, fit_simulation

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # fake tasks reach the workers

REPO = Path(__file__).resolve().parents[1]

#: The ranked names of the default configuration, in the package's naming.
NAMES = (
    "beta[intercept]",
    "beta[x]",
    "sigma",
    "sigs[intercept|group_id]",
    "sigs[x|group_id]",
    "R[intercept|group_id, x|group_id]",
    "b_group_id[1, intercept|group_id]",
    "b_group_id[1, x|group_id]",
)


# ----------------------------------------------------------------------------- fake tasks
def fake_task(config: dict, index: int) -> dict:
    """A cheap stand-in for a fit with the same output: uniform ranks from the index's seed.

    The runner's bookkeeping (submit, write, resume) does not depend on what the fit is; the
    real-fit tests below run the fits.
    """
    cfg = SBCConfig.from_dict(config)
    truth, _ = simulate_from_prior(cfg, index)
    rng = np.random.default_rng([cfg.seed, index, 7])
    time.sleep(float(os.environ.get("FAKE_TASK_SECONDS", "0")))
    return {
        "index": index,
        "truth": truth,
        "ranks": {k: int(rng.integers(0, cfg.max_rank + 1)) for k in truth},
        "max_rank": cfg.max_rank,
        "diagnostics": {"divergences": 0, "max_r_hat": 1.0, "min_ess_bulk": 400.0},
        "seconds": 0.0,
    }


def refuse_task(config: dict, index: int) -> dict:
    raise AssertionError(f"simulation {index} was finished already and must not run again")


def kill_once_task(config: dict, index: int) -> dict:
    """SIGKILL the worker process running simulation 2, the first time only."""
    marker = Path(os.environ["KILL_MARKER"])
    if index == 2 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return fake_task(config, index)


def cheap(**changes) -> SBCConfig:
    """2 chains x 100 draws, thin 2 (ranks 0..100), PyMC's sampler: nothing to compile."""
    sampling = SamplerConfig(draws=100, tune=100, chains=2, sampler="pymc", progressbar=False)
    return SBCConfig(**{"sampling": sampling, "thin": 2, **changes})


CHEAP = cheap()


# ----------------------------------------------------------------------------- prior draws
def test_numpy_prior_draws_match_the_priors():
    priors = Priors(fixed="normal(1, 3)", sigma="halfnormal(2)", sigs="halfnormal(4)", lkj_eta=2.0)
    rng = np.random.default_rng(0)
    draws = [draw_prior(priors, rng) for _ in range(4000)]
    get = lambda k, i=None: np.array([d[k] if i is None else d[k][i] for d in draws])  # noqa: E731
    # KS at p > 1e-3 with 4000 draws: a wrong scale by 10% or a wrong eta gives p ~ 1e-10
    checks = {
        ("beta", 0): stats.norm(1.0, 3.0).cdf,
        ("beta", 1): stats.norm(1.0, 3.0).cdf,
        ("sigma", None): stats.halfnorm(scale=2.0).cdf,
        ("sigs", 0): stats.halfnorm(scale=4.0).cdf,
        ("sigs", 1): stats.halfnorm(scale=4.0).cdf,
        ("rho", None): lambda r: stats.beta(2.0, 2.0).cdf((r + 1) / 2),
    }
    for (name, i), cdf in checks.items():
        assert stats.kstest(get(name, i), cdf).pvalue > 1e-3, (name, i)
    # and the check has power: the right law with a 10% larger scale fails
    assert stats.kstest(get("sigma"), stats.halfnorm(scale=2.2).cdf).pvalue < 1e-3
    # the draws are what tutorial.parameters takes
    assert tutorial.parameters(**draws[0])["sigma"] == draws[0]["sigma"]


def test_prior_draws_keep_their_random_stream():
    """Stored SBC runs stay resumable: simulation (seed 0, index 0) of the tutorial's priors
    draws what it drew before draw_prior used Prior.draw (beta, sigma, sds, rho in order)."""
    theta = draw_prior(Priors(), np.random.default_rng(np.random.SeedSequence([0, 0])))
    assert theta == {
        "beta": (1.257302210933933, -1.3210486329130189),
        "sigs": (0.5245005857651985, 2.6783468658055547),
        "rho": -0.19184815952433887,
        "sigma": 3.20211325221641,
    }


def test_prior_draws_of_any_family():
    """Prior.draw of each family: Student-t fixed effects, exponential sds, half-t sigma."""
    priors = Priors(fixed="student_t(3, 1, 2)", sigs="exponential(2)", sigma="halfstudent_t(4, 1.5)")
    rng = np.random.default_rng(1)
    draws = [draw_prior(priors, rng) for _ in range(4000)]
    beta = np.array([d["beta"] for d in draws])
    sds = np.array([d["sigs"] for d in draws])
    sigma = np.array([d["sigma"] for d in draws])
    # KS at p > 1e-3 with 4000 draws, as above
    for column in (beta[:, 0], beta[:, 1]):
        assert stats.kstest(column, stats.t(3, loc=1.0, scale=2.0).cdf).pvalue > 1e-3
    for column in (sds[:, 0], sds[:, 1]):
        assert stats.kstest(column, stats.expon(scale=0.5).cdf).pvalue > 1e-3
    half_t = lambda x: 2.0 * stats.t(4, scale=1.5).cdf(x) - 1.0  # noqa: E731
    assert stats.kstest(sigma, half_t).pvalue > 1e-3


def test_rho_prior_matches_pymc_lkj_and_the_check_can_fail():
    """numpy's rho = 2 Beta(eta, eta) - 1 against PyMC's own LKJCorr draws."""
    import pymc as pm

    ours = np.array([draw_prior(Priors(), np.random.default_rng(i))["rho"] for i in range(3000)])
    pymc_rho = np.asarray(pm.draw(pm.LKJCorr.dist(n=2, eta=2.0), draws=3000, random_seed=1))
    pymc_rho = pymc_rho.reshape(3000, -1)[:, 0]
    wrong = np.asarray(pm.draw(pm.LKJCorr.dist(n=2, eta=0.5), draws=3000, random_seed=1))
    wrong = wrong.reshape(3000, -1)[:, 0]
    # two-sample KS, 3000 draws each: same law p > 1e-3; eta 0.5 vs 2 gives p < 1e-20
    assert stats.ks_2samp(ours, pymc_rho).pvalue > 1e-3
    assert stats.ks_2samp(ours, wrong).pvalue < 1e-3


def test_simulation_is_a_function_of_seed_and_index():
    cfg = SBCConfig(seed=3)
    t1, s1 = simulate_from_prior(cfg, 5)
    t2, s2 = simulate_from_prior(cfg, 5)
    t3, s3 = simulate_from_prior(cfg, 6)
    assert t1 == t2 and np.array_equal(s1.design.y, s2.design.y)
    assert t1 != t3 and not np.array_equal(s1.design.y, s3.design.y)
    assert tuple(t1) == parameter_names(cfg) == NAMES
    # the data follow the drawn parameters, and the truth is the simulation's own
    assert s1.truth.beta.tolist() == [t1["beta[intercept]"], t1["beta[x]"]]
    assert s1.truth.factors["group_id"].b[0, 0] == t1["b_group_id[1, intercept|group_id]"]
    assert s1.truth.factors["group_id"].R[0, 1] == t1["R[intercept|group_id, x|group_id]"]
    assert {k: v for k, v in s1.truth.by_name().items()} == {
        k: v for k, v in t1.items() if not k.startswith("b_")
    }
    # the same prior draw as draw_prior with the simulation's generator
    rng = np.random.default_rng(np.random.SeedSequence([3, 5]))
    assert draw_prior(cfg.priors, rng)["sigma"] == t1["sigma"]
    # the ranked groups are chosen by position; the design is the configured one
    t4, s4 = simulate_from_prior(SBCConfig(n_groups=4, n_per_group=2, random_effect_groups=(3,)), 0)
    assert len(s4.data) == 8 and "b_group_id[4, x|group_id]" in t4
    assert not any(k.startswith("b_group_id[1,") for k in t4)


# ----------------------------------------------------------------------------- ranks
def test_ranks_count_draws_below_truth():
    post = {
        "beta": np.arange(16.0).reshape(2, 4, 2),
        "sigs": np.stack([np.arange(8.0), -np.arange(8.0)], -1).reshape(2, 4, 2),
        "b_group_id": np.arange(8.0 * 3 * 2).reshape(2, 4, 3, 2),
    }
    terms = ["intercept|group_id", "x|group_id"]
    idata = az.from_dict(
        posterior=post,
        coords={
            "fixed_effect": ["intercept", "x"],
            "random_effect": terms,
            "group_id": [1, 2, 3],
            "group_id_effect": terms,
        },
        dims={
            "beta": ["fixed_effect"],
            "sigs": ["random_effect"],
            "b_group_id": ["group_id", "group_id_effect"],
        },
    )
    targets = {
        "beta[intercept]": ("beta", {"fixed_effect": "intercept"}, 4.0),
        "sigs[x|group_id]": ("sigs", {"random_effect": "x|group_id"}, 0.0),
        "b_group_id[2, x|group_id]": ("b_group_id", {"group_id": 2, "group_id_effect": terms[1]}),
    }
    draws = posterior_draws(idata, targets, thin=2)
    # thin=2 keeps draws 1 and 3 of each chain
    np.testing.assert_array_equal(draws["beta[intercept]"], [2.0, 6.0, 10.0, 14.0])
    np.testing.assert_array_equal(draws["sigs[x|group_id]"], [-1.0, -3.0, -5.0, -7.0])
    np.testing.assert_array_equal(draws["b_group_id[2, x|group_id]"], [9.0, 21.0, 33.0, 45.0])
    truth = {"beta[intercept]": 4.0, "sigs[x|group_id]": 0.0, "b_group_id[2, x|group_id]": 100.0}
    ranks = ranks_from_draws(truth, draws)
    assert ranks == {"beta[intercept]": 1, "sigs[x|group_id]": 4, "b_group_id[2, x|group_id]": 4}
    with pytest.raises(ValueError, match="'nope' is not in the posterior: no variable 'R'"):
        posterior_draws(idata, {"nope": ("R", {})}, thin=1)
    with pytest.raises(ValueError, match=r"'sigs\[z\]': selection .* not in the posterior"):
        posterior_draws(idata, {"sigs[z]": ("sigs", {"random_effect": "z"})}, thin=1)
    with pytest.raises(ValueError, match="leaves dims"):
        posterior_draws(idata, {"beta": ("beta", {})}, thin=1)


# ----------------------------------------------------------------------------- uniformity
def test_uniformity_test_passes_uniform_and_fails_skewed_ranks():
    rng = np.random.default_rng(42)
    uniform = rng.integers(0, 101, size=200)
    res = uniformity_test(uniform, 100)
    assert res["passed"] and res["max_ecdf_excess"] == 0.0 and res["chi2_p_value"] > 0.01
    # a posterior 20% too narrow piles ranks at both ends
    narrow = np.clip(np.round(50 + 1.25 * (uniform - 50)), 0, 100).astype(int)
    # a biased posterior shifts every rank
    shifted = np.clip(uniform + 15, 0, 100)
    for bad in (narrow, shifted):
        res = uniformity_test(bad, 100)
        assert not res["passed"] and res["max_ecdf_excess"] > 0


def test_uniformity_band_has_its_nominal_level():
    """Under uniformity the 95% simultaneous band holds in ~95% of samples."""
    rng = np.random.default_rng(0)
    passed = [uniformity_test(rng.integers(0, 100, 100), 99)["passed"] for _ in range(300)]
    # 300 trials: binomial sd of the rate is 1.3%; 0.95 +- 3.5 sd and discreteness slack
    assert 0.90 <= np.mean(passed) <= 0.995


def test_uniformity_test_errors():
    with pytest.raises(ValueError, match="ranks must lie in 0..10, found 0..11"):
        uniformity_test([0, 11], 10)
    with pytest.raises(ValueError, match="at least 2 simulations, found 1"):
        uniformity_test([3], 10)
    with pytest.raises(ValueError, match="prob must be in"):
        uniformity_test([1, 2], 10, prob=1.5)
    with pytest.raises(ValueError, match="max_rank must be a positive integer, found 0"):
        uniformity_test([0, 0], 0)


def test_config_validation_and_round_trip():
    cfg = SBCConfig(seed=4, fit_priors=Priors(fixed="normal(0, 1)"), random_effect_groups=(0, 2))
    assert SBCConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.max_rank == 2 * (500 // 5)
    assert cfg.sampling == SamplerConfig(draws=500, tune=500, chains=2, progressbar=False)
    # None is the package default for the tutorial's formula, stored resolved
    assert cfg.parametrization == "marginal"
    assert SBCConfig(parametrization="marginal") == SBCConfig()
    assert cheap(parametrization="cholesky").to_dict()["sampling"]["sampler"] == "pymc"
    assert SBCConfig(sampling={"draws": 50, "chains": 3}, thin=1).max_rank == 150
    assert SBCConfig().fit_priors == Priors()
    with pytest.raises(ValueError, match="parametrization must be one of"):
        SBCConfig(parametrization="nope")
    with pytest.raises(ValueError, match="chains must be >= 2"):
        SBCConfig(sampling=SamplerConfig(chains=1))
    with pytest.raises(ValueError, match="sampling.random_seed must be None"):
        SBCConfig(sampling=SamplerConfig(random_seed=1))
    with pytest.raises(ValueError, match=r"per-term priors: .* found terms \['beta\[x\]'\]"):
        SBCConfig(priors=Priors(terms={"beta[x]": "normal(0, 1)"}))
    assert SBCConfig(fit_priors=Priors(terms={"beta[x]": "normal(0, 1)"})).fit_priors.terms
    with pytest.raises(ValueError, match="thin must be a positive integer, found 0"):
        SBCConfig(thin=0)
    with pytest.raises(ValueError, match="thin=600 leaves no draws"):
        SBCConfig(thin=600)
    with pytest.raises(ValueError, match="n_groups must be >= 2"):
        SBCConfig(n_groups=1)
    with pytest.raises(ValueError, match=r"random_effect_groups must be group positions in 0..2"):
        SBCConfig(random_effect_groups=(3,))
    with pytest.raises(ValueError, match="unknown field"):
        SBCConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="sampler options must be among"):
        SBCConfig.from_dict({"sampling": {"draw": 1}})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SBCConfig(sampling=500), "sampling must be a lmm_pymc.SamplerConfig, found int"),
        (lambda: SBCConfig(priors=5.0), "priors must be a lmm_pymc.Priors, found float"),
        (lambda: SBCConfig(fit_priors="x"), "fit_priors must be a lmm_pymc.Priors, found str"),
        (lambda: SBCConfig(parametrization=1), "parametrization must be a string .* found int"),
        (lambda: SBCConfig(random_effect_groups=0), "must be a sequence .* found int"),
        (lambda: SBCConfig.from_dict([("seed", 1)]), "SBC config must be a mapping, found list"),
        (lambda: run_one(7, 0), "config must be a lmm_pymc.SBCConfig or its dict, found int"),
        (lambda: draw_prior({}, np.random.default_rng(0)), "priors must be a lmm_pymc.Priors"),
        (lambda: draw_prior(Priors(), 0), "rng must be a numpy.random.Generator, found int"),
    ],
)
def test_config_wrong_types_raise_type_error(make, match):
    with pytest.raises(TypeError, match=match):
        make()


def test_config_loads_no_pymc():
    """An SBCConfig is plain data: making one (the default parametrization resolved, a
    round trip through its dict) builds no design and imports neither PyMC nor PyTensor."""
    code = ("import sys; from lmm_pymc.sbc.config import SBCConfig; c = SBCConfig(); "
            "assert c.parametrization == 'marginal'; "
            "assert SBCConfig.from_dict(c.to_dict()) == c; "
            "print(sorted(m for m in ('pymc', 'pytensor', 'nutpie', 'formulae') "
            "if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stdout


# ----------------------------------------------------------------------------- storage
def test_store_atomic_write_and_corrupted_files(tmp_path):
    store = SBCStore(tmp_path)
    store.prepare(CHEAP)
    result = fake_task(CHEAP.to_dict(), 3)
    path = store.write(result)
    assert path.name == "sim_000003.json" and store.finished() == [3]
    assert not list(tmp_path.glob(".*.tmp"))
    assert store.read(3) == json.loads(json.dumps(result))

    path.write_text(path.read_text()[:40])  # truncated, as by a crash without atomic write
    with pytest.raises(ValueError, match=r"sim_000003\.json' is corrupted"):
        load_sbc(tmp_path)
    path.write_text(json.dumps({"index": 3}))
    with pytest.raises(ValueError, match=r"sim_000003\.json' is corrupted: missing key"):
        store.read(3)

    with pytest.raises(ValueError, match=r"different configuration .*'seed': \(0, 9\)"):
        SBCStore(tmp_path).prepare(cheap(seed=9))
    other = cheap(sampling=SamplerConfig(draws=200, tune=100, chains=2, sampler="pymc"))
    with pytest.raises(ValueError, match=r"'sampling.draws': \(100, 200\)"):
        run_sbc(4, tmp_path, other, workers=1, progressbar=False, task=refuse_task)


def test_runner_resumes_without_repeating(tmp_path):
    first = run_sbc(5, tmp_path, CHEAP, workers=1, window=2, progressbar=False, task=fake_task)
    assert first.n_simulations == 5
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.glob("sim_*")}
    # all five finished: a task that refuses to run proves nothing is submitted again
    again = run_sbc(5, tmp_path, progressbar=False, task=refuse_task)
    assert again.table.equals(first.table) and again.config == CHEAP
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.glob("sim_*")}
    assert after == before

    table = first.uniformity()
    assert list(table["parameter"]) == list(parameter_names(CHEAP)) == list(NAMES)
    idata = first.to_inference_data()
    assert set(idata.groups()) >= {"truth", "ranks", "sample_stats"}
    np.testing.assert_array_equal(idata.ranks["beta[x]"].values[0], first.ranks()["beta[x]"])
    assert first.plot_ecdf(tmp_path / "ecdf.png").stat().st_size > 0
    assert first.plot_histograms(tmp_path / "ranks.png").stat().st_size > 0


# ----------------------------------------------------------------------------- real kills
DRIVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import test_sbc
    from lmm_pymc.sbc import run_sbc
    run_sbc({n}, {out!r}, test_sbc.CHEAP, workers=2, window=2, progressbar=False,
            task=test_sbc.fake_task)
    """
)


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _kill_group(proc: subprocess.Popen) -> None:
    """Remove what is left of a killed driver's process group (its orphaned workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_of_the_driver_then_resume(tmp_path):
    n = 16
    script = DRIVER.format(tests=str(Path(__file__).parent), n=n, out=str(tmp_path))
    env = dict(os.environ, FAKE_TASK_SECONDS="0.5")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        _wait_for(lambda: len(SBCStore(tmp_path).finished()) >= 3, 240, "3 finished simulations")
        os.kill(proc.pid, signal.SIGKILL)  # the driver, mid-run
        proc.wait(timeout=30)
    finally:
        _kill_group(proc)
    done = SBCStore(tmp_path).finished()
    assert 3 <= len(done) < n, f"the run should have been killed mid-way, found {len(done)} done"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.glob("sim_*")}

    result = run_sbc(n, tmp_path, workers=2, progressbar=False, task=fake_task)
    assert result.n_simulations == n
    assert sorted(result.table["simulation"].unique()) == list(range(n))
    # files finished before the kill were neither rewritten nor lost
    for name, (mtime, content) in before.items():
        path = tmp_path / name
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == content
    # and every result is the one its index determines, whoever wrote it
    for i in range(n):
        assert SBCStore(tmp_path).read(i) == json.loads(json.dumps(fake_task(CHEAP.to_dict(), i)))


@pytest.mark.slow
def test_sigkill_of_a_worker_mid_task(tmp_path, monkeypatch):
    marker = tmp_path / "killed-worker.pid"
    monkeypatch.setenv("KILL_MARKER", str(marker))
    out = tmp_path / "run"
    result = run_sbc(6, out, CHEAP, workers=2, window=3, progressbar=False, task=kill_once_task)
    assert marker.exists(), "the worker running simulation 2 should have been killed"
    assert result.n_simulations == 6  # Dask restarted the worker and re-ran its task
    assert SBCStore(out).read(2) == json.loads(json.dumps(fake_task(CHEAP.to_dict(), 2)))


# ----------------------------------------------------------------------- outcome families
#: The families other than the Gaussian that SBC draws from and fits.
GLMM_FAMILIES = ("bernoulli", "binomial", "poisson", "negbinomial")


def test_config_of_each_family():
    """family/link stored by name; parametrization and simulating prior default per family;
    marginal refused beyond the Gaussian; per-term priors only for the family's alpha."""
    cfg = SBCConfig(family="negbinomial", seed=2)
    assert (cfg.family, cfg.link, cfg.parametrization) == ("negbinomial", "log", "cholesky")
    assert cfg.priors == cfg.fit_priors == LINK_SCALE_PRIORS
    assert SBCConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    probit = SBCConfig(family="bernoulli", link="probit")
    assert probit.outcome_family == family("bernoulli", "probit")
    assert SBCConfig().family == "gaussian" and SBCConfig().link == "identity"
    assert SBCConfig(family="negbinomial", priors=Priors(terms={"alpha": "exponential(2)"}))
    with pytest.raises(ValueError, match="marginal.*family 'gaussian' only"):
        SBCConfig(family="poisson", parametrization="marginal")
    with pytest.raises(ValueError, match="per-term priors"):
        SBCConfig(family="poisson", priors=Priors(terms={"alpha": "exponential(2)"}))
    with pytest.raises(ValueError, match="family"):
        SBCConfig(family="gamma")
    with pytest.raises(ValueError, match="link"):
        SBCConfig(family="negbinomial", link="identity")
    with pytest.raises(ValueError, match="trials"):
        SBCConfig(family="binomial", trials=0)


@pytest.mark.parametrize("name", ("gaussian", *GLMM_FAMILIES))
def test_each_family_ranks_its_own_parameters(name):
    """sigma for the Gaussian only, alpha for the negative binomial only; the rest as the
    Gaussian's; the outcome lies in the family's support."""
    cfg = SBCConfig(family=name, n_groups=4, trials=3)
    names = parameter_names(cfg)
    own = {"gaussian": ["sigma"], "negbinomial": ["alpha"]}.get(name, [])
    assert list(names) == [*NAMES[:2], *own, *NAMES[3:]]
    targets, sim = simulate_targets(cfg, 1)
    assert tuple(targets) == names and sim.family == cfg.outcome_family
    y = sim.data["y"].to_numpy()
    if name == "bernoulli":
        assert set(np.unique(y)) <= {0, 1}
    elif name == "binomial":
        assert (sim.data["n"] == 3).all() and ((y >= 0) & (y <= 3)).all()
    elif name != "gaussian":
        assert (y >= 0).all() and (y == np.round(y)).all()


def test_family_prior_draws():
    """alpha from the fit's default Exponential(1) or from Priors.terms; no sigma without a
    Gaussian outcome; the draws of beta, sigs and rho follow the same priors as before."""
    rng = np.random.default_rng(5)
    nb = [draw_prior(LINK_SCALE_PRIORS, rng, family("negbinomial")) for _ in range(3000)]
    assert stats.kstest([d["alpha"] for d in nb], stats.expon().cdf).pvalue > 1e-3
    assert stats.kstest([d["beta"][1] for d in nb], stats.norm(0, 0.5).cdf).pvalue > 1e-3
    assert stats.kstest([d["sigs"][0] for d in nb], stats.halfnorm(scale=0.25).cdf).pvalue > 1e-3
    own = Priors(fixed="normal(0, 0.5)", sigs="halfnormal(0.25)", terms={"alpha": "exponential(4)"})
    alpha = [draw_prior(own, rng, family("negbinomial"))["alpha"] for _ in range(3000)]
    assert stats.kstest(alpha, stats.expon(scale=0.25).cdf).pvalue > 1e-3
    theta = draw_prior(LINK_SCALE_PRIORS, rng, family("bernoulli"))
    assert set(theta) == {"beta", "sigs", "rho"}
    # the Gaussian, named or not, draws what it always drew
    seq = np.random.SeedSequence([0, 0])
    assert draw_prior(Priors(), np.random.default_rng(seq), family("gaussian")) == draw_prior(
        Priors(), np.random.default_rng(seq))


def test_family_report_of_the_benchmark(tmp_path):
    """benchmarks/sbc_validation.py's JSON summary and Markdown of a (fake) negative
    binomial run: its parameters, alpha among them, and the bars of the names escaped."""
    from benchmarks.common import machine_facts
    from benchmarks.sbc_validation import markdown, summary

    cfg = cheap(family="negbinomial")
    store = SBCStore(tmp_path)
    store.prepare(cfg)
    for i in range(12):
        store.write(fake_task(cfg.to_dict(), i))
    run = summary(load_sbc(tmp_path), 3.0)
    assert (run["n_simulations"], run["family"], run["link"]) == (12, "negbinomial", "log")
    assert [row["parameter"] for row in run["uniformity"]] == list(parameter_names(cfg))
    assert json.loads(json.dumps(run)) == run
    facts = machine_facts((0.0, 0.0, 0.0))
    text = markdown({"calibrated": run}, "python benchmarks/sbc_validation.py", facts)
    assert "| alpha | " in text and "sigs[x\\|group_id]" in text and "| sigma |" not in text


# ----------------------------------------------------------------------------- real fits
@pytest.mark.slow
@pytest.mark.parametrize("parametrization", ["marginal", "cholesky"])
def test_run_one_real_fit_ranks_the_package_names(parametrization):
    """One real nutpie fit per parametrization, both through lmm_pymc.fit (marginal draws b
    exactly afterwards): every quantity is ranked under its package name, and its rank is
    the number of the fit's thinned draws below the simulation's true value."""
    pytest.importorskip("nutpie")
    sampling = SamplerConfig(draws=100, tune=100, chains=2, progressbar=False)
    cfg = SBCConfig(parametrization=parametrization, sampling=sampling, thin=2)
    res = run_one(cfg.to_dict(), 0)
    assert tuple(res["ranks"]) == tuple(res["truth"]) == NAMES
    assert res["max_rank"] == cfg.max_rank == 100
    # the same simulation fitted again (seeded by (seed, index): the same draws, and the
    # compiled model reused, so ~1 s): the ranks count its draws below the truth exactly
    targets, sim = simulate_targets(cfg, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # short chains; compared below
        idata = fit_simulation(cfg, sim, fit_seed(cfg.seed, 0))
    draws = posterior_draws(idata, targets, cfg.thin)
    assert res["truth"] == {name: value for name, (_, _, value) in targets.items()}
    assert all(len(d) == 100 for d in draws.values())  # 2 chains x (100 // 2) draws
    assert res["ranks"] == {n: int(np.sum(draws[n] < res["truth"][n])) for n in NAMES}
    # the diagnostics recorded are this fit's
    diag = diagnose(idata, warn=False)
    assert res["diagnostics"] == {"divergences": diag.divergences, "max_r_hat": diag.max_r_hat,
                                  "min_ess_bulk": diag.min_ess_bulk}  # fmt: skip


def _cli_args(out: Path) -> list[str]:
    # one worker: one compile per invocation; 2 chains x 100 draws, thin 2 -> ranks 0..100
    return ["sbc", "--simulations", "4", "--workers", "1", "--out", str(out), "--draws", "100",
            "--tune", "100", "--thin", "2", "--parametrization", "cholesky",
            "--no-progress"]  # fmt: skip


CLI_DRIVER = "import sys\nfrom lmm_pymc.cli import main\nsys.exit(main({args!r}))\n"


@pytest.mark.slow
def test_cli_real_fits_killed_and_resumed(tmp_path, capsys):
    """`lmm-pymc sbc` with real fits (nutpie, compiled once per worker process): SIGKILL of
    the driver after the first result, then resume; the results are those of a run that
    was never interrupted."""
    pytest.importorskip("nutpie", reason="the SBC default sampler is nutpie")
    out = tmp_path / "sbc"
    args = _cli_args(out)
    log = open(tmp_path / "driver.log", "w")  # a file: a pipe nobody reads could block
    command = [sys.executable, "-c", CLI_DRIVER.format(args=args)]
    proc = subprocess.Popen(
        command, cwd=REPO, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        # stop waiting early if the driver exits (an error): its log says why
        first_fit = lambda: len(SBCStore(out).finished()) >= 1 or proc.poll() is not None  # noqa: E731
        _wait_for(first_fit, 420, "the first real fit")
        assert proc.poll() is None, (tmp_path / "driver.log").read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _kill_group(proc)
        log.close()
    first = {p.name: p.read_bytes() for p in out.glob("sim_*")}
    assert 1 <= len(first) < 4, (tmp_path / "driver.log").read_text()

    from lmm_pymc.cli import main

    assert main(args) == 0, capsys.readouterr().out
    for name, content in first.items():
        assert (out / name).read_bytes() == content
    result = load_sbc(out)
    assert result.n_simulations == 4 and result.config.max_rank == 100
    assert result.config.parametrization == "cholesky"
    assert result.parameters == list(NAMES)
    assert result.table["rank"].between(0, 100).all()
    # a simulation run after the resume is the one its index determines: the same as
    # run_one here, in another process, never interrupted
    later = max(set(range(4)) - {int(n[len("sim_") : -len(".json")]) for n in first})
    again = run_one(result.config, later)
    stored = SBCStore(out).read(later)
    assert (stored["truth"], stored["ranks"]) == (again["truth"], again["ranks"])
    for name in ("ranks.csv", "ecdf.png", "ranks.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_miscalibrated_pair_is_detected(tmp_path):
    """Simulate with beta ~ Normal(0, 10), fit with Normal(0, 0.5), 10 real fits on Dask:
    the same uniformity test that the calibrated 200-simulation run passes
    (benchmarks/sbc_validation.py) must fail, for the fixed effects.

    ``cholesky``, the parametrization of that calibrated run, so the two differ in the
    fitted prior alone; the default ``marginal``'s fits are tested by
    test_run_one_real_fit_ranks_the_package_names."""
    pytest.importorskip("nutpie", reason="the SBC default sampler is nutpie")
    sampling = SamplerConfig(draws=100, tune=100, chains=2, progressbar=False)
    wrong = SBCConfig(parametrization="cholesky", sampling=sampling, thin=2,
                      fit_priors=Priors(fixed="normal(0, 0.5)"), seed=1)  # fmt: skip
    result = run_sbc(10, tmp_path, wrong, workers=1, progressbar=False)
    table = result.uniformity(prob=0.95).set_index("parameter")
    assert not table["passed"].all()
    assert not table.loc["beta[intercept]", "passed"] and not table.loc["beta[x]", "passed"]


def _family_config(name: str, **changes) -> SBCConfig:
    """A small design of ``name`` for real fits: 6 groups x 8 rows, 2 chains x 100 draws
    after 150 tuning steps, thin 2 (ranks 0..100), nutpie (one compile per family). Too
    few tuning steps for calibrated ranks (a Poisson chain started far in the sds' tail
    stays there at 300; benchmarks/sbc_validation.py --family tunes 1000): these fits
    check the runner's plumbing per family, and the uniformity of the ranks is left to
    the benchmark (one family's 200 simulations take many minutes on 2 cores)."""
    sampling = SamplerConfig(draws=100, tune=150, chains=2, progressbar=False)
    return SBCConfig(**{"family": name, "n_groups": 6, "n_per_group": 8, "sampling": sampling,
                        "thin": 2, "trials": 4, **changes})  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", GLMM_FAMILIES)
def test_run_one_real_fit_of_each_family(name):
    """One real fit of each family through the runner: the family's parameters ranked
    (alpha for the negative binomial, no sigma), ranks in 0..L, the fit's own family."""
    pytest.importorskip("nutpie")
    cfg = _family_config(name)
    res = run_one(cfg.to_dict(), 0)
    assert tuple(res["ranks"]) == tuple(res["truth"]) == parameter_names(cfg)
    assert ("alpha" in res["ranks"]) == (name == "negbinomial") and "sigma" not in res["ranks"]
    assert res["max_rank"] == cfg.max_rank == 100
    assert all(0 <= r <= 100 for r in res["ranks"].values())
    _, sim = simulate_targets(cfg, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        idata = fit_simulation(cfg, sim, fit_seed(cfg.seed, 0))
    assert (idata.attrs["family"], idata.attrs["link"]) == (cfg.family, cfg.link)
    assert ("alpha" in idata.posterior) == (name == "negbinomial")
    assert "sigma" not in idata.posterior

