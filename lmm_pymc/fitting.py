"""Fit any formula's linear mixed model with NUTS: the package's one entry point for fitting.

Data flow: formula + data frame (or a simulation, a design, per-group sums) ->
:class:`~lmm_pymc.design.Design` -> :func:`~lmm_pymc.models.build_model` ->
:func:`~lmm_pymc.sampling.sample_model` -> ArviZ InferenceData -> :func:`diagnose`.
Binary and count outcomes take ``family=`` (:mod:`lmm_pymc.families`) through the same flow.
"""

from __future__ import annotations

import json
import os

import arviz as az
import pandas as pd

from . import tutorial
from .design import Design, GroupedStatistics
from .families import Binomial, Family, check_design
from .families import family as as_family
from .formula import design_from_formula
from .marginal import MarginalPlan, add_random_effects, integrated_factor, laplace_random_effects
from .models import build_model, resolve_parametrization
from .priors import Priors, default_priors
from .sampling import SamplerConfig, diagnose, sample_model, trials_per_level
from .simulation import Simulation

__all__ = ["as_design", "fit", "prior_predictive"]

FitData = pd.DataFrame | Simulation | Design | GroupedStatistics | str | os.PathLike | list


def as_design(
    data: FitData, formula: str | None = None, *, integrate: str | None = None
) -> Design | GroupedStatistics:
    """The validated design (or per-group sums) that ``data`` and ``formula`` describe.

    A data frame needs ``formula`` (default: the tutorial's ``y ~ 1 + x + (1 + x |
    group_id)``); a simulation brings its design (or, with ``formula``, is re-read with it);
    a design and per-group sums are used as they are; CSV or Parquet files (a path, a glob
    pattern or a list of them) are reduced to per-group sums with Dask
    (:func:`lmm_pymc.bigdata.group_statistics_from_files`; with crossed factors, those of
    ``integrate`` and its cross-products with the others).
    """
    if _is_paths(data):
        from .bigdata import group_statistics_from_files

        return group_statistics_from_files(data, formula, integrate=integrate)
    if isinstance(data, Simulation):
        return data.design if formula is None else design_from_formula(formula, data.data)
    if isinstance(data, pd.DataFrame):
        return design_from_formula(tutorial.FORMULA if formula is None else formula, data)
    if isinstance(data, Design):
        if data.y is None:
            raise ValueError(
                "data must carry an outcome y to be fitted, found a Design with y=None"
            )
        return data
    if isinstance(data, GroupedStatistics):
        return data
    raise TypeError(
        "data must be a pandas DataFrame, a Simulation, a Design, GroupedStatistics or paths of "
        "CSV/Parquet files, found "
        f"{type(data).__name__}"
    )


def _is_paths(data: object) -> bool:
    """Whether ``data`` names files: a path, a glob pattern or a non-empty list of them."""
    paths = isinstance(data, list | tuple) and all(isinstance(p, str | os.PathLike) for p in data)
    return isinstance(data, str | os.PathLike) or (paths and bool(data))


def fit(
    data: FitData,
    formula: str | None = None,
    *,
    parametrization: str | None = None,
    priors: Priors | None = None,
    sampling: SamplerConfig | None = None,
    pointwise: bool | None = None,
    integrate: str | None = None,
    family: str | Family | None = None,
    link: str | None = None,
    **sampler_options: object,
) -> az.InferenceData:
    """Fit a linear mixed model with NUTS and return the posterior.

    Parameters
    ----------
    data : DataFrame, Simulation, Design, GroupedStatistics or paths
        Observed data. Per-group sums (e.g. from
        :func:`lmm_pymc.bigdata.group_statistics_from_files`) fit ``marginal`` only; so do
        CSV or Parquet files (a path, glob pattern or list), which are reduced to them with
        Dask, for any formula (with crossed factors: the integrated factor's sums and its
        cross-products with the others' levels).
    formula : str, optional
        An lme4/brms formula such as ``"rt ~ 1 + cond + (1 + cond | subject) + (1 | item)"``;
        default the tutorial's ``"y ~ 1 + x + (1 + x | group_id)"`` (see
        :func:`lmm_pymc.formula.design_from_formula`).
    parametrization : {"marginal", "cholesky", "lkj_corr", "laplace"}, optional
        Default ``marginal``: one factor's random effects integrated out, exact draws of
        them afterwards, seeded by ``random_seed``. With one grouping factor the likelihood
        comes from per-group sums (O(groups) per gradient); with crossed factors the
        factor with the most levels (or ``integrate``) is integrated out and the others'
        effects are sampled (non-centred), from cross-products of O(levels x levels)
        numbers (beyond 2e7 of them: one pass over the rows per gradient). ``laplace``
        (opt-in; bernoulli and binomial with logit, poisson and negbinomial with log): the
        factor with the most levels (or ``integrate``) integrated out by the Laplace
        approximation (:mod:`lmm_pymc.marginal.laplace`), its effects drawn afterwards from
        the approximation, seeded by ``random_seed``; the others' sampled as in ``cholesky``.
    priors : Priors, optional
        Priors per term (:class:`~lmm_pymc.priors.Priors`); default weakly informative on
        the data's scale (:func:`~lmm_pymc.priors.default_priors`); ``Priors.tutorial()``
        is the tutorial's. The priors used are in ``idata.attrs["priors"]`` (JSON) and
        printed by :func:`lmm_pymc.summary`.
    sampling : SamplerConfig, optional
        The sampler's settings; ``sampler_options`` (its field names: ``draws``, ``tune``,
        ``chains``, ``cores``, ``target_accept``, ``sampler``, ``random_seed``,
        ``progressbar``, ``sampler_kwargs``) update it or make one.
    pointwise : bool, optional
        Add ``log_likelihood`` (``az.loo``, ``az.compare``), ``posterior_predictive``
        (``az.plot_ppc``) and ``observed_data`` (:mod:`lmm_pymc.predictions`). Default: when
        draws x rows stays below 2e7 numbers (160 MB) per group.
    integrate : str, optional
        With ``marginal`` (crossed factors) or ``laplace``: the grouping factor to integrate
        out (default: the one with the most levels).
    family : {"gaussian", "bernoulli", "binomial", "poisson", "negbinomial", "student"}, optional
        The outcome's distribution given the linear predictor (:mod:`lmm_pymc.families`),
        default ``"gaussian"`` (for a simulation: its own). A binomial outcome names its
        trials in the formula, ``"y | trials(n) ~ ..."`` or ``"p(y, n) ~ ..."``. Other
        families than the Gaussian sample the random effects (default ``cholesky``;
        ``marginal`` is refused) and need the rows (no files or per-group sums).
    link : str, optional
        The family's link: ``logit`` (default), ``probit`` or ``cloglog`` for bernoulli and
        binomial; ``log`` (default) or ``identity`` for poisson; ``log`` for negbinomial;
        ``identity`` for student (y ~ StudentT(nu, eta, sigma), robust residuals).

    Returns
    -------
    arviz.InferenceData
        ``posterior`` with ``beta`` (fixed_effect), ``sigma``, ``sigs`` (random_effect),
        ``R`` and per factor ``b_<factor>``; ``sample_stats``; attrs ``formula``,
        ``parametrization``, ``sampler``. A :class:`~lmm_pymc.sampling.SamplingWarning`
        names the fix on divergences or r_hat > 1.01.

    Examples
    --------
    >>> import lmm_pymc
    >>> idata = lmm_pymc.fit(lmm_pymc.simulate(seed=1), draws=500, random_seed=1)  # doctest: +SKIP
    >>> idata.posterior["beta"].sel(fixed_effect="x").mean()  # doctest: +SKIP
    """
    config = SamplerConfig.from_options(sampling, **sampler_options)
    if family is None and isinstance(data, Simulation):  # a simulation's own family
        family = data.family if link is None else data.family.name
    family = as_family(family, link)
    if not family.is_gaussian and _is_paths(data):
        raise ValueError(
            f"family {family.name!r} needs the rows in memory (a data frame, simulation or "
            f"Design), found file paths {data!r}, which serve family 'gaussian' only"
        )
    design = as_design(data, formula, integrate=integrate)
    if pointwise and isinstance(design, GroupedStatistics) and design.crossed is not None:
        raise ValueError(
            "pointwise=True needs one grouping factor or the rows, found per-group sums of "
            f"crossed factors {[f.name for f in design.factors]}; leave pointwise unset"
        )
    parametrization = resolve_parametrization(design, parametrization, family)
    if isinstance(design, Design):
        check_design(family, design)  # before the priors are set from the outcome
    priors = default_priors(design, family) if priors is None else priors
    # what the marginal likelihood integrates, from which sums: once for the model and the
    # exact draws of the integrated effects
    plan = MarginalPlan.from_data(design, integrate) if parametrization == "marginal" else None
    model = build_model(design, parametrization, priors=priors, integrate=integrate, plan=plan,
                        family=family)  # fmt: skip
    # the fewest levels of any factor of a marginal model, and a binary or binomial
    # outcome's trials per level, set the default target_accept
    rich = trials_per_level(design) if isinstance(family, Binomial) else None
    idata = sample_model(model, config, parametrization, plan.n_groups if plan else None, rich)
    if plan is not None:  # exact conditional draws b_j | hyperparameters, y (, other b)
        add_random_effects(idata, plan, seed=config.random_seed)
    if parametrization == "laplace":  # b_j from the Laplace approximation N(b_hat_j, H_j^-1)
        factor = integrated_factor(design, integrate)
        idata.posterior[f"b_{factor.key}"] = laplace_random_effects(
            idata.posterior, design, factor, family, seed=config.random_seed)
    idata.attrs["formula"] = getattr(design, "formula", "") or (formula or tutorial.FORMULA)
    idata.attrs["parametrization"] = parametrization
    idata.attrs["sampler"] = config.sampler
    idata.attrs["family"], idata.attrs["link"] = family.name, family.link
    idata.attrs["priors"] = json.dumps(priors.to_dict())
    resolved = priors.resolve(design.fixed_names, design.factors, family.parameters)
    idata.attrs["prior_table"] = json.dumps(resolved.table(design.factors))  # for summary
    _add_pointwise(idata, data, design, pointwise, config, family)
    diagnose(idata, warn=True)
    return idata


#: Largest draws x rows for which fit adds pointwise groups by default.
POINTWISE_LIMIT = 20_000_000


def _add_pointwise(
    idata, data, design, pointwise: bool | None, config: SamplerConfig, family: Family
) -> None:
    """``log_likelihood``, ``posterior_predictive``, ``observed_data`` and the columns
    :func:`~lmm_pymc.predictions.predict` needs (``constant_data``)."""
    from .predictions import add_log_likelihood, add_posterior_predictive, store_data

    frame = data.data if isinstance(data, Simulation) else data
    if isinstance(frame, pd.DataFrame):
        store_data(idata, frame, idata.attrs["formula"])
    n_draws = config.draws * config.chains
    rows = design.n_obs if isinstance(design, Design) else len(design.statistics.n)
    crossed_sums = isinstance(design, GroupedStatistics) and design.crossed is not None
    if pointwise is None:  # crossed factors' sums have no per-group log-likelihood
        pointwise = n_draws * rows <= POINTWISE_LIMIT and not crossed_sums
    if not pointwise:
        return
    add_log_likelihood(idata, design, family)
    if isinstance(design, Design):
        add_posterior_predictive(idata, design, seed=config.random_seed, family=family)


def prior_predictive(
    data: pd.DataFrame | Simulation | Design,
    formula: str | None = None,
    *,
    priors: Priors | None = None,
    draws: int = 500,
    random_seed: int | None = None,
    family: str | Family | None = None,
    link: str | None = None,
) -> az.InferenceData:
    """Draws of every parameter and of y from the priors alone, with ``observed_data``
    beside them (``az.plot_ppc(idata, group="prior")`` compares them with the data).

    ``priors`` default to the data-scale defaults that :func:`fit` would use for ``family``
    and ``link`` (as in :func:`fit`); ``data`` gives the design (its predictors and groups)
    and the observed y.
    """
    from .checks import positive_int

    draws = positive_int("draws", draws)
    design = as_design(data, formula)
    if not isinstance(design, Design):
        raise ValueError("prior_predictive needs rows (a data frame, simulation or Design)")
    family = as_family(family, link)
    check_design(family, design)
    priors = default_priors(design, family) if priors is None else priors
    import pymc as pm

    # the conditional model has y as a random variable; marginal's likelihood is a Potential
    with build_model(design, "cholesky", priors=priors, family=family):
        idata = pm.sample_prior_predictive(draws=draws, random_seed=random_seed)
    idata.attrs["formula"] = design.formula
    idata.attrs["family"], idata.attrs["link"] = family.name, family.link
    idata.attrs["priors"] = json.dumps(priors.to_dict())
    return idata
