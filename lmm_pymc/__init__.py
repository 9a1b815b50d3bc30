"""lmm_pymc: Bayesian linear mixed models in PyMC.

Data flows one way: design -> simulation or observed data -> PyMC model -> fit ->
checks (recovery, Stan cross-check, calibration).
"""

from .design import EFFECT_NAMES, Design
from .fit import SAMPLERS, Diagnostics, SamplingWarning, diagnose, fit
from .models import PARAMETRIZATIONS, build_model
from .parameters import TrueParameters, correlation_matrix, covariance_matrix
from .priors import Priors
from .recovery import plot_recovery, recovery_table
from .simulate import SimulatedData, simulate

__all__ = [
    "EFFECT_NAMES",
    "PARAMETRIZATIONS",
    "SAMPLERS",
    "Design",
    "Diagnostics",
    "SamplingWarning",
    "diagnose",
    "fit",
    "plot_recovery",
    "recovery_table",
    "Priors",
    "SimulatedData",
    "TrueParameters",
    "build_model",
    "correlation_matrix",
    "covariance_matrix",
    "simulate",
]
__version__ = "0.1.0"
