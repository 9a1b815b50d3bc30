"""Fixed effects sampled on centred columns: the same model, a better geometry.

With an uncentred predictor (a year near 96, an age of 8-14, a height in metres) the
intercept is the outcome at x = 0, far outside the data: the likelihood pins down the
outcome at the data's centre, ``beta_0 + sum_k m_k beta_k`` (m_k the mean of column k), and
leaves the intercept and the slopes on a narrow ridge (posterior correlation near -1),
which a diagonal mass matrix cannot follow (r_hat 1.7 on grouseticks with an unscaled
year). brms samples the intercept of centred columns for this reason; here the same is a
transform of ``beta`` (PyMC's value transform), so the model, its priors and every named result stay as they are:

    sampled:  beta_c = A beta,   beta_c[i] = beta[i] + sum_{k != i} m_k beta[k]
                                 beta_c[k] = beta[k]                 (k != i)
    model:    beta   = A^-1 beta_c,   beta[i] = beta_c[i] - sum_{k != i} m_k beta_c[k]

with ``i`` the intercept's column. A is unit triangular: |det A| = 1, the log-Jacobian is 0
and the posterior of ``beta`` is unchanged; only the coordinates the sampler moves in (and
adapts its mass matrix to) are the centred ones. The means are a row of ``beta``'s own
model input (``prior_beta``), so one compiled log density serves every data set
(:mod:`lmm_pymc.compiled`). A design without an
intercept, or with the intercept only, is sampled as it is.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform

from .design import Design, GroupedStatistics

__all__ = ["CentredIntercept", "column_means", "centred_transform"]

def column_means(data: Design | GroupedStatistics) -> tuple[int, np.ndarray] | None:
    """``(i, m)``: the intercept's column ``i`` and every column's mean (``m[i] = 0``), from
    the rows or from the per-group sums; None without an intercept or with nothing else."""
    names = tuple(data.fixed_names)
    if "intercept" not in names or len(names) < 2:
        return None
    i = names.index("intercept")
    if isinstance(data, GroupedStatistics):
        sums = data.statistics.XtX.sum(axis=0)[i]  # row i: sum over rows of 1 * x_k
        if not sums[i] > 0:
            return None
        means = sums / sums[i]
    else:
        means = np.asarray(data.X, dtype=float).mean(axis=0)
    means = np.array(means, dtype=float)
    means[i] = 0.0
    return i, means


class CentredIntercept(Transform):
    """``beta -> beta_c``: the intercept moved to the columns' means (module docstring).
    ``values``: the means' numbers; the model's transform is ``bind(rows)`` on the rows of
    ``beta``'s own input that hold them (:func:`lmm_pymc.priors.builders.variable`)."""

    name = "centred"
    ndim_supp = 1

    def __init__(self, intercept: int, values: np.ndarray, means=None):
        self.intercept = int(intercept)
        self.values = np.asarray(values, dtype=float)
        self.means = means

    @property
    def rows(self) -> np.ndarray:
        """The numbers the model input holds: one row, the means."""
        return self.values[None, :]

    def bind(self, rows) -> CentredIntercept:
        """This transform on the model input's ``rows`` (a (1, p) tensor)."""
        return CentredIntercept(self.intercept, self.values, rows[0])

    def _shift(self, value, sign: float):
        if self.means is None:
            raise ValueError("CentredIntercept must be bound to its model input (bind) first")
        i = self.intercept
        return pt.set_subtensor(value[..., i], value[..., i] + sign * (value * self.means).sum(-1))

    def forward(self, value, *inputs):
        return self._shift(value, 1.0)

    def backward(self, value, *inputs):  # m[i] = 0: m . beta_c = m . beta
        return self._shift(value, -1.0)

    def log_jac_det(self, value, *inputs):
        return pt.zeros_like(value)  # unit triangular

    def forward_values(self, beta: np.ndarray) -> np.ndarray:
        """NumPy twin of :meth:`forward`."""
        out = np.array(beta, dtype=float, copy=True)
        out[..., self.intercept] += out @ self.values
        return out


def centred_transform(data: Design | GroupedStatistics) -> CentredIntercept | None:
    """The (unbound) transform of ``beta`` for ``data``, or None where nothing is centred
    (:func:`column_means`)."""
    found = column_means(data)
    return None if found is None else CentredIntercept(*found)
