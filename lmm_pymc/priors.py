"""Every prior of the models, in one place: families, per-term priors, data-scale defaults.

A :class:`Priors` holds a prior for the fixed effects, for the random-effect sds, for the
residual sd and the LKJ shape, each overridable per term by the name the term has in the
posterior::

    Priors(fixed=Normal(0, 10), sd=HalfNormal(5), sigma=HalfNormal(5), lkj_eta=2.0,
           terms={"beta[x]": Normal(0, 1),          # one fixed effect
                  "sigs[subject]": HalfNormal(2),   # every sd of a factor
                  "sigs[x|subject]": Exponential(1),  # one sd
                  "R[subject]": 4.0})               # the LKJ shape of a factor

``Priors()`` is the tutorial's Stan model (the preset :meth:`Priors.tutorial`, used by the
demo, the tutorial notebook, SBC and the Stan cross-check)::

    beta ~ Normal(0, 10)    sigma ~ HalfNormal(5)    sigs ~ HalfNormal(5)    R ~ LKJ(2)

:func:`default_priors` sets weakly informative priors from the data's scale (what
:func:`lmm_pymc.fit` uses unless told otherwise). With ``m_y, s_y`` the mean and sd of y
and ``m_k, s_k`` those of column k of X (or of a factor's Z)::

    slope k            beta[k] ~ Normal(0, 2.5 s_y / s_k)
    intercept          beta[1] ~ Normal(m_y, sqrt((2.5 s_y)^2 + sum_k (2.5 s_y m_k / s_k)^2))
    sd of an intercept sigs    ~ HalfNormal(2.5 s_y)
    sd of a slope k    sigs    ~ HalfNormal(2.5 s_y / s_k)
    residual sd        sigma   ~ HalfNormal(2.5 s_y)
    correlations       R       ~ LKJ(2)

The intercept's spread covers the slopes' priors at the predictors' means (the intercept
is y at x = 0, which may lie far from the data), as in bambi's defaults; the factor 2.5
follows brms and rstanarm. The priors shift and scale with y and x, so a fit does not
depend on the units of the data. A constant column k (no intercept in the formula) uses
its root mean square for ``s_k``.

This module builds PyMC variables only inside functions; importing it loads no PyMC.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .compiled import packed_input

__all__ = [
    "FAMILIES",
    "Exponential",
    "HalfNormal",
    "HalfStudentT",
    "Normal",
    "Prior",
    "Priors",
    "StudentT",
    "default_priors",
    "parse_prior",
]

#: Prior families and their parameters, in order.
FAMILIES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "normal": ("mu", "sigma"),
    "student_t": ("nu", "mu", "sigma"),
    "halfnormal": ("sigma",),
    "halfstudent_t": ("nu", "sigma"),
    "exponential": ("lam",),
})  # fmt: skip
_POSITIVE = ("halfnormal", "halfstudent_t", "exponential")
_PYMC = {"normal": "Normal", "student_t": "StudentT", "halfnormal": "HalfNormal",
         "halfstudent_t": "HalfStudentT", "exponential": "Exponential"}  # fmt: skip
#: The scale of the data-scale defaults (brms, rstanarm).
SCALE = 2.5


@dataclass(frozen=True)
class Prior:
    """One prior distribution: a family of :data:`FAMILIES` and its parameters.

    Build it with :func:`Normal`, :func:`StudentT`, :func:`HalfNormal`,
    :func:`HalfStudentT`, :func:`Exponential` or :func:`parse_prior`.
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
        return self.family in _POSITIVE

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(zip(FAMILIES[self.family], self.params, strict=True))

    def __str__(self) -> str:
        return f"{self.family}({', '.join(f'{p:.4g}' for p in self.params)})"

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


_PRIOR_TEXT = re.compile(r"^\s*([A-Za-z_]+)\s*\(([^()]*)\)\s*$")
_ALIASES = {"normal": "normal", "student_t": "student_t", "studentt": "student_t",
            "halfnormal": "halfnormal", "half_normal": "halfnormal",
            "halfstudent_t": "halfstudent_t", "halfstudentt": "halfstudent_t",
            "half_student_t": "halfstudent_t", "exponential": "exponential"}  # fmt: skip


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
        raise ValueError(f"{name} must be a lmm_pymc Prior (e.g. Normal(0, 1)), found {value!r}")
    if positive and not prior.positive:
        raise ValueError(
            f"{name} is the prior of an sd and needs a positive family "
            f"{list(_POSITIVE)}, found {prior}"
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
        raise ValueError(f"{name} must be a number > 0 (an LKJ shape), found {value!r}") from None
    if not math.isfinite(eta) or eta <= 0:
        raise ValueError(f"{name} must be finite and > 0 (an LKJ shape), found {value!r}")
    return eta


_TERM = re.compile(r"^(beta|sigs|R)\[(.+)\]$")


@dataclass(frozen=True, init=False)
class Priors:
    """Priors of every parameter (module docstring).

    Parameters
    ----------
    fixed : Prior
        Prior of every fixed effect without its own (default ``Normal(0, 10)``).
    sd : Prior
        Prior of every random-effect sd without its own (default ``HalfNormal(5)``).
    sigma : Prior
        Prior of the residual sd (default ``HalfNormal(5)``).
    lkj_eta : float
        LKJ shape of every correlated factor without its own (default 2; 1 is uniform over
        correlation matrices, larger values pull towards the identity).
    terms : mapping
        Per-term priors by posterior name: ``"beta[x]"``, ``"sigs[x|subject]"``,
        ``"sigs[subject]"`` (every sd of the factor) and ``"R[subject]"`` (its LKJ shape).
        Priors may be given as text, ``"normal(0, 1)"``.
    fixed_mu, fixed_sd, residual_sd, group_sd : float, optional
        Shorthands of the tutorial's families: ``fixed = Normal(fixed_mu, fixed_sd)``,
        ``sigma = HalfNormal(residual_sd)``, ``sd = HalfNormal(group_sd)``.

    Examples
    --------
    >>> Priors(lkj_eta=1.0).lkj_eta
    1.0
    >>> str(Priors(terms={"beta[x]": "normal(0, 1)"}).terms["beta[x]"])
    'normal(0, 1)'
    """

    fixed: Prior
    sd: Prior
    sigma: Prior
    lkj_eta: float
    terms: Mapping[str, Prior | float] = field(default_factory=dict)

    def __init__(
        self,
        fixed: Prior | str | None = None,
        sd: Prior | str | None = None,
        sigma: Prior | str | None = None,
        lkj_eta: float = 2.0,
        terms: Mapping[str, Prior | str | float] | None = None,
        *,
        fixed_mu: float | None = None,
        fixed_sd: float | None = None,
        residual_sd: float | None = None,
        group_sd: float | None = None,
    ) -> None:
        def shorthand(name: str, value: float | None, default: float) -> float:
            if value is None:
                return default
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"Priors.{name} must be a number, found {value!r}") from None
            if not math.isfinite(v):
                raise ValueError(f"Priors.{name} must be finite, found {value!r}")
            if name != "fixed_mu" and v <= 0:
                raise ValueError(f"Priors.{name} must be > 0, found {value!r}")
            return v

        pairs = (("fixed", fixed_mu, fixed), ("fixed", fixed_sd, fixed),
                 ("sigma", residual_sd, sigma), ("sd", group_sd, sd))  # fmt: skip
        for name, value, given in pairs:
            if value is not None and given is not None:
                raise ValueError(f"Priors: give {name}= or its shorthand, not both")
        if fixed is None:
            fixed = Normal(
                shorthand("fixed_mu", fixed_mu, 0.0), shorthand("fixed_sd", fixed_sd, 10.0)
            )
        if sd is None:
            sd = HalfNormal(shorthand("group_sd", group_sd, 5.0))
        if sigma is None:
            sigma = HalfNormal(shorthand("residual_sd", residual_sd, 5.0))
        set_ = object.__setattr__
        set_(self, "fixed", _as_prior("Priors.fixed", fixed, positive=False))
        set_(self, "sd", _as_prior("Priors.sd", sd, positive=True))
        set_(self, "sigma", _as_prior("Priors.sigma", sigma, positive=True))
        try:
            set_(self, "lkj_eta", _as_eta("Priors.lkj_eta", lkj_eta))
        except ValueError as err:
            raise ValueError(str(err).replace("must be a number", "must be > 0")) from None
        checked: dict[str, Prior | float] = {}
        for key, value in dict(terms or {}).items():
            match = _TERM.match(key) if isinstance(key, str) else None
            if match is None:
                raise ValueError(
                    "Priors.terms keys must be posterior names 'beta[<effect>]', "
                    f"'sigs[<effect>|<factor>]', 'sigs[<factor>]' or 'R[<factor>]', found {key!r}"
                )
            kind = match.group(1)
            where = f"Priors.terms[{key!r}]"
            checked[key] = (_as_eta(where, value) if kind == "R" else
                            _as_prior(where, value, positive=kind == "sigs"))  # fmt: skip
        set_(self, "terms", MappingProxyType(checked))

    def __hash__(self) -> int:
        return hash((self.fixed, self.sd, self.sigma, self.lkj_eta, tuple(self.terms.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Priors) and (
            (self.fixed, self.sd, self.sigma, self.lkj_eta, dict(self.terms))
            == (other.fixed, other.sd, other.sigma, other.lkj_eta, dict(other.terms))
        )

    def __repr__(self) -> str:
        terms = f", terms={{{', '.join(f'{k!r}: {v}' for k, v in self.terms.items())}}}"
        return (f"Priors(fixed={self.fixed}, sd={self.sd}, sigma={self.sigma}, "
                f"lkj_eta={self.lkj_eta:g}{terms if self.terms else ''})")  # fmt: skip

    @classmethod
    def tutorial(cls) -> Priors:
        """The tutorial's Stan model's priors: ``Normal(0, 10)``, ``HalfNormal(5)`` for every
        sd, ``LKJ(2)``."""
        return cls()

    # ------------------------------------------------- the tutorial's scalar form
    @property
    def is_tutorial_family(self) -> bool:
        """Whether these priors are the tutorial's families with one value each (the form
        the tutorial's Stan programs and SBC's prior draws take)."""
        return (self.fixed.family == "normal" and self.sd.family == "halfnormal"
                and self.sigma.family == "halfnormal" and not self.terms)  # fmt: skip

    def _scalar(self, name: str, prior: Prior, index: int) -> float:
        if not self.is_tutorial_family:
            raise ValueError(
                f"Priors.{name} exists for the tutorial's families only (normal fixed effects, "
                f"half-normal sds, no per-term priors), found {self!r}"
            )
        return prior.params[index]

    fixed_mu = property(lambda self: self._scalar("fixed_mu", self.fixed, 0))
    fixed_sd = property(lambda self: self._scalar("fixed_sd", self.fixed, 1))
    residual_sd = property(lambda self: self._scalar("residual_sd", self.sigma, 0))
    group_sd = property(lambda self: self._scalar("group_sd", self.sd, 0))

    # ----------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """JSON-able form (inverse: ``Priors.from_dict``)."""

        def enc(p):
            return p if isinstance(p, float) else [p.family, *p.params]

        return {"fixed": enc(self.fixed), "sd": enc(self.sd), "sigma": enc(self.sigma),
                "lkj_eta": self.lkj_eta,
                "terms": {k: enc(v) for k, v in self.terms.items()}}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping) -> Priors:
        def dec(v):
            return Prior(v[0], tuple(v[1:])) if isinstance(v, list | tuple) else v

        if not isinstance(data, Mapping):
            raise ValueError(f"priors must be a mapping, found {type(data).__name__}")
        if "fixed" not in data:  # the tutorial's scalar shorthands
            return cls(**dict(data))
        return cls(fixed=dec(data["fixed"]), sd=dec(data["sd"]), sigma=dec(data["sigma"]),
                   lkj_eta=data.get("lkj_eta", 2.0),
                   terms={k: dec(v) for k, v in dict(data.get("terms", {})).items()})  # fmt: skip

    # ------------------------------------------------------- per term, for a design
    def resolve(self, fixed_names: Sequence[str], factors: Sequence) -> ResolvedPriors:
        """The prior of every parameter of a design (``fixed_names`` and its
        :class:`~lmm_pymc.design.GroupingFactor` s); unknown term names are refused."""
        known = {f"beta[{n}]" for n in fixed_names}
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
        sds, etas = {}, {}
        for f in factors:
            base = t.get(f"sigs[{f.name}]", self.sd)
            sds[f.name] = tuple(t.get(f"sigs[{term}]", base) for term in f.terms)
            etas[f.name] = float(t.get(f"R[{f.name}]", self.lkj_eta))
        return ResolvedPriors(tuple(fixed_names), fixed, sds, etas, self.sigma)


@dataclass(frozen=True)
class ResolvedPriors:
    """The prior of every parameter of one design (:meth:`Priors.resolve`)."""

    fixed_names: tuple[str, ...]
    fixed: tuple[Prior, ...]
    sds: Mapping[str, tuple[Prior, ...]]
    etas: Mapping[str, float]
    sigma: Prior

    def table(self, factors: Sequence) -> list[tuple[str, str]]:
        """``(parameter, prior)`` rows, as brms's ``prior_summary``."""
        rows = [(f"beta[{n}]", str(p)) for n, p in zip(self.fixed_names, self.fixed, strict=True)]
        for f in factors:
            rows += [(f"sigs[{t}]", str(p)) for t, p in zip(f.terms, self.sds[f.name], strict=True)]
            if f.has_correlation:
                rows.append((f"R[{f.name}]", f"lkj_corr({self.etas[f.name]:g})"))
        return [*rows, ("sigma", str(self.sigma))]


# ------------------------------------------------------------------ PyMC variables
#: The ``pm.Data`` vector that holds every prior hyperparameter of a model: the data-scale
#: defaults differ from one data set to the next, and a compiled model takes them as inputs
#: (lmm_pymc.compiled.compile_model), as it takes the data.
PRIOR_INPUT = "prior_values"


def hyperparameter(value) -> object:
    """One prior hyperparameter (a number or a vector) of the model being built: its
    entries of :data:`PRIOR_INPUT`."""
    return packed_input(PRIOR_INPUT, value)


def _params(family: str, priors: Sequence[Prior]) -> dict[str, object]:
    return {k: hyperparameter([p.kwargs[k] for p in priors]) for k in FAMILIES[family]}


def vector_rv(name: str, priors: Sequence[Prior], dims: str | None = None):
    """One PyMC variable with an element per prior (one family: vector parameters); mixed
    families become one variable per element, stacked into the Deterministic ``name``."""
    import pymc as pm
    import pytensor.tensor as pt

    families = {p.family for p in priors}
    if len(families) == 1:
        family = families.pop()
        dist = getattr(pm, _PYMC[family])
        return dist(name, **_params(family, priors), dims=dims, shape=len(priors))
    parts = []
    for i, p in enumerate(priors):
        params = {k: hyperparameter(v) for k, v in p.kwargs.items()}
        parts.append(getattr(pm, _PYMC[p.family])(f"{name}_{i}", **params))
    return pm.Deterministic(name, pt.stack(parts), dims=dims)


def scalar_rv(name: str, prior: Prior):
    import pymc as pm

    params = {k: hyperparameter(v) for k, v in prior.kwargs.items()}
    return getattr(pm, _PYMC[prior.family])(name, **params)


def vector_dist(priors: Sequence[Prior], what: str):
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
    return getattr(pm, _PYMC[families[0]]).dist(**params, shape=len(priors))


# -------------------------------------------------------------- data-scale defaults
def _moments(data) -> tuple[float, float, np.ndarray, np.ndarray, list]:
    """Means and second moments ``(m_y, v_y, m_X, q_X, [(m_Z, q_Z) per factor])`` of a
    design or of per-group sums (whose means come through the ``intercept`` column)."""
    from .design import GroupedStatistics

    if isinstance(data, GroupedStatistics):
        if "intercept" not in data.fixed_names:
            raise ValueError(
                "data-scale default priors from per-group sums need an intercept column, found "
                f"fixed effects {list(data.fixed_names)}; pass priors= explicitly"
            )
        s, i = data.statistics, data.fixed_names.index("intercept")
        n = float(np.sum(s.n))
        zs = [(s.XtZ[:, i, :].sum(0) / n, np.einsum("jkk->k", s.ZtZ) / n)]
        m_x, q_x = s.XtX[:, i, :].sum(0) / n, np.einsum("jkk->k", s.XtX) / n
        return float(np.sum(s.Xty[:, i])) / n, float(np.sum(s.yty)) / n, m_x, q_x, zs
    y, X = data.y, data.X
    zs = [(f.Z.mean(0), (f.Z**2).mean(0)) for f in data.factors]
    return float(y.mean()), float((y**2).mean()), X.mean(0), (X**2).mean(0), zs


def _spread(mean: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The sd of each column, or for a constant column its root mean square (1 for a column
    of zeros, which carries no scale)."""
    var = np.maximum(second - mean**2, 0.0)
    constant = var <= 1e-12 * np.maximum(second, 1e-300)
    spread = np.where(constant, np.sqrt(np.maximum(second, 0.0)), np.sqrt(var))
    return np.where(spread > 0, spread, 1.0)


def default_priors(data) -> Priors:
    """Weakly informative priors on the data's scale (module docstring) for a
    :class:`~lmm_pymc.design.Design` with outcome or :class:`GroupedStatistics`; the
    intercepts are the effects named ``intercept``."""
    from .design import GroupedStatistics

    m_y, q_y, m_x, q_x, zs = _moments(data)
    s_y = float(np.sqrt(max(q_y - m_y**2, 0.0)))
    if not s_y > 0:
        raise ValueError(f"outcome must vary to set priors from its scale, found sd {s_y}")
    factors = data.factors
    names = data.fixed_names
    s_x = _spread(m_x, q_x)
    slopes = [k for k, name in enumerate(names) if name != "intercept"]
    terms: dict[str, Prior] = {f"beta[{names[k]}]": Normal(0.0, SCALE * s_y / s_x[k])
                               for k in slopes}  # fmt: skip
    if "intercept" in names:  # y at x = 0: its spread covers the slopes' priors at the x means
        reach = math.hypot(SCALE * s_y, *(SCALE * s_y * m_x[j] / s_x[j] for j in slopes))
        terms["beta[intercept]"] = Normal(m_y, reach)
    for f, (m_z, q_z) in zip(factors, zs, strict=True):
        s_z = _spread(m_z, q_z)
        for k, (term, effect) in enumerate(zip(f.terms, f.effect_names, strict=True)):
            scale = 1.0 if effect == "intercept" else s_z[k]
            terms[f"sigs[{term}]"] = HalfNormal(SCALE * s_y / scale)
    return Priors(fixed=Normal(0.0, SCALE * s_y), sd=HalfNormal(SCALE * s_y),
                  sigma=HalfNormal(SCALE * s_y), terms=terms)  # fmt: skip
