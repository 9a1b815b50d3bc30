"""Command line: simulate to CSV, fit a CSV (tutorial columns or a formula), the demo,
clear errors, and parsing without the heavy libraries."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from lmm_pymc import cli
from lmm_pymc.cli import main
from lmm_pymc.options import CROSSCHECK_PAIRS

REPO = Path(__file__).resolve().parents[1]


def test_cli_choices_match_the_package():
    """The parsers offer the package's option sets (lmm_pymc.options, their one home); the
    cross-check's built-in pairs are those its registry registers."""
    from lmm_pymc.crosscheck import available_pairs

    assert set(CROSSCHECK_PAIRS) == set(available_pairs())
    args = cli.build_parser().parse_args(["demo"])
    assert (args.parametrization, args.sampler) == (None, "nutpie")  # the package's defaults
    args = cli.build_parser().parse_args(["crosscheck", "--parametrization", "general"])
    assert args.parametrization == ["general"]


def test_console_script_and_module_run_main():
    """`lmm-pymc` (pyproject's [project.scripts]) and `python -m lmm_pymc.cli` reach main."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["lmm-pymc"].partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is main
    out = subprocess.run([sys.executable, "-m", "lmm_pymc.cli", "--help"], cwd=REPO,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert "{demo,simulate,fit,predict,sbc,crosscheck}" in out.stdout


def test_parsing_imports_no_heavy_library():
    """`lmm-pymc --help` and argument errors load neither PyMC nor PyTensor nor nutpie."""
    code = ("import sys; from lmm_pymc.cli import build_parser; p = build_parser(); "
            "p.parse_args(['fit', 'x.csv', '--draws', '10']); "
            "p.parse_args(['sbc', '--simulations', '2', '--out', 'o', '--parametrization', "
            "'cholesky', '--sampler', 'pymc']); "
            "p.parse_args(['crosscheck', '--parametrization', 'general']); "
            "print(sorted(m for m in ('pymc', 'pytensor', 'nutpie', 'arviz') "
            "if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_simulate_to_csv(tmp_path, capsys):
    out = tmp_path / "sim.csv"
    assert main(["simulate", "--out", str(out), "--groups", "5", "--rows", "4", "--seed", "1"]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["intercept", "x", "group_id", "y", "fixed_outcome",
                                "random_outcome"]  # fmt: skip
    assert len(df) == 20 and df["group_id"].nunique() == 5
    assert "wrote 20 rows in 5 groups" in capsys.readouterr().out


def test_bad_arguments_exit_2_with_message(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "s.csv"), "--rho", "1.2"]) == 2
    assert "rho must be a correlation with |rho| < 1, found 1.2" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    assert "csv must be an existing CSV file" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"y": [1.0, 2.0], "x": [1.0, 2.0]}).to_csv(bad, index=False)
    assert main(["fit", str(bad)]) == 2
    assert "grouping factor column 'group_id' is not in data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse: while parsing, before any import
        main(["fit", str(bad), "--draws", "0"])
    assert exit_.value.code == 2
    assert "--draws must be a positive integer, found 0" in capsys.readouterr().err


def test_formula_errors(tmp_path, capsys):
    csv = tmp_path / "d.csv"
    pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 3.0], "g": ["a", "b", "a"]}).to_csv(
        csv, index=False
    )
    assert main(["fit", str(csv), "--formula", "y ~ x + (1 + w | g)"]) == 2
    assert "random slope on 'w'" in capsys.readouterr().err
    assert main(["fit", str(csv), "--formula", "y ~ x + (1 + x | g"]) == 2
    assert "could not be parsed by formulae" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_csv_and_demo(tmp_path, capsys):
    csv = tmp_path / "sim.csv"
    main(["simulate", "--out", str(csv), "--groups", "6", "--rows", "8", "--seed", "3"])
    nc = tmp_path / "post.nc"
    code = main(["fit", str(csv), "--draws", "200", "--tune", "200", "--chains", "2",
                 "--no-progress", "--out", str(nc)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and nc.exists()
    # the summary: fixed effects, the factor's sds and correlation, priors, parametrization
    for word in ("Population-level effects", "~group_id (levels: 6)", "cor(intercept, x)",
                 "sigs[x|group_id]", "Parametrization: marginal"):  # fmt: skip
        assert word in out, word
    plot = tmp_path / "demo.png"
    code = main(["demo", "--draws", "200", "--tune", "200", "--no-progress", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0
    assert "true values inside their 94% HDI" in out and "sigs[intercept|group_id]" in out
    assert plot.stat().st_size > 10_000  # a real PNG with six panels


@pytest.mark.slow
def test_fit_crossed_formula(tmp_path, capsys):
    rng = __import__("numpy").random.default_rng(2)
    df = pd.DataFrame({"subject": [f"s{i // 8}" for i in range(96)],
                       "item": [f"i{i % 8}" for i in range(96)],
                       "cond": rng.choice([-0.5, 0.5], 96)})  # fmt: skip
    df["rt"] = 1.0 + 0.5 * df["cond"] + rng.normal(size=96)
    csv = tmp_path / "crossed.csv"
    df.to_csv(csv, index=False)
    code = main(["fit", str(csv), "--formula", "rt ~ 1 + cond + (1 | subject) + (1 | item)",
                 "--draws", "100", "--tune", "100", "--chains", "1", "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    for word in ("~subject (levels: 12)", "~item (levels: 8)", "cond", "sd(intercept)",
                 "sigs[intercept|item]", "Parametrization: marginal"):  # fmt: skip
        assert word in out, word


@pytest.mark.slow
def test_cli_crosscheck(capsys):
    code = main(["crosscheck", "--parametrization", "cholesky", "general", "--prior-points", "3",
                 "--posterior-points", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lp_pymc" in out and "max_grad_error" in out and "all pairs agree" in out
    assert out.count("AGREE") == 2
