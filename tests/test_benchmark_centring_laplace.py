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
