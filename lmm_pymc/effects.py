"""Each grouping factor's variables in a PyMC model: its covariance (``sigs``, ``R`` and the
Cholesky factor ``L``) and its random effects ``b_k``, non-centred (``cholesky``), centred
(``lkj_corr``) or centred on the fixed effects (data-rich sampled factors of a crossed
``marginal`` fit); used by :func:`lmm_pymc.build_model` (the model: :mod:`lmm_pymc.models`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .compiled import register_numba_positive_definite
from .design import GroupingFactor
from .priors import ResolvedPriors
from .priors.builders import distribution, variable

__all__ = ["FactorEffects", "centred_effects", "factor_effects"]


class FactorEffects(NamedTuple):
    """One factor's variables: ``sigs`` (q,), ``R`` (q, q), ``L`` the Cholesky factor of
    Sigma (None for the centred ``lkj_corr``) and ``b`` (J, q; None when integrated out)."""

    sigs: pt.TensorVariable
    R: pt.TensorVariable
    L: pt.TensorVariable | None
    b: pt.TensorVariable | None


def _covariance(
    f: GroupingFactor, parametrization: str, priors: ResolvedPriors
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable | None]:
    """``(sigs (q,), R (q, q), L)`` of one factor; ``L`` is the Cholesky factor of Sigma
    (``None`` for the centred ``lkj_corr`` parametrization, which needs Sigma itself)."""
    k, sigs_priors = f.key, priors.sigs[f.name]
    if not f.has_correlation:
        sigs = variable(f"sigs_{k}", sigs_priors, dims=f.effect_dim)
        return sigs, pt.eye(f.q), pt.diag(sigs)
    # a constant, part of the model's structure: PyMC's LKJ log densities need a constant eta
    eta = priors.etas[f.name]
    if parametrization == "lkj_corr":
        register_numba_positive_definite()  # LKJCorr's check, compiled instead of object mode
        sigs = variable(f"sigs_{k}", sigs_priors, dims=f.effect_dim)
        # free variable: the upper triangle of R, interval transform
        R = pm.LKJCorr(f"R_upper_{k}", n=f.q, eta=eta, return_matrix=True)
        return sigs, R, None
    chol, corr, stds = pm.LKJCholeskyCov(
        f"chol_cov_{k}",
        n=f.q,
        eta=eta,
        sd_dist=distribution(sigs_priors, f"factor {f.name!r}"),
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
    # q = 2 (lkj_corr refuses larger correlated factors): MvNormal's density in closed form
    return pm.CustomDist(f"b_{k}", sigs, R[0, 1], logp=_bivariate_normal_logp,
                         random=_bivariate_normal_draws, signature="(q),()->(q)",
                         dims=dims)  # fmt: skip


def _bivariate_normal_logp(value, sigs, rho):
    """log N(b_j | 0, diag(sigs) [[1, rho], [rho, 1]] diag(sigs)) per row b_j of ``value``:
    the MvNormal density written out for q = 2 (elementwise; PyMC's MvNormal factorises a
    2 x 2 covariance with LAPACK calls, ~10x the cost of the rest of the tutorial's gradient)."""
    u0, u1 = value[..., 0] / sigs[..., 0], value[..., 1] / sigs[..., 1]
    det = 1.0 - rho**2  # |R|
    quad = (u0**2 - 2.0 * rho * u0 * u1 + u1**2) / det
    log_sds = pt.log(sigs[..., 0]) + pt.log(sigs[..., 1])
    return -np.log(2.0 * np.pi) - log_sds - 0.5 * pt.log(det) - 0.5 * quad


def _bivariate_normal_draws(sigs, rho, rng=None, size=None):
    """Draws of :func:`_bivariate_normal_logp`'s distribution (prior predictive):
    ``diag(sigs) L z`` with ``L`` the Cholesky factor of R, parameters broadcast over rows."""
    sigs, rho = np.asarray(sigs), np.asarray(rho)
    shape = tuple(size) if size is not None else np.broadcast_shapes(sigs.shape[:-1], rho.shape)
    z = rng.standard_normal((*shape, 2))
    b1 = rho * z[..., 0] + np.sqrt(1.0 - rho**2) * z[..., 1]
    return np.stack([z[..., 0], b1], axis=-1) * sigs


def factor_effects(
    factors, parametrization: str, priors: ResolvedPriors, integrated: tuple[str, ...],
    later: tuple[str, ...] = (),
) -> dict[str, FactorEffects]:  # fmt: skip
    """Every factor's :class:`FactorEffects`, and the Deterministics ``sigs`` and ``R``
    (block diagonal) over all factors. ``marginal`` puts the integrated factor's covariance
    on the packed Cholesky factor and samples the other factors' effects non-centred, as
    ``cholesky`` (centring a factor with >= 50 rows per level gave divergences and 2-4x the
    leapfrog steps: docs/fast-path.md), but for the factors named in ``later``, whose
    effects :func:`centred_effects` adds once ``beta`` is there (``b`` None until then)."""
    kind = "cholesky" if parametrization in ("marginal", "laplace") else parametrization
    effects = {}
    for f in factors:
        sigs, R, L = _covariance(f, kind, priors)
        deferred = f.name in integrated or f.name in later
        b = None if deferred else _random_effects(f, kind, sigs, R, L)
        effects[f.name] = FactorEffects(sigs, R, L, b)
    pm.Deterministic("sigs", pt.concatenate([e.sigs for e in effects.values()]),
                     dims="random_effect")  # fmt: skip
    pm.Deterministic("R", pt.linalg.block_diag(*(e.R for e in effects.values())),
                     dims=("random_effect", "random_effect_"))  # fmt: skip
    return effects


def centred_effects(factors, names: tuple[str, ...], fixed_names, beta,
                     effects: dict[str, FactorEffects]) -> None:  # fmt: skip
    """The effects of the data-rich sampled factors ``names``
    (:attr:`~lmm_pymc.marginal.MarginalPlan.centred`), centred on the fixed effects:
    ``coef_k[j] ~ N(mu, Sigma_k)`` and ``b_k[j] = coef_k[j] - mu``, where ``mu`` holds
    ``beta`` of the fixed effect of each random effect's name (0 where there is none).

    The same model: the shift by ``mu`` has a unit Jacobian, so ``b_k ~ N(0, Sigma_k)`` as
    before. With many rows per level the rows pin ``beta + b_j`` (lme4's ``coef``), which
    is what the sampler moves here: no ridge between the sd and non-centred effects, nor
    between the intercept and the effects' mean (docs/fast-path.md)."""
    for f in factors:
        if f.name not in names:
            continue
        e, dims = effects[f.name], (f.level_dim, f.effect_dim)
        mu = pt.stack([beta[list(fixed_names).index(n)] if n in fixed_names else pt.constant(0.0)
                       for n in f.effect_names])  # fmt: skip
        if f.has_correlation:
            coef = pm.MvNormal(f"coef_{f.key}", mu=mu, chol=e.L, dims=dims)
        else:
            coef = pm.Normal(f"coef_{f.key}", mu[None, :], e.sigs[None, :], dims=dims)
        effects[f.name] = e._replace(b=pm.Deterministic(f"b_{f.key}", coef - mu[None, :],
                                                        dims=dims))  # fmt: skip
