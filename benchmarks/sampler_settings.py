"""Where a real-data case misses its ESS target: the default fit beside other sampler
settings and parametrizations, several seeds each, in one process.

``python benchmarks/sampler_settings.py --case orthodont --seeds 1 2 3`` fits the case of
the real-data suite (``benchmarks/realdata_cases.py``) with each setting of
:data:`SETTINGS` and each seed (4 chains x 1000 draws unless a setting says otherwise),
and reports per setting the smallest bulk ESS over the suite's compared scalars (fixed
effects, sigma, sds, correlations; ``benchmarks/realdata_compare.py``), where it is
reached, the largest r_hat, divergences and NUTS steps per draw; then the default fit's
quantiles of the scalar with the smallest ESS (is its posterior piled against 0?).
``centred_data`` is a different model (the numeric predictors centred in the data, so the
random intercept's sd is that at the predictors' means): it says whether the uncentred
predictor is what slows the sampler.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parent

#: name -> fit options (``centred_data``: the data's numeric predictors centred, see above)
SETTINGS: dict[str, dict] = {
    "default": {},
    "diagonal_mass_matrix": {"sampler_kwargs": {"low_rank_modified_mass_matrix": False}},
    "target_accept_0.95": {"target_accept": 0.95},
    "tune_2000": {"tune": 2000},
    "cholesky": {"parametrization": "cholesky"},
    "centred_data": {},
}


def _frame(case, centred: bool):
    """The case's rows (the suite's :func:`~benchmarks.realdata_cases.load`); ``centred``:
    its numeric predictors minus their means (not the outcome, not a grouping column)."""
    from benchmarks.realdata_cases import formula_columns, load

    frame = load(case)
    if centred:
        outcome = formula_columns(case)[0]
        for column in frame.columns:
            if (column != outcome and column not in case.groups
                    and frame[column].dtype.kind in "if"):  # fmt: skip
                frame[column] = frame[column] - frame[column].mean()
    return frame


def run(case_name: str, seeds: list[int], settings: list[str]) -> dict:
    import numpy as np

    import lmm_pymc
    from benchmarks.realdata import reference_records, suite_of
    from benchmarks.realdata_cases import ALL_CASES
    from benchmarks.realdata_compare import diagnostics, scalars

    case = ALL_CASES[case_name]
    reference = reference_records(suite_of(case_name))[case_name]
    rows, worst = [], None
    for name in settings:
        frame = _frame(case, centred=name == "centred_data")
        for seed in seeds:
            t0 = time.perf_counter()
            idata = lmm_pymc.fit(frame, case.formula, progressbar=False, random_seed=seed,
                                 **SETTINGS[name])  # fmt: skip
            record = {"setting": name, "seed": seed, "fit_s": time.perf_counter() - t0,
                      **{k: v for k, v in diagnostics(idata, reference).items()
                         if k not in ("ess_bulk", "r_hat")}}  # fmt: skip
            rows.append(record)
            print(json.dumps(record), flush=True)
            if name == "default" and worst is None:
                at = record["min_ess_bulk_at"]
                variable, selection = next((v, s) for n, v, s in scalars(reference) if n == at)
                draws = idata.posterior[variable].sel(selection).values.reshape(-1)
                quantiles = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95]
                values = np.quantile(draws, quantiles).tolist()
                worst = {"scalar": at,
                         "quantiles": dict(zip(map(str, quantiles), values, strict=True))}
    return {"case": case_name, "formula": case.formula, "seeds": seeds, "rows": rows,
            "default_worst": worst}  # fmt: skip


def report(payload: dict, command: str) -> str:
    lines = [f"# Sampler settings on `{payload['case']}`: `{payload['formula']}`", "",
             f"Command: `{command}`", "",
             "Per setting and seed: min bulk ESS of 4000 draws over the compared scalars, "
             "max r_hat, divergences, NUTS steps per draw (4 chains x 1000 draws).", "",
             "| setting | min bulk ESS per seed | median | at | max r_hat | divergences | "
             "steps / draw |", "| --- | --- | ---: | --- | ---: | ---: | ---: |"]  # fmt: skip
    for name in dict.fromkeys(r["setting"] for r in payload["rows"]):
        rows = [r for r in payload["rows"] if r["setting"] == name]
        ess = [r["min_ess_bulk"] for r in rows]
        lines.append(
            f"| `{name}` | {', '.join(f'{e:.0f}' for e in ess)} | {statistics.median(ess):.0f} | "
            f"{', '.join(sorted({r['min_ess_bulk_at'] for r in rows}))} | "
            f"{max(r['max_r_hat'] for r in rows):.3f} | {sum(r['divergences'] for r in rows)} | "
            f"{statistics.median(r['steps_per_draw'] for r in rows):.1f} |")  # fmt: skip
    worst = payload["default_worst"]
    if worst:
        q = ", ".join(f"{k}: {v:.4g}" for k, v in worst["quantiles"].items())
        lines += ["", f"The default fit (seed {payload['seeds'][0]}): quantiles of "
                  f"`{worst['scalar']}`: {q}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="orthodont")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--out", default=None, help="writes <out>.json and <out>.md "
                        "(default benchmarks/results/sampler_settings_<case>)")  # fmt: skip
    args = parser.parse_args(argv)
    out = Path(args.out or HERE / "results" / f"sampler_settings_{args.case}")
    payload = run(args.case, args.seeds, args.settings)
    command = "python benchmarks/sampler_settings.py " + " ".join(argv or sys.argv[1:])
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    out.with_suffix(".md").write_text(report(payload, command))
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
