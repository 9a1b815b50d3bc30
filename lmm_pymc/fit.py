"""Sample a model with NUTS and check the sampler's diagnostics."""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd

from .design import Design, GroupStatistics
from .marginal import add_random_effects, build_marginal_model
from .models import build_model
from .priors import Priors
from .simulate import SimulatedData

__all__ = [
    "DEFAULT_TARGET_ACCEPT",
    "NUTPIE_DEFAULTS",
    "SAMPLERS",
    "Diagnostics",
    "SamplingWarning",
    "as_design",
    "check_sampling_arguments",
    "diagnose",
    "fit",
    "sample_model",
    "target_accept_for",
]

#: NUTS implementations :func:`fit` can use; the first is the default. nutpie (Rust NUTS on
#: a numba-compiled log density) takes ~1/10 of PyMC's time per draw on these models
#: (``benchmarks/benchmark.py``).
SAMPLERS: tuple[str, ...] = ("nutpie", "pymc")

#: NUTS target acceptance rate per parametrization when ``target_accept=None``. The
#: marginal posterior keeps a mild funnel between the fixed effects and the group sds
#: when there are few groups (3 in the tutorial): at 0.95 about one draw in 4000 diverges,
#: at 0.99 none did in 6 sampler seeds, and a draw still costs well under a millisecond.
DEFAULT_TARGET_ACCEPT: dict[str, float] = {"marginal": 0.99, "cholesky": 0.95, "lkj_corr": 0.95}

#: nutpie options per parametrization, under the user's ``sampler_kwargs``. The marginal
#: posterior has six correlated parameters: nutpie's low-rank mass matrix update raised the
#: minimum bulk ESS per second ~1.6x on 1000 groups (benchmarks/benchmark.py).
NUTPIE_DEFAULTS: dict[str, dict] = {"marginal": {"low_rank_modified_mass_matrix": True}}

#: Scalars whose r_hat and ESS are checked after sampling.
_CHECKED = ("alpha_0", "beta_0", "sigma_g", "sigs", "rho")

#: Parametrizations to suggest on divergences, best-behaved first.
_FASTER = ("marginal", "cholesky")


class SamplingWarning(UserWarning):
    """Divergences or unconverged chains: the posterior draws may not be trustworthy."""


def as_design(
    data: Design | SimulatedData | pd.DataFrame,
    *,
    y: str = "y",
    x: str = "x",
    group: str = "group_id",
) -> Design:
    """Turn a data frame, a simulation or a design into a validated :class:`Design`."""
    if isinstance(data, Design):
        if data.y is None:
            raise ValueError(
                "data must carry an outcome y to be fitted, found a Design with y=None"
            )
        return data
    if isinstance(data, SimulatedData):
        return data.design
    if isinstance(data, pd.DataFrame):
        return Design.from_dataframe(data, y=y, x=x, group=group)
    raise ValueError(
        f"data must be a pandas DataFrame, a SimulatedData or a Design, found {type(data).__name__}"
    )


def target_accept_for(parametrization: str, target_accept: float | None = None) -> float:
    """``target_accept``, or the parametrization's default when it is None."""
    if target_accept is not None:
        return target_accept
    return DEFAULT_TARGET_ACCEPT.get(parametrization, 0.95)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, found {value!r}")
    return int(value)


def check_sampling_arguments(
    *, draws: object, tune: object, chains: object, target_accept: object, sampler: object
) -> tuple[int, int, int]:
    """Validate the sampler's options; return ``(draws, tune, chains)`` as ints."""
    draws = _positive_int("draws", draws)
    tune = _positive_int("tune", tune) if tune != 0 else 0
    chains = _positive_int("chains", chains)
    if not 0 < float(target_accept) < 1:
        raise ValueError(f"target_accept must be in (0, 1), found {target_accept!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {list(SAMPLERS)}, found {sampler!r}")
    if sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
        raise ValueError(
            "sampler='nutpie' needs the nutpie package, which is not installed; "
            "install it with `pip install 'lmm_pymc[nutpie]'` or use sampler='pymc'"
        )
    return draws, tune, chains


def sample_model(
    model,
    *,
    sampler: str = "nutpie",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    target_accept: float = 0.95,
    random_seed: int | None = None,
    progressbar: bool = True,
    sampler_kwargs: dict | None = None,
) -> az.InferenceData:
    """Run NUTS on a PyMC model with PyMC's sampler or nutpie (arguments as :func:`fit`)."""
    draws, tune, chains = check_sampling_arguments(
        draws=draws, tune=tune, chains=chains, target_accept=target_accept, sampler=sampler
    )
    if sampler == "pymc":
        import pymc as pm

        if cores is None:
            cores = max(1, min(chains, len(os.sched_getaffinity(0))))
        with model:
            return pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                target_accept=float(target_accept),
                random_seed=random_seed,
                progressbar=progressbar,
                compute_convergence_checks=False,
                **(sampler_kwargs or {}),
            )
    import nutpie

    extra = {} if cores is None else {"cores": int(cores)}
    compiled = nutpie.compile_pymc_model(model)
    start = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        **extra,
        seed=np.random.SeedSequence(random_seed).entropy % 2**32,
        target_accept=float(target_accept),
        progress_bar=progressbar,
        **(sampler_kwargs or {}),
    )
    # nutpie also stores the unconstrained values (``sigma_g_log__``, ...); PyMC does not
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


def diagnose(
    idata: az.InferenceData, *, warn: bool = True, var_names: Sequence[str] | None = None
) -> Diagnostics:
    """Count divergences and find the worst r_hat / bulk ESS of the scalar parameters.

    With ``warn=True`` a :class:`SamplingWarning` names the problem and the fix to try.
    ``var_names`` are the variables checked (default: the tutorial model's scalars).
    """
    names = [v for v in (_CHECKED if var_names is None else var_names) if v in idata.posterior]
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


def fit(
    data: Design | SimulatedData | pd.DataFrame | GroupStatistics,
    *,
    parametrization: str = "marginal",
    priors: Priors | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    target_accept: float | None = None,
    sampler: str = "nutpie",
    random_seed: int | None = None,
    progressbar: bool = True,
    y: str = "y",
    x: str = "x",
    group: str = "group_id",
    group_labels: Sequence[object] | None = None,
    sampler_kwargs: dict | None = None,
) -> az.InferenceData:
    """Fit ``y ~ 1 + x + (1 + x | group)`` with NUTS and return the posterior.

    Parameters
    ----------
    data : DataFrame, SimulatedData, Design or GroupStatistics
        Observed data; a data frame needs the columns named by ``y``, ``x`` and ``group``.
        Per-group sums (:class:`~lmm_pymc.design.GroupStatistics`, e.g. accumulated from
        files larger than memory) are enough for ``parametrization="marginal"``.
    parametrization : str
        One of :data:`lmm_pymc.PARAMETRIZATIONS`. The default ``marginal`` integrates the
        random effects out (one gradient costs O(groups), not O(rows)) and adds exact draws
        of ``random_group`` after sampling, seeded by ``random_seed``.
    priors : Priors, optional
        Prior configuration (default: the tutorial's priors).
    draws, tune, chains : int
        Posterior draws and tuning steps per chain, number of chains.
    cores : int, optional
        Chains run in parallel on this many processes (PyMC) or threads (nutpie); default
        ``min(chains, available CPUs)`` for PyMC (its own default halves the CPU count)
        and nutpie's own default (all CPUs).
    target_accept : float, optional
        NUTS target acceptance rate in (0, 1); higher means smaller steps, fewer
        divergences. Default :data:`DEFAULT_TARGET_ACCEPT` of the parametrization: 0.99 for
        ``marginal``, 0.95 for the others.
    sampler : {"nutpie", "pymc"}
        nutpie's NUTS (the default: Rust, on a numba-compiled log density; a few seconds
        of compilation, then ~10x PyMC's speed) or PyMC's own NUTS (compiles faster, in C).
    random_seed : int, optional
        Seed of the sampler; the same seed gives the same draws.
    progressbar : bool
        Show a progress bar while sampling.
    y, x, group : str
        Column names when ``data`` is a data frame.
    group_labels : sequence, optional
        Group labels when ``data`` is a ``GroupStatistics`` (default ``0 .. J-1``).
    sampler_kwargs : dict, optional
        Further options of the sampler: ``pymc.sample`` (e.g. ``init="jitter+adapt_full"``
        for a dense mass matrix) or ``nutpie.sample`` (e.g.
        ``low_rank_modified_mass_matrix=False``). With nutpie they update
        :data:`NUTPIE_DEFAULTS` of the parametrization.

    Returns
    -------
    arviz.InferenceData
        ``posterior`` with the named quantities of :mod:`lmm_pymc.models`, ``sample_stats``
        and ``observed_data``. A :class:`SamplingWarning` is raised on divergences or
        r_hat > 1.01, naming the fix to try.
    """
    target_accept = target_accept_for(parametrization, target_accept)
    draws, tune, chains = check_sampling_arguments(
        draws=draws, tune=tune, chains=chains, target_accept=target_accept, sampler=sampler
    )
    if isinstance(data, GroupStatistics):
        if parametrization != "marginal":
            raise ValueError(
                "data given as GroupStatistics can only be fitted with parametrization="
                f"'marginal', found parametrization={parametrization!r}"
            )
        stats = data
        model = build_marginal_model(stats, group_labels, priors=priors)
    else:
        design = as_design(data, y=y, x=x, group=group)
        if parametrization == "marginal":
            stats = design.group_statistics()
            group_labels = design.group_labels
            model = build_marginal_model(stats, group_labels, priors=priors)
        else:
            model = build_model(design, parametrization, priors=priors)

    if sampler == "nutpie":
        sampler_kwargs = {**NUTPIE_DEFAULTS.get(parametrization, {}), **(sampler_kwargs or {})}
    idata = sample_model(
        model,
        sampler=sampler,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        target_accept=target_accept,
        random_seed=random_seed,
        progressbar=progressbar,
        sampler_kwargs=sampler_kwargs,
    )
    if parametrization == "marginal":
        # exact conditional draws b_j | hyperparameters, y (lmm_pymc.marginal)
        labels = list(model.coords["group"])
        add_random_effects(idata, stats, seed=random_seed, group_labels=labels)
    idata.attrs["parametrization"] = parametrization
    idata.attrs["sampler"] = sampler
    diagnose(idata, warn=True)
    return idata
