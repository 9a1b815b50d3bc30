"""Command line: ``lmm-pymc demo | simulate | fit | sbc | crosscheck``.

Exit codes: 0 success; 1 a check failed (the cross-check disagrees, SBC with ``--check``
finds a non-uniform parameter); 2 bad input (the message names the argument or column);
3 the check could not run (no Stan engine). Heavy libraries (PyMC, PyTensor, the samplers)
are imported inside the commands, after the arguments are parsed.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

__all__ = ["build_parser", "main"]

#: Parametrizations and samplers (kept here, equal to lmm_pymc.models.PARAMETRIZATIONS and
#: lmm_pymc.sampling.SAMPLERS, so that parsing needs no import of PyMC; a test checks it).
PARAMETRIZATIONS = ("marginal", "cholesky", "lkj_corr")
SAMPLERS = ("nutpie", "pymc")
#: Stan cross-check pairs: the tutorial's programs (one per parametrization) and the general
#: program (cholesky, any formula); equal to lmm_pymc.crosscheck.available_pairs().
PAIRS = (*PARAMETRIZATIONS, "general")


def _add_sampling_args(p: argparse.ArgumentParser, *, draws: int, tune: int, chains: int,
                       several: bool = False, seeded: bool = True) -> None:  # fmt: skip
    """The sampler options every fitting subcommand shares (one SamplerConfig);
    ``several``: ``--parametrization`` takes a list (the cross-check's pairs); ``seeded``:
    a ``--sampler-seed`` option (SBC seeds every fit from its own root seed instead)."""
    if several:
        p.add_argument("--parametrization", nargs="+", default=None, choices=PAIRS,
                       help="pairs to check (default: every registered pair)")  # fmt: skip
    else:
        p.add_argument("--parametrization", default=None, choices=PARAMETRIZATIONS,
                       help="model parametrization (default: marginal for one grouping "
                            "factor, else cholesky)")  # fmt: skip
    p.add_argument("--sampler", default=SAMPLERS[0], choices=SAMPLERS,
                   help="NUTS implementation (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--draws", type=int, default=draws, help="draws per chain (default: %(default)s)"
    )
    p.add_argument("--tune", type=int, default=tune,
                   help="tuning steps per chain (default: %(default)s)")  # fmt: skip
    p.add_argument("--chains", type=int, default=chains,
                   help="number of chains (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--target-accept",
        type=float,
        default=None,
        help="NUTS target acceptance rate (default: 0.99 for marginal, 0.95 otherwise)",
    )
    if seeded:
        p.add_argument("--sampler-seed", type=int, default=1,
                       help="seed of the sampler (default: %(default)s)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _sampler_config(args: argparse.Namespace, **over: object):
    from .sampling import SamplerConfig

    options = dict(draws=args.draws, tune=args.tune, chains=args.chains,
                   target_accept=args.target_accept, sampler=args.sampler,
                   random_seed=getattr(args, "sampler_seed", None),
                   progressbar=not args.no_progress)  # fmt: skip
    return SamplerConfig(**(options | over))


def _print_table(table, *, precise: bool = False) -> None:
    """Every table the command line prints: a data frame, all columns, fixed width."""
    import pandas as pd

    fmt = "{:.6g}".format if precise else "{:.3f}".format
    with pd.option_context("display.width", 160, "display.max_columns", 30,
                           "display.float_format", fmt):  # fmt: skip
        print(table.to_string(index=False))


def _posterior_summary(idata):
    """ArviZ's summary of beta, sigma, sigs and the correlations within each factor."""
    import arviz as az

    summary = az.summary(idata, var_names=["beta", "sigma", "sigs", "R"], hdi_prob=0.94)
    terms = [str(t) for t in idata.posterior["R"].coords["random_effect"].values]
    # the upper triangle of each factor's block (terms are "effect|factor")
    pairs = [f"R[{a}, {b}]" for i, a in enumerate(terms) for b in terms[i + 1 :]
             if a.split("|", 1)[1] == b.split("|", 1)[1]]  # fmt: skip
    keep = [i for i in summary.index if not i.startswith("R[")] + pairs
    return summary.loc[keep].reset_index(names="parameter")


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import tutorial
    from .fitting import fit
    from .recovery import plot_recovery, recovery_table
    from .simulation import simulate

    sim = simulate(seed=args.seed)
    print(f"Simulated the tutorial's design {tutorial.FORMULA!r}: 3 groups x 10 rows, x = 1..10")
    print(f"  true beta = {list(tutorial.BETA)}, sds = {list(tutorial.SIGMAS)}, "
          f"rho = {tutorial.RHO}, residual sd = {tutorial.SIGMA}  (seed {args.seed})")  # fmt: skip
    print(sim.data.head(6).to_string(index=False))
    config = _sampler_config(args)
    print(f"\nFitting with {config.sampler} NUTS ...")
    start = time.perf_counter()
    idata = fit(sim, parametrization=args.parametrization, sampling=config)
    print(f"done in {time.perf_counter() - start:.1f} s "
          f"(parametrization {idata.attrs['parametrization']!r})\n")  # fmt: skip
    table = recovery_table(idata, sim.truth, random_effects=args.random_effects)
    _print_table(table)
    print(f"\n{int(table['covered'].sum())} of {len(table)} true values inside their 94% HDI")
    plot_recovery(idata, sim.truth, args.plot)
    print(f"posterior-vs-truth plot written to {args.plot}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from . import tutorial
    from .simulation import simulate

    frame = tutorial.design_frame(args.groups, args.rows)
    params = tutorial.parameters(beta=(args.alpha, args.beta), rho=args.rho, sigma=args.sigma,
                                 sigmas=(args.sd_intercept, args.sd_slope))  # fmt: skip
    sim = simulate(data=frame, **params, seed=args.seed)
    sim.data.to_csv(args.out, index=False)
    print(f"wrote {len(sim.data)} rows in {args.groups} groups to {args.out}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import tutorial
    from .fitting import fit

    path = Path(args.csv)
    if not path.is_file():
        raise ValueError(f"csv must be an existing file, found {str(path)!r}")
    data = pd.read_csv(path)
    formula = args.formula or tutorial.formula(args.y, args.x, args.group)
    idata = fit(data, formula, parametrization=args.parametrization,
                sampling=_sampler_config(args))  # fmt: skip
    print(f"{formula}  (parametrization {idata.attrs['parametrization']!r})")
    _print_table(_posterior_summary(idata))
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
        config = SBCConfig(n_groups=args.groups, n_per_group=args.rows, fit_priors=fit_priors,
                           parametrization=args.parametrization, thin=args.thin,
                           sampling=_sampler_config(args, progressbar=False),
                           seed=args.seed)  # fmt: skip
    start = time.perf_counter()
    result = run_sbc(args.simulations, out, config, workers=args.workers,
                     scheduler=args.scheduler, progressbar=not args.no_progress)  # fmt: skip
    print(f"{result.n_simulations} simulations in {out} ({time.perf_counter() - start:.0f} s "
          f"this run); ranks in 0..{config.max_rank}")  # fmt: skip
    diag = result.diagnostics()
    print(f"fits with divergences: {int((diag['divergences'] > 0).sum())}, "
          f"max r_hat > 1.01: {int((diag['max_r_hat'] > 1.01).sum())}")  # fmt: skip
    table = result.uniformity(prob=args.prob)
    _print_table(table[["parameter", "passed", "max_ecdf_excess", "chi2_p_value"]])
    result.table.to_csv(out / "ranks.csv", index=False)
    result.plot_ecdf(out / "ecdf.png", prob=args.prob)
    result.plot_histograms(out / "ranks.png")
    print(f"tidy ranks in {out / 'ranks.csv'}, plots {out / 'ecdf.png'} and {out / 'ranks.png'}")
    passed = bool(table["passed"].all())
    failed = ", ".join(table.loc[~table["passed"], "parameter"])
    print("uniformity: " + ("all parameters pass" if passed else f"FAILED for {failed}"))
    return 0 if passed or not args.check else 1


def _cmd_crosscheck(args: argparse.Namespace) -> int:
    from . import tutorial
    from .crosscheck import available_pairs, compare_posteriors, crosscheck
    from .simulation import simulate
    from .stan import available_engines

    if not available_engines(args.model_lib):
        print("lmm-pymc crosscheck: error: no Stan engine is available: pip install "
              "'lmm_pymc[stan]' (PyStan compiles offline)", file=sys.stderr)  # fmt: skip
        return 3
    sim = simulate(data=tutorial.design_frame(args.groups, args.rows), seed=args.seed)
    print(f"data: the tutorial's model, {args.groups} groups x {args.rows} rows, seed {args.seed}")
    agree = True
    for name in args.parametrization or available_pairs(sim.design):
        start = time.perf_counter()
        result = crosscheck(sim, program=name, n_prior=args.prior_points,
                            n_posterior=args.posterior_points,
                            engine=args.engine, model_lib=args.model_lib,
                            seed=args.sampler_seed)  # fmt: skip
        print()
        _print_table(result.table, precise=True)
        print(result.summary())
        print(f"  ({time.perf_counter() - start:.0f} s)")
        agree = agree and result.ok
        if args.posterior:
            table = compare_posteriors(sim, program=name, draws=args.draws, tune=args.tune,
                                       chains=args.chains, seed=args.sampler_seed)  # fmt: skip
            print(f"\n{name}: posterior means, PyMC NUTS vs Stan NUTS (PyStan), "
                  "|diff| < 4 sqrt(mcse_pymc^2 + mcse_stan^2)")  # fmt: skip
            _print_table(table)
            agree = agree and bool(table["agree"].all())
    print("\ncross-check: " + ("all pairs agree" if agree else "DISAGREEMENT"))
    return 0 if agree else 1


def _demo_parser(sub) -> None:
    demo = sub.add_parser("demo", help="simulate the tutorial's data, fit it and show the recovery")
    demo.add_argument(
        "--seed", type=int, default=2024, help="simulation seed (default: %(default)s)"
    )
    demo.add_argument(
        "--plot",
        default="lmm_pymc_demo.png",
        help="where to write the posterior-vs-truth plot (default: %(default)s)",
    )
    demo.add_argument("--random-effects", action="store_true",
                      help="also list every group's random effects in the table")  # fmt: skip
    _add_sampling_args(demo, draws=1000, tune=1000, chains=2)
    demo.set_defaults(func=_cmd_demo)


def _simulate_parser(sub) -> None:
    sim = sub.add_parser("simulate", help="simulate the tutorial's model to a CSV file")
    sim.add_argument("--out", required=True, help="CSV file to write")
    for flag, kind, default, text in (
        ("--groups", int, 3, "number of groups"),
        ("--rows", int, 10, "rows per group, x = 1..rows"),
        ("--alpha", float, 6.0, "fixed intercept"),
        ("--beta", float, 4.0, "fixed slope"),
        ("--sd-intercept", float, 3.0, "sd of the random intercepts"),
        ("--sd-slope", float, 2.0, "sd of the random slopes"),
        ("--rho", float, 0.7, "correlation of random intercepts and slopes"),
        ("--sigma", float, 1.0, "residual sd"),
        ("--seed", int, None, "simulation seed"),
    ):
        sim.add_argument(flag, type=kind, default=default, help=f"{text} (default: %(default)s)")
    sim.set_defaults(func=_cmd_simulate)


def _fit_parser(sub) -> None:
    fit = sub.add_parser("fit", help="fit a CSV file with a formula (default: the tutorial's)")
    fit.add_argument("csv")
    fit.add_argument(
        "--formula",
        default=None,
        help='lme4/brms formula, e.g. "rt ~ 1 + cond + (1 + cond | subject) + '
        '(1 | item)"; default: "Y ~ 1 + X + (1 + X | GROUP)" from --y/--x/--group',
    )
    fit.add_argument("--y", default="y", help="outcome column without --formula (default: y)")
    fit.add_argument("--x", default="x", help="predictor column without --formula (default: x)")
    fit.add_argument("--group", default="group_id",
                     help="grouping column without --formula (default: group_id)")  # fmt: skip
    fit.add_argument("--out", default=None, help="NetCDF file for the posterior")
    _add_sampling_args(fit, draws=1000, tune=1000, chains=4)
    fit.set_defaults(func=_cmd_fit)


def _sbc_parser(sub) -> None:
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
    sbc.add_argument("--groups", type=int, default=3, help="groups per data set (default: 3)")
    sbc.add_argument("--rows", type=int, default=10, help="rows per group (default: 10)")
    sbc.add_argument("--thin", type=int, default=5, help="keep every n-th draw (default: 5)")
    sbc.add_argument("--fit-fixed-sd", type=float, default=None,
                     help="fit with Normal(0, this) fixed-effect priors: a deliberately "
                          "miscalibrated pair, to see the check fail")  # fmt: skip
    sbc.add_argument(
        "--prob",
        type=float,
        default=0.95,
        help="family-wise level of the uniformity bands (default: %(default)s)",
    )
    sbc.add_argument("--check", action="store_true", help="exit 1 if a parameter fails")
    sbc.add_argument("--restart-config", action="store_true",
                     help="use the settings given here (an error if --out holds a run with "
                          "other settings)")  # fmt: skip
    _add_sampling_args(sbc, draws=500, tune=500, chains=2, seeded=False)
    sbc.add_argument("--seed", type=int, default=0, help="root seed (default: %(default)s)")
    sbc.set_defaults(func=_cmd_sbc)


def _crosscheck_parser(sub) -> None:
    cc = sub.add_parser(
        "crosscheck", help="prove the PyMC models and the reference Stan programs agree"
    )
    cc.add_argument("--groups", type=int, default=3, help="simulated groups (default: 3)")
    cc.add_argument("--rows", type=int, default=10, help="rows per group (default: 10)")
    cc.add_argument("--seed", type=int, default=2024, help="simulation seed (default: 2024)")
    cc.add_argument(
        "--engine",
        default="auto",
        choices=("auto", "bridgestan", "pystan"),
        help="Stan engine (default: BridgeStan if usable, else PyStan)",
    )
    cc.add_argument("--model-lib", default=None, help="prebuilt BridgeStan model library")
    cc.add_argument("--prior-points", type=int, default=10, help="prior draws (default: 10)")
    cc.add_argument(
        "--posterior-points",
        type=int,
        default=10,
        help="draws of a short PyMC posterior run (default: 10)",
    )
    cc.add_argument(
        "--posterior",
        action="store_true",
        help="also compare posterior means of PyMC NUTS and Stan NUTS",
    )
    _add_sampling_args(cc, draws=300, tune=300, chains=2, several=True)
    cc.set_defaults(func=_cmd_crosscheck)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmm-pymc",
        description="Bayesian linear mixed models in PyMC: simulate, fit, recover, cross-check "
        "against Stan, calibrate. The tutorial's model y ~ 1 + x + (1 + x | group_id) is the "
        "default.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_demo_parser, _simulate_parser, _fit_parser, _sbc_parser, _crosscheck_parser):
        add(sub)
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
