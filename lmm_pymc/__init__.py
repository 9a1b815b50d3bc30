"""lmm_pymc: Bayesian linear mixed models in PyMC.

Data flows one way: formula + data -> :class:`Design` -> PyMC model -> sampling ->
InferenceData -> checks (recovery, Stan cross-check, calibration). One entry point per
task: :func:`simulate`, :func:`fit`, :func:`summary`, :func:`predict`,
:func:`recovery_table`, :func:`run_sbc` and
:func:`lmm_pymc.crosscheck.crosscheck`. The tutorial's model ``y ~ 1 + x + (1 + x |
group_id)`` is the default formula and :mod:`lmm_pymc.tutorial` holds its design and values.
Binary and count outcomes (bernoulli, binomial with trials, poisson, negbinomial) and
heavy-tailed real ones (student) go through the same flow with ``family=`` and ``link=``
(:mod:`lmm_pymc.families`).

Names are imported on first use, so ``import lmm_pymc`` (and the command line's argument
parsing) does not load PyMC, PyTensor or the samplers.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING

# ArviZ 0.x announces its 1.0 refactor on the first import of each day (PyMC imports it):
# nothing a user of this package can act on, and read as a broken install.
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor",
                        category=FutureWarning)  # fmt: skip

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Design": "design",
    "GroupingFactor": "design",
    "GroupStatistics": "design",
    "GroupedStatistics": "design",
    "design_from_formula": "formula",
    "FactorTruth": "parameters",
    "Truth": "parameters",
    "correlation_matrix": "parameters",
    "covariance_matrix": "parameters",
    "Simulation": "simulation",
    "simulate": "simulation",
    "Priors": "priors",
    "Prior": "priors",
    "Normal": "priors",
    "StudentT": "priors",
    "HalfNormal": "priors",
    "HalfStudentT": "priors",
    "Exponential": "priors",
    "default_priors": "priors",
    "predict": "predictions",
    "group_log_likelihood": "predictions",
    "summary": "summaries",
    "FitSummary": "summaries",
    "PARAMETRIZATIONS": "options",
    "build_model": "models",
    "SAMPLERS": "options",
    "Diagnostics": "sampling",
    "SamplerConfig": "sampling",
    "SamplingWarning": "sampling",
    "diagnose": "sampling",
    "fit": "fitting",
    "prior_predictive": "fitting",
    "plot_recovery": "recovery",
    "recovery_table": "recovery",
    "group_statistics_from_files": "bigdata",
    "SBCConfig": "sbc",
    "SBCResult": "sbc",
    "load_sbc": "sbc",
    "run_sbc": "sbc",
}

__all__ = [
    "Design",
    "Exponential",
    "FitSummary",
    "HalfNormal",
    "HalfStudentT",
    "Normal",
    "Prior",
    "StudentT",
    "default_priors",
    "predict",
    "group_log_likelihood",
    "prior_predictive",
    "summary",
    "Diagnostics",
    "FactorTruth",
    "GroupStatistics",
    "GroupedStatistics",
    "GroupingFactor",
    "PARAMETRIZATIONS",
    "Priors",
    "SAMPLERS",
    "SBCConfig",
    "SBCResult",
    "SamplerConfig",
    "SamplingWarning",
    "Simulation",
    "Truth",
    "build_model",
    "correlation_matrix",
    "covariance_matrix",
    "design_from_formula",
    "diagnose",
    "fit",
    "group_statistics_from_files",
    "load_sbc",
    "plot_recovery",
    "recovery_table",
    "run_sbc",
    "simulate",
    "tutorial",
]


def __getattr__(name: str):
    if name == "tutorial":
        return importlib.import_module(".tutorial", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lmm_pymc' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from . import tutorial
    from .bigdata import group_statistics_from_files
    from .design import Design, GroupedStatistics, GroupingFactor, GroupStatistics
    from .fitting import fit
    from .formula import design_from_formula
    from .models import build_model
    from .options import PARAMETRIZATIONS, SAMPLERS
    from .predictions import group_log_likelihood, predict
    from .parameters import FactorTruth, Truth, correlation_matrix, covariance_matrix
    from .priors import Priors
    from .recovery import plot_recovery, recovery_table
    from .sampling import Diagnostics, SamplerConfig, SamplingWarning, diagnose
    from .sbc import SBCConfig, SBCResult, load_sbc, run_sbc
    from .simulation import Simulation, simulate
