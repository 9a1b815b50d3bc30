"""lmm_pymc: Bayesian linear mixed models in PyMC.

Data flows one way: design -> simulation or observed data -> PyMC model -> fit ->
checks (recovery, Stan cross-check, calibration).
"""

from .bigdata import GroupedStatistics, group_statistics_from_files
from .design import EFFECT_NAMES, Design
from .fit import SAMPLERS, Diagnostics, SamplingWarning, diagnose, fit
from .formula import GeneralDesign, design_from_formula
from .general import GeneralSimulation, GeneralTruth, simulate_from_formula
from .general_models import GENERAL_PARAMETRIZATIONS, build_general_model, fit_formula
from .general_recovery import general_recovery_table
from .models import PARAMETRIZATIONS, build_model
from .parameters import TrueParameters, correlation_matrix, covariance_matrix
from .priors import Priors
from .recovery import plot_recovery, recovery_table
from .sbc import SBCConfig, SBCResult, load_sbc, run_sbc
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
    "SBCConfig",
    "SBCResult",
    "load_sbc",
    "run_sbc",
    "GroupedStatistics",
    "group_statistics_from_files",
    "GENERAL_PARAMETRIZATIONS",
    "GeneralDesign",
    "GeneralSimulation",
    "GeneralTruth",
    "build_general_model",
    "design_from_formula",
    "fit_formula",
    "general_recovery_table",
    "simulate_from_formula",
]
__version__ = "0.1.0"
