"""The priors as values: one :class:`Prior` (a family and its parameters) and
:class:`Priors`, the prior of every parameter of a model by its posterior name. No PyMC here:
:mod:`lmm_pymc.priors.builders` makes the variables."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

__all__ = [
    "FAMILIES",
    "FAMILY_PARAMETERS",
    "POSITIVE",
    "Exponential",
    "Gamma",
    "HalfNormal",
    "HalfStudentT",
    "Normal",
    "Prior",
    "Priors",
    "ResolvedPriors",
    "StudentT",
    "parse_prior",
]

#: Prior families and their parameters, in order.
FAMILIES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "normal": ("mu", "sigma"),
    "student_t": ("nu", "mu", "sigma"),
    "halfnormal": ("sigma",),
    "halfstudent_t": ("nu", "sigma"),
    "exponential": ("lam",),
    "gamma": ("alpha", "beta"),
})  # fmt: skip
#: The families of an sd (on (0, inf)).
POSITIVE = ("halfnormal", "halfstudent_t", "exponential", "gamma")


@dataclass(frozen=True)
class Prior:
    """One prior distribution: a family of :data:`FAMILIES` and its parameters.

    Build it with :func:`Normal`, :func:`StudentT`, :func:`HalfNormal`,
    :func:`HalfStudentT`, :func:`Exponential`, :func:`Gamma` (shape, rate) or
    :func:`parse_prior`.
    """

    family: str
    params: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"prior family must be one of {list(FAMILIES)}, found {self.family!r}")
        names = FAMILIES[self.family]
        if len(self.params) != len(names):
            raise ValueError(
                f"prior {self.family} takes {len(names)} parameter(s) {list(names)}, found "
                f"{len(self.params)}: {self.params}"
            )
        values = []
        for name, value in zip(names, self.params, strict=True):
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{self.family}'s {name} must be a number, found {value!r}"
                ) from None
            if not math.isfinite(v) or (name != "mu" and v <= 0):
                raise ValueError(
                    f"{self.family}'s {name} must be "
                    f"{'finite' if name == 'mu' else 'finite and > 0'}, found {value!r}"
                )
            values.append(v)
        object.__setattr__(self, "params", tuple(values))

    @property
    def positive(self) -> bool:
        """Whether the prior lives on (0, inf) (a prior for an sd)."""
        return self.family in POSITIVE

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(zip(FAMILIES[self.family], self.params, strict=True))

    def __str__(self) -> str:
        return f"{self.family}({', '.join(f'{p:.4g}' for p in self.params)})"

    def create_variable(self, name: str, *, dims: str | tuple[str, ...] | None = None):
        """The PyMC variable ``name`` with this prior, in the model being built (its
        parameters are model inputs: :mod:`lmm_pymc.priors.builders`)."""
        from .builders import variable

        return variable(name, [self], dims=dims, scalar=dims is None)

    def draw(self, rng: np.random.Generator, size: int | tuple | None = None) -> np.ndarray:
        """Draws with NumPy (prior predictive checks without PyMC)."""
        k = self.kwargs
        if self.family == "normal":
            return rng.normal(k["mu"], k["sigma"], size)
        if self.family == "student_t":
            return k["mu"] + k["sigma"] * rng.standard_t(k["nu"], size)
        if self.family == "halfnormal":
            return np.abs(rng.normal(0.0, k["sigma"], size))
        if self.family == "halfstudent_t":
            return np.abs(k["sigma"] * rng.standard_t(k["nu"], size))
        if self.family == "gamma":
            return rng.gamma(k["alpha"], 1.0 / k["beta"], size)
        return rng.exponential(1.0 / k["lam"], size)


def Normal(mu: float = 0.0, sigma: float = 1.0) -> Prior:  # noqa: N802 (a distribution)
    return Prior("normal", (mu, sigma))


def StudentT(nu: float, mu: float = 0.0, sigma: float = 1.0) -> Prior:  # noqa: N802
    return Prior("student_t", (nu, mu, sigma))


def HalfNormal(sigma: float = 1.0) -> Prior:  # noqa: N802
    return Prior("halfnormal", (sigma,))


def HalfStudentT(nu: float, sigma: float = 1.0) -> Prior:  # noqa: N802
    return Prior("halfstudent_t", (nu, sigma))


def Exponential(lam: float = 1.0) -> Prior:  # noqa: N802
    return Prior("exponential", (lam,))


def Gamma(alpha: float, beta: float) -> Prior:  # noqa: N802
    """Shape ``alpha``, rate ``beta`` (mean ``alpha / beta``), as PyMC and Stan write it."""
    return Prior("gamma", (alpha, beta))


#: Priors of the outcome families' own parameters other than ``sigma``
#: (:mod:`lmm_pymc.families`), unless ``Priors.terms`` names them: the negative binomial's
#: ``alpha`` (rstanarm's ``reciprocal_dispersion``) has rstanarm's ``exponential(1)``, the
#: Student-t's degrees of freedom ``nu`` brms's ``gamma(2, 0.1)`` (mean 20, mode 10: most
#: mass on moderate tails, some below 5).
FAMILY_PARAMETERS: Mapping[str, Prior] = MappingProxyType(
    {"alpha": Exponential(1.0), "nu": Gamma(2.0, 0.1)}
)


_PRIOR_TEXT = re.compile(r"^\s*([A-Za-z_]+)\s*\(([^()]*)\)\s*$")
_ALIASES = {"normal": "normal", "student_t": "student_t", "studentt": "student_t",
            "halfnormal": "halfnormal", "half_normal": "halfnormal",
            "halfstudent_t": "halfstudent_t", "halfstudentt": "halfstudent_t",
            "half_student_t": "halfstudent_t", "exponential": "exponential",
            "gamma": "gamma"}  # fmt: skip


def parse_prior(text: str) -> Prior:
    """A prior from text such as ``"normal(0, 10)"`` or ``"student_t(3, 250, 50)"``."""
    match = _PRIOR_TEXT.match(text) if isinstance(text, str) else None
    family = _ALIASES.get(match.group(1).lower()) if match else None
    if family is None:
        raise ValueError(
            f"prior must be written family(parameters) with a family of {list(FAMILIES)}, "
            f"e.g. 'normal(0, 10)', found {text!r}"
        )
    try:
        params = tuple(float(p) for p in match.group(2).split(",") if p.strip())
    except ValueError:
        raise ValueError(f"prior {text!r}: parameters must be numbers") from None
    return Prior(family, params)


def _as_prior(name: str, value: object, *, positive: bool) -> Prior:
    prior = parse_prior(value) if isinstance(value, str) else value
    if not isinstance(prior, Prior):
        raise TypeError(f"{name} must be a lmm_pymc Prior (e.g. Normal(0, 1)), found {value!r}")
    if positive and not prior.positive:
        raise ValueError(
            f"{name} is the prior of an sd and needs a positive family "
            f"{list(POSITIVE)}, found {prior}"
        )
    if not positive and prior.positive:
        raise ValueError(
            f"{name} is the prior of a fixed effect and needs a family on the real line "
            f"(normal, student_t), found {prior}"
        )
    return prior


def _as_eta(name: str, value: object) -> float:
    try:
        eta = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number > 0 (an LKJ shape), found {value!r}") from None
    if not math.isfinite(eta) or eta <= 0:
        raise ValueError(f"{name} must be finite and > 0 (an LKJ shape), found {value!r}")
    return eta


_TERM = re.compile(r"^(beta|sigs|R)\[(.+)\]$")


@dataclass(frozen=True, init=False)
class Priors:
    """Priors of every parameter (module docstring), named as the posterior's variables.

    Parameters
    ----------
    fixed : Prior
        Prior of every fixed effect ``beta`` without its own (default ``Normal(0, 10)``).
    sigs : Prior
        Prior of every random-effect sd ``sigs`` without its own (default ``HalfNormal(5)``).
    sigma : Prior
        Prior of the residual sd ``sigma`` (default ``HalfNormal(5)``).
    lkj_eta : float
        LKJ shape of every correlated factor's ``R`` without its own (default 2; 1 is
        uniform over correlation matrices, larger values pull towards the identity).
    terms : mapping
        Per-term priors by posterior name: ``"beta[x]"``, ``"sigs[x|subject]"``,
        ``"sigs[subject]"`` (every sd of the factor) and ``"R[subject]"`` (its LKJ shape).
        Priors may be given as text, ``"normal(0, 1)"``.

    Examples
    --------
    >>> Priors(lkj_eta=1.0).lkj_eta
    1.0
    >>> str(Priors(terms={"beta[x]": "normal(0, 1)"}).terms["beta[x]"])
    'normal(0, 1)'
    >>> Priors(sigs="half_normal(2)").sigs
    Prior(family='halfnormal', params=(2.0,))
    """

    fixed: Prior
    sigs: Prior
    sigma: Prior
    lkj_eta: float
    terms: Mapping[str, Prior | float] = field(default_factory=dict)

    def __init__(
        self,
        fixed: Prior | str | None = None,
        sigs: Prior | str | None = None,
        sigma: Prior | str | None = None,
        lkj_eta: float = 2.0,
        terms: Mapping[str, Prior | str | float] | None = None,
    ) -> None:
        set_ = object.__setattr__
        fixed = Normal(0.0, 10.0) if fixed is None else fixed
        sigs = HalfNormal(5.0) if sigs is None else sigs
        sigma = HalfNormal(5.0) if sigma is None else sigma
        set_(self, "fixed", _as_prior("Priors.fixed", fixed, positive=False))
        set_(self, "sigs", _as_prior("Priors.sigs", sigs, positive=True))
        set_(self, "sigma", _as_prior("Priors.sigma", sigma, positive=True))
        set_(self, "lkj_eta", _as_eta("Priors.lkj_eta", lkj_eta))
        if terms is not None and not isinstance(terms, Mapping):
            raise TypeError(
                f"Priors.terms must be a mapping of posterior names to priors, found "
                f"{type(terms).__name__}"
            )
        checked: dict[str, Prior | float] = {}
        for key, value in dict(terms or {}).items():
            if key in FAMILY_PARAMETERS:  # a family's own parameter: a positive prior
                checked[key] = _as_prior(f"Priors.terms[{key!r}]", value, positive=True)
                continue
            match = _TERM.match(key) if isinstance(key, str) else None
            if match is None:
                raise ValueError(
                    "Priors.terms keys must be posterior names 'beta[<effect>]', "
                    f"'sigs[<effect>|<factor>]', 'sigs[<factor>]', 'R[<factor>]' or a family's "
                    f"parameter {list(FAMILY_PARAMETERS)}, found {key!r}"
                )
            kind = match.group(1)
            where = f"Priors.terms[{key!r}]"
            checked[key] = (_as_eta(where, value) if kind == "R" else
                            _as_prior(where, value, positive=kind == "sigs"))  # fmt: skip
        set_(self, "terms", MappingProxyType(checked))

    def __hash__(self) -> int:
        return hash((self.fixed, self.sigs, self.sigma, self.lkj_eta, tuple(self.terms.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Priors) and (
            (self.fixed, self.sigs, self.sigma, self.lkj_eta, dict(self.terms))
            == (other.fixed, other.sigs, other.sigma, other.lkj_eta, dict(other.terms))
        )

    def __repr__(self) -> str:
        terms = f", terms={{{', '.join(f'{k!r}: {v}' for k, v in self.terms.items())}}}"
        return (f"Priors(fixed={self.fixed}, sigs={self.sigs}, sigma={self.sigma}, "
                f"lkj_eta={self.lkj_eta:g}{terms if self.terms else ''})")  # fmt: skip

    @classmethod
    def tutorial(cls) -> Priors:
        """The tutorial's Stan model's priors: ``Normal(0, 10)``, ``HalfNormal(5)`` for every
        sd, ``LKJ(2)``."""
        return cls()

    # ----------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """JSON-able form (inverse: ``Priors.from_dict``)."""

        def enc(p):
            return p if isinstance(p, float) else [p.family, *p.params]

        return {"fixed": enc(self.fixed), "sigs": enc(self.sigs), "sigma": enc(self.sigma),
                "lkj_eta": self.lkj_eta,
                "terms": {k: enc(v) for k, v in self.terms.items()}}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping) -> Priors:
        def dec(v):
            return Prior(v[0], tuple(v[1:])) if isinstance(v, list | tuple) else v

        if not isinstance(data, Mapping):
            raise TypeError(f"priors must be a mapping, found {type(data).__name__}")
        unknown = sorted(set(data) - {"fixed", "sigs", "sigma", "lkj_eta", "terms"})
        if unknown:
            raise ValueError(
                f"priors has unknown field(s) {unknown}; expected fixed, sigs, sigma, lkj_eta, "
                "terms"
            )
        return cls(fixed=dec(data.get("fixed")), sigs=dec(data.get("sigs")),
                   sigma=dec(data.get("sigma")), lkj_eta=data.get("lkj_eta", 2.0),
                   terms={k: dec(v) for k, v in dict(data.get("terms", {})).items()})  # fmt: skip

    # ------------------------------------------------------- per term, for a design
    def resolve(
        self, fixed_names: Sequence[str], factors: Sequence, parameters: Sequence[str] = ("sigma",)
    ) -> ResolvedPriors:
        """The prior of every parameter of a design (``fixed_names`` and its
        :class:`~lmm_pymc.design.GroupingFactor` s) and of its family's own ``parameters``
        (the Gaussian's ``sigma``, the Student-t's ``sigma`` and ``nu``, the negative
        binomial's ``alpha``, none for a binary outcome); unknown term names are refused."""
        known = {f"beta[{n}]" for n in fixed_names} | (set(parameters) - {"sigma"})
        for f in factors:
            known |= {f"sigs[{f.name}]", f"R[{f.name}]"} | {f"sigs[{t}]" for t in f.terms}
        unknown = sorted(set(self.terms) - known)
        if unknown:
            raise ValueError(
                f"Priors.terms names {unknown} that this model does not have; expected some "
                f"of {sorted(known)}"
            )
        t = self.terms
        fixed = tuple(t.get(f"beta[{n}]", self.fixed) for n in fixed_names)
        sigs, etas = {}, {}
        for f in factors:
            base = t.get(f"sigs[{f.name}]", self.sigs)
            sigs[f.name] = tuple(t.get(f"sigs[{term}]", base) for term in f.terms)
            etas[f.name] = float(t.get(f"R[{f.name}]", self.lkj_eta))
        own = {p: self.sigma if p == "sigma" else t.get(p, FAMILY_PARAMETERS[p])
               for p in parameters}  # fmt: skip
        return ResolvedPriors(tuple(fixed_names), fixed, sigs, etas, self.sigma, own)


@dataclass(frozen=True)
class ResolvedPriors:
    """The prior of every parameter of one design (:meth:`Priors.resolve`): per fixed
    effect, per factor its sds' priors (``sigs``) and LKJ shape (``etas``), the residual
    sd's and the outcome family's own ``parameters`` (``{"sigma": sigma}`` for the linear
    mixed model)."""

    fixed_names: tuple[str, ...]
    fixed: tuple[Prior, ...]
    sigs: Mapping[str, tuple[Prior, ...]]
    etas: Mapping[str, float]
    sigma: Prior
    parameters: Mapping[str, Prior] | None = None

    def __post_init__(self) -> None:
        if self.parameters is None:
            object.__setattr__(self, "parameters", {"sigma": self.sigma})

    def table(self, factors: Sequence) -> list[tuple[str, str]]:
        """``(parameter, prior)`` rows, as brms's ``prior_summary``."""
        rows = [(f"beta[{n}]", str(p)) for n, p in zip(self.fixed_names, self.fixed, strict=True)]
        for f in factors:
            rows += [(f"sigs[{t}]", str(p)) for t, p in zip(f.terms, self.sigs[f.name], strict=True)]
            if f.has_correlation:
                rows.append((f"R[{f.name}]", f"lkj_corr({self.etas[f.name]:g})"))
        return [*rows, *((name, str(p)) for name, p in self.parameters.items())]
