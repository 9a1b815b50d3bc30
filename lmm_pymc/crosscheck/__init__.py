"""Cross-check the PyMC models against reference Stan programs.

* :func:`crosscheck` (:mod:`~lmm_pymc.crosscheck.logdensity`): log densities, gradients and
  name mapping at PyMC's points, for any design and a pair (:func:`available_pairs`).
* :func:`compare_posteriors` (:mod:`~lmm_pymc.crosscheck.posteriors`): PyMC's and Stan's
  NUTS posterior means within Monte Carlo error.
* :mod:`~lmm_pymc.crosscheck.pairs`: the registry of pairs (registered on first use), the
  Jacobian between their coordinates and the analytic offset of their log densities.

Examples
--------
>>> import lmm_pymc
>>> from lmm_pymc.crosscheck import available_pairs, crosscheck
>>> available_pairs()
['marginal', 'cholesky', 'lkj_corr', 'marginal_stats', 'general', 'glmm']
>>> result = crosscheck(lmm_pymc.simulate(seed=1), "cholesky")  # doctest: +SKIP
>>> result.ok  # doctest: +SKIP
True
"""

from __future__ import annotations

from .logdensity import CrossCheckResult, crosscheck, crosscheck_design, crosscheck_family
from .offsets import (
    cholesky_cov_log_jacobian,
    covariance_log_jacobian,
    lkj_log_normaliser,
    reference_offset,
)
from .pairs import (
    PAIRS,
    SHARED,
    Pair,
    available_pairs,
    expected_offset,
    get_pair,
    name_mapping,
    pairs,
    register_pair,
    select_pair,
)
from .posteriors import compare_posteriors, scalar_names

__all__ = [
    "PAIRS",
    "SHARED",
    "CrossCheckResult",
    "Pair",
    "available_pairs",
    "cholesky_cov_log_jacobian",
    "compare_posteriors",
    "covariance_log_jacobian",
    "crosscheck",
    "crosscheck_design",
    "crosscheck_family",
    "expected_offset",
    "get_pair",
    "lkj_log_normaliser",
    "name_mapping",
    "pairs",
    "reference_offset",
    "register_pair",
    "scalar_names",
    "select_pair",
]
