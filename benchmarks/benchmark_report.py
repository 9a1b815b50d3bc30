"""The report of ``benchmarks/benchmark.py``: the ratios of each run's ESS/s to the
tutorial's Stan program and to the best Bayesian peer (:func:`add_ratios`), and the Markdown
table with its notes (:func:`markdown`)."""

from __future__ import annotations

import os
import platform
import time

from benchmarks.common import fmt_number, machine, md_row
from benchmarks.peers import CONFIGS, PEERS


def _better(records: list[dict], key: str) -> dict | None:
    """The record with the highest ``key`` (ESS/s), None if none has it."""
    known = [r for r in records if r.get(key) is not None]
    return max(known, key=lambda r: r[key], default=None)


def add_ratios(records: list[dict]) -> None:
    """Per size, each run's ESS/s divided by the tutorial's Stan program's (``ratio_*``) and
    by the best Bayesian peer's (``peer_ratio_*``): the peer (:data:`PEERS`) with the highest
    ESS/s of sampling, and separately the one with the highest ESS/s end-to-end. A ratio to
    a bound (an upper bound on ESS/s) is a lower bound (``*_is_bound``)."""
    ok = [r for r in records if "error" not in r]
    for size in dict.fromkeys(r["size"] for r in ok):
        here = [r for r in ok if r["size"] == size]
        stan = next((r for r in here if r["config"] == "stan"), None)
        peers = [r for r in here if r["config"] in PEERS]
        for what in ("sampling", "end_to_end"):
            key = f"ess_per_s_{what}"
            best = _better(peers, key)
            for r in here:
                if r.get(key) is None:
                    continue
                if stan is not None:
                    r[f"ratio_{what}"] = r[key] / stan[key]
                    r["stan_is_bound"] = bool(stan.get("bound", False))
                if best is not None:
                    r[f"peer_ratio_{what}"] = r[key] / best[key]
                    r[f"best_peer_{what}"] = best["config"]
                    r[f"best_peer_{what}_is_bound"] = bool(best.get("bound", False))


COLUMNS = (
    "size", "configuration", "chains x draws (tune)", "compile s (cold / cached)",
    "sampling s", "divergences", "leapfrog steps / iteration", "min bulk ESS",
    "ESS/s sampling", "ESS/s end-to-end", "x Stan (ESS/s sampling)",
    "x Stan (ESS/s end-to-end)", "x best Bayesian peer (ESS/s sampling)",
    "x best Bayesian peer (ESS/s end-to-end)", "end-to-end s at 4 x (1000 + 1000)",
    "peak RSS MB",
)  # fmt: skip

#: the table's notes: what its columns measure
NOTES = (
    "min bulk ESS over beta[intercept], beta[x], sigma, sigs[intercept|group_id], "
    "sigs[x|group_id], R[intercept|group_id, x|group_id] (Stan's alpha_0, beta_0, "
    "sigma_g, sigs, rho; brms's b_Intercept, b_x, sigma, sd_group_id__Intercept, "
    "sd_group_id__x, cor_group_id__Intercept__x), computed by ArviZ on every "
    "configuration's draws; sampling s includes tuning; end-to-end = compile + "
    "sampling (with compile cached: loading the compiled program + sampling); x Stan = "
    "ESS/s divided by that of the tutorial's centred Stan program on the same size; x best "
    "Bayesian peer = ESS/s divided by that of the faster of brms and non-centred Stan on "
    "the same size, taken separately for ESS/s of sampling and ESS/s end-to-end (>= where "
    "that peer is a bound); end-to-end s at 4 x (1000 + 1000) = compile + sampling scaled "
    "to the issue's full run; peak RSS = the larger of the run's own process and its "
    "largest child (sampler worker; Rscript for the R peers). Compile: cold = "
    "built from scratch, cached = loaded from an earlier build (httpstan's cache; rstan's "
    "auto_write for brms)."
)


def _row(r: dict) -> str:
    b = r.get("bound", False)
    le, ge = ("<= ", ">= ") if b else ("", "")
    stan_ge = ">= " if r.get("stan_is_bound", False) and r["config"] != "stan" else ""

    def peer(what):
        is_bound = r.get(f"best_peer_{what}_is_bound", False)
        prefix = ">= " if is_bound and r.get(f"best_peer_{what}") != r["config"] else ""
        return fmt_number(r.get(f"peer_ratio_{what}"), 2, prefix)

    label = r["label"] + (" **(bound, not sampled)**" if b else "")
    compile_s = fmt_number(r["compile_s"])
    if r.get("compile_cache"):
        compile_s += f" ({r['compile_cache']})"
    draws = "ML fit" if r["config"] == "lme4" else f"{r['chains']} x {r['draws']} ({r['tune']})"
    divergences = "-" if b or r["divergences"] is None else r["divergences"]
    cells = [
        f"{r['size']} ({r['n_rows']:,} rows)", label, draws, compile_s,
        ge + fmt_number(r["sampling_s"]), str(divergences), ge + fmt_number(r["steps_per_draw"]),
        le + fmt_number(r["min_ess_bulk"], 0), le + fmt_number(r["ess_per_s_sampling"]),
        le + fmt_number(r["ess_per_s_end_to_end"]),
        fmt_number(r.get("ratio_sampling"), 2, stan_ge),
        fmt_number(r.get("ratio_end_to_end"), 2, stan_ge), peer("sampling"), peer("end_to_end"),
        ge + fmt_number(r["end_to_end_full_s"]), fmt_number(r["peak_rss_mb"], 0),
    ]  # fmt: skip
    return md_row(cells)


def _header(command: str, missing: dict[str, str] | None, meta: dict) -> list[str]:
    """Command, machine, load average and the peers skipped (``missing``) and why."""
    start = meta.get("load_average_at_start")
    load = f"load average (1 min) at the start {start[0]:.1f}, " if start else "load average "
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {machine()}, Python {platform.python_version()}"
        + (f", R packages: {meta['r_packages']}" if meta.get("r_packages") else "")
        + f"; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"{load}at the end {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)",
    ]
    if missing:
        lines.append("")
        lines.append(
            "**Peers skipped** (on every size): "
            + "; ".join(f"{CONFIGS[c][0]}: {why}" for c, why in missing.items())
            + "."
        )
    return lines


def _size_notes(records: list[dict]) -> list[str]:
    """Per size: the best Bayesian peer on each measure, and the notes of the bounds and of
    the R peers."""
    lines = []
    for size in dict.fromkeys(r["size"] for r in records):
        here = [r for r in records if r["size"] == size and "error" not in r]
        best = {w: next((r.get(f"best_peer_{w}") for r in here if r.get(f"best_peer_{w}")), None)
                for w in ("sampling", "end_to_end")}  # fmt: skip
        if any(best.values()):
            lines.append("")
            lines.append(
                f"{size}: best Bayesian peer on ESS/s of sampling: "
                f"{CONFIGS[best['sampling']][0] if best['sampling'] else '-'}; on ESS/s "
                f"end-to-end: {CONFIGS[best['end_to_end']][0] if best['end_to_end'] else '-'}."
            )
        for r in here:
            if r.get("note") and (r.get("bound") or r["config"] in ("brms", "lme4")):
                lines.append("")
                lines.append(f"{size}, {r['label']}: {r['note']}.")
    return lines


def markdown(
    records: list[dict],
    command: str,
    skipped: list[str],
    missing: dict[str, str] | None = None,
    meta: dict | None = None,
) -> str:
    """The report: header (command, machine, load average, peers skipped and why), the
    table and its notes. ``skipped``: runs left out for 0 slow draws; ``missing``:
    configuration -> why it cannot run here."""
    lines = _header(command, missing, meta or {})
    lines += ["", md_row(COLUMNS), "|" + "---|" * len(COLUMNS)]
    for r in records:
        if "error" in r:
            cells = [r["size"], r["label"], f"failed: {r['error'][:120]}"]
            lines.append("| " + " | ".join(cells) + " |" * (len(COLUMNS) - 2))
        else:
            lines.append(_row(r))
    lines += ["", NOTES]
    lines += _size_notes(records)
    if skipped:
        lines.append("")
        lines.append("Not run (0 slow draws on that size): " + "; ".join(skipped) + ".")
    return "\n".join(lines) + "\n"
