"""The fast path: one grouping factor's random effects integrated out, from per-group sums
(crossed and nested factors with few effects in total: all of them at once,
:mod:`lmm_pymc.marginal.joint`).

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

from .draws import add_random_effects, random_effects_draws
from .graph import ColumnInput, crossed_marginal_loglik, marginal_loglik, residual_marginal_loglik
from .joint import (
    JOINT_LIMIT,
    JointStatistics,
    joint_loglik_numpy,
    joint_marginal_loglik,
    joint_random_effects_draws,
    joint_statistics,
)
from .laplace import (
    check_information,
    check_laplace_family,
    laplace_constant,
    laplace_loglik,
    laplace_loglik_numpy,
    laplace_random_effects,
)
from .plan import MarginalPlan, integrated_factor
from .reference import marginal_loglik_numpy
from .statistics import (
    CROSS_PRODUCT_LIMIT,
    CrossedStatistics,
    crossed_statistics,
    stable_constants,
)

__all__ = [
    "CROSS_PRODUCT_LIMIT",
    "ColumnInput",
    "CrossedStatistics",
    "JOINT_LIMIT",
    "JointStatistics",
    "MarginalPlan",
    "add_random_effects",
    "check_information",
    "check_laplace_family",
    "crossed_marginal_loglik",
    "crossed_statistics",
    "integrated_factor",
    "joint_loglik_numpy",
    "joint_marginal_loglik",
    "joint_random_effects_draws",
    "joint_statistics",
    "laplace_constant",
    "laplace_loglik",
    "laplace_loglik_numpy",
    "laplace_random_effects",
    "marginal_loglik",
    "marginal_loglik_numpy",
    "random_effects_draws",
    "residual_marginal_loglik",
    "stable_constants",
]
