"""The numbers the integrated-out likelihood is computed from, in NumPy: each group's
well-conditioned constants and a crossed design's cross-products (the maths:
:mod:`lmm_pymc.marginal`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..design import Design, GroupingFactor, GroupStatistics

__all__ = [
    "CROSS_PRODUCT_LIMIT",
    "CrossedStatistics",
    "block_design",
    "crossed_statistics",
    "stable_constants",
]


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
    the number of rows. ``position`` is the integrated factor's place among the formula's
    factors (:attr:`factors`).
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
    position: int = 0

    @classmethod
    def from_sums(
        cls,
        factor: GroupingFactor,
        others: tuple[GroupingFactor, ...],
        sums: dict[str, np.ndarray],
        *,
        shift: np.ndarray | None = None,
        position: int = 0,
    ) -> CrossedStatistics:
        """The cross-products from sums over the rows (e.g. added up block by block):
        ``n``, ``ZtZ`` of ``factor`` and ``DtD``, ``Dty``, ``yty``, ``ZtD`` (J q, P),
        ``Zty`` (J q,) of an outcome ``y - D shift`` (``shift`` (P,), default 0).

        ``e0 = y - D theta0`` is not summed row by row here: its sums follow from the
        others (``e0'e0 = y'y - 2 theta0'D'y + theta0'D'D theta0``), which cancel to the
        order of ``e0'e0``; a ``shift`` that takes the outcome's mean out (an intercept
        column times the mean) keeps that cancellation to the order of rounding of
        ``y``'s variance."""
        DtD, Dty, K = sums["DtD"], sums["Dty"], sums["ZtD"]
        theta = np.linalg.lstsq(DtD, Dty, rcond=None)[0]
        e0e0 = float(sums["yty"] - 2.0 * theta @ Dty + theta @ DtD @ theta)
        return cls(
            factor=factor, others=others, n=sums["n"], ZtZ=sums["ZtZ"],
            theta0=theta if shift is None else theta + shift, e0e0=max(e0e0, 0.0),
            Dte0=Dty - DtD @ theta, DtD=DtD,
            Zte0=(sums["Zty"] - K @ theta).reshape(factor.n_levels, factor.q), K=K,
            position=position,
        )  # fmt: skip

    @property
    def factors(self) -> tuple[GroupingFactor, ...]:
        """Every grouping factor, in the formula's order."""
        k = self.position
        return (*self.others[:k], self.factor, *self.others[k:])

    def take(self, order: np.ndarray, factor: GroupingFactor) -> CrossedStatistics:
        """The same cross-products with the integrated factor's levels at positions
        ``order`` (now ``factor``)."""
        q = self.factor.q
        rows = (np.asarray(order)[:, None] * q + np.arange(q)[None, :]).ravel()
        return dataclasses.replace(
            self, factor=factor, n=self.n[order], ZtZ=self.ZtZ[order], Zte0=self.Zte0[order],
            K=self.K[rows],
        )  # fmt: skip

    def columns(self, factor: GroupingFactor) -> slice:
        """The columns of ``D`` (and of ``theta``) of a sampled ``factor``: its levels'
        effects, level by level."""
        start = self.DtD.shape[0] - sum(o.n_levels * o.q for o in self.others)
        for o in self.others:
            if o.name == factor.name:
                return slice(start, start + o.n_levels * o.q)
            start += o.n_levels * o.q
        raise ValueError(
            f"factor must be one of the sampled factors {[o.name for o in self.others]}, "
            f"found {factor.name!r}"
        )

    def information(self, factor: GroupingFactor) -> np.ndarray:
        """(q,) how firmly the rows pin a sampled ``factor``'s effects, per effect: the median
        over its levels of ``kappa_je = (D'D)_jj s_e^2 / sigma^2``, the data's precision on
        ``b_je`` over its prior's (:data:`~lmm_pymc.marginal.plan.CENTRE_INFORMATION`).

        Both scales come from the least-squares point: ``s_e^2`` is the variance of
        ``theta0``'s effect ``e`` over the levels (its sampling noise included, so ``kappa``
        is at least about 1) and ``sigma^2 = e0'e0 / (N - P)``, which also holds the
        integrated factor's spread: ``kappa`` errs low, towards the non-centred effects."""
        cols = self.columns(factor)
        q = factor.q
        n_obs = float(np.sum(self.n))
        dof = max(n_obs - self.DtD.shape[0], 1.0)
        sigma2 = self.e0e0 / dof
        if not sigma2 > 0:
            return np.full(q, np.inf)
        levels = self.theta0[cols].reshape(factor.n_levels, q)
        s2 = levels.var(axis=0, ddof=1) if factor.n_levels > 1 else np.zeros(q)
        precision = np.diag(self.DtD)[cols].reshape(factor.n_levels, q)
        return np.median(precision, axis=0) * s2 / sigma2

    def theta(self, beta: np.ndarray, b_others: list[np.ndarray]) -> np.ndarray:
        """(S, P) ``theta`` of draws: ``beta`` (S, p) and each sampled ``b_o`` (S, J_o, q_o)."""
        S = beta.shape[0]
        return np.concatenate([beta, *(b.reshape(S, -1) for b in b_others)], axis=1)


def block_design(index: np.ndarray, Z: np.ndarray, n_levels: int):
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
        [sparse.csr_matrix(design.X), *(block_design(f.index, f.Z, f.n_levels) for f in others)]
    ).tocsr()
    y = design.y
    DtD = np.asarray((D.T @ D).todense())
    # a least-squares point (D is rank deficient: the intercept and every level's intercept)
    theta0 = np.linalg.lstsq(DtD, D.T @ y, rcond=None)[0]
    e0 = y - D @ theta0
    Za = block_design(factor.index, factor.Z, factor.n_levels)
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
        position=[f.name for f in design.factors].index(factor.name),
    )
