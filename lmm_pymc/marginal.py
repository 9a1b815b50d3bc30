"""The fast path: one grouping factor's random effects integrated out, from per-group sums.

For group ``j`` with ``n_j`` rows, fixed design ``X_j`` (n_j, p), random design ``Z_j``
(n_j, q), residual variance ``s2 = sigma**2`` and random-effects covariance
``Sigma = L L'``, the random effects integrate out exactly::

    y_j ~ N(X_j beta, V_j),   V_j = s2 I + Z_j Sigma Z_j'

**Well-conditioned form** (every group whose ``G_j = Z_j'Z_j`` is regular). With the
group's least-squares fits on ``Z_j``, ``b_y = G^-1 Z'y`` and ``H = G^-1 Z'X``, and the
residual sums of the fixed design and outcome on ``Z_j`` (``A = X'X - X'Z H``,
``c = X'y - X'Z b_y``, ``RSS_y = y'y - Z'y . b_y``)::

    d_j             = b_y - H beta                                     (q,)
    RSS_j(beta)     = RSS_y - 2 c'beta + beta'A beta
    r_j' V_j^-1 r_j = RSS_j / s2 + d_j' W_j^-1 d_j,     W_j = s2 G^-1 + Sigma
    log|V_j|        = (n_j - q) log s2 + log|G_j| + log|W_j|

A column of ``X`` that is also a column of ``Z`` (the intercept and slopes with a random
counterpart) has no residual on ``Z``: its entries of ``A`` and ``c`` are exactly zero and
its column of ``H`` a unit vector, so the cancellation in ``X'X - X'Z H`` never reaches the
sampler. (The plain Woodbury form subtracts two terms of order ``y'y`` at every point: for
x up to 1000 its rounding reaches ~1e-2 per group and NUTS stalls.)

**Woodbury form** (groups with a singular ``Z_j'Z_j``: one row, a constant predictor, a
level of a categorical slope absent from the group): with ``r = y - X beta``,
``u = L' Z'r`` and ``A_w = I + L' Z'Z L / s2``::

    log|V_j| = n_j log s2 + log|A_w|,   r'V^-1 r = r'r / s2 - u' A_w^-1 u / s2**2

Every q x q matrix is handled entry by entry as a (J,) vector, with a Cholesky
factorisation unrolled for the model's q: the graph is a few fused elementwise loops over
the groups, which PyMC's C backend and nutpie's numba backend compile alike, and one
gradient costs O(J q^3), never O(rows).

Given a draw of the hyperparameters the random effects are exactly::

    b_j ~ N(M_j^-1 Z_j'r_j / s2, M_j^-1),  M_j = Sigma^-1 + Z_j'Z_j / s2
        = L c_j,  c_j ~ N(A_w^-1 u_j / s2, A_w^-1)

which :func:`add_random_effects` draws, with an explicit seed, after sampling.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytensor.tensor as pt
import xarray as xr

from .checks import positive_int
from .design import GroupedStatistics, GroupStatistics

__all__ = [
    "add_random_effects",
    "marginal_loglik",
    "marginal_loglik_numpy",
    "random_effects_draws",
    "stable_constants",
]

Matrix = list[list[object]]


def _column(values: np.ndarray) -> pt.TensorConstant | float:
    """One (J,) constant per matrix entry (the graph is a few fused elementwise loops); an
    entry that is zero in every group is the number 0.0, which :func:`_prod` and
    :func:`_sum` drop: a zero column of Z (a slope that never varies) then adds no terms,
    where zero constants would leave PyTensor's gradient rewrites running for minutes."""
    values = np.ascontiguousarray(values, dtype=float)
    return 0.0 if not values.any() else pt.as_tensor(values)


def _is_zero(x: object) -> bool:
    return isinstance(x, float | int) and x == 0


def _prod(*factors: object) -> object:
    """Product that is the number 0.0 as soon as one factor is."""
    if any(_is_zero(f) for f in factors):
        return 0.0
    out = factors[0]
    for f in factors[1:]:
        out = out * f
    return out


def _sum(terms) -> object:
    """Sum without the terms that are the number 0.0 (0.0 if none is left)."""
    kept = [t for t in terms if not _is_zero(t)]
    if not kept:
        return 0.0
    out = kept[0]
    for t in kept[1:]:
        out = out + t
    return out


def _entries(values: np.ndarray) -> Matrix:
    """(J, a, b) numbers -> a x b nested list of (J,) constants."""
    return [[_column(values[:, i, k]) for k in range(values.shape[2])]
            for i in range(values.shape[1])]  # fmt: skip


def _cholesky_logdet_quad(W: Matrix, d: list[object]) -> tuple[object, object]:
    """``(log|W|, d' W^-1 d)`` for a symmetric positive-definite q x q ``W`` of (J,) entries,
    by an unrolled Cholesky factorisation ``W = C C'`` and forward substitution."""
    q = len(d)
    C: Matrix = [[None] * q for _ in range(q)]
    logdet, quad, v = 0.0, 0.0, [None] * q
    for i in range(q):
        for k in range(i + 1):
            s = _sum([W[i][k], *(-_prod(C[i][m], C[k][m]) for m in range(k))])
            C[i][k] = pt.sqrt(s) if i == k else _prod(s, 1.0 / C[k][k])
        logdet = logdet + 2.0 * pt.log(C[i][i])
        # v = C^-1 d, row by row
        v[i] = _prod(_sum([d[i], *(-_prod(C[i][m], v[m]) for m in range(i))]), 1.0 / C[i][i])
        quad = _sum([quad, _prod(v[i], v[i])])
    return logdet, quad


def stable_constants(stats: GroupStatistics) -> dict[str, np.ndarray]:
    """Per-group constants of the well-conditioned form (module docstring), in NumPy.

    Returns ``regular`` (J,) bool, ``G_inv`` (J, q, q), ``log_det_G`` (J,), ``H`` (J, q, p),
    ``b_y`` (J, q), ``A`` (J, p, p), ``c`` (J, p), ``rss_y`` (J,). Where ``regular`` is
    False (``Z'Z`` singular) the entries are finite placeholders.
    """
    G = np.asarray(stats.ZtZ, dtype=float)
    J, q, _ = G.shape
    p = stats.XtX.shape[1]
    # regular: the smallest eigenvalue of the scaled Gram matrix is well above rounding
    scale = np.sqrt(np.clip(np.einsum("jkk->jk", G), 1e-300, None))
    eig_min = np.linalg.eigvalsh(G / scale[:, :, None] / scale[:, None, :])[:, 0]
    regular = eig_min > 1e-10
    G_safe = np.where(regular[:, None, None], G, np.eye(q)[None])
    G_inv = np.linalg.inv(G_safe)
    _, log_det_G = np.linalg.slogdet(G_safe)
    XtZ = np.asarray(stats.XtZ, dtype=float)
    H = G_inv @ np.swapaxes(XtZ, 1, 2)  # (J, q, p)
    b_y = np.einsum("jqk,jk->jq", G_inv, stats.Zty)
    A = stats.XtX - XtZ @ H
    c = stats.Xty - np.einsum("jpq,jq->jp", XtZ, b_y)
    rss_y = stats.yty - np.einsum("jq,jq->j", stats.Zty, b_y)
    # a column of X identical to a column of Z (bitwise-equal sums in every group) has an
    # exactly zero residual on Z: remove the rounding of the subtractions above
    for i in range(p):
        for k in range(q):
            same = (
                np.array_equal(stats.XtX[:, i, i], G[:, k, k])
                and np.array_equal(XtZ[:, i, k], G[:, k, k])
                and np.array_equal(stats.Xty[:, i], stats.Zty[:, k])
            )
            if same:
                A[:, i, :] = A[:, :, i] = 0.0
                c[:, i] = 0.0
                H[:, :, i] = np.eye(q)[k]
                break
    placeholder = ~regular
    A[placeholder], c[placeholder], rss_y[placeholder] = 0.0, 0.0, 0.0
    return {"regular": regular, "G_inv": G_inv, "log_det_G": log_det_G, "H": H, "b_y": b_y,
            "A": A, "c": c, "rss_y": rss_y}  # fmt: skip


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
        Per-group sums (J groups, any p and q).
    beta : tensor, shape (p,)
    sigma : tensor, scalar
        Residual sd.
    chol : tensor, shape (q, q)
        Lower Cholesky factor ``L`` of the random-effects covariance ``Sigma``.
    stable : bool
        Use the well-conditioned form for every group with a regular ``Z'Z`` (the
        default); ``False`` keeps the Woodbury form everywhere (for comparison).

    Returns
    -------
    pytensor TensorVariable, shape (J,)
        Every array in its graph is of size O(J); none has the number of rows.
    """
    J, p, q = stats.check()
    n = _column(stats.n)
    beta, L = pt.as_tensor(beta), pt.as_tensor(chol)
    b = [beta[i] for i in range(p)]
    Lm = [[L[i, k] if k <= i else 0.0 for k in range(q)] for i in range(q)]
    s2 = pt.sqr(sigma)
    log_2pi = np.log(2.0 * np.pi)

    def woodbury() -> tuple[object, object]:
        XtX, XtZ, G = _entries(stats.XtX), _entries(stats.XtZ), _entries(stats.ZtZ)
        Xty = [_column(stats.Xty[:, i]) for i in range(p)]
        Zty = [_column(stats.Zty[:, k]) for k in range(q)]
        # (J,) r'r = y'y - 2 beta'X'y + beta'X'X beta
        rr = _sum(
            [
                _column(stats.yty),
                *(_prod(-2.0, Xty[i], b[i]) for i in range(p)),
                *(_prod(XtX[i][k], b[i], b[k]) for i in range(p) for k in range(p)),
            ]
        )
        # (J,) Z'r = Z'y - (X'Z)' beta ; u = L' Z'r
        Zr = [_sum([Zty[k], *(-_prod(XtZ[i][k], b[i]) for i in range(p))]) for k in range(q)]
        u = [_sum(_prod(Lm[k][a], Zr[k]) for k in range(a, q)) for a in range(q)]
        # A_w = I + L' G L / s2
        GL = [[_sum(_prod(G[k][m], Lm[m][c]) for m in range(c, q)) for c in range(q)]
              for k in range(q)]  # fmt: skip
        Aw = [[_sum([1.0 if a == c else 0.0,
                     _prod(_sum(_prod(Lm[k][a], GL[k][c]) for k in range(a, q)), 1.0 / s2)])
               for c in range(q)] for a in range(q)]  # fmt: skip
        logdet_A, uAu = _cholesky_logdet_quad(Aw, u)
        return n * pt.log(s2) + logdet_A, rr / s2 - _prod(uAu, 1.0 / pt.sqr(s2))

    k = stable_constants(stats) if stable else None
    if k is None or not k["regular"].any():
        # no group has a regular Z'Z (or the stable form is not wanted): Woodbury alone
        logdet_V, quad = woodbury()
        return -0.5 * (n * log_2pi + logdet_V + quad)
    Sigma = [[_sum(_prod(Lm[i][m], Lm[c][m]) for m in range(min(i, c) + 1)) for c in range(q)]
             for i in range(q)]  # fmt: skip
    G_inv, H = _entries(k["G_inv"]), _entries(k["H"])
    W = [[_sum([_prod(s2, G_inv[i][c]), Sigma[i][c]]) for c in range(q)] for i in range(q)]
    d = [_sum([_column(k["b_y"][:, a]), *(-_prod(H[a][i], b[i]) for i in range(p))])
         for a in range(q)]  # fmt: skip
    logdet_W, dWd = _cholesky_logdet_quad(W, d)
    rss = _column(k["rss_y"])
    if np.any(k["A"]) or np.any(k["c"]):  # fixed effects without a random counterpart
        A, c = _entries(k["A"]), [_column(k["c"][:, i]) for i in range(p)]
        rss = _sum(
            [
                rss,
                *(_prod(-2.0, c[i], b[i]) for i in range(p)),
                *(_prod(A[i][m], b[i], b[m]) for i in range(p) for m in range(p)),
            ]
        )
    stable_logdet = (n - q) * pt.log(s2) + _column(k["log_det_G"]) + logdet_W
    stable_quad = rss / s2 + dWd
    if k["regular"].all():
        # every group regular (the usual case): no Woodbury branch in the graph, which
        # halves its size and nutpie's compile time
        logdet_V, quad = stable_logdet, stable_quad
    else:
        # groups with a singular Z'Z keep the Woodbury form; their stable-branch constants
        # are finite placeholders, so gradients stay finite
        regular = _column(k["regular"].astype(float))
        wood_logdet, wood_quad = woodbury()
        logdet_V = pt.switch(regular > 0.5, stable_logdet, wood_logdet)
        quad = pt.switch(regular > 0.5, stable_quad, wood_quad)
    return -0.5 * (n * log_2pi + logdet_V + quad)


def marginal_loglik_numpy(
    stats: GroupStatistics, beta: np.ndarray, sigma: float, Sigma: np.ndarray
) -> np.ndarray:
    """NumPy twin of :func:`marginal_loglik` at one point, through ``M_j`` (shape (J,)).

    Written independently (``M_j = Sigma^-1 + Z_j'Z_j / s2``) so that the two can check
    each other.
    """
    stats.check()
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


def _cholesky_draws(posterior: xr.Dataset, key: str, q: int) -> np.ndarray:
    """(S, q, q) lower Cholesky factors of the factor's Sigma: from ``chol_cov_<key>``
    (``LKJCholeskyCov``, packed row by row) or ``diag(sigs_<key>)`` (uncorrelated)."""
    if f"chol_cov_{key}" in posterior:
        packed = posterior[f"chol_cov_{key}"].values.reshape(-1, q * (q + 1) // 2)
        L = np.zeros((packed.shape[0], q, q))
        rows, cols = np.tril_indices(q)
        L[:, rows, cols] = packed
        return L
    if f"sigs_{key}" in posterior:
        sigs = posterior[f"sigs_{key}"].values.reshape(-1, q)
        return sigs[:, :, None] * np.eye(q)[None]
    raise ValueError(
        f"posterior must contain 'chol_cov_{key}' or 'sigs_{key}' to draw the random effects, "
        f"found variables {sorted(posterior.data_vars)}"
    )


def random_effects_draws(
    posterior: xr.Dataset,
    grouped: GroupedStatistics,
    *,
    seed: int | np.random.Generator | None,
    chunk_elements: int = 500_000,
) -> xr.DataArray:
    """Exact draws of the integrated factor's random effects, one per posterior draw.

    For each draw, ``b_j ~ N(M_j^-1 Z_j'r_j / s2, M_j^-1)`` independently per group,
    computed as ``b_j = L c_j`` with ``c_j ~ N(A_w^-1 u_j / s2, A_w^-1)`` (module docs).

    Parameters
    ----------
    posterior : xarray.Dataset
        Needs ``beta``, ``sigma`` and ``chol_cov_<key>`` (or ``sigs_<key>``), with dims
        ``(chain, draw, ...)``.
    grouped : GroupedStatistics
        The statistics and names the model was fitted to.
    seed : int, numpy Generator or None
        Source of the normal draws; the same seed gives the same random effects.
    chunk_elements : int
        Draws x groups processed at once (bounds the temporary memory).

    Returns
    -------
    xarray.DataArray
        ``b_<key>`` with dims ``(chain, draw, <factor>, <factor>_effect)``.
    """
    stats, f = grouped.statistics, grouped.factor
    J, p, q = stats.check()
    for name in ("beta", "sigma"):
        if name not in posterior:
            raise ValueError(
                f"posterior must contain {name!r} to draw the random effects, found variables "
                f"{sorted(posterior.data_vars)}"
            )
    chunk_elements = positive_int("chunk_elements", chunk_elements)
    rng = np.random.default_rng(seed)
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    beta_all = posterior["beta"].values.reshape(-1, p)  # (S, p)
    s2_all = posterior["sigma"].values.reshape(-1) ** 2  # (S,)
    L_all = _cholesky_draws(posterior, f.key, q)  # (S, q, q)
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
    return xr.DataArray(
        out.reshape(n_chain, n_draw, J, q),
        dims=("chain", "draw", f.level_dim, f.effect_dim),
        coords={
            "chain": posterior.coords["chain"].values,
            "draw": posterior.coords["draw"].values,
            f.level_dim: list(f.labels),
            f.effect_dim: list(f.terms),
        },
        name=f"b_{f.key}",
    )


def add_random_effects(
    idata: az.InferenceData,
    grouped: GroupedStatistics,
    *,
    seed: int | np.random.Generator | None,
) -> az.InferenceData:
    """Add ``b_<key>`` to ``idata.posterior`` (see :func:`random_effects_draws`); returns
    the same (modified) ``idata``."""
    if not isinstance(idata, az.InferenceData) or "posterior" not in idata.groups():
        raise ValueError(
            f"idata must be an arviz InferenceData with a posterior, found {type(idata).__name__}"
        )
    draws = random_effects_draws(idata.posterior, grouped, seed=seed)
    idata.posterior[draws.name] = draws
    return idata
