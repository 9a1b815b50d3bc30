"""The package's option sets: one home, no heavy import.

A light module (nothing but the standard library), so the command line can offer these
choices and :class:`lmm_pymc.sbc.SBCConfig` can validate against them without loading
PyMC or PyTensor. :mod:`lmm_pymc.models` and :mod:`lmm_pymc.sampling` import them from here.
"""

from __future__ import annotations

__all__ = ["CROSSCHECK_PAIRS", "FAMILY_NAMES", "PARAMETRIZATIONS", "SAMPLERS"]

#: The outcome families :func:`lmm_pymc.fit` accepts (:mod:`lmm_pymc.families`; a test keeps
#: the two equal); the first is the default.
FAMILY_NAMES: tuple[str, ...] = ("gaussian", "bernoulli", "binomial", "poisson", "negbinomial",
                                  "student")

#: Names of the parametrizations :func:`lmm_pymc.build_model` accepts.
PARAMETRIZATIONS: tuple[str, ...] = ("marginal", "cholesky", "lkj_corr", "laplace")

#: NUTS implementations; the first is the default. nutpie (Rust NUTS on a numba-compiled
#: log density) takes ~1/10 of PyMC's time per draw on these models
#: (``benchmarks/benchmark.py``).
SAMPLERS: tuple[str, ...] = ("nutpie", "pymc")

#: The Stan cross-check's built-in pairs: the tutorial's programs (one per parametrization;
#: none for the approximate ``laplace``),
#: the sufficient-statistics program (marginal, one factor) and the general program
#: (cholesky, any formula) and the generalised program (cholesky, binary and count outcomes,
#: any formula). The registry of :mod:`lmm_pymc.crosscheck.pairs` registers these
#: on first use (a test keeps the two equal); more may be registered at run time.
CROSSCHECK_PAIRS: tuple[str, ...] = ("marginal", "cholesky", "lkj_corr", "marginal_stats",
                                      "general", "glmm")
