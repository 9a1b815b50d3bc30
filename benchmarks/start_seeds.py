"""Do the chains of a large data set ever stick? The tutorial's design at 10^6 rows
(``tutorial.design_frame(1000, 1000)``, simulated with seed 2024) fitted with the defaults
(4 x (1000 + 1000)) once per ``random_seed``; per seed: the wall time of ``fit``, divergences,
max r_hat and min bulk ESS over beta, sigma and the group sds (:func:`lmm_pymc.diagnose`).
Issue target: every r_hat <= 1.01 on 20 seeds.

    python benchmarks/start_seeds.py --seeds 1-20 --out benchmarks/results/start_seeds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import fmt_number, machine_facts, md_row, median, write_reports  # noqa: E402


def seeds_arg(text: str) -> list[int]:
    """``"1-20"`` or ``"1,4,7"`` as a list of seeds."""
    if "-" in text:
        first, last = (int(v) for v in text.split("-", 1))
        return list(range(first, last + 1))
    return [int(v) for v in text.split(",")]


def run(groups: int, rows: int, seeds: list[int]) -> list[dict]:
    import lmm_pymc
    from lmm_pymc import tutorial

    sim = lmm_pymc.simulate(data=tutorial.design_frame(groups, rows), seed=2024)
    records = []
    for seed in seeds:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = lmm_pymc.fit(sim.data, random_seed=seed, progressbar=False)
            diag = lmm_pymc.diagnose(idata, warn=False)
        record = {"seed": seed, "fit_s": time.perf_counter() - start,
                  "divergences": diag.divergences, "max_r_hat": diag.max_r_hat,
                  "min_ess_bulk": diag.min_ess_bulk,
                  "worst": diag.worst_r_hat_parameter}  # fmt: skip
        print(record, flush=True)
        records.append(record)
    return records


def report(payload: dict) -> str:
    records = payload["records"]
    bad = [r["seed"] for r in records if r["max_r_hat"] > 1.01 or r["divergences"]]
    lines = [
        f"# Chains at {payload['rows']:,} rows, one fit per seed", "",
        f"Command: `{payload['command']}`", "",
        f"Machine: {payload['machine']['cpus']} CPUs, load {payload['machine']['load_start']} "
        f"at the start, {payload['machine']['load_end']} at the end.", "",
        f"{len(records)} seeds; max r_hat over all seeds "
        f"{max(r['max_r_hat'] for r in records):.4f}; min bulk ESS "
        f"{min(r['min_ess_bulk'] for r in records):.0f}; divergences "
        f"{sum(r['divergences'] for r in records)}; median fit "
        f"{fmt_number(median(records, 'fit_s'))} s; seeds over r_hat 1.01 or with "
        f"divergences: {bad or 'none'}.", "",
        md_row(["seed", "fit s", "divergences", "max r_hat", "min bulk ESS", "worst"]),
        md_row(["---"] * 6),
    ]
    for r in records:
        lines.append(md_row([r["seed"], fmt_number(r["fit_s"]), r["divergences"],
                             f"{r['max_r_hat']:.4f}", f"{r['min_ess_bulk']:.0f}",
                             f"`{r['worst']}`"]))  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000, help="rows per group")
    parser.add_argument("--seeds", type=seeds_arg, default=seeds_arg("1-20"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/start_seeds"))
    args = parser.parse_args(argv)
    load = os.getloadavg()
    records = run(args.groups, args.rows, args.seeds)
    payload = {"command": "python " + " ".join(sys.argv), "rows": args.groups * args.rows,
               "records": records, "machine": machine_facts(load)}  # fmt: skip
    write_reports(args.out.with_suffix(".json"), args.out.with_suffix(".md"), payload,
                  report(payload))  # fmt: skip


if __name__ == "__main__":
    main()
