"""The integrated-out likelihood as PyTensor graphs (the maths: :mod:`lmm_pymc.marginal`).

Every q x q matrix is handled entry by entry as a (J,) vector, with a Cholesky
factorisation unrolled for the model's q: the graph is a few fused elementwise loops over
the groups, which PyMC's C backend and nutpie's numba backend compile alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytensor.tensor as pt

from ..design import GroupStatistics
from .statistics import CrossedStatistics, stable_constants

__all__ = [
    "ColumnInput",
    "crossed_marginal_loglik",
    "marginal_loglik",
    "residual_marginal_loglik",
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


def _lower(chol: pt.TensorLike, q: int) -> Matrix:
    """The lower Cholesky factor ``L`` as a q x q nested list, 0.0 above the diagonal."""
    L = pt.as_tensor(chol)
    return [[L[i, k] if k <= i else 0.0 for k in range(q)] for i in range(q)]


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



def _woodbury_from_sums(stats: GroupStatistics, column, n, b: list, Lm: Matrix, s2):
    """``(log|V_j|, r_j'V_j^-1 r_j)`` by the Woodbury form from the per-group sums at
    ``beta = b`` (groups with a singular ``Z'Z``, or every group with ``stable=False``)."""
    p, q = len(b), len(Lm)
    XtX, XtZ = _entries(column, "XtX", stats.XtX), _entries(column, "XtZ", stats.XtZ)
    G = _entries(column, "ZtZ", stats.ZtZ)
    Xty = [column(f"Xty_{i}", stats.Xty[:, i]) for i in range(p)]
    Zty = [column(f"Zty_{k}", stats.Zty[:, k]) for k in range(q)]
    # (J,) r'r = y'y - 2 beta'X'y + beta'X'X beta
    rr = _sum(
        [
            column("yty", stats.yty),
            *(_prod(-2.0, Xty[i], b[i]) for i in range(p)),
            *(_prod(XtX[i][k], b[i], b[k]) for i in range(p) for k in range(p)),
        ]
    )
    # (J,) Z'r = Z'y - (X'Z)' beta
    Zr = [_sum([Zty[k], *(-_prod(XtZ[i][k], b[i]) for i in range(p))]) for k in range(q)]
    return _woodbury(n, rr, Zr, G, Lm, s2)


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
    beta = pt.as_tensor(beta)
    b = [beta[i] for i in range(p)]
    Lm = _lower(chol, q)
    s2 = pt.sqr(sigma)
    log_2pi = np.log(2.0 * np.pi)

    k = stable_constants(stats) if stable else None
    if k is None or not k["regular"].any():
        # no group has a regular Z'Z (or the stable form is not wanted): Woodbury alone
        logdet_V, quad = _woodbury_from_sums(stats, _column, n, b, Lm, s2)
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
        wood_logdet, wood_quad = _woodbury_from_sums(stats, _column, n, b, Lm, s2)
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
    Lm = _lower(chol, q)
    s2 = pt.sqr(sigma)
    r, Z = pt.as_tensor(residual), pt.as_tensor(Z)
    # (J, 1 + q): per group r'r and Z'r, one pass over the rows
    parts = pt.concatenate([pt.sqr(r)[:, None], Z * r[:, None]], axis=1)
    sums = pt.inc_subtensor(pt.zeros((pt.as_tensor(n_col).shape[0], q + 1))[index], parts)
    logdet_V, quad = _woodbury(n_col, sums[:, 0], [sums[:, k + 1] for k in range(q)], G, Lm, s2)
    return -0.5 * (n_col * np.log(2.0 * np.pi) + logdet_V + quad)



#: A constant matrix of the crossed likelihood with at most this share of nonzero entries
#: enters the graph as its entries, and its products cost O(nonzeros) (docs/measurements.md);
#: a denser one enters whole, for BLAS.
SPARSE_SHARE = 0.1


def _dense(A: np.ndarray) -> bool:
    """Whether ``A`` enters the graph whole (more than :data:`SPARSE_SHARE` nonzero)."""
    return bool(np.count_nonzero(A) > SPARSE_SHARE * A.size)


def _matvec(make: ColumnInput, name: str, A: np.ndarray, x: pt.TensorVariable):
    """``A @ x`` for a constant (n, P) matrix ``A``: from its nonzero entries (a table of
    rows, columns and values) when sparse, else a dense product."""
    if _dense(A):
        return pt.dot(make(name, A), x)
    rows, cols = np.nonzero(A)
    T = pt.as_tensor(make(f"{name}_entries", np.column_stack([rows, cols, A[rows, cols]])))
    r, c = T[:, 0].astype("int64"), T[:, 1].astype("int64")
    return pt.inc_subtensor(pt.zeros(A.shape[0])[r], T[:, 2] * x[c])


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
    # the (P,)-sized numbers in one input, rows contiguous: D'D when dense (else its entries
    # apart), D'e0, theta0 and e0'e0 (first entry of the last row)
    P = cs.theta0.size
    last = np.zeros(P)
    last[0] = cs.e0e0
    dense = _dense(cs.DtD)
    M = pt.as_tensor(make("products", np.vstack([cs.DtD] * dense + [cs.Dte0, cs.theta0, last])))
    k = P * dense  # the row of D'e0
    delta = theta - M[k + 1]
    DtD_delta = pt.dot(M[:P], delta) if dense else _matvec(make, "DtD", cs.DtD, delta)
    rr = M[k + 2, 0] - 2.0 * pt.dot(delta, M[k]) + pt.dot(delta, DtD_delta)
    Kd = _matvec(make, "ZtD", cs.K, delta).reshape((-1, q))  # rows (level, effect)
    Zr = [T[:, first + k] - Kd[:, k] for k in range(q)]
    G = [[T[:, 1 + nonzero.index((i, k))] if (i, k) in nonzero else 0.0 for k in range(q)]
         for i in range(q)]  # fmt: skip
    Lm = _lower(chol, q)
    s2 = pt.sqr(sigma)
    n_col = T[:, 0]
    # r'r enters once in total: the per-group Woodbury terms without it
    logdet_V, quad = _woodbury(n_col, 0.0, Zr, G, Lm, s2)
    n_rows = pt.sum(n_col)
    return -0.5 * (n_rows * np.log(2.0 * np.pi) + pt.sum(logdet_V) + pt.sum(quad) + rr / s2)
