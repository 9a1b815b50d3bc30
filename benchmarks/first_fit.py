"""First-fit benchmark: where the time of a fit goes before its first draw, and after.

For every case (p slopes ``x1 .. xp`` beside the intercept, so p + 1 fixed-effect columns; q
random effects ``(1 + x1 .. | g)``; 1 factor, or 2 with a crossed ``(1 | h)``; ``--groups``
levels of g x ``--rows`` rows each) the package's default :func:`lmm_pymc.fit` runs in
fresh subprocesses (``benchmarks/first_fit_child.py``, which times every phase: formula and
design, PyMC model, graph rewrites, gradient, PyTensor compile, numba compile (or loading
from numba's on-disk cache), C wrappers, initial point, nutpie set-up, sampling,
InferenceData, exact random-effect draws, pointwise log-likelihood, posterior predictive):

- ``fresh``: empty caches (``NUMBA_CACHE_DIR`` and PyTensor's ``base_compiledir`` in a new
  directory): a machine that never compiled anything (opt-in, slow: ``--modes fresh new
  same``);
- ``new``: a structure not fitted before, on caches that hold one other model's compile
  (``y ~ 1 + x1 + x2 + (1 + x1 | g)``, the tutorial's shape with one more slope, fitted
  once into a seed cache that every case copies);
- ``same``: the same structure in a new process (the cache ``new`` left), and ``second``:
  a second fit of new data of that structure in that process.

Each figure's ratio is (time not sampling) / (sampling time), where sampling is nutpie's
run without its conversion to InferenceData, and "time not sampling" counts the imports
for the first fit of a process (``ratio_with_imports``) and not (``ratio``). With
``--bambi-python`` (a Python that has bambi: ``benchmarks/setup_bambi.sh``) bambi's first
fit of the same formula and data runs the same way, ``nutpie`` as its sampler; its group
effects are independent (no correlation), which the report says.

    python benchmarks/first_fit.py --p 1 7 13 25 --q 2 --factors 1 \\
        --bambi-python /work/venvs/bambi/bin/python

Writes ``<out>.json`` and ``<out>.md`` (default ``benchmarks/results/first_fit``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run by its path: the repository's root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_facts, write_reports  # noqa: E402
from benchmarks.first_fit_child import formula  # noqa: E402
from benchmarks.first_fit_report import markdown, summarize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "first_fit"
#: the one structure in the caches of ``new``: two slopes, not a case of the grid
SEED_FORMULA = "y ~ 1 + x1 + x2 + (1 + x1 | g)"


def child_env(cache: Path | None) -> dict[str, str]:
    """The child's environment: this checkout first on the path, caches in ``cache``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = str(cache / "numba")
        flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and "compiledir" not in f]
        env["PYTENSOR_FLAGS"] = ",".join([*flags, f"base_compiledir={cache / 'pytensor'}"])
    return env


def run_child(spec: dict, cache: Path | None, python: str, timeout: float) -> dict:
    """One child process: its record, or ``{"error": ...}``; wall seconds of the process."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [python, "-m", "benchmarks.first_fit_child", str(spec_path), str(out_path)]
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=child_env(cache), capture_output=True,
                                  text=True, timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"error": f"stopped after the timeout of {timeout:.0f} s"}
        wall = time.perf_counter() - start
        if done.returncode != 0 or not out_path.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return {"error": f"exit {done.returncode}: {' | '.join(tail)}", "command": shlex.join(cmd)}
        return {**json.loads(out_path.read_text()), "process_s": wall}


def spec_for(case: dict, args, package: str, fits: int, text: str | None = None) -> dict:
    sampling = {"draws": args.draws, "tune": args.tune, "chains": args.chains}
    return {"package": package, "case": case, "formula": text or formula(case["p"], case["q"], case["factors"]),
            "seed": args.seed, "fits": fits, "sampling": sampling}  # fmt: skip


def seed_cache(root: Path, args) -> Path:
    """A cache holding the tutorial's structure only (fitted once, in its own process)."""
    seed = root / "seed"
    if not seed.exists():
        case = {"p": 2, "q": 2, "factors": 1, "groups": args.groups, "rows": args.rows}
        spec = spec_for(case, args, "lmm_pymc", 1, SEED_FORMULA)
        record = run_child(spec, seed, sys.executable, args.timeout)
        if "error" in record:
            raise RuntimeError(f"the seed fit failed: {record['error']}")
    return seed


def measure_case(case: dict, args, root: Path) -> dict:
    """Every mode of one case (module docstring), lmm_pymc then bambi."""
    name = f"p{case['p']}_q{case['q']}_f{case['factors']}"
    out: dict = {"case": case, "formula": formula(case["p"], case["q"], case["factors"])}
    if "fresh" in args.modes:
        fresh = root / f"{name}_fresh"
        out["fresh"] = run_child(spec_for(case, args, "lmm_pymc", 1), fresh, sys.executable, args.timeout)
        shutil.rmtree(fresh, ignore_errors=True)
    cache = root / name
    if "new" in args.modes or "same" in args.modes:
        shutil.copytree(seed_cache(root, args), cache, dirs_exist_ok=True)
    if "new" in args.modes:
        out["new"] = run_child(spec_for(case, args, "lmm_pymc", 1), cache, sys.executable, args.timeout)
    if "same" in args.modes:
        out["same"] = run_child(spec_for(case, args, "lmm_pymc", 2), cache, sys.executable, args.timeout)
    if args.bambi_python:
        out["bambi"] = run_child(spec_for(case, args, "bambi", 2), cache / "bambi",
                                 args.bambi_python, args.timeout)  # fmt: skip
    print(json.dumps({"case": name, **summarize(out)}), flush=True)
    return out


def cases(args) -> list[dict]:
    return [{"p": p, "q": q, "factors": f, "groups": args.groups, "rows": args.rows}
            for f in args.factors for q in args.q for p in args.p if q <= p + 1]  # fmt: skip


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=int, nargs="+", default=[1, 7, 13, 25],
                        help="slopes beside the intercept (p + 1 fixed-effect columns)")
    parser.add_argument("--q", type=int, nargs="+", default=[1, 2, 3], help="random effects of g")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    parser.add_argument("--groups", type=int, default=60)
    parser.add_argument("--rows", type=int, default=20, help="rows per group")
    parser.add_argument("--modes", nargs="+", default=["new", "same"],
                        choices=["fresh", "new", "same"])  # fmt: skip
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bambi-python", help="a Python with bambi (benchmarks/setup_bambi.sh)")
    parser.add_argument("--cache-root", type=Path, help="where the caches go (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    load = os.getloadavg()
    command = "python benchmarks/first_fit.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(dir=args.cache_root) as tmp:
        results = [measure_case(case, args, Path(tmp)) for case in cases(args)]
    report = {"command": command, "machine": machine_facts(load), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "cache_root")},
              "results": results}  # fmt: skip
    report["settings"]["bambi_python"] = args.bambi_python
    write_reports(args.out.with_suffix(".json"), args.out.with_suffix(".md"), report, markdown(report))


if __name__ == "__main__":
    main()
