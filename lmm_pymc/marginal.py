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

from collections.abc import Callable
from dataclasses import dataclass

import arviz as az
import numpy as np
import pytensor.tensor as pt
import xarray as xr

from .checks import positive_int
from .design import Design, GroupedStatistics, GroupingFactor, GroupStatistics

__all__ = [
    "CROSS_PRODUCT_LIMIT",
    "CrossedStatistics",
    "add_random_effects",
    "crossed_marginal_loglik",
    "crossed_statistics",
    "marginal_loglik",
    "marginal_loglik_numpy",
    "random_effects_draws",
    "residual_marginal_loglik",
    "stable_constants",
]

Matrix = list[list[object]]


#: Turns one named (J,) column of per-group numbers into a graph input: ``pt.as_tensor``
#: by default (a constant); :func:`lmm_pymc.build_model` passes one that makes ``pm.Data``,
#: so that the compiled log density takes the data as inputs and serves every data set of
#: the same structure (:func:`lmm_pymc.compiled.compile_model`).
ColumnInput = Callable[[str, np.ndarray], object]


def _constant(name: str, values: np.ndarray) -> pt.TensorConstant:
    return pt.as_tensor(values)


def _columns(data: ColumnInput | None) -> Callable[[str, np.ndarray], object]:
    """``column(name, values)``: one (J,) input per matrix entry (the graph is a few fused
    elementwise loops); an entry that is zero in every group is the number 0.0, which
    :func:`_prod` and :func:`_sum` drop: a zero column of Z (a slope that never varies) then
    adds no terms, where zero inputs would leave PyTensor's gradient rewrites running for
    minutes. Which entries are zero is part of the model's structure."""
    make = _constant if data is None else data

    def column(name: str, values: np.ndarray) -> object:
        values = np.ascontiguousarray(values, dtype=float)
        return 0.0 if not values.any() else make(name, values)

    return column


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


def _entries(column, name: str, values: np.ndarray) -> Matrix:
    """(J, a, b) numbers -> a x b nested list of (J,) inputs ``<name>_<i>_<k>``."""
    return [[column(f"{name}_{i}_{k}", values[:, i, k]) for k in range(values.shape[2])]
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


def _woodbury(n, rr, Zr: list[object], G: Matrix, Lm: Matrix, s2) -> tuple[object, object]:
    """``(log|V_j|, r_j'V_j^-1 r_j)`` per group from ``r'r`` (J,), ``Z'r`` (q of (J,)) and
    ``Z'Z`` (q x q of (J,)), by the Woodbury form (module docstring): ``u = L' Z'r``,
    ``A_w = I + L' Z'Z L / s2``."""
    q = len(Zr)
    u = [_sum(_prod(Lm[k][a], Zr[k]) for k in range(a, q)) for a in range(q)]
    GL = [[_sum(_prod(G[k][m], Lm[m][c]) for m in range(c, q)) for c in range(q)]
          for k in range(q)]  # fmt: skip
    Aw = [[_sum([1.0 if a == c else 0.0,
                 _prod(_sum(_prod(Lm[k][a], GL[k][c]) for k in range(a, q)), 1.0 / s2)])
           for c in range(q)] for a in range(q)]  # fmt: skip
    logdet_A, uAu = _cholesky_logdet_quad(Aw, u)
    # r'r may be the number 0.0 (crossed_marginal_loglik adds it in total): 0.0 / s2 would
    # leave PyTensor's zero-division rewrite cycling
    return n * pt.log(s2) + logdet_A, _sum([_prod(rr, 1.0 / s2), -_prod(uAu, 1.0 / pt.sqr(s2))])


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
    data: ColumnInput | None = None,
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
    _column = _columns(data)
    n = _column("n", stats.n)
    beta, L = pt.as_tensor(beta), pt.as_tensor(chol)
    b = [beta[i] for i in range(p)]
    Lm = [[L[i, k] if k <= i else 0.0 for k in range(q)] for i in range(q)]
    s2 = pt.sqr(sigma)
    log_2pi = np.log(2.0 * np.pi)

    def woodbury() -> tuple[object, object]:
        XtX, XtZ = _entries(_column, "XtX", stats.XtX), _entries(_column, "XtZ", stats.XtZ)
        G = _entries(_column, "ZtZ", stats.ZtZ)
        Xty = [_column(f"Xty_{i}", stats.Xty[:, i]) for i in range(p)]
        Zty = [_column(f"Zty_{k}", stats.Zty[:, k]) for k in range(q)]
        # (J,) r'r = y'y - 2 beta'X'y + beta'X'X beta
        rr = _sum(
            [
                _column("yty", stats.yty),
                *(_prod(-2.0, Xty[i], b[i]) for i in range(p)),
                *(_prod(XtX[i][k], b[i], b[k]) for i in range(p) for k in range(p)),
            ]
        )
        # (J,) Z'r = Z'y - (X'Z)' beta
        Zr = [_sum([Zty[k], *(-_prod(XtZ[i][k], b[i]) for i in range(p))]) for k in range(q)]
        return _woodbury(n, rr, Zr, G, Lm, s2)

    k = stable_constants(stats) if stable else None
    if k is None or not k["regular"].any():
        # no group has a regular Z'Z (or the stable form is not wanted): Woodbury alone
        logdet_V, quad = woodbury()
        return -0.5 * (n * log_2pi + logdet_V + quad)
    Sigma = [[_sum(_prod(Lm[i][m], Lm[c][m]) for m in range(min(i, c) + 1)) for c in range(q)]
             for i in range(q)]  # fmt: skip
    G_inv, H = _entries(_column, "G_inv", k["G_inv"]), _entries(_column, "H", k["H"])
    W = [[_sum([_prod(s2, G_inv[i][c]), Sigma[i][c]]) for c in range(q)] for i in range(q)]
    d = [_sum([_column(f"b_y_{a}", k["b_y"][:, a]), *(-_prod(H[a][i], b[i]) for i in range(p))])
         for a in range(q)]  # fmt: skip
    logdet_W, dWd = _cholesky_logdet_quad(W, d)
    rss = _column("rss_y", k["rss_y"])
    if np.any(k["A"]) or np.any(k["c"]):  # fixed effects without a random counterpart
        A = _entries(_column, "A", k["A"])
        c = [_column(f"c_{i}", k["c"][:, i]) for i in range(p)]
        rss = _sum(
            [
                rss,
                *(_prod(-2.0, c[i], b[i]) for i in range(p)),
                *(_prod(A[i][m], b[i], b[m]) for i in range(p) for m in range(p)),
            ]
        )
    stable_logdet = (n - q) * pt.log(s2) + _column("log_det_G", k["log_det_G"]) + logdet_W
    stable_quad = rss / s2 + dWd
    if k["regular"].all():
        # every group regular (the usual case): no Woodbury branch in the graph, which
        # halves its size and nutpie's compile time
        logdet_V, quad = stable_logdet, stable_quad
    else:
        # groups with a singular Z'Z keep the Woodbury form; their stable-branch constants
        # are finite placeholders, so gradients stay finite
        regular = _column("regular", k["regular"].astype(float))
        wood_logdet, wood_quad = woodbury()
        logdet_V = pt.switch(regular > 0.5, stable_logdet, wood_logdet)
        quad = pt.switch(regular > 0.5, stable_quad, wood_quad)
    return -0.5 * (n * log_2pi + logdet_V + quad)


def residual_marginal_loglik(
    residual: pt.TensorLike,
    Z: pt.TensorLike,
    index: pt.TensorLike,
    n: np.ndarray,
    ZtZ: np.ndarray,
    sigma: pt.TensorLike,
    chol: pt.TensorLike,
    *,
    data: ColumnInput | None = None,
) -> pt.TensorVariable:
    """Per-group marginal log-likelihood of one factor whose random effects are integrated
    out while the others' are given: crossed factors on the fast path.

    With the other factors' effects in the residual ``r = y - X beta - sum_f Z_f b_f``
    (computed by the caller, one entry per row), group ``j`` of the integrated factor has
    ``r_j ~ N(0, s2 I + Z_j Sigma Z_j')``, evaluated by the Woodbury form from the per-group
    ``r'r`` and ``Z'r`` (one pass over the rows per gradient: O(rows)) and the constant
    ``Z'Z`` (module docstring). The residual is already centred by the fixed and sampled
    effects, so the Woodbury form's difference of terms is of the residual's scale.

    Parameters
    ----------
    residual : tensor, shape (N,)
    Z : tensor, shape (N, q)
        The integrated factor's random-effects design.
    index : tensor of int, shape (N,)
        Each row's level of the integrated factor, in ``0 .. J-1``.
    n, ZtZ : arrays, shapes (J,) and (J, q, q)
        Rows per level and ``Z_j'Z_j``.
    sigma, chol : tensors
        Residual sd; lower Cholesky factor of the integrated factor's ``Sigma``.
    data : callable, optional
        As in :func:`marginal_loglik`: turns ``n`` and ``ZtZ``'s entries into inputs.

    Returns
    -------
    pytensor TensorVariable, shape (J,)
    """
    column = _columns(data)
    ZtZ = np.asarray(ZtZ, dtype=float)
    q = ZtZ.shape[1]
    n_col = column("n", n)
    G = _entries(column, "ZtZ", ZtZ)
    L = pt.as_tensor(chol)
    Lm = [[L[i, k] if k <= i else 0.0 for k in range(q)] for i in range(q)]
    s2 = pt.sqr(sigma)
    r, Z = pt.as_tensor(residual), pt.as_tensor(Z)
    # (J, 1 + q): per group r'r and Z'r, one pass over the rows
    parts = pt.concatenate([pt.sqr(r)[:, None], Z * r[:, None]], axis=1)
    sums = pt.inc_subtensor(pt.zeros((pt.as_tensor(n_col).shape[0], q + 1))[index], parts)
    logdet_V, quad = _woodbury(n_col, sums[:, 0], [sums[:, k + 1] for k in range(q)], G, Lm, s2)
    return -0.5 * (n_col * np.log(2.0 * np.pi) + logdet_V + quad)


#: Largest ``J q x P`` cross-product matrix ``Z'D`` (:class:`CrossedStatistics`) kept dense:
#: 2e7 numbers (160 MB); beyond it the crossed likelihood makes one pass over the rows
#: per gradient (:func:`residual_marginal_loglik`).
CROSS_PRODUCT_LIMIT = 20_000_000


@dataclass(frozen=True)
class CrossedStatistics:
    """Cross-products that give a crossed design's likelihood, one factor integrated out,
    without its rows.

    The residual given the sampled effects is linear in ``theta = (beta, vec b_o, ...)``
    (``P`` numbers; each sampled factor's ``b_o`` (J_o, q_o) row by row): ``r = y - D
    theta`` with ``D = [X, W_o, ...]``, ``W_o`` the sampled factor's (N, J_o q_o) random
    design. Around a least-squares point ``theta0`` (``e0 = y - D theta0``, so ``D'e0`` is
    ~0 and nothing of the order of ``y'y`` is subtracted), with ``delta = theta - theta0``::

        r'r        = e0'e0 - 2 delta'D'e0 + delta'D'D delta
        Z_j'r_j    = Z_j'e0_j - (Z'D)_j delta

    ``Z'D`` (``K``, (J q, P)) is dense: one gradient costs O(J q P + P^2) and no array has
    the number of rows.
    """

    factor: GroupingFactor
    others: tuple[GroupingFactor, ...]
    n: np.ndarray  # (J,)
    ZtZ: np.ndarray  # (J, q, q)
    theta0: np.ndarray  # (P,)
    e0e0: float
    Dte0: np.ndarray  # (P,)
    DtD: np.ndarray  # (P, P)
    Zte0: np.ndarray  # (J, q)
    K: np.ndarray  # (J q, P)

    def theta(self, beta: np.ndarray, b_others: list[np.ndarray]) -> np.ndarray:
        """(S, P) ``theta`` of draws: ``beta`` (S, p) and each sampled ``b_o`` (S, J_o, q_o)."""
        S = beta.shape[0]
        return np.concatenate([beta, *(b.reshape(S, -1) for b in b_others)], axis=1)


def _block_design(index: np.ndarray, Z: np.ndarray, n_levels: int):
    """Sparse (N, J q) design of one factor: row i has ``Z[i]`` in the columns of its level."""
    from scipy import sparse

    N, q = Z.shape
    cols = (index[:, None] * q + np.arange(q)[None, :]).ravel()
    rows = np.repeat(np.arange(N), q)
    return sparse.csr_matrix((Z.ravel(), (rows, cols)), shape=(N, n_levels * q))


def crossed_statistics(design: Design, factor: GroupingFactor) -> CrossedStatistics | None:
    """The :class:`CrossedStatistics` of ``design`` with ``factor`` integrated out, or None
    when ``Z'D`` would exceed :data:`CROSS_PRODUCT_LIMIT` numbers."""
    from scipy import sparse

    others = tuple(f for f in design.factors if f.name != factor.name)
    P = design.X.shape[1] + sum(f.n_levels * f.q for f in others)
    if factor.n_levels * factor.q * P > CROSS_PRODUCT_LIMIT:
        return None
    D = sparse.hstack(
        [sparse.csr_matrix(design.X), *(_block_design(f.index, f.Z, f.n_levels) for f in others)]
    ).tocsr()
    y = design.y
    DtD = np.asarray((D.T @ D).todense())
    # a least-squares point (D is rank deficient: the intercept and every level's intercept)
    theta0 = np.linalg.lstsq(DtD, D.T @ y, rcond=None)[0]
    e0 = y - D @ theta0
    Za = _block_design(factor.index, factor.Z, factor.n_levels)
    stats = GroupStatistics.from_rows(design.X, factor.Z, y, factor.index, factor.n_levels)
    return CrossedStatistics(
        factor=factor,
        others=others,
        n=stats.n,
        ZtZ=stats.ZtZ,
        theta0=theta0,
        e0e0=float(e0 @ e0),
        Dte0=np.asarray(D.T @ e0),
        DtD=DtD,
        Zte0=np.asarray(Za.T @ e0).reshape(factor.n_levels, factor.q),
        K=np.asarray((Za.T @ D).todense()),
    )


def crossed_marginal_loglik(
    cs: CrossedStatistics,
    beta: pt.TensorLike,
    b_others: list[pt.TensorLike],
    sigma: pt.TensorLike,
    chol: pt.TensorLike,
    *,
    data: ColumnInput | None = None,
) -> pt.TensorVariable:
    """Log-likelihood (a scalar) of a crossed design with ``cs.factor``'s random effects
    integrated out, given ``beta`` and the sampled factors' ``b_o`` (J_o, q_o) in the order
    of ``cs.others``: the Woodbury form per group (module docstring) from the
    cross-products of :class:`CrossedStatistics`. ``data`` turns the per-group columns and
    the cross-products into model inputs (as in :func:`marginal_loglik`)."""
    make = _constant if data is None else data
    q = cs.Zte0.shape[1]
    # the per-group numbers in one (J, .) input: n, the nonzero entries of Z'Z (zero entries
    # are left out of the graph) and Z'e0 per effect; Z'D apart, (J q, P) and contiguous, so
    # that Z'D delta is one matrix-vector product (and its gradient one more)
    nonzero = [(i, k) for i in range(q) for k in range(q) if cs.ZtZ[:, i, k].any()]
    table = np.column_stack([cs.n, *(cs.ZtZ[:, i, k] for i, k in nonzero), cs.Zte0])
    T = pt.as_tensor(make("groups", table))
    first = 1 + len(nonzero)  # the column of Z'e0 of the first effect
    theta = pt.concatenate([pt.as_tensor(beta), *(pt.as_tensor(b).flatten() for b in b_others)])
    # the (P,)-sized numbers in one (P + 3, P) input, rows contiguous: D'D, D'e0, theta0 and
    # e0'e0 (first entry of the last row)
    P = cs.theta0.size
    last = np.zeros(P)
    last[0] = cs.e0e0
    M = pt.as_tensor(make("products", np.vstack([cs.DtD, cs.Dte0, cs.theta0, last])))
    delta = theta - M[P + 1]
    rr = M[P + 2, 0] - 2.0 * pt.dot(delta, M[P]) + pt.dot(delta, pt.dot(M[:P], delta))
    Kd = pt.dot(make("ZtD", cs.K), delta).reshape((-1, q))  # rows (level, effect)
    Zr = [T[:, first + k] - Kd[:, k] for k in range(q)]
    G = [[T[:, 1 + nonzero.index((i, k))] if (i, k) in nonzero else 0.0 for k in range(q)]
         for i in range(q)]  # fmt: skip
    L = pt.as_tensor(chol)
    Lm = [[L[i, k] if k <= i else 0.0 for k in range(q)] for i in range(q)]
    s2 = pt.sqr(sigma)
    n_col = T[:, 0]
    # r'r enters once in total: the per-group Woodbury terms without it
    logdet_V, quad = _woodbury(n_col, 0.0, Zr, G, Lm, s2)
    n_rows = pt.sum(n_col)
    return -0.5 * (n_rows * np.log(2.0 * np.pi) + pt.sum(logdet_V) + pt.sum(quad) + rr / s2)


def marginal_loglik_numpy(
    stats: GroupStatistics, beta: np.ndarray, sigma: float | np.ndarray, Sigma: np.ndarray
) -> np.ndarray:
    """NumPy twin of :func:`marginal_loglik` through ``M_j`` (shape (J,) at one point).

    Written independently (``M_j = Sigma^-1 + Z_j'Z_j / s2``) so that the two can check
    each other. Draws at once: ``beta`` (..., p), ``sigma`` (...), ``Sigma`` (..., q, q)
    give (..., J).
    """
    stats.check()
    beta = np.asarray(beta, dtype=float)
    batch, p = beta.shape[:-1], beta.shape[-1]
    q = stats.ZtZ.shape[1]
    b = beta.reshape(-1, p)
    Sigma = np.asarray(Sigma, dtype=float).reshape(-1, q, q)
    s2 = (np.asarray(sigma, dtype=float).reshape(-1) ** 2)[:, None]  # (B, 1)
    rr = (stats.yty[None] - 2 * b @ stats.Xty.T
          + np.einsum("bp,jpk,bk->bj", b, stats.XtX, b, optimize=True))  # fmt: skip
    Zr = stats.Zty[None] - np.einsum("jpq,bp->bjq", stats.XtZ, b, optimize=True)
    M = np.linalg.inv(Sigma)[:, None] + stats.ZtZ[None] / s2[..., None, None]
    _, logdet_M = np.linalg.slogdet(M)
    _, logdet_Sigma = np.linalg.slogdet(Sigma)
    MZr = np.linalg.solve(M, Zr[..., None])[..., 0]
    quad = rr / s2 - np.einsum("bjq,bjq->bj", Zr, MZr) / s2**2
    logdet_V = stats.n[None] * np.log(s2) + logdet_Sigma[:, None] + logdet_M
    out = -0.5 * (stats.n[None] * np.log(2 * np.pi) + logdet_V + quad)
    return out.reshape(*batch, -1)


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
        ``(chain, draw, ...)``; with ``design``, also every other factor's ``b_<key>``.
    grouped : GroupedStatistics
        The integrated factor's statistics and names (with ``design``: its ``n`` and
        ``Z'Z`` are used; its ``Z'r`` comes from the rows).
    seed : int, numpy Generator or None
        Source of the normal draws; the same seed gives the same random effects.
    chunk_elements : int
        Draws x groups (with ``design``: draws x rows) processed at once (bounds the
        temporary memory).
    design : Design, optional
        For crossed factors (:func:`residual_marginal_loglik`): the rows, whose residual
        ``y - X beta - sum_f Z_f b_f`` over the other factors gives each draw's ``Z'r``.
    crossed : CrossedStatistics, optional
        With ``design``: its cross-products, which give each draw's ``Z'r`` without a pass
        over the rows (:func:`crossed_statistics`).

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
    if design is None:
        step = max(1, chunk_elements // J)

        def z_r(sl: slice) -> np.ndarray:  # (s, J, q) = Z'y - (X'Z)' beta, one BLAS product each
            return np.stack(
                [stats.Zty[None, :, a] - beta_all[sl] @ stats.XtZ[:, :, a].T for a in range(q)],
                axis=-1,
            )
    else:
        step = max(1, chunk_elements // max(design.n_obs, 1))
        z_r = _crossed_z_r(posterior, design, f, beta_all, crossed)
    ZtZ = [[stats.ZtZ[None, :, k, m] for m in range(q)] for k in range(q)]  # (1, J) each
    for start in range(0, S, step):
        sl = slice(start, min(S, start + step))
        inv_s2 = 1.0 / s2_all[sl, None]  # (s, 1)
        Zr = z_r(sl)  # (s, J, q)
        # the q x q algebra entry by entry on (s, J) arrays: for 1e4 groups x 4000 draws
        # ~15x faster than batched np.linalg on 4e7 tiny matrices
        Lc = [[L_all[sl, k, a][:, None] for a in range(q)] for k in range(q)]  # (s, 1)
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
        eps = rng.standard_normal(Zr.shape)
        w: list[np.ndarray] = [None] * q
        for i in range(q):
            w[i] = (u[i] * inv_s2 - sum(C[i][m] * w[m] for m in range(i))) / C[i][i]
        c_: list[np.ndarray] = [None] * q
        for i in reversed(range(q)):
            z_i = w[i] + eps[..., i]
            c_[i] = (z_i - sum(C[m][i] * c_[m] for m in range(i + 1, q))) / C[i][i]
        for a in range(q):
            out[sl, :, a] = sum(Lc[a][k] * c_[k] for k in range(a + 1))  # b = L c
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


def _crossed_z_r(
    posterior: xr.Dataset,
    design: Design,
    f,
    beta_all: np.ndarray,
    cs: CrossedStatistics | None,
):
    """``z_r(draws)`` -> (s, J, q): the integrated factor ``f``'s per-group ``Z'r`` of each
    draw's residual ``y - X beta - sum_other Z_o b_o[g_o]``."""
    from scipy import sparse

    others = [o for o in design.factors if o.name != f.name]
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
    grouped: GroupedStatistics,
    *,
    seed: int | np.random.Generator | None,
    design: Design | None = None,
    crossed: CrossedStatistics | None = None,
) -> az.InferenceData:
    """Add ``b_<key>`` to ``idata.posterior`` (see :func:`random_effects_draws`; ``design``
    and ``crossed`` for crossed factors); returns the same (modified) ``idata``."""
    if not isinstance(idata, az.InferenceData) or "posterior" not in idata.groups():
        raise ValueError(
            f"idata must be an arviz InferenceData with a posterior, found {type(idata).__name__}"
        )
    draws = random_effects_draws(
        idata.posterior, grouped, seed=seed, design=design, crossed=crossed
    )
    idata.posterior[draws.name] = draws
    return idata
