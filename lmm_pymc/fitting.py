"""Fit any formula's linear mixed model with NUTS: the package's one entry point for fitting.

Data flow: formula + data frame (or a simulation, a design, per-group sums) ->
:class:`~lmm_pymc.design.Design` -> :func:`~lmm_pymc.models.build_model` ->
:func:`~lmm_pymc.sampling.sample_model` -> ArviZ InferenceData -> :func:`diagnose`.
"""

from __future__ import annotations

import arviz as az
import pandas as pd

from . import tutorial
from .design import Design, GroupedStatistics
from .formula import design_from_formula
from .models import build_model, resolve_parametrization
from .priors import Priors
from .sampling import SamplerConfig, diagnose, sample_model
from .simulation import Simulation

__all__ = ["as_design", "fit"]

FitData = pd.DataFrame | Simulation | Design | GroupedStatistics


def as_design(data: FitData, formula: str | None = None) -> Design | GroupedStatistics:
    """The validated design (or per-group sums) that ``data`` and ``formula`` describe.

    A data frame needs ``formula`` (default: the tutorial's ``y ~ 1 + x + (1 + x |
    group_id)``); a simulation brings its design (or, with ``formula``, is re-read with it);
    a design and per-group sums are used as they are.
    """
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
    raise ValueError(
        "data must be a pandas DataFrame, a Simulation, a Design or GroupedStatistics, found "
        f"{type(data).__name__}"
    )


def fit(
    data: FitData,
    formula: str | None = None,
    *,
    parametrization: str | None = None,
    priors: Priors | None = None,
    sampling: SamplerConfig | None = None,
    **sampler_options: object,
) -> az.InferenceData:
    """Fit a linear mixed model with NUTS and return the posterior.

    Parameters
    ----------
    data : DataFrame, Simulation, Design or GroupedStatistics
        Observed data. Per-group sums (e.g. from
        :func:`lmm_pymc.bigdata.group_statistics_from_files`) fit ``marginal`` only.
    formula : str, optional
        An lme4/brms formula such as ``"rt ~ 1 + cond + (1 + cond | subject) + (1 | item)"``;
        default the tutorial's ``"y ~ 1 + x + (1 + x | group_id)"`` (see
        :func:`lmm_pymc.formula.design_from_formula`).
    parametrization : {"marginal", "cholesky", "lkj_corr"}, optional
        Default ``marginal`` (random effects integrated out, O(groups) per gradient, exact
        draws of every ``b_k`` afterwards, seeded by ``random_seed``) wherever the formula
        has one grouping factor, else ``cholesky``.
    priors : Priors, optional
        Prior configuration (default: the tutorial's priors).
    sampling : SamplerConfig, optional
        The sampler's settings; ``sampler_options`` (its field names: ``draws``, ``tune``,
        ``chains``, ``cores``, ``target_accept``, ``sampler``, ``random_seed``,
        ``progressbar``, ``sampler_kwargs``) update it or make one.

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
    design = as_design(data, formula)
    parametrization = resolve_parametrization(design, parametrization)
    model = build_model(design, parametrization, priors=priors)
    idata = sample_model(model, config, parametrization)
    if parametrization == "marginal":
        # exact conditional draws b_j | hyperparameters, y (lmm_pymc.marginal)
        from .marginal import add_random_effects

        grouped = design if isinstance(design, GroupedStatistics) else design.grouped_statistics()
        add_random_effects(idata, grouped, seed=config.random_seed)
    idata.attrs["formula"] = getattr(design, "formula", "") or (formula or tutorial.FORMULA)
    idata.attrs["parametrization"] = parametrization
    idata.attrs["sampler"] = config.sampler
    diagnose(idata, warn=True)
    return idata
