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
    sampling by :func:`lmm_pymc.fit`. The default wherever the formula has one factor.
``cholesky``
    ``LKJCholeskyCov(eta, sd_dist=HalfNormal)`` on the packed Cholesky factor ``L_k``,
    non-centred ``z_k ~ Normal(0, 1)``, ``b_k = z_k L_k'``. Any q, crossed factors; the
    default for more than one factor.
``lkj_corr``
    The tutorial's Stan model term for term: ``R_k ~ LKJ(eta)`` as an explicit correlation
    matrix, ``sigs_k ~ HalfNormal``, centred ``b_k ~ MvNormal(0, Sigma_k)``. Refused for a
    correlated factor with q > 2 (PyMC's LKJCorr transform can leave the positive-definite
    set there).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .checks import choice
from .design import Design, GroupedStatistics, GroupingFactor
from .marginal import marginal_loglik
from .priors import Priors, ResolvedPriors, default_priors, scalar_rv, vector_dist, vector_rv

__all__ = ["PARAMETRIZATIONS", "build_model", "resolve_parametrization"]

#: Names of the parametrizations :func:`build_model` accepts.
PARAMETRIZATIONS: tuple[str, ...] = ("marginal", "cholesky", "lkj_corr")


def resolve_parametrization(
    data: Design | GroupedStatistics, parametrization: str | None = None
) -> str:
    """The parametrization to use for ``data``: ``parametrization`` after checking that it
    applies, or the default (``marginal`` for one grouping factor, else ``cholesky``)."""
    factors = (data.factor,) if isinstance(data, GroupedStatistics) else data.factors
    if parametrization is None:
        return "marginal" if len(factors) == 1 else "cholesky"
    choice("parametrization", parametrization, PARAMETRIZATIONS)
    if isinstance(data, GroupedStatistics) and parametrization != "marginal":
        raise ValueError(
            "data given as per-group statistics can only be fitted with parametrization="
            f"'marginal', found parametrization={parametrization!r}"
        )
    if parametrization == "marginal" and len(factors) != 1:
        raise ValueError(
            "parametrization 'marginal' needs exactly one grouping factor, found "
            f"{[f.name for f in factors]}; use 'cholesky' for crossed factors"
        )
    if parametrization == "lkj_corr":
        big = [f"{f.name} (q = {f.q})" for f in factors if f.correlated and f.q > 2]
        if big:
            raise ValueError(
                "parametrization 'lkj_corr' is limited to q <= 2 correlated effects per factor "
                f"(PyMC's LKJCorr transform is unsafe beyond), found {big}; use 'cholesky'"
            )
    return parametrization


def _covariance(
    f: GroupingFactor, parametrization: str, priors: ResolvedPriors
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable | None]:
    """``(sigs (q,), R (q, q), L)`` of one factor; ``L`` is the Cholesky factor of Sigma
    (``None`` for the centred ``lkj_corr`` parametrization, which needs Sigma itself)."""
    k, sd_priors, eta = f.key, priors.sds[f.name], priors.etas[f.name]
    if not f.has_correlation:
        sigs = vector_rv(f"sigs_{k}", sd_priors, dims=f.effect_dim)
        return sigs, pt.eye(f.q), pt.diag(sigs)
    if parametrization == "lkj_corr":
        sigs = vector_rv(f"sigs_{k}", sd_priors, dims=f.effect_dim)
        # free variable: the upper triangle of R, interval transform
        R = pm.LKJCorr(f"R_upper_{k}", n=f.q, eta=eta, return_matrix=True)
        return sigs, R, None
    chol, corr, stds = pm.LKJCholeskyCov(
        f"chol_cov_{k}",
        n=f.q,
        eta=eta,
        sd_dist=vector_dist(sd_priors, f"factor {f.name!r}"),
        compute_corr=True,
        store_in_trace=False,
    )
    return stds, corr, chol


def _random_effects(f: GroupingFactor, parametrization: str, sigs, R, L) -> pt.TensorVariable:
    """``b_k`` (J, q) of one factor, non-centred (``cholesky``) or centred (``lkj_corr``)."""
    k, dims = f.key, (f.level_dim, f.effect_dim)
    if parametrization == "cholesky":
        z = pm.Normal(f"z_{k}", 0.0, 1.0, dims=dims)
        # (J, q): row j is L z_j, so b_j ~ N(0, L L')
        return pm.Deterministic(f"b_{k}", z @ L.T, dims=dims)
    if not f.has_correlation:
        return pm.Normal(f"b_{k}", 0.0, sigs[None, :], dims=dims)
    # (q, q) = diag(sigs) R diag(sigs)
    Sigma = sigs[:, None] * R * sigs[None, :]
    return pm.MvNormal(f"b_{k}", mu=np.zeros(f.q), cov=Sigma, dims=dims)


def build_model(
    data: Design | GroupedStatistics,
    parametrization: str | None = None,
    *,
    priors: Priors | None = None,
) -> pm.Model:
    """Build the PyMC model of a design (module docstring).

    Parameters
    ----------
    data : Design or GroupedStatistics
        A design with outcome (:func:`lmm_pymc.formula.design_from_formula`), or per-group
        sums for ``marginal``.
    parametrization : {"marginal", "cholesky", "lkj_corr"}, optional
        Default: ``marginal`` for one grouping factor, else ``cholesky``.
    priors : Priors, optional
        Priors per term (:class:`~lmm_pymc.priors.Priors`); default: weakly informative on
        the data's scale (:func:`~lmm_pymc.priors.default_priors`); ``Priors.tutorial()``
        for the tutorial's.

    Returns
    -------
    pymc.Model
        With the coords of :meth:`Design.coords` (no ``obs`` for ``marginal``).

    Examples
    --------
    >>> from lmm_pymc import simulate
    >>> design = simulate(seed=1).design
    >>> sorted(v.name for v in build_model(design, "cholesky").free_RVs)
    ['beta', 'chol_cov_group_id', 'sigma', 'z_group_id']
    >>> sorted(v.name for v in build_model(design).free_RVs)
    ['beta', 'chol_cov_group_id', 'sigma']
    """
    if not isinstance(data, Design | GroupedStatistics):
        raise ValueError(
            f"data must be a lmm_pymc.Design or GroupedStatistics, found {type(data).__name__}"
        )
    if isinstance(data, Design) and data.y is None:
        raise ValueError("design must carry an outcome y to build a model, found y=None")
    parametrization = resolve_parametrization(data, parametrization)
    priors = default_priors(data) if priors is None else priors
    if not isinstance(priors, Priors):
        raise ValueError(f"priors must be a lmm_pymc.Priors, found {type(priors).__name__}")
    grouped = data if isinstance(data, GroupedStatistics) else None
    if grouped is None and parametrization == "marginal":
        grouped = data.grouped_statistics()
    factors = (grouped.factor,) if grouped is not None else data.factors
    resolved = priors.resolve(data.fixed_names, factors)
    keys = [f.key for f in factors]
    if len(set(keys)) != len(keys):
        raise ValueError(f"grouping factor names must stay distinct as {keys}, found duplicates")
    coords = grouped.coords() if parametrization == "marginal" else data.coords()

    with pm.Model(coords=coords) as model:
        beta = vector_rv("beta", resolved.fixed, dims="fixed_effect")
        sigma = scalar_rv("sigma", resolved.sigma)
        all_sigs, blocks, mu = [], [], None
        if parametrization != "marginal":
            X = pm.Data("X", data.X, dims=("obs", "fixed_effect"))
            mu = X @ beta
        for f in factors:
            sigs, R, L = _covariance(f, parametrization, resolved)
            all_sigs.append(sigs)
            blocks.append(R)
            if parametrization == "marginal":
                loglik = marginal_loglik(grouped.statistics, beta, sigma, L)
                pm.Potential("y_marginal", loglik.sum())
                continue
            b = _random_effects(f, parametrization, sigs, R, L)
            Z = pm.Data(f"Z_{f.key}", f.Z, dims=("obs", f.effect_dim))
            index = pm.Data(f"index_{f.key}", f.index, dims="obs")
            # (N,) += (Z_f * b_f[g_f]).sum(1)
            mu = mu + (Z * b[index]).sum(axis=1)
        pm.Deterministic("sigs", pt.concatenate(all_sigs), dims="random_effect")
        pm.Deterministic(
            "R", pt.linalg.block_diag(*blocks), dims=("random_effect", "random_effect_")
        )
        if parametrization != "marginal":
            pm.Normal("y", mu=mu, sigma=sigma, observed=data.y, dims="obs")
    return model
