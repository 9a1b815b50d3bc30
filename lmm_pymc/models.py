"""PyMC models of ``y ~ 1 + x + (1 + x | group)``, built from a :class:`~lmm_pymc.design.Design`.

Every parametrization exposes the same named quantities, with the names of the Stan
files in ``stan_reference/``:

==============  =================================  ===========================
name            meaning                            dims
==============  =================================  ===========================
alpha_0         fixed intercept                    ()
beta_0          fixed slope                        ()
sigma_g         residual sd                        ()
sigs            sds of random intercept and slope  (random_effect,)
R               correlation matrix                 (random_effect, random_effect_)
rho             correlation R[0, 1]                ()
Sigma           diag(sigs) R diag(sigs)            (random_effect, random_effect_)
random_group    per-group random effects b         (group, random_effect)
==============  =================================  ===========================

Parametrizations (see :data:`PARAMETRIZATIONS`):

``lkj_corr``
    The tutorial's Stan model term for term: ``R ~ LKJ(eta)`` as an explicit correlation
    matrix, ``sigs ~ HalfNormal``, centred ``random_group[j] ~ MvNormal(0, Sigma)``.
``cholesky``
    ``LKJCholeskyCov(eta, sd_dist=HalfNormal)`` on the packed Cholesky factor ``L`` of
    Sigma, non-centred random effects ``z ~ Normal(0, 1)``, ``b = z L'``.
``marginal``
    The random effects integrated out exactly (:mod:`lmm_pymc.marginal`): the same priors
    and ``LKJCholeskyCov`` as ``cholesky``, a likelihood from per-group sums (O(groups) per
    gradient); ``random_group`` is drawn exactly after sampling.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .design import Design
from .marginal import build_marginal_model
from .priors import Priors

__all__ = ["PARAMETRIZATIONS", "build_model", "SCALAR_PARAMETERS"]

#: Names of the parametrizations :func:`build_model` accepts.
PARAMETRIZATIONS: tuple[str, ...] = ("lkj_corr", "cholesky", "marginal")

#: Scalar summaries every parametrization exposes (``sigs`` has one per random effect).
SCALAR_PARAMETERS: tuple[str, ...] = ("alpha_0", "beta_0", "sigma_g", "sigs", "rho")


def _check_parametrization(parametrization: str) -> str:
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"parametrization must be one of {list(PARAMETRIZATIONS)}, found {parametrization!r}"
        )
    return parametrization


def _fixed_and_residual(design: Design, priors: Priors) -> tuple[pt.TensorVariable, ...]:
    """alpha_0, beta_0, sigma_g and the data containers, in the current model context."""
    x = pm.Data("x", design.x, dims="obs")
    group_idx = pm.Data("group_idx", design.group_index, dims="obs")
    alpha_0 = pm.Normal("alpha_0", mu=priors.fixed_mu, sigma=priors.fixed_sd)
    beta_0 = pm.Normal("beta_0", mu=priors.fixed_mu, sigma=priors.fixed_sd)
    sigma_g = pm.HalfNormal("sigma_g", sigma=priors.residual_sd)
    return x, group_idx, alpha_0, beta_0, sigma_g


def _likelihood(design, x, group_idx, alpha_0, beta_0, sigma_g, random_group) -> None:
    # (N,) = X beta + (Z_rows * b[group]).sum(1), with X = Z_rows = (1, x)
    b = random_group[group_idx]
    mu = alpha_0 + beta_0 * x + b[:, 0] + b[:, 1] * x
    pm.Normal("y", mu=mu, sigma=sigma_g, observed=design.y, dims="obs")


def build_model(
    design: Design,
    parametrization: str = "lkj_corr",
    *,
    priors: Priors | None = None,
) -> pm.Model:
    """Build the PyMC model of ``y ~ 1 + x + (1 + x | group)`` for a design with outcome.

    Parameters
    ----------
    design : Design
        Validated design with ``y`` (see :meth:`Design.from_dataframe`).
    parametrization : {"lkj_corr", "cholesky", "marginal"}
        ``lkj_corr`` mirrors the tutorial's Stan model term for term; ``cholesky`` uses
        ``LKJCholeskyCov`` with non-centred random effects; ``marginal`` integrates the
        random effects out (:func:`lmm_pymc.marginal.build_marginal_model`, no ``obs``
        coordinate, ``random_group`` is drawn after sampling by ``fit``).
    priors : Priors, optional
        Prior configuration; defaults to the tutorial's priors.

    Returns
    -------
    pymc.Model
        With coords ``obs``, ``group`` (the user's labels), ``fixed_effect``,
        ``random_effect`` and ``random_effect_``.

    Examples
    --------
    >>> from lmm_pymc import simulate
    >>> model = build_model(simulate(seed=1).design, "cholesky")
    >>> sorted(v.name for v in model.free_RVs)
    ['alpha_0', 'beta_0', 'chol_cov', 'sigma_g', 'z']
    """
    _check_parametrization(parametrization)
    if not isinstance(design, Design):
        raise ValueError(f"design must be a lmm_pymc.Design, found {type(design).__name__}")
    if design.y is None:
        raise ValueError("design must carry an outcome y to build a model, found y=None")
    priors = Priors() if priors is None else priors
    if parametrization == "marginal":
        return build_marginal_model(design.group_statistics(), design.group_labels, priors=priors)
    q = len(design.random_names)

    with pm.Model(coords=design.coords()) as model:
        x, group_idx, alpha_0, beta_0, sigma_g = _fixed_and_residual(design, priors)
        if parametrization == "lkj_corr":
            sigs = pm.HalfNormal("sigs", sigma=priors.group_sd, dims="random_effect")
            # free variable: the upper triangle of R (one value for 2 x 2), interval transform
            R = pm.LKJCorr("R_upper", n=q, eta=priors.lkj_eta, return_matrix=True)
            R = pm.Deterministic("R", R, dims=("random_effect", "random_effect_"))
            # (q, q) = diag(sigs) R diag(sigs)
            Sigma = pm.Deterministic(
                "Sigma", sigs[:, None] * R * sigs[None, :], dims=("random_effect", "random_effect_")
            )
            random_group = pm.MvNormal(
                "random_group", mu=np.zeros(q), cov=Sigma, dims=("group", "random_effect")
            )
        else:  # cholesky
            chol, corr, stds = pm.LKJCholeskyCov(
                "chol_cov",
                n=q,
                eta=priors.lkj_eta,
                sd_dist=pm.HalfNormal.dist(sigma=priors.group_sd, shape=q),
                compute_corr=True,
            )
            pm.Deterministic("sigs", stds, dims="random_effect")
            R = pm.Deterministic("R", corr, dims=("random_effect", "random_effect_"))
            pm.Deterministic("Sigma", chol @ chol.T, dims=("random_effect", "random_effect_"))
            z = pm.Normal("z", 0.0, 1.0, dims=("group", "random_effect"))
            # (J, q): row j is L z_j, so b_j ~ N(0, L L') = N(0, Sigma)
            random_group = pm.Deterministic(
                "random_group", z @ chol.T, dims=("group", "random_effect")
            )
        pm.Deterministic("rho", R[0, 1])
        _likelihood(design, x, group_idx, alpha_0, beta_0, sigma_g, random_group)
    return model
