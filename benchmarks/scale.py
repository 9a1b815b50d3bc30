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

A new design is one more :class:`Case` in :data:`CASES`: a function that writes the files
and returns the true values, and a function that fits them in the child process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "scale"

#: the stages timed in every repeat, in the order of the report: (key, label)
STAGES: tuple[tuple[str, str], ...] = (
    ("statistics_s", "file read + per-group statistics (Dask)"),
    ("build_compile_s", "model build + compile (and fit's bookkeeping)"),
    ("sampling_s", "sampling (NUTS, tuning included)"),
    ("random_effects_s", "exact random-effect draws"),
    ("end_to_end_s", "end to end (statistics + fit)"),
)

#: the variables whose smallest bulk ESS is reported
ESS_VARIABLES = ("beta", "sigma", "sigs")

#: loaded before the clock starts (their import is reported as ``import_s``, once per process)
IMPORTS = ("numpy", "pandas", "pyarrow.parquet", "dask.dataframe", "arviz", "pymc", "nutpie",
           "lmm_pymc.bigdata", "lmm_pymc.fitting", "lmm_pymc.marginal")  # fmt: skip

#: central posterior interval used for "truth covered"
INTERVAL = 0.95


# ------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    """One benchmarked design.

    ``write(directory, rows, groups, files, seed)`` writes the Parquet files into
    ``directory`` and returns ``{"truth": [[name, variable, selection, value], ...],
    "realized": {name: value}}`` (JSON-able; ``realized``: the same quantities computed
    from the random effects actually drawn, e.g. their sample sds, which the posterior
    estimates for a finite number of groups); ``run(directory, fit_options)`` runs in the
    child process, reads the files, fits, and returns ``(idata, {stage: seconds})`` with at least
    ``statistics_s``.
    """

    name: str
    description: str
    formula: str
    write: Callable[[Path, int, int, int, int], dict]
    run: Callable[[Path, dict], tuple[object, dict[str, float]]]
    #: (rows, groups, files) of the full and of the quick run, unless given on the command line
    full: tuple[int, int, int] = (10_000_000, 10_000, 16)
    quick: tuple[int, int, int] = (100_000, 100, 4)


def _write_single(directory: Path, rows: int, groups: int, files: int, seed: int) -> dict:
    """The tutorial's generative model on ``rows`` rows of ``groups`` groups.

    ``y = (6 + b0_j) + (4 + b1_j) x + e``, ``(b0_j, b1_j) ~ N(0, Sigma)`` with sds (3, 2)
    and correlation 0.7, ``e ~ N(0, 1)`` (the values of :mod:`lmm_pymc.tutorial`); ``x``
    takes the tutorial's values 1..10 and every row falls into a uniformly drawn group, so
    every file holds rows of (nearly) every group, in no order.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmm_pymc import tutorial

    rng = np.random.default_rng(seed)
    sd0, sd1 = tutorial.SIGMAS
    cov = np.array([[sd0**2, tutorial.RHO * sd0 * sd1], [tutorial.RHO * sd0 * sd1, sd1**2]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=groups)  # (J, 2)
    beta0, beta1 = tutorial.BETA
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for k in range(files):
        n = int(bounds[k + 1] - bounds[k])
        group = rng.integers(0, groups, size=n)
        x = rng.integers(1, 11, size=n).astype(np.float64)
        y = (beta0 + b[group, 0]) + (beta1 + b[group, 1]) * x
        y += tutorial.SIGMA * rng.standard_normal(n)
        table = pa.table({"group_id": group.astype(np.int32) + 1, "x": x, "y": y})
        pq.write_table(table, directory / f"part-{k:03d}.parquet", row_group_size=1 << 20)
        del group, x, y, table
    truth = [
        ["beta[intercept]", "beta", {"fixed_effect": "intercept"}, beta0],
        ["beta[x]", "beta", {"fixed_effect": "x"}, beta1],
        ["sigma", "sigma", {}, tutorial.SIGMA],
        ["sigs[intercept|group_id]", "sigs", {"random_effect": "intercept|group_id"}, sd0],
        ["sigs[x|group_id]", "sigs", {"random_effect": "x|group_id"}, sd1],
        ["R[intercept|group_id, x|group_id]", "R",
         {"random_effect": "intercept|group_id", "random_effect_": "x|group_id"},
         tutorial.RHO],
    ]  # fmt: skip
    realized = {
        # the data identify the fixed effects plus the drawn effects' mean
        "beta[intercept]": float(tutorial.BETA[0] + b[:, 0].mean()),
        "beta[x]": float(tutorial.BETA[1] + b[:, 1].mean()),
        "sigs[intercept|group_id]": float(b[:, 0].std(ddof=1)),
        "sigs[x|group_id]": float(b[:, 1].std(ddof=1)),
        "R[intercept|group_id, x|group_id]": float(np.corrcoef(b.T)[0, 1]),
    }
    return {"truth": truth, "realized": realized}


def _run_single(directory: Path, fit_options: dict) -> tuple[object, dict[str, float]]:
    import lmm_pymc
    from lmm_pymc.bigdata import group_statistics_from_files

    t0 = time.perf_counter()
    stats = group_statistics_from_files(directory, y="y", x="x", group="group_id")
    seconds = {"statistics_s": time.perf_counter() - t0, "groups_found": len(stats.group_labels)}
    seconds["peak_rss_after_statistics_mb"] = _peak_rss_mb()["peak_rss_mb"]
    idata, stages = _timed_fit(lambda: lmm_pymc.fit(stats, **fit_options))
    return idata, {**seconds, **stages}


#: the crossed design's true values: (intercept, slope), per factor (sds, correlation), sigma
CROSSED_BETA = (400.0, 30.0)
CROSSED_FACTORS = {"subject": ((40.0, 15.0), 0.3), "item": ((25.0, 10.0), -0.2)}
CROSSED_SIGMA = 60.0


def _write_crossed(directory: Path, rows: int, groups: int, files: int, seed: int) -> dict:
    """Subjects x items, fully crossed: ``groups`` subjects, ``rows // groups`` items, a
    +-0.5 condition ``x`` drawn per row; ``rt ~ 1 + x + (1 + x | subject) + (1 + x | item)``
    with :data:`CROSSED_BETA`, :data:`CROSSED_FACTORS`, :data:`CROSSED_SIGMA`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_items = max(2, rows // groups)
    sizes = {"subject": groups, "item": n_items}
    effects, truth, realized = {}, [], {}
    for name, ((sd0, sd1), rho) in CROSSED_FACTORS.items():
        cov = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
        b = rng.multivariate_normal(np.zeros(2), cov, size=sizes[name])
        effects[name] = b
        terms = [f"intercept|{name}", f"x|{name}"]
        for t, sd in zip(terms, (sd0, sd1), strict=True):
            truth.append([f"sigs[{t}]", "sigs", {"random_effect": t}, sd])
        truth.append([f"R[{terms[0]}, {terms[1]}]", "R",
                      {"random_effect": terms[0], "random_effect_": terms[1]}, rho])  # fmt: skip
        realized[f"sigs[{terms[0]}]"] = float(b[:, 0].std(ddof=1))
        realized[f"sigs[{terms[1]}]"] = float(b[:, 1].std(ddof=1))
        realized[f"R[{terms[0]}, {terms[1]}]"] = float(np.corrcoef(b.T)[0, 1])
    subject, item = np.meshgrid(np.arange(groups), np.arange(n_items), indexing="ij")
    subject, item = subject.ravel(), item.ravel()
    x = rng.choice([-0.5, 0.5], size=subject.size)
    bs, bi = effects["subject"], effects["item"]
    y = (CROSSED_BETA[0] + bs[subject, 0] + bi[item, 0]
         + (CROSSED_BETA[1] + bs[subject, 1] + bi[item, 1]) * x
         + CROSSED_SIGMA * rng.standard_normal(subject.size))  # fmt: skip
    bounds = np.linspace(0, subject.size, files + 1).astype(np.int64)
    for k in range(files):
        sl = slice(int(bounds[k]), int(bounds[k + 1]))
        columns = {"subject": subject[sl].astype(np.int32) + 1,
                   "item": item[sl].astype(np.int32) + 1, "x": x[sl], "rt": y[sl]}  # fmt: skip
        pq.write_table(pa.table(columns), directory / f"part-{k:03d}.parquet")
    # the data identify the fixed effects plus both factors' drawn effects' means
    for k, name in enumerate(("beta[intercept]", "beta[x]")):
        realized[name] = float(CROSSED_BETA[k] + bs[:, k].mean() + bi[:, k].mean())
    truth = [
        ["beta[intercept]", "beta", {"fixed_effect": "intercept"}, CROSSED_BETA[0]],
        ["beta[x]", "beta", {"fixed_effect": "x"}, CROSSED_BETA[1]],
        ["sigma", "sigma", {}, CROSSED_SIGMA],
        *truth,
    ]
    return {"truth": truth, "realized": realized}


def _run_crossed(directory: Path, fit_options: dict) -> tuple[object, dict[str, float]]:
    import pandas as pd

    import lmm_pymc

    t0 = time.perf_counter()
    frame = pd.read_parquet(directory)
    seconds = {"statistics_s": time.perf_counter() - t0}
    seconds["peak_rss_after_statistics_mb"] = _peak_rss_mb()["peak_rss_mb"]
    formula = CASES["crossed"].formula
    idata, stages = _timed_fit(lambda: lmm_pymc.fit(frame, formula, **fit_options))
    return idata, {**seconds, **stages}


#: the registry of designs; the report has one section per case run
CASES: dict[str, Case] = {
    "single": Case(
        name="single",
        description="one grouping factor, the tutorial's model on per-group sums from Parquet",
        formula="y ~ 1 + x + (1 + x | group_id)",
        write=_write_single,
        run=_run_single,
    ),
    "crossed": Case(
        name="crossed",
        description="crossed subjects x items, read from Parquet, subjects integrated out and "
        "items sampled (the default marginal fit)",
        formula="rt ~ 1 + x + (1 + x | subject) + (1 + x | item)",
        write=_write_crossed,
        run=_run_crossed,
        full=(100_000, 1_000, 1),
        quick=(4_000, 100, 1),
    ),
}


# ------------------------------------------------------------------ child: one repeat
def _peak_rss_mb() -> dict[str, float]:
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN is the largest waited-for child
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": max(own, kids), "peak_rss_self_mb": own, "peak_rss_children_mb": kids}


def _timed_fit(call: Callable[[], object]) -> tuple[object, dict[str, float]]:
    """Run ``call`` (a :func:`lmm_pymc.fit`) and split its time into stages.

    Sampling is nutpie's own clock (``posterior.attrs["sampling_time"]``); the exact
    random-effect draws are timed around :func:`lmm_pymc.marginal.random_effects_draws`;
    the rest of the fit (model build, compilation, diagnostics) is build + compile, of
    which the PyMC model's build is timed around ``lmm_pymc.fitting.build_model``.
    """
    import lmm_pymc.fitting as fitting
    import lmm_pymc.marginal as marginal

    spent = {"random_effects_s": 0.0, "build_s": 0.0}
    patched = [(marginal, "random_effects_draws", "random_effects_s"),
               (fitting, "build_model", "build_s")]  # fmt: skip
    originals = []
    for module, name, key in patched:
        if not hasattr(module, name):  # timed only where the package still has it
            spent[key] = float("nan")
            continue
        original = getattr(module, name)
        originals.append((module, name, original))
        setattr(module, name, _stopwatch(original, spent, key))
    try:
        t0 = time.perf_counter()
        idata = call()
        fit_s = time.perf_counter() - t0
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
    sampling_s = float(idata.posterior.attrs.get("sampling_time", float("nan")))
    return idata, {
        "fit_s": fit_s,
        "sampling_s": sampling_s,
        **spent,
        "build_compile_s": fit_s - sampling_s - spent["random_effects_s"],
    }


def _stopwatch(function: Callable, spent: dict[str, float], key: str) -> Callable:
    """``function``, adding the seconds of every call to ``spent[key]``."""

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - t

    return timed


def _posterior_checks(idata, truth: list, realized: dict) -> dict:
    """Divergences, NUTS steps per draw, min bulk ESS over :data:`ESS_VARIABLES`, and
    whether each true value (and each realized one) lies in its central interval."""
    import arviz as az
    import numpy as np

    post = idata.posterior
    checked = post[[v for v in ESS_VARIABLES if v in post]]
    ess = az.ess(checked, method="bulk")
    min_ess = min(float(ess[v].min()) for v in ess.data_vars)
    r_hat = az.rhat(checked)
    max_r_hat = max(float(r_hat[v].max()) for v in r_hat.data_vars)
    covered, covered_realized = {}, {}
    lo_q, hi_q = (1 - INTERVAL) / 2, 1 - (1 - INTERVAL) / 2
    intervals = {}
    for name, var, sel, value in truth:
        draws = post[var].sel(sel).values.reshape(-1) if sel else post[var].values.reshape(-1)
        lo, hi = np.quantile(draws, [lo_q, hi_q])
        intervals[name] = [float(lo), float(hi), float(value)]
        covered[name] = bool(lo <= value <= hi)
        if name in realized:
            covered_realized[name] = bool(lo <= realized[name] <= hi)
    steps = next((v for v in ("n_steps", "tree_size") if v in idata.sample_stats), None)
    b_names = [v for v in post.data_vars if str(v).startswith("b_")]
    return {
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "steps_per_draw": float(idata.sample_stats[steps].mean()) if steps else None,
        "min_ess_bulk": min_ess,
        "max_r_hat": max_r_hat,
        "covered": covered,
        "all_covered": all(covered.values()),
        "realized": realized,
        "covered_realized": covered_realized,
        "intervals": intervals,
        "random_effect_shapes": {str(v): list(post[v].shape) for v in b_names},
    }


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
    end_to_end = time.perf_counter() - t1
    record = {
        "case": case_name,
        "import_s": import_s,
        **stages,
        "end_to_end_s": end_to_end,
        "process_s": import_s + end_to_end,
        **_peak_rss_mb(),
        **_posterior_checks(idata, meta["truth"], meta.get("realized", {})),
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


def _median(records: list[dict], key: str) -> float | None:
    values = [r[key] for r in records if isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


def summarize(records: list[dict]) -> dict:
    """Medians over repeats of every stage, the peak memory and the checks."""
    keys = [k for k, _ in STAGES] + ["fit_s", "build_s", "import_s", "process_s", "peak_rss_mb",
                                     "peak_rss_after_statistics_mb", "min_ess_bulk",
                                     "divergences", "steps_per_draw", "max_r_hat"]  # fmt: skip
    out = {k: _median(records, k) for k in keys}
    out["max_peak_rss_mb"] = max(r["peak_rss_mb"] for r in records)
    out["all_covered_every_repeat"] = all(r["all_covered"] for r in records)
    out["realized_covered_every_repeat"] = all(all(r["covered_realized"].values())
                                               for r in records)  # fmt: skip
    return out


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
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
    for section in report["cases"]:
        s, cfg = section["summary"], section["settings"]
        lines += [
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
            per = ", ".join(_fmt(r.get(key)) for r in section["repeats"])
            lines.append(f"| {label} | {_fmt(s[key])} | {per} |")
        per_rss = ", ".join(_fmt(r["peak_rss_mb"], 0) for r in section["repeats"])
        per_stats = ", ".join(_fmt(r["peak_rss_after_statistics_mb"], 0)
                              for r in section["repeats"])  # fmt: skip
        per_ess = ", ".join(_fmt(r["min_ess_bulk"], 0) for r in section["repeats"])
        per_div = ", ".join(str(r["divergences"]) for r in section["repeats"])
        per_cov = ", ".join(_fmt(r["all_covered"]) for r in section["repeats"])
        per_real = ", ".join(_fmt(all(r["covered_realized"].values())) for r in section["repeats"])
        per_steps = ", ".join(_fmt(r["steps_per_draw"]) for r in section["repeats"])
        per_rhat = ", ".join(_fmt(r.get("max_r_hat"), 3) for r in section["repeats"])
        per_build = ", ".join(_fmt(r["build_s"]) for r in section["repeats"])
        lines += [
            f"| of which the PyMC model's build | {_fmt(s['build_s'])} | {per_build} |",
            f"| (import of the libraries, once per process, not in end to end) | "
            f"{_fmt(s['import_s'])} | "
            f"{', '.join(_fmt(r['import_s']) for r in section['repeats'])} |",
            f"| (process: import + end to end) | {_fmt(s['process_s'])} | "
            f"{', '.join(_fmt(r['process_s']) for r in section['repeats'])} |",
            "",
            "| measure | median | per repeat |",
            "|---|---:|---|",
            f"| peak RSS, MB | {_fmt(s['peak_rss_mb'], 0)} | {per_rss} |",
            f"| peak RSS after the statistics stage, MB | "
            f"{_fmt(s['peak_rss_after_statistics_mb'], 0)} | {per_stats} |",
            f"| divergences | {_fmt(s['divergences'], 0)} | {per_div} |",
            f"| NUTS steps per draw | {_fmt(s['steps_per_draw'])} | {per_steps} |",
            f"| max r_hat (beta, sigma, sigs) | {_fmt(s.get('max_r_hat'), 3)} | {per_rhat} |",
            f"| min bulk ESS (beta, sigma, sigs) | {_fmt(s['min_ess_bulk'], 0)} | {per_ess} |",
            f"| every true value in its {INTERVAL:.0%} interval | "
            f"{_fmt(s['all_covered_every_repeat'])} | {per_cov} |",
            f"| every realized value (fixed effects plus the drawn effects' means, sample "
            f"sds, correlation of the drawn effects) in its interval | "
            f"{_fmt(s['realized_covered_every_repeat'])} | "
            f"{per_real} |",
            "",
        ]
        first = section["repeats"][0]
        lines += [f"{INTERVAL:.0%} intervals of the first repeat:", ""]
        for name, (lo, hi, value) in first["intervals"].items():
            mark = "covered" if first["covered"][name] else "NOT covered"
            real = first["realized"].get(name)
            extra = f"; realized {real:.4f}" if real is not None else ""
            lines.append(f"- `{name}`: [{lo:.4f}, {hi:.4f}], true {value:g} ({mark}){extra}")
        if "targets" in section:
            t = section["targets"]
            second = (
                f"peak memory <= {t['peak_rss_mb']:.0f} MB: {_fmt(t['peak_rss_met'])}"
                if "peak_rss_mb" in t
                else f"min bulk ESS >= {t['min_ess_bulk']:.0f}: {_fmt(t['min_ess_bulk_met'])}"
            )
            lines += [
                "",
                f"Targets: end to end <= {t['end_to_end_s']:.0f} s: "
                f"{_fmt(t['end_to_end_met'])}; {second}.",
            ]
        lines.append("")
    return "\n".join(lines)


#: the issue's targets for the full single-factor run
TARGETS = {"end_to_end_s": 60.0, "peak_rss_mb": 4000.0}
#: the crossed design's targets at 1000 subjects x 100 items: end to end and the smallest
#: bulk ESS over the variance parameters (sigma, sigs)
CROSSED_TARGETS = {"end_to_end_s": 60.0, "min_ess_bulk": 1000.0}


def _machine(load_start) -> dict:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        pages = 0
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus": len(os.sched_getaffinity(0)),
        "memory_gb": pages / 2**30,
        "python": platform.python_version(),
        "load_start": [round(v, 2) for v in load_start],
        "load_end": [round(v, 2) for v in os.getloadavg()],
    }


def run_case(case: Case, settings: dict, data_root: Path, fit_options: dict) -> dict:
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
    if case.name == "single" and not settings.get("quick"):
        section["targets"] = {
            **TARGETS,
            "end_to_end_met": summary["end_to_end_s"] <= TARGETS["end_to_end_s"],
            "peak_rss_met": summary["max_peak_rss_mb"] <= TARGETS["peak_rss_mb"],
        }
    if case.name == "crossed" and not settings.get("quick"):
        section["targets"] = {
            **CROSSED_TARGETS,
            "end_to_end_met": summary["end_to_end_s"] <= CROSSED_TARGETS["end_to_end_s"],
            "min_ess_bulk_met": summary["min_ess_bulk"] >= CROSSED_TARGETS["min_ess_bulk"],
        }
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
        "machine": _machine(load_start),
        "cases": sections,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = Path(f"{args.out}.json"), Path(f"{args.out}.md")
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    md_path.write_text(markdown(report))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
