"""The report of ``benchmarks/realdata.py``: the targets each case meets (:func:`targets`)
and the Markdown report (:func:`markdown`): one table of every case, the misses, and per
case the fixed effects and the variance parameters beside lme4's fit (lmer's REML fit of a
Gaussian outcome, glmer's Laplace fit of a binary or count one: the ``glmm`` suite).

Run as a script it writes a stored report's Markdown again from its JSON, with this code::

    python benchmarks/realdata_report.py benchmarks/results/realdata_glmm.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run by its path: the repository's root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import fmt_cell, fmt_number, md_row  # noqa: E402
from benchmarks.realdata_cases import ALL_CASES  # noqa: E402

#: the targets of a fit at the default 4 chains x 1000 draws; the ESS target is a quarter
#: of the draws kept (1000 of 4000), scaled with the draws of a shorter run
TARGETS = {"divergences": 0, "max_r_hat": 1.01, "ess_fraction": 0.25, "max_abs_z": 0.3}

#: the largest |z| per suite: a GLMM's posterior mean and glmer's Laplace mode lie further
#: apart than a Gaussian model's mean and REML's estimate (the posterior of a fixed effect
#: on the logit or log scale is skewed where the groups are few or the counts small)
Z_TARGETS = {"lmm": TARGETS["max_abs_z"], "glmm": 0.5}

#: per suite: the reference fit's name in the report
FITTER = {"lmm": "lme4's REML fits", "glmm": "glmer's Laplace fits"}

#: short names of the targets, in the report's order
TARGET_NAMES = ("divergences", "r_hat", "ess", "z")


def _code(text: str) -> str:
    """``text`` as code in a table cell (its ``|`` escaped, so the row keeps its columns)."""
    return "`" + text.replace("|", "\\|") + "`"


def ess_target(record: dict) -> float:
    """The bulk ESS a case must reach: :data:`TARGETS` ``ess_fraction`` of its draws."""
    return TARGETS["ess_fraction"] * record["chains"] * record["draws"]


def targets(record: dict, max_abs_z: float = TARGETS["max_abs_z"]) -> dict[str, bool]:
    """Which targets the case met (``max_abs_z``: the suite's, :data:`Z_TARGETS`); a case
    that timed out or failed meets none."""
    if record.get("status") != "ok":
        return dict.fromkeys(TARGET_NAMES, False)
    return {
        "divergences": record["divergences"] <= TARGETS["divergences"],
        "r_hat": record["max_r_hat"] <= TARGETS["max_r_hat"],
        "ess": record["min_ess_bulk"] >= ess_target(record),
        "z": record["max_abs_z"] <= max_abs_z,
    }


def _met(record: dict) -> str:
    met = record["targets"]
    if record["status"] != "ok":
        return f"none ({record['status']} after {record['elapsed_s']:.0f} s)"
    if all(met.values()):
        return "all 4"
    missed = ", ".join(name for name in TARGET_NAMES if not met[name])
    return f"{sum(met.values())}/4, misses {missed}"


def _header(report: dict) -> list[str]:
    m, options = report["machine"], report["fit_options"]
    draws = f"{options.get('chains', 4)} chains x {options.get('draws', 1000)} draws"
    cache = "an empty numba cache per case" if report["fresh_cache"] else "the machine's cache"
    suite = report.get("suite", "lmm")
    reference = ("lme4: `lmer(REML = TRUE)` alone" if suite == "lmm" else
                 "glmer: `glmer(family)` (Laplace) alone")  # fmt: skip
    effects = ("exact draws of the integrated random effects" if suite == "lmm" else
               "every random effect sampled")  # fmt: skip
    return [
        f"# Real-data suite: lmm_pymc.fit beside {FITTER[suite]}",
        "",
        f"Command: `{report['command'].strip()}`",
        "",
        f"Machine: {m['processor']}, {m['cpus']} CPU(s) available ({m['cpu_count']} on the "
        f"machine), Python {m['python']}; load average at the start {m['load_start']}, at the "
        f"end {m['load_end']} (shared machine: timings are noisy). Fit options: "
        f"`{options}` ({draws}, tuning as fit's default); every case in a fresh process, "
        f"{cache}.",
        "",
        f"Targets: {TARGETS['divergences']} divergences; max r_hat <= {TARGETS['max_r_hat']}; "
        f"min bulk ESS >= {TARGETS['ess_fraction']:.0%} of the draws (1000 of 4000); max |z| "
        f"<= {Z_TARGETS[suite]}, z = (posterior mean - lme4 estimate) / posterior sd of "
        "each fixed effect. ESS and r_hat over the fixed effects, sigma (if any), the sds and the "
        "correlations. First fit: the wall time of the `fit` call in a fresh process (model "
        f"build, compilation, sampling, {effects}, "
        "predictive draws, diagnostics), libraries already imported; sampling: nutpie's clock, "
        f"tuning included; {reference}, in one R process.",
        "",
    ]


def _row(record: dict, reference: dict) -> str:
    case = ALL_CASES[record["case"]]
    lead = [f"`{case.name}`", f"{case.package}::{case.item}", f"{reference['n_rows']:,}",
            _code(case.formula), ", ".join(case.kinds) or "-"]  # fmt: skip
    if record["status"] != "ok":
        return md_row([*lead, *["-"] * 7, fmt_number(reference["lme4_fit_s"], 2), _met(record)])
    return md_row([
        *lead, fmt_number(record["first_fit_s"]), fmt_number(record["sampling_s"]),
        f"{record['min_ess_bulk']:,.0f}", f"{record['max_r_hat']:.4f}", record["divergences"],
        f"{record['max_abs_z']:.2f}", fmt_number(record["steps_per_draw"]),
        fmt_number(reference["lme4_fit_s"], 2), _met(record),
    ])  # fmt: skip


def _table(report: dict, references: dict) -> list[str]:
    head = ["case", "data", "rows", "formula", "kinds", "first fit s", "sampling s",
            "min bulk ESS", "max r_hat", "divergences", "max abs z", "steps / draw",
            "lme4 s", "targets met"]  # fmt: skip
    lines = [md_row(head), md_row(["---"] * len(head))]
    lines += [_row(r, references[r["case"]]) for r in report["cases"]]
    return [*lines, ""]


def _misses(report: dict) -> list[str]:
    lines = ["## Misses", ""]
    for r in report["cases"]:
        if r["status"] != "ok":
            lines.append(f"- `{r['case']}`: {r['status']} after {r['elapsed_s']:.0f} s")
            continue
        met, where = r["targets"], []
        if not met["divergences"]:
            where.append(f"{r['divergences']} divergences")
        if not met["r_hat"]:
            where.append(f"r_hat {r['max_r_hat']:.4f} at `{r['max_r_hat_at']}`")
        if not met["ess"]:
            where.append(f"bulk ESS {r['min_ess_bulk']:.0f} at `{r['min_ess_bulk_at']}`")
        if not met["z"]:
            where.append(f"|z| {r['max_abs_z']:.2f} at `beta[{r['max_abs_z_at']}]`")
        if where:
            lines.append(f"- `{r['case']}`: " + "; ".join(where))
    return lines + ([] if len(lines) > 2 else ["none"]) + [""]


def _details(record: dict, reference: dict) -> list[str]:
    case = ALL_CASES[record["case"]]
    said = ["singular fit" if reference["singular"] else "not singular"]
    said += [reference["messages"]] if reference["messages"] else []
    if "family" in reference:  # glmer's fit of a binary or count outcome
        said.append(f"family {reference['family']}, `{reference['lme4_formula']}`")
    lines = [f"### {case.name}: `{case.formula}`", "", f"{case.note}; lme4: "
             + "; ".join(said) + ".", ""]  # fmt: skip
    if record["status"] != "ok":
        return [*lines, f"{record['status']} after {record['elapsed_s']:.0f} s", ""]
    lines += [md_row(["fixed effect", "lme4", "lme4 se", "posterior mean", "posterior sd", "z"]),
              md_row(["---"] * 6)]  # fmt: skip
    for name, v in record["fixed"].items():
        lines.append(md_row([_code(name), f"{v['lme4']:.4g}", f"{v['lme4_se']:.3g}",
                             f"{v['mean']:.4g}", f"{v['sd']:.3g}", f"{v['z']:+.2f}"]))  # fmt: skip
    lines += ["", md_row(["variance parameter", "lme4", "posterior mean", "posterior median",
                          "95% interval", "lme4 inside"]), md_row(["---"] * 6)]  # fmt: skip
    for name, v in record["variance"].items():
        lo, hi = v["interval"]
        lines.append(md_row([_code(name), f"{v['reml']:.4g}", f"{v['mean']:.4g}",
                             f"{v['median']:.4g}", f"[{lo:.4g}, {hi:.4g}]",
                             fmt_cell(v["reml_inside"])]))  # fmt: skip
    if record["warnings"]:
        lines += ["", "Warnings: " + " | ".join(record["warnings"])]
    return [*lines, ""]


def markdown(report: dict, references: dict) -> str:
    """The report: command and machine, the table of cases, the misses, per case details."""
    lines = _header(report) + _table(report, references) + _misses(report)
    lines += ["## Per case", ""]
    for record in report["cases"]:
        lines += _details(record, references[record["case"]])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write ``<report>.md`` again from ``<report>.json`` (its suite's stored lme4 fits)."""
    from benchmarks.realdata import reference_records

    for name in sys.argv[1:] if argv is None else argv:
        path = Path(name)
        report = json.loads(path.read_text())
        references = reference_records(report.get("suite", "lmm"))
        path.with_suffix(".md").write_text(markdown(report, references))
        print(f"wrote {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
