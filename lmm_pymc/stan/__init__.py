"""Stan side of the package: engines, the reference programs with their data, and names.

* :mod:`lmm_pymc.stan.engines`: :func:`load_model` (PyStan, which compiles offline, or
  BridgeStan where a source tree or a prebuilt ``model_lib`` of the same release exists;
  :func:`find_bridgestan_source` says why not), log densities, gradients, transforms,
  :func:`sample_pystan`.
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

from .engines import (
    ENGINES,
    BridgeStanEngine,
    BridgeStanSource,
    PyStanEngine,
    StanEngine,
    StanUnavailableError,
    available_engines,
    bridgestan_source_available,
    cache_dir,
    check_program,
    find_bridgestan_source,
    load_model,
    resolve_engine,
    sample_pystan,
)
from .names import (
    TUTORIAL_NAMES,
    NameMap,
    flatten,
    general_names,
    marginal_stats_names,
    unflatten,
)
from .programs import (
    GENERAL,
    MARGINAL_STATS,
    TUTORIAL,
    general_data,
    is_tutorial_design,
    marginal_stats_data,
    stan_data,
    stan_file,
    stan_reference_dir,
    tutorial_data,
)

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
    "general_names",
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
    "unflatten",
]
