"""SBC validation of the default model: a calibrated run and a deliberately miscalibrated one.

Run (resumable: re-run to continue)::

    python benchmarks/sbc_validation.py --simulations 200 --miscalibrated 50 --workers 2 \\
        --out sbc_validation

1. ``calibrated``: parameters drawn from the default priors, fitted with the same priors
   (``SBCConfig(parametrization=...)``, default ``cholesky``: nutpie on the model compiled
   once per worker; 2 chains x 500 draws after 500 tuning steps, thin 5, ranks 0..200).
   Every parameter must pass the ECDF-band uniformity test at family-wise level 0.95.
2. ``miscalibrated``: the same simulations fitted with ``beta ~ Normal(0, 1)`` instead of
   ``Normal(0, 10)``. The same test must fail.

``--parametrization marginal`` validates the package's default parametrization instead; each
fit then goes through :func:`lmm_pymc.fit`, which builds and compiles the model again.

``--family bernoulli|binomial|poisson|negbinomial`` (``--link``) validates a generalised
model: the outcome is drawn from that family and fitted with it, on the link scale's prior
:data:`lmm_pymc.sbc.config.LINK_SCALE_PRIORS` (the negative binomial's ``alpha`` from the
fit's ``Exponential(1)``), 20 groups x 10 rows unless ``--groups``/``--rows`` say otherwise,
a binomial with ``--trials`` trials per row; no miscalibrated run unless
``--miscalibrated`` asks for one (then fitted with ``beta ~ Normal(0, 0.1)``). ``--results
benchmarks/results`` writes ``sbc_<family>.md`` and ``.json`` there::

    python benchmarks/sbc_validation.py --family poisson --simulations 200 --workers 2 \\
        --draws 300 --tune 1000 --out sbc_validation --results benchmarks/results

(300 tuning steps leave some Poisson fits with a chain stuck in the sds' tail:
benchmarks/results/sbc_poisson.md.)
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):  # run by its path: the repository's root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_facts, md_row, write_reports  # noqa: E402
from lmm_pymc.files import atomic_path  # noqa: E402
from lmm_pymc.priors import Priors  # noqa: E402
from lmm_pymc.sampling import SamplerConfig  # noqa: E402
from lmm_pymc.sbc import SBCConfig, SBCResult, run_sbc  # noqa: E402

COLUMNS = ["parameter", "passed", "max_ecdf_excess", "chi2", "chi2_p_value"]


def _report(name: str, result: SBCResult, seconds: float, out: Path) -> bool:
    """Print the uniformity table and diagnostics, write plots and ranks; True if all pass."""
    table = result.uniformity(prob=0.95)
    diag = result.diagnostics()
    print(
        f"\n== {name}: {result.n_simulations} simulations, ranks in 0..{result.config.max_rank}, "
        f"{result.config.family}/{result.config.link}, {result.config.parametrization}, "
        f"{seconds:.0f} s this run, median {diag['seconds'].median():.1f} s per fit"
    )
    print(
        f"fits with divergences: {int((diag['divergences'] > 0).sum())} "
        f"(median {diag['divergences'].median():.0f}), max r_hat > 1.01: "
        f"{int((diag['max_r_hat'] > 1.01).sum())}"
    )
    with pd.option_context("display.width", 120, "display.float_format", "{:.4f}".format):
        print(table[COLUMNS].to_string(index=False))
    result.plot_ecdf(out / "ecdf.png")
    result.plot_histograms(out / "ranks.png")
    with atomic_path(out / "ranks.csv") as tmp:
        result.table.to_csv(tmp, index=False)
    return bool(table["passed"].all())


def summary(result: SBCResult, seconds: float) -> dict:
    """JSON-able summary of a run: its settings, diagnostics and the uniformity table."""
    table = result.uniformity(prob=0.95)
    diag = result.diagnostics()
    cfg = result.config
    return {
        "n_simulations": result.n_simulations,
        "max_rank": cfg.max_rank,
        "family": cfg.family,
        "link": cfg.link,
        "parametrization": cfg.parametrization,
        "design": f"{cfg.n_groups} groups x {cfg.n_per_group} rows",
        "config": cfg.to_dict(),
        "seconds_this_run": round(seconds, 1),
        "median_seconds_per_fit": float(diag["seconds"].median()),
        "total_seconds_of_fits": float(diag["seconds"].sum()),
        "fits_with_divergences": int((diag["divergences"] > 0).sum()),
        "fits_max_r_hat_over_1.01": int((diag["max_r_hat"] > 1.01).sum()),
        "median_min_ess_bulk": float(diag["min_ess_bulk"].median()),
        "familywise_prob": 0.95,
        "per_parameter_prob": 1.0 - 0.05 / len(table),
        "passed": bool(table["passed"].all()),
        "uniformity": table[COLUMNS].to_dict(orient="records"),
    }


def markdown(runs: dict[str, dict], command: str, facts: dict) -> str:
    """The Markdown report of the runs (``calibrated``, optionally ``miscalibrated``)."""
    first = next(iter(runs.values()))
    lines = [
        f"# SBC: family {first['family']} ({first['link']} link)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {facts['processor']}, {facts['cpus']} usable CPU(s), Python "
        f"{facts['python']}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{facts['load_start'][0]} at the start, {facts['load_end'][0]} at the end",
        "",
        f"Model `y ~ 1 + x + (1 + x | group_id)` on {first['design']} (x = 1..rows), outcome "
        f"drawn from and fitted with family {first['family']}, parametrization "
        f"{first['parametrization']}; ranks in 0..{first['max_rank']}. A run passes when every "
        "parameter's rank ECDF stays inside its simultaneous band at family-wise level 0.95 "
        "(Bonferroni over the parameters); the chi-square p-value of the binned ranks beside it.",
    ]
    for name, run in runs.items():
        lines += [
            "",
            f"## {name}: {run['n_simulations']} simulations, "
            f"{'passed' if run['passed'] else 'failed'}",
            "",
            f"Median {run['median_seconds_per_fit']:.1f} s per simulation (one worker; "
            f"{run['total_seconds_of_fits']:.0f} s summed over the simulations, "
            f"{run['seconds_this_run']:.0f} s wall this invocation). Fits with divergences: "
            f"{run['fits_with_divergences']}; max r_hat > 1.01: "
            f"{run['fits_max_r_hat_over_1.01']}; median of the fits' min bulk ESS "
            f"{run['median_min_ess_bulk']:.0f}.",
            "",
            md_row(["parameter", "passed", "max ECDF excess", "chi2", "chi2 p-value"]),
            md_row(["---"] * 5),
        ]
        for row in run["uniformity"]:
            name = row["parameter"].replace("|", "\\|")  # a bar inside a Markdown cell
            lines.append(md_row([name, "yes" if row["passed"] else "no",
                                 f"{row['max_ecdf_excess']:.4f}", f"{row['chi2']:.1f}",
                                 f"{row['chi2_p_value']:.3f}"]))  # fmt: skip
    return "\n".join(lines) + "\n"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--miscalibrated", type=int, default=None,
                        help="default 50 for the Gaussian, 0 for the other families")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parametrization", default="cholesky")
    parser.add_argument("--family", default="gaussian")
    parser.add_argument("--link", default=None)
    parser.add_argument("--groups", type=int, default=None, help="default 3 (gaussian), 20")
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--thin", type=int, default=5)
    parser.add_argument("--out", default="sbc_validation")
    parser.add_argument("--results", default=None,
                        help="folder for <name>.md and .json (e.g. benchmarks/results)")
    parser.add_argument("--name", default=None, help="the reports' name, default sbc_<family>")
    return parser.parse_args()


def main() -> int:
    args = _parse()
    warnings.filterwarnings("ignore")
    load_start = os.getloadavg()
    gaussian = args.family == "gaussian"
    out = Path(args.out) if gaussian else Path(args.out) / args.family
    sampling = SamplerConfig(draws=args.draws, tune=args.tune, chains=2, target_accept=None,
                             progressbar=False)  # fmt: skip
    groups = args.groups or (3 if gaussian else 20)
    common = {"parametrization": args.parametrization, "sampling": sampling, "thin": args.thin,
              "family": args.family, "link": args.link, "trials": args.trials,
              "n_groups": groups, "n_per_group": args.rows}  # fmt: skip
    runs: dict[str, dict] = {}

    start = time.perf_counter()
    good = run_sbc(args.simulations, out / "calibrated", SBCConfig(**common), workers=args.workers)
    seconds = time.perf_counter() - start
    ok = _report("calibrated", good, seconds, out / "calibrated")
    runs["calibrated"] = summary(good, seconds)

    detected = True
    n_wrong = args.miscalibrated if args.miscalibrated is not None else (50 if gaussian else 0)
    if n_wrong:
        fixed = "normal(0, 1)" if gaussian else "normal(0, 0.1)"
        base = good.config.priors
        wrong = SBCConfig(**common, priors=base, fit_priors=Priors(
            fixed=fixed, sigs=base.sigs, sigma=base.sigma, lkj_eta=base.lkj_eta, terms=base.terms))
        start = time.perf_counter()
        bad = run_sbc(n_wrong, out / "miscalibrated", wrong, workers=args.workers)
        seconds = time.perf_counter() - start
        detected = not _report("miscalibrated", bad, seconds, out / "miscalibrated")
        runs["miscalibrated"] = summary(bad, seconds)
    print(f"\ncalibrated run passes: {ok}; miscalibration detected: {detected}")
    if args.results:
        results = Path(args.results)
        command = "python " + shlex.join(["benchmarks/sbc_validation.py", *sys.argv[1:]])
        facts = machine_facts(load_start)
        payload = {"command": command, "machine": facts, "runs": runs}
        name = args.name or f"sbc_{args.family}"
        write_reports(results / f"{name}.json", results / f"{name}.md", payload,
                      markdown(runs, command, facts))
    return 0 if ok and detected else 1


if __name__ == "__main__":
    raise SystemExit(main())
