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
from .compiled import packed_input, probe_blas, register_numba_positive_definite
from .design import Design, GroupedStatistics, GroupingFactor, GroupStatistics
from .marginal import (
    CrossedStatistics,
    crossed_marginal_loglik,
    crossed_statistics,
    marginal_loglik,
    residual_marginal_loglik,
)
from .options import PARAMETRIZATIONS
from .priors import (
    Priors,
    ResolvedPriors,
    default_priors,
    scalar_rv,
    vector_dist,
    vector_rv,
)

__all__ = [
    "PARAMETRIZATIONS",
    "build_model",
    "integrated_factor",
    "resolve_parametrization",
]


def resolve_parametrization(
    data: Design | GroupedStatistics, parametrization: str | None = None
) -> str:
    """The parametrization to use for ``data``: ``parametrization`` after checking that it
    applies, or the default (``marginal``: one factor's random effects integrated out)."""
    factors = (data.factor,) if isinstance(data, GroupedStatistics) else data.factors
    if parametrization is None:
        return "marginal"
    choice("parametrization", parametrization, PARAMETRIZATIONS)
    if isinstance(data, GroupedStatistics) and parametrization != "marginal":
        raise ValueError(
            "data given as per-group statistics can only be fitted with parametrization="
            f"'marginal', found parametrization={parametrization!r}"
        )
    if parametrization == "lkj_corr":
        big = [f"{f.name} (q = {f.q})" for f in factors if f.correlated and f.q > 2]
        if big:
            raise ValueError(
                "parametrization 'lkj_corr' is limited to q <= 2 correlated effects per factor "
                f"(PyMC's LKJCorr transform is unsafe beyond), found {big}; use 'cholesky'"
            )
    return parametrization


def integrated_factor(
    data: Design | GroupedStatistics, integrate: str | None = None
) -> GroupingFactor:
    """The grouping factor whose random effects ``marginal`` integrates out: ``integrate``
    (a factor's name, as in the formula) or the one with the most levels (the first of
    equals)."""
    factors = (data.factor,) if isinstance(data, GroupedStatistics) else data.factors
    if integrate is None:
        return max(factors, key=lambda f: f.n_levels)
    names = [f.name for f in factors]
    if integrate not in names:
        raise ValueError(
            f"integrate must name a grouping factor among {names}, found {integrate!r}"
        )
    return factors[names.index(integrate)]


def _covariance(
    f: GroupingFactor, parametrization: str, priors: ResolvedPriors
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable | None]:
    """``(sigs (q,), R (q, q), L)`` of one factor; ``L`` is the Cholesky factor of Sigma
    (``None`` for the centred ``lkj_corr`` parametrization, which needs Sigma itself)."""
    k, sd_priors = f.key, priors.sds[f.name]
    if not f.has_correlation:
        sigs = vector_rv(f"sigs_{k}", sd_priors, dims=f.effect_dim)
        return sigs, pt.eye(f.q), pt.diag(sigs)
    # a constant, part of the model's structure: PyMC's LKJ log densities need a constant eta
    eta = priors.etas[f.name]
    if parametrization == "lkj_corr":
        register_numba_positive_definite()  # LKJCorr's check, compiled instead of object mode
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
    """``b_k`` (J, q) of one factor: non-centred (``cholesky``) or centred on
    ``diag(sigs) R diag(sigs)`` (``lkj_corr``)."""
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
    integrate: str | None = None,
    crossed: CrossedStatistics | None = None,
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
    integrate : str, optional
        With ``marginal`` and crossed factors: the factor whose random effects are
        integrated out (default the one with the most levels); the others' are sampled.
    crossed : CrossedStatistics, optional
        With ``marginal`` and crossed factors: the design's cross-products
        (:func:`lmm_pymc.marginal.crossed_statistics`) when already computed (as
        :func:`lmm_pymc.fit` does, to reuse them for the exact draws of the integrated
        effects).

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
    probe_blas()  # PyTensor's BLAS probe, once and without its warning
    marginal = parametrization == "marginal"
    grouped = data if isinstance(data, GroupedStatistics) else None
    if grouped is None and marginal and len(data.factors) == 1:
        grouped = data.grouped_statistics()
    factors = (grouped.factor,) if grouped is not None else data.factors
    resolved = priors.resolve(data.fixed_names, factors)
    keys = [f.key for f in factors]
    if len(set(keys)) != len(keys):
        raise ValueError(f"grouping factor names must stay distinct as {keys}, found duplicates")
    if integrate is not None and not marginal:
        raise ValueError(
            f"integrate applies to parametrization 'marginal' only, found "
            f"parametrization={parametrization!r} with integrate={integrate!r}"
        )
    integrated = integrated_factor(data, integrate) if marginal else None
    if marginal and grouped is None and crossed is None:
        crossed = crossed_statistics(data, integrated)
    # the rows enter the graph unless every likelihood term comes from sums or cross-products
    rows = grouped is None and not (marginal and crossed is not None)
    coords = grouped.coords() if grouped is not None else data.coords()

    # the per-group numbers are model inputs, so that one compiled model serves every data
    # set of this structure (lmm_pymc.compiled.compile_model): the (J,) columns are the rows
    # of the one input "stat_columns", a table is its own input "stat_<name>"
    def as_data(name: str, values: np.ndarray) -> pt.TensorVariable:
        if np.ndim(values) == 1:
            return packed_input("stat_columns", values, rows=True)
        return pm.Data(f"stat_{name}", values)

    with pm.Model(coords=coords) as model:
        beta = vector_rv("beta", resolved.fixed, dims="fixed_effect")
        sigma = scalar_rv("sigma", resolved.sigma)
        all_sigs, blocks, mu, sampled = [], [], None, {}
        if rows:
            X = pm.Data("X", data.X, dims=("obs", "fixed_effect"))
            mu = X @ beta
        for f in factors:
            # marginal: the integrated factor's covariance on the packed Cholesky factor, the
            # other factors' effects sampled non-centred as in cholesky. Centring a factor with
            # >= 50 rows per level (60 x 25 subjects x items) gave 2-10 divergences and
            # 32-79 leapfrog steps per draw at min bulk ESS 57-72, non-centred 0, 15-16 and
            # 643-882; on 1000 x 100 both took 15 steps per draw.
            kind = "cholesky" if marginal else parametrization
            sigs, R, L = _covariance(f, kind, resolved)
            all_sigs.append(sigs)
            blocks.append(R)
            if f is integrated:
                L_int = L
                continue
            b = sampled[f.name] = _random_effects(f, kind, sigs, R, L)
            if rows:
                Z = pm.Data(f"Z_{f.key}", f.Z, dims=("obs", f.effect_dim))
                index = pm.Data(f"index_{f.key}", f.index, dims="obs")
                # (N,) += (Z_f * b_f[g_f]).sum(1)
                mu = mu + (Z * b[index]).sum(axis=1)
        pm.Deterministic("sigs", pt.concatenate(all_sigs), dims="random_effect")
        pm.Deterministic(
            "R", pt.linalg.block_diag(*blocks), dims=("random_effect", "random_effect_")
        )
        if grouped is not None:  # one factor: everything from the per-group sums
            loglik = marginal_loglik(grouped.statistics, beta, sigma, L_int, data=as_data)
            pm.Potential("y_marginal", loglik.sum())
        elif marginal:  # crossed: one factor integrated out given the others' effects
            f = integrated
            if crossed is not None:  # from cross-products: no array with the number of rows
                others = [sampled[o.name] for o in crossed.others]
                loglik = crossed_marginal_loglik(crossed, beta, others, sigma, L_int, data=as_data)
            else:  # one pass over the rows per gradient
                y = pm.Data("y_obs", data.y, dims="obs")
                Z = pm.Data(f"Z_{f.key}", f.Z, dims=("obs", f.effect_dim))
                index = pm.Data(f"index_{f.key}", f.index, dims="obs")
                n = np.bincount(f.index, minlength=f.n_levels).astype(float)
                ZtZ = GroupStatistics.from_rows(data.X, f.Z, data.y, f.index, f.n_levels).ZtZ
                loglik = residual_marginal_loglik(
                    y - mu, Z, index, n, ZtZ, sigma, L_int, data=as_data
                ).sum()
            pm.Potential("y_marginal", loglik)
        else:
            y = pm.Data("y_obs", data.y, dims="obs")
            pm.Normal("y", mu=mu, sigma=sigma, observed=y, dims="obs")
    return model
