"""The Laplace fast path: one grouping factor's random effects integrated out approximately,
for binary and count outcomes (``parametrization="laplace"``).

Given the other parameters, group ``j`` of the integrated factor has rows with outcome
``y_j``, offset ``o_j = X_j beta + sum_(other f) Z_f b_f`` and random design ``Z_j``
(n_j, q); its effects ``b_j ~ N(0, Sigma)``, ``Sigma = L L'``. Written in the whitened
coordinates ``b_j = L c_j`` (``c_j ~ N(0, I)``: no ``Sigma^-1``, safe as ``sigs -> 0``)::

    f_j(c)   = sum_i log p(y_i | eta_i = o_i + Z_i L c) - c'c / 2
    g_j(c)   = L' Z_j' d1 - c                            d1_i = d log p / d eta_i
    H_j(c)   = I + L' Z_j' W_j Z_j L                     W_j = diag(-d2 log p / d eta^2)
    c_hat_j  = argmax f_j,   by Newton from 0:  c <- c + H_j^-1 g_j

    log p(y_j) ~ f_j(c_hat_j) - 1/2 log|H_j(c_hat_j)|

which is the textbook ``loglik_j(b_hat) - 1/2 b_hat' Sigma^-1 b_hat - 1/2 log|Sigma|
- 1/2 log|Z_j' W_j Z_j + Sigma^-1|`` (``|H_b| = |Sigma^-1| |H_j|``; the ``2 pi`` of the
normal prior cancels that of the Gaussian integral). Groups are independent given the
other parameters: every q x q matrix is handled entry by entry on (J,) vectors, all groups
at once, as in :mod:`lmm_pymc.marginal`.

Gradients: the Newton steps run on inputs cut from the gradient (``disconnected_grad``);
one more Newton step from their result, with the gradient connected, gives ``c_hat``: at a
fixed point ``g = 0``, the step's derivative is ``H^-1 dg/dtheta``, the implicit-function
derivative of the mode. :data:`NEWTON_STEPS` is the number of cut steps (chosen by the
gradient of ``f_j`` left at the mode on simulated data: ``docs/laplace.md``). A cut step
that would move an effect of ``b_j = L c_j`` by more than :data:`MAX_STEP` on the scale
of ``eta`` is shrunk to that (a damped Newton step): it keeps a Poisson group far above
its offset from overshooting into ``exp``'s overflow and back down one unit per step; the
connected step is a plain Newton step.

The log-likelihood's derivatives in ``eta`` are written per family in closed form
(:data:`LAPLACE_LINKS`): logit for bernoulli and binomial, log for poisson and the
negative binomial (all log-concave in ``eta``: ``W >= 0``, one mode).

After sampling, ``b_j`` is drawn per posterior draw from the Gaussian approximation
``N(b_hat_j, H_b^-1) = L (c_hat_j + C_j^-T eps)``, ``H_j = C_j C_j'``
(:func:`laplace_random_effects`); the same code, run on NumPy arrays (:data:`NUMPY`),
is the NumPy twin of the graph (:func:`laplace_loglik_numpy`).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from scipy import sparse, special

from .posterior import cholesky_draws, factor_draws

__all__ = [
    "BINARY_INFORMATION",
    "LAPLACE_LINKS",
    "MAX_STEP",
    "NEWTON_STEPS",
    "check_information",
    "check_laplace_family",
    "laplace_loglik",
    "laplace_loglik_numpy",
    "laplace_mode_numpy",
    "laplace_random_effects",
]

#: Newton steps on the cut graph before the connected one (docs/laplace.md).
NEWTON_STEPS = 8
#: Largest move of a cut Newton step of any random effect ``b_j`` (on the scale of eta).
MAX_STEP = 1.0
#: The families and links the Laplace path supports (closed-form derivatives).
LAPLACE_LINKS = {"bernoulli": ("logit",), "binomial": ("logit",), "poisson": ("log",),
                 "negbinomial": ("log",)}  # fmt: skip


def check_laplace_family(family) -> None:
    """``ValueError`` naming the family and link where the Laplace path has no derivatives
    (and pointing the Gaussian to ``marginal``, which is exact for it)."""
    if family.is_gaussian:
        raise ValueError(
            "parametrization 'laplace' approximates the integral of a non-Gaussian likelihood, "
            f"found family={family.name!r}; use parametrization='marginal', exact for it"
        )
    links = LAPLACE_LINKS.get(family.name, ())
    if family.link not in links:
        supported = [f"{n} ({', '.join(ls)})" for n, ls in LAPLACE_LINKS.items()]
        raise ValueError(
            f"parametrization 'laplace' supports the families (links) {supported}, found "
            f"family={family.name!r} with link={family.link!r}; use 'cholesky'"
        )


#: Fewer binary trials than this per level (median) and the Laplace sds may sit low.
BINARY_INFORMATION = 20


def check_information(family, index: np.ndarray, n_levels: int, trials=None) -> None:
    """Warn where the approximation is known to be rough: binary outcomes with few trials per
    level of the integrated factor (at 10 rows per level the sds' posterior means sat
    0.3-0.5 posterior sd below the fully sampled ones; at 20, within 0.08: docs/laplace.md)."""
    if family.name not in ("bernoulli", "binomial"):
        return
    weights = None if trials is None else np.asarray(trials, dtype=float)
    per_level = np.bincount(index, weights=weights, minlength=n_levels)
    median = float(np.median(per_level))
    if median < BINARY_INFORMATION:
        import warnings

        warnings.warn(
            f"parametrization 'laplace' with a median of {median:g} binary trials per level "
            f"of the integrated factor (fewer than {BINARY_INFORMATION}): the approximation "
            "can pull the random-effect sds low (0.3-0.5 posterior sd at 10 per level); "
            "compare with parametrization='cholesky'",
            UserWarning,
            stacklevel=4,
        )


# ------------------------------------------------------------------ backends
def _pt_backend():
    import pytensor.tensor as pt

    def segment_sum(values, index, J):  # (N, k) -> (J, k)
        return pt.inc_subtensor(pt.zeros((J, values.shape[1]))[index], values)

    return SimpleNamespace(exp=pt.exp, log=pt.log, sigmoid=pt.sigmoid, softplus=pt.softplus,
                           gammaln=pt.gammaln, maximum=pt.maximum, stack=pt.stack,
                           take=lambda v, index: v[index], segment_sum=segment_sum,
                           columns=lambda Z, a: Z[:, a])  # fmt: skip


def _np_segment_sum(values, index, J):
    """(..., N, k) -> (..., J, k): sums over the rows of each group (a sparse product)."""
    member = sparse.csr_matrix((np.ones(index.size), (index, np.arange(index.size))),
                               shape=(J, index.size))  # fmt: skip
    if values.ndim == 2:
        return member @ values
    return np.stack([member @ v for v in values])


#: The NumPy backend: the graph's code on arrays with leading draw dimensions.
NUMPY = SimpleNamespace(exp=np.exp, log=np.log, sigmoid=special.expit,
                        softplus=lambda x: np.logaddexp(0.0, x), gammaln=special.gammaln,
                        maximum=np.maximum, stack=lambda xs, axis: np.stack(xs, axis=axis),
                        take=lambda v, index: v[..., index], segment_sum=_np_segment_sum,
                        columns=lambda Z, a: Z[:, a])  # fmt: skip


# ------------------------------------------------------------------ the family's terms
def _row_terms(xp, name: str, y, n, alpha, eta, value: bool):
    """Per row ``(log p without its constant or None, d1, w)``: ``d1 = d log p / d eta``,
    ``w = -d2 log p / d eta^2 >= 0`` (closed forms; the constants ``log C(n, y)``,
    ``-log y!`` are in :func:`_constant`)."""
    if name in ("bernoulli", "binomial"):  # logit
        p = xp.sigmoid(eta)
        ll = y * eta - n * xp.softplus(eta) if value else None
        return ll, y - n * p, n * p * (1.0 - p)
    mu = xp.exp(eta)
    if name == "poisson":  # log
        return (y * eta - mu if value else None), y - mu, mu
    # negative binomial, log link: mean mu, var mu + mu^2 / alpha
    ll = None
    if value:
        ll = (xp.gammaln(y + alpha) - xp.gammaln(alpha) + alpha * xp.log(alpha)
              - (alpha + y) * xp.log(alpha + mu) + y * eta)  # fmt: skip
    return ll, y - (y + alpha) * mu / (alpha + mu), (y + alpha) * alpha * mu / (alpha + mu) ** 2


def _constant(name: str, y: np.ndarray, trials: np.ndarray | None) -> float:
    """The log-likelihood's constant: ``sum log C(n, y)`` (binomial) or ``-sum log y!``."""
    if name in ("bernoulli", "binomial"):
        n = np.ones_like(y) if trials is None else trials
        return float(np.sum(special.gammaln(n + 1) - special.gammaln(y + 1)
                            - special.gammaln(n - y + 1)))  # fmt: skip
    return float(-np.sum(special.gammaln(y + 1)))


# ------------------------------------------------------------------ q x q algebra
def _cholesky(H):
    """Lower Cholesky factor (list of lists) of the symmetric ``H`` (entries any shape)."""
    q = len(H)
    C = [[None] * q for _ in range(q)]
    for i in range(q):
        for k in range(i + 1):
            v = H[i][k] - sum(C[i][m] * C[k][m] for m in range(k))
            C[i][k] = v**0.5 if i == k else v / C[k][k]
    return C


def _solve(C, g):
    """``(C C')^-1 g`` by forward and back substitution."""
    q = len(C)
    w = [None] * q
    for i in range(q):
        w[i] = (g[i] - sum(C[i][m] * w[m] for m in range(i))) / C[i][i]
    x = [None] * q
    for i in reversed(range(q)):
        x[i] = (w[i] - sum(C[m][i] * x[m] for m in range(i + 1, q))) / C[i][i]
    return x


class _Problem(SimpleNamespace):
    """The inner problem's data: ``xp`` (backend), ``family`` (name), ``y``, ``n``
    (trials or 1), ``alpha`` (or None), ``offset`` (..., N), ``Z`` (N, q), ``index`` (N,),
    ``J`` and ``L`` (q x q list of lists of (..., 1) or scalar entries)."""


def _terms(P, c, value: bool = False):
    """At whitened effects ``c`` (q of (..., J)): ``(sum of the log-likelihood or None,
    g, H)`` of the module docstring, ``g`` q of (..., J), ``H`` q x q of (..., J)."""
    xp, L, q = P.xp, P.L, len(c)
    b = [sum(L[a][k] * c[k] for k in range(a + 1)) for a in range(q)]  # b = L c
    eta = P.offset + sum(xp.columns(P.Z, a) * xp.take(b[a], P.index) for a in range(q))
    ll, d1, w = _row_terms(xp, P.family, P.y, P.n, P.alpha, eta, value)
    pairs = [(a, m) for a in range(q) for m in range(a + 1)]
    parts = [xp.columns(P.Z, a) * d1 for a in range(q)]
    parts += [xp.columns(P.Z, a) * xp.columns(P.Z, m) * w for a, m in pairs]
    sums = xp.segment_sum(xp.stack(parts, axis=-1), P.index, P.J)  # (..., J, q + pairs)
    S1 = [sums[..., a] for a in range(q)]  # Z'd1
    S2 = [[None] * q for _ in range(q)]  # Z'WZ, symmetric
    for i, (a, m) in enumerate(pairs):
        S2[a][m] = S2[m][a] = sums[..., q + i]
    g = [sum(L[a][k] * S1[a] for a in range(k, q)) - c[k] for k in range(q)]  # L'Z'd1 - c
    T = [[sum(S2[a][m] * L[m][k] for m in range(k, q)) for k in range(q)] for a in range(q)]
    H = [[sum(L[a][i] * T[a][k] for a in range(i, q)) + float(i == k) for k in range(q)]
         for i in range(q)]  # fmt: skip  # I + L'Z'WZ L
    return (None if ll is None else ll.sum(axis=-1)), g, H


def _newton(P, c, clip: bool):
    """One Newton step from ``c``: ``c + H^-1 g`` (each coordinate clipped to MAX_STEP)."""
    _, g, H = _terms(P, c)
    step = _solve(_cholesky(H), g)
    if clip:  # shrink the step where it moves an effect b = L c by more than MAX_STEP
        q = len(c)
        moves = [abs(sum(P.L[a][k] * step[k] for k in range(a + 1))) for a in range(q)]
        largest = moves[0]
        for m in moves[1:]:
            largest = P.xp.maximum(largest, m)
        shrink = 1.0 / P.xp.maximum(1.0, largest / MAX_STEP)
        step = [s * shrink for s in step]
    return [ck + sk for ck, sk in zip(c, step, strict=True)]


def _value(P, c):
    """``sum_j f_j(c_j) - 1/2 log|H_j(c_j)|`` (without the constant) and ``H``'s factor."""
    ll, _, H = _terms(P, c, value=True)
    C = _cholesky(H)
    # 1/2 log|H| = sum_i log C_ii;  c'c / 2
    penalty = sum((P.xp.log(C[i][i]) + 0.5 * c[i] ** 2).sum(axis=-1) for i in range(len(c)))
    return ll - penalty, C


# ------------------------------------------------------------------ the graph
def laplace_loglik(family, y, trials, offset, Z, index, n_levels, q: int, L, params: dict):
    """The Laplace log marginal likelihood (module docstring) summed over the groups, a
    PyTensor scalar whose gradient is the implicit-function one.

    Parameters: ``family`` (checked by :func:`check_laplace_family`); ``y``, ``trials``
    (or None), ``offset`` (N,), ``Z`` (N, q), ``index`` (N,) tensors; ``n_levels`` J (a
    scalar tensor: the graph does not depend on it); ``q``; ``L`` (q, q) lower Cholesky
    factor of Sigma; ``params`` the family's own (``alpha``).
    The log-likelihood's constant is not included (:func:`laplace_constant`)."""
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_grad as cut

    alpha = params.get("alpha")
    entries = [[L[a, k] if k <= a else 0.0 for k in range(q)] for a in range(q)]
    common = dict(xp=_pt_backend(), family=family.name, y=y, Z=Z, index=index, J=n_levels,
                  n=1.0 if trials is None else trials)  # fmt: skip
    frozen = _Problem(**common, offset=cut(offset), alpha=None if alpha is None else cut(alpha),
                      L=[[cut(v) if k <= a else v for k, v in enumerate(row)]
                         for a, row in enumerate(entries)])  # fmt: skip
    c = [pt.zeros((n_levels,)) for _ in range(q)]
    for _ in range(NEWTON_STEPS):
        c = _newton(frozen, c, clip=True)
    live = _Problem(**common, offset=offset, alpha=alpha, L=entries)
    c = _newton(live, [cut(ck) for ck in c], clip=False)  # implicit derivative of the mode
    value, _ = _value(live, c)
    return value


def laplace_constant(family, y: np.ndarray, trials: np.ndarray | None) -> float:
    """The log-likelihood's constant that :func:`laplace_loglik` leaves out."""
    return _constant(family.name, np.asarray(y, float), trials)


# ------------------------------------------------------------------ the NumPy twin
def _numpy_problem(family, y, trials, offset, Z, index, n_levels, L, alpha=None):
    """A :class:`_Problem` on arrays: ``offset`` (S, N), ``L`` (S, q, q), ``alpha`` (S,)."""
    offset = np.atleast_2d(np.asarray(offset, float))
    L = np.asarray(L, float).reshape(offset.shape[0], Z.shape[1], Z.shape[1])
    q = Z.shape[1]
    return _Problem(xp=NUMPY, family=family.name, y=np.asarray(y, float), Z=np.asarray(Z, float),
                    index=np.asarray(index), J=n_levels, offset=offset,
                    n=1.0 if trials is None else np.asarray(trials, float),
                    alpha=None if alpha is None else np.asarray(alpha, float).reshape(-1, 1),
                    L=[[L[:, a, k][:, None] for k in range(q)] for a in range(q)])  # fmt: skip


def laplace_mode_numpy(family, y, trials, offset, Z, index, n_levels, L, alpha=None,
                       steps: int | None = None):  # fmt: skip
    """``(c_hat (S, J, q), g (S, J, q), Cholesky factor of H)``: the graph's Newton steps
    (:data:`NEWTON_STEPS` clipped, one plain) on draws ``offset`` (S, N), ``L`` (S, q, q);
    ``g`` is the gradient of ``f_j`` left at the returned mode."""
    P = _numpy_problem(family, y, trials, offset, Z, index, n_levels, L, alpha)
    c = [np.zeros((P.offset.shape[0], n_levels)) for _ in range(Z.shape[1])]
    for _ in range(NEWTON_STEPS if steps is None else steps):
        c = _newton(P, c, clip=True)
    c = _newton(P, c, clip=False)
    _, g, H = _terms(P, c)
    return np.stack(c, axis=-1), np.stack(g, axis=-1), _cholesky(H)


def laplace_loglik_numpy(family, y, trials, offset, Z, index, n_levels, L, alpha=None,
                         steps: int | None = None) -> np.ndarray:  # fmt: skip
    """(S,) the Laplace log marginal likelihood with its constant, per draw: the NumPy twin
    of :func:`laplace_loglik` (plus :func:`laplace_constant`)."""
    P = _numpy_problem(family, y, trials, offset, Z, index, n_levels, L, alpha)
    c_hat, _, _ = laplace_mode_numpy(family, y, trials, offset, Z, index, n_levels, L, alpha,
                                     steps)  # fmt: skip
    value, _ = _value(P, [c_hat[..., a] for a in range(c_hat.shape[-1])])
    return value + laplace_constant(family, y, trials)


def laplace_random_effects(posterior, design, factor, family, *, seed,
                           chunk_elements: int = 2_000_000):  # fmt: skip
    """``b_<key>`` of the integrated ``factor``, one draw per posterior draw from
    ``N(b_hat_j, H_b^-1)`` (module docstring), dims ``(chain, draw, <factor>,
    <factor>_effect)`` as ``cholesky`` stores them; ``seed`` seeds the normal draws."""
    rng = np.random.default_rng(seed)
    q, J = factor.q, factor.n_levels
    beta = posterior["beta"].values.reshape(-1, design.X.shape[1])  # (S, p)
    L_all = cholesky_draws(posterior, factor.key, q)  # (S, q, q)
    alpha = posterior["alpha"].values.reshape(-1) if "alpha" in posterior else None
    others = [(o, posterior[f"b_{o.key}"].values.reshape(beta.shape[0], o.n_levels, o.q))
              for o in design.factors if o.name != factor.name]  # fmt: skip
    S = beta.shape[0]
    out = np.empty((S, J, q))
    step = max(1, chunk_elements // max(design.n_obs, 1))
    for start in range(0, S, step):
        sl = slice(start, min(S, start + step))
        offset = beta[sl] @ design.X.T  # (s, N)
        for o, b in others:
            offset = offset + np.einsum("nk,snk->sn", o.Z, b[sl][:, o.index, :])
        c_hat, _, C = laplace_mode_numpy(family, design.y, design.trials, offset, factor.Z,
                                         factor.index, J, L_all[sl],
                                         None if alpha is None else alpha[sl])  # fmt: skip
        eps = rng.standard_normal(c_hat.shape)
        # c = c_hat + C^-T eps ~ N(c_hat, H^-1): back substitution on C'
        x = [None] * q
        for i in reversed(range(q)):
            x[i] = (eps[..., i] - sum(C[m][i] * x[m] for m in range(i + 1, q))) / C[i][i]
        c = c_hat + np.stack(x, axis=-1)
        out[sl] = np.einsum("sak,sjk->sja", L_all[sl], c)  # b = L c
    return factor_draws(out, factor, posterior)
