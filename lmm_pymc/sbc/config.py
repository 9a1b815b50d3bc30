"""The settings of an SBC run: :class:`SBCConfig`, validated once and stored as JSON.

Plain data: making one builds no design and loads no PyMC (the parametrization is checked
against :data:`lmm_pymc.options.PARAMETRIZATIONS`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from ..checks import choice, non_negative_int, positive_int
from ..families import Family
from ..families import family as as_family
from ..options import PARAMETRIZATIONS
from ..priors import FAMILY_PARAMETERS, Priors
from ..sampling import SamplerConfig

__all__ = ["DEFAULT_SAMPLING", "LINK_SCALE_PRIORS", "SBCConfig"]

#: Sampler settings of every SBC fit unless given: 2 chains x 500 draws after 500 tuning
#: steps, the parametrization's default ``target_accept``, no progress bar.
DEFAULT_SAMPLING = SamplerConfig(
    draws=500, tune=500, chains=2, target_accept=None, progressbar=False
)


#: The simulating prior of every family other than the Gaussian unless given, on the link's
#: scale: with ``x = 1..10`` the linear predictor ``eta`` has a prior sd of about 5.6 at
#: ``x = 10`` (``sqrt(101 (0.5^2 + 0.25^2))``), so a Bernoulli's probabilities span
#: (0, 1) and a Poisson's log-mean stays where its draws are finite. ``Priors()`` (the
#: tutorial's ``Normal(0, 10)``) would put ``exp(eta)`` beyond any count.
LINK_SCALE_PRIORS = Priors(fixed="normal(0, 0.5)", sigs="halfnormal(0.25)")


def _as_priors(name: str, value: object) -> Priors | None:
    if value is None or isinstance(value, Priors):
        return value
    if isinstance(value, Mapping):
        return Priors.from_dict(value)
    raise TypeError(f"{name} must be a lmm_pymc.Priors, found {type(value).__name__}")


def _simulating_priors(value: object, fam: Family) -> Priors:
    """The prior the parameters are drawn from: the families of ``Priors.fixed``, ``sigs``,
    ``sigma`` and ``lkj_eta`` (:func:`lmm_pymc.sbc.draw_prior`); per-term priors only for
    the outcome family's own parameters other than ``sigma`` (the negative binomial's
    ``alpha``). Default: ``Priors()`` for the Gaussian, :data:`LINK_SCALE_PRIORS` else."""
    default = Priors() if fam.is_gaussian else LINK_SCALE_PRIORS
    priors = _as_priors("priors", value) or default
    own = set(fam.parameters) & set(FAMILY_PARAMETERS)
    other = sorted(set(priors.terms) - own)
    if other:
        raise ValueError(
            "priors (the simulating prior) must have no per-term priors: SBC draws every "
            "fixed effect from Priors.fixed, every sd from Priors.sigs and R from "
            f"Priors.lkj_eta (only the family's own {sorted(own)} may be named), found "
            f"terms {other}"
        )
    return priors


def _as_sampling(value: object) -> SamplerConfig:
    """``value`` as a :class:`SamplerConfig` fit for SBC (>= 2 chains, no fixed seed)."""
    if value is None:
        return DEFAULT_SAMPLING
    if isinstance(value, Mapping):
        value = SamplerConfig.from_options(None, **value)
    if not isinstance(value, SamplerConfig):
        raise TypeError(f"sampling must be a lmm_pymc.SamplerConfig, found {type(value).__name__}")
    if value.chains < 2:
        raise ValueError(f"chains must be >= 2 (r_hat needs two chains), found {value.chains}")
    if value.random_seed is not None:
        raise ValueError(
            "sampling.random_seed must be None: SBC seeds the fit of simulation i from "
            f"(seed, i), found {value.random_seed!r}"
        )
    return value


def _parametrization(value: object, fam: Family) -> str:
    """The fitted parametrization; None is the package's default for the tutorial's formula
    (:func:`lmm_pymc.models.resolve_parametrization`): ``marginal`` (one grouping factor)
    for the Gaussian, ``cholesky`` for any other family."""
    if value is None:
        return "marginal" if fam.is_gaussian else "cholesky"
    if not isinstance(value, str):
        raise TypeError(
            f"parametrization must be a string among {list(PARAMETRIZATIONS)} or None, found "
            f"{type(value).__name__}"
        )
    value = choice("parametrization", value, PARAMETRIZATIONS)
    if value == "marginal" and not fam.is_gaussian:
        raise ValueError(
            "parametrization 'marginal' integrates the random effects out, which holds for "
            f"family 'gaussian' only, found family={fam.name!r}; use 'cholesky' or 'lkj_corr'"
        )
    return value


@dataclass(frozen=True)
class SBCConfig:
    """Everything that determines the result of one SBC simulation.

    Parameters
    ----------
    n_groups, n_per_group : int
        Design of every simulated data set, :func:`lmm_pymc.tutorial.design_frame`
        (default: the tutorial's 3 groups x 10 rows, ``x = 1..10``).
    priors : Priors, optional
        Prior the parameters are drawn from (the simulating prior): any families of
        ``fixed``, ``sigs`` and ``sigma`` and the LKJ shape ``lkj_eta``; per-term priors
        only for the family's own parameters (``terms={"alpha": ...}``, otherwise
        ``alpha`` has the fit's default :data:`lmm_pymc.priors.FAMILY_PARAMETERS`).
        Default: ``Priors()`` for the Gaussian, :data:`LINK_SCALE_PRIORS` for the others.
    fit_priors : Priors, optional
        Prior of the fitted model; default ``priors``. A different value makes a
        deliberately miscalibrated pair that the uniformity test must detect.
    family, link : str, optional
        The outcome family and its link (:func:`lmm_pymc.families.family`; default
        ``gaussian``, and the family's first link), stored by name. The outcome is drawn
        from it (:func:`lmm_pymc.simulate`) and fitted with it; the ranked quantities are
        the family's (``sigma`` for the Gaussian, ``alpha`` for the negative binomial,
        neither for the others).
    trials : int
        Trials of every row of a ``binomial`` outcome (``y | trials(n) ~ ...``); unused by
        the other families.
    parametrization : {"marginal", "cholesky", "lkj_corr"}, optional
        Parametrization of the fitted model; default (None) the package's default for the
        tutorial's formula: ``marginal`` (one grouping factor) for the Gaussian,
        ``cholesky`` for the other families; stored as such. Every fit
        goes through :func:`lmm_pymc.fit` (:func:`lmm_pymc.sbc.runner.fit_simulation`).
    sampling : SamplerConfig, optional
        The sampler of every fit (default :data:`DEFAULT_SAMPLING`); at least 2 chains and
        no ``random_seed`` (simulation ``i`` seeds its fit from ``(seed, i)``). ``cores=None``
        runs PyMC's chains in one process (each Dask worker is one CPU).
    thin : int
        Keep every ``thin``-th posterior draw for the ranks (reduces autocorrelation, which
        would otherwise make calibrated ranks look non-uniform); ``L = chains * (draws //
        thin)``.
    random_effect_groups : tuple of int
        Positions of the groups whose random intercept and slope are ranked too.
    seed : int
        Root seed; simulation ``i`` uses ``SeedSequence([seed, i])``.

    Examples
    --------
    >>> cfg = SBCConfig(sampling=SamplerConfig(draws=100, tune=100, chains=2), thin=2)
    >>> cfg.parametrization, cfg.max_rank
    ('marginal', 100)
    """

    n_groups: int = 3
    n_per_group: int = 10
    priors: Priors | None = None
    fit_priors: Priors | None = None
    family: str = "gaussian"
    link: str | None = None
    parametrization: str | None = None
    sampling: SamplerConfig = DEFAULT_SAMPLING
    thin: int = 5
    random_effect_groups: tuple[int, ...] = (0,)
    seed: int = 0
    trials: int = 5

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("n_groups", "n_per_group", "thin", "trials"):
            set_(self, name, positive_int(name, getattr(self, name)))
        if self.n_groups < 2:
            raise ValueError(f"n_groups must be >= 2, found {self.n_groups}")
        set_(self, "seed", non_negative_int("seed", self.seed))
        fam = as_family(self.family, self.link)
        set_(self, "family", fam.name)
        set_(self, "link", fam.link)
        set_(self, "priors", _simulating_priors(self.priors, fam))
        set_(self, "fit_priors", _as_priors("fit_priors", self.fit_priors) or self.priors)
        set_(self, "sampling", _as_sampling(self.sampling))
        set_(self, "parametrization", _parametrization(self.parametrization, fam))
        if isinstance(self.random_effect_groups, str | bytes) or not isinstance(
            self.random_effect_groups, Sequence
        ):
            raise TypeError(
                "random_effect_groups must be a sequence of group positions, found "
                f"{type(self.random_effect_groups).__name__}"
            )
        groups = tuple(non_negative_int("random_effect_groups[...]", g)
                       for g in self.random_effect_groups)  # fmt: skip
        bad = [g for g in groups if not g < self.n_groups]
        if bad:
            raise ValueError(
                f"random_effect_groups must be group positions in 0..{self.n_groups - 1}, "
                f"found {bad}"
            )
        set_(self, "random_effect_groups", groups)
        if self.max_rank < 1:
            raise ValueError(
                f"thin={self.thin} leaves no draws of draws={self.sampling.draws} per chain"
            )

    @property
    def outcome_family(self) -> Family:
        """The :class:`~lmm_pymc.families.Family` (with its link) simulated and fitted."""
        return as_family(self.family, self.link)

    @property
    def max_rank(self) -> int:
        """``L``: ranks lie in ``0..L``."""
        return self.sampling.chains * (self.sampling.draws // self.thin)

    def to_dict(self) -> dict:
        """JSON-able form (stored beside the results to refuse resuming a different run)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["priors"] = self.priors.to_dict()
        out["fit_priors"] = self.fit_priors.to_dict()
        out["sampling"] = self.sampling.to_dict()
        out["random_effect_groups"] = list(self.random_effect_groups)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> SBCConfig:
        """Inverse of :meth:`to_dict`; unknown fields are refused."""
        if not isinstance(data, Mapping):
            raise TypeError(f"SBC config must be a mapping, found {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"SBC config has unknown field(s) {unknown}; expected {sorted(known)}")
        data = dict(data)
        if "random_effect_groups" in data:
            data["random_effect_groups"] = tuple(data["random_effect_groups"])
        return cls(**data)
