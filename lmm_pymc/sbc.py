"""Simulation-based calibration (SBC, Talts et al. 2018) of the package's model and sampler.

One simulation ``i``::

    theta_i ~ prior                  alpha_0, beta_0, sigma_g, sigs, rho  (numpy, = Priors)
    y_i     ~ model(theta_i)         the package's simulator (b_j drawn inside)
    draws   ~ posterior(. | y_i)     the package's fit, thinned
    rank    = #(draws < theta_i)     one rank in 0..L per parameter, L thinned draws

If the model and the sampler are right, every rank is uniform on ``0..L``. The runner
executes simulations on Dask distributed (a ``LocalCluster`` or any scheduler address),
writes each finished simulation atomically to ``DIR/sim_<index>.json`` and resumes from
those files: a killed run loses at most the simulations that were still running.

Randomness: simulation ``i`` draws its prior, its data and its sampler seed from
``numpy.random.SeedSequence([seed, i])``, so a result does not depend on the worker, the
order of completion or on being re-run.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
from scipy import stats

from .priors import Priors
from .simulate import SimulatedData, simulate

__all__ = [
    "SBCConfig",
    "SBCResult",
    "SBCStore",
    "draw_prior",
    "load_sbc",
    "ranks_from_draws",
    "run_one",
    "run_sbc",
    "uniformity_test",
]

#: Scalar parameters ranked in every simulation (``sigs`` has one entry per random effect).
SCALAR_NAMES: tuple[str, ...] = (
    "alpha_0",
    "beta_0",
    "sigma_g",
    "sigs[intercept]",
    "sigs[x]",
    "rho",
)

_FILE_PREFIX = "sim_"
_CONFIG_FILE = "config.json"
_RESULT_KEYS = ("index", "truth", "ranks", "max_rank", "diagnostics")


# --------------------------------------------------------------------------- configuration
def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, found {value!r}")
    return int(value)


@dataclass(frozen=True)
class SBCConfig:
    """Everything that determines the result of one SBC simulation.

    Parameters
    ----------
    n_groups, n_per_group : int
        Design of every simulated data set (default: the tutorial's 3 groups x 10 rows).
    priors : Priors
        Prior the parameters are drawn from (the simulating prior).
    fit_priors : Priors, optional
        Prior of the fitted model; default ``priors``. A different value makes a
        deliberately miscalibrated pair that the uniformity test must detect.
    parametrization : str
        Parametrization of the fitted model (see :data:`lmm_pymc.PARAMETRIZATIONS`).
    sampler : {"nutpie", "pymc"}
        With ``nutpie`` and the ``cholesky`` or ``lkj_corr`` parametrization the model is
        compiled once per worker and each data set's outcome swapped in (a fit of the
        default design then takes ~5 s); otherwise every simulation calls
        :func:`lmm_pymc.fit`, which rebuilds the model (``marginal`` with ``pymc`` adds
        exact draws of the random effects).
    draws, tune, chains : int
        NUTS draws and tuning steps per chain and number of chains of every fit.
    thin : int
        Keep every ``thin``-th posterior draw for the ranks (reduces autocorrelation, which
        would otherwise make calibrated ranks look non-uniform); ``L = chains * draws // thin``.
    target_accept : float
        NUTS target acceptance rate.
    random_effect_groups : tuple of int
        Positions of the groups whose random intercept and slope are ranked too.
    seed : int
        Root seed; simulation ``i`` uses ``SeedSequence([seed, i])``.
    """

    n_groups: int = 3
    n_per_group: int = 10
    priors: Priors = field(default_factory=Priors)
    fit_priors: Priors | None = None
    parametrization: str = "cholesky"
    sampler: str = "nutpie"
    draws: int = 500
    tune: int = 500
    chains: int = 2
    thin: int = 5
    target_accept: float = 0.95
    random_effect_groups: tuple[int, ...] = (0,)
    seed: int = 0

    def __post_init__(self) -> None:
        from .models import PARAMETRIZATIONS

        for name in ("n_groups", "n_per_group", "draws", "chains", "thin"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        if self.chains < 2:
            raise ValueError(f"chains must be >= 2 (r_hat needs two chains), found {self.chains}")
        if self.n_groups < 2:
            raise ValueError(f"n_groups must be >= 2, found {self.n_groups}")
        if (
            isinstance(self.tune, bool)
            or not isinstance(self.tune, int | np.integer)
            or self.tune < 0
        ):
            raise ValueError(f"tune must be a non-negative integer, found {self.tune!r}")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int | np.integer)
            or self.seed < 0
        ):
            raise ValueError(f"seed must be a non-negative integer, found {self.seed!r}")
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"parametrization must be one of {list(PARAMETRIZATIONS)}, "
                f"found {self.parametrization!r}"
            )
        if self.sampler not in ("nutpie", "pymc"):
            raise ValueError(f"sampler must be one of ['nutpie', 'pymc'], found {self.sampler!r}")
        if self.sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
            raise ValueError(
                "sampler='nutpie' needs the nutpie package, which is not installed; install it "
                "with `pip install 'lmm_pymc[nutpie]'` or use sampler='pymc'"
            )
        if not 0 < float(self.target_accept) < 1:
            raise ValueError(f"target_accept must be in (0, 1), found {self.target_accept!r}")
        for name in ("priors", "fit_priors"):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, Priors(**value))
            elif value is not None and not isinstance(value, Priors):
                raise ValueError(f"{name} must be a lmm_pymc.Priors, found {type(value).__name__}")
        if self.fit_priors is None:
            object.__setattr__(self, "fit_priors", self.priors)
        groups = tuple(int(g) for g in self.random_effect_groups)
        bad = [g for g in groups if not 0 <= g < self.n_groups]
        if bad:
            raise ValueError(
                f"random_effect_groups must be group positions in 0..{self.n_groups - 1}, "
                f"found {bad}"
            )
        object.__setattr__(self, "random_effect_groups", groups)
        if self.max_rank < 1:
            raise ValueError(
                f"thin={self.thin} leaves no draws of chains*draws={self.chains * self.draws}"
            )

    @property
    def max_rank(self) -> int:
        """``L``: ranks lie in ``0..L``."""
        return self.chains * (self.draws // self.thin)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the ranked quantities: the scalars, then ``b[g,intercept]``, ``b[g,x]``."""
        effects = tuple(
            f"random_group[{g},{k}]" for g in self.random_effect_groups for k in ("intercept", "x")
        )
        return SCALAR_NAMES + effects

    def to_dict(self) -> dict:
        """JSON-able form (stored beside the results to refuse resuming a different run)."""
        out = asdict(self)
        out["random_effect_groups"] = list(self.random_effect_groups)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SBCConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"SBC config has unknown field(s) {unknown}; expected {sorted(known)}")
        data = dict(data)
        data["random_effect_groups"] = tuple(data.get("random_effect_groups", (0,)))
        return cls(**data)


# --------------------------------------------------------------------------- one simulation
def draw_prior(priors: Priors, rng: np.random.Generator) -> dict[str, float]:
    """One draw of the scalar parameters from ``priors``, with numpy.

    ``alpha_0, beta_0 ~ Normal(fixed_mu, fixed_sd)``, ``sigma_g ~ HalfNormal(residual_sd)``,
    ``sigs ~ HalfNormal(group_sd)`` and, for a 2 x 2 ``R ~ LKJ(eta)``,
    ``rho = 2 Beta(eta, eta) - 1`` (the marginal of LKJ for one correlation).
    """
    alpha_0, beta_0 = rng.normal(priors.fixed_mu, priors.fixed_sd, size=2)
    sigma_g = abs(rng.normal(0.0, priors.residual_sd))
    sigs = np.abs(rng.normal(0.0, priors.group_sd, size=2))
    rho = 2.0 * rng.beta(priors.lkj_eta, priors.lkj_eta) - 1.0
    return {
        "alpha_0": float(alpha_0),
        "beta_0": float(beta_0),
        "sigma_g": float(sigma_g),
        "sigs[intercept]": float(sigs[0]),
        "sigs[x]": float(sigs[1]),
        "rho": float(rho),
    }


def simulate_from_prior(config: SBCConfig, index: int) -> tuple[dict[str, float], SimulatedData]:
    """Prior draw and data set of simulation ``index`` (seeded by ``[config.seed, index]``)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, int(index)]))
    theta = draw_prior(config.priors, rng)
    sim = simulate(
        n_groups=config.n_groups,
        n_per_group=config.n_per_group,
        beta=(theta["alpha_0"], theta["beta_0"]),
        sigmas=(theta["sigs[intercept]"], theta["sigs[x]"]),
        rho=theta["rho"],
        sigma=theta["sigma_g"],
        seed=rng,
    )
    truth = dict(theta)
    for g in config.random_effect_groups:
        truth[f"random_group[{g},intercept]"] = float(sim.truth.b[g, 0])
        truth[f"random_group[{g},x]"] = float(sim.truth.b[g, 1])
    return truth, sim


def posterior_draws(
    idata: az.InferenceData, names: Sequence[str], thin: int
) -> dict[str, np.ndarray]:
    """Thinned draws (every ``thin``-th draw of every chain, flattened) of the named quantities."""
    post = idata.posterior
    out: dict[str, np.ndarray] = {}
    for name in names:
        base, _, sel = name.partition("[")
        if base not in post:
            raise ValueError(
                f"parameter {name!r} is not in the posterior; found variables "
                f"{sorted(post.data_vars)}"
            )
        da = post[base]
        if sel:
            labels = sel.rstrip("]").split(",")
            other = [d for d in da.dims if d not in ("chain", "draw")]
            index = {}
            for dim, label in zip(other, labels, strict=True):
                index[dim] = int(label) if dim == "group" else label
            da = da.isel(group=index.pop("group")) if "group" in index else da
            da = da.sel(index) if index else da
        out[name] = np.asarray(da.isel(draw=slice(thin - 1, None, thin))).reshape(-1)
    return out


def ranks_from_draws(truth: dict[str, float], draws: dict[str, np.ndarray]) -> dict[str, int]:
    """Rank of every true value among its draws: ``#(draws < truth)``, in ``0..len(draws)``."""
    return {name: int(np.sum(draws[name] < truth[name])) for name in truth}


#: Parametrizations whose observed ``y`` can be swapped in a compiled nutpie model.
_SWAPPABLE = ("cholesky", "lkj_corr")

#: nutpie models compiled in this process, by the configuration that shapes them.
_COMPILED: dict[str, object] = {}


def _with_shared_outcome(model):
    """The same model with the observed ``y`` held in a shared variable ``y_obs``, so that
    one compiled model serves every data set of the same design."""
    import pytensor
    from pymc.model.fgraph import fgraph_from_model, model_from_fgraph

    fgraph, _ = fgraph_from_model(model)
    node = next(n for n in fgraph.toposort() if type(n.op).__name__ == "ModelObservedRV")
    observed = node.inputs[1]
    shared = pytensor.shared(np.asarray(observed.data), name="y_obs")
    fgraph.replace(observed, shared, import_missing=True)
    return model_from_fgraph(fgraph, mutate_fgraph=True)


def _fit_nutpie(config: SBCConfig, sim: SimulatedData, seed: int) -> az.InferenceData:
    import nutpie

    from .models import build_model

    key = json.dumps(
        {
            k: config.to_dict()[k]
            for k in ("n_groups", "n_per_group", "fit_priors", "parametrization")
        },  # fmt: skip
        sort_keys=True,
    )
    if key not in _COMPILED:
        model = _with_shared_outcome(
            build_model(sim.design, config.parametrization, priors=config.fit_priors)
        )
        _COMPILED[key] = nutpie.compile_pymc_model(model)
    compiled = _COMPILED[key].with_data(y_obs=sim.design.y)
    idata = nutpie.sample(
        compiled,
        draws=config.draws,
        tune=config.tune,
        chains=config.chains,
        seed=seed,
        target_accept=float(config.target_accept),
        progress_bar=False,
    )
    post = idata.posterior
    if "sigs" not in post and "chol_cov_stds" in post:
        # the model round trip keeps PyMC's own name of the sds of LKJCholeskyCov
        stds = post["chol_cov_stds"]
        idata.posterior["sigs"] = stds.rename({stds.dims[-1]: "random_effect"}).assign_coords(
            random_effect=list(sim.design.random_names)
        )
    return idata


def run_one(config: SBCConfig | dict, index: int) -> dict:
    """Run simulation ``index``: prior draw, simulate, fit, ranks and sampler diagnostics.

    Returns a JSON-able dict with ``index, truth, ranks, max_rank, diagnostics, seconds``.
    """
    from .fit import diagnose, fit

    config = SBCConfig.from_dict(config) if isinstance(config, dict) else config
    start = time.perf_counter()
    truth, sim = simulate_from_prior(config, index)
    sampler_seed = int(np.random.SeedSequence([config.seed, int(index), 1]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-fit diagnostics are stored, not warned
        if config.sampler == "nutpie" and config.parametrization in _SWAPPABLE:
            idata = _fit_nutpie(config, sim, sampler_seed)
        else:  # rebuilds (and, with nutpie, recompiles) the model for every data set
            idata = fit(
                sim,
                parametrization=config.parametrization,
                priors=config.fit_priors,
                draws=config.draws,
                tune=config.tune,
                chains=config.chains,
                cores=1,
                target_accept=config.target_accept,
                sampler=config.sampler,
                random_seed=sampler_seed,
                progressbar=False,
            )
        diag = diagnose(idata, warn=False)
    draws = posterior_draws(idata, list(truth), config.thin)
    return {
        "index": int(index),
        "truth": truth,
        "ranks": ranks_from_draws(truth, draws),
        "max_rank": int(min(len(v) for v in draws.values())),
        "diagnostics": {
            "divergences": int(diag.divergences),
            "max_r_hat": float(diag.max_r_hat),
            "min_ess_bulk": float(diag.min_ess_bulk),
        },
        "seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------- storage
class SBCStore:
    """One JSON file per finished simulation in a directory, written atomically.

    ``sim_000012.json`` holds simulation 12. A result is first written to a temporary file
    in the same directory and then moved into place with :func:`os.replace`, so a reader
    (or a resumed run) sees either no file or a complete one, whatever kills the writer.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def path(self, index: int) -> Path:
        return self.directory / f"{_FILE_PREFIX}{int(index):06d}.json"

    def _write_json(self, path: Path, payload: dict) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(payload, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def prepare(self, config: SBCConfig) -> None:
        """Create the directory, store ``config`` or check it equals the stored one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f".{_FILE_PREFIX}*.tmp"):
            stale.unlink(missing_ok=True)  # partial writes of a killed run
        stored = self.config()
        if stored is None:
            self._write_json(self.directory / _CONFIG_FILE, config.to_dict())
        elif stored != config:
            a, b = stored.to_dict(), config.to_dict()
            diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
            raise ValueError(
                f"out directory {str(self.directory)!r} holds an SBC run with a different "
                f"configuration (field: (stored, requested)) {diff}; use a new directory or "
                "the stored settings to resume"
            )

    def config(self) -> SBCConfig | None:
        path = self.directory / _CONFIG_FILE
        if not path.exists():
            return None
        return SBCConfig.from_dict(self._read(path))

    def write(self, result: dict) -> Path:
        path = self.path(result["index"])
        self._write_json(path, result)
        return path

    def _read(self, path: Path) -> dict:
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"SBC result file {str(path)!r} is corrupted (not valid JSON: {err}); "
                "delete it and re-run to redo that simulation"
            ) from None
        if not isinstance(data, dict):
            raise ValueError(
                f"SBC result file {str(path)!r} is corrupted: expected a JSON object, "
                f"found {type(data).__name__}"
            )
        return data

    def read(self, index_or_path: int | Path) -> dict:
        path = self.path(index_or_path) if isinstance(index_or_path, int) else index_or_path
        data = self._read(path)
        missing = [k for k in _RESULT_KEYS if k not in data]
        if missing:
            raise ValueError(
                f"SBC result file {str(path)!r} is corrupted: missing key(s) {missing}, "
                f"expected {list(_RESULT_KEYS)}"
            )
        if set(data["ranks"]) != set(data["truth"]):
            raise ValueError(
                f"SBC result file {str(path)!r} is corrupted: ranks for {sorted(data['ranks'])} "
                f"but truth for {sorted(data['truth'])}"
            )
        return data

    def finished(self) -> list[int]:
        """Indices of the finished simulations, sorted."""
        if not self.directory.exists():
            return []
        out = []
        for p in self.directory.glob(f"{_FILE_PREFIX}*.json"):
            stem = p.stem[len(_FILE_PREFIX) :]
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)


# --------------------------------------------------------------------------- uniformity
@functools.lru_cache(maxsize=64)
def _band(n: int, max_rank: int, prob: float, n_points: int) -> tuple[np.ndarray, ...]:
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    # ranks r in 0..L; P(r < k) = k / (L + 1): evaluate at z_k = k / (L + 1), k = 1..L,
    # where the discrete uniform's ECDF equals the continuous uniform CDF exactly.
    k = np.unique(np.linspace(1, max_rank, min(n_points, max_rank)).round().astype(int))
    z = k / (max_rank + 1)
    lower, upper = ecdf_confidence_band(n, z, z, prob=prob, method="optimized")
    return k, z, lower, upper


def uniformity_test(
    ranks: Iterable[int],
    max_rank: int,
    *,
    prob: float = 0.95,
    n_bins: int | None = None,
    n_points: int = 100,
) -> dict[str, float | bool]:
    """Is a sample of ranks in ``0..max_rank`` uniform?

    The decision uses the ECDF simultaneous confidence band of Säilynoja, Bürkner and
    Vehtari (2022), computed by :func:`arviz.stats.ecdf_utils.ecdf_confidence_band`: the
    ranks pass when their ECDF stays inside the band at every evaluation point. Under
    uniformity that happens with probability ``prob``. A chi-square test on binned ranks
    is reported beside it.

    Returns
    -------
    dict
        ``passed``, ``prob``, ``max_ecdf_excess`` (largest distance outside the band,
        0 when inside), ``chi2``, ``chi2_p_value``, ``n_bins``, ``n``.
    """
    r = np.asarray(list(ranks), dtype=int)
    max_rank = _positive_int("max_rank", max_rank)
    if r.size < 2:
        raise ValueError(f"ranks must hold at least 2 simulations, found {r.size}")
    if r.min() < 0 or r.max() > max_rank:
        raise ValueError(f"ranks must lie in 0..{max_rank}, found {r.min()}..{r.max()}")
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), found {prob!r}")
    n = r.size
    k, _, lower, upper = _band(n, max_rank, prob, n_points)
    ecdf = (r[None, :] < k[:, None]).mean(axis=1)
    excess = float(np.max(np.maximum(lower - ecdf, ecdf - upper).clip(min=0.0)))
    # bins of equal probability: L + 1 rank values split into n_bins groups, ~5 per bin
    n_bins = n_bins or int(max(2, min(max_rank + 1, n // 5, 20)))
    edges = np.linspace(0, max_rank + 1, n_bins + 1)
    observed, _ = np.histogram(r, bins=edges)
    expected = n * np.diff(np.floor(edges)) / (max_rank + 1)
    chi2, p_value = stats.chisquare(observed, expected * observed.sum() / expected.sum())
    return {
        "passed": excess == 0.0,
        "prob": float(prob),
        "max_ecdf_excess": excess,
        "chi2": float(chi2),
        "chi2_p_value": float(p_value),
        "n_bins": int(n_bins),
        "n": int(n),
    }


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SBCResult:
    """Finished SBC simulations.

    Attributes
    ----------
    table : pandas.DataFrame
        Tidy: one row per simulation and parameter with ``simulation, parameter, truth,
        rank, max_rank, divergences, max_r_hat, min_ess_bulk, seconds``.
    config : SBCConfig
    """

    table: pd.DataFrame
    config: SBCConfig

    @property
    def n_simulations(self) -> int:
        return int(self.table["simulation"].nunique())

    @property
    def parameters(self) -> list[str]:
        return list(dict.fromkeys(self.table["parameter"]))

    def diagnostics(self) -> pd.DataFrame:
        """Per-fit diagnostics, one row per simulation."""
        cols = ["simulation", "divergences", "max_r_hat", "min_ess_bulk", "seconds"]
        return self.table[cols].drop_duplicates("simulation").reset_index(drop=True)

    def ranks(self) -> pd.DataFrame:
        """Wide table of ranks: simulations x parameters."""
        return self.table.pivot(index="simulation", columns="parameter", values="rank")[
            self.parameters
        ]

    def uniformity(
        self, *, prob: float = 0.95, parameters: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """:func:`uniformity_test` for every parameter, at family-wise level ``prob``.

        Each parameter is tested at ``1 - (1 - prob) / m`` for ``m`` parameters (Bonferroni),
        so a calibrated model passes all of them with probability at least ``prob``.
        """
        names = list(parameters) if parameters is not None else self.parameters
        per = 1.0 - (1.0 - prob) / len(names)
        wide = self.ranks()
        rows = []
        for name in names:
            res = uniformity_test(wide[name].dropna().astype(int), self.config.max_rank, prob=per)
            rows.append({"parameter": name, **res})
        return pd.DataFrame(rows)

    def to_inference_data(self) -> az.InferenceData:
        """ArviZ form: group ``ranks`` and ``truth`` (one chain, draw = simulation), and
        ``sample_stats`` with the per-fit diagnostics."""
        wide = self.ranks()
        truth = self.table.pivot(index="simulation", columns="parameter", values="truth")
        diag = self.diagnostics().set_index("simulation").loc[wide.index]

        def as_dataset(frame: pd.DataFrame):
            data = {str(c): frame[c].to_numpy()[None, :] for c in frame.columns}
            return az.dict_to_dataset(data, coords={"draw": wide.index.to_numpy()})

        idata = az.InferenceData(
            truth=as_dataset(truth[self.parameters]),
            ranks=as_dataset(wide),
            sample_stats=as_dataset(diag),
        )
        idata.attrs["max_rank"] = self.config.max_rank
        return idata

    def plot_ecdf(self, path: str | os.PathLike, *, prob: float = 0.95) -> Path:
        """ECDF-difference plot (ECDF minus uniform CDF) of every parameter's ranks with its
        simultaneous ``1 - (1 - prob) / m`` band, written to ``path``."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        names = self.parameters
        per = 1.0 - (1.0 - prob) / len(names)
        wide, L = self.ranks(), self.config.max_rank
        ncol = min(4, len(names))
        nrow = math.ceil(len(names) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
        k, z, lower, upper = _band(len(wide), L, per, 100)
        for ax, name in zip(axes.flat, names, strict=False):
            r = wide[name].to_numpy(dtype=int)
            ecdf = (r[None, :] < k[:, None]).mean(axis=1)
            ax.fill_between(z, lower - z, upper - z, step="mid", color="C0", alpha=0.25)
            inside = (ecdf >= lower) & (ecdf <= upper)
            ax.step(z, ecdf - z, where="mid", color="C0" if inside.all() else "C3")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("fractional rank")
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        fig.suptitle(
            f"SBC: ECDF - uniform, {len(wide)} simulations, {per:.4f} simultaneous bands",
            fontsize=10,
        )
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return Path(path)

    def plot_histograms(self, path: str | os.PathLike, *, n_bins: int | None = None) -> Path:
        """Rank histograms with the 99% range of a bin count under uniformity."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        names = self.parameters
        wide, L = self.ranks(), self.config.max_rank
        n = len(wide)
        n_bins = n_bins or int(max(2, min(L + 1, n // 5, 20)))
        edges = np.linspace(0, L + 1, n_bins + 1)
        ncol = min(4, len(names))
        nrow = math.ceil(len(names) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
        lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / n_bins)
        for ax, name in zip(axes.flat, names, strict=False):
            ax.hist(wide[name].to_numpy(), bins=edges, color="C0", alpha=0.8)
            ax.axhspan(lo, hi, color="grey", alpha=0.25)
            ax.axhline(n / n_bins, color="k", lw=0.5)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel(f"rank (0..{L})")
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return Path(path)


def load_sbc(directory: str | os.PathLike, *, n_simulations: int | None = None) -> SBCResult:
    """Read the finished simulations of an SBC run (the first ``n_simulations`` if given).

    Raises
    ------
    ValueError
        If the directory holds no SBC run, or a result file is corrupted (the error names it).
    """
    store = SBCStore(directory)
    config = store.config()
    if config is None:
        raise ValueError(f"directory {str(directory)!r} holds no SBC run (no {_CONFIG_FILE})")
    indices = store.finished()
    if n_simulations is not None:
        indices = [i for i in indices if i < n_simulations]
    rows = []
    for i in indices:
        res = store.read(i)
        for name, rank in res["ranks"].items():
            rows.append(
                {
                    "simulation": int(res["index"]),
                    "parameter": name,
                    "truth": float(res["truth"][name]),
                    "rank": int(rank),
                    "max_rank": int(res["max_rank"]),
                    **res["diagnostics"],
                    "seconds": float(res.get("seconds", np.nan)),
                }
            )
    columns = ["simulation", "parameter", "truth", "rank", "max_rank", "divergences",
               "max_r_hat", "min_ess_bulk", "seconds"]  # fmt: skip
    return SBCResult(table=pd.DataFrame(rows, columns=columns), config=config)


# --------------------------------------------------------------------------- runner
def run_sbc(
    n_simulations: int,
    out: str | os.PathLike,
    config: SBCConfig | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    window: int | None = None,
    progressbar: bool = True,
    task: Callable[[dict, int], dict] = run_one,
) -> SBCResult:
    """Run (or resume) ``n_simulations`` SBC simulations on Dask distributed.

    Parameters
    ----------
    n_simulations : int
        Simulations ``0..n_simulations-1``; those already in ``out`` are not run again.
    out : path
        Directory of the run: ``config.json`` and one ``sim_<index>.json`` per simulation.
    config : SBCConfig, optional
        Default ``SBCConfig()``; on resume it must equal the stored one (default: the stored
        one).
    workers : int, optional
        Worker processes of the ``LocalCluster`` (one thread each); default: the CPUs
        available. Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``) to run on a cluster; the
        workers need ``lmm_pymc`` installed. Results come back to this process, which writes
        them, so the workers need no shared file system.
    window : int, optional
        At most this many simulations are submitted at a time (bounded memory on the
        scheduler and here); default ``2 * workers``.
    progressbar : bool
        Show a tqdm progress bar.
    task : callable
        ``task(config_dict, index) -> result dict``; the default :func:`run_one`. Must be
        importable by the workers.

    Returns
    -------
    SBCResult
        All finished simulations with index below ``n_simulations``.
    """
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    n_simulations = _positive_int("n_simulations", n_simulations)
    store = SBCStore(out)
    config = config if config is not None else (store.config() or SBCConfig())
    store.prepare(config)
    done = set(store.finished())
    for i in sorted(done):
        store.read(i)  # a corrupted file stops the run here, naming the file
    todo = [i for i in range(n_simulations) if i not in done]
    if not todo:
        return load_sbc(out, n_simulations=n_simulations)

    if scheduler is None:
        workers = _positive_int("workers", workers or len(os.sched_getaffinity(0)))
    elif workers is not None:
        workers = _positive_int("workers", workers)
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: runs side by side do not collide
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        n_workers = workers or max(1, len(client.scheduler_info()["workers"]))
        window = _positive_int("window", window or 2 * n_workers)
        payload = config.to_dict()
        # task keys unique to this configuration: runs sharing a scheduler never mix results
        token = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
        queue = iter(todo)
        bar = tqdm(total=n_simulations, initial=len(done), disable=not progressbar, desc="SBC")
        pending = as_completed()
        for i in queue:
            pending.add(client.submit(task, payload, i, key=f"sbc-{i}-{token}", pure=False))
            if pending.count() >= window:
                break
        for future in pending:
            result = future.result()
            future.release()
            store.write(result)
            bar.update(1)
            nxt = next(queue, None)
            if nxt is not None:
                pending.add(client.submit(task, payload, nxt, key=f"sbc-{nxt}-{token}",
                                          pure=False))  # fmt: skip
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return load_sbc(out, n_simulations=n_simulations)
