"""How well a fit recovers the values a data set was simulated from: a table and a plot,
for any formula (true values addressed by the posterior's own names and coords)."""

from __future__ import annotations

from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from .checks import probability
from .files import atomic_path
from .parameters import Truth

__all__ = ["plot_recovery", "recovery_table"]

_COLUMNS = ["parameter", "true", "mean", "sd", "hdi_low", "hdi_high", "covered", "r_hat",
            "ess_bulk"]  # fmt: skip


def _draws(idata: az.InferenceData, var: str, sel: dict) -> np.ndarray:
    post = idata.posterior
    if var not in post:
        raise ValueError(f"idata.posterior has no variable {var!r}; found {list(post.data_vars)}")
    return (post[var].sel(sel) if sel else post[var]).values


def recovery_table(
    idata: az.InferenceData,
    truth: Truth,
    *,
    hdi_prob: float = 0.94,
    random_effects: bool = False,
) -> pd.DataFrame:
    """One row per parameter: true value, posterior mean and sd, HDI, coverage, r_hat, ESS.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit from :func:`lmm_pymc.fit` (any parametrization: the names are shared).
    truth : Truth
        The values the data were simulated from (:func:`lmm_pymc.simulate`).
    hdi_prob : float
        Probability mass of the highest-density interval (default 0.94, ArviZ's).
    random_effects : bool
        Also list every level's random effects.

    Returns
    -------
    pandas.DataFrame
        Columns ``parameter, true, mean, sd, hdi_low, hdi_high, covered, r_hat, ess_bulk``;
        rows ``beta[...]``, ``sigma``, ``sigs[...]``, ``R[...]`` (see :meth:`Truth.values`).
    """
    hdi_prob = probability("hdi_prob", hdi_prob)
    rows = []
    for display, (var, sel, true) in truth.values(random_effects=random_effects).items():
        values = _draws(idata, var, sel)
        lo, hi = az.hdi(values.ravel(), hdi_prob=hdi_prob)
        rows.append(
            {
                "parameter": display,
                "true": true,
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)),
                "hdi_low": float(lo),
                "hdi_high": float(hi),
                "covered": bool(lo <= true <= hi),
                "r_hat": float(az.rhat(values)),
                "ess_bulk": float(az.ess(values, method="bulk")),
            }
        )
    table = pd.DataFrame(rows, columns=_COLUMNS)
    table.attrs["hdi_prob"] = hdi_prob
    return table


def plot_recovery(
    idata: az.InferenceData,
    truth: Truth,
    path: str | Path | None = None,
    *,
    hdi_prob: float = 0.94,
):
    """Posterior histograms of the scalar parameters with the true value and the HDI marked.

    Returns the matplotlib figure; with ``path`` it is also written to that file.
    """
    import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves

    table = recovery_table(idata, truth, hdi_prob=hdi_prob).set_index("parameter")
    specs = truth.values()
    ncol = 3
    nrow = -(-len(specs) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(11, 3 * nrow), constrained_layout=True,
                             squeeze=False)  # fmt: skip
    for ax, (display, (var, sel, true)) in zip(axes.flat, specs.items(), strict=False):
        values = _draws(idata, var, sel).ravel()
        ax.hist(values, bins=60, density=True, color="#8fb3d9", edgecolor="none")
        row = table.loc[display]
        ax.hlines(0, row["hdi_low"], row["hdi_high"], color="black", lw=4,
                  label=f"{int(hdi_prob * 100)}% HDI")  # fmt: skip
        ax.axvline(true, color="#d62728", lw=2, label="true value")
        ax.axvline(row["mean"], color="black", lw=1, ls="--", label="posterior mean")
        ax.set_title(display, fontsize=9)
        ax.set_yticks([])
    for ax in list(axes.flat)[len(specs) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Posterior vs truth ({idata.attrs.get('parametrization', 'fit')})")
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    return fig
