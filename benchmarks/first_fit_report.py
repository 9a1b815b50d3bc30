"""The first-fit benchmark's figures (:mod:`benchmarks.first_fit`): ratios and Markdown."""

from __future__ import annotations

from benchmarks.common import fmt_number

#: the phases counted as sampling: nutpie's run, without its conversion to InferenceData
SAMPLING = "sampling"
#: mode -> (record, fit index, whether the process's imports count)
FIGURES = {"fresh": ("fresh", 0, True), "new": ("new", 0, True), "same": ("same", 0, True),
           "second": ("same", 1, False)}  # fmt: skip
TARGETS = {"new": 2.0, "same": 1.0, "second": 0.5}


def figure(record: dict | None, index: int, with_imports: bool) -> dict | None:
    """One fit's seconds: total, sampling, not sampling, and the ratios (None on error)."""
    if not record or "error" in record or len(record.get("fits", [])) <= index:
        return None
    fit = record["fits"][index]
    sampling = fit["phases"].get(SAMPLING, 0.0)
    imports = record["import_s"] if with_imports else 0.0
    other = fit["total_s"] - sampling
    return {"total_s": fit["total_s"], "import_s": imports, "sampling_s": sampling,
            "not_sampling_s": other, "ratio": other / sampling,
            "ratio_with_imports": (other + imports) / sampling,
            "divergences": fit["divergences"]}  # fmt: skip


def summarize(result: dict) -> dict:
    """Every figure of one case, lmm_pymc's and bambi's, and the lmm_pymc / bambi ratios
    of the first fit in a process (imports counted) and of the second."""
    out = {}
    for mode, (key, index, imports) in FIGURES.items():
        out[mode] = figure(result.get(key), index, imports)
    for mode, index, imports in (("bambi_first", 0, True), ("bambi_second", 1, False)):
        out[mode] = figure(result.get("bambi"), index, imports)

    def end_to_end(fig):
        return None if fig is None else fig["total_s"] + fig["import_s"]

    pairs = {"new_vs_bambi": ("new", "bambi_first"), "same_vs_bambi": ("same", "bambi_first"),
             "second_vs_bambi": ("second", "bambi_second")}  # fmt: skip
    for name, (own, peer) in pairs.items():
        a, b = end_to_end(out[own]), end_to_end(out[peer])
        out[name] = None if a is None or b is None else a / b
    return out


def _cell(fig: dict | None, key: str) -> str:
    return "-" if fig is None else fmt_number(fig[key], 2)


def _errors(results) -> list[str]:
    lines = []
    for r in results:
        for mode in ("fresh", "new", "same", "bambi"):
            if r.get(mode) and "error" in r[mode]:
                lines.append(f"- `{r['formula']}`, {mode}: {r[mode]['error']}")
    return lines


def _main_table(results) -> list[str]:
    head = ("| p | q | factors | fresh machine s (ratio) | new structure s (ratio) | same "
            "structure, new process s (ratio) | second fit s (ratio) | sampling s | bambi "
            "first s | lmm_pymc / bambi, new | same | second |")
    lines = [head, "|" + "---|" * 12]
    for r in results:
        s, c = summarize(r), r["case"]

        def both(mode):
            fig = s[mode]
            if fig is None:
                return "-"
            return f"{fmt_number(fig['total_s'] + fig['import_s'], 1)} ({fig['ratio_with_imports']:.2f})"

        ratio = [fmt_number(s[k], 2) for k in ("new_vs_bambi", "same_vs_bambi", "second_vs_bambi")]
        bambi = s["bambi_first"]
        lines.append(f"| {c['p']} | {c['q']} | {c['factors']} | {both('fresh')} | {both('new')} | "
                     f"{both('same')} | {both('second')} | {_cell(s['same'], 'sampling_s')} | "
                     f"{'-' if bambi is None else fmt_number(bambi['total_s'] + bambi['import_s'], 1)}"
                     f" | {' | '.join(ratio)} |")  # fmt: skip
    return lines


def _phase_table(results, mode: str, index: int) -> list[str]:
    """Seconds per phase of one mode's fit, one column per case."""
    fits = []
    for r in results:
        rec = r.get(mode)
        ok = rec and "error" not in rec and len(rec["fits"]) > index
        fits.append((r["case"], rec if ok else None))
    names: list[str] = []
    for _, rec in fits:
        if rec:
            names += [n for n in rec["fits"][index]["phases"] if n not in names]
    head = "| phase | " + " | ".join(f"p={c['p']} q={c['q']} f={c['factors']}" for c, _ in fits) + " |"
    lines = [head, "|" + "---|" * (len(fits) + 1)]
    if index == 0:
        lines.append("| imports | " + " | ".join(fmt_number(rec["import_s"], 2) if rec else "-"
                                                 for _, rec in fits) + " |")  # fmt: skip
    for name in names:
        cells = [fmt_number(rec["fits"][index]["phases"].get(name, 0.0), 2) if rec else "-"
                 for _, rec in fits]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **fit total** | " + " | ".join(fmt_number(rec["fits"][index]["total_s"], 2)
                                                  if rec else "-" for _, rec in fits) + " |")  # fmt: skip
    return lines


def markdown(report: dict) -> str:
    results, settings = report["results"], report["settings"]
    m = report["machine"]
    lines = [
        "# First fit: where the time goes",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m['processor']}, {m['cpus']} usable CPU(s), Python {m['python']}; "
        f"{report['when']}; load average {m['load_start'][0]} at the start, "
        f"{m['load_end'][0]} at the end (shared machine: timings are noisy)  ",
        f"Data: {settings['groups']} groups x {settings['rows']} rows; "
        f"{settings['chains']} chains x ({settings['tune']} tuning + {settings['draws']} draws); "
        "`y ~ 1 + x1 + ... + xp + (1 + x1 .. x(q-1) | g)` (+ `(1 | h)`, crossed, with 2 "
        "factors): p slopes, p + 1 fixed-effect columns.",
        "",
        "Seconds from the process's start to the posterior (imports included) for the first "
        "fit of a process, of the fit alone for the second; in brackets (time not sampling) / "
        "(sampling time). Targets: <= 2 new structure, <= 1 same structure in a new process, "
        "<= 0.5 second fit. fresh machine: empty numba and PyTensor caches; new structure: "
        "caches holding one other structure (`y ~ 1 + x1 + x2 + (1 + x1 | g)`).",
        "bambi: `bambi.Model(formula, data).fit(inference_method='nutpie')`, same draws; its "
        "group-specific effects are independent (no correlation between them), a smaller "
        "model than lmm_pymc's correlated one. lmm_pymc / bambi: ratio of the seconds above.",
        "",
        *_main_table(results),
        "",
    ]
    for mode, index, title in (("fresh", 0, "fresh machine"), ("new", 0, "new structure"),
                               ("same", 0, "same structure, new process"),
                               ("same", 1, "second fit in the process"),
                               ("bambi", 0, "bambi, first fit")):  # fmt: skip
        if any(r.get(mode) for r in results):
            lines += [f"## Seconds per phase: {title}", "", *_phase_table(results, mode, index), ""]
    errors = _errors(results)
    if errors:
        lines += ["## Failed runs", "", *errors, ""]
    return "\n".join(lines)
