"""Where the chains start: near the posterior, from estimates the per-group sums give cheaply.

PyMC's initial point is the priors' centre with every unconstrained coordinate jittered by
U(-1, 1). On large data that is far from a posterior a million rows make narrow (a chain may
never find its way in), and a jitter of 1 on a slope of an unscaled predictor (a height in
metres, sd 35) moves a log-rate by 35. Instead, per chain, every start is an estimate plus a
jitter scaled to that parameter:

Gaussian outcome (method of moments, one factor at a time, O(N (q + 1)^2) sums):

    beta        least squares of y on X;       r = y - X beta
    b_hat_j     (Z_j'Z_j)^-1 Z_j'r_j, for every level j with full-rank Z_j'Z_j
    sigma^2     sum_j |r_j - Z_j b_hat_j|^2 / (sum_j n_j - q J - p), smallest over the factors
                (each factor alone leaves the others' variance in its residuals)
    Sigma_f     mean_j b_hat_j b_hat_j' - sigma^2 mean_j (Z_j'Z_j)^-1, eigenvalues floored at
                1% of the largest: the start of ``chol_cov_f`` (its Cholesky factor) or
                ``sigs_f`` (the square roots of its diagonal)

Other families: beta at its prior's centre (the link of the mean response for the
intercept, 0 for the slopes), as PyMC's start; only the jitter changes.

Jitter, uniform on (-1, 1) times: for a Gaussian outcome twice beta's approximate standard
errors (``sigma^2 / sum_i (x_ik - mean_k)^2``, plus ``Sigma_f[k, k] / J_f`` for a column that is
also an effect of factor f), otherwise ``0.04 x`` the prior sd of each beta (a tenth of the
default prior's unit, so inversely proportional to the predictor's sd); ``0.1`` on
log-scales (sigma, sigs and the Cholesky factor's log-diagonal), ``0.1 x`` the row's sd on
the Cholesky factor's off-diagonal entries. Every other variable (the non-centred effects
``z_f``, a family's own ``alpha`` or ``nu``) starts where PyMC starts it.

beta is sampled with its intercept centred (:mod:`lmm_pymc.centring`): its start is moved
there, the Gaussian's intercept jitter is the se of the outcome at the columns' means
(``sigma^2 / N + sum_f a_f' Sigma_f a_f / J_f``, ``a_f`` the means of f's effect columns),
and another family's is ``0.04 x`` the intercept's prior sd net of the slopes' reach at the
means (2.5 for the default priors).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .design import Design, GroupedStatistics, GroupStatistics

__all__ = ["StartPoint", "jittered_start", "start_point"]

#: the jitter's half-width on log-scales, and per unit of beta's prior sd
LOG_JITTER = 0.1
BETA_JITTER = 0.04
#: a floor on the estimated covariance's eigenvalues, relative to the largest
EIGEN_FLOOR = 0.01

#: value variable name -> (start on the unconstrained scale, jitter half-width)
StartPoint = Mapping[str, tuple[np.ndarray, np.ndarray]]


def _factor_moments(stats: GroupStatistics, beta: np.ndarray):
    """``(sigma^2 estimate, Sigma estimate)`` of one factor from its per-group sums and the
    fixed effects ``beta``; ``(None, None)`` when fewer than 2 levels have full-rank Z'Z."""
    Ztr = stats.Zty - np.einsum("jpq,p->jq", stats.XtZ, beta)
    rtr = stats.yty - 2 * stats.Xty @ beta + np.einsum("p,jpk,k->j", beta, stats.XtX, beta)
    q = stats.ZtZ.shape[1]
    full = (np.linalg.matrix_rank(stats.ZtZ) == q) & (stats.n > q)
    if full.sum() < 2:
        return None, None
    inv = np.linalg.inv(stats.ZtZ[full])
    b_hat = np.einsum("jqk,jk->jq", inv, Ztr[full])
    rss = rtr[full] - np.einsum("jq,jq->j", b_hat, Ztr[full])
    dof = stats.n[full].sum() - q * full.sum() - beta.size
    sigma2 = max(float(rss.sum()) / max(dof, 1.0), 1e-300)
    second = b_hat.T @ b_hat / full.sum()
    values, vectors = np.linalg.eigh(second - sigma2 * inv.mean(axis=0))
    floor = EIGEN_FLOOR * max(values.max(), np.trace(second) / q, 1e-300)
    values = np.maximum(values, floor)
    return sigma2, (vectors * values) @ vectors.T


def _gaussian_estimates(data: Design | GroupedStatistics):
    """``(beta, sigma, {factor name: Sigma})`` by the moments of the module docstring."""
    if isinstance(data, GroupedStatistics):
        stats = data.statistics
        beta = np.linalg.lstsq(stats.XtX.sum(0), stats.Xty.sum(0), rcond=None)[0]
        per_factor, offset = {data.factor.name: stats}, beta
    else:  # the sums of the residuals of beta: no fixed columns left in them
        beta = np.linalg.lstsq(data.X, data.y, rcond=None)[0]
        r, none = data.y - data.X @ beta, np.empty((data.y.size, 0))
        per_factor = {f.name: GroupStatistics.from_rows(none, f.Z, r, f.index, len(f.labels))
                      for f in data.factors}  # fmt: skip
        offset = np.zeros(0)
    sigmas, covariances = [], {}
    for name, stats in per_factor.items():
        sigma2, Sigma = _factor_moments(stats, offset)
        if Sigma is not None:
            sigmas.append(sigma2)
            covariances[name] = Sigma
    return beta, (float(np.sqrt(min(sigmas))) if sigmas else None), covariances


def _effect_means(data: Design | GroupedStatistics, f) -> np.ndarray:
    """The means of factor ``f``'s effect columns over the rows."""
    if isinstance(data, Design):
        return np.asarray(f.Z, dtype=float).mean(axis=0)
    i = data.fixed_names.index("intercept")  # column_means found one
    XtZ, XtX = data.statistics.XtZ.sum(axis=0), data.statistics.XtX.sum(axis=0)
    return XtZ[i] / XtX[i, i]


def _beta_spread(data: Design | GroupedStatistics, sigma, covariances, centred) -> np.ndarray:
    """Twice beta's approximate standard errors: ``sigma^2 / sum (x_k - mean)^2`` (``/ N``
    for the intercept) plus, for a column that is also an effect of factor f,
    ``Sigma_f[k, k] / J_f``; for an intercept ``centred`` at the columns' means (the
    outcome there), ``a_f' Sigma_f a_f / J_f`` with ``a_f`` the means of f's effects."""
    if isinstance(data, GroupedStatistics):  # uncentred sums of squares: an upper bound
        spread = np.maximum(np.diagonal(data.statistics.XtX.sum(0)), 1e-300)
    else:
        n = data.y.size
        spread = n * np.where(np.ptp(data.X, axis=0) > 0, data.X.var(axis=0), 1.0)
    var = (sigma or 1.0) ** 2 / spread
    for f in data.factors:
        Sigma = covariances.get(f.name)
        if Sigma is None:
            continue
        for e, effect in enumerate(f.effect_names):
            k = data.fixed_names.index(effect) if effect in data.fixed_names else None
            if k is not None and k != centred:
                var[k] += Sigma[e, e] / len(f.labels)
        if centred is not None:
            a = _effect_means(data, f)
            var[centred] += a @ Sigma @ a / len(f.labels)
    return 2.0 * np.sqrt(var)


def _packed_cholesky(Sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LKJCholeskyCov's unconstrained packed Cholesky factor (rows of the lower triangle,
    log on the diagonal) and its jitter half-widths."""
    L = np.linalg.cholesky(Sigma)
    rows, cols = np.tril_indices(L.shape[0])
    value = L[rows, cols].copy()
    diag = rows == cols
    value[diag] = np.log(value[diag])
    row_sd = np.sqrt(np.diag(Sigma))[rows]
    return value, np.where(diag, LOG_JITTER, LOG_JITTER * row_sd)


def start_point(model, data: Design | GroupedStatistics, family, resolved) -> StartPoint:
    """The chains' start (module docstring) for the free variables of ``model`` built from
    ``data`` with outcome ``family`` and resolved priors ``resolved``
    (:meth:`lmm_pymc.Priors.resolve`)."""
    values = {rv.name: model.rvs_to_values[rv].name for rv in model.free_RVs}
    start: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    beta_sd = np.array([p.kwargs.get("sigma", 1.0) for p in resolved.fixed], dtype=float)
    beta = np.array([p.kwargs.get("mu", 0.0) for p in resolved.fixed], dtype=float)
    transform = model.rvs_to_transforms.get(model["beta"]) if "beta" in values else None
    centred = getattr(transform, "intercept", None)
    if family.is_gaussian:
        beta, sigma, covariances = _gaussian_estimates(data)
        beta_sd = _beta_spread(data, sigma, covariances, centred) / BETA_JITTER
        if sigma is not None and "sigma" in values:
            start[values["sigma"]] = (np.array(np.log(sigma)), np.array(LOG_JITTER))
        for name, Sigma in covariances.items():
            if f"chol_cov_{name}" in values:
                start[values[f"chol_cov_{name}"]] = _packed_cholesky(Sigma)
            elif f"sigs_{name}" in values:
                sds = np.log(np.sqrt(np.diag(Sigma)))
                start[values[f"sigs_{name}"]] = (sds, np.full_like(sds, LOG_JITTER))
    if "beta" in values:
        start[values["beta"]] = _beta_start(transform, beta, beta_sd, not family.is_gaussian)
    return start


def _beta_start(transform, beta: np.ndarray, beta_sd: np.ndarray, prior_spread: bool):
    """beta's start and jitter in the sampler's coordinates: with the intercept centred
    (:class:`lmm_pymc.centring.CentredIntercept`) the start moves with it. ``beta_sd`` from
    the priors (``prior_spread``): the centred intercept's jitter is that of the outcome at
    the columns' means, the intercept's spread net of the slopes' reach there (``2.5``
    units of the link scale for the default priors). A Gaussian's standard error of the
    intercept (:func:`_beta_spread`) is already the centred one's."""
    beta = np.asarray(beta, dtype=float)
    half_width = BETA_JITTER * np.array(beta_sd, dtype=float)
    if not hasattr(transform, "forward_values"):
        return beta, half_width
    i, means = transform.intercept, transform.values
    reach = beta_sd[i] ** 2 - np.sum((means * beta_sd) ** 2)
    if prior_spread and reach > 0:
        half_width[i] = BETA_JITTER * np.sqrt(reach)
    return transform.forward_values(beta), half_width


def jittered_start(initial_point, start: StartPoint, shape_info):
    """nutpie's initial-point function (seed -> flat unconstrained vector) with the variables
    of ``start`` replaced by their start plus a uniform jitter drawn from ``seed``."""
    names, slices, _ = shape_info
    where = {name: slc for name, slc in zip(names, slices, strict=True) if name in start}

    def run(seed):
        point = np.array(initial_point(seed), dtype=float, copy=True)
        rng = np.random.default_rng(seed)
        for name, slc in where.items():
            centre, half_width = start[name]
            centre = np.ravel(centre)
            point[slc] = centre + np.ravel(half_width) * rng.uniform(-1, 1, centre.size)
        return point

    return run
