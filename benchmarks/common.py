"""Helpers shared by the benchmark scripts: peak memory, the machine, numbers in Markdown
tables, medians over repeats, and the reports' two files (JSON and Markdown)."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
from collections.abc import Iterable
from pathlib import Path


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest waited-for child (a sampler
    worker, ``Rscript``), in MB; ``peak_rss_mb`` is the larger of the two."""
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN is the largest waited-for child
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": max(own, kids), "peak_rss_self_mb": own, "peak_rss_children_mb": kids}


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0))


def machine() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one) and its core count."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPU(s) ({usable_cpus()} usable)"


def machine_facts(load_start) -> dict:
    """The machine as JSON fields: processor, CPUs (the machine's and the usable ones),
    memory in GB, Python's version, and the load averages (1, 5, 15 min) at the start
    (``load_start``, from :func:`os.getloadavg`) and now."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        pages = 0
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus": usable_cpus(),
        "memory_gb": pages / 2**30,
        "python": platform.python_version(),
        "load_start": [round(v, 2) for v in load_start],
        "load_end": [round(v, 2) for v in os.getloadavg()],
    }


def fmt_number(value: float | None, digits: int = 1, prefix: str = "") -> str:
    """A measure in a table cell: ``-`` for None, whole with thousands separators from 100
    on, else ``digits`` decimals; ``prefix`` (``<= ``, ``>= ``) before the number."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{prefix}{value:,.0f}"
    return f"{prefix}{value:.{digits}f}"


def fmt_cell(value, digits: int = 1) -> str:
    """Any value in a table cell: ``-`` for None, yes/no for a bool, a float with thousands
    separators and ``digits`` decimals, anything else as printed."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def md_row(cells: Iterable[object]) -> str:
    """One row of a Markdown table."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def median(records: list[dict], key: str) -> float | None:
    """The median of ``key`` over the records that hold a number there (None if none)."""
    values = [r[key] for r in records if isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


def write_reports(json_path: Path, md_path: Path, payload: dict, text: str,
                  indent: int = 2, newline: str = "") -> None:  # fmt: skip
    """Write ``payload`` as JSON (``indent``, then ``newline``) and ``text`` (Markdown), each
    atomically (:func:`lmm_pymc.files.atomic_path`): a killed run leaves the old file or
    the new one, never half of one."""
    from lmm_pymc.files import atomic_path

    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(payload, indent=indent) + newline)
    with atomic_path(md_path) as tmp:
        tmp.write_text(text)
