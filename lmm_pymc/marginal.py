"""The fast path: the random effects integrated out, evaluated from per-group sums.

For group ``j`` with ``n_j`` rows, fixed design ``X_j`` (n_j, p), random design ``Z_j``
(n_j, q), residual variance ``s2 = sigma_g**2`` and random-effects covariance
``Sigma = L L'``, the random effects integrate out exactly::

    y_j ~ N(X_j beta, V_j),   V_j = s2 I + Z_j Sigma Z_j'

With ``r_j = y_j - X_j beta``, ``u_j = L' Z_j' r_j`` and the (q, q) matrix
``A_j = I + L' Z_j'Z_j L / s2``, the matrix determinant lemma and the Woodbury identity give::

    log|V_j|       = n_j log s2 + log|A_j|
    r_j' V_j^-1 r_j = r_j'r_j / s2 - u_j' A_j^-1 u_j / s2**2

(the usual ``M_j = Sigma^-1 + Z_j'Z_j / s2`` equals ``L^-T A_j L^-1``; writing it through
``L`` avoids inverting ``Sigma`` when a group sd is near zero). ``r_j'r_j`` and ``Z_j'r_j``
need only the sums ``n, X'X, X'Z, Z'Z, X'y, Z'y, y'y`` of :class:`~lmm_pymc.design.GroupStatistics`,
so one evaluation of the log-likelihood and its gradient costs O(groups), not O(rows).

Where ``X = Z`` (this model) and ``G_j = Z_j'Z_j`` is regular, :func:`marginal_loglik`
evaluates the same density in a well-conditioned form, with the group's OLS fit
``b_hat_j = G_j^-1 Z_j'y_j`` and residual sum of squares ``RSS_j``::

    r_j' V_j^-1 r_j = RSS_j / s2 + d_j' W_j^-1 d_j,   d_j = b_hat_j - beta,
    log|V_j|        = (n_j - 2) log s2 + log|G_j| + log|W_j|,  W_j = s2 G_j^-1 + Sigma

The Woodbury form subtracts two terms of order ``y'y`` at every point (for x up to 1000 the
rounding reaches ~1e-2 per group and NUTS stalls); here that cancellation happens once, in
the parameter-free constant ``RSS_j``.

Given a draw of the hyperparameters the random effects are exactly::

    b_j ~ N(M_j^-1 Z_j' r_j / s2, M_j^-1) = L c_j,  c_j ~ N(A_j^-1 u_j / s2, A_j^-1)

which :func:`add_random_effects` draws, with an explicit seed, after sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .design import EFFECT_NAMES, GroupStatistics
from .priors import Priors

__all__ = [
    "add_random_effects",
    "build_marginal_model",
    "check_statistics",
    "marginal_loglik",
    "marginal_loglik_numpy",
    "random_effects_draws",
]

_FIELDS = ("n", "XtX", "XtZ", "ZtZ", "Xty", "Zty", "yty")


def check_statistics(stats: GroupStatistics) -> tuple[int, int, int]:
    """Validate the shapes and values of per-group statistics; return ``(J, p, q)``.

    Raises
    ------
    ValueError
        Naming the field, the shape or value found and what was expected.
    """
    if not isinstance(stats, GroupStatistics):
        raise ValueError(
            f"stats must be a lmm_pymc.design.GroupStatistics, found {type(stats).__name__}"
        )
    arrays = {f: np.asarray(getattr(stats, f), dtype=float) for f in _FIELDS}
    if arrays["n"].ndim != 1 or arrays["n"].shape[0] < 2:
        raise ValueError(
            f"stats.n must have shape (J,) with J >= 2 groups, found shape {arrays['n'].shape}"
        )
    J = arrays["n"].shape[0]
    if arrays["XtZ"].ndim != 3:
        raise ValueError(f"stats.XtZ must have shape (J, p, q), found {arrays['XtZ'].shape}")
    p, q = arrays["XtZ"].shape[1:]
    expected = {
        "n": (J,),
        "XtX": (J, p, p),
        "XtZ": (J, p, q),
        "ZtZ": (J, q, q),
        "Xty": (J, p),
        "Zty": (J, q),
        "yty": (J,),
    }
    for f, shape in expected.items():
        if arrays[f].shape != shape:
            raise ValueError(f"stats.{f} must have shape {shape}, found {arrays[f].shape}")
        if not np.all(np.isfinite(arrays[f])):
            raise ValueError(f"stats.{f} must be finite, found non-finite values")
    if np.any(arrays["n"] < 1):
        raise ValueError(
            f"stats.n must count at least one row per group, found min {arrays['n'].min()}"
        )
    if (p, q) != (2, 2):
        raise ValueError(
            "the marginal model is written for y ~ 1 + x + (1 + x | group): stats must have "
            f"p = q = 2 effects, found p = {p}, q = {q}"
        )
    return J, p, q


def marginal_loglik(
    stats: GroupStatistics,
    beta: pt.TensorLike,
    sigma: pt.TensorLike,
    chol: pt.TensorLike,
    *,
    stable: bool = True,
) -> pt.TensorVariable:
    """Per-group marginal log-likelihood ``log N(y_j | X_j beta, s2 I + Z_j L L' Z_j')``.

    Parameters
    ----------
    stats : GroupStatistics
        Per-group sums (J groups, p = q = 2).
    beta : tensor, shape (p,)
        Fixed effects.
    sigma : tensor, scalar
        Residual sd.
    chol : tensor, shape (q, q)
        Lower Cholesky factor ``L`` of the random-effects covariance ``Sigma``.
    stable : bool
        Use the well-conditioned OLS form where ``X = Z`` and ``Z'Z`` is regular (the
        default); ``False`` keeps the plain Woodbury form everywhere (for comparison).

    Returns
    -------
    pytensor TensorVariable, shape (J,)
        Every array in its graph is of size O(J); none has the number of rows.
    """
    check_statistics(stats)

    def column(values: np.ndarray) -> pt.TensorConstant:
        # one (J,) constant per matrix entry: the graph is a few fused elementwise loops
        return pt.as_tensor(np.ascontiguousarray(values, dtype=float))

    n = column(stats.n)
    beta = pt.as_tensor(beta)
    L = pt.as_tensor(chol)
    b0, b1 = beta[0], beta[1]
    l00, l10, l11 = L[0, 0], L[1, 0], L[1, 1]  # L = [[l00, 0], [l10, l11]]
    s2 = pt.sqr(sigma)

    def woodbury() -> tuple[pt.TensorVariable, pt.TensorVariable]:
        # Woodbury form, valid for every group.
        yty = column(stats.yty)
        xx00, xx01, xx11 = (column(stats.XtX[:, i, k]) for i, k in ((0, 0), (0, 1), (1, 1)))
        xz00, xz01, xz10, xz11 = (column(stats.XtZ[:, i, k]) for i in (0, 1) for k in (0, 1))
        zz00, zz01, zz11 = (column(stats.ZtZ[:, i, k]) for i, k in ((0, 0), (0, 1), (1, 1)))
        xy0, xy1 = column(stats.Xty[:, 0]), column(stats.Xty[:, 1])
        zy0, zy1 = column(stats.Zty[:, 0]), column(stats.Zty[:, 1])
        # (J,) r'r = y'y - 2 beta'X'y + beta'X'X beta
        rr = yty - 2.0 * (xy0 * b0 + xy1 * b1) + xx00 * b0**2 + 2.0 * xx01 * b0 * b1 + xx11 * b1**2
        # (J,) Z'r = Z'y - (X'Z)' beta
        zr0 = zy0 - (xz00 * b0 + xz10 * b1)
        zr1 = zy1 - (xz01 * b0 + xz11 * b1)
        # (J,) u = L' Z'r
        u0 = l00 * zr0 + l10 * zr1
        u1 = l11 * zr1
        # (J,) B = L' Z'Z L (symmetric 2 x 2) and A = I + B / s2, positive definite, A >= I
        a00 = 1.0 + (l00**2 * zz00 + 2.0 * l00 * l10 * zz01 + l10**2 * zz11) / s2
        a01 = l11 * (l00 * zz01 + l10 * zz11) / s2
        a11 = 1.0 + l11**2 * zz11 / s2
        det_A = a00 * a11 - a01**2
        # u' A^-1 u for a 2 x 2 A
        uAu = (a11 * u0**2 - 2.0 * a01 * u0 * u1 + a00 * u1**2) / det_A
        logdet_V = n * pt.log(s2) + pt.log(det_A)
        quad = rr / s2 - uAu / pt.sqr(s2)
        return logdet_V, quad

    ols = _ols_pieces(stats) if stable else None
    if ols is None:
        logdet_V, quad = woodbury()
        return -0.5 * (n * np.log(2.0 * np.pi) + logdet_V + quad)
    # Well-conditioned form where X = Z and Z'Z is regular. With G = Z'Z, the
    # per-group OLS fit b_hat = G^-1 Z'y and its residual sum of squares RSS:
    #   r'V^-1 r = RSS / s2 + d' W^-1 d,   d = b_hat - beta,  W = s2 G^-1 + Sigma
    #   log|V|   = (n - 2) log s2 + log|G| + log|W|
    # The Woodbury form subtracts two terms of order y'y (1e9 and more for wide x)
    # at every point, losing ~1e-2 per group to rounding; here that cancellation
    # happens once, in the parameter-free constant RSS, and NUTS sees a smooth density.
    regular, g00, g01, g11, bh0, bh1, rss, logdet_G = (column(v) for v in ols)
    Sigma00 = l00**2
    Sigma01 = l00 * l10
    Sigma11 = l10**2 + l11**2
    w00 = s2 * g00 + Sigma00
    w01 = s2 * g01 + Sigma01
    w11 = s2 * g11 + Sigma11
    det_W = w00 * w11 - w01**2
    d0, d1 = bh0 - b0, bh1 - b1
    dWd = (w11 * d0**2 - 2.0 * w01 * d0 * d1 + w00 * d1**2) / det_W
    stable_logdet = (n - 2.0) * pt.log(s2) + logdet_G + pt.log(det_W)
    stable_quad = rss / s2 + dWd
    if ols[0].all():
        # every group regular (the usual case): no Woodbury branch in the graph, which
        # halves its size and nutpie's compile time
        logdet_V, quad = stable_logdet, stable_quad
    else:
        # groups with a singular Z'Z (one row, constant x) keep the Woodbury form; their
        # stable-branch constants are finite placeholders, so gradients stay finite
        wood_logdet, wood_quad = woodbury()
        logdet_V = pt.switch(regular > 0.5, stable_logdet, wood_logdet)
        quad = pt.switch(regular > 0.5, stable_quad, wood_quad)
    return -0.5 * (n * np.log(2.0 * np.pi) + logdet_V + quad)


def _ols_pieces(stats: GroupStatistics) -> tuple[np.ndarray, ...] | None:
    """Per-group OLS constants for the well-conditioned likelihood, or None if X != Z.

    Returns ``(regular, G^-1[0,0], G^-1[0,1], G^-1[1,1], b_hat0, b_hat1, RSS, log|G|)``,
    each of shape (J,), with ``G = Z'Z``. ``regular`` is 1 where ``G`` is well conditioned
    (at least two distinct x in the group); elsewhere the other entries are placeholders.
    """
    same = np.array_equal(stats.XtX, stats.ZtZ) and np.array_equal(stats.XtZ, stats.ZtZ)
    if not (same and np.array_equal(stats.Xty, stats.Zty)):
        return None
    G = np.asarray(stats.ZtZ, dtype=float)
    det_G = G[:, 0, 0] * G[:, 1, 1] - G[:, 0, 1] ** 2
    # singular when det(G) is rounding relative to its diagonal (one row or constant x)
    regular = det_G > 1e-10 * G[:, 0, 0] * G[:, 1, 1]
    G_safe = np.where(regular[:, None, None], G, np.eye(2)[None])
    G_inv = np.linalg.inv(G_safe)
    b_hat = np.einsum("jqk,jk->jq", G_inv, stats.Zty)
    rss = np.where(regular, stats.yty - np.einsum("jq,jq->j", stats.Zty, b_hat), 0.0)
    _, logdet_G = np.linalg.slogdet(G_safe)
    return (
        regular.astype(float),
        G_inv[:, 0, 0],
        G_inv[:, 0, 1],
        G_inv[:, 1, 1],
        b_hat[:, 0],
        b_hat[:, 1],
        rss,
        logdet_G,
    )


def marginal_loglik_numpy(
    stats: GroupStatistics, beta: np.ndarray, sigma: float, Sigma: np.ndarray
) -> np.ndarray:
    """NumPy twin of :func:`marginal_loglik` at one point, through ``M_j`` (shape (J,)).

    Written independently (``M_j = Sigma^-1 + Z_j'Z_j / s2``, general q) so that the two
    can check each other; used by the tests and by :func:`random_effects_draws`'s docs.
    """
    check_statistics(stats)
    beta = np.asarray(beta, dtype=float)
    Sigma = np.asarray(Sigma, dtype=float)
    s2 = float(sigma) ** 2
    rr = stats.yty - 2 * stats.Xty @ beta + np.einsum("p,jpk,k->j", beta, stats.XtX, beta)
    Zr = stats.Zty - np.einsum("jpq,p->jq", stats.XtZ, beta)
    M = np.linalg.inv(Sigma)[None] + stats.ZtZ / s2
    _, logdet_M = np.linalg.slogdet(M)
    _, logdet_Sigma = np.linalg.slogdet(Sigma)
    quad = rr / s2 - np.einsum("jq,jq->j", Zr, np.linalg.solve(M, Zr[..., None])[..., 0]) / s2**2
    logdet_V = stats.n * np.log(s2) + logdet_Sigma + logdet_M
    return -0.5 * (stats.n * np.log(2 * np.pi) + logdet_V + quad)


def build_marginal_model(
    stats: GroupStatistics,
    group_labels: Sequence[object] | None = None,
    *,
    priors: Priors | None = None,
) -> pm.Model:
    """PyMC model of ``y ~ 1 + x + (1 + x | group)`` with the random effects integrated out.

    Needs only the per-group sums, so it also fits data that never sat in memory (for
    instance statistics accumulated chunk by chunk).

    Parameters
    ----------
    stats : GroupStatistics
        Per-group sums, e.g. :meth:`Design.group_statistics`.
    group_labels : sequence, optional
        One label per group (coordinate ``group``); default ``0 .. J-1``.
    priors : Priors, optional
        The same priors as every parametrization (default: the tutorial's).

    Returns
    -------
    pymc.Model
        Free variables ``alpha_0, beta_0, sigma_g, chol_cov`` (``LKJCholeskyCov`` with
        ``sd_dist = HalfNormal(group_sd)``), deterministics ``sigs, R, Sigma, rho`` and the
        potential ``y_marginal`` (the marginal log-likelihood summed over groups). The
        random effects ``random_group`` are drawn after sampling by
        :func:`add_random_effects`.

    Examples
    --------
    >>> from lmm_pymc import simulate
    >>> design = simulate(seed=1).design
    >>> model = build_marginal_model(design.group_statistics(), design.group_labels)
    >>> sorted(v.name for v in model.free_RVs)
    ['alpha_0', 'beta_0', 'chol_cov', 'sigma_g']
    """
    J, p, q = check_statistics(stats)
    if group_labels is None:
        group_labels = list(range(J))
    group_labels = list(group_labels)
    if len(group_labels) != J or len(set(group_labels)) != J:
        raise ValueError(
            f"group_labels must hold {J} distinct labels (one per group of stats), found "
            f"{len(group_labels)} labels ({len(set(group_labels))} distinct)"
        )
    priors = Priors() if priors is None else priors
    coords = {
        "group": group_labels,
        "fixed_effect": list(EFFECT_NAMES),
        "random_effect": list(EFFECT_NAMES),
        "random_effect_": list(EFFECT_NAMES),
    }
    with pm.Model(coords=coords) as model:
        alpha_0 = pm.Normal("alpha_0", mu=priors.fixed_mu, sigma=priors.fixed_sd)
        beta_0 = pm.Normal("beta_0", mu=priors.fixed_mu, sigma=priors.fixed_sd)
        sigma_g = pm.HalfNormal("sigma_g", sigma=priors.residual_sd)
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
        pm.Deterministic("rho", R[0, 1])
        beta = pt.stack([alpha_0, beta_0])
        pm.Potential("y_marginal", marginal_loglik(stats, beta, sigma_g, chol).sum())
    return model


def _cholesky_draws(posterior: xr.Dataset, q: int) -> np.ndarray:
    """(S, q, q) lower Cholesky factors of Sigma, from ``chol_cov`` or else ``Sigma``."""
    if "chol_cov" in posterior:
        packed = posterior["chol_cov"].values.reshape(-1, q * (q + 1) // 2)
        L = np.zeros((packed.shape[0], q, q))
        rows, cols = np.tril_indices(q)  # PyMC packs the lower triangle row by row
        L[:, rows, cols] = packed
        return L
    return np.linalg.cholesky(posterior["Sigma"].values.reshape(-1, q, q))


def random_effects_draws(
    posterior: xr.Dataset,
    stats: GroupStatistics,
    *,
    seed: int | np.random.Generator | None,
    group_labels: Sequence[object] | None = None,
    chunk_elements: int = 500_000,
) -> xr.DataArray:
    """Exact draws of the random effects, one per posterior draw of the hyperparameters.

    For each draw, ``b_j ~ N(M_j^-1 Z_j'r_j / s2, M_j^-1)`` independently per group,
    computed as ``b_j = L c_j`` with ``c_j ~ N(A_j^-1 u_j / s2, A_j^-1)`` (module docs).

    Parameters
    ----------
    posterior : xarray.Dataset
        Needs ``alpha_0``, ``beta_0``, ``sigma_g`` and ``chol_cov`` (or ``Sigma``), with
        dims ``(chain, draw, ...)``.
    stats : GroupStatistics
        The statistics the model was fitted to.
    seed : int, numpy Generator or None
        Source of the normal draws; the same seed gives the same random effects.
    group_labels : sequence, optional
        Labels of the ``group`` coordinate (default: the posterior's, else ``0 .. J-1``).
    chunk_elements : int
        Draws x groups processed at once (bounds the temporary memory).

    Returns
    -------
    xarray.DataArray
        ``random_group`` with dims ``(chain, draw, group, random_effect)``.
    """
    J, p, q = check_statistics(stats)
    for name in ("alpha_0", "beta_0", "sigma_g"):
        if name not in posterior:
            raise ValueError(
                f"posterior must contain {name!r} to draw the random effects, found variables "
                f"{sorted(posterior.data_vars)}"
            )
    if "chol_cov" not in posterior and "Sigma" not in posterior:
        raise ValueError("posterior must contain 'chol_cov' or 'Sigma', found neither")
    if (
        isinstance(chunk_elements, bool)
        or not isinstance(chunk_elements, int)
        or chunk_elements < 1
    ):
        raise ValueError(f"chunk_elements must be a positive integer, found {chunk_elements!r}")
    rng = np.random.default_rng(seed)
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    beta_all = np.stack(
        [posterior["alpha_0"].values.reshape(-1), posterior["beta_0"].values.reshape(-1)], axis=1
    )  # (S, p)
    s2_all = posterior["sigma_g"].values.reshape(-1) ** 2  # (S,)
    L_all = _cholesky_draws(posterior, q)  # (S, q, q)
    S = beta_all.shape[0]
    out = np.empty((S, J, q))
    step = max(1, chunk_elements // J)
    eye = np.eye(q)
    for start in range(0, S, step):
        sl = slice(start, min(S, start + step))
        beta, s2, L = beta_all[sl], s2_all[sl], L_all[sl]
        Zr = stats.Zty[None] - np.einsum("jpq,sp->sjq", stats.XtZ, beta)  # (s, J, q)
        u = np.einsum("ska,sjk->sja", L, Zr)  # (s, J, q): u = L' Z'r
        B = np.einsum("ska,jkl,slc->sjac", L, stats.ZtZ, L)  # (s, J, q, q): L' Z'Z L
        A = eye + B / s2[:, None, None, None]
        C = np.linalg.cholesky(A)  # A = C C'
        mean_c = np.linalg.solve(A, u[..., None])[..., 0] / s2[:, None, None]
        eps = rng.standard_normal(mean_c.shape)
        # c - mean ~ N(0, A^-1) = C^-T eps
        c = mean_c + np.linalg.solve(np.swapaxes(C, -1, -2), eps[..., None])[..., 0]
        out[sl] = np.einsum("sak,sjk->sja", L, c)  # b = L c
    if group_labels is None:
        group_labels = (
            posterior.coords["group"].values.tolist() if "group" in posterior.coords else range(J)
        )
    group_labels = list(group_labels)
    if len(group_labels) != J:
        raise ValueError(f"group_labels must hold {J} labels, found {len(group_labels)}")
    return xr.DataArray(
        out.reshape(n_chain, n_draw, J, q),
        dims=("chain", "draw", "group", "random_effect"),
        coords={
            "chain": posterior.coords["chain"].values,
            "draw": posterior.coords["draw"].values,
            "group": group_labels,
            "random_effect": list(EFFECT_NAMES),
        },
        name="random_group",
    )


def add_random_effects(
    idata: az.InferenceData,
    stats: GroupStatistics,
    *,
    seed: int | np.random.Generator | None,
    group_labels: Sequence[object] | None = None,
) -> az.InferenceData:
    """Add ``random_group`` (chain, draw, group, random_effect) to ``idata.posterior``.

    See :func:`random_effects_draws`; returns the same (modified) ``idata``.
    """
    if not isinstance(idata, az.InferenceData) or "posterior" not in idata.groups():
        raise ValueError(
            f"idata must be an arviz InferenceData with a posterior, found {type(idata).__name__}"
        )
    draws = random_effects_draws(idata.posterior, stats, seed=seed, group_labels=group_labels)
    idata.posterior["random_group"] = draws
    return idata
