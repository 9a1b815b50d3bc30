"""The settings of an SBC run: :class:`SBCConfig`, validated once and stored as JSON.

Plain data: making one builds no design and loads no PyMC (the parametrization is checked
against :data:`lmm_pymc.options.PARAMETRIZATIONS`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

from ..checks import choice, non_negative_int, positive_int
from ..options import PARAMETRIZATIONS
from ..priors import Priors
from ..sampling import SamplerConfig

__all__ = ["DEFAULT_SAMPLING", "SBCConfig"]

#: Sampler settings of every SBC fit unless given: 2 chains x 500 draws after 500 tuning
#: steps, the parametrization's default ``target_accept``, no progress bar.
DEFAULT_SAMPLING = SamplerConfig(
    draws=500, tune=500, chains=2, target_accept=None, progressbar=False
)


def _as_priors(name: str, value: object) -> Priors | None:
    if value is None or isinstance(value, Priors):
        return value
    if isinstance(value, Mapping):
        return Priors.from_dict(value)
    raise TypeError(f"{name} must be a lmm_pymc.Priors, found {type(value).__name__}")


def _simulating_priors(value: object) -> Priors:
    """The prior the parameters are drawn from: the families of ``Priors.fixed``, ``sigs``,
    ``sigma`` and ``lkj_eta`` (:func:`lmm_pymc.sbc.draw_prior`), no per-term priors."""
    priors = _as_priors("priors", value) or Priors()
    if priors.terms:
        raise ValueError(
            "priors (the simulating prior) must have no per-term priors: SBC draws every "
            "fixed effect from Priors.fixed, every sd from Priors.sigs and R from "
            f"Priors.lkj_eta, found terms {sorted(priors.terms)}"
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


def _parametrization(value: object) -> str:
    """The fitted parametrization; None is ``marginal``, the package's default for the
    tutorial's formula (one grouping factor, :func:`lmm_pymc.models.resolve_parametrization`)."""
    if value is None:
        return "marginal"
    if not isinstance(value, str):
        raise TypeError(
            f"parametrization must be a string among {list(PARAMETRIZATIONS)} or None, found "
            f"{type(value).__name__}"
        )
    return choice("parametrization", value, PARAMETRIZATIONS)


@dataclass(frozen=True)
class SBCConfig:
    """Everything that determines the result of one SBC simulation.

    Parameters
    ----------
    n_groups, n_per_group : int
        Design of every simulated data set, :func:`lmm_pymc.tutorial.design_frame`
        (default: the tutorial's 3 groups x 10 rows, ``x = 1..10``).
    priors : Priors
        Prior the parameters are drawn from (the simulating prior): any families of
        ``fixed``, ``sigs`` and ``sigma`` and the LKJ shape ``lkj_eta``; no per-term priors.
    fit_priors : Priors, optional
        Prior of the fitted model; default ``priors``. A different value makes a
        deliberately miscalibrated pair that the uniformity test must detect.
    parametrization : {"marginal", "cholesky", "lkj_corr"}, optional
        Parametrization of the fitted model; default (None) ``marginal``, the package's
        default for the tutorial's formula (one grouping factor), stored as such. Every fit
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
    priors: Priors = field(default_factory=Priors)
    fit_priors: Priors | None = None
    parametrization: str | None = None
    sampling: SamplerConfig = DEFAULT_SAMPLING
    thin: int = 5
    random_effect_groups: tuple[int, ...] = (0,)
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("n_groups", "n_per_group", "thin"):
            set_(self, name, positive_int(name, getattr(self, name)))
        if self.n_groups < 2:
            raise ValueError(f"n_groups must be >= 2, found {self.n_groups}")
        set_(self, "seed", non_negative_int("seed", self.seed))
        set_(self, "priors", _simulating_priors(self.priors))
        set_(self, "fit_priors", _as_priors("fit_priors", self.fit_priors) or self.priors)
        set_(self, "sampling", _as_sampling(self.sampling))
        set_(self, "parametrization", _parametrization(self.parametrization))
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
