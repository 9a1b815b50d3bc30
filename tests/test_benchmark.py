"""The benchmark script's plan, names and report (no sampling: the runs are the script's
own job)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(bench, **over):
    args = argparse.Namespace(
        sizes=list(bench.SIZES),
        configs=list(bench.CONFIGS),
        draws=1000,
        tune=1000,
        slow_draws=dict(bench.SLOW_DRAWS),
    )
    for k, v in over.items():
        setattr(args, k, v)
    return args


def test_plan_scales_slow_baselines_and_bounds_stan_where_not_run(bench):
    plan = bench._plan(_args(bench, slow_draws={"small": 1000, "medium": 200, "large": 0}))
    by = {(c, z): (d, t, b) for c, z, d, t, b in plan}
    assert by[("stan", "small")] == (1000, 1000, False)
    assert by[("pymc_cholesky", "medium")] == (200, 200, False)
    assert by[("default", "medium")] == (1000, 1000, False)  # the fast ones: full draws
    assert by[("stan", "large")] == (1000, 1000, True)  # bound from the gradient's cost
    assert ("pymc_lkj_corr", "large") not in by
    assert by[("default", "large")] == (1000, 1000, False)


def test_slow_draws_parser(bench):
    assert bench._slow_draws("medium=300")["medium"] == 300
    assert bench._slow_draws("medium=300")["small"] == bench.SLOW_DRAWS["small"]
    with pytest.raises(argparse.ArgumentTypeError, match="found 'huge=3'"):
        bench._slow_draws("huge=3")


def _record(config, size, ess_s, **extra):
    return {
        "config": config,
        "label": config,
        "size": size,
        "n_rows": 30,
        "chains": 4,
        "draws": 1000,
        "tune": 1000,
        "compile_s": 1.0,
        "sampling_s": 2.0,
        "divergences": 0,
        "steps_per_draw": 7.0,
        "min_ess_bulk": 100.0,
        "ess_per_s_sampling": ess_s,
        "ess_per_s_end_to_end": None if ess_s is None else ess_s / 2,
        "end_to_end_full_s": 3.0,
        "peak_rss_mb": 500.0,
        **extra,
    }


def test_markdown_marks_bounds_and_failures(bench):
    records = [
        _record("stan", "large", 10.0, bound=True, divergences=None, note="n"),
        _record("default", "large", 2000.0, ratio_sampling=200.0, stan_is_bound=True),
        {"config": "pymc_lkj_corr", "label": "x", "size": "small", "error": "stopped"},
    ]
    text = bench.markdown(records, "cmd", ["PyMC NUTS, lkj_corr on large"])
    stan_row = next(
        line for line in text.splitlines() if line.startswith("| large") and "bound" in line
    )
    assert "<= 10.0" in stan_row and ">= 2.0" in stan_row  # ESS/s upper, time lower bound
    default_row = next(line for line in text.splitlines() if "| default" in line)
    assert "| >= 200 | - |" in default_row  # a ratio to a bound is a lower bound
    assert "failed: stopped" in text
    assert "Not run (0 slow draws on that size): PyMC NUTS, lkj_corr on large." in text
    assert "R[intercept|group_id, x|group_id]" in text  # the ESS set, in the package's names


def test_stan_draws_get_the_package_names_and_the_checked_ess_set(bench):
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
    post = bench._stan_posterior(stan, sim.design)
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


def test_plan_runs_the_peers_as_slow_baselines_bounds_them_and_fits_lme4_once(bench):
    plan = bench._plan(_args(bench, slow_draws={"small": 1000, "medium": 200, "large": 0}))
    by = {(c, z): (d, t, b) for c, z, d, t, b in plan}
    assert by[("brms", "medium")] == by[("stan_cholesky", "medium")] == (200, 200, False)
    assert by[("brms", "large")] == by[("stan_cholesky", "large")] == (1000, 1000, True)
    assert by[("lme4", "large")] == (0, 0, False)  # a maximum-likelihood fit: no draws


def _without_r(bench, monkeypatch):
    real = bench.shutil.which
    monkeypatch.setattr(
        bench.shutil, "which", lambda name: None if name == "Rscript" else real(name)
    )


def test_without_r_the_report_names_the_skipped_peers_and_why(bench, monkeypatch, tmp_path):
    _without_r(bench, monkeypatch)
    missing, versions = bench.unavailable(list(bench.CONFIGS))
    assert set(missing) >= {"brms", "lme4"} and versions == ""
    assert "Rscript not found" in missing["brms"] and "setup_peers.sh" in missing["brms"]

    # the whole driver without R: nothing to run, a report that says what was skipped
    out = tmp_path / "peers"
    assert bench.main(["--quick", "--configs", "brms", "lme4", "--out", str(out)]) == 0
    text = out.with_suffix(".md").read_text()
    header = text.split("| size |")[0]
    assert "**Peers skipped** (on every size)" in header
    assert f"{bench.CONFIGS['brms'][0]}: Rscript not found on the PATH" in header
    assert f"{bench.CONFIGS['lme4'][0]}: Rscript not found on the PATH" in header
    assert "Command: `python benchmarks/benchmark.py --quick" in header
    assert "load average (1 min) at the start" in header and "Machine: " in header
    meta = json.loads(out.with_suffix(".json").read_text())["meta"]
    assert set(meta["peers_skipped"]) == {"brms", "lme4"}


def test_r_without_brms_names_the_missing_package(bench, monkeypatch):
    monkeypatch.setattr(bench, "_r_packages", lambda names: (True, {"lme4"}, "lme4 1.1.31"))
    missing, versions = bench.unavailable(["brms", "lme4", "default"])
    assert list(missing) == ["brms"] and "R package brms not installed" in missing["brms"]
    assert versions == "lme4 1.1.31"


def test_best_bayesian_peer_is_taken_per_size_and_per_measure(bench):
    records = [
        _record("brms", "small", 20.0, ess_per_s_end_to_end=2.0),
        _record("stan_cholesky", "small", 10.0, ess_per_s_end_to_end=4.0),
        _record("stan", "small", 5.0),
        _record("default", "small", 1000.0, ess_per_s_end_to_end=100.0),
        _record("lme4", "small", None, min_ess_bulk=None, compile_s=None, divergences=None),
        # large: both peers bounds (upper bounds on their ESS/s)
        _record("brms", "large", 30.0, bound=True),
        _record("stan_cholesky", "large", 15.0, bound=True),
        _record("default", "large", 300.0, ess_per_s_end_to_end=60.0),
        {"config": "stan_cholesky", "label": "x", "size": "medium", "error": "stopped"},
        _record("default", "medium", 300.0),
    ]
    bench.add_ratios(records)
    by = {(r["config"], r["size"]): r for r in records}
    small = by[("default", "small")]
    assert small["best_peer_sampling"] == "brms"  # the faster one on ESS/s of sampling
    assert small["peer_ratio_sampling"] == pytest.approx(50.0)
    assert small["best_peer_end_to_end"] == "stan_cholesky"  # and on ESS/s end-to-end
    assert small["peer_ratio_end_to_end"] == pytest.approx(25.0)
    assert small["ratio_sampling"] == pytest.approx(200.0)  # x the tutorial's Stan
    assert by[("stan_cholesky", "small")]["peer_ratio_sampling"] == pytest.approx(0.5)
    assert "peer_ratio_sampling" not in by[("lme4", "small")]  # no ESS: no ratio

    large = by[("default", "large")]
    assert large["best_peer_sampling"] == "brms" and large["best_peer_sampling_is_bound"]
    assert large["peer_ratio_sampling"] == pytest.approx(10.0)
    assert large["peer_ratio_end_to_end"] == pytest.approx(4.0)
    assert "peer_ratio_sampling" not in by[("default", "medium")]  # the peer failed

    text = bench.markdown(records, "cmd", [])
    row = next(ln for ln in text.splitlines() if ln.startswith("| large") and "| default" in ln)
    assert "| >= 10.00 | >= 4.00 |" in row  # a ratio to a bound is a lower bound
    row = next(ln for ln in text.splitlines() if ln.startswith("| small") and "| default" in ln)
    assert "| 50.00 | 25.00 |" in row
    assert "x best Bayesian peer (ESS/s sampling)" in text
    assert "small: best Bayesian peer on ESS/s of sampling: brms" in text
    row = next(ln for ln in text.splitlines() if "| lme4" in ln)
    assert "| ML fit | - |" in row


def test_brms_draws_get_the_package_names(bench):
    import pandas as pd

    from lmm_pymc import simulate

    sim = simulate(seed=2024)
    chains, draws = 2, 5
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {name: rng.normal(size=chains * draws) for name in bench.BRMS_NAMES}
        | {".chain": np.repeat([1, 2], draws), ".iteration": np.tile(np.arange(1, draws + 1), 2)}
    ).iloc[::-1]  # any row order
    post = bench._stan_posterior(bench._brms_draws(frame, chains), sim.design)
    ordered = frame.sort_values([".chain", ".iteration"])
    np.testing.assert_array_equal(
        post["sigs"].sel(random_effect="x|group_id").values,
        ordered["sd_group_id__x"].to_numpy().reshape(chains, draws),
    )
    np.testing.assert_array_equal(
        post["R"].sel(random_effect="intercept|group_id", random_effect_="x|group_id").values,
        ordered["cor_group_id__Intercept__x"].to_numpy().reshape(chains, draws),
    )
    np.testing.assert_array_equal(
        post["beta"].sel(fixed_effect="intercept").values,
        ordered["b_Intercept"].to_numpy().reshape(chains, draws),
    )


def test_a_run_past_its_time_limit_is_stopped_with_its_workers(bench, tmp_path, monkeypatch):
    # a stand-in for one run: it starts a worker (as PyStan and rstan do) and outlives the limit
    worker_pid = tmp_path / "worker.pid"
    script = tmp_path / "run.sh"
    script.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {worker_pid}\nsleep 60\n")
    script.chmod(0o755)
    monkeypatch.setattr(bench.sys, "executable", str(script))
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
