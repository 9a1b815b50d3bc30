"""Ranks of true values among posterior draws and the test of their uniformity."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence

import arviz as az
import numpy as np
from scipy import stats

from ..checks import positive_int, probability

__all__ = ["ecdf_band", "posterior_draws", "ranks_from_draws", "uniformity_test"]


def posterior_draws(
    idata: az.InferenceData, targets: Mapping[str, Sequence], thin: int
) -> dict[str, np.ndarray]:
    """Thinned draws of the named quantities: every ``thin``-th draw of every chain, flattened.

    Parameters
    ----------
    idata : arviz.InferenceData
        With a ``posterior`` group.
    targets : mapping
        Display name -> ``(variable, selection, ...)`` as in :meth:`lmm_pymc.Truth.values`:
        the posterior variable and a coordinate selection of one scalar
        (``{"random_effect": "x|group_id"}``; ``{}`` for a scalar variable).
    thin : int
        Keep draws ``thin - 1, 2 thin - 1, ...`` of each chain.

    Raises
    ------
    ValueError
        If a variable is not in the posterior or a selection does not pick one scalar.
    """
    thin = positive_int("thin", thin)
    post = idata.posterior
    out: dict[str, np.ndarray] = {}
    for name, (var, sel, *_) in targets.items():
        if var not in post:
            raise ValueError(
                f"parameter {name!r} is not in the posterior: no variable {var!r}; found "
                f"variables {sorted(map(str, post.data_vars))}"
            )
        try:
            da = post[var].sel(dict(sel))
        except (KeyError, ValueError) as err:
            raise ValueError(
                f"parameter {name!r}: selection {dict(sel)} not in the posterior's {var!r} "
                f"(dims {list(post[var].dims)}): {err}"
            ) from None
        if set(da.dims) != {"chain", "draw"}:
            raise ValueError(
                f"parameter {name!r}: selection {dict(sel)} of {var!r} leaves dims "
                f"{list(da.dims)}, expected only chain and draw"
            )
        da = da.transpose("chain", "draw")
        out[name] = np.asarray(da.isel(draw=slice(thin - 1, None, thin))).reshape(-1)
    return out


def ranks_from_draws(truth: Mapping[str, float], draws: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Rank of every true value among its draws: ``#(draws < truth)``, in ``0..len(draws)``."""
    return {name: int(np.sum(draws[name] < truth[name])) for name in truth}


@functools.lru_cache(maxsize=64)
def ecdf_band(n: int, max_rank: int, prob: float, n_points: int) -> tuple[np.ndarray, ...]:
    """Simultaneous ``prob`` band of the ECDF of ``n`` uniform ranks in ``0..max_rank``.

    Returns ``(k, z, lower, upper)``: ranks ``r`` satisfy ``P(r < k) = z = k / (L + 1)``
    at the evaluation points ``k`` (at most ``n_points`` of ``1..L``), where the discrete
    uniform's ECDF equals the continuous uniform CDF exactly; ``lower, upper`` bound the
    ECDF there (Säilynoja, Bürkner and Vehtari 2022, ``method="optimized"``).
    """
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    k = np.unique(np.linspace(1, max_rank, min(n_points, max_rank)).round().astype(int))
    z = k / (max_rank + 1)
    lower, upper = ecdf_confidence_band(n, z, z, prob=prob, method="optimized")
    return k, z, lower, upper


def default_bins(n: int, max_rank: int) -> int:
    """Bins of a rank histogram: about 5 ranks a bin, 2 to 20 bins, at most ``L + 1``."""
    return int(max(2, min(max_rank + 1, n // 5, 20)))


def uniformity_test(
    ranks: Iterable[int],
    max_rank: int,
    *,
    prob: float = 0.95,
    n_bins: int | None = None,
    n_points: int = 100,
) -> dict[str, float | bool]:
    """Is a sample of ranks in ``0..max_rank`` uniform?

    The decision uses the ECDF simultaneous confidence band of Säilynoja, Bürkner and
    Vehtari (2022), computed by :func:`arviz.stats.ecdf_utils.ecdf_confidence_band`: the
    ranks pass when their ECDF stays inside the band at every evaluation point. Under
    uniformity that happens with probability ``prob``. A chi-square test on binned ranks
    is reported beside it.

    Returns
    -------
    dict
        ``passed``, ``prob``, ``max_ecdf_excess`` (largest distance outside the band,
        0 when inside), ``chi2``, ``chi2_p_value``, ``n_bins``, ``n``.
    """
    r = np.asarray(list(ranks), dtype=int)
    max_rank = positive_int("max_rank", max_rank)
    if r.size < 2:
        raise ValueError(f"ranks must hold at least 2 simulations, found {r.size}")
    if r.min() < 0 or r.max() > max_rank:
        raise ValueError(f"ranks must lie in 0..{max_rank}, found {r.min()}..{r.max()}")
    prob = probability("prob", prob)
    n = r.size
    k, _, lower, upper = ecdf_band(n, max_rank, prob, n_points)
    ecdf = (r[None, :] < k[:, None]).mean(axis=1)
    excess = float(np.max(np.maximum(lower - ecdf, ecdf - upper).clip(min=0.0)))
    # bins of equal probability: L + 1 rank values split into n_bins groups
    n_bins = n_bins or default_bins(n, max_rank)
    edges = np.linspace(0, max_rank + 1, n_bins + 1)
    observed, _ = np.histogram(r, bins=edges)
    expected = n * np.diff(np.floor(edges)) / (max_rank + 1)
    chi2, p_value = stats.chisquare(observed, expected * observed.sum() / expected.sum())
    return {
        "passed": excess == 0.0,
        "prob": float(prob),
        "max_ecdf_excess": excess,
        "chi2": float(chi2),
        "chi2_p_value": float(p_value),
        "n_bins": int(n_bins),
        "n": int(n),
    }
