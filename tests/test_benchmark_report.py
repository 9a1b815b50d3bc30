"""The benchmark's report: the ratios to the tutorial's Stan program and to the best
Bayesian peer, and the Markdown table that marks bounds and failures."""

from __future__ import annotations

import pytest

from benchmarks import benchmark_report as report


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


def test_markdown_marks_bounds_and_failures():
    records = [
        _record("stan", "large", 10.0, bound=True, divergences=None, note="n"),
        _record("default", "large", 2000.0, ratio_sampling=200.0, stan_is_bound=True),
        {"config": "pymc_lkj_corr", "label": "x", "size": "small", "error": "stopped"},
    ]
    text = report.markdown(records, "cmd", ["PyMC NUTS, lkj_corr on large"])
    stan_row = next(
        line for line in text.splitlines() if line.startswith("| large") and "bound" in line
    )
    assert "<= 10.0" in stan_row and ">= 2.0" in stan_row  # ESS/s upper, time lower bound
    default_row = next(line for line in text.splitlines() if "| default" in line)
    assert "| >= 200 | - |" in default_row  # a ratio to a bound is a lower bound
    assert "failed: stopped" in text
    assert "Not run (0 slow draws on that size): PyMC NUTS, lkj_corr on large." in text
    assert "R[intercept|group_id, x|group_id]" in text  # the ESS set, in the package's names


def test_best_bayesian_peer_is_taken_per_size_and_per_measure():
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
    report.add_ratios(records)
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

    text = report.markdown(records, "cmd", [])
    row = next(ln for ln in text.splitlines() if ln.startswith("| large") and "| default" in ln)
    assert "| >= 10.00 | >= 4.00 |" in row  # a ratio to a bound is a lower bound
    row = next(ln for ln in text.splitlines() if ln.startswith("| small") and "| default" in ln)
    assert "| 50.00 | 25.00 |" in row
    assert "x best Bayesian peer (ESS/s sampling)" in text
    assert "small: best Bayesian peer on ESS/s of sampling: brms" in text
    row = next(ln for ln in text.splitlines() if "| lme4" in ln)
    assert "| ML fit | - |" in row
