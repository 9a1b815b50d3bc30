"""The benchmark script's plan, names and report (no sampling: the runs are the script's
own job)."""

from __future__ import annotations

import argparse
import importlib.util
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
        "ess_per_s_end_to_end": ess_s / 2,
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
