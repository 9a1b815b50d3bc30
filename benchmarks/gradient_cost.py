"""The cost of one log density + gradient of ``cholesky`` models per family, beside a
baseline checkout of the package, measured side by side in one run.

The gradient is what NUTS pays at every leapfrog step, so at a fixed number of steps per
draw its cost sets the sampling time. Each case builds the family's ``cholesky`` model of a
simulated data set (:func:`lmm_pymc.build_model`), compiles ``logp`` and its gradient with
PyTensor's numba backend (what nutpie runs), and times calls at the initial point: the
median of ``--repeats`` batches, in microseconds per call and nanoseconds per row. Every
case runs in a fresh process per checkout, the checkouts alternating (A B A B ...), so a
drift of the shared machine's speed moves both; the ratio is baseline / this checkout.

    python benchmarks/gradient_cost.py --baseline /path/to/other/checkout \\
        --out benchmarks/results/gradient_cost
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import fmt_number, machine_facts, md_row, median, write_reports  # noqa: E402

#: name -> (family, formula, subjects, items): every subject sees every item twice
#: (``cond`` -1/2, +1/2), so rows = 2 x subjects x items
CASES: dict[str, tuple[str, str, int, int]] = {
    "bernoulli_crossed": ("bernoulli", "y ~ cond + (1 + cond | subject) + (1 + cond | item)",
                          100, 20),
    "binomial_crossed": ("binomial", "y | trials(n) ~ cond + (1 + cond | subject) + (1 | item)",
                         100, 20),
    "poisson_crossed": ("poisson", "y ~ cond + (1 + cond | subject) + (1 | item)", 100, 20),
    "poisson_one_factor": ("poisson", "y ~ cond + (1 + cond | subject)", 400, 10),
}  # fmt: skip


def child(checkout: str, case: str, calls: int, repeats: int) -> dict:
    """Time one case in this process with the package of ``checkout``."""
    sys.path.insert(0, checkout)
    for name in [m for m in sys.modules if m == "lmm_pymc" or m.startswith("lmm_pymc.")]:
        del sys.modules[name]
    import numpy as np
    import pandas as pd

    import lmm_pymc
    from lmm_pymc.formula import design_from_formula

    assert Path(lmm_pymc.__file__).resolve().is_relative_to(Path(checkout).resolve()), (
        f"lmm_pymc imported from {lmm_pymc.__file__}, not from {checkout}")

    family, formula, subjects, items = CASES[case]
    s, i, c = np.meshgrid(np.arange(subjects), np.arange(items), (-0.5, 0.5), indexing="ij")
    frame = pd.DataFrame({"subject": s.ravel(), "item": i.ravel(), "cond": c.ravel(),
                          "n": 10})  # fmt: skip
    rng = np.random.default_rng(1)
    eta = 0.2 + 0.4 * frame["cond"] + rng.normal(0, 0.5, subjects)[s.ravel()]
    p = 1 / (1 + np.exp(-eta))
    frame["y"] = {"bernoulli": lambda: rng.binomial(1, p),
                  "binomial": lambda: rng.binomial(10, p),
                  "poisson": lambda: rng.poisson(np.exp(eta))}[family]()  # fmt: skip
    design = design_from_formula(formula, frame)
    model = lmm_pymc.build_model(design, "cholesky", family=family)
    fn = model.logp_dlogp_function(mode="NUMBA", ravel_inputs=True)
    fn.set_extra_values({})
    point = model.initial_point()
    x = np.concatenate([np.ravel(point[v.name]) for v in fn._grad_vars])
    fn(x)  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn(x)
        times.append((time.perf_counter() - start) / calls)
    us = float(np.median(times)) * 1e6
    return {"us_per_call": us, "ns_per_row": us * 1e3 / len(frame), "rows": len(frame),
            "parameters": int(x.size)}  # fmt: skip


def run_child(checkout: Path, case: str, calls: int, repeats: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(checkout), case,
           str(calls), str(repeats)]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(checkout))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=checkout)
    if done.returncode != 0:
        return {"error": " | ".join(done.stderr.strip().splitlines()[-3:])}
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(payload: dict) -> str:
    lines = [f"# Log density + gradient per call, `cholesky`, numba: this checkout beside "
             f"`{payload['baseline_label']}`", "",
             f"Command: `{payload['command']}`", "",
             f"Medians over {payload['rounds']} alternating fresh processes per checkout, each "
             f"the median of {payload['repeats']} batches of {payload['calls']} calls at the "
             f"initial point; load {payload['machine']['load_start']} at the start, "
             f"{payload['machine']['load_end']} at the end.", "",
             md_row(["case", "rows", "parameters", "baseline us", "this us", "this ns/row",
                     "speed-up x"]),
             md_row(["---"] * 7)]  # fmt: skip
    for case, fig in payload["figures"].items():
        lines.append(md_row([case, fig["rows"], fig["parameters"],
                             fmt_number(fig["baseline_us"], 0), fmt_number(fig["this_us"], 0),
                             fmt_number(fig["this_ns_per_row"], 1),
                             fmt_number(fig["speedup"], 2)]))  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="another checkout of the package (a git worktree)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gradient_cost"))
    args = parser.parse_args(argv)
    label = subprocess.run(["git", "-C", str(args.baseline), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True).stdout.strip() or str(args.baseline)
    load_start = os.getloadavg()
    runs: dict[str, dict[str, list[dict]]] = {}
    for case in args.cases:
        runs[case] = {"baseline": [], "this": []}
        for _ in range(args.rounds):
            for side, checkout in (("baseline", args.baseline), ("this", ROOT)):
                record = run_child(checkout, case, args.calls, args.repeats)
                runs[case][side].append(record)
                print(case, side, json.dumps(record), flush=True)
    figures = {}
    for case, sides in runs.items():
        ok = {side: [r for r in records if "error" not in r] for side, records in sides.items()}
        if not ok["baseline"] or not ok["this"]:
            continue
        base, this = median(ok["baseline"], "us_per_call"), median(ok["this"], "us_per_call")
        figures[case] = {"rows": ok["this"][0]["rows"], "parameters": ok["this"][0]["parameters"],
                         "baseline_us": base, "this_us": this,
                         "this_ns_per_row": median(ok["this"], "ns_per_row"),
                         "speedup": base / this}  # fmt: skip
    payload = {"command": "python " + " ".join(sys.argv), "baseline_label": label,
               "rounds": args.rounds, "calls": args.calls, "repeats": args.repeats,
               "machine": machine_facts(load_start), "runs": runs, "figures": figures}  # fmt: skip
    write_reports(args.out.with_suffix(".json"), args.out.with_suffix(".md"), payload,
                  report(payload))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
    else:
        main()
