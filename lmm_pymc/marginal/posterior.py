"""What the exact draws of integrated effects read from a posterior and write back to it
(:mod:`lmm_pymc.marginal.draws`, :mod:`lmm_pymc.marginal.joint`): each draw's Cholesky
factor of a factor's covariance (from ``chol_cov_<key>`` or ``sigs_<key>``, stored by
every parametrization) and a factor's draws as ``b_<key>``."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["cholesky_draws", "factor_draws", "require"]


def require(posterior: xr.Dataset, names=("beta", "sigma")) -> None:
    """``ValueError`` naming the first of ``names`` that ``posterior`` lacks."""
    for name in names:
        if name not in posterior:
            raise ValueError(
                f"posterior must contain {name!r} to draw the random effects, found variables "
                f"{sorted(posterior.data_vars)}"
            )


def factor_draws(values: np.ndarray, f, posterior: xr.Dataset) -> xr.DataArray:
    """A factor's draws, (S, J q) or (S, J, q) in the posterior's (chain, draw) order, as
    ``b_<key>`` with dims ``(chain, draw, <factor>, <factor>_effect)``."""
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    return xr.DataArray(
        values.reshape(n_chain, n_draw, f.n_levels, f.q),
        dims=("chain", "draw", f.level_dim, f.effect_dim),
        coords={
            "chain": posterior.coords["chain"].values,
            "draw": posterior.coords["draw"].values,
            f.level_dim: list(f.labels),
            f.effect_dim: list(f.terms),
        },
        name=f"b_{f.key}",
    )


def cholesky_draws(posterior: xr.Dataset, key: str, q: int) -> np.ndarray:
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
