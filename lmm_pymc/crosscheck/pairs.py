"""Pairs of a PyMC parametrization and the Stan program that mirrors it, and their maths.

A :class:`Pair` is data: the parametrization, the Stan program, which designs it accepts,
the PyMC free variables whose unconstrained coordinates both backends share, the Jacobian
between their coordinates and the analytic offset of their log densities. The registry
:func:`pairs` holds six, registered on first use (so importing works without
``stan_reference/``):

==================  ===============  ======================  ==============================
pair                parametrization  program                 designs
==================  ===============  ======================  ==============================
``lkj_corr``        ``lkj_corr``     ``lmm_lkj_corr``        the tutorial's (``tutorial.FORMULA``)
``cholesky``        ``cholesky``     ``lmm_cholesky``        the tutorial's
``marginal``        ``marginal``     ``lmm_marginal``        the tutorial's
``marginal_stats``  ``marginal``     ``lmm_marginal_stats``  one grouping factor, any p and q
``general``         ``cholesky``     ``lmm_general``         any (crossed factors, any q, ``||``)
``glmm``            ``cholesky``     ``lmm_glmm``            any; bernoulli, binomial, poisson,
                                                             negbinomial, student outcomes
==================  ===============  ======================  ==============================

A pair serves the outcome families in its ``families`` (the Gaussian one but for ``glmm``).
The maths of the pairs (LKJ constants, Jacobians, analytic offsets) are
:mod:`lmm_pymc.crosscheck.offsets`'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from ..design import Design
from ..families import Family
from ..families import family as as_family
from ..models import PARAMETRIZATIONS, resolve_parametrization
from ..priors import Priors
from ..stan.names import TUTORIAL_NAMES, NameMap, general_names, glmm_names, marginal_stats_names
from ..stan.programs import (
    GENERAL,
    GLMM,
    GLMM_FAMILIES,
    MARGINAL_STATS,
    TUTORIAL,
    check_tutorial_design,
    general_data,
    glmm_data,
    is_tutorial_design,
    marginal_stats_data,
    stan_file,
    tutorial_data,
)
from .offsets import (
    cholesky_cov_log_jacobian,
    covariance_log_jacobian,
    lkj_log_normaliser,
    reference_offset,
)

__all__ = [
    "PAIRS",
    "SHARED",
    "Pair",
    "available_pairs",
    "cholesky_cov_log_jacobian",
    "covariance_log_jacobian",
    "expected_offset",
    "get_pair",
    "lkj_log_normaliser",
    "name_mapping",
    "reference_offset",
    "register_pair",
    "select_pair",
]

# ------------------------------------------------------------------------ the pairs
#: PyMC free variables (``{k}``: each factor's key) whose unconstrained coordinate is the
#: same in both backends, with the transform; those a model has are compared.
SHARED: Mapping[str, str] = {
    "beta": "identity",
    "sigma": "log",
    "sigs_{k}": "log",
    "z_{k}": "identity",
    "b_{k}": "identity",
}


@dataclass(frozen=True)
class Pair:
    """A PyMC parametrization and the Stan program that mirrors it.

    Attributes
    ----------
    name : str
        Registry key (``"cholesky"``, ``"general"``).
    parametrization : str
        Name accepted by :func:`lmm_pymc.build_model`.
    program : str
        Reference Stan file (see :func:`lmm_pymc.stan.stan_file`).
    tutorial_only : bool
        The program is written for the tutorial's design (names :data:`TUTORIAL_NAMES`);
        otherwise it takes any design (names :func:`general_names`).
    shared : dict of str to {"identity", "log"}
        Templates of the shared free variables (see :data:`SHARED`).
    log_jacobian : callable or None
        ``(point, design, free_rv_names) -> log |d PyMC coords / d Stan coords|``, added to
        PyMC's log density; ``None`` drops it (a deliberately wrong pair).
    offset : callable or None
        ``(design, priors) -> (lp_PyMC - lp_Stan, explanation)`` where known analytically.
    random_outputs : tuple of str
        Stan outputs that are random draws (not compared by name).
    grad_rtol : float
        Default tolerance of the relative gradient error (see :func:`crosscheck`).
    data_builder : callable or None
        ``(design, priors) -> data`` of the program (a pair of other ``families`` is given
        ``family=`` and ``add_jacobian=`` too); ``None``: the tutorial's data, or the
        general program's.
    name_map : callable or None
        ``design -> NameMap``; ``None``: :data:`TUTORIAL_NAMES` or :func:`general_names`.
    families : tuple of str
        The outcome families the program takes (:data:`lmm_pymc.families.FAMILIES`).
    family_grad_rtol : dict of str to float
        ``grad_rtol`` of an outcome family where it differs from the pair's.
    """

    name: str
    parametrization: str
    program: str
    tutorial_only: bool = True
    shared: Mapping[str, str] = field(default_factory=lambda: dict(SHARED))
    log_jacobian: Callable[[Mapping[str, np.ndarray], Design, Sequence[str]], float] | None = (
        covariance_log_jacobian
    )
    offset: Callable[[Design, Priors], tuple[float, str]] | None = partial(
        reference_offset, latent=True
    )
    random_outputs: tuple[str, ...] = ()
    grad_rtol: float = 1e-9
    data_builder: Callable[[Design, Priors], dict] | None = None
    name_map: Callable[[Design], NameMap] | None = None
    families: tuple[str, ...] = ("gaussian",)
    family_grad_rtol: Mapping[str, float] = field(default_factory=dict)

    def applies(self, design: Design, family: str | Family | None = None) -> bool:
        if self.tutorial_only and not is_tutorial_design(design):
            return False
        try:  # e.g. the marginal programs need one grouping factor
            self.check(design, family)
        except ValueError:
            return False
        return True

    def check(self, design: Design, family: str | Family | None = None) -> None:
        """``ValueError`` when the program cannot take ``design`` with outcome ``family``
        (default Gaussian)."""
        fam = as_family(family)
        if fam.name not in self.families:
            raise ValueError(
                f"family must be one of {list(self.families)} for program {self.program!r} "
                f"(pair {self.name!r}), found {fam.name!r}; binary and count outcomes have "
                f"the pair 'glmm', the Gaussian one 'general'"
            )
        if self.tutorial_only:
            check_tutorial_design(design)
        resolve_parametrization(design, self.parametrization, fam)
        if self.parametrization == "marginal" and len(design.factors) != 1:
            raise ValueError(
                f"program {self.program!r} integrates out the random effects of exactly one "
                f"grouping factor, found {[f.name for f in design.factors]}; cross-check "
                "crossed factors with parametrization 'cholesky'"
            )

    def names(self, design: Design) -> NameMap:
        if self.name_map is not None:
            return self.name_map(design)
        return TUTORIAL_NAMES if self.tutorial_only else general_names(design)

    def data(
        self,
        design: Design,
        priors: Priors,
        *,
        sampling: bool = False,
        family: str | Family | None = None,
    ) -> dict:
        """The program's data for an outcome of ``family``; ``sampling=False`` is the
        density the cross-check compares (the general programs then leave out the Jacobian
        of their own ``L_free``)."""
        if self.data_builder is not None and self.families != ("gaussian",):
            return self.data_builder(design, priors, family=family, add_jacobian=sampling)
        if self.data_builder is not None:
            return self.data_builder(design, priors)
        if self.tutorial_only:
            return tutorial_data(design, priors)
        return general_data(design, priors, add_jacobian=sampling)

    def shared_for(self, design: Design, free: Sequence[str]) -> dict[str, str]:
        """The shared coordinates among the model's free variables ``free``."""
        out = {}
        for template, transform in self.shared.items():
            names = {template.format(k=f.key) for f in design.factors}
            out.update({n: transform for n in sorted(names) if n in free})
        return out


#: The registry, filled on first use by :func:`pairs`.
PAIRS: dict[str, Pair] = {}


def register_pair(pair: Pair) -> Pair:
    """Add (or replace) a pair in :data:`PAIRS`; its Stan file must exist."""
    if not isinstance(pair, Pair):
        raise TypeError(f"pair must be a lmm_pymc.crosscheck.Pair, found {type(pair).__name__}")
    stan_file(pair.program)  # fails early on a missing Stan file
    PAIRS[pair.name] = pair
    return pair


def _register_defaults() -> None:
    marginal_offset = partial(reference_offset, latent=False)
    for parametrization, program in TUTORIAL.items():
        if parametrization == "marginal":
            # Stan's Woodbury form loses a little to rounding: see crosscheck()
            pair = Pair("marginal", "marginal", program, offset=marginal_offset,
                        random_outputs=("random_group",), grad_rtol=1e-8)  # fmt: skip
        else:
            pair = Pair(parametrization, parametrization, program)
        register_pair(pair)
    # any single-factor design, from per-group sums: the same algorithm as PyMC's marginal
    # model (the well-conditioned form), so its gradients agree to rounding as well
    stats = Pair("marginal_stats", "marginal", MARGINAL_STATS, tutorial_only=False,
                 offset=partial(reference_offset, latent=False, priors_in_stan=True),
                 random_outputs=("b",),
                 data_builder=marginal_stats_data, name_map=marginal_stats_names)  # fmt: skip
    register_pair(stats)
    general_offset = partial(reference_offset, latent=True, priors_in_stan=True)
    register_pair(Pair("general", "cholesky", GENERAL, tutorial_only=False,
                       offset=general_offset))  # fmt: skip
    # binary, count and Student-t outcomes: the likelihood is a full *_lpmf (*_lpdf) on both
    # sides; the negative binomial's gradients differ by rounding up to 3.4e-9 (digamma
    # terms), hence 1e-8. The Student-t's d lp / d log(nu) sums N digammas at one argument:
    # PyTensor's psi is off by up to 1.5e-10 (scipy's: exact to rounding), so the sum by
    # ~N nu 1e-10 (2.7e-8 measured at N = 96, 3.1e-8 at nu = 12), hence 1e-7
    register_pair(Pair("glmm", "cholesky", GLMM, tutorial_only=False, grad_rtol=1e-8,
                       family_grad_rtol={"student": 1e-7},
                       shared={**SHARED, "alpha": "log", "nu": "log"},
                       offset=partial(general_offset, normal_rows=False),
                       data_builder=glmm_data, name_map=glmm_names,
                       families=tuple(GLMM_FAMILIES)))  # fmt: skip


def pairs() -> dict[str, Pair]:
    """The registry (the six default pairs are registered on the first call)."""
    if not PAIRS:
        _register_defaults()
    return PAIRS


def get_pair(name: str) -> Pair:
    """A registered pair by name."""
    registry = pairs()
    if name not in registry:
        raise ValueError(f"pair must be one of {sorted(registry)}, found {name!r}")
    return registry[name]


def available_pairs(
    design: Design | None = None, family: str | Family | None = None
) -> list[str]:
    """Names of the registered pairs (those that accept ``design`` and an outcome of
    ``family``, default Gaussian, when either is given), the tutorial's first, in the order
    of :data:`lmm_pymc.PARAMETRIZATIONS`."""
    order = {p: i for i, p in enumerate(PARAMETRIZATIONS)}
    fam = None if design is None and family is None else as_family(family)

    def accepts(p: Pair) -> bool:
        if fam is None:
            return True
        return p.applies(design, fam) if design is not None else fam.name in p.families

    found = [p for p in pairs().values() if p.parametrization in order and accepts(p)]
    found.sort(key=lambda p: (not p.tutorial_only, order[p.parametrization]))
    return [p.name for p in found]


def select_pair(
    design: Design,
    parametrization: str | None = None,
    program: str | None = None,
    family: str | Family | None = None,
) -> Pair:
    """The pair for ``design`` and an outcome of ``family`` (default Gaussian): the one
    named by ``program`` if given, else the tutorial's program of the parametrization for
    the tutorial's design, else the first pair that mirrors the parametrization and takes
    the design (``marginal_stats`` for ``marginal``, ``general`` for ``cholesky``, ``glmm``
    for a binary or count outcome)."""
    fam = as_family(family)
    if program is not None:
        pair = get_pair(program)
        if parametrization is not None and parametrization != pair.parametrization:
            raise ValueError(
                f"parametrization must be {pair.parametrization!r} for program {program!r} "
                f"(it mirrors that parametrization), found {parametrization!r}"
            )
    else:
        chosen = resolve_parametrization(design, parametrization, fam)
        candidates = [pairs()[n] for n in available_pairs(design, fam)]
        matching = [p for p in candidates if p.parametrization == chosen]
        if not matching and parametrization is None:
            matching = [p for p in candidates if not p.tutorial_only]
        if not matching:
            raise ValueError(
                f"parametrization must have a Stan pair for this design ("
                f"{sorted({p.parametrization for p in candidates})}, pairs "
                f"{[p.name for p in candidates]}), found {parametrization!r}"
            )
        pair = matching[0]
    pair.check(design, fam)
    return pair


def expected_offset(
    design: Design,
    parametrization: str | None = None,
    priors: Priors | None = None,
    *,
    program: str | None = None,
    family: str | Family | None = None,
) -> tuple[float | None, str]:
    """The analytic ``lp_PyMC - lp_Stan`` of the pair of ``design``, ``parametrization``
    and outcome ``family`` (``None`` where not known)."""
    pair = select_pair(design, parametrization, program, family)
    if pair.offset is None:
        return None, "not known analytically"
    return pair.offset(design, Priors() if priors is None else priors)


def name_mapping(
    stan_names: Sequence[str], program: str = "cholesky", design: Design | None = None
) -> pd.DataFrame:
    """Table of Stan flat names and the package value each one is (``stan``, ``package``;
    0-based indices). The general program's registry needs its ``design``."""
    pair = get_pair(program)
    if not pair.tutorial_only and design is None:
        raise ValueError(f"design must be given for program {program!r}, found None")
    return pair.names(design).table(stan_names)
