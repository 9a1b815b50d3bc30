"""The centring and Laplace benchmarks' reports (benchmarks/centring.py, laplace.py): every
row is rendered, a parameter name's ``|`` cannot break the Markdown table, and the ratio is
laplace's min-ESS per second over cholesky's."""

from __future__ import annotations

import pytest

from benchmarks import centring, laplace

MACHINE = {"cpus": 2, "load_start": [1.0, 1.0, 1.0], "load_end": [2.0, 2.0, 2.0]}


def test_centring_report_rows_and_escaped_names():
    def rec(centre, ess):
        return {"case": "orthodont", "centre": centre, "sampling_s": 5.0, "divergences": 0,
                "max_r_hat": 1.004, "min_ess_bulk": ess, "worst": "sigs[age|Subject]",
                "min_beta_ess": 3000.0, "steps": 40.0}  # fmt: skip

    text = centring.report({"command": "python benchmarks/centring.py", "seed": 1,
                            "machine": MACHINE, "records": [rec(True, 441.0), rec(False, 314.0)]})
    rows = [line for line in text.splitlines() if line.startswith("| `orthodont`")]
    assert len(rows) == 2 and "centred" in rows[0] and "as it is" in rows[1]
    assert "`sigs[age\\|Subject]`" in rows[0]
    # an escaped | leaves the row with the header's number of cells
    header = next(line for line in text.splitlines() if line.startswith("| case"))
    assert rows[0].replace("\\|", "").count("|") == header.count("|")


def test_laplace_report_ratio():
    def rec(name, ess, seconds):
        return {"parametrization": name, "sampling_s": seconds, "steps": 7.0, "divergences": 0,
                "max_r_hat": 1.0, "min_ess_bulk": ess, "ess_per_s": ess / seconds}

    payload = {"command": "python benchmarks/laplace.py", "machine": MACHINE,
               "args": {"family": "poisson", "groups": 30, "rows": 20, "draws": 1000,
                        "chains": 4, "seed": 7},
               "records": [rec("laplace", 3000.0, 20.0), rec("cholesky", 300.0, 10.0)],
               "max_gap_in_sd": {"beta": 0.05, "sigs": 0.1, "b_g": 0.2}}  # fmt: skip
    text = laplace.report(payload)
    assert "5.00x" in text  # (3000 / 20) / (300 / 10)
    assert "beta 0.05, sigs 0.10, b_g 0.20" in text
    assert laplace.FORMULA == "y ~ 1 + x + (1 + x | g)"
    with pytest.raises(SystemExit):
        laplace.main(["--family", "student"])  # not a family the comparison runs


def test_gradient_cost_child_refuses_another_checkouts_package(tmp_path):
    """A child told to time the package of a folder that holds none must not time the
    installed one (which would compare a checkout with itself)."""
    from benchmarks import gradient_cost

    record = gradient_cost.run_child(tmp_path, "poisson_one_factor", calls=1, repeats=1)
    assert "error" in record and "not from" in record["error"]


def test_gradient_cost_report_rows_and_speedup():
    from benchmarks import gradient_cost

    payload = {"command": "python benchmarks/gradient_cost.py", "baseline_label": "abc1234",
               "rounds": 3, "calls": 500, "repeats": 5, "machine": MACHINE,
               "figures": {"bernoulli_crossed": {"rows": 4000, "parameters": 248,
                                                 "baseline_us": 418.0, "this_us": 170.0,
                                                 "this_ns_per_row": 42.5, "speedup": 2.46}}}  # fmt: skip
    text = gradient_cost.report(payload)
    row = next(line for line in text.splitlines() if line.startswith("| bernoulli_crossed"))
    assert "418" in row and "170" in row and "2.46" in row
    assert "`abc1234`" in text
