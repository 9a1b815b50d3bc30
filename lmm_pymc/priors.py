"""Every prior of the models, in one place.

The defaults are the tutorial's Stan model::

    alpha_0, beta_0 ~ Normal(0, 10)       fixed intercept and slope
    sigma_g         ~ HalfNormal(5)       residual sd   (Stan: normal(0, 5) on <lower=0>)
    sigs            ~ HalfNormal(5)       sds of random intercepts and slopes
    R               ~ LKJ(eta = 2)        correlation of random intercepts and slopes
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Priors"]


@dataclass(frozen=True)
class Priors:
    """Prior configuration shared by every parametrization.

    Parameters
    ----------
    fixed_mu, fixed_sd : float
        ``alpha_0, beta_0 ~ Normal(fixed_mu, fixed_sd)``.
    residual_sd : float
        ``sigma_g ~ HalfNormal(residual_sd)``.
    group_sd : float
        ``sigs[k] ~ HalfNormal(group_sd)`` for the random intercept and slope sds.
    lkj_eta : float
        ``R ~ LKJ(lkj_eta)``; 1 is uniform over correlation matrices, larger values
        pull towards the identity.

    Examples
    --------
    >>> Priors(lkj_eta=1.0).lkj_eta
    1.0
    """

    fixed_mu: float = 0.0
    fixed_sd: float = 10.0
    residual_sd: float = 5.0
    group_sd: float = 5.0
    lkj_eta: float = 2.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"Priors.{name} must be a number, found {value!r}") from None
            if not np.isfinite(v):
                raise ValueError(f"Priors.{name} must be finite, found {value!r}")
            if name != "fixed_mu" and v <= 0:
                raise ValueError(f"Priors.{name} must be > 0, found {value!r}")
            object.__setattr__(self, name, v)
