"""Command line: simulate to CSV, fit a CSV, the demo, and clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from lmm_pymc.cli import main


def test_simulate_to_csv(tmp_path, capsys):
    out = tmp_path / "sim.csv"
    assert main(["simulate", "--out", str(out), "--groups", "5", "--rows", "4", "--seed", "1"]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == [
        "intercept",
        "x",
        "group_id",
        "y",
        "fixed_outcome",
        "random_outcome",
    ]
    assert len(df) == 20 and df["group_id"].nunique() == 5
    assert "wrote 20 rows in 5 groups" in capsys.readouterr().out


def test_bad_arguments_exit_2_with_message(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "s.csv"), "--rho", "1.2"]) == 2
    assert "rho must be a correlation with |rho| < 1, found 1.2" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    assert "csv must be an existing file" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"y": [1.0, 2.0], "x": [1.0, 2.0]}).to_csv(bad, index=False)
    assert main(["fit", str(bad)]) == 2
    assert "missing column(s) ['group_id']" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_csv_and_demo(tmp_path, capsys):
    csv = tmp_path / "sim.csv"
    main(["simulate", "--out", str(csv), "--groups", "6", "--rows", "8", "--seed", "3"])
    nc = tmp_path / "post.nc"
    code = main(
        [
            "fit",
            str(csv),
            "--draws",
            "200",
            "--tune",
            "200",
            "--chains",
            "2",
            "--no-progress",
            "--out",
            str(nc),
        ]
    )
    assert code == 0 and nc.exists()
    assert "alpha_0" in capsys.readouterr().out
    plot = tmp_path / "demo.png"
    code = main(["demo", "--draws", "200", "--tune", "200", "--no-progress", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0
    assert "true values inside their 94% HDI" in out and "sigs[intercept]" in out
    assert plot.stat().st_size > 10_000  # a real PNG with six panels
