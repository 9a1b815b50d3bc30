"""Weakly informative priors on the data's scale (:func:`default_priors`; the formulas are
in :mod:`lmm_pymc.priors`)."""

from __future__ import annotations

import math

import numpy as np

from .spec import HalfNormal, Normal, Prior, Priors

__all__ = ["SCALE", "default_priors"]

#: The scale of the data-scale defaults (brms, rstanarm).
SCALE = 2.5


def _moments(data) -> tuple[float, float, np.ndarray, np.ndarray, list]:
    """Means and second moments ``(m_y, v_y, m_X, q_X, [(m_Z, q_Z) per factor])`` of a
    design or of per-group sums (whose means come through the ``intercept`` column)."""
    from ..design import GroupedStatistics

    if isinstance(data, GroupedStatistics):
        if "intercept" not in data.fixed_names:
            raise ValueError(
                "data-scale default priors from per-group sums need an intercept column, found "
                f"fixed effects {list(data.fixed_names)}; pass priors= explicitly"
            )
        s, i = data.statistics, data.fixed_names.index("intercept")
        n = float(np.sum(s.n))
        zs = [_sampled_moments(data.crossed, f, i, n) if f.name != data.factor.name
              else (s.XtZ[:, i, :].sum(0) / n, np.einsum("jkk->k", s.ZtZ) / n)
              for f in data.factors]  # fmt: skip
        m_x, q_x = s.XtX[:, i, :].sum(0) / n, np.einsum("jkk->k", s.XtX) / n
        return float(np.sum(s.Xty[:, i])) / n, float(np.sum(s.yty)) / n, m_x, q_x, zs
    y, X = data.y, data.X
    zs = [(f.Z.mean(0), (f.Z**2).mean(0)) for f in data.factors]
    return float(y.mean()), float((y**2).mean()), X.mean(0), (X**2).mean(0), zs


def _sampled_moments(crossed, factor, intercept: int, n: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and mean square of a sampled factor's effect columns, from the cross-products
    ``D'D`` of crossed factors' sums (its row ``intercept`` sums every column of ``D``)."""
    cols = crossed.columns(factor)
    sums = crossed.DtD[intercept, cols].reshape(factor.n_levels, factor.q).sum(0)
    squares = np.diagonal(crossed.DtD)[cols].reshape(factor.n_levels, factor.q).sum(0)
    return sums / n, squares / n


def _spread(mean: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The sd of each column, or for a constant column its root mean square (1 for a column
    of zeros, which carries no scale)."""
    var = np.maximum(second - mean**2, 0.0)
    constant = var <= 1e-12 * np.maximum(second, 1e-300)
    spread = np.where(constant, np.sqrt(np.maximum(second, 0.0)), np.sqrt(var))
    return np.where(spread > 0, spread, 1.0)


def _link_scale(data, family) -> tuple[float, float]:
    """``(centre, unit)`` of a non-Gaussian outcome's priors on its link's scale: the link of
    the mean response (successes over trials for a binomial, kept inside (0, 1) by half a
    success either side) and 1; an identity link keeps the outcome's mean and sd."""
    y = np.asarray(data.y, dtype=float)
    if family.link == "identity":
        return float(y.mean()), float(y.std())
    if family.needs_trials:
        mean = (y.sum() + 0.5) / (np.sum(data.trials) + 1.0)
    elif family.link == "log":
        mean = max(float(y.mean()), 0.5 / y.size)  # counts all 0 but a few
    else:
        mean = float(np.clip(y.mean(), 0.5 / y.size, 1 - 0.5 / y.size))
    return family.link_of_mean(mean), 1.0


def default_priors(data, family=None) -> Priors:
    """Weakly informative priors on the data's scale (module docstring) for a
    :class:`~lmm_pymc.design.Design` with outcome or :class:`GroupedStatistics`; the
    intercepts are the effects named ``intercept``. A ``family`` (a name such as
    ``"bernoulli"`` or a :class:`lmm_pymc.families.Family`) without a residual sd ``sigma``
    (binary and count outcomes) puts them on its link's scale; the Student-t's are the
    Gaussian's."""
    from ..families import family as as_family

    family = as_family(family)
    m_y, q_y, m_x, q_x, zs = _moments(data)
    s_y = float(np.sqrt(max(q_y - m_y**2, 0.0)))
    if "sigma" not in family.parameters:  # no residual sd: the link's scale
        m_y, s_y = _link_scale(data, family)
    if not s_y > 0:
        raise ValueError(f"outcome must vary to set priors from its scale, found sd {s_y}")
    factors = data.factors
    names = data.fixed_names
    s_x = _spread(m_x, q_x)
    slopes = [k for k, name in enumerate(names) if name != "intercept"]
    terms: dict[str, Prior] = {f"beta[{names[k]}]": Normal(0.0, SCALE * s_y / s_x[k])
                               for k in slopes}  # fmt: skip
    if "intercept" in names:  # y at x = 0: its spread covers the slopes' priors at the x means
        reach = math.hypot(SCALE * s_y, *(SCALE * s_y * m_x[j] / s_x[j] for j in slopes))
        terms["beta[intercept]"] = Normal(m_y, reach)
    for f, (m_z, q_z) in zip(factors, zs, strict=True):
        s_z = _spread(m_z, q_z)
        for k, (term, effect) in enumerate(zip(f.terms, f.effect_names, strict=True)):
            scale = 1.0 if effect == "intercept" else s_z[k]
            terms[f"sigs[{term}]"] = HalfNormal(SCALE * s_y / scale)
    return Priors(fixed=Normal(0.0, SCALE * s_y), sigs=HalfNormal(SCALE * s_y),
                  sigma=HalfNormal(SCALE * s_y), terms=terms)  # fmt: skip
