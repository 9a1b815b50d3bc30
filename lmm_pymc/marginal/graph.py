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
from .products import matvec, narrow
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
    # n may be the number 0.0 (marginal_loglik adds n log s2 apart)
    logdet = _sum([_prod(n, pt.log(s2)), logdet_A])
    return logdet, _sum([_prod(rr, 1.0 / s2), -_prod(uAu, 1.0 / pt.sqr(s2))])


def _group_arrays(stats: GroupStatistics, stable: bool) -> dict[str, np.ndarray]:
    """Per-group numbers of the likelihood, in NumPy, whatever the branch of each group.

    Every group's ``log|V_j|`` and ``r_j'V_j^-1 r_j`` are, with ``e_j = e0_j - E_j beta``
    (q,) and ``rss_j = q0_j - 2 q1_j'beta + beta'Q2_j beta``,

    - regular ``Z_j'Z_j`` (the well-conditioned form): ``e = G^-1 Z'y - G^-1 Z'X beta``,
      ``rss`` the residual sum of squares off Z, ``K = G^-1``, ``W = s2 K + Sigma``:
      ``(n - q) log s2 + log|G| + log|W|`` and ``rss / s2 + e'W^-1 e``;
    - singular (the Woodbury form): ``e = Z'r``, ``rss = r'r``, ``K = Z'Z``,
      ``A = I + L'KL / s2``, ``u = L'e``: ``n log s2 + log|A|`` and
      ``rss / s2 - u'A^-1 u / s2^2``.

    Returns ``regular`` (J,) bool, ``n_log_s2`` (J,) (the coefficient of ``log s2``),
    ``log_det_G`` (J,), ``K_W`` and ``K_A`` (J, q, q) (each branch's ``K``; a finite
    placeholder in the other branch's groups, so that gradients stay finite), ``e0`` (J, q),
    ``E`` (J, q, p), ``q0`` (J,), ``q1`` (J, p), ``Q2`` (J, p, p).
    """
    J, p, q = stats.check()
    k = stable_constants(stats) if stable else None
    regular = np.zeros(J, bool) if k is None else k["regular"]
    XtZ = np.asarray(stats.XtZ, dtype=float)
    ZtZ = np.asarray(stats.ZtZ, dtype=float)
    if k is None:
        k = {"G_inv": np.broadcast_to(np.eye(q), ZtZ.shape), "log_det_G": np.zeros(J),
             "b_y": stats.Zty, "H": np.swapaxes(XtZ, 1, 2), "rss_y": stats.yty,
             "c": stats.Xty, "A": stats.XtX}  # fmt: skip
    r1, r2, r3 = regular[:, None], regular[:, None, None], regular
    return {
        "regular": regular,
        "n_log_s2": np.asarray(stats.n, dtype=float) - q * regular,
        "log_det_G": np.where(r3, k["log_det_G"], 0.0),
        "K_W": np.where(r2, k["G_inv"], np.eye(q)[None]),
        "K_A": ZtZ,
        "e0": np.where(r1, k["b_y"], stats.Zty),
        "E": np.where(r2, k["H"], np.swapaxes(XtZ, 1, 2)),
        "q0": np.where(r3, k["rss_y"], stats.yty),
        "q1": np.where(r1, k["c"], stats.Xty),
        "Q2": np.where(r2, k["A"], stats.XtX),
    }


def _symmetric(column, name: str, values: np.ndarray) -> Matrix:
    """(J, q, q) symmetric numbers -> q x q nested list of (J,) inputs, one per pair."""
    q = values.shape[1]
    lower = [[column(f"{name}_{i}_{k}", values[:, i, k]) if k <= i else None
              for k in range(q)] for i in range(q)]  # fmt: skip
    return [[lower[max(i, k)][min(i, k)] for k in range(q)] for i in range(q)]


def _group_terms(arrays, column, make, beta, Lm: Matrix, s2) -> tuple[object, object]:
    """``(log|V_j| - n_log_s2 log s2 - log|G_j|, r_j'V_j^-1 r_j - rss_j / s2)`` per group
    (:func:`_group_arrays`): the q x q algebra, entry by entry. ``E beta`` is one
    matrix-vector product whatever p, so the graph does not grow with p."""
    E, regular = arrays["E"], arrays["regular"]
    J, q, p = E.shape
    # (q J,) = E beta, rows (effect, group)
    Eb = matvec(make("E", np.ascontiguousarray(np.swapaxes(E, 0, 1).reshape(q * J, p))),
                beta).reshape((q, -1))  # fmt: skip
    e = [_sum([column(f"e0_{a}", arrays["e0"][:, a]), -Eb[a]]) for a in range(q)]
    terms = []
    if regular.any():
        Sigma = [[_sum(_prod(Lm[i][m], Lm[c][m]) for m in range(min(i, c) + 1))
                  for c in range(q)] for i in range(q)]  # fmt: skip
        K = _symmetric(column, "K_W", arrays["K_W"])
        W = [[_sum([_prod(s2, K[i][c]), Sigma[i][c]]) for c in range(q)] for i in range(q)]
        terms.append(_cholesky_logdet_quad(W, e))
    if not regular.all():
        logdet_A, uAu = _woodbury(0.0, 0.0, e, _symmetric(column, "K_A", arrays["K_A"]), Lm, s2)
        terms.append((logdet_A, uAu))
    if len(terms) == 1:
        return terms[0]
    # groups with a singular Z'Z take the Woodbury form; each branch's placeholders are
    # finite in the other's groups, so gradients stay finite
    is_regular = column("regular", regular.astype(float)) > 0.5
    return tuple(pt.switch(is_regular, w, a) for w, a in zip(*terms, strict=True))


def marginal_loglik(
    stats: GroupStatistics,
    beta: pt.TensorLike,
    sigma: pt.TensorLike,
    chol: pt.TensorLike,
    *,
    stable: bool = True,
    total: bool = False,
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
    total : bool
        Return the sum over the groups, with the quadratic form in ``beta`` summed over the
        groups once, in NumPy (a (p, p) matrix in the graph instead of (J, p, p)).
    data : callable, optional
        Turns each named array of per-group numbers into a graph input (default: a
        constant); :func:`lmm_pymc.build_model` makes them model inputs.

    Returns
    -------
    pytensor TensorVariable, shape (J,) (a scalar with ``total=True``)
        Every array in its graph is of size O(J p); none has the number of rows. The
        graph's size depends on q, not on p (p is an input's length).
    """
    make = _constant if data is None else data
    column = _columns(data)
    arrays = _group_arrays(stats, stable)
    beta = pt.as_tensor(beta)
    s2 = pt.sqr(sigma)
    Lm = _lower(chol, stats.ZtZ.shape[1])
    logdet, quad = _group_terms(arrays, column, make, beta, Lm, s2)
    log_s2 = pt.log(s2)
    if total:
        # sum_j rss_j = sum q0 - 2 (sum q1)'beta + beta'(sum Q2) beta: rows Q2, then q1
        # (no index of the graph depends on p or J: one compiled log density for all)
        M = pt.as_tensor(make("totals", np.vstack([arrays["Q2"].sum(0), arrays["q1"].sum(0)])))
        rss = pt.sum(column("q0", arrays["q0"])) - 2.0 * pt.dot(M[-1], beta) + pt.dot(
            beta, matvec(M[:-1], beta))  # fmt: skip
        fixed = pt.sum(column("n_log_s2", arrays["n_log_s2"])) * log_s2 + pt.sum(
            column("log_det_G", arrays["log_det_G"]))  # fmt: skip
        n_rows = pt.sum(column("n", stats.n))
        return -0.5 * (n_rows * np.log(2.0 * np.pi) + fixed + pt.sum(logdet) + pt.sum(quad)
                       + rss / s2)  # fmt: skip
    Q2 = pt.as_tensor(make("Q2", arrays["Q2"]))
    q1 = pt.as_tensor(make("q1", arrays["q1"]))
    # (J,) rss_j = q0_j - 2 q1_j'beta + beta'Q2_j beta
    rss = column("q0", arrays["q0"]) - 2.0 * pt.dot(q1, beta) + (pt.dot(Q2, beta) * beta).sum(1)
    n = column("n", stats.n)
    logdet_V = column("n_log_s2", arrays["n_log_s2"]) * log_s2 + column(
        "log_det_G", arrays["log_det_G"]) + logdet  # fmt: skip
    return -0.5 * (n * np.log(2.0 * np.pi) + logdet_V + quad + rss / s2)


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


#: A dense constant matrix of at least this many entries enters the graph in the narrowest
#: type that holds it exactly (:func:`~lmm_pymc.marginal.products.narrow`: int8, int16 or
#: float32): its products, memory-bound at this size, read fewer bytes (docs/fast-path.md).
NARROW_SIZE = 1_000_000


def _dense(A: np.ndarray) -> bool:
    """Whether ``A`` enters the graph whole (more than :data:`SPARSE_SHARE` nonzero)."""
    return bool(np.count_nonzero(A) > SPARSE_SHARE * A.size)


def _matvec(make: ColumnInput, name: str, A: np.ndarray, x: pt.TensorVariable):
    """``A @ x`` for a constant (n, P) matrix ``A``: from its nonzero entries (a table of
    rows, columns and values) when sparse, else a dense product."""
    if _dense(A):
        # a large matrix read in fewer bytes where that loses nothing (products.py)
        B, factor = narrow(A) if A.size >= NARROW_SIZE else (A, 1.0)
        product = matvec(make(name, B), x)
        return product if factor == 1.0 else product * factor
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
    DtD_delta = matvec(M[:P], delta) if dense else _matvec(make, "DtD", cs.DtD, delta)
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
