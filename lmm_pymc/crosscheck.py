"""Prove that a PyMC model and its reference Stan program are the same model.

For a data set and a parametrization, :func:`crosscheck` takes parameter points (prior
draws and draws of a short PyMC posterior run), maps every point to the Stan program's
parameters by name, and compares

* the log density on the constrained scale (no Jacobian of the constraining transforms):
  the differences between points must agree to a relative ``rtol`` (1e-8); the constant
  offset between the backends is measured and, where known, derived
  (:func:`expected_offset`);
* the gradient with respect to the coordinates the backends share (the unconstrained
  coordinates of ``alpha_0``, ``beta_0``, ``sigma_g``, ... that both transform the same way);
* the transformed parameters and generated quantities Stan computes from the mapped point
  (``random_group``, ``R``, ``Sigma``, ``rho``) against PyMC's deterministics of the same
  name, which checks the name mapping itself.

:func:`compare_posteriors` runs Stan's NUTS (PyStan) and PyMC's NUTS on the same data and
compares every scalar's posterior mean within a tolerance derived from the Monte Carlo
standard errors.

Name mapping (Stan flat name -> PyMC value): Stan is 1-based, PyMC 0-based, and array
dimensions keep their order, so ``random_group.2.1`` is ``random_group[1, 0]`` (group
``design.group_labels[1]``, random effect ``intercept``), ``z.3.2`` is ``z[2, 1]``,
``sigs.1`` is ``sigs[0]``, ``R.1.2`` is ``R[0, 1]``; ``alpha_0``, ``beta_0``, ``sigma_g``,
``rho`` are scalars in both. Stan's ``L_corr`` (Cholesky factor of the correlation) has no
PyMC variable: it is ``cholesky(R)``, and PyMC's packed ``chol_cov`` is the lower triangle
of ``diag(sigs) @ L_corr``.

A pair is data: a :class:`Pair` in :data:`PAIRS` names the Stan file, the shared gradient
coordinates, the Jacobian hook and the analytic offset; :func:`register_pair` adds one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from scipy.special import betaln

from .design import Design
from .fit import as_design
from .models import PARAMETRIZATIONS, build_model
from .priors import Priors
from .simulate import SimulatedData
from .stan import load_model, sample_pystan, stan_data, stan_file

__all__ = [
    "PAIRS",
    "CrossCheckResult",
    "Pair",
    "cholesky_cov_log_jacobian",
    "compare_posteriors",
    "crosscheck",
    "expected_offset",
    "lkj_log_normaliser",
    "name_mapping",
    "register_pair",
    "to_stan_values",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# ------------------------------------------------------------------------ the maths
def lkj_log_normaliser(n: int, eta: float) -> float:
    """``log c_n(eta)``: the LKJ density is ``det(R)^(eta - 1) / c_n(eta)``.

    Lewandowski, Kurowicka and Joe (2009), eq. 16:
    ``c_n = prod_{k=1}^{n-1} [2^(2 eta - 2 + n - k) B(b_k, b_k)]^(n - k)``,
    ``b_k = eta + (n - k - 1) / 2``. For ``n = 2``: ``2^(2 eta - 1) B(eta, eta)`` (the
    density of ``r = 2 u - 1``, ``u ~ Beta(eta, eta)``).
    """
    if n < 2 or eta <= 0:
        raise ValueError(f"n must be >= 2 and eta > 0, found n={n!r}, eta={eta!r}")
    total = 0.0
    for k in range(1, n):
        b = eta + (n - k - 1) / 2.0
        total += (n - k) * ((2.0 * eta - 2.0 + n - k) * math.log(2.0) + betaln(b, b))
    return total


def cholesky_cov_log_jacobian(point: Mapping[str, np.ndarray]) -> float:
    """``log |d chol_cov / d (sigs, L_corr)|`` at a point with ``sigs`` and ``R``.

    PyMC's ``LKJCholeskyCov`` is a density on the packed Cholesky factor ``C`` of Sigma;
    Stan's ``sigs ~ ...; L_corr ~ lkj_corr_cholesky(eta)`` is a density on ``(sigs, L)``
    with ``L`` the Cholesky factor of the correlation, coordinatised by its strictly lower
    elements. ``C = diag(sigs) L`` row by row: row ``i`` (0-based) is ``sigs_i`` times the
    unit vector ``L_i``, whose first ``i`` elements are free and ``L_ii = sqrt(1 - sum)``.
    In polar form ``d^(i+1) C_i = sigs_i^i d sigs_i dS(L_i)`` and the surface element in
    the first ``i`` coordinates is ``dS = dL_i0 ... dL_i,i-1 / L_ii``, so

        log |J| = sum_i ( i log sigs_i - log L_ii ).

    For 2 x 2 (``L_10 = rho``, ``L_11 = sqrt(1 - rho^2)``): ``|J| = s_2 / sqrt(1 - rho^2)``.
    Hence ``p_Stan(sigs, L) = p_PyMC(C) |J|``: add this to PyMC's log density.
    """
    sigs = np.asarray(point["sigs"], dtype=float)
    L = np.linalg.cholesky(np.asarray(point["R"], dtype=float))
    i = np.arange(sigs.shape[0])
    return float(np.sum(i * np.log(sigs) - np.log(np.diag(L))))


def covariance_log_jacobian(point: Mapping[str, np.ndarray], free: Sequence[str]) -> float:
    """Jacobian hook of the reference pairs: :func:`cholesky_cov_log_jacobian` where the
    PyMC model's covariance is ``chol_cov`` (``LKJCholeskyCov``), else 0 (``LKJCorr`` and
    Stan's ``corr_matrix`` both put the density on the upper triangle of ``R``)."""
    return cholesky_cov_log_jacobian(point) if "chol_cov" in free else 0.0


def to_stan_values(
    point: Mapping[str, np.ndarray], stan_params: Sequence[str]
) -> dict[str, np.ndarray]:
    """The Stan ``parameters``-block values of a PyMC point, by name.

    Same names carry over unchanged (PyMC and Stan use the same shapes, 0-based vs 1-based
    only); ``L_corr`` is ``cholesky(R)``.
    """
    out = {}
    for name in stan_params:
        if name in point:
            out[name] = np.asarray(point[name], dtype=float)
        elif name == "L_corr":
            out[name] = np.linalg.cholesky(np.asarray(point["R"], dtype=float))
        else:
            raise ValueError(
                f"stan_params names {name!r}, found no PyMC variable of that name among "
                f"{sorted(point)} and no rule to derive it"
            )
    return out


def _reference_offset(design: Design, priors: Priors, *, latent: bool) -> tuple[float, str]:
    q = len(design.random_names)
    parts = {
        "alpha_0, beta_0 normal constants": 2 * (-_HALF_LOG_2PI - math.log(priors.fixed_sd)),
        "sigma_g half-normal constant incl. log 2": math.log(2.0)
        - _HALF_LOG_2PI
        - math.log(priors.residual_sd),
        "sigs half-normal constants incl. log 2": q
        * (math.log(2.0) - _HALF_LOG_2PI - math.log(priors.group_sd)),
        # PyMC 5.28's LKJCorr adds +log c_n(eta), the opposite sign of the normalised
        # density (its LKJCorr(n=2, eta=1) logp is log 2 where the uniform density on
        # (-1, 1) is 1/2): a constant, harmless for sampling, measured here as it is.
        "LKJ normalising constant (PyMC's sign)": lkj_log_normaliser(q, priors.lkj_eta),
    }
    if latent:
        parts["random effects: -q/2 log(2 pi) per group"] = -design.n_groups * q * _HALF_LOG_2PI
        parts["likelihood: -1/2 log(2 pi) per row"] = -design.n_obs * _HALF_LOG_2PI
    text = (
        "PyMC keeps every normalising constant, Stan (propto=True) drops those that do "
        "not depend on parameters: " + "; ".join(f"{k} {v:+.6f}" for k, v in parts.items())
    )
    return float(sum(parts.values())), text


# ------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Pair:
    """A PyMC parametrization and the Stan program that mirrors it.

    Attributes
    ----------
    parametrization : str
        Name accepted by :func:`lmm_pymc.build_model`.
    stan_program : str
        Reference Stan file (see :func:`lmm_pymc.stan.stan_file`).
    shared : dict of str to {"identity", "log"}
        Free variables whose unconstrained coordinate is the same in both backends, with
        the transform: their gradients are compared.
    log_jacobian : callable or None
        ``(point, free_rv_names) -> log |d PyMC coords / d Stan coords|``, added to PyMC's
        log density; ``None`` where the coordinates coincide.
    offset : callable or None
        ``(design, priors) -> (lp_PyMC - lp_Stan, explanation)`` where known analytically.
    random_outputs : tuple of str
        Stan generated quantities that are random draws (not compared by name).
    grad_rtol : float
        Default tolerance of the relative gradient error for this pair (see
        :func:`crosscheck`).
    """

    parametrization: str
    stan_program: str
    shared: Mapping[str, str] = field(default_factory=dict)
    log_jacobian: Callable[[Mapping[str, np.ndarray], Sequence[str]], float] | None = (
        covariance_log_jacobian
    )
    offset: Callable[[Design, Priors], tuple[float, str]] | None = None
    random_outputs: tuple[str, ...] = ()
    grad_rtol: float = 1e-9


#: Registered pairs by parametrization; :func:`available_pairs` lists those PyMC builds.
PAIRS: dict[str, Pair] = {}


def register_pair(pair: Pair) -> Pair:
    """Add (or replace) a pair in :data:`PAIRS`."""
    if not isinstance(pair, Pair):
        raise ValueError(f"pair must be a lmm_pymc.crosscheck.Pair, found {type(pair).__name__}")
    stan_file(pair.stan_program)  # fails early on a missing Stan file
    PAIRS[pair.parametrization] = pair
    return pair


register_pair(
    Pair(
        "lkj_corr",
        "lmm_lkj_corr",
        shared={
            "alpha_0": "identity",
            "beta_0": "identity",
            "sigma_g": "log",
            "sigs": "log",
            "random_group": "identity",
        },
        offset=lambda d, p: _reference_offset(d, p, latent=True),
    )
)
register_pair(
    Pair(
        "cholesky",
        "lmm_cholesky",
        shared={"alpha_0": "identity", "beta_0": "identity", "sigma_g": "log", "z": "identity"},
        offset=lambda d, p: _reference_offset(d, p, latent=True),
    )
)
register_pair(
    Pair(
        "marginal",
        "lmm_marginal",
        shared={"alpha_0": "identity", "beta_0": "identity", "sigma_g": "log"},
        # both keep the likelihood's -n/2 log(2 pi) (Stan: target +=, PyMC: Potential)
        offset=lambda d, p: _reference_offset(d, p, latent=False),
        random_outputs=("random_group",),
        # Stan's Woodbury form loses a little to rounding: see crosscheck()
        grad_rtol=1e-8,
    )
)


def available_pairs() -> list[str]:
    """Parametrizations with a registered pair that :func:`lmm_pymc.build_model` builds."""
    return [p for p in PARAMETRIZATIONS if p in PAIRS]


def _get_pair(parametrization: str) -> Pair:
    if parametrization not in available_pairs():
        raise ValueError(
            f"parametrization must be one of {available_pairs()} (a PyMC model with a "
            f"registered Stan pair), found {parametrization!r}"
        )
    return PAIRS[parametrization]


def expected_offset(
    design: Design, parametrization: str, priors: Priors | None = None
) -> tuple[float | None, str]:
    """The analytic ``lp_PyMC - lp_Stan`` of a pair (``None`` where not known)."""
    pair = _get_pair(parametrization)
    if pair.offset is None:
        return None, "not known analytically"
    return pair.offset(design, Priors() if priors is None else priors)


def name_mapping(engine_names: Sequence[str]) -> pd.DataFrame:
    """Table of Stan flat names and the PyMC variable and index each one maps to."""
    from .stan import _split_name

    rows = []
    for flat in engine_names:
        base, index = _split_name(flat)
        pymc = base if not index else f"{base}[{', '.join(map(str, index))}]"
        if base == "L_corr":
            pymc = f"cholesky(R)[{', '.join(map(str, index))}]"
        rows.append({"stan": flat, "pymc": pymc})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- results
@dataclass
class CrossCheckResult:
    """Outcome of :func:`crosscheck`.

    ``table`` has one row per point: ``point``, ``lp_pymc`` (with the Jacobian of the pair
    applied), ``lp_stan``, ``diff_from_offset`` (``lp_pymc - lp_stan - offset``),
    ``rel_error`` (that difference relative to how far the point's log density is from
    the reference point's), ``max_grad_error`` (relative, over the shared coordinates) and
    ``max_map_error`` (Stan's derived quantities vs PyMC's deterministics).
    """

    parametrization: str
    engine: str
    table: pd.DataFrame
    offset: float
    expected_offset: float | None
    offset_explanation: str
    rtol: float
    grad_rtol: float
    shared_coordinates: list[str]

    @property
    def ok(self) -> bool:
        t = self.table
        return bool(
            (t["rel_error"] <= self.rtol).all()
            and (t["max_grad_error"].fillna(0.0) <= self.grad_rtol).all()
            and (t["max_map_error"].fillna(0.0) <= self.rtol).all()
        )

    @property
    def offset_matches_expected(self) -> bool | None:
        if self.expected_offset is None:
            return None
        return abs(self.offset - self.expected_offset) <= 1e-6 * max(1.0, abs(self.offset))

    def summary(self) -> str:
        verdict = "AGREE" if self.ok else "DISAGREE"
        lines = [
            f"{self.parametrization}: PyMC vs Stan ({self.engine}) on {len(self.table)} "
            f"points: {verdict}",
            f"  max relative lp error {self.table['rel_error'].max():.2e} (tolerance "
            f"{self.rtol:g}), max gradient error {self.table['max_grad_error'].max():.2e} "
            f"(tolerance {self.grad_rtol:g}) on {', '.join(self.shared_coordinates)}",
            f"  offset lp_pymc - lp_stan = {self.offset:.6f}",
        ]
        if self.expected_offset is not None:
            lines.append(
                f"  expected offset {self.expected_offset:.6f} "
                f"({'matches' if self.offset_matches_expected else 'DOES NOT match'}): "
                f"{self.offset_explanation}"
            )
        return "\n".join(lines)


# ------------------------------------------------------------------------- points
def _points(
    model: pm.Model, n_prior: int, n_posterior: int, seed: int, tune: int
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Prior draws and short-posterior draws of every free variable and deterministic."""
    names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    points: list[tuple[str, dict[str, np.ndarray]]] = []
    rng = np.random.default_rng(seed)
    if n_posterior > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = pm.sample(
                draws=n_posterior,
                tune=tune,
                chains=1,
                cores=1,
                model=model,
                random_seed=rng,
                progressbar=False,
                compute_convergence_checks=False,
                # short trees: the points need not be exact posterior draws, only typical
                # of the posterior, and the centred model's funnel makes full trees slow
                nuts={"max_treedepth": 6},
            )
        post = idata.posterior
        for d in range(n_posterior):
            points.append((f"posterior {d}", {n: post[n].values[0, d] for n in names if n in post}))
    if n_prior > 0:
        prior = pm.sample_prior_predictive(
            draws=n_prior, model=model, var_names=names, random_seed=rng
        ).prior
        for d in range(n_prior):
            points.append((f"prior {d}", {n: prior[n].values[0, d] for n in names}))
    return points


def _stan_index(engine, template: Mapping[str, np.ndarray], shared: Mapping[str, str]):
    """Position of every shared coordinate in Stan's unconstrained vector.

    Each shared element gets a distinct marker value whose unconstrained image is known
    (identity: ``m``; log: ``exp(-m)`` -> ``-m``); one unconstrain call then shows where each
    element landed, whatever Stan's internal (column- or row-major) order is.
    """
    values = {k: np.array(v, dtype=float, copy=True) for k, v in template.items()}
    expected: list[tuple[str, tuple[int, ...], float]] = []
    k = 0
    for name, transform in shared.items():
        arr = values[name]
        for index in np.ndindex(arr.shape):
            k += 1
            m = 1.0 + 1e-3 * k
            arr[index] = m if transform == "identity" else math.exp(-m)
            expected.append((name, index, m if transform == "identity" else -m))
        values[name] = arr
    theta = engine.unconstrain(values)
    out = []
    for name, index, target in expected:
        hits = np.flatnonzero(np.abs(theta - target) < 1e-9)
        if hits.size != 1:
            raise RuntimeError(
                f"could not locate {name}{list(index)} in Stan's unconstrained vector"
            )
        out.append((name, index, int(hits[0])))
    return out


# ---------------------------------------------------------------------- crosscheck
def crosscheck(
    data: Design | SimulatedData | pd.DataFrame,
    parametrization: str = "cholesky",
    *,
    priors: Priors | None = None,
    stan_priors: Priors | None = None,
    model: pm.Model | None = None,
    pair: Pair | None = None,
    n_prior: int = 10,
    n_posterior: int = 10,
    tune: int = 100,
    engine: str = "auto",
    model_lib: str | None = None,
    seed: int = 0,
    rtol: float = 1e-8,
    grad_rtol: float | None = None,
) -> CrossCheckResult:
    """Compare the log density and gradient of a PyMC model and its Stan program.

    Parameters
    ----------
    data : Design, SimulatedData or DataFrame
        The data both backends condition on.
    parametrization : str
        A registered pair, see :func:`available_pairs`.
    priors : Priors, optional
        Priors of the PyMC model (default: the tutorial's).
    stan_priors : Priors, optional
        Priors passed to Stan as data (default: ``priors``). Differing priors make a
        deliberately wrong pair.
    model : pymc.Model, optional
        A PyMC model to check instead of ``build_model(design, parametrization, priors)``.
    pair : Pair, optional
        A pair to use instead of ``PAIRS[parametrization]``.
    n_prior, n_posterior : int
        Points drawn from the prior and from a short PyMC posterior run (1 chain,
        ``tune`` tuning steps); together at least 2.
    engine, model_lib :
        Stan engine, see :func:`lmm_pymc.stan.load_model`.
    seed : int
        Seed of the prior and posterior draws.
    rtol : float
        Tolerance of the relative error of log-density differences (and of the
        mapping check): both backends compute in double precision, so only rounding
        (~1e-13 relative) separates correct pairs.
    grad_rtol : float, optional
        Tolerance of the relative gradient error, ``|g_pymc - g_stan| / max(1, |g_stan|)``;
        default the pair's own (``Pair.grad_rtol``). The latent-variable pairs agree to
        ~1e-12, so their default is 1e-9. The marginal pair's Stan program evaluates the
        Woodbury form, whose terms (``r'r / sigma^2`` and ``|A^-1/2 u|^2 / sigma^4``) nearly
        cancel, while PyMC uses the well-conditioned OLS form (:mod:`lmm_pymc.marginal`):
        measured up to 6.6e-10 on 30 groups x 20 rows, hence 1e-8.

    Returns
    -------
    CrossCheckResult
        ``.ok`` is False on any disagreement; ``.table`` and ``.summary()`` say where.
    """
    design = as_design(data)
    pair = _get_pair(parametrization) if pair is None else pair
    if n_prior < 0 or n_posterior < 0 or n_prior + n_posterior < 2:
        raise ValueError(
            f"n_prior and n_posterior must be >= 0 with at least 2 points in all, found "
            f"n_prior={n_prior!r}, n_posterior={n_posterior!r}"
        )
    priors = Priors() if priors is None else priors
    stan_priors = priors if stan_priors is None else stan_priors
    model = build_model(design, pair.parametrization, priors=priors) if model is None else model
    stan = load_model(
        pair.stan_program, stan_data(design, stan_priors), engine=engine, model_lib=model_lib
    )

    from pymc.model.transform.conditioning import remove_value_transforms

    free = [v.name for v in model.free_RVs]
    raw = remove_value_transforms(model)  # value variables on the constrained scale
    # one compiled function for both: PyMC compiles each function to C, which is slow
    lp_and_grad = raw.compile_fn(
        [raw.logp(jacobian=False), raw.dlogp(jacobian=False)], inputs=raw.value_vars
    )
    raw_names = [v.name for v in raw.value_vars]

    points = _points(model, n_prior, n_posterior, seed, tune)
    stan_params = sorted({n.split(".")[0] for n in stan.param_names})
    shared = {k: v for k, v in pair.shared.items() if k in free}
    first = to_stan_values(points[0][1], stan_params)
    locations = _stan_index(stan, first, shared)

    rows = []
    for label, point in points:
        free_values = {n: np.asarray(point[n], dtype=float) for n in raw_names}
        lp_value, grad_flat = lp_and_grad(free_values)
        lp_pymc = float(lp_value)
        if pair.log_jacobian is not None:
            lp_pymc += pair.log_jacobian(point, free)
        theta = stan.unconstrain(to_stan_values(point, stan_params))
        lp_stan = stan.log_density(theta, jacobian=False)
        # PyMC: gradient of the constrained log density; chain rule to the shared
        # unconstrained coordinates (log: d/d log v = v d/dv, plus 1 from the Jacobian)
        grad_flat = np.asarray(grad_flat, dtype=float)
        grads, start = {}, 0
        for n in raw_names:
            size = int(np.size(point[n]))
            grads[n] = grad_flat[start : start + size].reshape(np.shape(point[n]))
            start += size
        _, grad_stan = stan.log_density_gradient(theta)
        grad_err = 0.0
        for name, index, k in locations:
            g = grads[name][index]
            if shared[name] == "log":
                g = float(np.asarray(point[name])[index]) * g + 1.0
            grad_err = max(grad_err, abs(g - grad_stan[k]) / max(1.0, abs(grad_stan[k])))
        # names Stan derives (random_group, R, Sigma, rho, ...) vs PyMC's deterministics
        derived = stan.constrain(theta)
        map_err = 0.0
        for name, value in derived.items():
            if name in point and name not in pair.random_outputs:
                ref = np.asarray(point[name], dtype=float)
                if ref.shape != value.shape:
                    map_err = math.inf
                    continue
                scale = max(1.0, float(np.max(np.abs(ref))))
                map_err = max(map_err, float(np.max(np.abs(value - ref))) / scale)
        rows.append(
            {
                "point": label,
                "lp_pymc": lp_pymc,
                "lp_stan": lp_stan,
                "max_grad_error": grad_err if locations else np.nan,
                "max_map_error": map_err,
            }
        )
    table = pd.DataFrame(rows)
    offset = float(table["lp_pymc"].iloc[0] - table["lp_stan"].iloc[0])
    table["diff_from_offset"] = table["lp_pymc"] - table["lp_stan"] - offset
    spread = np.maximum.reduce(
        [
            np.abs(table["lp_pymc"] - table["lp_pymc"].iloc[0]),
            np.abs(table["lp_stan"] - table["lp_stan"].iloc[0]),
            np.ones(len(table)),
        ]
    )
    table["rel_error"] = np.abs(table["diff_from_offset"]) / spread
    table = table[
        [
            "point",
            "lp_pymc",
            "lp_stan",
            "diff_from_offset",
            "rel_error",
            "max_grad_error",
            "max_map_error",
        ]
    ]
    exp_offset, explanation = (None, "not known analytically")
    if pair.offset is not None:
        exp_offset, explanation = pair.offset(design, priors)
    return CrossCheckResult(
        parametrization=pair.parametrization,
        engine=stan.name,
        table=table,
        offset=offset,
        expected_offset=exp_offset,
        offset_explanation=explanation,
        rtol=rtol,
        grad_rtol=pair.grad_rtol if grad_rtol is None else float(grad_rtol),
        shared_coordinates=sorted(shared),
    )


# ---------------------------------------------------------------------- posteriors
def _mcse_mean(draws: np.ndarray) -> float:
    """ArviZ's Monte Carlo standard error of the mean of (chain, draw) draws."""
    data = xr.Dataset({"v": (("chain", "draw"), np.asarray(draws, dtype=float))})
    return float(az.mcse(data, method="mean")["v"].values)


def compare_posteriors(
    data: Design | SimulatedData | pd.DataFrame,
    parametrization: str = "cholesky",
    *,
    priors: Priors | None = None,
    stan_priors: Priors | None = None,
    draws: int = 300,
    tune: int = 300,
    chains: int = 2,
    seed: int = 1,
    z: float = 4.0,
    idata: az.InferenceData | None = None,
) -> pd.DataFrame:
    """Posterior means of every scalar from PyMC's NUTS and Stan's NUTS (PyStan).

    A scalar agrees when ``|mean_pymc - mean_stan| < z * sqrt(mcse_pymc^2 + mcse_stan^2)``
    (ArviZ's MCSE of the mean). Returns one row per scalar with ``agree``. ``idata``: a
    PyMC posterior of the same data to reuse instead of fitting (``draws``, ``tune`` and
    ``chains`` then apply to Stan only).
    """
    from .fit import fit

    design = as_design(data)
    pair = _get_pair(parametrization)
    priors = Priors() if priors is None else priors
    stan_priors = priors if stan_priors is None else stan_priors
    if not z > 0:
        raise ValueError(f"z must be > 0, found {z!r}")
    if idata is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = fit(
                design,
                parametrization=pair.parametrization,
                priors=priors,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=1,
                random_seed=seed,
                progressbar=False,
            )
    stan_draws = sample_pystan(
        pair.stan_program,
        stan_data(design, stan_priors),
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
    )
    rows = []
    post = idata.posterior
    for name in ("alpha_0", "beta_0", "sigma_g", "sigs", "rho"):
        a_all = post[name].values  # (chain, draw, ...)
        b_all = stan_draws[name]
        for index in np.ndindex(a_all.shape[2:]):
            a = a_all[(slice(None), slice(None), *index)]
            b = b_all[(slice(None), slice(None), *index)]
            mcse_a, mcse_b = _mcse_mean(a), _mcse_mean(b)
            tol = z * math.hypot(mcse_a, mcse_b)
            diff = float(a.mean() - b.mean())
            label = name if not index else f"{name}[{', '.join(map(str, index))}]"
            rows.append(
                {
                    "parameter": label,
                    "mean_pymc": float(a.mean()),
                    "mean_stan": float(b.mean()),
                    "diff": diff,
                    "mcse_pymc": mcse_a,
                    "mcse_stan": mcse_b,
                    "tolerance": tol,
                    "agree": abs(diff) < tol,
                }
            )
    return pd.DataFrame(rows)
