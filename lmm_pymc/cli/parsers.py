"""The argument parsers of ``lmm-pymc``: :func:`build_parser` and one parser per subcommand.

Parsing imports nothing heavy (the choices come from :mod:`lmm_pymc.options`, the numeric
checks from :mod:`lmm_pymc.checks`), so ``--help`` and argument errors return at once;
each subcommand's ``func`` is its function in :mod:`lmm_pymc.cli.commands`.
"""

from __future__ import annotations

import argparse

from ..checks import non_negative_int, positive_int, probability
from ..options import CROSSCHECK_PAIRS, FAMILY_NAMES, PARAMETRIZATIONS, SAMPLERS
from . import commands

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``lmm-pymc fit: error: ... (see lmm-pymc fit --help)``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # a misspelt flag is an error, not a guess
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
        p.add_argument("--parametrization", nargs="+", default=None,
                       choices=CROSSCHECK_PAIRS,
                       help="pairs to check (default: every registered pair)")  # fmt: skip
    else:
        p.add_argument("--parametrization", default=None, choices=PARAMETRIZATIONS,
                       help="model parametrization (default: marginal, one factor's "
                            "random effects integrated out)")  # fmt: skip
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
    demo.set_defaults(func=commands.cmd_demo)


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
    sim.set_defaults(func=commands.cmd_simulate)


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
    fit.add_argument("--family", default="gaussian", choices=FAMILY_NAMES,
                     help="the outcome's family (default: %(default)s); binomial names its "
                          "trials in the formula: 'y | trials(n) ~ ...'")  # fmt: skip
    fit.add_argument("--link", default=None,
                     help="the family's link (default: its first): logit, probit, "
                          "cloglog (bernoulli, binomial); log, identity (poisson); log "
                          "(negbinomial); identity (student)")  # fmt: skip
    fit.add_argument(
        "--tutorial-priors",
        action="store_true",
        help="start from the tutorial's priors instead of the data-scale defaults",
    )
    _add_sampling_args(fit, draws=1000, tune=1000, chains=4)
    fit.set_defaults(func=commands.cmd_fit)


def _predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict new rows from a posterior of lmm-pymc fit --out")
    p.add_argument("posterior", help="NetCDF file written by lmm-pymc fit --out")
    p.add_argument("csv", help="CSV of new rows: the formula's predictors and groups")
    p.add_argument("--out", required=True, help="CSV to write: the rows with mean, sd, q2.5, q97.5")
    p.add_argument(
        "--kind",
        choices=("response", "mean", "link"),
        default="response",
        help="draws of y (with residual noise), of its mean or of the linear predictor "
        "(default: %(default)s)",
    )
    p.add_argument("--fixed-only", action="store_true", help="the fixed effects alone (X beta)")
    p.add_argument(
        "--no-new-levels",
        action="store_true",
        help="refuse groups absent from the fit (default: draw their effects)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed (default: %(default)s)")
    p.set_defaults(func=commands.cmd_predict)


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
    sbc.set_defaults(func=commands.cmd_sbc)


def _crosscheck_parser(sub) -> None:
    cc = sub.add_parser(
        "crosscheck", help="prove the PyMC models and the reference Stan programs agree"
    )
    _add_size_args(cc)
    cc.add_argument("--seed", type=int, default=2024, help="simulation seed (default: 2024)")
    cc.add_argument("--family", default="gaussian", choices=FAMILY_NAMES,
                    help="the simulated outcome's family (default: %(default)s); the others "
                    "are checked by the pair glmm on the tutorial's design, binomial with 5 "
                    "trials per row")  # fmt: skip
    cc.add_argument("--link", default=None, help="the family's link (default: its first)")
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
    cc.set_defaults(func=commands.cmd_crosscheck)


def build_parser() -> argparse.ArgumentParser:
    """The ``lmm-pymc`` parser: its subcommands and their options."""
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
