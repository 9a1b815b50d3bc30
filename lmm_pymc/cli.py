"""Command line: ``lmm-pymc demo | simulate | fit | sbc``."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

__all__ = ["main"]


def _add_sampling_args(p: argparse.ArgumentParser, *, draws: int, tune: int, chains: int) -> None:
    from .fit import SAMPLERS
    from .models import PARAMETRIZATIONS

    p.add_argument(
        "--parametrization",
        default="marginal",
        choices=PARAMETRIZATIONS,
        help="model parametrization (default: %(default)s)",
    )
    p.add_argument(
        "--sampler",
        default=SAMPLERS[0],
        choices=SAMPLERS,
        help="NUTS implementation (default: %(default)s)",
    )
    p.add_argument(
        "--draws", type=int, default=draws, help="draws per chain (default: %(default)s)"
    )
    p.add_argument(
        "--tune", type=int, default=tune, help="tuning steps per chain (default: %(default)s)"
    )
    p.add_argument(
        "--chains", type=int, default=chains, help="number of chains (default: %(default)s)"
    )
    p.add_argument(
        "--target-accept",
        type=float,
        default=None,
        help="NUTS target acceptance rate (default: 0.99 for marginal, 0.95 otherwise)",
    )
    p.add_argument(
        "--sampler-seed", type=int, default=1, help="seed of the sampler (default: %(default)s)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _fit_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        parametrization=args.parametrization,
        sampler=args.sampler,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        target_accept=args.target_accept,
        random_seed=args.sampler_seed,
        progressbar=not args.no_progress,
    )


def _print_table(table: pd.DataFrame) -> None:
    with pd.option_context(
        "display.width", 140, "display.max_columns", 20, "display.float_format", "{:.3f}".format
    ):
        print(table.to_string(index=False))


def _cmd_demo(args: argparse.Namespace) -> int:
    from .fit import fit
    from .recovery import plot_recovery, recovery_table
    from .simulate import simulate

    sim = simulate(seed=args.seed)
    t = sim.truth
    print("Simulated the tutorial's design: 3 groups x 10 rows, x = 1..10")
    print(
        f"  true beta = {t.beta.tolist()}, sigmas = {t.sigmas.tolist()}, rho = {t.rho}, "
        f"residual sd = {t.sigma}  (seed {args.seed})"
    )
    print(sim.data.head(6).to_string(index=False))
    print(f"\nFitting with {args.sampler} NUTS, parametrization {args.parametrization!r} ...")
    start = time.perf_counter()
    idata = fit(sim, **_fit_kwargs(args))
    print(f"done in {time.perf_counter() - start:.1f} s\n")
    table = recovery_table(idata, t, random_effects=args.random_effects)
    _print_table(table)
    print(f"\n{int(table['covered'].sum())} of {len(table)} true values inside their 94% HDI")
    plot_recovery(idata, t, args.plot)
    print(f"posterior-vs-truth plot written to {args.plot}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import simulate

    sim = simulate(
        n_groups=args.groups,
        n_per_group=args.rows,
        beta=(args.alpha, args.beta),
        sigmas=(args.sd_intercept, args.sd_slope),
        rho=args.rho,
        sigma=args.sigma,
        seed=args.seed,
    )
    sim.data.to_csv(args.out, index=False)
    print(f"wrote {len(sim.data)} rows in {args.groups} groups to {args.out}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import arviz as az

    from .fit import fit

    path = Path(args.csv)
    if not path.is_file():
        raise ValueError(f"csv must be an existing file, found {str(path)!r}")
    data = pd.read_csv(path)
    if args.formula:
        return _fit_formula(args, data)
    idata = fit(data, y=args.y, x=args.x, group=args.group, **_fit_kwargs(args))
    summary = az.summary(
        idata, var_names=["alpha_0", "beta_0", "sigma_g", "sigs", "rho"], hdi_prob=0.94
    )
    _print_table(summary.reset_index(names="parameter"))
    if args.out:
        idata.to_netcdf(args.out)
        print(f"posterior written to {args.out}")
    return 0


def _fit_formula(args: argparse.Namespace, data: pd.DataFrame) -> int:
    """``lmm-pymc fit data.csv --formula "..."``: the general model, named by the terms."""
    import arviz as az

    from .formula import design_from_formula
    from .general_models import GENERAL_PARAMETRIZATIONS, fit_formula

    design = design_from_formula(args.formula, data)
    kwargs = _fit_kwargs(args)
    # the general marginal path needs one factor, and nutpie (PyMC's NUTS is slow on its
    # batched Cholesky factorisations)
    single = len(design.factors) == 1 and kwargs["sampler"] == "nutpie"
    usable = [p for p in GENERAL_PARAMETRIZATIONS if p != "marginal" or single]
    if kwargs["parametrization"] not in usable:
        print(f"note: parametrization {kwargs['parametrization']!r} is not available for this "
              f"formula (choices: {', '.join(usable)}); using 'cholesky'",
              file=sys.stderr)  # fmt: skip
        kwargs["parametrization"] = "cholesky"
    idata = fit_formula(args.formula, design, **kwargs)
    summary = az.summary(idata, var_names=["beta", "sigma_g", "sigs", "R"], hdi_prob=0.94)
    # drop the unit diagonal and the mirrored upper triangle of the block-diagonal R
    terms = list(idata.posterior["R"].coords["random_effect"].values)
    keep = [i for i in summary.index if not i.startswith("R[")]
    keep += [
        f"R[{a}, {b}]"
        for k, a in enumerate(terms)
        for b in terms[k + 1 :]
        if a.split("|", 1)[1] == b.split("|", 1)[1] and f"R[{a}, {b}]" in summary.index
    ]
    _print_table(summary.loc[keep].reset_index(names="parameter"))
    if args.out:
        idata.to_netcdf(args.out)
        print(f"posterior written to {args.out}")
    return 0


def _cmd_sbc(args: argparse.Namespace) -> int:
    from .priors import Priors
    from .sbc import SBCConfig, SBCStore, run_sbc

    out = Path(args.out)
    stored = SBCStore(out).config()
    if stored is not None and not args.restart_config:
        config = stored  # resume with the stored settings
        print(f"resuming the SBC run in {out} ({len(SBCStore(out).finished())} finished)")
    else:
        fit_priors = Priors(fixed_sd=args.fit_fixed_sd) if args.fit_fixed_sd else None
        config = SBCConfig(n_groups=args.groups, n_per_group=args.rows,
                           parametrization=args.parametrization, sampler=args.sampler,
                           draws=args.draws, tune=args.tune, chains=args.chains, thin=args.thin,
                           target_accept=args.target_accept, seed=args.seed,
                           fit_priors=fit_priors)  # fmt: skip
    start = time.perf_counter()
    result = run_sbc(args.simulations, out, config, workers=args.workers,
                     scheduler=args.scheduler, progressbar=not args.no_progress)  # fmt: skip
    print(
        f"{result.n_simulations} simulations in {out} ({time.perf_counter() - start:.0f} s "
        f"this run); ranks in 0..{config.max_rank}"
    )
    diag = result.diagnostics()
    print(
        f"fits with divergences: {int((diag['divergences'] > 0).sum())}, "
        f"max r_hat > 1.01: {int((diag['max_r_hat'] > 1.01).sum())}"
    )
    table = result.uniformity(prob=args.prob)
    _print_table(table[["parameter", "passed", "max_ecdf_excess", "chi2_p_value"]])
    result.table.to_csv(out / "ranks.csv", index=False)
    result.plot_ecdf(out / "ecdf.png", prob=args.prob)
    result.plot_histograms(out / "ranks.png")
    print(f"tidy ranks in {out / 'ranks.csv'}, plots {out / 'ecdf.png'} and {out / 'ranks.png'}")
    passed = bool(table["passed"].all())
    print("uniformity: " + ("all parameters pass" if passed else "FAILED for " + ", ".join(
        table.loc[~table["passed"], "parameter"])))  # fmt: skip
    return 0 if passed or not args.check else 1


def _cmd_crosscheck(args: argparse.Namespace) -> int:
    from .crosscheck import available_pairs, compare_posteriors, crosscheck
    from .simulate import simulate
    from .stan import available_engines

    if not available_engines(args.model_lib):
        print(
            "lmm-pymc crosscheck: error: no Stan engine is available: pip install "
            "'lmm_pymc[stan]' (PyStan compiles offline)",
            file=sys.stderr,
        )
        return 3

    sim = simulate(n_groups=args.groups, n_per_group=args.rows, seed=args.seed)
    print(f"data: simulate(n_groups={args.groups}, n_per_group={args.rows}, seed={args.seed})")
    agree = True
    for name in args.parametrization or available_pairs():
        start = time.perf_counter()
        result = crosscheck(
            sim,
            name,
            n_prior=args.prior_points,
            n_posterior=args.posterior_points,
            engine=args.engine,
            model_lib=args.model_lib,
            seed=args.sampler_seed,
        )
        print()
        _print_table_sci(result.table)
        print(result.summary())
        print(f"  ({time.perf_counter() - start:.0f} s)")
        agree = agree and result.ok
        if args.posterior:
            table = compare_posteriors(
                sim,
                name,
                draws=args.draws,
                tune=args.tune,
                chains=args.chains,
                seed=args.sampler_seed,
            )
            print(
                f"\n{name}: posterior means, PyMC NUTS vs Stan NUTS (PyStan), "
                f"|diff| < 4 sqrt(mcse_pymc^2 + mcse_stan^2)"
            )
            _print_table(table)
            agree = agree and bool(table["agree"].all())
    print("\ncross-check: " + ("all pairs agree" if agree else "DISAGREEMENT"))
    return 0 if agree else 1


def _print_table_sci(table: pd.DataFrame) -> None:
    with pd.option_context(
        "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.6g}".format
    ):
        print(table.to_string(index=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmm-pymc",
        description="Bayesian linear mixed models y ~ 1 + x + (1 + x | group) in PyMC.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="simulate the tutorial's data, fit it and show the recovery")
    demo.add_argument(
        "--seed", type=int, default=2024, help="simulation seed (default: %(default)s)"
    )
    demo.add_argument(
        "--plot",
        default="lmm_pymc_demo.png",
        help="where to write the posterior-vs-truth plot (default: %(default)s)",
    )
    demo.add_argument(
        "--random-effects",
        action="store_true",
        help="also list every group's random effects in the table",
    )
    _add_sampling_args(demo, draws=1000, tune=1000, chains=2)
    demo.set_defaults(func=_cmd_demo)

    sim = sub.add_parser("simulate", help="simulate a data set to CSV")
    sim.add_argument("--out", required=True, help="CSV file to write")
    sim.add_argument("--groups", type=int, default=3)
    sim.add_argument("--rows", type=int, default=10, help="rows per group, x = 1..rows")
    sim.add_argument("--alpha", type=float, default=6.0, help="fixed intercept")
    sim.add_argument("--beta", type=float, default=4.0, help="fixed slope")
    sim.add_argument("--sd-intercept", type=float, default=3.0)
    sim.add_argument("--sd-slope", type=float, default=2.0)
    sim.add_argument("--rho", type=float, default=0.7)
    sim.add_argument("--sigma", type=float, default=1.0, help="residual sd")
    sim.add_argument("--seed", type=int, default=None)
    sim.set_defaults(func=_cmd_simulate)

    fit = sub.add_parser("fit", help="fit a CSV with columns y, x and a group column")
    fit.add_argument("csv")
    fit.add_argument("--y", default="y")
    fit.add_argument("--x", default="x")
    fit.add_argument("--group", default="group_id")
    fit.add_argument("--out", default=None, help="NetCDF file for the posterior")
    fit.add_argument("--formula", default=None,
                     help='lme4/brms formula, e.g. "y ~ 1 + x + (1 + x | subject) + (1 | item)"; '
                          "replaces --y/--x/--group and fits the general model")  # fmt: skip
    _add_sampling_args(fit, draws=1000, tune=1000, chains=4)
    fit.set_defaults(func=_cmd_fit)

    sbc = sub.add_parser("sbc", help="simulation-based calibration on Dask (resumable)")
    sbc.add_argument("--simulations", type=int, required=True, help="number of simulations")
    sbc.add_argument("--out", required=True, help="directory of the run (re-run to resume)")
    sbc.add_argument(
        "--workers",
        type=int,
        default=None,
        help="LocalCluster worker processes (default: the CPUs available)",
    )
    sbc.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    sbc.add_argument("--groups", type=int, default=3)
    sbc.add_argument("--rows", type=int, default=10, help="rows per group, x = 1..rows")
    sbc.add_argument("--parametrization", default="cholesky")
    sbc.add_argument("--sampler", default="nutpie", choices=("nutpie", "pymc"))
    sbc.add_argument("--draws", type=int, default=500, help="draws per chain (default: 500)")
    sbc.add_argument("--tune", type=int, default=500, help="tuning steps (default: %(default)s)")
    sbc.add_argument("--chains", type=int, default=2, help="chains per fit (default: %(default)s)")
    sbc.add_argument("--thin", type=int, default=5, help="keep every n-th draw (default: 5)")
    sbc.add_argument("--target-accept", type=float, default=0.95)
    sbc.add_argument("--seed", type=int, default=0, help="root seed (default: %(default)s)")
    sbc.add_argument(
        "--fit-fixed-sd",
        type=float,
        default=None,
        help="fit with Normal(0, this) fixed-effect priors: a deliberately "
        "miscalibrated pair, to see the check fail",
    )
    sbc.add_argument(
        "--prob",
        type=float,
        default=0.95,
        help="family-wise level of the uniformity bands (default: %(default)s)",
    )
    sbc.add_argument("--check", action="store_true", help="exit 1 if a parameter fails")
    sbc.add_argument(
        "--restart-config",
        action="store_true",
        help="use the settings given here (an error if --out holds a run with other settings)",
    )
    sbc.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sbc.set_defaults(func=_cmd_sbc)

    cc = sub.add_parser(
        "crosscheck", help="prove the PyMC models and the reference Stan programs agree"
    )
    cc.add_argument(
        "--parametrization",
        nargs="+",
        default=None,
        help="pairs to check (default: every registered pair)",
    )
    cc.add_argument("--groups", type=int, default=3, help="simulated groups (default: %(default)s)")
    cc.add_argument("--rows", type=int, default=10, help="rows per group (default: %(default)s)")
    cc.add_argument("--seed", type=int, default=2024, help="simulation seed (default: %(default)s)")
    cc.add_argument(
        "--engine",
        default="auto",
        choices=("auto", "bridgestan", "pystan"),
        help="Stan engine (default: %(default)s: BridgeStan if usable, else PyStan)",
    )
    cc.add_argument("--model-lib", default=None, help="prebuilt BridgeStan model library")
    cc.add_argument(
        "--prior-points", type=int, default=10, help="prior draws (default: %(default)s)"
    )
    cc.add_argument(
        "--posterior-points",
        type=int,
        default=10,
        help="draws of a short PyMC posterior run (default: %(default)s)",
    )
    cc.add_argument(
        "--sampler-seed", type=int, default=1, help="seed of the draws (default: %(default)s)"
    )
    cc.add_argument(
        "--posterior",
        action="store_true",
        help="also compare posterior means of PyMC NUTS and Stan NUTS",
    )
    cc.add_argument(
        "--draws", type=int, default=300, help="posterior draws per chain (default: %(default)s)"
    )
    cc.add_argument("--tune", type=int, default=300, help="tuning steps (default: %(default)s)")
    cc.add_argument("--chains", type=int, default=2, help="chains (default: %(default)s)")
    cc.set_defaults(func=_cmd_crosscheck)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
    try:
        return int(args.func(args))
    except ValueError as err:
        print(f"lmm-pymc {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
