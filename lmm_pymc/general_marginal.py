"""The integrated-out fast path for a general design with a single grouping factor.

The maths of :mod:`lmm_pymc.marginal` (written there for ``p = q = 2``), for any number
``p`` of fixed and ``q`` of random effects. For group ``j``, ``s2 = sigma_g**2`` and the
Cholesky factor ``L`` of ``Sigma``::

    y_j ~ N(X_j beta, V_j),   V_j = s2 I + Z_j L L' Z_j'
    A_j = I + L' Z_j'Z_j L / s2        (q, q), u_j = L' Z_j' r_j,  r_j = y_j - X_j beta
    log|V_j|        = n_j log s2 + log|A_j|
    r_j' V_j^-1 r_j = r_j'r_j / s2 - u_j' A_j^-1 u_j / s2**2

with batched Cholesky factorisations and solves, so one gradient costs O(J q^3), not
O(rows). Only the per-group sums ``n, X'X, X'Z, Z'Z, X'y, Z'y, y'y`` enter
(:func:`general_group_statistics`, the core's :class:`~lmm_pymc.design.GroupStatistics`).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

from .design import GroupStatistics
from .formula import GeneralDesign

__all__ = ["general_group_statistics", "general_marginal_loglik", "general_marginal_loglik_numpy"]


def general_group_statistics(design: GeneralDesign) -> GroupStatistics:
    """Per-group sums of a single-factor general design (shapes as in GroupStatistics).

    Raises
    ------
    ValueError
        For a design without ``y`` or with more than one grouping factor (crossed factors
        do not factorise by group).
    """
    if len(design.factors) != 1:
        raise ValueError(
            "the integrated-out path needs exactly one grouping factor, found "
            f"{[f.name for f in design.factors]}; use parametrization='cholesky'"
        )
    if design.y is None:
        raise ValueError("design must carry an outcome y, found y=None")
    (f,) = design.factors
    X, Zr, y, g = design.X, f.Z, design.y, f.index

    def per_group(values: np.ndarray) -> np.ndarray:
        # sum rows of `values` (N, ...) within each group -> (J, ...)
        out = np.zeros((f.n_levels,) + values.shape[1:])
        np.add.at(out, g, values)
        return out

    return GroupStatistics(
        n=np.bincount(g, minlength=f.n_levels).astype(float),
        XtX=per_group(X[:, :, None] * X[:, None, :]),
        XtZ=per_group(X[:, :, None] * Zr[:, None, :]),
        ZtZ=per_group(Zr[:, :, None] * Zr[:, None, :]),
        Xty=per_group(X * y[:, None]),
        Zty=per_group(Zr * y[:, None]),
        yty=per_group(y * y),
    )


def general_marginal_loglik(
    stats: GroupStatistics, beta: pt.TensorLike, sigma: pt.TensorLike, chol: pt.TensorLike
) -> pt.TensorVariable:
    """Per-group marginal log-likelihood, shape (J,), for any p and q (module docs)."""
    n, XtX, XtZ, ZtZ, Xty, Zty, yty = (
        pt.as_tensor(np.asarray(getattr(stats, k), dtype=float))
        for k in ("n", "XtX", "XtZ", "ZtZ", "Xty", "Zty", "yty")
    )
    beta, L = pt.as_tensor(beta), pt.as_tensor(chol)
    q = int(np.asarray(stats.ZtZ).shape[-1])
    s2 = pt.sqr(sigma)
    # (J,) r'r = y'y - 2 beta'X'y + beta'X'X beta
    rr = (
        yty - 2.0 * (Xty * beta[None, :]).sum(-1) + (XtX * pt.outer(beta, beta)[None]).sum((-2, -1))
    )
    # (J, q) Z'r = Z'y - (X'Z)' beta ;  u = L' Z'r
    Zr = Zty - (XtZ * beta[None, :, None]).sum(1)
    u = Zr @ L
    # (J, q, q) A = I + L' Z'Z L / s2
    A = pt.eye(q)[None] + (L.T[None] @ ZtZ @ L[None]) / s2
    C = pt.linalg.cholesky(A)
    logdet_A = 2.0 * pt.log(pt.diagonal(C, axis1=-2, axis2=-1)).sum(-1)
    Ainv_u = pt.linalg.solve(A, u[..., None], assume_a="pos", b_ndim=2)[..., 0]
    quad = rr / s2 - (u * Ainv_u).sum(-1) / pt.sqr(s2)
    return -0.5 * (n * np.log(2.0 * np.pi) + n * pt.log(s2) + logdet_A + quad)


def general_marginal_loglik_numpy(
    design: GeneralDesign, beta: np.ndarray, sigma: float, Sigma: np.ndarray
) -> np.ndarray:
    """Reference, shape (J,): ``log N(y_j | X_j beta, s2 I + Z_j Sigma Z_j')`` from the rows,
    by SciPy's dense multivariate normal (no sums, no Woodbury)."""
    from scipy.stats import multivariate_normal

    (f,) = design.factors
    out = np.empty(f.n_levels)
    for j in range(f.n_levels):
        rows = f.index == j
        Zj = f.Z[rows]
        V = float(sigma) ** 2 * np.eye(rows.sum()) + Zj @ np.asarray(Sigma) @ Zj.T
        out[j] = multivariate_normal(design.X[rows] @ np.asarray(beta), V).logpdf(design.y[rows])
    return out
