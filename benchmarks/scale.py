"""Scale benchmark: fit a linear mixed model to data held in Parquet files, end to end.

One case per registered design (:data:`CASES`). For each case the script writes the data
once (chunk by chunk, never much more than one file in memory) into ``--data-dir`` and
reuses the files on later runs; every repeat then runs in a fresh subprocess, so that its
peak memory is its own, and goes through the whole path:

1. the per-group sums, read from the files with dask.dataframe
   (:func:`lmm_pymc.bigdata.group_statistics_from_files`, threaded scheduler, in-process);
2. the package's default fit on those sums (:func:`lmm_pymc.fit`: the ``marginal`` model on
   nutpie, 4 chains x (1000 tuning + 1000 draws)), whose stages are timed apart: model
   build + compile, sampling, and the exact random-effect draws ``b_<factor>``.

Per repeat it records each stage's seconds, the end-to-end seconds (statistics + fit),
peak RSS of the process and of its children (``getrusage``, ru_maxrss), the peak RSS
already reached after the statistics stage, divergences, the minimum bulk ESS over
``beta``, ``sigma`` and ``sigs`` (ArviZ), and whether each true value lies inside its 95%
central posterior interval. The report gives the medians over repeats and the machine,
and is written as ``<out>.json`` and ``<out>.md``.

Full run (10^7 rows, 10^4 groups, 3 repeats; the files take about 0.2 GB)::

    python benchmarks/scale.py

Smoke run (10^5 rows, 100 groups, 200 draws per chain, one repeat; about a minute)::

    python benchmarks/scale.py --quick --out /tmp/scale_quick

A new design is one more :class:`Case` in :data:`CASES` (``benchmarks/scale_cases.py``): a
function that writes the files and returns the true values, and a function that fits them in
the child process. This file is the entry point: the command line, the data, the repeats in
subprocesses (each child runs :func:`child`) and the two files; the report is in
``benchmarks/scale_report.py``, the helpers shared with ``benchmarks/benchmark.py`` in
``benchmarks/common.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run by its path: the repository's root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_facts, peak_rss_mb, write_reports  # noqa: E402
from benchmarks.scale_cases import CASES, Case, posterior_checks  # noqa: E402
from benchmarks.scale_report import markdown, summarize, targets  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "scale"

#: loaded before the clock starts (their import is reported as ``import_s``, once per process)
IMPORTS = ("numpy", "pandas", "pyarrow.parquet", "dask.dataframe", "arviz", "pymc", "nutpie",
           "lmm_pymc.bigdata", "lmm_pymc.fitting", "lmm_pymc.marginal")  # fmt: skip


# ------------------------------------------------------------------ child: one repeat
def child(case_name: str, directory: Path, fit_options: dict, result_path: Path) -> None:
    """One repeat, in its own process: statistics + fit, then the checks; writes JSON."""
    t0 = time.perf_counter()
    for module in IMPORTS:  # the libraries' import, reported apart from the stages
        importlib.import_module(module)
    import_s = time.perf_counter() - t0
    case = CASES[case_name]
    meta = json.loads((directory / "_meta.json").read_text())
    t1 = time.perf_counter()
    idata, stages = case.run(directory, fit_options)
    # a case's side measurements (``untimed_s``) are not part of its end to end
    end_to_end = time.perf_counter() - t1 - stages.get("untimed_s", 0.0)
    record = {
        "case": case_name,
        "import_s": import_s,
        **stages,
        "end_to_end_s": end_to_end,
        "process_s": import_s + end_to_end,
        **peak_rss_mb(),
        **posterior_checks(idata, meta["truth"], meta.get("realized", {})),
        "chains": int(idata.posterior.sizes["chain"]),
        "draws": int(idata.posterior.sizes["draw"]),
    }
    result_path.write_text(json.dumps(record, indent=1))


# ---------------------------------------------------------------------- parent: plan
def ensure_data(case: Case, root: Path, rows: int, groups: int, files: int, seed: int) -> Path:
    """The case's files in ``root`` (written once; ``_meta.json`` marks them complete)."""
    directory = root / f"{case.name}_rows{rows}_groups{groups}_files{files}_seed{seed}"
    meta_path = directory / "_meta.json"
    if meta_path.exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.parquet"):
        old.unlink()
    t0 = time.perf_counter()
    written = case.write(directory, rows, groups, files, seed)
    meta = {"case": case.name, "rows": rows, "groups": groups, "files": files, "seed": seed,
            **written, "write_s": time.perf_counter() - t0}  # fmt: skip
    meta_path.write_text(json.dumps(meta, indent=1))
    return directory


def _positive(text: str) -> int:
    try:
        value = int(float(text))
    except ValueError:
        value = None
    if value is None or value < 1 or value != float(text):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, found {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=["single"], choices=sorted(CASES),
                   help="designs to run (default: single)")  # fmt: skip
    p.add_argument("--rows", type=_positive, default=None, help="rows (default 1e7; quick 1e5)")
    p.add_argument("--groups", type=_positive, default=None, help="groups (default 1e4; quick 100)")
    p.add_argument("--files", type=_positive, default=None, help="Parquet files (default 16)")
    p.add_argument("--repeats", type=_positive, default=None, help="repeats (default 3; quick 1)")
    p.add_argument("--draws", type=_positive, default=None,
                   help="draws per chain (default: fit's default; quick 200)")  # fmt: skip
    p.add_argument("--tune", type=_positive, default=None,
                   help="tuning steps per chain (default: fit's default)")  # fmt: skip
    p.add_argument("--seed", type=int, default=2024, help="seed of the data (default 2024)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the Parquet files are written and reused "
                        "(default: <tmp>/lmm_pymc_scale)")  # fmt: skip
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="writes <out>.json and <out>.md "
                        "(default benchmarks/results/scale)")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1e5 rows, 100 groups, 4 files, 200 draws, 1 repeat",
                   )  # fmt: skip
    p.add_argument("--child", nargs=3, metavar=("CASE", "DIR", "RESULT"), help=argparse.SUPPRESS)
    p.add_argument("--fit-options", default="{}", help=argparse.SUPPRESS)
    return p


def _settings(args, case: Case) -> dict:
    # quick: short draws, but the default tuning (with 200 tuning steps a chain could stay
    # stuck far from the posterior on 100 groups)
    rows, groups, files = case.quick if args.quick else case.full
    quick = {"rows": rows, "groups": groups, "files": files, "repeats": 1, "draws": 200,
             "tune": None}  # fmt: skip
    full = {"rows": rows, "groups": groups, "files": files, "repeats": 3, "draws": None,
            "tune": None}  # fmt: skip
    base = quick if args.quick else full
    out = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()}
    if out["groups"] < 2 or out["groups"] > out["rows"]:
        raise SystemExit(
            f"--groups must lie between 2 and --rows={out['rows']}, found {out['groups']}"
        )
    if out["files"] > out["rows"]:
        raise SystemExit(f"--files must be at most --rows={out['rows']}, found {out['files']}")
    return {**out, "seed": args.seed, "quick": args.quick}


def run_case(case: Case, settings: dict, data_root: Path, fit_options: dict) -> dict:
    """The case's section of the report: its data (written once), every repeat in a fresh
    subprocess, the medians and, for a full run, the targets."""
    directory = ensure_data(case, data_root, settings["rows"], settings["groups"],
                            settings["files"], settings["seed"])  # fmt: skip
    data_mb = sum(p.stat().st_size for p in directory.glob("*.parquet")) / 2**20
    records = []
    for k in range(settings["repeats"]):
        options = {**fit_options, "random_seed": k + 1}
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "result.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case.name,
                   str(directory), str(result), "--fit-options", json.dumps(options)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 or not result.exists():
                sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
                raise SystemExit(f"repeat {k + 1} of case {case.name!r} failed")
            record = json.loads(result.read_text())
        record["repeat"] = k + 1
        records.append(record)
        print(
            f"[{case.name} {k + 1}/{settings['repeats']}] end to end "
            f"{record['end_to_end_s']:.1f} s (statistics {record['statistics_s']:.1f}, build + "
            f"compile {record['build_compile_s']:.1f}, sampling {record['sampling_s']:.1f}, "
            f"b draws {record['random_effects_s']:.1f}), peak RSS "
            f"{record['peak_rss_mb']:.0f} MB, min ESS {record['min_ess_bulk']:.0f}, "
            f"divergences {record['divergences']}, covered {record['all_covered']}",
            flush=True,
        )
    summary = summarize(records)
    section = {
        "case": case.name,
        "description": case.description,
        "formula": case.formula,
        "settings": settings,
        "fit_options": fit_options,
        "data_dir": str(directory),
        "data_mb": data_mb,
        "repeats": records,
        "summary": summary,
    }
    met = targets(case.name, settings, summary)
    if met is not None:
        section["targets"] = met
    return section


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.child:
        case_name, directory, result = args.child
        child(case_name, Path(directory), json.loads(args.fit_options), Path(result))
        return 0
    load_start = os.getloadavg()
    data_root = args.data_dir or Path(tempfile.gettempdir()) / "lmm_pymc_scale"
    sections = []
    for name in args.cases:
        settings = _settings(args, CASES[name])
        fit_options: dict = {"progressbar": False}
        for key in ("draws", "tune"):
            if settings[key] is not None:
                fit_options[key] = settings[key]
        sections.append(run_case(CASES[name], settings, data_root, fit_options))
    report = {
        "command": "python benchmarks/scale.py " + shlex.join(argv),
        "machine": machine_facts(load_start),
        "cases": sections,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = Path(f"{args.out}.json"), Path(f"{args.out}.md")
    write_reports(json_path, md_path, report, markdown(report), indent=1, newline="\n")
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
