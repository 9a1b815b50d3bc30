"""PyMC models of a general linear mixed model, built from a :class:`GeneralDesign`.

::

    beta        ~ Normal(fixed_mu, fixed_sd)              dims fixed_effect
    sigma_g     ~ HalfNormal(residual_sd)                 residual sd
    per factor f (key k = factor name with ':' -> '_'):
      correlated, "cholesky":  chol_cov_k ~ LKJCholeskyCov(eta, HalfNormal(group_sd))
                               z_k ~ Normal(0, 1) (J_f, q_f),  b_k = z_k L_k'
      correlated, "lkj_corr":  sigs_k ~ HalfNormal(group_sd), R_upper_k ~ LKJCorr(eta),
                               b_k ~ MvNormal(0, diag(sigs_k) R_k diag(sigs_k)) (centred)
                               -- q_f <= 2 only: PyMC's LKJCorr transform is unsafe beyond
      uncorrelated (||) or q_f = 1:  sigs_k ~ HalfNormal(group_sd),
                               z_k ~ Normal(0, 1), b_k = z_k * sigs_k ("cholesky")
                               or b_k ~ Normal(0, sigs_k) centred ("lkj_corr")
    y ~ Normal(X beta + sum_f (Z_f * b_f[g_f]).sum(1), sigma_g)

``marginal`` (one grouping factor only): the same priors as ``cholesky`` (``chol_cov_k``,
or ``sigs_k`` for an uncorrelated factor), the random effects integrated out exactly
(:mod:`lmm_pymc.general_marginal`, a potential ``y_marginal`` built from per-group sums);
``b_k`` is then not part of the model.

Named results shared by both parametrizations: ``beta`` (fixed_effect), ``sigma_g``,
``sigs`` (random_effect, coords ``"x|subject"``), ``R`` (random_effect, random_effect_;
block diagonal over the factors), per factor ``b_k`` (level dim, effect dim) and
``R_k``. For the tutorial's formula ``y ~ 1 + x + (1 + x | g)`` the log density equals
the core's :func:`lmm_pymc.build_model` at corresponding points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from .formula import GeneralDesign, GroupingFactor, design_from_formula
from .priors import Priors

__all__ = ["GENERAL_PARAMETRIZATIONS", "build_general_model", "fit_formula"]

#: Parametrizations :func:`build_general_model` accepts.
GENERAL_PARAMETRIZATIONS: tuple[str, ...] = ("cholesky", "lkj_corr", "marginal")


def _factor_effects(
    f: GroupingFactor, parametrization: str, priors: Priors
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable]:
    """Random effects ``b`` (J, q), their sds (q,) and correlation (q, q) of one factor.

    For ``marginal`` the first item is instead the Cholesky factor (q, q) of ``Sigma``.
    """
    k, dims = f.key, (f.level_dim, f.effect_dim)
    matrix_dims = (f.effect_dim, f.effect_dim + "_")
    if not f.correlated or f.q == 1:
        sigs = pm.HalfNormal(f"sigs_{k}", sigma=priors.group_sd, dims=f.effect_dim)
        R = pm.Deterministic(f"R_{k}", pt.eye(f.q), dims=matrix_dims)
        if parametrization == "marginal":
            return pt.diag(sigs), sigs, R  # the Cholesky factor of Sigma in place of b
        if parametrization == "cholesky":
            z = pm.Normal(f"z_{k}", 0.0, 1.0, dims=dims)
            b = pm.Deterministic(f"b_{k}", z * sigs[None, :], dims=dims)
        else:
            b = pm.Normal(f"b_{k}", 0.0, sigs[None, :], dims=dims)
        return b, sigs, R
    if parametrization in ("cholesky", "marginal"):
        chol, corr, stds = pm.LKJCholeskyCov(
            f"chol_cov_{k}",
            n=f.q,
            eta=priors.lkj_eta,
            sd_dist=pm.HalfNormal.dist(sigma=priors.group_sd, shape=f.q),
            compute_corr=True,
        )
        R = pm.Deterministic(f"R_{k}", corr, dims=matrix_dims)
        sigs = pm.Deterministic(f"sigs_{k}", stds, dims=f.effect_dim)
        if parametrization == "marginal":
            return chol, sigs, R  # the Cholesky factor of Sigma in place of b
        z = pm.Normal(f"z_{k}", 0.0, 1.0, dims=dims)
        # (J, q): row j is L z_j, so b_j ~ N(0, L L')
        b = pm.Deterministic(f"b_{k}", z @ chol.T, dims=dims)
        return b, sigs, R
    # lkj_corr, q == 2
    sigs = pm.HalfNormal(f"sigs_{k}", sigma=priors.group_sd, dims=f.effect_dim)
    R = pm.LKJCorr(f"R_upper_{k}", n=f.q, eta=priors.lkj_eta, return_matrix=True)
    R = pm.Deterministic(f"R_{k}", R, dims=matrix_dims)
    # (q, q) = diag(sigs) R diag(sigs)
    Sigma = sigs[:, None] * R * sigs[None, :]
    b = pm.MvNormal(f"b_{k}", mu=np.zeros(f.q), cov=Sigma, dims=dims)
    return b, sigs, R


def build_general_model(
    design: GeneralDesign,
    parametrization: str = "cholesky",
    *,
    priors: Priors | None = None,
) -> pm.Model:
    """Build the PyMC model of a general design (module docstring) with outcome.

    Parameters
    ----------
    design : GeneralDesign
        From :func:`lmm_pymc.formula.design_from_formula`, with ``y``.
    parametrization : {"cholesky", "lkj_corr", "marginal"}
        ``cholesky``: non-centred ``LKJCholeskyCov`` for any q (crossed factors too).
        ``lkj_corr``: explicit LKJ correlation and sds, centred; refused for a correlated
        factor with q > 2 (PyMC's LKJCorr transform can leave the positive-definite set).
        ``marginal``: random effects integrated out, one grouping factor, any p and q.
    priors : Priors, optional
        ``fixed_mu, fixed_sd`` for every entry of ``beta``, ``residual_sd``, ``group_sd``
        for every random-effect sd, ``lkj_eta`` for every correlated factor.

    Returns
    -------
    pymc.Model

    Examples
    --------
    >>> from lmm_pymc import simulate
    >>> from lmm_pymc.formula import design_from_formula
    >>> d = design_from_formula("y ~ 1 + x + (1 + x | group_id)", simulate(seed=1).data)
    >>> sorted(v.name for v in build_general_model(d).free_RVs)
    ['beta', 'chol_cov_group_id', 'sigma_g', 'z_group_id']
    """
    if parametrization not in GENERAL_PARAMETRIZATIONS:
        raise ValueError(
            f"parametrization must be one of {list(GENERAL_PARAMETRIZATIONS)}, found "
            f"{parametrization!r}"
        )
    if not isinstance(design, GeneralDesign):
        raise ValueError(
            f"design must be a lmm_pymc.formula.GeneralDesign, found {type(design).__name__}"
        )
    if design.y is None:
        raise ValueError("design must carry an outcome y to build a model, found y=None")
    if parametrization == "lkj_corr":
        big = [f"{f.name} (q = {f.q})" for f in design.factors if f.correlated and f.q > 2]
        if big:
            raise ValueError(
                "parametrization 'lkj_corr' is limited to q <= 2 correlated effects per factor "
                f"(PyMC's LKJCorr transform is unsafe beyond), found {big}; use 'cholesky'"
            )
    if parametrization == "marginal" and len(design.factors) != 1:
        raise ValueError(
            "parametrization 'marginal' needs exactly one grouping factor, found "
            f"{[f.name for f in design.factors]}; use 'cholesky' for crossed factors"
        )
    priors = Priors() if priors is None else priors
    keys = [f.key for f in design.factors]
    if len(set(keys)) != len(keys):
        raise ValueError(f"grouping factor names must stay distinct as {keys}, found duplicates")

    with pm.Model(coords=design.coords()) as model:
        X = pm.Data("X", design.X, dims=("obs", "fixed_effect"))
        beta = pm.Normal("beta", mu=priors.fixed_mu, sigma=priors.fixed_sd, dims="fixed_effect")
        sigma_g = pm.HalfNormal("sigma_g", sigma=priors.residual_sd)
        mu = X @ beta
        all_sigs, blocks = [], []
        for f in design.factors:
            b, sigs, R = _factor_effects(f, parametrization, priors)
            all_sigs.append(sigs)
            blocks.append(R)
            if parametrization == "marginal":
                from .general_marginal import general_group_statistics, general_marginal_loglik

                stats = general_group_statistics(design)
                pm.Potential("y_marginal", general_marginal_loglik(stats, beta, sigma_g, b).sum())
                continue
            Z = pm.Data(f"Z_{f.key}", f.Z, dims=("obs", f.effect_dim))
            idx = pm.Data(f"index_{f.key}", f.index, dims="obs")
            # (N,) += (Z_f * b_f[g_f]).sum(1)
            mu = mu + (Z * b[idx]).sum(axis=1)
        pm.Deterministic("sigs", pt.concatenate(all_sigs), dims="random_effect")
        pm.Deterministic(
            "R", pt.linalg.block_diag(*blocks), dims=("random_effect", "random_effect_")
        )
        if parametrization != "marginal":
            pm.Normal("y", mu=mu, sigma=sigma_g, observed=design.y, dims="obs")
    return model


def fit_formula(
    formula: str,
    data: pd.DataFrame | GeneralDesign,
    *,
    parametrization: str = "cholesky",
    priors: Priors | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    target_accept: float | None = None,
    sampler: str = "nutpie",
    random_seed: int | None = None,
    progressbar: bool = True,
):
    """Fit an lme4/brms formula to a data frame with NUTS; returns ArviZ InferenceData.

    Parameters as :func:`lmm_pymc.fit`; ``formula`` as
    :func:`lmm_pymc.formula.design_from_formula`. ``data`` may also be a ready
    :class:`GeneralDesign` (then ``formula`` is only recorded). The result's posterior is
    named by the formula's terms (``beta`` over ``fixed_effect``, ``sigs`` over
    ``random_effect`` = ``"x|subject"``, ...). Divergences and r_hat > 1.01 give a
    :class:`lmm_pymc.SamplingWarning`.
    """
    from .fit import check_sampling_arguments, diagnose, sample_model, target_accept_for

    target_accept = target_accept_for(parametrization, target_accept)
    check_sampling_arguments(
        draws=draws, tune=tune, chains=chains, target_accept=target_accept, sampler=sampler
    )
    design = data if isinstance(data, GeneralDesign) else design_from_formula(formula, data)
    model = build_general_model(design, parametrization, priors=priors)
    idata = sample_model(
        model,
        sampler=sampler,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        target_accept=target_accept,
        random_seed=random_seed,
        progressbar=progressbar,
    )
    idata.attrs["formula"] = design.formula or formula
    idata.attrs["parametrization"] = parametrization
    idata.attrs["sampler"] = sampler
    diagnose(idata, var_names=["beta", "sigma_g", "sigs"])
    return idata
