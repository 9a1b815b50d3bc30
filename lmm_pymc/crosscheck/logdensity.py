"""Prove that a PyMC model and its Stan program are the same model, point by point.

For a design and a pair (:mod:`lmm_pymc.crosscheck.pairs`), :func:`crosscheck` takes
parameter points from PyMC (prior draws and draws of a short posterior run), maps every
point to the Stan program's parameters by name through the pair's registry
(:mod:`lmm_pymc.stan.names`), and compares

* the log density on the constrained scale (no Jacobian of the constraining transforms;
  the Jacobian between the two programs' coordinates is added to PyMC's): differences
  between points must agree to a relative ``rtol`` (1e-8); the constant offset between
  the backends is measured and derived (:func:`~lmm_pymc.crosscheck.expected_offset`);
* the gradient with respect to the coordinates both backends share (``beta``, ``log
  sigma``, ``z_k``, ...);
* every quantity Stan derives from the mapped point (``random_group``, ``R``, ``Sigma``,
  ``rho``, ...) against the registry's value from the PyMC point, which checks the name
  mapping itself.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pymc as pm

from ..checks import non_negative_int
from ..design import Design
from ..families import Family
from ..families import family as as_family
from ..fitting import as_design
from ..models import build_model
from ..priors import Priors
from ..stan.engine import StanEngine
from ..stan.loading import load_model
from .pairs import Pair, select_pair

if TYPE_CHECKING:  # pragma: no cover
    from ..simulation import Simulation

__all__ = ["CrossCheckResult", "crosscheck", "crosscheck_design", "crosscheck_family"]

Point = dict[str, np.ndarray]
_COLUMNS = ["point", "lp_pymc", "lp_stan", "diff_from_offset", "rel_error", "max_grad_error",
            "max_map_error"]  # fmt: skip


@dataclass
class CrossCheckResult:
    """Outcome of :func:`crosscheck`.

    ``table`` has one row per point: ``point``, ``lp_pymc`` (with the pair's Jacobian
    added), ``lp_stan``, ``diff_from_offset`` (``lp_pymc - lp_stan - offset``),
    ``rel_error`` (that difference relative to how far the point's log density is from
    the first point's), ``max_grad_error`` (relative, over the shared coordinates) and
    ``max_map_error`` (Stan's derived quantities vs the registry's from the PyMC point).
    """

    parametrization: str
    program: str
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
            f"{self.parametrization} vs {self.program}.stan ({self.engine}) on "
            f"{len(self.table)} points: {verdict}",
            f"  max relative lp error {self.table['rel_error'].max():.2e} (tolerance "
            f"{self.rtol:g}), max gradient error {self.table['max_grad_error'].max():.2e} "
            f"(tolerance {self.grad_rtol:g}) on {', '.join(self.shared_coordinates)}, max "
            f"mapping error {self.table['max_map_error'].max():.2e}",
            f"  offset lp_pymc - lp_stan = {self.offset:.6f}",
        ]
        if self.expected_offset is not None:
            lines.append(
                f"  expected offset {self.expected_offset:.6f} "
                f"({'matches' if self.offset_matches_expected else 'DOES NOT match'}): "
                f"{self.offset_explanation}"
            )
        return "\n".join(lines)


def crosscheck_family(
    data: Design | Simulation, family: str | Family | None = None, link: str | None = None
) -> Family:
    """The outcome family of the check: ``family`` and ``link``, else a simulation's own
    family (as :func:`lmm_pymc.fit` takes it), else the Gaussian."""
    own = getattr(data, "family", None)
    if family is None and isinstance(own, Family):
        return own if link is None else as_family(own.name, link)
    return as_family(family, link)


def crosscheck_design(data: Design | Simulation) -> Design:
    """The design with outcome that ``data`` (a Design or a Simulation) describes."""
    design = as_design(data)
    if not isinstance(design, Design):
        raise ValueError(
            "data must be a lmm_pymc.Design or Simulation (rows are needed for Stan), found "
            f"{type(data).__name__}"
        )
    return design


# ----------------------------------------------------------------------- PyMC side
class _PyMCSide:
    """One compiled PyMC function: constrained free values -> (log density without the
    transforms' Jacobians, its gradient, every deterministic)."""

    def __init__(self, model: pm.Model):
        from pymc.model.transform.conditioning import remove_value_transforms

        raw = remove_value_transforms(model)  # value variables on the constrained scale
        self.free = [v.name for v in model.free_RVs]
        self.inputs = [v.name for v in raw.value_vars]
        self.deterministics = [d.name for d in raw.deterministics]
        outputs = [raw.logp(jacobian=False), raw.dlogp(jacobian=False)]
        outputs += raw.replace_rvs_by_values(raw.deterministics)
        # one compiled function: PyMC compiles each function to C, which is slow
        self._fn = raw.compile_fn(outputs, inputs=raw.value_vars, on_unused_input="ignore")

    def evaluate(self, free: Mapping[str, np.ndarray]) -> tuple[float, Point, Point]:
        """``(lp, gradient by variable, point)``: the point holds the free values and the
        deterministics computed from them."""
        values = {n: np.asarray(free[n], dtype=float) for n in self.inputs}
        lp, grad, *dets = self._fn(values)
        grad, grads, start = np.asarray(grad, dtype=float), {}, 0
        for n in self.inputs:
            size = values[n].size
            grads[n] = grad[start : start + size].reshape(values[n].shape)
            start += size
        dets = dict(zip(self.deterministics, dets, strict=True))
        point = {**values, **{n: np.asarray(d, float) for n, d in dets.items()}}
        return float(lp), grads, point


def _point_counts(n_prior: int, n_posterior: int) -> tuple[int, int]:
    n_prior, n_posterior = (
        non_negative_int("n_prior", n_prior),
        non_negative_int("n_posterior", n_posterior),
    )
    if n_prior + n_posterior < 2:
        raise ValueError(
            f"n_prior + n_posterior must be at least 2 points, found n_prior={n_prior!r}, "
            f"n_posterior={n_posterior!r}"
        )
    return n_prior, n_posterior


def _points(model: pm.Model, n_prior: int, n_posterior: int, seed: int, tune: int) -> list:
    """``(label, free values)``: draws of a short PyMC posterior run, then prior draws."""
    names = [v.name for v in model.free_RVs]
    rng = np.random.default_rng(seed)
    points = []
    if n_posterior > 0:
        # short trees: the points need not be exact posterior draws, only typical of the
        # posterior, and the centred model's funnel makes full trees slow
        post = pm.sample(draws=n_posterior, tune=tune, chains=1, cores=1, model=model,
                         random_seed=rng, progressbar=False, nuts={"max_treedepth": 6},
                         compute_convergence_checks=False).posterior  # fmt: skip
        points += [(f"posterior {d}", {n: post[n].values[0, d] for n in names})
                   for d in range(n_posterior)]  # fmt: skip
    if n_prior > 0:
        with warnings.catch_warnings():
            # the marginal model's likelihood is a Potential: prior draws of the free
            # variables ignore it, which is what these points are
            warnings.filterwarnings("ignore", message="The effect of Potentials",
                                    category=UserWarning)  # fmt: skip
            prior = pm.sample_prior_predictive(
                draws=n_prior, model=model, var_names=names, random_seed=rng
            ).prior
        points += [(f"prior {d}", {n: prior[n].values[0, d] for n in names})
                   for d in range(n_prior)]  # fmt: skip
    return points


# ------------------------------------------------------------------- the comparison
def _stan_positions(
    stan: StanEngine, pymc: _PyMCSide, point: Point, names, shared: Mapping[str, str]
) -> list[tuple[str, tuple[int, ...], int]]:
    """Position in Stan's unconstrained vector of every element of the shared variables.

    Each shared element gets a distinct marker value whose unconstrained image is known
    (identity: ``m``; log: ``exp(-m)`` -> ``-m``); the marked PyMC point is mapped to Stan
    by name and unconstrained once, which shows where each element landed.
    """
    free = {n: np.array(point[n], dtype=float, copy=True) for n in pymc.inputs}
    expected, k = [], 0
    for name, transform in shared.items():
        for index in np.ndindex(free[name].shape):
            k += 1
            m = 1.0 + 1e-3 * k
            free[name][index] = m if transform == "identity" else math.exp(-m)
            expected.append((name, index, m if transform == "identity" else -m))
    marked = pymc.evaluate(free)[2]
    theta = stan.unconstrain(names.stan_values(marked, stan.parameters))
    out = []
    for name, index, target in expected:
        hits = np.flatnonzero(np.abs(theta - target) < 1e-9)
        if hits.size != 1:
            raise RuntimeError(
                f"could not locate {name}{list(index)} in Stan's unconstrained vector"
            )
        out.append((name, index, int(hits[0])))
    return out


def _compare(label, free, pymc, stan, pair, design, names, shared, locations) -> dict:
    """One row of the table (see :class:`CrossCheckResult`)."""
    lp_pymc, grads, point = pymc.evaluate(free)
    if pair.log_jacobian is not None:
        lp_pymc += pair.log_jacobian(point, design, pymc.free)
    theta = stan.unconstrain(names.stan_values(point, stan.parameters))
    lp_stan = stan.log_density(theta, jacobian=False)
    _, grad_stan = stan.log_density_gradient(theta)
    grad_err = 0.0
    for name, index, k in locations:
        # PyMC: gradient of the constrained density; chain rule to the shared unconstrained
        # coordinate (log: d/d log v = v d/dv, plus 1 from the Jacobian Stan includes)
        g = grads[name][index]
        if shared[name] == "log":
            g = float(point[name][index]) * g + 1.0
        grad_err = max(grad_err, abs(g - grad_stan[k]) / max(1.0, abs(grad_stan[k])))
    derived, mapped = stan.constrain(theta), names.derivable(point)
    map_err = 0.0
    for name, value in derived.items():
        if name in mapped and name not in pair.random_outputs:
            ref = mapped[name]
            if ref.shape != value.shape:
                map_err = math.inf
                continue
            scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
            map_err = max(map_err, float(np.max(np.abs(value - ref), initial=0.0)) / scale)
    grad_err = grad_err if locations else np.nan
    return {"point": label, "lp_pymc": lp_pymc, "lp_stan": lp_stan,
            "max_grad_error": grad_err, "max_map_error": map_err}  # fmt: skip


def _table(rows: list[dict]) -> tuple[pd.DataFrame, float]:
    table = pd.DataFrame(rows)
    offset = float(table["lp_pymc"].iloc[0] - table["lp_stan"].iloc[0])
    table["diff_from_offset"] = table["lp_pymc"] - table["lp_stan"] - offset
    # how far each point's log density is from the first point's, at least 1
    spread = np.maximum.reduce([np.abs(table["lp_pymc"] - table["lp_pymc"].iloc[0]),
                                np.abs(table["lp_stan"] - table["lp_stan"].iloc[0]),
                                np.ones(len(table))])  # fmt: skip
    table["rel_error"] = np.abs(table["diff_from_offset"]) / spread
    return table[_COLUMNS], offset


def crosscheck(
    data: Design | Simulation,
    parametrization: str | None = None,
    *,
    program: str | None = None,
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
    family: str | Family | None = None,
    link: str | None = None,
) -> CrossCheckResult:
    """Compare the log density and gradient of a PyMC model and its Stan program.

    Parameters
    ----------
    data : Design or Simulation
        The data both backends condition on.
    parametrization : str, optional
        Default :func:`lmm_pymc.models.resolve_parametrization` of the design.
    program : str, optional
        A pair by name (:func:`available_pairs`, e.g. ``"general"``); default: the tutorial's
        program of the parametrization for the tutorial's design, the general program
        (``cholesky``) for any other (see :func:`~lmm_pymc.crosscheck.pairs.select_pair`).
    priors : Priors, optional
        Priors of the PyMC model (default: the tutorial's).
    stan_priors : Priors, optional
        Priors passed to Stan as data (default: ``priors``); differing priors make a
        deliberately wrong pair.
    model : pymc.Model, optional
        A PyMC model to check instead of ``build_model(design, parametrization, priors)``.
    pair : Pair, optional
        A pair to use instead of the registry's (e.g. without its Jacobian).
    n_prior, n_posterior, tune : int
        Points from the prior and a short PyMC run (1 chain, ``tune`` steps); >= 2 in all.
    engine, model_lib :
        Stan engine, see :func:`lmm_pymc.stan.load_model`.
    seed : int
        Seed of the prior and posterior draws.
    rtol : float
        Tolerance of the relative error of log-density differences and of the mapping
        check: both backends compute in double precision, so only rounding (~1e-13
        relative) separates correct pairs.
    grad_rtol : float, optional
        Tolerance of ``|g_pymc - g_stan| / max(1, |g_stan|)``; default the pair's (for
        the outcome's family where the pair names one: ``Pair.family_grad_rtol``). The
        latent-variable pairs agree to ~1e-12 (default 1e-9). The marginal pair's Stan
        program evaluates the Woodbury form, whose terms (``r'r / sigma^2`` and
        ``|A^-1/2 u|^2 / sigma^4``) nearly cancel, while PyMC uses the well-conditioned OLS
        form (:mod:`lmm_pymc.marginal`): measured up to 6.6e-10 on 30 groups x 20 rows,
        hence 1e-8.
    family, link : str, optional
        The outcome's family and link (:func:`lmm_pymc.families.family`); default a
        simulation's own, else Gaussian. Binary and count outcomes have the pair ``glmm``.

    Returns
    -------
    CrossCheckResult
        ``.ok`` is False on any disagreement; ``.table`` and ``.summary()`` say where.
    """
    design, fam = crosscheck_design(data), crosscheck_family(data, family, link)
    pair = select_pair(design, parametrization, program, fam) if pair is None else pair
    pair.check(design, fam)
    n_prior, n_posterior = _point_counts(n_prior, n_posterior)
    priors = Priors() if priors is None else priors
    stan_priors = priors if stan_priors is None else stan_priors
    if model is None:
        model = build_model(design, pair.parametrization, priors=priors, family=fam)
    stan = load_model(pair.program, pair.data(design, stan_priors, family=fam), engine=engine,
                      model_lib=model_lib)  # fmt: skip
    pymc, names = _PyMCSide(model), pair.names(design)
    shared = pair.shared_for(design, pymc.free)
    points = _points(model, n_prior, n_posterior, seed, tune)
    locations = _stan_positions(stan, pymc, points[0][1], names, shared)
    rows = [_compare(label, free, pymc, stan, pair, design, names, shared, locations)
            for label, free in points]  # fmt: skip
    table, offset = _table(rows)
    expected, explanation = (None, "not known analytically")
    if pair.offset is not None:
        expected, explanation = pair.offset(design, priors)
    if grad_rtol is None:  # the pair's, or its own for the outcome's family
        grad_rtol = pair.family_grad_rtol.get(fam.name, pair.grad_rtol)
    grad_rtol = float(grad_rtol)
    return CrossCheckResult(pair.parametrization, pair.program, stan.name, table, offset,
                            expected, explanation, rtol, grad_rtol, sorted(shared))  # fmt: skip
