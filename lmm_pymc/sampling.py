"""NUTS on a built model: one sampler configuration, nutpie or PyMC, and diagnostics.

:class:`SamplerConfig` is validated once, where it is made, and used as it is by
:func:`lmm_pymc.fit`, SBC, the Stan cross-check and the command line.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

import arviz as az
import numpy as np

from .checks import choice, non_negative_int, positive_int, probability
from .options import SAMPLERS

__all__ = [
    "DEFAULT_TARGET_ACCEPT",
    "NUTPIE_DEFAULTS",
    "RICH_LEVELS",
    "RICH_TARGET_ACCEPT",
    "SAMPLERS",
    "Diagnostics",
    "SamplerConfig",
    "SamplingWarning",
    "diagnose",
    "sample_compiled",
    "sample_model",
    "trials_per_level",
]

#: NUTS target acceptance rate per parametrization when ``target_accept=None``: the
#: marginal posterior keeps a mild funnel between the fixed effects and the group sds when
#: there are few groups, as does the centred ``lkj_corr`` between the sds and the effects
#: (measurements: docs/measurements.md).
DEFAULT_TARGET_ACCEPT: Mapping[str, float] = MappingProxyType(
    {"marginal": 0.99, "cholesky": 0.95, "lkj_corr": 0.99}
)

#: With at least this many levels in every factor the marginal posterior has no funnel left
#: and ``marginal`` defaults to :data:`MANY_GROUPS_TARGET_ACCEPT`, which takes a third to a
#: quarter of the leapfrog steps of 0.99 without divergences (docs/measurements.md).
MANY_GROUPS = 20
MANY_GROUPS_TARGET_ACCEPT = 0.9

#: A ``cholesky`` model of a binary or binomial outcome whose every factor's median level
#: holds at least this many trials (rows; a binomial's trials) defaults to :data:`RICH_TARGET_ACCEPT` and
#: nutpie's low-rank mass matrix: with that much data per level 0.8 takes half the leapfrog
#: steps of 0.95 without divergences, and the low-rank update follows the correlation of
#: the fixed effects with the sums of the effects (an intercept, an item-level predictor);
#: with 3 to 6 rows per level (lme4's grouseticks) both fail, and counts, which carry
#: more information per row, diverged at 20 rows per level (docs/measurements.md). Nearly
#: separated binary data diverge at 0.8 too: :func:`sample_model` then runs them again at 0.95.
RICH_LEVELS = 20
RICH_TARGET_ACCEPT = 0.8


def _rich(parametrization: str, trials_per_level: float | None) -> bool:
    return (parametrization == "cholesky" and trials_per_level is not None
            and trials_per_level >= RICH_LEVELS)  # fmt: skip

#: nutpie options per parametrization, under the user's ``sampler_kwargs``: the marginal
#: posterior has few, correlated parameters, which nutpie's low-rank mass matrix update
#: suits; so has the centred ``lkj_corr`` one (its funnel between the sds and the effects:
#: 9-25 leapfrog steps per draw instead of 100-180; docs/measurements.md).
NUTPIE_DEFAULTS: Mapping[str, Mapping[str, object]] = MappingProxyType({
    "marginal": MappingProxyType({"low_rank_modified_mass_matrix": True}),
    "lkj_corr": MappingProxyType({"low_rank_modified_mass_matrix": True}),
})  # fmt: skip

#: Parametrizations to suggest on divergences, best-behaved first.
_FASTER = ("marginal", "cholesky")


class SamplingWarning(UserWarning):
    """Divergences or unconverged chains: the posterior draws may not be trustworthy."""


@dataclass(frozen=True)
class SamplerConfig:
    """How to run NUTS; validated when made.

    Parameters
    ----------
    draws, tune, chains : int
        Posterior draws and tuning steps per chain (``tune`` may be 0), number of chains.
    cores : int, optional
        Chains run in parallel on this many processes (PyMC) or threads (nutpie); default
        ``min(chains, available CPUs)`` for PyMC (its own default halves the CPU count) and
        nutpie's own default (all CPUs).
    target_accept : float, optional
        NUTS target acceptance rate in (0, 1); higher means smaller steps, fewer
        divergences. Default :data:`DEFAULT_TARGET_ACCEPT` of the parametrization: 0.99 for
        ``marginal`` (0.9 when every factor has >= :data:`MANY_GROUPS` levels) and
        ``lkj_corr``, 0.95 for ``cholesky``.
    sampler : {"nutpie", "pymc"}
        nutpie's NUTS (the default: Rust, on a numba-compiled log density; a few seconds of
        compilation, then ~10x PyMC's speed) or PyMC's own NUTS.
    random_seed : int, optional
        Seed of the sampler (and of the exact random-effect draws of ``marginal``).
    progressbar : bool
        Show a progress bar while sampling.
    sampler_kwargs : mapping, optional
        Further options of ``pymc.sample`` (e.g. ``init="jitter+adapt_full"``) or
        ``nutpie.sample`` (e.g. ``low_rank_modified_mass_matrix=False``); with nutpie they
        update :data:`NUTPIE_DEFAULTS` of the parametrization.

    Examples
    --------
    >>> SamplerConfig(draws=500, chains=2).target_accept_for("marginal")
    0.99
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    cores: int | None = None
    target_accept: float | None = None
    sampler: str = SAMPLERS[0]
    random_seed: int | None = None
    progressbar: bool = True
    sampler_kwargs: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "draws", positive_int("draws", self.draws))
        set_(self, "tune", non_negative_int("tune", self.tune))
        set_(self, "chains", positive_int("chains", self.chains))
        if self.cores is not None:
            set_(self, "cores", positive_int("cores", self.cores))
        if self.target_accept is not None:
            set_(self, "target_accept", probability("target_accept", self.target_accept))
        choice("sampler", self.sampler, SAMPLERS)
        if self.sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
            raise ValueError(
                "sampler='nutpie' needs the nutpie package, which is not installed; "
                "install it with `pip install nutpie` or use sampler='pymc'"
            )
        if self.random_seed is not None:
            set_(self, "random_seed", non_negative_int("random_seed", self.random_seed))
        if not isinstance(self.sampler_kwargs, Mapping):
            raise TypeError(
                f"sampler_kwargs must be a mapping of option names to values, found "
                f"{type(self.sampler_kwargs).__name__}"
            )
        set_(self, "sampler_kwargs", MappingProxyType(dict(self.sampler_kwargs)))
        set_(self, "progressbar", bool(self.progressbar))

    @classmethod
    def from_options(cls, config: SamplerConfig | None = None, **options: object) -> SamplerConfig:
        """``config`` updated by keyword ``options`` (field names), or a new configuration.

        Raises
        ------
        ValueError
            On an unknown option name.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"sampler options must be among {sorted(known)}, found unknown {unknown}"
            )
        if config is None:
            return cls(**options)
        if not isinstance(config, SamplerConfig):
            raise TypeError(
                f"sampling must be a lmm_pymc.SamplerConfig, found {type(config).__name__}"
            )
        return replace(config, **options) if options else config

    def target_accept_for(
        self, parametrization: str, n_groups: int | None = None,
        trials_per_level: float | None = None,
    ) -> float:  # fmt: skip
        """``target_accept``, or the parametrization's default when it is None
        (:data:`MANY_GROUPS_TARGET_ACCEPT` for ``marginal`` when ``n_groups``, the fewest
        levels of any factor, is >= :data:`MANY_GROUPS`; :data:`RICH_TARGET_ACCEPT` for
        ``cholesky`` when ``trials_per_level``, a binary or binomial outcome's smallest
        median trials per level of a factor, is >= :data:`RICH_LEVELS`)."""
        if self.target_accept is not None:
            return self.target_accept
        if parametrization == "marginal" and n_groups is not None and n_groups >= MANY_GROUPS:
            return MANY_GROUPS_TARGET_ACCEPT
        if _rich(parametrization, trials_per_level):
            return RICH_TARGET_ACCEPT
        return DEFAULT_TARGET_ACCEPT.get(parametrization, 0.95)

    def kwargs_for(
        self, parametrization: str, trials_per_level: float | None = None
    ) -> dict[str, object]:
        """Sampler options: nutpie's defaults of the parametrization (and of a data-rich
        GLMM, :data:`RICH_LEVELS`) under the user's."""
        if self.sampler != "nutpie":
            return dict(self.sampler_kwargs)
        base = dict(NUTPIE_DEFAULTS.get(parametrization, {}))
        if _rich(parametrization, trials_per_level):
            base["low_rank_modified_mass_matrix"] = True
        return {**base, **self.sampler_kwargs}

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["sampler_kwargs"] = dict(self.sampler_kwargs)
        return out


def sample_model(
    model, config: SamplerConfig, parametrization: str, n_groups: int | None = None,
    trials_per_level: float | None = None,
) -> az.InferenceData:  # fmt: skip
    """Run NUTS on a PyMC model as ``config`` says; PyMC-shaped InferenceData either way
    (nutpie's unconstrained values dropped, ``posterior.attrs["sampling_time"]`` and
    ``["target_accept"]`` set).
    ``n_groups`` (the fewest levels of any factor of a ``marginal`` model) and
    ``trials_per_level`` (a binary or binomial outcome's, :func:`trials_per_level`) set the default
    target_accept (:meth:`SamplerConfig.target_accept_for`). Where that default is the
    data-rich one (:data:`RICH_TARGET_ACCEPT`) and the chains diverge, they are run again at
    the parametrization's cautious default (nearly separated binary data diverge at 0.8,
    not at 0.95); ``posterior.attrs["first_run"]`` says so and ``sampling_time`` counts
    both runs."""
    run = _runner(model, config.sampler, parametrization, n_groups)
    idata = run(_resolved(config, parametrization, n_groups, trials_per_level))
    if config.target_accept is None and _rich(parametrization, trials_per_level):
        divergent = int(idata.sample_stats["diverging"].sum())
        if divergent:
            first = (f"{divergent} divergences at target_accept {RICH_TARGET_ACCEPT} "
                     f"(the default for data-rich binary outcomes)")  # fmt: skip
            seconds = float(idata.posterior.attrs.get("sampling_time", 0.0))
            idata = run(_resolved(config, parametrization, n_groups, None))
            idata.posterior.attrs["first_run"] = first
            idata.posterior.attrs["sampling_time"] = (
                seconds + float(idata.posterior.attrs.get("sampling_time", 0.0)))
    return idata


def _resolved(config: SamplerConfig, parametrization: str, n_groups: int | None,
              trials_per_level: float | None) -> SamplerConfig:  # fmt: skip
    """``config`` with its target_accept and sampler options resolved for the model."""
    return replace(
        config,
        target_accept=config.target_accept_for(parametrization, n_groups, trials_per_level),
        sampler_kwargs=config.kwargs_for(parametrization, trials_per_level),
    )


def _runner(model, sampler: str, parametrization: str, n_groups: int | None):
    """A function of a resolved :class:`SamplerConfig` sampling ``model`` (compiled once)."""
    if sampler == "pymc":
        import pymc as pm

        def run_pymc(config: SamplerConfig) -> az.InferenceData:
            cores = config.cores or max(1, min(config.chains, len(os.sched_getaffinity(0))))
            with model:
                idata = pm.sample(
                    draws=config.draws, tune=config.tune, chains=config.chains, cores=cores,
                    target_accept=config.target_accept, random_seed=config.random_seed,
                    progressbar=config.progressbar, compute_convergence_checks=False,
                    **config.sampler_kwargs,
                )  # fmt: skip
            idata.posterior.attrs["target_accept"] = config.target_accept
            return idata

        return run_pymc
    from .compiled import compile_model

    compiled, start = compile_model(model), getattr(model, "lmm_start_point", None)

    def run_nutpie(config: SamplerConfig) -> az.InferenceData:
        idata = sample_compiled(compiled, config, parametrization, n_groups, start=start)
        idata.posterior.attrs["target_accept"] = config.target_accept
        return idata

    return run_nutpie


def trials_per_level(design) -> float | None:
    """The smallest, over the grouping factors, of the median trials per level (rows; for
    a binomial the rows' trials), or None without rows or factors."""
    factors = getattr(design, "factors", ())
    if not factors or getattr(design, "y", None) is None:
        return None
    trials = getattr(design, "trials", None)
    medians = [np.median(np.bincount(f.index, weights=trials, minlength=f.n_levels))
               for f in factors]  # fmt: skip
    return float(min(medians))


def sample_compiled(
    compiled,
    config: SamplerConfig,
    parametrization: str,
    n_groups: int | None = None,
    start=None,
) -> az.InferenceData:
    """nutpie's NUTS on an already compiled model (:func:`lmm_pymc.compiled.compile_model`),
    as :func:`sample_model` does; ``start``: where the chains start
    (:func:`lmm_pymc.initial.start_point`), PyMC's initial point if None or empty."""
    import nutpie

    from .initial import jittered_start

    if start:
        compiled = replace(compiled, initial_point_func=jittered_start(
            compiled.initial_point_func, start, compiled.shape_info))  # fmt: skip

    extra = config.kwargs_for(parametrization)
    if config.cores is not None:
        extra = {"cores": config.cores, **extra}
    start = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=config.draws,
        tune=config.tune,
        chains=config.chains,
        seed=np.random.SeedSequence(config.random_seed).entropy % 2**32,
        target_accept=config.target_accept_for(parametrization, n_groups),
        progress_bar=config.progressbar,
        **extra,
    )
    # nutpie also stores the unconstrained values (``sigma_log__``, ...); PyMC does not
    unconstrained = [v for v in idata.posterior.data_vars if str(v).endswith("__")]
    idata.posterior = idata.posterior.drop_vars(unconstrained)
    # seconds of tuning and sampling, under the attribute name PyMC uses
    idata.posterior.attrs["sampling_time"] = time.perf_counter() - start
    return idata


@dataclass(frozen=True)
class Diagnostics:
    """Sampler health: divergences after tuning, worst r_hat and smallest bulk ESS."""

    divergences: int
    max_r_hat: float
    min_ess_bulk: float
    worst_r_hat_parameter: str

    @property
    def ok(self) -> bool:
        """No divergences and r_hat <= 1.01 (r_hat is NaN, so unchecked, with one chain)."""
        return self.divergences == 0 and not self.max_r_hat > 1.01


#: The variables whose r_hat and ESS are checked by default: every model's scalars (those
#: present: no ``sigma`` for a binary or count outcome, the negative binomial's ``alpha``).
CHECKED: tuple[str, ...] = ("beta", "sigma", "sigs", "alpha", "nu")


def diagnose(
    idata: az.InferenceData, *, warn: bool = True, var_names: Sequence[str] | None = None
) -> Diagnostics:
    """Count divergences and find the worst r_hat / bulk ESS (unrounded).

    With ``warn=True`` a :class:`SamplingWarning` names the problem and the fix to try.
    ``var_names`` are the variables checked (default ``beta``, ``sigma``, ``sigs``).
    """
    names = [v for v in (CHECKED if var_names is None else var_names) if v in idata.posterior]
    summary = az.summary(idata, var_names=names, kind="diagnostics", round_to="none")
    divergences = int(idata.sample_stats["diverging"].sum()) if "sample_stats" in idata else 0
    r_hat = summary["r_hat"].astype(float).dropna()  # r_hat needs >= 2 chains
    diag = Diagnostics(
        divergences=divergences,
        max_r_hat=float(r_hat.max()) if len(r_hat) else float("nan"),
        min_ess_bulk=float(summary["ess_bulk"].min()),
        worst_r_hat_parameter=str(r_hat.idxmax()) if len(r_hat) else "",
    )
    if warn and divergences:
        n_draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
        used = idata.attrs.get("parametrization")
        other = [p for p in _FASTER if p != used]
        switch = f", or parametrization={other[0]!r}" if other else ""
        warnings.warn(
            f"{divergences} divergent transitions in {n_draws} draws: NUTS could not follow the "
            "posterior's geometry (typically the funnel of group sds near 0). Try "
            f"target_accept=0.99{switch}.",
            SamplingWarning,
            stacklevel=2,
        )
    if warn and diag.max_r_hat > 1.01:
        warnings.warn(
            f"r_hat = {diag.max_r_hat:.3f} > 1.01 for {diag.worst_r_hat_parameter}: the chains "
            "disagree. Try more tuning and draws (e.g. tune=2000, draws=2000) or more chains.",
            SamplingWarning,
            stacklevel=2,
        )
    return diag
