"""The Laplace path beside the fully sampled one (``parametrization="laplace"`` vs
``"cholesky"``) on the same simulated binary or count data (docs/laplace.md).

The design: ``groups x rows`` with ``x ~ N(0, 1)``, ``y ~ 1 + x + (1 + x | g)``, truth
intercept 0.3 (bernoulli) or 1.0 (poisson, negbinomial), slope 0.5, sds (0.8, 0.4), rho 0.3.
Both fits with the same seed and settings; per fit: sampling time, leapfrog steps per draw,
divergences, max r_hat and min bulk ESS over beta and the sds, and min ESS per second of
sampling; then the gap between the two posterior means of beta, the sds and ``b_g`` in units
of ``cholesky``'s posterior sd.

    python benchmarks/laplace.py --family poisson --out benchmarks/results/laplace_poisson
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import fmt_number, machine_facts, md_row, write_reports  # noqa: E402

FORMULA = "y ~ 1 + x + (1 + x | g)"


def simulated(family: str, groups: int, rows: int, seed: int):
    import numpy as np
    import pandas as pd

    import lmm_pymc

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"g": np.repeat([f"g{j}" for j in range(groups)], rows),
                          "x": rng.normal(size=groups * rows)})  # fmt: skip
    intercept = 0.3 if family in ("bernoulli", "binomial") else 1.0
    return lmm_pymc.simulate(FORMULA, frame, beta={"intercept": intercept, "x": 0.5},
                             groups={"g": {"sigs": [0.8, 0.4], "rho": 0.3}}, seed=seed + 1,
                             family=family)  # fmt: skip


def run(family: str, groups: int, rows: int, draws: int, chains: int, seed: int) -> dict:
    import numpy as np

    import lmm_pymc

    sim = simulated(family, groups, rows, seed)
    fits, records = {}, []
    for parametrization in ("laplace", "cholesky"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = lmm_pymc.fit(sim, FORMULA, parametrization=parametrization, family=family,
                                 draws=draws, tune=draws, chains=chains, random_seed=seed,
                                 progressbar=False, pointwise=False)  # fmt: skip
            diag = lmm_pymc.diagnose(idata, warn=False)
        seconds = idata.posterior.attrs["sampling_time"]
        records.append({"parametrization": parametrization, "sampling_s": seconds,
                        "steps": float(idata.sample_stats["n_steps"].mean()),
                        "divergences": diag.divergences, "max_r_hat": diag.max_r_hat,
                        "min_ess_bulk": diag.min_ess_bulk,
                        "ess_per_s": diag.min_ess_bulk / seconds})  # fmt: skip
        fits[parametrization] = idata.posterior
    gaps = {}
    for name in ("beta", "sigs", "b_g"):
        a, c = fits["laplace"][name], fits["cholesky"][name]
        gap = np.abs(a.mean(("chain", "draw")) - c.mean(("chain", "draw"))) / c.std(("chain", "draw"))
        gaps[name] = float(gap.max())
    return {"records": records, "max_gap_in_sd": gaps}


def report(payload: dict) -> str:
    m, a = payload["machine"], payload["args"]
    lines = [
        f"# Laplace beside cholesky: {a['family']}, {a['groups']} groups x {a['rows']} rows", "",
        f"Command: `{payload['command']}`", "",
        f"Machine: {m['cpus']} CPUs, load {m['load_start']} at the start, {m['load_end']} at "
        f"the end (shared machine: times are noisy). `{FORMULA}`, {a['chains']} chains x "
        f"({a['draws']} + {a['draws']}), seed {a['seed']}, the same data for both fits.", "",
        md_row(["fit", "sampling s", "steps / draw", "divergences", "max r_hat",
                "min bulk ESS", "min ESS / s"]),
        md_row(["---"] * 7),
    ]  # fmt: skip
    for r in payload["records"]:
        lines.append(md_row([r["parametrization"], fmt_number(r["sampling_s"]),
                             fmt_number(r["steps"]), r["divergences"], f"{r['max_r_hat']:.3f}",
                             f"{r['min_ess_bulk']:.0f}", fmt_number(r["ess_per_s"])]))  # fmt: skip
    laplace, cholesky = payload["records"]
    gaps = ", ".join(f"{k} {v:.2f}" for k, v in payload["max_gap_in_sd"].items())
    lines += ["", f"Min ESS per second, laplace / cholesky: "
              f"{laplace['ess_per_s'] / cholesky['ess_per_s']:.2f}x. Largest gap between the "
              f"posterior means in cholesky's posterior sds: {gaps}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="poisson",
                        choices=["bernoulli", "poisson", "negbinomial"])
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(f"benchmarks/results/laplace_{args.family}")
    load = os.getloadavg()
    result = run(args.family, args.groups, args.rows, args.draws, args.chains, args.seed)
    payload = {"command": "python " + " ".join(sys.argv), "args": vars(args) | {"out": str(out)},
               **result, "machine": machine_facts(load)}  # fmt: skip
    write_reports(out.with_suffix(".json"), out.with_suffix(".md"), payload, report(payload))
    print(report(payload))


if __name__ == "__main__":
    main()
