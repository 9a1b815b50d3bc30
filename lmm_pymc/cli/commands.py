"""The commands of ``lmm-pymc``: one function per subcommand, ``cmd_<name>(args) -> exit code``.

Each imports what it needs (PyMC, PyTensor, the samplers, Dask, Stan) when it runs, never at
import time: :mod:`lmm_pymc.cli.parsers` names these functions, and parsing the command
line must stay light.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..options import CROSSCHECK_PAIRS

__all__ = [
    "cmd_crosscheck",
    "cmd_demo",
    "cmd_fit",
    "cmd_predict",
    "cmd_sbc",
    "cmd_simulate",
    "priors_from_args",
    "print_table",
    "sampler_config",
]


def sampler_config(args: argparse.Namespace, **over: object):
    """The :class:`~lmm_pymc.SamplerConfig` of the sampler options, ``over`` replacing some."""
    from ..sampling import SamplerConfig

    options = dict(draws=args.draws, tune=args.tune, chains=args.chains,
                   target_accept=args.target_accept, sampler=args.sampler,
                   random_seed=getattr(args, "sampler_seed", None),
                   progressbar=not args.no_progress)  # fmt: skip
    return SamplerConfig(**(options | over))


def print_table(table, *, precise: bool = False) -> None:
    """Every table the command line prints: a data frame, all columns, fixed width, numbers
    formatted per column (:func:`lmm_pymc.summaries.text_table`)."""
    from ..summaries import text_table

    print(text_table(table, precise=precise))


def cmd_demo(args: argparse.Namespace) -> int:
    from .. import tutorial
    from ..files import check_output
    from ..fitting import fit
    from ..priors import Priors
    from ..recovery import plot_recovery, recovery_table
    from ..simulation import simulate

    check_output(args.plot, argument="--plot")
    sim = simulate(seed=args.seed)
    print(f"Simulated the tutorial's design {tutorial.FORMULA!r}: 3 groups x 10 rows, x = 1..10")
    print(f"  true beta = {list(tutorial.BETA)}, sds = {list(tutorial.SIGS)}, "
          f"rho = {tutorial.RHO}, residual sd = {tutorial.SIGMA}  (seed {args.seed})")  # fmt: skip
    print(sim.data.head(6).to_string(index=False))
    config = sampler_config(args)
    print(f"\nFitting with {config.sampler} NUTS ...")
    start = time.perf_counter()
    idata = fit(sim, parametrization=args.parametrization, priors=Priors.tutorial(),
                sampling=config)  # fmt: skip
    print(f"done in {time.perf_counter() - start:.1f} s "
          f"(parametrization {idata.attrs['parametrization']!r})\n")  # fmt: skip
    table = recovery_table(idata, sim.truth, random_effects=args.random_effects)
    print_table(table)
    print(f"\n{int(table['covered'].sum())} of {len(table)} true values inside their 94% HDI")
    plot_recovery(idata, sim.truth, args.plot)
    print(f"posterior-vs-truth plot written to {args.plot}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .. import tutorial
    from ..files import atomic_path, check_output
    from ..simulation import simulate

    out = check_output(args.out)
    frame = tutorial.design_frame(args.groups, args.rows)
    params = tutorial.parameters(beta=(args.alpha, args.beta), rho=args.rho, sigma=args.sigma,
                                 sigs=(args.sd_intercept, args.sd_slope))  # fmt: skip
    sim = simulate(data=frame, **params, seed=args.seed)
    with atomic_path(out) as tmp:
        sim.data.to_csv(tmp, index=False)
    print(f"wrote {len(sim.data)} rows in {args.groups} groups to {args.out}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from ..files import atomic_path, check_output, read_csv

    out = check_output(args.out) if args.out else None
    data = read_csv(args.csv)
    from .. import tutorial

    formula = args.formula or tutorial.formula(args.y, args.x, args.group)
    config = sampler_config(args)
    from ..formula import design_from_formula

    from ..families import check_design, family

    design = design_from_formula(formula, data)  # data errors before PyMC is imported
    outcome = family(args.family, args.link)
    check_design(outcome, design)
    priors = priors_from_args(args, design, outcome)
    from ..fitting import fit
    from ..summaries import summary

    idata = fit(data, formula, parametrization=args.parametrization, priors=priors,
                sampling=config, family=outcome)  # fmt: skip
    print(summary(idata))
    if out is not None:
        with atomic_path(out) as tmp:
            idata.to_netcdf(tmp)
        print(f"posterior written to {args.out}")
    return 0


def priors_from_args(args: argparse.Namespace, design, family=None):
    """``--prior NAME=PRIOR`` options over the data-scale defaults (or the tutorial's) of
    the outcome's ``family`` (:class:`lmm_pymc.families.Family`, default Gaussian)."""
    from ..families import family as as_family
    from ..priors import Priors, default_priors, parse_prior

    family = as_family(family)
    base = Priors.tutorial() if args.tutorial_priors else default_priors(design, family)
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
    priors.resolve(design.fixed_names, design.factors, family.parameters)  # unknown names: now
    return priors


def cmd_predict(args: argparse.Namespace) -> int:
    from ..files import atomic_path, check_output, read_csv

    out = check_output(args.out)
    if not Path(args.posterior).is_file():
        raise ValueError(
            f"posterior must be a NetCDF file of lmm-pymc fit --out, found {args.posterior!r}"
        )
    new = read_csv(args.csv, argument="csv")
    import arviz as az
    import numpy as np

    from ..predictions import predict

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
    print_table(table.head(20))
    print(f"predictions for {len(table)} rows written to {out}")
    return 0


def cmd_sbc(args: argparse.Namespace) -> int:
    from ..files import atomic_path
    from ..priors import Normal, Priors
    from ..sbc import SBCConfig, SBCStore, run_sbc

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
                           sampling=sampler_config(args, progressbar=False),
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
    print_table(table[["parameter", "passed", "max_ecdf_excess", "chi2_p_value"]])
    with atomic_path(out / "ranks.csv") as tmp:
        result.table.to_csv(tmp, index=False)
    result.plot_ecdf(out / "ecdf.png", prob=args.prob)
    result.plot_histograms(out / "ranks.png")
    print(f"tidy ranks in {out / 'ranks.csv'}, plots {out / 'ecdf.png'} and {out / 'ranks.png'}")
    passed = bool(table["passed"].all())
    failed = ", ".join(table.loc[~table["passed"], "parameter"])
    print("uniformity: " + ("all parameters pass" if passed else f"FAILED for {failed}"))
    return 0 if passed or not args.check else 1


def _crosscheck_data(args: argparse.Namespace):
    """``(simulation, priors)`` of ``lmm-pymc crosscheck``: the tutorial's model, or for
    ``--family`` other than gaussian its design with effects on the link's scale (beta 0.3,
    0.5; sds 0.8, 0.4; rho 0.3; alpha 3; the Student-t's sigma 1, nu 4) and the data-scale
    default priors."""
    from .. import tutorial
    from ..families import family
    from ..priors import default_priors
    from ..simulation import simulate

    fam, frame = family(args.family, args.link), tutorial.design_frame(args.groups, args.rows)
    size = f"{args.groups} groups x {args.rows} rows, seed {args.seed}"
    if fam.is_gaussian:
        print(f"data: the tutorial's model, {size}")
        return simulate(data=frame, seed=args.seed, family=fam), None
    formula = tutorial.FORMULA
    if fam.needs_trials:
        frame, formula = frame.assign(n=5), formula.replace("y ~", "y | trials(n) ~")
    own = {n: v for n, v in (("alpha", 3.0), ("sigma", 1.0), ("nu", 4.0)) if n in fam.parameters}
    groups = {tutorial.GROUP: {"sigs": [0.8, 0.4], "rho": 0.3}}
    sim = simulate(formula, frame, beta=[0.3, 0.5], groups=groups, seed=args.seed, family=fam,
                   **own)  # fmt: skip
    print(f"data: the tutorial's design, {fam.name} outcome ({fam.link} link), {size}")
    return sim, default_priors(sim.design, fam)


def cmd_crosscheck(args: argparse.Namespace) -> int:
    from ..crosscheck import available_pairs, compare_posteriors, crosscheck
    from ..stan import resolve_engine

    names = args.parametrization or list(CROSSCHECK_PAIRS)
    if args.model_lib is not None and len(names) != 1:
        raise ValueError(
            f"--model-lib must come with one pair (a library is one compiled program), found "
            f"{len(names)} pairs {names}: name it, e.g. --parametrization {names[0]}"
        )
    # fails here, before any PyMC work: exit 3 with what is missing and how to get it
    resolve_engine(args.engine, args.model_lib)
    sim, priors = _crosscheck_data(args)
    agree = True
    for name in args.parametrization or available_pairs(sim.design, sim.family):
        start = time.perf_counter()
        result = crosscheck(sim, program=name, priors=priors, n_prior=args.prior_points,
                            n_posterior=args.posterior_points,
                            engine=args.engine, model_lib=args.model_lib,
                            seed=args.sampler_seed)  # fmt: skip
        print()
        print_table(result.table, precise=True)
        print(result.summary())
        print(f"  ({time.perf_counter() - start:.0f} s)")
        agree = agree and result.ok
        if args.posterior:
            table = compare_posteriors(sim, program=name, draws=args.draws, tune=args.tune,
                                       chains=args.chains, seed=args.sampler_seed)  # fmt: skip
            print(f"\n{name}: posterior means, PyMC NUTS vs Stan NUTS (PyStan), "
                  "|diff| < 4 sqrt(mcse_pymc^2 + mcse_stan^2)")  # fmt: skip
            print_table(table)
            agree = agree and bool(table["agree"].all())
    print("\ncross-check: " + ("all pairs agree" if agree else "DISAGREEMENT"))
    return 0 if agree else 1
