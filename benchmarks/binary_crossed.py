"""Binary outcomes, crossed factors, correlated slopes: lmm_pymc beside brms and bambi.

The design: ``subjects x items x 2 conditions`` (every subject sees every item in both,
``cond`` coded -1/2, +1/2), outcome simulated by :func:`lmm_pymc.simulate` with
``family="bernoulli"`` from a fixed truth and seed; the model
``y ~ cond + (1 + cond | subject) + (1 + cond | item)``, logit link.

- lmm_pymc: ``fit(..., family="bernoulli")`` with its defaults (non-centred Cholesky, nutpie).
- brms (``benchmarks/binary_crossed_brms.R``): the same model with lmm_pymc's default priors
  written as brms priors (normal intercept and slope, half-normal sds, lkj(2)), rstan's NUTS.
- bambi (its own venv, ``benchmarks/setup_bambi.sh``): bambi fits *independent* group-specific
  effects only, so its model is ``(1 | subject) + (0 + cond | subject)`` and the same for
  items, with bambi's default priors, sampled by nutpie: a different, simpler model, stated as
  such in the report.

Each run is a fresh process (imports, compile and sampling all counted in ``end_to_end_s``);
``sampling_s`` is the sampler's own time; min bulk ESS is over the fixed effects, the sds and
(lmm_pymc, brms) the correlations. Figures are medians over ``--repeats`` runs per peer, and
the ratios are taken between those medians.

    python benchmarks/binary_crossed.py --repeats 3 --out benchmarks/results/binary_crossed
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import fmt_number, machine_facts, md_row, median, write_reports  # noqa: E402

FORMULA = "y ~ cond + (1 + cond | subject) + (1 + cond | item)"
BAMBI_FORMULA = "y ~ cond + (1 | subject) + (0 + cond | subject) + (1 | item) + (0 + cond | item)"
TRUTH = {"beta": {"intercept": 0.3, "cond": 0.5},
         "groups": {"subject": {"sigs": [0.8, 0.4], "rho": 0.3},
                    "item": {"sigs": [0.5, 0.3], "rho": -0.2}}}  # fmt: skip
R_SCRIPT = ROOT / "benchmarks" / "binary_crossed_brms.R"


def make_data(subjects: int, items: int, seed: int, folder: Path) -> tuple[Path, Path]:
    """The simulated data and lmm_pymc's default priors as CSV files in ``folder``."""
    import numpy as np
    import pandas as pd

    import lmm_pymc
    from lmm_pymc.formula import design_from_formula

    s, i, c = np.meshgrid(np.arange(subjects), np.arange(items), (-0.5, 0.5), indexing="ij")
    frame = pd.DataFrame({"subject": [f"s{v}" for v in s.ravel()],
                          "item": [f"i{v}" for v in i.ravel()], "cond": c.ravel()})  # fmt: skip
    sim = lmm_pymc.simulate(FORMULA, frame, family="bernoulli", seed=seed, **TRUTH)
    data = folder / "data.csv"
    sim.data[["y", "cond", "subject", "item"]].to_csv(data, index=False)
    priors = lmm_pymc.default_priors(design_from_formula(FORMULA, sim.data), "bernoulli")
    rows = []
    for name, prior in priors.terms.items():
        kind, inner = name.split("[", 1)
        effect, _, group = inner.rstrip("]").partition("|")
        coef = "Intercept" if effect == "intercept" else effect
        cls = {"beta": "Intercept" if effect == "intercept" else "b", "sigs": "sd"}[kind]
        params = prior.kwargs
        rows.append({"class": cls, "coef": "" if cls == "Intercept" else coef, "group": group,
                     "mean": params.get("mu", 0.0), "sd": params.get("sigma")})  # fmt: skip
    rows.append({"class": "cor", "coef": "", "group": "", "mean": 0.0, "sd": priors.lkj_eta})
    path = folder / "priors.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return data, path


# ------------------------------------------------------------------ the children
def child(package: str, data_csv: str, out_json: str, spec: str) -> None:
    """One fit in this (fresh) process; its figures to ``out_json``."""
    import arviz as az
    import pandas as pd

    sampling = json.loads(spec)
    data = pd.read_csv(data_csv)
    if package == "lmm_pymc":
        import lmm_pymc

        idata = lmm_pymc.fit(data, FORMULA, family="bernoulli", progressbar=False, **sampling)
        names = ["beta", "sigs", "R"]
        sampling_s = float(idata.posterior.attrs["sampling_time"])
    else:
        import bambi

        model = bambi.Model(BAMBI_FORMULA, data, family="bernoulli")
        start = time.perf_counter()
        idata = model.fit(inference_method="nutpie", progressbar=False, **sampling)
        sampling_s = time.perf_counter() - start  # bambi's fit: nutpie's compile included
        names = [v for v in idata.posterior.data_vars
                 if v in ("Intercept", "cond") or v.endswith("_sigma")]  # fmt: skip
    summ = az.summary(idata, var_names=names, round_to="none").dropna()
    summ = summ[summ["sd"] > 0]  # the correlation matrices' constant diagonals
    record = {"sampling_s": sampling_s, "min_ess_bulk": float(summ["ess_bulk"].min()),
              "max_r_hat": float(summ["r_hat"].max()),
              "divergences": int(idata.sample_stats["diverging"].sum()),
              "means": summ["mean"].astype(float).to_dict()}  # fmt: skip
    Path(out_json).write_text(json.dumps(record, indent=1))


def run_python(package: str, python: str, data: Path, sampling: dict, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [python, str(Path(__file__).resolve()), "--child", package, str(data), str(out),
               json.dumps(sampling)]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"stopped after {timeout:.0f} s"}
        if done.returncode != 0 or not out.exists():
            return {"error": " | ".join(done.stderr.strip().splitlines()[-3:])}
        return {**json.loads(out.read_text()), "end_to_end_s": time.perf_counter() - start}


def run_brms(data: Path, priors: Path, sampling: dict, timeout: float) -> dict:
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["Rscript", "--vanilla", str(R_SCRIPT), str(data), str(priors), tmp,
               *(str(sampling[k]) for k in ("draws", "tune", "chains", "random_seed"))]
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"stopped after {timeout:.0f} s"}
        if done.returncode != 0:
            return {"error": " | ".join(done.stderr.strip().splitlines()[-3:])}
        times = pd.read_csv(Path(tmp) / "times.csv").iloc[0]
        summ = pd.read_csv(Path(tmp) / "summary.csv")
        summ = summ[summ["sd"] > 0]
        return {"end_to_end_s": time.perf_counter() - start, "sampling_s": float(times["sample_s"]),
                "compile_s": float(times["compile_s"]), "min_ess_bulk": float(summ["ess_bulk"].min()),
                "max_r_hat": float(summ["rhat"].max()), "divergences": int(times["divergences"]),
                "means": dict(zip(summ["variable"], summ["mean"].astype(float), strict=True))}  # fmt: skip


# ------------------------------------------------------------------ report
def summarize(runs: dict[str, list[dict]]) -> dict:
    out = {}
    for peer, records in runs.items():
        ok = [r for r in records if "error" not in r]
        for r in ok:
            r["ess_per_s"] = r["min_ess_bulk"] / r["sampling_s"]
        out[peer] = {k: median(ok, k) for k in ("end_to_end_s", "sampling_s", "min_ess_bulk",
                                                "ess_per_s", "max_r_hat", "divergences")}
        out[peer]["runs"] = len(ok)
    own = out.get("lmm_pymc", {})
    for peer in ("brms", "bambi"):
        if peer in out and out[peer]["runs"] and own.get("runs"):
            out[f"lmm_pymc_vs_{peer}"] = {
                "ess_per_s": own["ess_per_s"] / out[peer]["ess_per_s"],
                "end_to_end_speedup": out[peer]["end_to_end_s"] / own["end_to_end_s"]}
    return out


def report(payload: dict) -> str:
    figures = payload["figures"]
    lines = [f"# Binary outcome, crossed factors: {payload['rows']:,} rows", "",
             f"Command: `{payload['command']}`", "",
             f"Model `{FORMULA}`, bernoulli (logit); bambi: `{BAMBI_FORMULA}` (independent "
             "effects: bambi fits no correlated group-specific effects). "
             f"Sampling {payload['sampling']}; medians of the runs; load "
             f"{payload['machine']['load_start']} at the start, {payload['machine']['load_end']} "
             "at the end.", "",
             md_row(["peer", "runs", "end to end s", "sampling s", "min bulk ESS",
                     "min ESS / s", "max r_hat", "divergences"]),
             md_row(["---"] * 8)]  # fmt: skip
    for peer in payload["runs"]:
        f = figures[peer]
        lines.append(md_row([peer, f["runs"], fmt_number(f["end_to_end_s"]),
                             fmt_number(f["sampling_s"]), fmt_number(f["min_ess_bulk"], 0),
                             fmt_number(f["ess_per_s"], 2), fmt_number(f["max_r_hat"], 4),
                             fmt_number(f["divergences"], 0)]))  # fmt: skip
    lines.append("")
    for peer in ("brms", "bambi"):
        ratio = figures.get(f"lmm_pymc_vs_{peer}")
        if ratio:
            lines.append(f"- lmm_pymc / {peer}: min-ESS per second x{ratio['ess_per_s']:.1f}; "
                         f"end to end {ratio['end_to_end_speedup']:.1f}x faster.")
    errors = [f"- {peer}: {r['error']}" for peer, rs in payload["runs"].items() for r in rs
              if "error" in r]  # fmt: skip
    return "\n".join(lines + errors) + "\n"


def _added_to(earlier: dict, payload: dict) -> dict:
    """``payload`` with the runs of an ``earlier`` one of the same design and sampling
    before its own; the commands and the load figures of both are kept."""
    for key in ("rows", "sampling"):
        if earlier[key] != payload[key]:
            raise ValueError(f"--add-to: the earlier run's {key} is {earlier[key]}, "
                             f"this one's {payload[key]}")  # fmt: skip
    runs = {peer: earlier["runs"].get(peer, []) + records
            for peer, records in payload["runs"].items()}  # fmt: skip
    machine = dict(payload["machine"], load_start=[earlier["machine"]["load_start"],
                                                   payload["machine"]["load_start"]],
                   load_end=[earlier["machine"]["load_end"], payload["machine"]["load_end"]])
    return {**payload, "command": f"{earlier['command']}; then {payload['command']}",
            "runs": runs, "machine": machine}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peers", nargs="+", default=["lmm_pymc", "brms", "bambi"],
                        choices=["lmm_pymc", "brms", "bambi"])
    parser.add_argument("--bambi-python", default="/work/venvs/bambi/bin/python")
    parser.add_argument("--timeout", type=float, default=7200.0)
    parser.add_argument("--first-seed", type=int, default=1,
                        help="random_seed of the first repeat (the next ones count up)")
    parser.add_argument("--add-to", type=Path, default=None,
                        help="an earlier run's JSON (same design and sampling) whose runs "
                        "are kept: the report gives the medians of all of them")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/binary_crossed"))
    args = parser.parse_args(argv)
    load = os.getloadavg()
    sampling = {"draws": args.draws, "tune": args.tune, "chains": args.chains}
    runs: dict[str, list[dict]] = {peer: [] for peer in args.peers}
    with tempfile.TemporaryDirectory() as tmp:
        data, priors = make_data(args.subjects, args.items, 2026, Path(tmp))
        for k in range(args.repeats):
            spec = {**sampling, "random_seed": args.first_seed + k}
            for peer in args.peers:
                if peer == "brms":
                    record = run_brms(data, priors, spec, args.timeout)
                else:
                    python = sys.executable if peer == "lmm_pymc" else args.bambi_python
                    record = run_python(peer, python, data, spec, args.timeout)
                print(peer, k, {key: v for key, v in record.items() if key != "means"}, flush=True)
                runs[peer].append(record)
    payload = {"command": "python " + " ".join(sys.argv), "rows": args.subjects * args.items * 2,
               "sampling": sampling, "runs": runs, "machine": machine_facts(load)}  # fmt: skip
    if args.add_to is not None:
        payload = _added_to(json.loads(args.add_to.read_text()), payload)
    payload["figures"] = summarize(payload["runs"])
    write_reports(args.out.with_suffix(".json"), args.out.with_suffix(".md"), payload,
                  report(payload))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
    else:
        main()
