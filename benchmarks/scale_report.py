"""The report of ``benchmarks/scale.py``: medians over repeats (:func:`summarize`), the
issue's targets (:func:`targets`) and the Markdown report (:func:`markdown`)."""

from __future__ import annotations

import json

from benchmarks.common import fmt_cell, median
from benchmarks.scale_cases import INTERVAL

#: the stages timed in every repeat, in the order of the report: (key, label)
STAGES: tuple[tuple[str, str], ...] = (
    ("statistics_s", "file read + per-group statistics (Dask)"),
    ("build_compile_s", "model build + compile (and fit's bookkeeping)"),
    ("sampling_s", "sampling (NUTS, tuning included)"),
    ("random_effects_s", "exact random-effect draws"),
    ("end_to_end_s", "end to end (statistics + fit)"),
)

#: the targets of each case's full run: (key in the summary, "<=" or ">=", bound, label)
CASE_TARGETS: dict[str, tuple[tuple[str, str, float, str], ...]] = {
    "single": (("end_to_end_s", "<=", 60.0, "end to end, s"),
               ("max_peak_rss_mb", "<=", 4000.0, "peak memory, MB")),
    # 1000 subjects x 100 items: end to end and the smallest bulk ESS (beta, sigma, sigs)
    "crossed": (("end_to_end_s", "<=", 60.0, "end to end, s"),
                ("min_ess_bulk", ">=", 1000.0, "min bulk ESS")),
    "general": (("end_to_end_s", "<=", 60.0, "end to end, s"),
                ("max_peak_rss_mb", "<=", 2000.0, "peak memory, MB"),
                ("workers_speedup", ">=", 1.6, "statistics pass, 1 -> 2 worker processes, speed-up")),
    "crossed_files": (("end_to_end_s", "<=", 300.0, "end to end, s"),
                      ("max_peak_rss_mb", "<=", 4000.0, "peak memory, MB"),
                      ("min_ess_bulk", ">=", 1000.0, "min bulk ESS")),
}  # fmt: skip


def summarize(records: list[dict]) -> dict:
    """Medians over repeats of every stage, the peak memory and the checks."""
    keys = [k for k, _ in STAGES] + ["fit_s", "build_s", "import_s", "process_s", "peak_rss_mb",
                                     "peak_rss_after_statistics_mb", "min_ess_bulk",
                                     "divergences", "steps_per_draw", "max_r_hat",
                                     "statistics_1_worker_s", "statistics_2_workers_s",
                                     "workers_speedup"]  # fmt: skip
    out = {k: median(records, k) for k in keys}
    out["max_peak_rss_mb"] = max(r["peak_rss_mb"] for r in records)
    out["all_covered_every_repeat"] = all(r["all_covered"] for r in records)
    out["realized_covered_every_repeat"] = all(all(r["covered_realized"].values())
                                               for r in records)  # fmt: skip
    return out


def targets(case_name: str, settings: dict, summary: dict) -> list[dict] | None:
    """The targets of a full run of ``case_name`` (:data:`CASE_TARGETS`) and whether the
    medians (the largest peak memory) met them; None for a quick run or a case without
    targets."""
    if settings.get("quick") or case_name not in CASE_TARGETS:
        return None
    out = []
    for key, sign, bound, label in CASE_TARGETS[case_name]:
        value = summary.get(key)
        met = value is not None and (value <= bound if sign == "<=" else value >= bound)
        out.append({"key": key, "label": label, "sign": sign, "bound": bound, "value": value,
                    "met": met})  # fmt: skip
    return out


def _header(report: dict) -> list[str]:
    m = report["machine"]
    return [
        "# Scale benchmark: per-group sums from Parquet with Dask + lmm_pymc.fit",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['processor']}, {m['cpus']} CPU(s) available to the process "
        f"({m['cpu_count']} on the machine), {m['memory_gb']:.0f} GB memory, Python "
        f"{m['python']}; load average (1, 5, 15 min) at the start {m['load_start']}, at the end "
        f"{m['load_end']} (shared machine: timings are noisy). Each repeat runs in a fresh "
        "subprocess; peak RSS is ru_maxrss of that process and of its children (Dask's threaded "
        "scheduler runs in the process, so its workers' memory is inside it).",
        "",
    ]


def _per(section: dict, value) -> str:
    """``value(repeat)`` of every repeat, comma-separated."""
    return ", ".join(value(r) for r in section["repeats"])


def _stage_table(section: dict) -> list[str]:
    """The stages' seconds: median and per repeat."""
    s, cfg = section["summary"], section["settings"]
    lines = [
        f"## {section['case']}: {section['description']}",
        "",
        f"`{section['formula']}`; {cfg['rows']:,} rows, {cfg['groups']:,} groups, "
        f"{cfg['files']} Parquet files ({section['data_mb']:.0f} MB, in "
        f"`{section['data_dir']}`); fit options {json.dumps(section['fit_options'])}; "
        f"{len(section['repeats'])} repeat(s), medians below.",
        "",
        "| stage | median s | per repeat s |",
        "|---|---:|---|",
    ]
    for key, label in STAGES:
        lines.append(f"| {label} | {fmt_cell(s[key])} | "
                     f"{_per(section, lambda r, k=key: fmt_cell(r.get(k)))} |")  # fmt: skip
    if s.get("workers_speedup") is not None:  # the statistics pass on 1 and on 2 workers
        lines += [
            f"| (statistics pass on a cluster of 1 worker process) | "
            f"{fmt_cell(s['statistics_1_worker_s'])} | "
            f"{_per(section, lambda r: fmt_cell(r.get('statistics_1_worker_s')))} |",
            f"| (the same on 2 worker processes) | {fmt_cell(s['statistics_2_workers_s'])} | "
            f"{_per(section, lambda r: fmt_cell(r.get('statistics_2_workers_s')))} |",
            f"| (speed-up from 1 to 2 worker processes, x) | {fmt_cell(s['workers_speedup'])} | "
            f"{_per(section, lambda r: fmt_cell(r.get('workers_speedup')))} |",
        ]
    return lines + [
        f"| of which the PyMC model's build | {fmt_cell(s['build_s'])} | "
        f"{_per(section, lambda r: fmt_cell(r['build_s']))} |",
        f"| (import of the libraries, once per process, not in end to end) | "
        f"{fmt_cell(s['import_s'])} | {_per(section, lambda r: fmt_cell(r['import_s']))} |",
        f"| (process: import + end to end) | {fmt_cell(s['process_s'])} | "
        f"{_per(section, lambda r: fmt_cell(r['process_s']))} |",
        "",
    ]


def _measure_table(section: dict) -> list[str]:
    """Memory, divergences, steps, r_hat, ESS and coverage: median and per repeat."""
    s = section["summary"]
    per_real = _per(section, lambda r: fmt_cell(all(r["covered_realized"].values())))
    return [
        "| measure | median | per repeat |",
        "|---|---:|---|",
        f"| peak RSS, MB | {fmt_cell(s['peak_rss_mb'], 0)} | "
        f"{_per(section, lambda r: fmt_cell(r['peak_rss_mb'], 0))} |",
        f"| peak RSS after the statistics stage, MB | "
        f"{fmt_cell(s['peak_rss_after_statistics_mb'], 0)} | "
        f"{_per(section, lambda r: fmt_cell(r['peak_rss_after_statistics_mb'], 0))} |",
        f"| divergences | {fmt_cell(s['divergences'], 0)} | "
        f"{_per(section, lambda r: str(r['divergences']))} |",
        f"| NUTS steps per draw | {fmt_cell(s['steps_per_draw'])} | "
        f"{_per(section, lambda r: fmt_cell(r['steps_per_draw']))} |",
        f"| max r_hat (beta, sigma, sigs) | {fmt_cell(s.get('max_r_hat'), 3)} | "
        f"{_per(section, lambda r: fmt_cell(r.get('max_r_hat'), 3))} |",
        f"| min bulk ESS (beta, sigma, sigs) | {fmt_cell(s['min_ess_bulk'], 0)} | "
        f"{_per(section, lambda r: fmt_cell(r['min_ess_bulk'], 0))} |",
        f"| every true value in its {INTERVAL:.0%} interval | "
        f"{fmt_cell(s['all_covered_every_repeat'])} | "
        f"{_per(section, lambda r: fmt_cell(r['all_covered']))} |",
        f"| every realized value (fixed effects plus the drawn effects' means, sample "
        f"sds, correlation of the drawn effects) in its interval | "
        f"{fmt_cell(s['realized_covered_every_repeat'])} | "
        f"{per_real} |",
        "",
    ]


def _intervals_and_targets(section: dict) -> list[str]:
    """The first repeat's intervals, and the targets where the section has them."""
    first = section["repeats"][0]
    lines = [f"{INTERVAL:.0%} intervals of the first repeat:", ""]
    for name, (lo, hi, value) in first["intervals"].items():
        mark = "covered" if first["covered"][name] else "NOT covered"
        real = first["realized"].get(name)
        extra = f"; realized {real:.4f}" if real is not None else ""
        lines.append(f"- `{name}`: [{lo:.4f}, {hi:.4f}], true {value:g} ({mark}){extra}")
    if section.get("targets"):
        met = [f"{t['label']} {t['sign']} {t['bound']:g}: {fmt_cell(t['value'])} "
               f"({'met' if t['met'] else 'NOT met'})" for t in section["targets"]]  # fmt: skip
        lines += ["", "Targets (medians): " + "; ".join(met) + "."]
    return lines


def markdown(report: dict) -> str:
    """The report: command and machine, then per case its stages, its measures, the first
    repeat's intervals and the targets."""
    lines = _header(report)
    for section in report["cases"]:
        lines += _stage_table(section)
        lines += _measure_table(section)
        lines += _intervals_and_targets(section)
        lines.append("")
    return "\n".join(lines)
