"""The priors as PyMC variables, in the model being built. Every hyperparameter is an entry
of one model input (:data:`PRIOR_INPUT`): the data-scale defaults differ from one data set
to the next, and a compiled model takes them as inputs (:func:`lmm_pymc.compiled.compile_model`),
as it takes the data. PyMC is imported inside the functions only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..compiled import packed_input


class PriorLike(Protocol):
    """What the builders read of a :class:`~lmm_pymc.priors.Prior` (which imports this
    module to create its variable)."""

    family: str

    @property
    def kwargs(self) -> dict[str, float]: ...

__all__ = ["PRIOR_INPUT", "PYMC_NAMES", "distribution", "hyperparameter", "variable"]

#: Each family's PyMC distribution.
PYMC_NAMES = {"normal": "Normal", "student_t": "StudentT", "halfnormal": "HalfNormal",
              "halfstudent_t": "HalfStudentT", "exponential": "Exponential",
              "gamma": "Gamma"}  # fmt: skip
#: The ``pm.Data`` vector that holds every prior hyperparameter of a model.
PRIOR_INPUT = "prior_values"


def hyperparameter(value) -> object:
    """One prior hyperparameter (a number or a vector) of the model being built: its
    entries of :data:`PRIOR_INPUT`."""
    return packed_input(PRIOR_INPUT, value)


def _params(family: str, priors: Sequence[PriorLike]) -> dict[str, object]:
    return {k: hyperparameter([p.kwargs[k] for p in priors]) for k in priors[0].kwargs}


def _vector_params(name: str, priors: Sequence[PriorLike], extra=None):
    """A vector's hyperparameters as the rows of its own model input ``prior_<name>``
    (n_params, n): no slice of the graph depends on n, so one compiled log density serves
    every n (the number of fixed effects: docs/measurements.md). ``extra``: more rows of
    the same input (a transform's numbers), returned as the table's remaining rows."""
    import pymc as pm

    keys = list(priors[0].kwargs)
    rows = [[p.kwargs[k] for p in priors] for k in keys]
    if extra is not None:
        rows.extend(np.atleast_2d(extra))
    table = pm.Data(f"prior_{name}", np.array(rows, dtype=float))
    return {k: table[i] for i, k in enumerate(keys)}, table[len(keys):]


def variable(
    name: str,
    priors: Sequence[PriorLike],
    *,
    dims: str | tuple[str, ...] | None = None,
    scalar: bool = False,
    own_input: bool = False,
    transform=None,
):
    """The PyMC variable ``name`` in the model being built: a scalar (``scalar=True``, one
    prior) or one element per prior (one family: vector parameters; mixed families become
    one variable per element, stacked into the Deterministic ``name``). ``own_input``: a
    vector's hyperparameters are their own model input (:func:`_vector_params`), not
    entries of :data:`PRIOR_INPUT`. ``transform``: the sampled coordinates of a vector of
    one family with ``own_input`` (:class:`lmm_pymc.centring.CentredIntercept`): its
    ``rows`` join the vector's input and ``bind(rows)`` gives the transform on them (PyMC's
    log density admits no input in a transform that is not an input of the variable);
    refused for mixed families, whose elements are separate variables."""
    import pymc as pm
    import pytensor.tensor as pt

    if scalar:
        (prior,) = priors
        params = {k: hyperparameter(v) for k, v in prior.kwargs.items()}
        return getattr(pm, PYMC_NAMES[prior.family])(name, **params)
    families = {p.family for p in priors}
    if len(families) == 1:
        family = families.pop()
        dist = getattr(pm, PYMC_NAMES[family])
        if own_input:
            params, rows = _vector_params(name, priors, None if transform is None else transform.rows)
            transform = None if transform is None else transform.bind(rows)
        elif transform is not None:
            raise ValueError(f"a transform of {name!r} needs own_input=True")
        else:
            params = _params(family, priors)
        if transform is not None:
            params["transform"] = transform
        return dist(name, **params, dims=dims, shape=len(priors))
    if transform is not None:
        raise ValueError(f"a transform of {name!r} needs one prior family, found {sorted(families)}")
    parts = []
    for i, p in enumerate(priors):
        params = {k: hyperparameter(v) for k, v in p.kwargs.items()}
        parts.append(getattr(pm, PYMC_NAMES[p.family])(f"{name}_{i}", **params))
    return pm.Deterministic(name, pt.stack(parts), dims=dims)


def distribution(priors: Sequence[PriorLike], what: str):
    """An unnamed PyMC distribution of shape ``len(priors)`` (LKJCholeskyCov's sd_dist),
    its hyperparameters entries of :data:`PRIOR_INPUT`; one family is required."""
    import pymc as pm

    families = sorted({p.family for p in priors})
    if len(families) > 1:
        raise ValueError(
            f"the sds of {what} must share one prior family (their covariance is one "
            f"LKJCholeskyCov), found {families}; give them the same family with per-term "
            "parameters"
        )
    params = _params(families[0], priors)
    return getattr(pm, PYMC_NAMES[families[0]]).dist(**params, shape=len(priors))
