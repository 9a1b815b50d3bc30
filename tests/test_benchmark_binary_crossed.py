"""The binary crossed benchmark (benchmarks/binary_crossed.py): brms gets lmm_pymc's default
priors, class by class, and the report's ratios are those of the medians."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks import binary_crossed as bench


def test_brms_priors_are_the_default_priors(tmp_path):
    import lmm_pymc
    from lmm_pymc.formula import design_from_formula

    data, priors = bench.make_data(6, 4, 1, tmp_path)
    frame = pd.read_csv(data)
    assert len(frame) == 6 * 4 * 2 and set(frame["y"]) <= {0, 1}
    rows = pd.read_csv(priors, keep_default_na=False).set_index(["class", "coef", "group"])
    ours = lmm_pymc.default_priors(design_from_formula(bench.FORMULA, frame), "bernoulli")
    intercept = ours.terms["beta[intercept]"].kwargs
    assert rows.loc[("Intercept", "", ""), "mean"] == pytest.approx(intercept["mu"])
    assert rows.loc[("Intercept", "", ""), "sd"] == pytest.approx(intercept["sigma"])
    assert rows.loc[("b", "cond", ""), "sd"] == pytest.approx(ours.terms["beta[cond]"].kwargs["sigma"])
    for group in ("subject", "item"):
        for effect, coef in (("intercept", "Intercept"), ("cond", "cond")):
            expected = ours.terms[f"sigs[{effect}|{group}]"].kwargs["sigma"]
            assert rows.loc[("sd", coef, group), "sd"] == pytest.approx(expected)
    assert rows.loc[("cor", "", ""), "sd"] == ours.lkj_eta
    assert len(rows) == 7  # two fixed effects, four sds, one LKJ shape: nothing else


def test_ratios_are_those_of_the_medians():
    def rec(e2e, sampling, ess):
        return {"end_to_end_s": e2e, "sampling_s": sampling, "min_ess_bulk": ess,
                "max_r_hat": 1.0, "divergences": 0}

    runs = {"lmm_pymc": [rec(10, 2, 1000), rec(12, 4, 1000), rec(30, 5, 1000)],
            "brms": [rec(100, 50, 500), {"error": "stopped"}, rec(140, 50, 500)]}
    figures = bench.summarize(runs)
    assert figures["lmm_pymc"]["end_to_end_s"] == 12 and figures["brms"]["runs"] == 2
    assert figures["lmm_pymc_vs_brms"]["end_to_end_speedup"] == pytest.approx(120 / 12)
    assert figures["lmm_pymc_vs_brms"]["ess_per_s"] == pytest.approx(250 / 10)


def test_added_runs_keep_the_earlier_ones_and_refuse_another_design():
    """``--add-to``: the earlier runs come first and the medians are over all of them; an
    earlier run of another design or sampling is refused."""
    machine = {"load_start": [1.0], "load_end": [2.0]}
    run = {"end_to_end_s": 10.0, "sampling_s": 5.0, "min_ess_bulk": 1000.0,
           "max_r_hat": 1.0, "divergences": 0}  # fmt: skip
    earlier = {"command": "first", "rows": 8, "sampling": {"draws": 10},
               "runs": {"lmm_pymc": [dict(run, end_to_end_s=30.0)]}, "machine": machine}  # fmt: skip
    later = {"command": "second", "rows": 8, "sampling": {"draws": 10},
             "runs": {"lmm_pymc": [run, dict(run, end_to_end_s=20.0)]}, "machine": machine}  # fmt: skip
    merged = bench._added_to(earlier, later)
    assert [r["end_to_end_s"] for r in merged["runs"]["lmm_pymc"]] == [30.0, 10.0, 20.0]
    assert bench.summarize(merged["runs"])["lmm_pymc"]["end_to_end_s"] == 20.0
    assert merged["command"] == "first; then second"
    with pytest.raises(ValueError, match="sampling"):
        bench._added_to(earlier, dict(later, sampling={"draws": 20}))
