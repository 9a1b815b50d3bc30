"""Exact draws of the integrated factor's random effects after sampling (the maths:
:mod:`lmm_pymc.marginal`): ``b_j = L c_j``, ``c_j ~ N(A_w^-1 u_j / s2, A_w^-1)``, one per
posterior draw, from an explicit seed."""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from ..checks import positive_int
from ..design import Design, GroupedStatistics
from .posterior import cholesky_draws, factor_draws, require
from .plan import MarginalPlan
from .statistics import CrossedStatistics

__all__ = ["add_random_effects", "random_effects_draws"]


def random_effects_draws(
    posterior: xr.Dataset,
    grouped: GroupedStatistics,
    *,
    seed: int | np.random.Generator | None,
    chunk_elements: int = 500_000,
    design: Design | None = None,
    crossed: CrossedStatistics | None = None,
) -> xr.DataArray:
    """Exact draws of the integrated factor's random effects, one per posterior draw.

    For each draw, ``b_j ~ N(M_j^-1 Z_j'r_j / s2, M_j^-1)`` independently per group,
    computed as ``b_j = L c_j`` with ``c_j ~ N(A_w^-1 u_j / s2, A_w^-1)`` (module docs).

    Parameters
    ----------
    posterior : xarray.Dataset
        Needs ``beta``, ``sigma`` and ``chol_cov_<key>`` (or ``sigs_<key>``), with dims
        ``(chain, draw, ...)``; with crossed factors, also every other factor's ``b_<key>``.
    grouped : GroupedStatistics
        The integrated factor's statistics and names (with crossed factors its ``n`` and
        ``Z'Z`` are used; its ``Z'r`` comes from ``crossed`` or the rows); its own
        ``crossed`` is used when ``crossed`` is not given.
    seed : int, numpy Generator or None
        Source of the normal draws; the same seed gives the same random effects.
    chunk_elements : int
        Draws x groups (with ``design``: draws x rows) processed at once (bounds the
        temporary memory).
    design : Design, optional
        For crossed factors without ``crossed`` (:func:`residual_marginal_loglik`): the
        rows, whose residual ``y - X beta - sum_f Z_f b_f`` over the other factors gives
        each draw's ``Z'r``.
    crossed : CrossedStatistics, optional
        For crossed factors: the cross-products, which give each draw's ``Z'r`` without a
        pass over the rows (:func:`crossed_statistics`, or sums from files).

    Returns
    -------
    xarray.DataArray
        ``b_<key>`` with dims ``(chain, draw, <factor>, <factor>_effect)``.
    """
    stats, f = grouped.statistics, grouped.factor
    J, p, q = stats.check()
    require(posterior)
    chunk_elements = positive_int("chunk_elements", chunk_elements)
    rng = np.random.default_rng(seed)
    beta_all = posterior["beta"].values.reshape(-1, p)  # (S, p)
    s2_all = posterior["sigma"].values.reshape(-1) ** 2  # (S,)
    L_all = cholesky_draws(posterior, f.key, q)  # (S, q, q)
    S = beta_all.shape[0]
    out = np.empty((S, J, q))
    crossed = grouped.crossed if crossed is None else crossed
    if crossed is not None:
        step = max(1, chunk_elements // (J * q))
        z_r = _crossed_z_r(posterior, crossed.others, f, beta_all, crossed, None)
    elif design is None:
        step = max(1, chunk_elements // J)

        def z_r(sl: slice) -> np.ndarray:  # (s, J, q) = Z'y - (X'Z)' beta, one BLAS product each
            return np.stack(
                [stats.Zty[None, :, a] - beta_all[sl] @ stats.XtZ[:, :, a].T for a in range(q)],
                axis=-1,
            )
    else:
        step = max(1, chunk_elements // max(design.n_obs, 1))
        z_r = _crossed_z_r(posterior, design.factors, f, beta_all, None, design)
    ZtZ = [[stats.ZtZ[None, :, k, m] for m in range(q)] for k in range(q)]  # (1, J) each
    for start in range(0, S, step):
        sl = slice(start, min(S, start + step))
        Zr = z_r(sl)  # (s, J, q)
        eps = rng.standard_normal(Zr.shape)
        out[sl] = _conditional_draws(L_all[sl], ZtZ, Zr, 1.0 / s2_all[sl, None], eps)
    return factor_draws(out, f, posterior)


def _conditional_draws(
    L: np.ndarray, ZtZ: list, Zr: np.ndarray, inv_s2: np.ndarray, eps: np.ndarray
) -> np.ndarray:
    """(s, J, q) draws ``b = L c``, ``c ~ N(A^-1 u / s2, A^-1)`` with ``u = L'Z'r`` and
    ``A = I + L'Z'Z L / s2``, from ``L`` (s, q, q), ``Z'Z`` (q x q of (1, J)), ``Z'r``
    (s, J, q), ``1 / s2`` (s, 1) and standard normal ``eps`` (s, J, q).

    The q x q algebra runs entry by entry on (s, J) arrays, an order of magnitude faster
    than batched ``np.linalg`` on many tiny matrices (docs/measurements.md)."""
    q = Zr.shape[-1]
    Lc = [[L[:, k, a][:, None] for a in range(q)] for k in range(q)]  # (s, 1)
    u = [sum(Lc[k][a] * Zr[..., k] for k in range(a, q)) for a in range(q)]  # L'Z'r
    T = [[sum(ZtZ[k][m] * Lc[m][c] for m in range(c, q)) for c in range(q)]
         for k in range(q)]  # fmt: skip  # Z'Z L
    # A = I + L'Z'Z L / s2 and its Cholesky factor A = C C' (lower)
    C: list[list[np.ndarray]] = [[None] * q for _ in range(q)]
    for i in range(q):
        for c in range(i + 1):
            a_ic = sum(Lc[k][i] * T[k][c] for k in range(i, q)) * inv_s2 + (i == c)
            a_ic = a_ic - sum(C[i][m] * C[c][m] for m in range(c))
            C[i][c] = np.sqrt(a_ic) if i == c else a_ic / C[c][c]
    # c = C^-T (C^-1 u / s2 + eps): mean A^-1 u / s2 plus N(0, A^-1) noise
    w: list[np.ndarray] = [None] * q
    for i in range(q):
        w[i] = (u[i] * inv_s2 - sum(C[i][m] * w[m] for m in range(i))) / C[i][i]
    c_: list[np.ndarray] = [None] * q
    for i in reversed(range(q)):
        z_i = w[i] + eps[..., i]
        c_[i] = (z_i - sum(C[m][i] * c_[m] for m in range(i + 1, q))) / C[i][i]
    return np.stack([sum(Lc[a][k] * c_[k] for k in range(a + 1)) for a in range(q)], axis=-1)


def _crossed_z_r(
    posterior: xr.Dataset,
    factors,
    f,
    beta_all: np.ndarray,
    cs: CrossedStatistics | None,
    design: Design | None,
):
    """``z_r(draws)`` -> (s, J, q): the integrated factor ``f``'s per-group ``Z'r`` of each
    draw's residual ``y - X beta - sum_other Z_o b_o[g_o]``, from the cross-products ``cs``
    or else from the rows of ``design``."""
    from scipy import sparse

    others = [o for o in factors if o.name != f.name]
    missing = [f"b_{o.key}" for o in others if f"b_{o.key}" not in posterior]
    if missing:
        raise ValueError(
            f"posterior must contain {missing} to draw b_{f.key} given the other factors, "
            f"found variables {sorted(posterior.data_vars)}"
        )
    b_others = [posterior[f"b_{o.key}"].values.reshape(-1, o.n_levels, o.q) for o in others]
    if cs is not None:  # Z'r = Z'e0 - K (theta - theta0), no pass over the rows

        def z_r_products(sl: slice) -> np.ndarray:
            delta = cs.theta(beta_all[sl], [b[sl] for b in b_others]) - cs.theta0
            return cs.Zte0[None] - (delta @ cs.K.T).reshape(-1, f.n_levels, f.q)

        return z_r_products
    N = design.n_obs
    # (J, N): sums the rows of each level of f
    member = sparse.csr_matrix((np.ones(N), (f.index, np.arange(N))), shape=(f.n_levels, N))

    def z_r(sl: slice) -> np.ndarray:
        r = design.y[None] - beta_all[sl] @ design.X.T  # (s, N)
        for o, b in zip(others, b_others, strict=True):
            r = r - np.einsum("nk,snk->sn", o.Z, b[sl][:, o.index, :])
        return np.stack([(member @ (r * f.Z[:, k][None]).T).T for k in range(f.q)], axis=-1)

    return z_r


def add_random_effects(
    idata: az.InferenceData,
    plan: MarginalPlan,
    *,
    seed: int | np.random.Generator | None,
) -> az.InferenceData:
    """Add the integrated factor's ``b_<key>`` (with ``plan.joint``: every factor's, see
    :func:`~lmm_pymc.marginal.joint.joint_random_effects_draws`) to ``idata.posterior``
    (see :func:`random_effects_draws`), from the fit's :class:`MarginalPlan`; returns the same
    (modified) ``idata``."""
    if not isinstance(idata, az.InferenceData) or "posterior" not in idata.groups():
        raise TypeError(
            f"idata must be an arviz InferenceData with a posterior, found {type(idata).__name__}"
        )
    if plan.joint is not None:  # every factor's effects, jointly
        from .joint import joint_random_effects_draws

        for draws in joint_random_effects_draws(idata.posterior, plan.joint, seed=seed):
            idata.posterior[draws.name] = draws
        return idata
    draws = random_effects_draws(
        idata.posterior, plan.grouped, seed=seed, design=plan.design, crossed=plan.crossed
    )
    idata.posterior[draws.name] = draws
    return idata
