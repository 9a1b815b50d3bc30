"""Stan side of the package: engines, the reference programs with their data, and names.

* :mod:`lmm_pymc.stan.loading`: :func:`load_model` (compiles once per program, data,
  engine and seed, and caches) and :func:`sample_pystan`.
* :mod:`lmm_pymc.stan.policy`: which engine runs here (:func:`resolve_engine`,
  :func:`available_engines`): PyStan, which compiles offline, or BridgeStan where a source
  tree or a prebuilt ``model_lib`` of the same release exists.
* :mod:`lmm_pymc.stan.engine`: the interface of an engine (:class:`StanEngine`: log
  densities, gradients, transforms) and :func:`check_program`.
* :mod:`lmm_pymc.stan.pystan_engine`: :class:`PyStanEngine` (PyStan 3 / httpstan).
* :mod:`lmm_pymc.stan.bridgestan_engine`: :class:`BridgeStanEngine` (a compiled model
  library) and the cache of libraries compiled here (:func:`cache_dir`).
* :mod:`lmm_pymc.stan.bridgestan_tree`: where BridgeStan would compile
  (:func:`find_bridgestan_source` says why not) and which releases agree.
* :mod:`lmm_pymc.stan.programs`: :func:`stan_file` and the data dictionaries of the
  reference programs built from a :class:`~lmm_pymc.design.Design` and
  :class:`~lmm_pymc.priors.Priors` (:func:`stan_data`).
* :mod:`lmm_pymc.stan.names`: Stan's flat names <-> arrays and the registry between
  Stan's names and the package's (:data:`TUTORIAL_NAMES`, :func:`general_names`).

Examples
--------
>>> from lmm_pymc import simulate
>>> data = stan_data(simulate(seed=1).design)
>>> sorted(data)[:4]
['N', 'N_group', 'fixed_mu', 'fixed_sd']
>>> engine = load_model("cholesky", data, engine="pystan")  # doctest: +SKIP
"""

from __future__ import annotations

from ..errors import StanUnavailableError
from .bridgestan_engine import BridgeStanEngine, cache_dir
from .bridgestan_tree import BridgeStanSource, bridgestan_source_available, find_bridgestan_source
from .engine import ENGINES, StanEngine, check_program
from .loading import load_model, sample_pystan
from .names import (
    TUTORIAL_NAMES,
    NameMap,
    flatten,
    general_names,
    glmm_names,
    marginal_stats_names,
    unflatten,
)
from .policy import available_engines, resolve_engine
from .programs import (
    GENERAL,
    MARGINAL_STATS,
    TUTORIAL,
    general_data,
    glmm_data,
    is_tutorial_design,
    marginal_stats_data,
    stan_data,
    stan_file,
    stan_reference_dir,
    tutorial_data,
    tutorial_prior_data,
)
from .pystan_engine import PyStanEngine

__all__ = [
    "ENGINES",
    "GENERAL",
    "MARGINAL_STATS",
    "TUTORIAL",
    "TUTORIAL_NAMES",
    "BridgeStanEngine",
    "BridgeStanSource",
    "NameMap",
    "PyStanEngine",
    "StanEngine",
    "StanUnavailableError",
    "available_engines",
    "bridgestan_source_available",
    "cache_dir",
    "check_program",
    "find_bridgestan_source",
    "flatten",
    "general_data",
    "glmm_data",
    "general_names",
    "glmm_names",
    "is_tutorial_design",
    "load_model",
    "marginal_stats_data",
    "marginal_stats_names",
    "resolve_engine",
    "sample_pystan",
    "stan_data",
    "stan_file",
    "stan_reference_dir",
    "tutorial_data",
    "tutorial_prior_data",
    "unflatten",
]
