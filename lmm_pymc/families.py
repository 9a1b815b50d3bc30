"""Outcome families: the distribution of y given the linear predictor, one frozen dataclass
per family.

Every family shares the linear predictor of :mod:`lmm_pymc.models`; only the likelihood of
y given it changes, through the inverse link ``mu = g^-1(eta)``::

    eta = X beta + sum_f (Z_f * b_f[g_f]).sum(1)                         (N,)

    gaussian     y ~ Normal(mu, sigma)                  identity
    student      y ~ StudentT(nu, mu, sigma)            identity;  robust residuals
    bernoulli    y ~ Bernoulli(mu)                      logit (default), probit, cloglog
    binomial     y ~ Binomial(n, mu)   (n trials)       logit (default), probit, cloglog
    poisson      y ~ Poisson(mu)                        log (default), identity
    negbinomial  y ~ NegativeBinomial(mu, alpha)        log;  var(y) = mu + mu^2 / alpha

A family knows its links, its own parameters (``sigma``, the Student-t's degrees of freedom
``nu``, ``alpha``: named so in the posterior, their priors in :mod:`lmm_pymc.priors`:
``nu ~ Gamma(2, 0.1)``, brms's default, and ``sigma`` the Gaussian's), its PyMC
likelihood, its NumPy log density (the pointwise log-likelihood after sampling,
O(draws x rows), no second PyMC compile), its random draws (posterior predictive,
:func:`lmm_pymc.simulate`), its mean on the response scale and the check of the outcome's
values. ``gaussian`` is the default and the linear mixed model of the rest of the package.
PyMC is imported inside the methods.

>>> family("bernoulli")
Bernoulli(link='logit')
>>> family("poisson", "identity").parameters
()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import special, stats

from .checks import choice

__all__ = [
    "FAMILIES",
    "LINKS",
    "Bernoulli",
    "Binomial",
    "Family",
    "Gaussian",
    "NegativeBinomial",
    "Poisson",
    "StudentT",
    "family",
]

#: Every link's ``(g, g^-1)`` in NumPy: the link of a mean (default priors) and its inverse.
LINKS = {
    "identity": (lambda m: m, lambda eta: eta),
    "log": (np.log, np.exp),
    "logit": (special.logit, special.expit),
    "probit": (special.ndtri, special.ndtr),
    "cloglog": (lambda m: np.log(-np.log1p(-m)), lambda eta: -np.expm1(-np.exp(eta))),
}


def _inverse_tensor(link: str, eta):
    """``g^-1(eta)`` as a PyTensor expression."""
    import pytensor.tensor as pt

    if link == "identity":
        return eta
    if link == "log":
        return pt.exp(eta)
    if link == "logit":
        return pt.sigmoid(eta)
    if link == "probit":
        return 0.5 * pt.erfc(-eta / np.sqrt(2.0))
    return -pt.expm1(-pt.exp(eta))  # cloglog


def _log_probabilities(link: str, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log p, log(1 - p))`` of a probability link, without rounding ``p`` to 0 or 1."""
    if link == "logit":
        return special.log_expit(eta), special.log_expit(-eta)
    if link == "probit":
        return special.log_ndtr(eta), special.log_ndtr(-eta)
    rate = np.exp(eta)  # cloglog: 1 - p = exp(-exp(eta))
    return np.log(-np.expm1(-rate)), -rate


def _canonical(name: str, params: tuple, logp, dist, observed, dims):
    """The observed ``y`` with a canonical link's log density written out, ``y eta - A(eta)``
    plus the counting constant. PyMC's own (its parameter checks and switches) costs three
    to four times as much per row under numba, the bulk of a gradient on many rows
    (docs/measurements.md); the draws (prior predictive) come from ``dist``, PyMC's."""
    import pymc as pm
    import pytensor.tensor as pt

    params = tuple(pt.as_tensor(v) for v in params)
    return pm.CustomDist(name, *params, dist=dist, logp=logp, observed=observed, dims=dims)


def _bernoulli_logit(value, eta):
    import pytensor.tensor as pt

    return value * eta - pt.softplus(eta)


def _binomial_logit(value, eta, n):
    import pytensor.tensor as pt

    log_choose = pt.gammaln(n + 1.0) - pt.gammaln(value + 1.0) - pt.gammaln(n - value + 1.0)
    return value * eta - n * pt.softplus(eta) + log_choose


def _poisson_log(value, eta):
    import pytensor.tensor as pt

    return value * eta - pt.exp(eta) - pt.gammaln(value + 1.0)


def _first_bad(column: str, values: np.ndarray, bad: np.ndarray, expected: str) -> None:
    """A ValueError naming the column, the first offending value, its row and the count."""
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = sorted({float(v) for v in values[rows]})[:5]
        raise ValueError(
            f"{column} must hold {expected}, found {float(values[rows[0]])!r} at row "
            f"{int(rows[0])} ({rows.size} such value(s) in total; distinct ones {shown})"
        )


def _counts(column: str, values: np.ndarray, name: str) -> None:
    """Non-negative whole numbers."""
    bad = (values < 0) | (values != np.round(values))
    _first_bad(column, values, bad, f"non-negative whole numbers (counts) for family {name!r}")


@dataclass(frozen=True)
class Family:
    """An outcome family with its link (module docstring); build one with :func:`family`.

    Attributes
    ----------
    link : str
        One of the family's ``links`` (default: the first).
    """

    link: str = ""
    name: ClassVar[str] = ""
    links: ClassVar[tuple[str, ...]] = ()
    #: The family's own parameters, variables of that name in the model and the posterior.
    parameters: ClassVar[tuple[str, ...]] = ()
    #: Whether the outcome comes with a number of trials per row (``y | trials(n)``).
    needs_trials: ClassVar[bool] = False

    def __post_init__(self) -> None:
        link = self.link or self.links[0]
        choice(f"link of family {self.name!r}", link, self.links)
        object.__setattr__(self, "link", link)

    @property
    def is_gaussian(self) -> bool:
        """The linear mixed model: the only family whose effects integrate out exactly."""
        return self.name == "gaussian"

    def mean(self, eta: np.ndarray, trials: np.ndarray | None = None) -> np.ndarray:
        """E[y] on the response scale (``n mu`` for the binomial's successes)."""
        return LINKS[self.link][1](eta)

    def link_of_mean(self, mean: float) -> float:
        """``g(mean)``: where the default prior of the intercept is centred."""
        return float(LINKS[self.link][0](mean))

    def check_outcome(
        self, y: np.ndarray, column: str, trials: np.ndarray | None = None, trials_name: str = ""
    ) -> None:
        """Raise a ValueError naming the column and the offending values where ``y`` (and
        the trials) cannot come from this family."""

    def tensor_mean(self, eta):
        """``g^-1(eta)`` in the model's graph."""
        return _inverse_tensor(self.link, eta)

    # subclasses: likelihood, log_density, draw
    def likelihood(self, name: str, eta, params: dict, observed, trials=None, dims=None):
        """The PyMC observed variable ``name`` of y given ``eta`` and the family's parameters
        (``params``: name -> PyMC variable) in the model being built."""
        raise NotImplementedError

    def log_density(self, y, eta, params: dict, trials=None) -> np.ndarray:
        """(S, N) log density of ``y`` (N,) given ``eta`` (S, N) and ``params`` (name ->
        (S, 1) draws)."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, eta, params: dict, trials=None) -> np.ndarray:
        """Draws of y, the shape of ``eta``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Gaussian(Family):
    """``y ~ Normal(eta, sigma)``: the linear mixed model."""

    name: ClassVar[str] = "gaussian"
    links: ClassVar[tuple[str, ...]] = ("identity",)
    parameters: ClassVar[tuple[str, ...]] = ("sigma",)

    def likelihood(self, name, eta, params, observed, trials=None, dims=None):
        import pymc as pm

        return pm.Normal(name, mu=eta, sigma=params["sigma"], observed=observed, dims=dims)

    def log_density(self, y, eta, params, trials=None):
        sigma = params["sigma"]
        return -0.5 * np.log(2 * np.pi) - np.log(sigma) - 0.5 * ((y - eta) / sigma) ** 2

    def draw(self, rng, eta, params, trials=None):
        return eta + params["sigma"] * rng.standard_normal(np.shape(eta))


@dataclass(frozen=True)
class StudentT(Family):
    """``y ~ StudentT(nu, eta, sigma)``: the linear mixed model with heavy-tailed (robust)
    residuals, ``nu`` degrees of freedom (``E[y] = eta`` for ``nu > 1``). Its effects do not
    integrate out: it is fitted as the other non-Gaussian families, ``cholesky``."""

    name: ClassVar[str] = "student"
    links: ClassVar[tuple[str, ...]] = ("identity",)
    parameters: ClassVar[tuple[str, ...]] = ("sigma", "nu")

    def likelihood(self, name, eta, params, observed, trials=None, dims=None):
        import pymc as pm

        return pm.StudentT(name, nu=params["nu"], mu=eta, sigma=params["sigma"],
                           observed=observed, dims=dims)  # fmt: skip

    def log_density(self, y, eta, params, trials=None):
        return stats.t.logpdf(y, params["nu"], loc=eta, scale=params["sigma"])

    def draw(self, rng, eta, params, trials=None):
        nu = np.broadcast_to(params["nu"], np.shape(eta))
        return eta + params["sigma"] * rng.standard_t(nu)

    def check_outcome(self, y, column, trials=None, trials_name=""):
        _first_bad(f"outcome column {column!r}", y, ~np.isfinite(y),
                   "finite numbers for family 'student'")  # fmt: skip


@dataclass(frozen=True)
class Binomial(Family):
    """``y ~ Binomial(n, g^-1(eta))``: successes out of ``n`` trials per row."""

    name: ClassVar[str] = "binomial"
    links: ClassVar[tuple[str, ...]] = ("logit", "probit", "cloglog")
    needs_trials: ClassVar[bool] = True

    def _trials(self, trials):
        return 1 if trials is None else trials

    def mean(self, eta, trials=None):
        return self._trials(trials) * LINKS[self.link][1](eta)

    def likelihood(self, name, eta, params, observed, trials=None, dims=None):
        import pymc as pm

        n = self._trials(trials)
        if self.link == "logit":  # on the log-odds: no rounding of p to 0 or 1
            return _canonical(name, (eta, n), _binomial_logit,
                              lambda e, k, size: pm.Binomial.dist(n=k, logit_p=e, size=size),
                              observed, dims)  # fmt: skip
        return pm.Binomial(name, n=n, p=self.tensor_mean(eta), observed=observed, dims=dims)

    def log_density(self, y, eta, params, trials=None):
        n = self._trials(trials) * np.ones_like(y)
        log_p, log_q = _log_probabilities(self.link, eta)
        # y log p + (n - y) log(1 - p), a zero count contributing 0 even where log p = -inf
        fit = np.where(y > 0, y * log_p, 0.0) + np.where(n > y, (n - y) * log_q, 0.0)
        return special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1) + fit

    def draw(self, rng, eta, params, trials=None):
        n = np.broadcast_to(self._trials(trials), np.shape(eta)).astype(np.int64)
        return rng.binomial(n, LINKS[self.link][1](eta))

    def check_outcome(self, y, column, trials=None, trials_name=""):
        if trials is None:
            raise ValueError(
                f"family 'binomial' needs the number of trials of every row, found none; "
                f"write the response as '{column} | trials(n)' or 'p({column}, n)'"
            )
        bad = (trials < 1) | (trials != np.round(trials))
        _first_bad(f"trials {trials_name!r}", trials, bad,
                   "positive whole numbers (the trials of each row) for family 'binomial'")
        _counts(f"outcome column {column!r}", y, self.name)
        over = y > trials
        if over.any():
            row = int(np.flatnonzero(over)[0])
            raise ValueError(
                f"outcome column {column!r} must not exceed the trials {trials_name!r} for "
                f"family 'binomial', found {y[row]:g} successes out of {trials[row]:g} at row "
                f"{row} ({int(over.sum())} such row(s) in total)"
            )


@dataclass(frozen=True)
class Bernoulli(Binomial):
    """``y ~ Bernoulli(g^-1(eta))``: 0/1 outcomes, a binomial with one trial per row."""

    name: ClassVar[str] = "bernoulli"
    needs_trials: ClassVar[bool] = False

    def likelihood(self, name, eta, params, observed, trials=None, dims=None):
        import pymc as pm

        if self.link == "logit":
            return _canonical(name, (eta,), _bernoulli_logit,
                              lambda e, size: pm.Bernoulli.dist(logit_p=e, size=size),
                              observed, dims)  # fmt: skip
        return pm.Bernoulli(name, p=self.tensor_mean(eta), observed=observed, dims=dims)

    def check_outcome(self, y, column, trials=None, trials_name=""):
        _first_bad(f"outcome column {column!r}", y, (y != 0) & (y != 1),
                   "0 and 1 only for family 'bernoulli'")  # fmt: skip


@dataclass(frozen=True)
class Poisson(Family):
    """``y ~ Poisson(g^-1(eta))``: counts."""

    name: ClassVar[str] = "poisson"
    links: ClassVar[tuple[str, ...]] = ("log", "identity")

    def likelihood(self, name, eta, params, observed, trials=None, dims=None):
        import pymc as pm

        if self.link == "log":
            return _canonical(name, (eta,), _poisson_log,
                              lambda e, size: pm.Poisson.dist(mu=pm.math.exp(e), size=size),
                              observed, dims)  # fmt: skip
        return pm.Poisson(name, mu=self.tensor_mean(eta), observed=observed, dims=dims)

    def log_density(self, y, eta, params, trials=None):
        return stats.poisson.logpmf(y, self.mean(eta))

    def draw(self, rng, eta, params, trials=None):
        return rng.poisson(self.mean(eta))

    def check_outcome(self, y, column, trials=None, trials_name=""):
        _counts(f"outcome column {column!r}", y, self.name)


@dataclass(frozen=True)
class NegativeBinomial(Poisson):
    """``y ~ NegativeBinomial(mu = g^-1(eta), alpha)``, PyMC's parametrization:
    ``var(y) = mu + mu^2 / alpha`` (``alpha`` is brms's ``shape``, rstanarm's
    ``reciprocal_dispersion``; large alpha is Poisson)."""

    name: ClassVar[str] = "negbinomial"
    links: ClassVar[tuple[str, ...]] = ("log",)
    parameters: ClassVar[tuple[str, ...]] = ("alpha",)

    def likelihood(self, name, eta, params, observed, trials=None, dims=None):
        import pymc as pm

        mu = self.tensor_mean(eta)
        return pm.NegativeBinomial(name, mu=mu, alpha=params["alpha"], observed=observed,
                                   dims=dims)  # fmt: skip

    def log_density(self, y, eta, params, trials=None):
        alpha = params["alpha"]
        # scipy's (n, p): n = alpha, p = alpha / (alpha + mu)
        return stats.nbinom.logpmf(y, alpha, alpha / (alpha + self.mean(eta)))

    def draw(self, rng, eta, params, trials=None):
        alpha = np.broadcast_to(params["alpha"], np.shape(eta))
        return rng.negative_binomial(alpha, alpha / (alpha + self.mean(eta)))


#: Family name -> its class.
FAMILIES: dict[str, type[Family]] = {
    cls.name: cls
    for cls in (Gaussian, Bernoulli, Binomial, Poisson, NegativeBinomial, StudentT)
}


def family(name: str | Family | None = None, link: str | None = None) -> Family:
    """The family ``name`` (default ``"gaussian"``) with ``link`` (default: the family's
    first link); a :class:`Family` is returned as it is (``link`` must then be None or its
    own). Unknown names and links are a ValueError listing the choices."""
    if isinstance(name, Family):
        if link is not None and link != name.link:
            raise ValueError(
                f"link must be None or the family's own {name.link!r} when family is a "
                f"Family, found link={link!r}"
            )
        return name
    name = "gaussian" if name is None else choice("family", name, list(FAMILIES))
    if link is not None and not isinstance(link, str):
        raise TypeError(f"link must be a string such as 'logit', found {link!r}")
    return FAMILIES[name](link or "")


def check_design(fam: Family, design) -> None:
    """Refuse a :class:`~lmm_pymc.design.Design` whose outcome ``fam`` cannot model: trials
    given to a family other than the binomial, or values outside the family's support (each
    error names the column and the values found)."""
    from .response import parse_response

    column = design.response or "y"
    lhs = design.formula.split("~")[0] if "~" in design.formula else ""
    trials = parse_response(lhs, design.formula).trials_label if lhs.strip() else ""
    if design.trials is not None and not fam.needs_trials:
        raise ValueError(
            f"the response's trials ({trials or 'given'}) apply to family 'binomial' only, "
            f"found family={fam.name!r}; pass family='binomial' or drop the trials"
        )
    y = np.asarray(design.y, dtype=float)
    fam.check_outcome(y, column, design.trials, trials)
    if fam.is_gaussian and np.isin(y, (0.0, 1.0)).all():
        import warnings

        warnings.warn(
            f"outcome column {column!r} holds only 0 and 1: a gaussian model of it is a linear "
            "probability model; pass family='bernoulli' for a logistic mixed model",
            UserWarning,
            stacklevel=3,
        )
