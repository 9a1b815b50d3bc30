"""A NumPy reference of the integrated-out likelihood, written independently of the
PyTensor graph (:mod:`lmm_pymc.marginal.graph`) so that the two check each other; also what
:mod:`lmm_pymc.predictions` evaluates per group on posterior draws."""

from __future__ import annotations

import numpy as np

from ..design import GroupStatistics

__all__ = ["marginal_loglik_numpy"]


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
