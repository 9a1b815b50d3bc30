"""The maths of the cross-check pairs (:mod:`lmm_pymc.crosscheck.pairs`): the LKJ
normalising constant, the Jacobian between PyMC's packed Cholesky factor of a covariance and
Stan's ``(sigs, L_corr)``, and the analytic offset ``lp_PyMC - lp_Stan`` of the registered
pairs, term by term."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import betaln

from ..design import Design
from ..priors import FAMILY_PARAMETERS, Priors
from ..stan.programs import tutorial_prior_data

__all__ = [
    "cholesky_cov_log_jacobian",
    "covariance_log_jacobian",
    "lkj_log_normaliser",
    "reference_offset",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def lkj_log_normaliser(n: int, eta: float) -> float:
    """``log c_n(eta)``: the LKJ density is ``det(R)^(eta - 1) / c_n(eta)``.

    Lewandowski, Kurowicka and Joe (2009), eq. 16:
    ``c_n = prod_{k=1}^{n-1} [2^(2 eta - 2 + n - k) B(b_k, b_k)]^(n - k)``,
    ``b_k = eta + (n - k - 1) / 2``. For ``n = 2``: ``2^(2 eta - 1) B(eta, eta)`` (the
    density of ``r = 2 u - 1``, ``u ~ Beta(eta, eta)``).
    """
    if n < 2 or eta <= 0:
        raise ValueError(f"n must be >= 2 and eta > 0, found n={n!r}, eta={eta!r}")
    total = 0.0
    for k in range(1, n):
        b = eta + (n - k - 1) / 2.0
        total += (n - k) * ((2.0 * eta - 2.0 + n - k) * math.log(2.0) + betaln(b, b))
    return total


def cholesky_cov_log_jacobian(point: Mapping[str, np.ndarray]) -> float:
    """``log |d chol_cov / d (sigs, L_corr)|`` at a point with ``sigs`` (q,) and ``R`` (q, q).

    PyMC's ``LKJCholeskyCov`` is a density on the packed Cholesky factor ``C`` of Sigma;
    Stan's ``sigs ~ ...; L_corr ~ lkj_corr_cholesky(eta)`` is a density on ``(sigs, L)``
    with ``L`` the Cholesky factor of the correlation, coordinatised by its strictly lower
    elements. ``C = diag(sigs) L`` row by row: row ``i`` (0-based) is ``sigs_i`` times the
    unit vector ``L_i``, whose first ``i`` elements are free and ``L_ii = sqrt(1 - sum)``.
    In polar form ``d^(i+1) C_i = sigs_i^i d sigs_i dS(L_i)`` and the surface element in
    the first ``i`` coordinates is ``dS = dL_i0 ... dL_i,i-1 / L_ii``, so

        log |J| = sum_i ( i log sigs_i - log L_ii ).

    For 2 x 2 (``L_10 = rho``, ``L_11 = sqrt(1 - rho^2)``): ``|J| = s_2 / sqrt(1 - rho^2)``.
    Hence ``p_Stan(sigs, L) = p_PyMC(C) |J|``: add this to PyMC's log density.
    """
    sigs = np.asarray(point["sigs"], dtype=float)
    L = np.linalg.cholesky(np.asarray(point["R"], dtype=float))
    i = np.arange(sigs.shape[0])
    return float(np.sum(i * np.log(sigs) - np.log(np.diag(L))))


def covariance_log_jacobian(
    point: Mapping[str, np.ndarray], design: Design, free: Sequence[str]
) -> float:
    """The Jacobian hook of every registered pair: :func:`cholesky_cov_log_jacobian` of
    each correlated factor whose PyMC covariance is ``chol_cov_<key>`` (``LKJCholeskyCov``),
    on its block of ``sigs`` and ``R``; ``LKJCorr`` (``lkj_corr``) and Stan's
    ``corr_matrix`` both put the density on the upper triangle of ``R``, so 0 there."""
    total, start = 0.0, 0
    for f in design.factors:
        block = slice(start, start + f.q)
        start += f.q
        if f.has_correlation and f"chol_cov_{f.key}" in free:
            sigs, R = np.asarray(point["sigs"])[block], np.asarray(point["R"])[block, block]
            total += cholesky_cov_log_jacobian({"sigs": sigs, "R": R})
    return total


def reference_offset(
    design: Design,
    priors: Priors,
    *,
    latent: bool,
    priors_in_stan: bool = False,
    normal_rows: bool = True,
) -> tuple[float, str]:
    """``lp_PyMC - lp_Stan`` of the registered pairs, derived term by term: PyMC keeps every
    normalising constant, Stan (``propto=True``) drops those that do not depend on
    parameters. ``latent``: the random effects and the likelihood are PyMC random variables
    (False for ``marginal``, where both backends add the same ``-n/2 log(2 pi)``).
    ``priors_in_stan``: the program adds each prior with its constants (``target +=
    prior_lpdf``, the programs that take per-term priors), so only the LKJ constants and the
    latent ones remain. ``normal_rows``: Stan's likelihood is ``y ~ normal`` (False where
    the program adds a family's full ``*_lpmf``, as ``lmm_glmm``)."""
    parameters = ("sigma", *FAMILY_PARAMETERS)  # any family's: the LKJ shapes are wanted
    etas = priors.resolve(design.fixed_names, design.factors, parameters).etas
    lkj = sum(lkj_log_normaliser(f.q, etas[f.name]) for f in design.factors if f.has_correlation)
    parts: dict[str, float] = {}
    if not priors_in_stan:
        p, Q = len(design.fixed_names), len(design.terms)
        half_normal = math.log(2.0) - _HALF_LOG_2PI
        scalars = tutorial_prior_data(priors)
        parts = {
            f"beta: {p} normal constants": p * (-_HALF_LOG_2PI - math.log(scalars["fixed_sd"])),
            "sigma: half-normal constant incl. log 2": half_normal - math.log(scalars["residual_sd"]),
            f"sigs: {Q} half-normal constants incl. log 2": Q
            * (half_normal - math.log(scalars["group_sd"])),
        }
    # PyMC 5.28's LKJCorr and LKJCholeskyCov add +log c_n(eta), the opposite sign of the
    # normalised density (LKJCorr(n=2, eta=1) logp is log 2 where the uniform density on
    # (-1, 1) is 1/2): a constant, harmless for sampling, taken as it is.
    parts["LKJ normalising constants (PyMC's sign)"] = lkj
    if latent:  # z ~ std_normal(), y ~ normal(...) drop -1/2 log(2 pi) per value
        n_effects = sum(f.q * f.n_levels for f in design.factors)
        parts[f"random effects: -1/2 log(2 pi) for each of {n_effects}"] = (
            -n_effects * _HALF_LOG_2PI
        )
        if normal_rows:
            rows = f"likelihood: -1/2 log(2 pi) per row ({design.n_obs})"
            parts[rows] = -design.n_obs * _HALF_LOG_2PI
    text = "; ".join(f"{k} {v:+.6f}" for k, v in parts.items())
    return float(sum(parts.values())), text
