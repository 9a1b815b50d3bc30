"""How well a fit recovers the true parameters: a table and a plot."""

from __future__ import annotations

from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from .parameters import TrueParameters

__all__ = ["recovery_table", "plot_recovery", "true_values"]

_COLUMNS = [
    "parameter",
    "true",
    "mean",
    "sd",
    "hdi_low",
    "hdi_high",
    "covered",
    "r_hat",
    "ess_bulk",
]


def summarize_draws(
    parameter: str, values: np.ndarray, true: float, *, hdi_prob: float
) -> dict[str, object]:
    """One recovery-table row from the (chain, draw) draws of a scalar and its true value."""
    lo, hi = az.hdi(values.ravel(), hdi_prob=hdi_prob)
    return {
        "parameter": parameter,
        "true": true,
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)),
        "hdi_low": float(lo),
        "hdi_high": float(hi),
        "covered": bool(lo <= true <= hi),
        "r_hat": float(az.rhat(values)),
        "ess_bulk": float(az.ess(values, method="bulk")),
    }


def recovery_frame(rows: list[dict[str, object]], hdi_prob: float) -> pd.DataFrame:
    """Rows of :func:`summarize_draws` as the recovery table, with its HDI probability."""
    table = pd.DataFrame(rows, columns=_COLUMNS)
    table.attrs["hdi_prob"] = hdi_prob
    return table


def true_values(
    truth: TrueParameters, *, random_effects: bool = False
) -> dict[str, tuple[str, dict, float]]:
    """Map display names to (variable, coordinate selection, true value).

    Display names follow ArviZ's summary: ``sigs[intercept]``, ``random_group[1, x]``.
    """
    out: dict[str, tuple[str, dict, float]] = {
        "alpha_0": ("alpha_0", {}, float(truth.beta[0])),
        "beta_0": ("beta_0", {}, float(truth.beta[1])),
        "sigma_g": ("sigma_g", {}, truth.sigma),
    }
    for k, name in enumerate(truth.random_names):
        out[f"sigs[{name}]"] = ("sigs", {"random_effect": name}, float(truth.sigmas[k]))
    out["rho"] = ("rho", {}, truth.rho)
    if random_effects:
        for j, label in enumerate(truth.group_labels):
            for k, name in enumerate(truth.random_names):
                out[f"random_group[{label}, {name}]"] = (
                    "random_group",
                    {"group": label, "random_effect": name},
                    float(truth.b[j, k]),
                )
    return out


def recovery_table(
    idata: az.InferenceData,
    truth: TrueParameters,
    *,
    hdi_prob: float = 0.94,
    random_effects: bool = False,
) -> pd.DataFrame:
    """One row per parameter: true value, posterior mean and sd, HDI, coverage, r_hat, ESS.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit from :func:`lmm_pymc.fit` (any parametrization: the names are shared).
    truth : TrueParameters
        The values the data were simulated from.
    hdi_prob : float
        Probability mass of the highest-density interval (default 0.94, ArviZ's).
    random_effects : bool
        Also list every group's random intercept and slope.

    Returns
    -------
    pandas.DataFrame
        Columns ``parameter, true, mean, sd, hdi_low, hdi_high, covered, r_hat, ess_bulk``.
    """
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must be in (0, 1), found {hdi_prob!r}")
    post = idata.posterior
    rows = []
    for display, (var, sel, true) in true_values(truth, random_effects=random_effects).items():
        if var not in post:
            raise ValueError(
                f"idata.posterior has no variable {var!r}; found {list(post.data_vars)}"
            )
        draws = post[var].sel(sel) if sel else post[var]
        rows.append(summarize_draws(display, draws.values, true, hdi_prob=hdi_prob))
    return recovery_frame(rows, hdi_prob)


def plot_recovery(
    idata: az.InferenceData,
    truth: TrueParameters,
    path: str | Path | None = None,
    *,
    hdi_prob: float = 0.94,
):
    """Posterior histograms of the scalar parameters with the true value and the HDI marked.

    Returns the matplotlib figure; with ``path`` it is also written to that file.
    """
    import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves

    table = recovery_table(idata, truth, hdi_prob=hdi_prob).set_index("parameter")
    specs = true_values(truth)
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), constrained_layout=True)
    for ax, (display, (var, sel, true)) in zip(axes.flat, specs.items(), strict=False):
        values = (idata.posterior[var].sel(sel) if sel else idata.posterior[var]).values.ravel()
        ax.hist(values, bins=60, density=True, color="#8fb3d9", edgecolor="none")
        row = table.loc[display]
        ax.hlines(
            0,
            row["hdi_low"],
            row["hdi_high"],
            color="black",
            lw=4,
            label=f"{int(hdi_prob * 100)}% HDI",
        )
        ax.axvline(true, color="#d62728", lw=2, label="true value")
        ax.axvline(row["mean"], color="black", lw=1, ls="--", label="posterior mean")
        ax.set_title(display)
        ax.set_yticks([])
    for ax in list(axes.flat)[len(specs) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Posterior vs truth ({idata.attrs.get('parametrization', 'fit')})")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
