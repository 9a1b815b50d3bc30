"""PyMC's NUTS against Stan's NUTS on the same data: posterior means within Monte Carlo
error, in the package's names (``beta[intercept]``, ``sigma``, ``sigs[x|group_id]``,
``R[intercept|group_id, x|group_id]``)."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from ..design import Design
from ..priors import Priors
from ..stan.loading import sample_pystan
from .logdensity import crosscheck_design
from .pairs import select_pair

if TYPE_CHECKING:  # pragma: no cover
    from ..simulation import Simulation

__all__ = ["compare_posteriors", "scalar_names"]


def scalar_names(design: Design) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(display name, variable, index)`` of every scalar both posteriors hold: each
    ``beta``, ``sigma``, each ``sigs`` and the upper triangle of each correlated factor's
    block of ``R``."""
    out = [(f"beta[{n}]", "beta", (i,)) for i, n in enumerate(design.fixed_names)]
    out.append(("sigma", "sigma", ()))
    out += [(f"sigs[{t}]", "sigs", (i,)) for i, t in enumerate(design.terms)]
    start = 0
    for f in design.factors:
        if f.has_correlation:
            for i in range(f.q):
                for k in range(i + 1, f.q):
                    a, b = start + i, start + k
                    name = f"R[{design.terms[a]}, {design.terms[b]}]"
                    out.append((name, "R", (a, b)))
        start += f.q
    return out


def _mcse_mean(draws: np.ndarray) -> float:
    """ArviZ's Monte Carlo standard error of the mean of (chain, draw) draws."""
    data = xr.Dataset({"v": (("chain", "draw"), np.asarray(draws, dtype=float))})
    return float(az.mcse(data, method="mean")["v"].values)


def compare_posteriors(
    data: Design | Simulation,
    parametrization: str | None = None,
    *,
    program: str | None = None,
    priors: Priors | None = None,
    stan_priors: Priors | None = None,
    draws: int = 300,
    tune: int = 300,
    chains: int = 2,
    seed: int = 1,
    z: float = 4.0,
    idata: az.InferenceData | None = None,
) -> pd.DataFrame:
    """Posterior means of every scalar from PyMC's NUTS (:func:`lmm_pymc.fit`) and Stan's
    NUTS (PyStan) on the pair's program (chosen as in :func:`crosscheck`).

    A scalar agrees when ``|mean_pymc - mean_stan| < z * sqrt(mcse_pymc^2 + mcse_stan^2)``
    (ArviZ's MCSE of the mean). ``idata``: a PyMC posterior of the same data to reuse
    instead of fitting (``draws``, ``tune`` and ``chains`` then apply to Stan only).

    Returns
    -------
    pandas.DataFrame
        One row per scalar (:func:`scalar_names`): ``parameter, mean_pymc, mean_stan,
        diff, mcse_pymc, mcse_stan, tolerance, agree``.
    """
    from ..fitting import fit
    from ..sampling import SamplingWarning

    design = crosscheck_design(data)
    pair = select_pair(design, parametrization, program)
    priors = Priors() if priors is None else priors
    stan_priors = priors if stan_priors is None else stan_priors
    if not z > 0:
        raise ValueError(f"z must be > 0, found {z!r}")
    if idata is None:
        with warnings.catch_warnings():
            # a short run's r_hat and divergences: the check's verdict is the comparison of
            # the means within their Monte Carlo errors, below
            warnings.simplefilter("ignore", SamplingWarning)
            idata = fit(design, parametrization=pair.parametrization, priors=priors, draws=draws,
                        tune=tune, chains=chains, cores=1, random_seed=seed,
                        progressbar=False)  # fmt: skip
    stan_draws = sample_pystan(pair.program, pair.data(design, stan_priors, sampling=True),
                               draws=draws, tune=tune, chains=chains, seed=seed)  # fmt: skip
    stan_post = pair.names(design).package_values(stan_draws)
    rows = []
    for label, name, index in scalar_names(design):
        a = idata.posterior[name].values[(slice(None), slice(None), *index)]
        b = stan_post[name][(slice(None), slice(None), *index)]
        mcse_a, mcse_b = _mcse_mean(a), _mcse_mean(b)
        diff = float(a.mean() - b.mean())
        tol = z * math.hypot(mcse_a, mcse_b)
        rows.append({"parameter": label, "mean_pymc": float(a.mean()),
                     "mean_stan": float(b.mean()), "diff": diff, "mcse_pymc": mcse_a,
                     "mcse_stan": mcse_b, "tolerance": tol, "agree": abs(diff) < tol})  # fmt: skip
    return pd.DataFrame(rows)
