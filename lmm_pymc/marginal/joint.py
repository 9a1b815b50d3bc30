"""Every grouping factor's random effects integrated out at once: crossed and nested
factors whose effects are few in total.

Stack every factor's random-effects design, ``Z = [Z_1 ... Z_K]`` (N x M, ``M = sum_k J_k
q_k``, each factor's columns level by level), and their Cholesky factors in ``Lambda =
blockdiag_k (I_{J_k} kron L_k)`` (M x M), so that ``b = Lambda c`` with ``c ~ N(0, I_M)``.
With ``s2 = sigma**2`` and ``r = y - X beta`` the likelihood is exactly::

    y ~ N(X beta, V),     V = s2 I_N + Z Lambda Lambda' Z'
    A = s2 I_M + Lambda' Z'Z Lambda,     u = Lambda' Z'r                   (M x M), (M,)
    log|V|      = (N - M) log s2 + log|A|
    r' V^-1 r   = (r'r - u' A^-1 u) / s2

(Woodbury with ``B = Z Lambda``: ``V^-1 = (I - B A^-1 B') / s2`` and ``|s2 I_N + B B'| =
s2^N |I_M + B'B / s2| = s2^(N - M) |A|``; nothing needs ``Z'Z`` or ``Lambda`` to be
regular, as ``A`` is positive definite for every ``s2 > 0``: nested factors, whose
columns sum to their parent's, are covered.) Given the hyperparameters the effects are
exactly ``c | y ~ N(A^-1 u, s2 A^-1)``, that is::

    b | y, beta, sigma, L  ~  N(Lambda A^-1 u, s2 Lambda A^-1 Lambda')

The sums are taken once around a least-squares point ``beta0`` (``e0 = y - X beta0``, so
nothing of the order of ``y'y`` is subtracted), with ``d = beta - beta0``::

    r'r = e0'e0 - 2 d'X'e0 + d'X'X d,      Z'r = Z'e0 - Z'X d

One gradient is a few dense M x M factorisations (LU for ``log|A|``, Cholesky for
``A^-1 u``, and their gradients) and M x M products, whatever the number of rows: cheap up
to :data:`JOINT_LIMIT` effects (docs/measurements.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
import xarray as xr

from ..checks import positive_int
from ..design import Design, GroupingFactor
from .posterior import cholesky_draws, factor_draws, require
from .statistics import block_design

__all__ = [
    "JOINT_LIMIT",
    "JointStatistics",
    "joint_loglik_numpy",
    "joint_marginal_loglik",
    "joint_random_effects_draws",
    "joint_statistics",
]

#: Most random effects in total (``M``) that ``marginal`` integrates out jointly by
#: default: one gradient costs a few dense M x M factorisations (docs/measurements.md:
#: per-gradient time at M = 30, 60, 120, 240): up to 60 about 3x one factor integrated,
#: repaid by 2-3x fewer leapfrog steps; at 120 already ~11x, growing as M^3.
JOINT_LIMIT = 60


@dataclass(frozen=True)
class JointStatistics:
    """The sums that give the likelihood with every factor's effects integrated out
    (module docstring), in NumPy.

    Attributes
    ----------
    factors : tuple of GroupingFactor
        Every grouping factor, in the formula's order: the order of ``Z``'s column blocks.
    n_obs : int
        N, the number of rows.
    ZtZ, ZtX, XtX : arrays, shapes (M, M), (M, p), (p, p)
    beta0 : array, shape (p,)
        A least-squares point of ``y`` on ``X``.
    e0e0, Xte0, Zte0 : float and arrays, shapes (p,), (M,)
        Sums of the residual ``e0 = y - X beta0``.
    """

    factors: tuple[GroupingFactor, ...]
    n_obs: int
    ZtZ: np.ndarray
    ZtX: np.ndarray
    XtX: np.ndarray
    beta0: np.ndarray
    e0e0: float
    Xte0: np.ndarray
    Zte0: np.ndarray

    @classmethod
    def from_design(cls, design: Design) -> JointStatistics:
        """The sums of a design with an outcome (one pass over the rows, sparse ``Z``)."""
        from scipy import sparse

        if design.y is None:
            raise ValueError("design must carry an outcome y, found y=None")
        Z = sparse.hstack(
            [block_design(f.index, f.Z, f.n_levels) for f in design.factors]
        ).tocsc()
        X, y = np.asarray(design.X, dtype=float), np.asarray(design.y, dtype=float)
        beta0 = np.linalg.lstsq(X, y, rcond=None)[0]
        e0 = y - X @ beta0
        return cls(
            factors=tuple(design.factors), n_obs=int(design.n_obs),
            ZtZ=np.asarray((Z.T @ Z).todense()), ZtX=np.asarray(Z.T @ X), XtX=X.T @ X,
            beta0=beta0, e0e0=float(e0 @ e0), Xte0=X.T @ e0, Zte0=np.asarray(Z.T @ e0),
        )  # fmt: skip

    @property
    def n_effects(self) -> int:
        """M, the random effects of every factor together."""
        return int(self.ZtZ.shape[0])

    def blocks(self) -> list[slice]:
        """Each factor's columns of ``Z`` (its levels' effects, level by level)."""
        out, start = [], 0
        for f in self.factors:
            out.append(slice(start, start + f.n_levels * f.q))
            start += f.n_levels * f.q
        return out

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The sums as two inputs of the graph: ``[Z'Z | Z'X | Z'e0]`` (M, M + p + 1) and
        ``[[X'X | X'e0 | beta0], [e0'e0, N, 0 ...]]`` (p + 1, p + 2)."""
        p = self.XtX.shape[0]
        effects = np.hstack([self.ZtZ, self.ZtX, self.Zte0[:, None]])
        last = np.zeros(p + 2)
        last[:2] = self.e0e0, self.n_obs
        fixed = np.vstack([np.hstack([self.XtX, self.Xte0[:, None], self.beta0[:, None]]), last])
        return effects, fixed


def joint_statistics(design: Design, limit: int | None = None) -> JointStatistics | None:
    """The :class:`JointStatistics` of a design with two or more grouping factors and at
    most ``limit`` (default :data:`JOINT_LIMIT`) random effects in total, else None."""
    limit = JOINT_LIMIT if limit is None else limit
    M = sum(f.n_levels * f.q for f in design.factors)
    if len(design.factors) < 2 or M > limit or design.y is None:
        return None
    return JointStatistics.from_design(design)


# ------------------------------------------------------------------ the PyTensor graph
def _times_lambda(mat, chols: Sequence, factors: Sequence[GroupingFactor]):
    """``mat Lambda`` for ``mat`` (R, M): each factor's column block, (R, J, q) per level,
    times its ``L`` (q x q); a factor with q = 1 scales its columns by its sd."""
    parts, start = [], 0
    rows = mat.shape[0]
    for f, L in zip(factors, chols, strict=True):
        width = f.n_levels * f.q
        block = mat[:, start : start + width]
        if f.q == 1:
            parts.append(block * L[0, 0])
        else:
            parts.append(pt.dot(block.reshape((rows, f.n_levels, f.q)), L).reshape((rows, width)))
        start += width
    return pt.concatenate(parts, axis=1)


def joint_marginal_loglik(
    js: JointStatistics,
    beta: pt.TensorLike,
    sigma: pt.TensorLike,
    chols: Sequence[pt.TensorLike],
    *,
    data=None,
) -> pt.TensorVariable:
    """Log-likelihood (a scalar) of ``y`` with every factor's random effects integrated out
    (module docstring).

    Parameters
    ----------
    js : JointStatistics
    beta : tensor, shape (p,)
    sigma : tensor, scalar
        Residual sd.
    chols : sequence of tensors, shapes (q_k, q_k)
        Each factor's lower Cholesky factor ``L_k``, in the order of ``js.factors``.
    data : callable, optional
        ``(name, values) -> tensor`` that turns the two tables of
        :meth:`JointStatistics.tables` into model inputs (default constants).
    """
    M, p = js.n_effects, js.XtX.shape[0]
    effects, fixed = js.tables()
    if data is None:
        E, F = pt.as_tensor(effects), pt.as_tensor(fixed)
    else:
        E, F = pt.as_tensor(data("joint_effects", effects)), pt.as_tensor(data("joint_fixed", fixed))
    chols = [pt.as_tensor(L) for L in chols]
    s2 = pt.sqr(sigma)
    d = pt.as_tensor(beta) - F[:p, p + 1]  # beta - beta0
    # (,) r'r = e0'e0 - 2 d'X'e0 + d'X'X d ; (M,) Z'r = Z'e0 - Z'X d
    rr = F[p, 0] - 2.0 * pt.dot(d, F[:p, p]) + pt.dot(d, pt.dot(F[:p, :p], d))
    Zr = E[:, M + p] - pt.dot(E[:, M : M + p], d)
    # (M, M) A = s2 I + Lambda' Z'Z Lambda = s2 I + ((Z'Z Lambda)' Lambda)
    GL = _times_lambda(E[:, :M], chols, js.factors)
    A = _times_lambda(GL.T, chols, js.factors) + s2 * pt.eye(M)
    u = _times_lambda(Zr[None, :], chols, js.factors)[0]  # (M,) Lambda' Z'r
    # log|A| by LU and A^-1 u by a Cholesky solve: their gradients (A^-T; one more solve)
    # are ~60x cheaper in PyTensor's numba backend than that of pt.linalg.cholesky
    # (docs/measurements.md)
    logdet_A = pt.linalg.slogdet(A)[1]
    uAu = pt.dot(u, pt.linalg.solve(A, u, assume_a="pos"))
    n = F[p, 1]
    logdet_V = (n - M) * pt.log(s2) + logdet_A
    return -0.5 * (n * np.log(2.0 * np.pi) + logdet_V + (rr - uAu) / s2)


# ------------------------------------------------------------------ NumPy
def _lambda(js: JointStatistics, chols: Sequence[np.ndarray]) -> np.ndarray:
    """(M, M) ``Lambda = blockdiag_k (I_{J_k} kron L_k)`` at one point."""
    from scipy.linalg import block_diag

    return block_diag(*(np.kron(np.eye(f.n_levels), np.asarray(L, dtype=float))
                        for f, L in zip(js.factors, chols, strict=True)))  # fmt: skip


def joint_loglik_numpy(
    js: JointStatistics, beta: np.ndarray, sigma: float, chols: Sequence[np.ndarray]
) -> float:
    """NumPy twin of :func:`joint_marginal_loglik` at one point, written independently:
    through the precision ``P = I + Lambda'Z'Z Lambda / s2`` of ``c`` (``log|V| = N log s2 +
    log|P|``, ``r'V^-1 r = r'r / s2 - v'P^-1 v``, ``v = Lambda'Z'r / s2``) with an explicit
    ``Lambda``."""
    beta = np.asarray(beta, dtype=float)
    s2 = float(sigma) ** 2
    Lam = _lambda(js, chols)
    d = beta - js.beta0
    rr = js.e0e0 - 2.0 * d @ js.Xte0 + d @ js.XtX @ d
    v = Lam.T @ (js.Zte0 - js.ZtX @ d) / s2
    P = np.eye(js.n_effects) + Lam.T @ js.ZtZ @ Lam / s2
    _, logdet_P = np.linalg.slogdet(P)
    quad = rr / s2 - v @ np.linalg.solve(P, v)
    N = js.n_obs
    return float(-0.5 * (N * np.log(2.0 * np.pi) + N * np.log(s2) + logdet_P + quad))


def _draws_chunk(js, beta, s2, chols, eps) -> np.ndarray:
    """(s, M) draws ``b = Lambda c``, ``c = A^-1 u + sqrt(s2) C^-T eps`` (``A = C C'``), from
    ``beta`` (s, p), ``s2`` (s,), each factor's ``L`` (s, q, q) and ``eps`` (s, M)."""
    S, M = eps.shape
    Lam = np.zeros((S, M, M))
    for f, block, L in zip(js.factors, js.blocks(), chols, strict=True):
        for j in range(f.n_levels):
            at = slice(block.start + j * f.q, block.start + (j + 1) * f.q)
            Lam[:, at, at] = L
    d = beta - js.beta0[None]
    Zr = js.Zte0[None] - d @ js.ZtX.T  # (s, M)
    LamT = np.swapaxes(Lam, 1, 2)
    A = LamT @ js.ZtZ[None] @ Lam + s2[:, None, None] * np.eye(M)[None]
    u = np.einsum("smk,sk->sm", LamT, Zr)
    C = np.linalg.cholesky(A)
    mean = np.linalg.solve(A, u[..., None])[..., 0]
    # C^-T eps has covariance (C C')^-1 = A^-1
    noise = np.linalg.solve(np.swapaxes(C, 1, 2), eps[..., None])[..., 0]
    c = mean + np.sqrt(s2)[:, None] * noise
    return np.einsum("smk,sk->sm", Lam, c)


def joint_random_effects_draws(
    posterior: xr.Dataset,
    js: JointStatistics,
    *,
    seed: int | np.random.Generator | None,
    chunk_elements: int = 2_000_000,
) -> list[xr.DataArray]:
    """Exact draws of every factor's random effects, one per posterior draw:
    ``b | y, beta, sigma, L ~ N(Lambda A^-1 u, s2 Lambda A^-1 Lambda')`` (module docstring).

    ``posterior`` needs ``beta``, ``sigma`` and each factor's ``chol_cov_<key>`` (or
    ``sigs_<key>``), dims ``(chain, draw, ...)``; ``chunk_elements`` bounds draws x M x M
    held at once. Returns one ``b_<key>`` per factor, dims ``(chain, draw, <factor>,
    <factor>_effect)``, in the order of ``js.factors``.
    """
    require(posterior)
    chunk_elements = positive_int("chunk_elements", chunk_elements)
    rng = np.random.default_rng(seed)
    M, p = js.n_effects, js.XtX.shape[0]
    beta = posterior["beta"].values.reshape(-1, p)
    s2 = posterior["sigma"].values.reshape(-1) ** 2
    chols = [cholesky_draws(posterior, f.key, f.q) for f in js.factors]
    S = beta.shape[0]
    out = np.empty((S, M))
    step = max(1, chunk_elements // (M * M))
    for start in range(0, S, step):
        sl = slice(start, min(S, start + step))
        eps = rng.standard_normal((sl.stop - sl.start, M))
        out[sl] = _draws_chunk(js, beta[sl], s2[sl], [L[sl] for L in chols], eps)
    return [factor_draws(out[:, block], f, posterior)
            for f, block in zip(js.factors, js.blocks(), strict=True)]  # fmt: skip
