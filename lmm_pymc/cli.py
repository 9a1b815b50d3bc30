"""Command line: ``lmm-pymc demo | simulate | fit``."""

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

    p.add_argument("--parametrization", default="cholesky", choices=PARAMETRIZATIONS,
                   help="model parametrization (default: %(default)s)")
    p.add_argument("--sampler", default="pymc", choices=SAMPLERS,
                   help="NUTS implementation (default: %(default)s)")
    p.add_argument("--draws", type=int, default=draws, help="draws per chain (default: %(default)s)")
    p.add_argument("--tune", type=int, default=tune, help="tuning steps per chain (default: %(default)s)")
    p.add_argument("--chains", type=int, default=chains, help="number of chains (default: %(default)s)")
    p.add_argument("--target-accept", type=float, default=0.95,
                   help="NUTS target acceptance rate (default: %(default)s)")
    p.add_argument("--sampler-seed", type=int, default=1, help="seed of the sampler (default: %(default)s)")
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
    with pd.option_context("display.width", 140, "display.max_columns", 20,
                           "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


def _cmd_demo(args: argparse.Namespace) -> int:
    from .fit import fit
    from .recovery import plot_recovery, recovery_table
    from .simulate import simulate

    sim = simulate(seed=args.seed)
    t = sim.truth
    print("Simulated the tutorial's design: 3 groups x 10 rows, x = 1..10")
    print(f"  true beta = {t.beta.tolist()}, sigmas = {t.sigmas.tolist()}, rho = {t.rho}, "
          f"residual sd = {t.sigma}  (seed {args.seed})")
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

    sim = simulate(n_groups=args.groups, n_per_group=args.rows, beta=(args.alpha, args.beta),
                   sigmas=(args.sd_intercept, args.sd_slope), rho=args.rho, sigma=args.sigma,
                   seed=args.seed)
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
    idata = fit(data, y=args.y, x=args.x, group=args.group, **_fit_kwargs(args))
    summary = az.summary(idata, var_names=["alpha_0", "beta_0", "sigma_g", "sigs", "rho"],
                         hdi_prob=0.94)
    _print_table(summary.reset_index(names="parameter"))
    if args.out:
        idata.to_netcdf(args.out)
        print(f"posterior written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmm-pymc",
        description="Bayesian linear mixed models y ~ 1 + x + (1 + x | group) in PyMC.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="simulate the tutorial's data, fit it and show the recovery")
    demo.add_argument("--seed", type=int, default=2024, help="simulation seed (default: %(default)s)")
    demo.add_argument("--plot", default="lmm_pymc_demo.png",
                      help="where to write the posterior-vs-truth plot (default: %(default)s)")
    demo.add_argument("--random-effects", action="store_true",
                      help="also list every group's random effects in the table")
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
    _add_sampling_args(fit, draws=1000, tune=1000, chains=4)
    fit.set_defaults(func=_cmd_fit)
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
