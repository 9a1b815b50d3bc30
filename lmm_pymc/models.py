"""PyMC models of any formula's linear mixed model: one builder for every parametrization.

::

    beta     ~ its prior per fixed effect                   dims fixed_effect
    sigma    ~ its prior                                    residual sd
    per factor f (key k = factor name with ':' -> '_'):
      correlated, q_f >= 2:   Sigma_f = diag(sigs_f) R_f diag(sigs_f),  R_f ~ LKJ(eta_f)
      uncorrelated or q_f = 1: Sigma_f = diag(sigs_f)^2
      sigs_f ~ its prior per term (one family per factor)
      b_k[j] ~ N(0, Sigma_f)                                dims (<factor>, <factor>_effect)
    y ~ Normal(X beta + sum_f (Z_f * b_f[g_f]).sum(1), sigma)

A binary or count outcome (``family=``, :mod:`lmm_pymc.families`) keeps the linear
predictor ``eta = X beta + sum_f (Z_f * b_f[g_f]).sum(1)`` and changes the last line only,
e.g. ``y ~ Bernoulli(invlogit(eta))`` (no ``sigma``; the negative binomial's ``alpha``
instead; ``sigma`` and ``nu`` for the Student-t); its effects are sampled (``cholesky``,
the default there, or ``lkj_corr``).

The priors are :mod:`lmm_pymc.priors`' (default: on the data's scale,
:func:`~lmm_pymc.priors.default_priors`; ``Priors.tutorial()`` is the tutorial's).

Named results, the same in every parametrization (and in the Stan programs' output):
``beta``, ``sigma``, ``sigs`` (dims ``random_effect``, coords ``"x|subject"``), ``R``
(``random_effect, random_effect_``; block diagonal over the factors) and per factor ``b_k``.

Parametrizations (:data:`PARAMETRIZATIONS`):

``marginal``
    One grouping factor's random effects integrated out exactly (:mod:`lmm_pymc.marginal`):
    ``LKJCholeskyCov`` for the covariance (``sigs_k`` for an uncorrelated factor) and a
    likelihood from per-group sums, O(groups) per gradient. ``b_k`` is drawn exactly after
    sampling by :func:`lmm_pymc.fit`. The default: crossed or nested factors with at most
    :data:`~lmm_pymc.marginal.JOINT_LIMIT` effects in total have all integrated out at once
    (:mod:`lmm_pymc.marginal.joint`); beyond, or with ``integrate=``, the one with the most
    levels (or the named one) is integrated out (:class:`~lmm_pymc.marginal.MarginalPlan`)
    and the others' effects are sampled non-centred, as in ``cholesky``, but for a factor
    whose rows pin every effect (:attr:`~lmm_pymc.marginal.MarginalPlan.centred`): its
    levels' coefficients ``coef_k[j] = mu + b_k[j] ~ N(mu, Sigma_k)`` are sampled centred on
    the fixed effects ``mu`` of the same names, and ``b_k = coef_k - mu``.
``cholesky``
    ``LKJCholeskyCov(eta, sd_dist=HalfNormal)`` on the packed Cholesky factor ``L_k``,
    non-centred ``z_k ~ Normal(0, 1)``, ``b_k = z_k L_k'``. Any q, crossed factors.
``laplace``
    Binary and count outcomes (opt-in): the factor with the most levels (or ``integrate=``)
    integrated out by the Laplace approximation (:mod:`lmm_pymc.marginal.laplace`), its
    covariance the ``LKJCholeskyCov`` of ``cholesky``; the others' effects sampled as in
    ``cholesky``. ``b_k`` is drawn from the approximation after sampling by
    :func:`lmm_pymc.fit`. Refused for the Gaussian (``marginal`` is exact there).
``lkj_corr``
    The tutorial's Stan model term for term: ``R_k ~ LKJ(eta)`` as an explicit correlation
    matrix, ``sigs_k ~ HalfNormal``, centred ``b_k ~ MvNormal(0, Sigma_k)``. Refused for a
    correlated factor with q > 2 (PyMC's LKJCorr transform can leave the positive-definite
    set there).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from .centring import centred_transform
from .checks import choice
from .compiled import packed_input, probe_blas
from .design import Design, GroupedStatistics
from .effects import FactorEffects, centred_effects, factor_effects
from .families import Family, check_design
from .families import family as as_family
from .initial import start_point
from .marginal import (
    MarginalPlan,
    check_information,
    check_laplace_family,
    crossed_marginal_loglik,
    integrated_factor,
    joint_marginal_loglik,
    laplace_constant,
    laplace_loglik,
    marginal_loglik,
    residual_marginal_loglik,
)
from .marginal.products import NARROW_TYPES
from .options import PARAMETRIZATIONS
from .priors import Priors, default_priors
from .priors.builders import variable

__all__ = ["PARAMETRIZATIONS", "build_model", "resolve_parametrization"]


def resolve_parametrization(
    data: Design | GroupedStatistics, parametrization: str | None = None,
    family: Family | None = None,
) -> str:  # fmt: skip
    """The parametrization to use for ``data``: ``parametrization`` after checking that it
    applies, or the default (``marginal``: one factor's random effects integrated out;
    ``cholesky`` for a non-Gaussian ``family``, whose effects do not integrate out)."""
    gaussian = family is None or family.is_gaussian
    if not gaussian and isinstance(data, GroupedStatistics):
        raise ValueError(
            f"family {family.name!r} needs the rows (a data frame, simulation or Design), "
            "found per-group sums (from files or statistics), which serve family 'gaussian' only"
        )
    if parametrization is None:
        return "marginal" if gaussian else "cholesky"
    choice("parametrization", parametrization, PARAMETRIZATIONS)
    if parametrization == "laplace":
        check_laplace_family(family or as_family())
    if not gaussian and parametrization == "marginal":
        raise ValueError(
            "parametrization 'marginal' integrates the random effects out exactly, which holds "
            f"for family 'gaussian' only, found family={family.name!r}; use 'cholesky' (the "
            "default for other families) or 'lkj_corr'"
        )
    if isinstance(data, GroupedStatistics) and parametrization != "marginal":
        raise ValueError(
            "data given as per-group statistics can only be fitted with parametrization="
            f"'marginal', found parametrization={parametrization!r}"
        )
    if parametrization == "lkj_corr":
        big = [f"{f.name} (q = {f.q})" for f in data.factors if f.correlated and f.q > 2]
        if big:
            raise ValueError(
                "parametrization 'lkj_corr' is limited to q <= 2 correlated effects per factor "
                f"(PyMC's LKJCorr transform is unsafe beyond), found {big}; use 'cholesky'"
            )
    return parametrization


def _stat_input(name: str, values: np.ndarray) -> pt.TensorVariable:
    """A per-group number as a model input, so that one compiled model serves every data set
    of this structure (:func:`lmm_pymc.compiled.compile_model`): a (J,) column is a row of
    the one input ``stat_columns``, a table its own input ``stat_<name>``."""
    if np.ndim(values) == 1:
        return packed_input("stat_columns", values, rows=True)
    if np.asarray(values).dtype.name in NARROW_TYPES:  # kept narrow: pm.Data would widen it
        shared = pytensor.shared(values, f"stat_{name}")
        pm.modelcontext(None).register_data_var(shared)
        return shared
    return pm.Data(f"stat_{name}", values)


def _rows_mean(design: Design, beta, effects: dict[str, FactorEffects]) -> pt.TensorVariable:
    """(N,) ``X beta + sum_f (Z_f * b_f[g_f]).sum(1)`` over the factors with sampled ``b``."""
    X = pm.Data("X", design.X, dims=("obs", "fixed_effect"))
    mu = X @ beta
    for f in design.factors:
        b = effects[f.name].b
        if b is not None:
            Z = pm.Data(f"Z_{f.key}", f.Z, dims=("obs", f.effect_dim))
            index = pm.Data(f"index_{f.key}", f.index, dims="obs")
            # one gather per column: its gradient, a scatter-add into a (J,) vector, costs
            # a fifth of the (J, q) rows' scatter of ``(Z * b[index]).sum(1)`` under numba
            for k in range(f.q):
                mu = mu + Z[:, k] * b[:, k][index]
    return mu


def _conditional_likelihood(design: Design, family: Family, beta, params, effects) -> None:
    """``y ~ family(X beta + sum_f Z_f b_f, params)``, row by row (``cholesky``,
    ``lkj_corr``); ``Normal(., sigma)`` for the Gaussian."""
    y = pm.Data("y_obs", design.y, dims="obs")
    trials = None if design.trials is None else pm.Data("trials", design.trials, dims="obs")
    eta = _rows_mean(design, beta, effects)
    family.likelihood("y", eta, params, observed=y, trials=trials, dims="obs")


def _grouped_likelihood(plan: MarginalPlan, beta, sigma, effects) -> None:
    """One factor, integrated out: everything from the per-group sums."""
    L = effects[plan.integrated.name].L
    # the sum over groups, its quadratic form in beta summed once: a graph whose size does
    # not grow with the number of fixed effects (docs/measurements.md)
    loglik = marginal_loglik(plan.grouped.statistics, beta, sigma, L, total=True,
                             data=_stat_input)  # fmt: skip
    pm.Potential("y_marginal", loglik)


def _crossed_likelihood(plan: MarginalPlan, beta, sigma, effects) -> None:
    """Crossed factors, one integrated out given the others' effects, from the
    cross-products: no array with the number of rows."""
    others = [effects[o.name].b for o in plan.crossed.others]
    L = effects[plan.integrated.name].L
    loglik = crossed_marginal_loglik(plan.crossed, beta, others, sigma, L, data=_stat_input)
    pm.Potential("y_marginal", loglik)


def _rows_likelihood(plan: MarginalPlan, beta, sigma, effects) -> None:
    """Crossed factors, one integrated out given the others' effects: one pass over the rows
    per gradient (cross-products too large to keep)."""
    design, f = plan.design, plan.integrated
    y = pm.Data("y_obs", design.y, dims="obs")
    Z = pm.Data(f"Z_{f.key}", f.Z, dims=("obs", f.effect_dim))
    index = pm.Data(f"index_{f.key}", f.index, dims="obs")
    stats = plan.grouped.statistics
    loglik = residual_marginal_loglik(
        y - _rows_mean(design, beta, effects), Z, index, stats.n, stats.ZtZ, sigma,
        effects[f.name].L, data=_stat_input,
    )  # fmt: skip
    pm.Potential("y_marginal", loglik.sum())


def _joint_likelihood(plan: MarginalPlan, beta, sigma, effects) -> None:
    """Crossed or nested factors with few effects: every factor's integrated out at once."""
    chols = [effects[f.name].L for f in plan.joint.factors]
    loglik = joint_marginal_loglik(plan.joint, beta, sigma, chols, data=_stat_input)
    pm.Potential("y_marginal", loglik)


def _laplace_likelihood(design: Design, family: Family, f, beta, params, effects) -> None:
    """Factor ``f``'s effects integrated out by the Laplace approximation given the other
    factors' (:mod:`lmm_pymc.marginal.laplace`): one pass over the rows per Newton step."""
    check_information(family, f.index, f.n_levels, design.trials)
    y = pm.Data("y_obs", design.y, dims="obs")
    trials = None if design.trials is None else pm.Data("trials", design.trials, dims="obs")
    Z = pm.Data(f"Z_{f.key}", f.Z, dims=("obs", f.effect_dim))
    index = pm.Data(f"index_{f.key}", f.index, dims="obs")
    # (J,) rows per level: its length gives J without a constant of the data's size
    n_levels = _stat_input("n", np.bincount(f.index, minlength=f.n_levels)).shape[0]
    loglik = laplace_loglik(family, y, trials, _rows_mean(design, beta, effects), Z, index,
                            n_levels, f.q, effects[f.name].L, params)  # fmt: skip
    constant = pm.Data("laplace_constant", laplace_constant(family, design.y, design.trials))
    pm.Potential("y_laplace", loglik + constant)


#: ``MarginalPlan.likelihood`` -> the function that adds that likelihood to the model.
MARGINAL_LIKELIHOODS = {
    "grouped": _grouped_likelihood,
    "crossed": _crossed_likelihood,
    "rows": _rows_likelihood,
    "joint": _joint_likelihood,
}


def _checked(data, priors, parametrization, integrate, plan, family):
    """Validated ``(parametrization, priors, plan)`` for :func:`build_model`."""
    if not isinstance(data, Design | GroupedStatistics):
        raise TypeError(
            f"data must be a lmm_pymc.Design or GroupedStatistics, found {type(data).__name__}"
        )
    if isinstance(data, Design) and data.y is None:
        raise ValueError("design must carry an outcome y to build a model, found y=None")
    parametrization = resolve_parametrization(data, parametrization, family)
    if isinstance(data, Design):
        check_design(family, data)
    priors = default_priors(data, family) if priors is None else priors
    if not isinstance(priors, Priors):
        raise TypeError(f"priors must be a lmm_pymc.Priors, found {type(priors).__name__}")
    if parametrization != "marginal":
        for name, value in (("integrate", integrate), ("plan", plan)):
            if value is not None and not (name == "integrate" and parametrization == "laplace"):
                raise ValueError(
                    f"{name} applies to parametrization 'marginal' only, found "
                    f"parametrization={parametrization!r} with {name}={value!r}"
                )
    elif plan is None:
        plan = MarginalPlan.from_data(data, integrate)
    elif not isinstance(plan, MarginalPlan):
        raise TypeError(f"plan must be a lmm_pymc.marginal.MarginalPlan, found {type(plan).__name__}")
    keys = [f.key for f in data.factors]
    if len(set(keys)) != len(keys):
        raise ValueError(f"grouping factor names must stay distinct as {keys}, found duplicates")
    return parametrization, priors, plan


def build_model(
    data: Design | GroupedStatistics,
    parametrization: str | None = None,
    *,
    priors: Priors | None = None,
    integrate: str | None = None,
    plan: MarginalPlan | None = None,
    family: str | Family | None = None,
    link: str | None = None,
    centre: bool = True,
) -> pm.Model:
    """Build the PyMC model of a design (module docstring).

    Parameters
    ----------
    data : Design or GroupedStatistics
        A design with outcome (:func:`lmm_pymc.formula.design_from_formula`), or per-group
        sums for ``marginal``.
    parametrization : {"marginal", "cholesky", "lkj_corr", "laplace"}, optional
        Default ``marginal`` (``cholesky`` for other families than the Gaussian).
    priors : Priors, optional
        Priors per term (:class:`~lmm_pymc.priors.Priors`); default: weakly informative on
        the data's scale (:func:`~lmm_pymc.priors.default_priors`); ``Priors.tutorial()``
        for the tutorial's.
    integrate : str, optional
        With ``marginal`` (crossed factors) or ``laplace``: the factor whose random effects
        are integrated out (default the one with the most levels); the others' are sampled.
    plan : MarginalPlan, optional
        With ``marginal``: the fit's plan when already made (as :func:`lmm_pymc.fit` does,
        to reuse its statistics for the exact draws of the integrated effects); default
        ``MarginalPlan.from_data(data, integrate)``.
    family, link : str, optional
        The outcome's family and link (:func:`lmm_pymc.families.family`): default
        ``"gaussian"``; ``"bernoulli"``, ``"binomial"`` (trials in the formula),
        ``"poisson"``, ``"negbinomial"``, ``"student"``.
    centre : bool, default True
        Sample the fixed effects on centred columns (:mod:`lmm_pymc.centring`: the same
        model and priors, the intercept moved to the columns' means in the sampler's
        coordinates); False samples ``beta`` as it is, as the Stan programs do.

    Returns
    -------
    pymc.Model
        With the coords of :meth:`Design.coords` (no ``obs`` for one factor integrated out).

    Examples
    --------
    >>> from lmm_pymc import simulate
    >>> design = simulate(seed=1).design
    >>> sorted(v.name for v in build_model(design, "cholesky").free_RVs)
    ['beta', 'chol_cov_group_id', 'sigma', 'z_group_id']
    >>> sorted(v.name for v in build_model(design).free_RVs)
    ['beta', 'chol_cov_group_id', 'sigma']
    """
    family = as_family(family, link)
    parametrization, priors, plan = _checked(data, priors, parametrization, integrate, plan,
                                             family)  # fmt: skip
    probe_blas()  # PyTensor's BLAS probe, once and without its warning
    resolved = priors.resolve(data.fixed_names, data.factors, family.parameters)
    grouped_only = plan is not None and plan.likelihood == "grouped"
    coords = plan.grouped.coords() if grouped_only else data.coords()
    with pm.Model(coords=coords) as model:
        # the family's own parameters: sigma (Gaussian), alpha (negative binomial) or none
        params = {p: resolved.parameters[p].create_variable(p) for p in family.parameters}
        laplace = integrated_factor(data, integrate) if parametrization == "laplace" else None
        integrated = plan.integrated_names if plan is not None else ()
        integrated = (laplace.name,) if laplace is not None else integrated
        centred = plan.centred if plan is not None else ()
        effects = factor_effects(data.factors, parametrization, resolved, integrated, centred)
        # last of the sampled vector, its hyperparameters an input of their own: no slice
        # of the compiled log density depends on the number of fixed effects
        # (lmm_pymc.compiled, docs/measurements.md)
        # sampled on centred columns where there is an intercept (lmm_pymc.centring)
        one_family = len({p.family for p in resolved.fixed}) == 1
        transform = centred_transform(data) if centre and one_family else None
        beta = variable("beta", resolved.fixed, dims="fixed_effect", own_input=True,
                        transform=transform)  # fmt: skip
        centred_effects(data.factors, centred, data.fixed_names, beta, effects)
        if plan is not None:
            MARGINAL_LIKELIHOODS[plan.likelihood](plan, beta, params["sigma"], effects)
        elif laplace is not None:
            _laplace_likelihood(data, family, laplace, beta, params, effects)
        else:
            _conditional_likelihood(data, family, beta, params, effects)
    try:  # where the chains start (lmm_pymc.initial); PyMC's start if it cannot be estimated
        model.lmm_start_point = start_point(model, data, family, resolved)
    except (np.linalg.LinAlgError, ValueError):
        model.lmm_start_point = {}
    return model
