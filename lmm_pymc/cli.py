"""Command line: ``lmm-pymc demo | simulate | fit | sbc | crosscheck``.

Exit codes: 0 success; 1 a check failed (the cross-check disagrees, SBC with ``--check``
finds a non-uniform parameter); 2 bad input (one line on stderr naming the argument or
column, the value found and what was expected); 3 the check could not run (no usable Stan
engine); 4 an unexpected internal error (``--debug`` shows its traceback); 130 interrupted.
Heavy libraries (PyMC, PyTensor, the samplers) are imported inside the commands, after the
arguments are parsed, so argument errors and ``--help`` return at once.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from .checks import non_negative_int, positive_int, probability
from .errors import MissingExtraError, StanUnavailableError

__all__ = ["build_parser", "main"]

#: Parametrizations and samplers (kept here, equal to lmm_pymc.models.PARAMETRIZATIONS and
#: lmm_pymc.sampling.SAMPLERS, so that parsing needs no import of PyMC; a test checks it).
PARAMETRIZATIONS = ("marginal", "cholesky", "lkj_corr")
SAMPLERS = ("nutpie", "pymc")
#: Stan cross-check pairs: the tutorial's programs (one per parametrization), the
#: sufficient-statistics program (marginal, one factor) and the general program (cholesky,
#: any formula); equal to lmm_pymc.crosscheck.available_pairs().
PAIRS = (*PARAMETRIZATIONS, "marginal_stats", "general")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``lmm-pymc fit: error: ... (see lmm-pymc fit --help)``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # a misspelt flag is an error, not a guess
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line_warnings() -> None:
    """Warnings on the command line as ``lmm-pymc: warning: ...``, one line each."""

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        print(f"lmm-pymc: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


def _checked(check, name: str):
    """An argparse ``type`` from a :mod:`lmm_pymc.checks` function: ``--chains 0`` fails
    while parsing, before any heavy import."""

    def convert(text: str):
        try:
            value = float(text) if check is probability else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, found {text!r}") from None
        try:
            return check(name, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


def _two_or_more(name: str, value: int) -> int:
    if value < 2:
        raise ValueError(
            f"{name} must be at least 2 (one group cannot be fitted: the group-level sds are "
            f"not identified), found {value}"
        )
    return value


def _add_size_args(p: argparse.ArgumentParser) -> None:
    """``--groups`` and ``--rows`` of the tutorial's design (x = 1..rows in every group)."""
    p.add_argument("--groups", type=_checked(_two_or_more, "--groups"), default=3,
                   help="groups of the tutorial's design (default: %(default)s)")  # fmt: skip
    p.add_argument("--rows", type=_checked(positive_int, "--rows"), default=10,
                   help="rows per group, x = 1..rows (default: %(default)s)")  # fmt: skip


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
    p.add_argument("--draws", type=_checked(positive_int, "--draws"), default=draws,
                   help="draws per chain (default: %(default)s)")  # fmt: skip
    p.add_argument("--tune", type=_checked(non_negative_int, "--tune"), default=tune,
                   help="tuning steps per chain (default: %(default)s)")  # fmt: skip
    p.add_argument("--chains", type=_checked(positive_int, "--chains"), default=chains,
                   help="number of chains (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--target-accept",
        type=_checked(probability, "--target-accept"),
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
    """Every table the command line prints: a data frame, all columns, fixed width, numbers
    formatted per column (:func:`lmm_pymc.summaries.text_table`)."""
    from .summaries import text_table

    print(text_table(table, precise=precise))


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import tutorial
    from .files import check_output
    from .fitting import fit
    from .priors import Priors
    from .recovery import plot_recovery, recovery_table
    from .simulation import simulate

    check_output(args.plot, argument="--plot")
    sim = simulate(seed=args.seed)
    print(f"Simulated the tutorial's design {tutorial.FORMULA!r}: 3 groups x 10 rows, x = 1..10")
    print(f"  true beta = {list(tutorial.BETA)}, sds = {list(tutorial.SIGMAS)}, "
          f"rho = {tutorial.RHO}, residual sd = {tutorial.SIGMA}  (seed {args.seed})")  # fmt: skip
    print(sim.data.head(6).to_string(index=False))
    config = _sampler_config(args)
    print(f"\nFitting with {config.sampler} NUTS ...")
    start = time.perf_counter()
    idata = fit(sim, parametrization=args.parametrization, priors=Priors.tutorial(),
                sampling=config)  # fmt: skip
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
    from .files import atomic_path, check_output
    from .simulation import simulate

    out = check_output(args.out)
    frame = tutorial.design_frame(args.groups, args.rows)
    params = tutorial.parameters(beta=(args.alpha, args.beta), rho=args.rho, sigma=args.sigma,
                                 sigmas=(args.sd_intercept, args.sd_slope))  # fmt: skip
    sim = simulate(data=frame, **params, seed=args.seed)
    with atomic_path(out) as tmp:
        sim.data.to_csv(tmp, index=False)
    print(f"wrote {len(sim.data)} rows in {args.groups} groups to {args.out}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from .files import atomic_path, check_output, read_csv

    out = check_output(args.out) if args.out else None
    data = read_csv(args.csv)
    from . import tutorial

    formula = args.formula or tutorial.formula(args.y, args.x, args.group)
    config = _sampler_config(args)
    from .formula import design_from_formula

    design = design_from_formula(formula, data)  # data errors before PyMC is imported
    priors = _priors(args, design)
    from .fitting import fit
    from .summaries import summary

    idata = fit(data, formula, parametrization=args.parametrization, priors=priors,
                sampling=config)  # fmt: skip
    print(summary(idata))
    if out is not None:
        with atomic_path(out) as tmp:
            idata.to_netcdf(tmp)
        print(f"posterior written to {args.out}")
    return 0


def _priors(args: argparse.Namespace, design):
    """``--prior NAME=PRIOR`` options over the data-scale defaults (or the tutorial's)."""
    from .priors import Priors, default_priors, parse_prior

    base = Priors.tutorial() if args.tutorial_priors else default_priors(design)
    terms, sigma = dict(base.terms), base.sigma
    for text in args.prior or []:
        name, sep, prior = text.partition("=")
        if not sep:
            raise ValueError(
                f"--prior must be NAME=PRIOR, e.g. 'beta[x]=normal(0, 1)', found {text!r}"
            )
        name = name.strip()
        if name == "sigma":
            sigma = parse_prior(prior)
        else:
            terms[name] = prior if name.startswith("R[") else parse_prior(prior)
    priors = Priors(fixed=base.fixed, sigs=base.sigs, sigma=sigma, lkj_eta=base.lkj_eta,
                    terms=terms)  # fmt: skip
    priors.resolve(design.fixed_names, design.factors)  # unknown names: an error now
    return priors


def _cmd_predict(args: argparse.Namespace) -> int:
    from .files import atomic_path, check_output, read_csv

    out = check_output(args.out)
    if not Path(args.posterior).is_file():
        raise ValueError(
            f"posterior must be a NetCDF file of lmm-pymc fit --out, found {args.posterior!r}"
        )
    new = read_csv(args.csv, argument="csv")
    import arviz as az
    import numpy as np

    from .predictions import predict

    try:
        idata = az.from_netcdf(args.posterior)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"posterior {args.posterior!r} is not a NetCDF file of a fit ({err})"
        ) from None
    pred = predict(idata, new, random_effects=not args.fixed_only, kind=args.kind,
                   allow_new_levels=not args.no_new_levels, seed=args.seed)  # fmt: skip
    draws = pred.predictions["y"].stack(sample=("chain", "draw")).values
    table = new.copy()
    table["mean"], table["sd"] = draws.mean(1), draws.std(1)
    table["q2.5"], table["q97.5"] = np.quantile(draws, [0.025, 0.975], axis=1)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    _print_table(table.head(20))
    print(f"predictions for {len(table)} rows written to {out}")
    return 0


def _cmd_sbc(args: argparse.Namespace) -> int:
    from .files import atomic_path
    from .priors import Normal, Priors
    from .sbc import SBCConfig, SBCStore, run_sbc

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a directory for the SBC run, found the file {str(out)!r}")
    if not out.parent.is_dir():
        raise ValueError(f"--out {str(out)!r}: its folder {str(out.parent)!r} does not exist")
    stored = SBCStore(out).config()
    if stored is not None and not args.restart_config:
        config = stored  # resume with the stored settings
        print(f"resuming the SBC run in {out} ({len(SBCStore(out).finished())} finished)")
    else:
        fit_priors = Priors(fixed=Normal(0.0, args.fit_fixed_sd)) if args.fit_fixed_sd else None
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
    with atomic_path(out / "ranks.csv") as tmp:
        result.table.to_csv(tmp, index=False)
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
    from .stan import resolve_engine

    names = args.parametrization or list(PAIRS)
    if args.model_lib is not None and len(names) != 1:
        raise ValueError(
            f"--model-lib must come with one pair (a library is one compiled program), found "
            f"{len(names)} pairs {names}: name it, e.g. --parametrization {names[0]}"
        )
    # fails here, before any PyMC work: exit 3 with what is missing and how to get it
    resolve_engine(args.engine, args.model_lib)
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
        ("--groups", _checked(_two_or_more, "--groups"), 3, "number of groups (at least 2)"),
        ("--rows", _checked(positive_int, "--rows"), 10, "rows per group, x = 1..rows"),
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
    fit.add_argument("--prior", action="append", metavar="NAME=PRIOR",
                     help="a prior by posterior name, repeatable: 'beta[x]=normal(0, 1)', "
                          "'sigs[subject]=halfnormal(20)', 'sigs[x|subject]=exponential(1)', "
                          "'R[subject]=4' (LKJ shape), 'sigma=halfstudent_t(3, 30)' (default: "
                          "weakly informative on the data's scale)")  # fmt: skip
    fit.add_argument(
        "--tutorial-priors",
        action="store_true",
        help="start from the tutorial's priors instead of the data-scale defaults",
    )
    _add_sampling_args(fit, draws=1000, tune=1000, chains=4)
    fit.set_defaults(func=_cmd_fit)


def _predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict new rows from a posterior of lmm-pymc fit --out")
    p.add_argument("posterior", help="NetCDF file written by lmm-pymc fit --out")
    p.add_argument("csv", help="CSV of new rows: the formula's predictors and groups")
    p.add_argument("--out", required=True, help="CSV to write: the rows with mean, sd, q2.5, q97.5")
    p.add_argument(
        "--kind",
        choices=("response", "mean"),
        default="response",
        help="draws of y (with residual noise) or of its mean (default: %(default)s)",
    )
    p.add_argument("--fixed-only", action="store_true", help="the fixed effects alone (X beta)")
    p.add_argument(
        "--no-new-levels",
        action="store_true",
        help="refuse groups absent from the fit (default: draw their effects)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed (default: %(default)s)")
    p.set_defaults(func=_cmd_predict)


def _sbc_parser(sub) -> None:
    sbc = sub.add_parser("sbc", help="simulation-based calibration on Dask (resumable)")
    sbc.add_argument(
        "--simulations",
        type=_checked(positive_int, "--simulations"),
        required=True,
        help="number of simulations",
    )
    sbc.add_argument("--out", required=True, help="directory of the run (re-run to resume)")
    sbc.add_argument(
        "--workers",
        type=_checked(positive_int, "--workers"),
        default=None,
        help="LocalCluster worker processes (default: the CPUs available)",
    )
    sbc.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    _add_size_args(sbc)
    sbc.add_argument(
        "--thin",
        type=_checked(positive_int, "--thin"),
        default=5,
        help="keep every n-th draw (default: 5)",
    )
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
    _add_size_args(cc)
    cc.add_argument("--seed", type=int, default=2024, help="simulation seed (default: 2024)")
    cc.add_argument(
        "--engine",
        default="auto",
        choices=("auto", "bridgestan", "pystan"),
        help="Stan engine (default: BridgeStan if usable, else PyStan)",
    )
    cc.add_argument(
        "--model-lib",
        default=None,
        help="prebuilt BridgeStan library of the one pair named by --parametrization "
        "(checked against its program)",
    )
    cc.add_argument(
        "--prior-points",
        type=_checked(positive_int, "--prior-points"),
        default=10,
        help="prior draws (default: 10)",
    )
    cc.add_argument(
        "--posterior-points",
        type=_checked(non_negative_int, "--posterior-points"),
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
    parser = _Parser(
        prog="lmm-pymc",
        description="Bayesian linear mixed models in PyMC: simulate, fit, recover, cross-check "
        "against Stan, calibrate. The tutorial's model y ~ 1 + x + (1 + x | group_id) is the "
        "default.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_demo_parser, _simulate_parser, _fit_parser, _predict_parser, _sbc_parser,
                _crosscheck_parser):  # fmt: skip
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        _one_line_warnings()
    prog = f"lmm-pymc {args.command}"
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        code, what = _classify(err)
        text = " ".join(str(err).split()) or type(err).__name__
        print(f"{prog}: {what}: {text}", file=sys.stderr)
        return code


def _classify(err: Exception) -> tuple[int, str]:
    """Exit code and kind of an error that ended a command (see the module docstring)."""
    if isinstance(err, ValueError):
        return 2, "error"
    if isinstance(err, StanUnavailableError | MissingExtraError):
        return 3, "could not run"
    if isinstance(err, OSError):
        return 2, "error"
    return 4, f"internal error ({type(err).__name__}; rerun with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
