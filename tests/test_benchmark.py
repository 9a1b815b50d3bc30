"""The benchmark script's plan, child control and availability checks, and the ESS of a
run's draws (no sampling: the runs are the script's own job). Its report:
tests/test_benchmark_report.py; the peers' runners: tests/test_benchmark_peers.py."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import benchmark as bench
from benchmarks.peers import CONFIGS, r
from benchmarks.peers.stan import stan_posterior


def _args(**over):
    args = argparse.Namespace(
        sizes=list(bench.SIZES),
        configs=list(CONFIGS),
        draws=1000,
        tune=1000,
        slow_draws=dict(bench.SLOW_DRAWS),
    )
    for k, v in over.items():
        setattr(args, k, v)
    return args


def test_plan_scales_slow_baselines_and_bounds_stan_where_not_run():
    plan = bench._plan(_args(slow_draws={"small": 1000, "medium": 200, "large": 0}))
    by = {(c, z): (d, t, b) for c, z, d, t, b in plan}
    assert by[("stan", "small")] == (1000, 1000, False)
    assert by[("pymc_cholesky", "medium")] == (200, 200, False)
    assert by[("default", "medium")] == (1000, 1000, False)  # the fast ones: full draws
    assert by[("stan", "large")] == (1000, 1000, True)  # bound from the gradient's cost
    assert ("pymc_lkj_corr", "large") not in by
    assert by[("default", "large")] == (1000, 1000, False)


def test_slow_draws_parser():
    assert bench._slow_draws("medium=300")["medium"] == 300
    assert bench._slow_draws("medium=300")["small"] == bench.SLOW_DRAWS["small"]
    with pytest.raises(argparse.ArgumentTypeError, match="found 'huge=3'"):
        bench._slow_draws("huge=3")


def test_stan_draws_get_the_package_names_and_the_checked_ess_set():
    import arviz as az

    from lmm_pymc import simulate

    sim = simulate(seed=2024)
    rng = np.random.default_rng(0)
    chains, draws = 2, 60
    rho = rng.uniform(-0.9, 0.9, (chains, draws))
    R = np.ones((chains, draws, 2, 2))
    R[..., 0, 1] = R[..., 1, 0] = rho
    stan = {
        "alpha_0": rng.normal(6.0, 1.0, (chains, draws)),
        "beta_0": np.cumsum(rng.normal(size=(chains, draws)), axis=1),  # poorly mixed
        "sigma_g": rng.gamma(5.0, 0.2, (chains, draws)),
        "sigs": rng.gamma(5.0, 0.5, (chains, draws, 2)),
        "R": R,
    }
    post = stan_posterior(stan, sim.design)
    assert np.array_equal(post["beta"].sel(fixed_effect="intercept").values, stan["alpha_0"])
    assert np.array_equal(post["beta"].sel(fixed_effect="x").values, stan["beta_0"])
    assert np.array_equal(post["sigma"].values, stan["sigma_g"])
    assert list(post["sigs"].coords["random_effect"].values) == list(sim.design.terms)

    min_ess, per = bench._min_ess(post, sim.truth)
    assert list(per) == [
        "beta[intercept]",
        "beta[x]",
        "sigma",
        "sigs[intercept|group_id]",
        "sigs[x|group_id]",
        "R[intercept|group_id, x|group_id]",
    ]
    # R's off-diagonal, not its constant diagonal, is what enters
    assert per["R[intercept|group_id, x|group_id]"] == pytest.approx(
        float(az.ess(rho, method="bulk"))
    )
    assert min_ess == min(per.values()) == per["beta[x]"]


def test_plan_runs_the_peers_as_slow_baselines_bounds_them_and_fits_lme4_once():
    plan = bench._plan(_args(slow_draws={"small": 1000, "medium": 200, "large": 0}))
    by = {(c, z): (d, t, b) for c, z, d, t, b in plan}
    assert by[("brms", "medium")] == by[("stan_cholesky", "medium")] == (200, 200, False)
    assert by[("brms", "large")] == by[("stan_cholesky", "large")] == (1000, 1000, True)
    assert by[("lme4", "large")] == (0, 0, False)  # a maximum-likelihood fit: no draws


def _without_r(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "Rscript" else real(name))


def test_without_r_the_report_names_the_skipped_peers_and_why(monkeypatch, tmp_path):
    _without_r(monkeypatch)
    missing, versions = bench.unavailable(list(CONFIGS))
    assert set(missing) >= {"brms", "lme4"} and versions == ""
    assert "Rscript not found" in missing["brms"] and "setup_peers.sh" in missing["brms"]

    # the whole driver without R: nothing to run, a report that says what was skipped
    out = tmp_path / "peers"
    assert bench.main(["--quick", "--configs", "brms", "lme4", "--out", str(out)]) == 0
    text = out.with_suffix(".md").read_text()
    header = text.split("| size |")[0]
    assert "**Peers skipped** (on every size)" in header
    assert f"{CONFIGS['brms'][0]}: Rscript not found on the PATH" in header
    assert f"{CONFIGS['lme4'][0]}: Rscript not found on the PATH" in header
    assert "Command: `python benchmarks/benchmark.py --quick" in header
    assert "load average (1 min) at the start" in header and "Machine: " in header
    meta = json.loads(out.with_suffix(".json").read_text())["meta"]
    assert set(meta["peers_skipped"]) == {"brms", "lme4"}


def test_r_without_brms_names_the_missing_package(monkeypatch):
    monkeypatch.setattr(r, "r_packages", lambda names: (True, {"lme4"}, "lme4 1.1.31"))
    missing, versions = bench.unavailable(["brms", "lme4", "default"])
    assert list(missing) == ["brms"] and "R package brms not installed" in missing["brms"]
    assert versions == "lme4 1.1.31"


def test_a_run_past_its_time_limit_is_stopped_with_its_workers(tmp_path, monkeypatch):
    # a stand-in for one run: it starts a worker (as PyStan and rstan do) and outlives the limit
    worker_pid = tmp_path / "worker.pid"
    script = tmp_path / "run.sh"
    script.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {worker_pid}\nsleep 60\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(script))
    args = argparse.Namespace(chains=4, seed=1, stan_cold=False, timeout=1.0)
    record = bench._run_child(args, "default", "small", 10, 10, False)
    assert record["error"] == "stopped after the time limit of 1 s"
    pid = int(worker_pid.read_text())
    for _ in range(50):  # the worker is gone (or a zombie waiting for init) within a moment
        state = Path(f"/proc/{pid}/stat")
        if not state.exists() or state.read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the run's worker {pid} still runs after the run was stopped")
