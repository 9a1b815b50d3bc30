"""How well a fit of a general (formula) model recovers the values it was simulated from."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd

from .general import GeneralTruth
from .recovery import recovery_frame, summarize_draws

__all__ = ["general_recovery_table"]


def _draws(post, display: str) -> np.ndarray:
    """(chain, draw) values of ``beta[x]``, ``sigma_g``, ``sigs[x|g]`` or ``R[a|g, b|g]``."""
    if display == "sigma_g":
        return post["sigma_g"].values
    var, _, rest = display.partition("[")
    labels = [s.strip() for s in rest.rstrip("]").split(", ")] if var == "R" else [rest[:-1]]
    if var == "beta":
        return post["beta"].sel(fixed_effect=labels[0]).values
    if var == "sigs":
        return post["sigs"].sel(random_effect=labels[0]).values
    return post["R"].sel(random_effect=labels[0], random_effect_=labels[1]).values


def general_recovery_table(
    idata: az.InferenceData, truth: GeneralTruth, *, hdi_prob: float = 0.94
) -> pd.DataFrame:
    """One row per scalar parameter, named by the formula's terms.

    Rows: ``beta[<fixed effect>]``, ``sigma_g``, ``sigs[<effect>|<factor>]`` and the
    correlations ``R[<a>|<factor>, <b>|<factor>]`` of every correlated factor; columns
    ``parameter, true, mean, sd, hdi_low, hdi_high, covered, r_hat, ess_bulk`` as
    :func:`lmm_pymc.recovery_table`.

    Parameters
    ----------
    idata : arviz.InferenceData
        From :func:`lmm_pymc.general_models.fit_formula` (any parametrization).
    truth : GeneralTruth
        From :func:`lmm_pymc.general.simulate_from_formula`.
    hdi_prob : float
        Mass of the highest-density interval.
    """
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must be in (0, 1), found {hdi_prob!r}")
    post = idata.posterior
    for name in ("beta", "sigma_g", "sigs", "R"):
        if name not in post:
            raise ValueError(
                f"idata.posterior has no variable {name!r} (a fit of the general model "
                f"expected); found {list(post.data_vars)}"
            )
    rows = []
    for display, true in truth.by_name().items():
        values = _draws(post, display)
        rows.append(summarize_draws(display, values, true, hdi_prob=hdi_prob))
    return recovery_frame(rows, hdi_prob)
