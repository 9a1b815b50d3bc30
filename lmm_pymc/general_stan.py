"""Cross-check of the general PyMC model against ``stan_reference/lmm_general.stan``.

The two programs put their densities on different coordinates. PyMC's ``cholesky``
parametrization has, per correlated factor, ``LKJCholeskyCov``'s density on the packed
Cholesky factor ``C = diag(sigs) L`` of ``Sigma``; the Stan program has one on
``(sigs, strictly-lower entries of L)``. Row ``i`` (0-based) of ``C`` is ``s_i`` times row
``i`` of ``L`` (unit norm), so::

    log |d C / d (sigs, L)| = sum_i ( i log s_i - log L_ii )

and ``log p_PyMC(C) + log|d C / d (sigs, L)| = log p_Stan(sigs, L) + const``. The check
draws points, maps each to both programs, evaluates both log densities *without* the
Jacobians of their constraining transforms (``jacobian=False`` / ``add_jacobian = 0``)
and requires the difference to be the same constant at every point (half-normal and LKJ
normalising constants differ between the two).

Uses the engine layer of :mod:`lmm_pymc.stan` (PyStan offline, BridgeStan where it can
compile).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .formula import GeneralDesign
from .general_models import build_general_model
from .priors import Priors

__all__ = [
    "GeneralCrossCheck",
    "crosscheck_general",
    "general_stan_data",
    "cholesky_corr_free",
]

#: Name of the reference program in ``stan_reference/``.
GENERAL_STAN_PROGRAM = "lmm_general"


def general_stan_data(
    design: GeneralDesign, priors: Priors | None = None, *, add_jacobian: bool = True
) -> dict[str, object]:
    """Data dictionary of ``lmm_general.stan`` for a design with outcome.

    ``Z`` holds the per-row random-effects designs side by side (factor after factor, the
    order of ``design.terms``); ``g[i, f]`` is the 1-based position of row ``i``'s level in
    ``design.factors[f].labels``. ``add_jacobian=False`` gives the density on the
    constrained coordinates (for :func:`crosscheck_general`).
    """
    if not isinstance(design, GeneralDesign):
        raise ValueError(
            f"design must be a lmm_pymc.formula.GeneralDesign, found {type(design).__name__}"
        )
    if design.y is None:
        raise ValueError("design must carry an outcome y for Stan, found y=None")
    priors = Priors() if priors is None else priors
    fs = design.factors
    return {
        "N": design.n_obs,
        "p": int(design.X.shape[1]),
        "X": design.X.tolist(),
        "y": design.y.tolist(),
        "F": len(fs),
        "q": [f.q for f in fs],
        "J": [f.n_levels for f in fs],
        "correlated": [int(f.correlated) for f in fs],
        "Z": np.column_stack([f.Z for f in fs]).tolist(),
        "g": (np.column_stack([f.index for f in fs]) + 1).astype(int).tolist(),
        "fixed_mu": priors.fixed_mu,
        "fixed_sd": priors.fixed_sd,
        "residual_sd": priors.residual_sd,
        "group_sd": priors.group_sd,
        "lkj_eta": priors.lkj_eta,
        "add_jacobian": int(add_jacobian),
    }


def cholesky_corr_free(y: np.ndarray, K: int) -> np.ndarray:
    """NumPy twin of the Stan program's ``cholesky_corr_free`` (Stan's own transform)."""
    w = np.tanh(np.asarray(y, dtype=float))
    if w.shape != (K * (K - 1) // 2,):
        raise ValueError(f"y must have K (K - 1) / 2 = {K * (K - 1) // 2} values, found {w.shape}")
    L = np.zeros((K, K))
    if K == 0:
        return L
    L[0, 0] = 1.0
    pos = 0
    for i in range(1, K):
        sum_sqs = 0.0
        for j in range(i):
            L[i, j] = w[pos] * np.sqrt(1.0 - sum_sqs)
            sum_sqs += L[i, j] ** 2
            pos += 1
        L[i, i] = np.sqrt(1.0 - sum_sqs)
    return L


def _log_jacobian_cov_chol(sigs: np.ndarray, L: np.ndarray) -> float:
    """``log |d C / d (sigs, strictly-lower L)|`` for ``C = diag(sigs) L`` (module docs)."""
    i = np.arange(len(sigs))
    return float(np.sum(i * np.log(sigs)) - np.sum(np.log(np.diag(L))))


@dataclass(frozen=True)
class GeneralCrossCheck:
    """Result of :func:`crosscheck_general`.

    Attributes
    ----------
    deviations : ndarray, shape (n_points,)
        ``log p_PyMC + log|J| - log p_Stan`` at each point, minus their mean.
    offset : float
        The mean difference (normalising constants).
    max_abs_deviation : float
    tolerance : float
        On ``max_abs_deviation``.
    max_grad_error : float
        Largest ``|g_PyMC - g_Stan| / max(1, |g_Stan|)`` over the coordinates both
        programs share untransformed (``beta`` and every ``z``).
    grad_rtol : float
    engine : str
    """

    deviations: np.ndarray
    offset: float
    max_abs_deviation: float
    tolerance: float
    max_grad_error: float
    grad_rtol: float
    engine: str

    @property
    def ok(self) -> bool:
        return self.max_abs_deviation <= self.tolerance and self.max_grad_error <= self.grad_rtol

    def summary(self) -> str:
        verdict = "AGREE" if self.ok else "DISAGREE"
        return (
            f"general model: PyMC vs Stan ({self.engine}) on {len(self.deviations)} points: "
            f"{verdict}; max |lp deviation| {self.max_abs_deviation:.2e} (tolerance "
            f"{self.tolerance:.2e}), max gradient error {self.max_grad_error:.2e} (tolerance "
            f"{self.grad_rtol:g}), offset lp_pymc - lp_stan = {self.offset:.6f}"
        )


def _random_point(design: GeneralDesign, rng: np.random.Generator) -> dict[str, object]:
    """A point in the general model's constrained parameters, per factor."""
    point: dict[str, object] = {
        "beta": rng.normal(0.0, 2.0, design.X.shape[1]),
        "sigma_g": float(np.exp(rng.normal(0.0, 0.3))),
        "factors": [],
    }
    for f in design.factors:
        n_free = f.q * (f.q - 1) // 2 if f.correlated else 0
        free = rng.normal(0.0, 0.5, n_free)
        point["factors"].append(
            {
                "sigs": np.exp(rng.normal(0.0, 0.4, f.q)),
                "free": free,
                "L": cholesky_corr_free(free, f.q) if n_free else np.eye(f.q),
                "z": rng.normal(0.0, 1.0, (f.n_levels, f.q)),
            }
        )
    return point


def _pymc_values(model: pm.Model, design: GeneralDesign, point: dict) -> dict[str, np.ndarray]:
    """Constrained values of the PyMC model's free variables, transformed to its value vars."""
    constrained: dict[str, np.ndarray] = {"beta": point["beta"], "sigma_g": point["sigma_g"]}
    for f, fp in zip(design.factors, point["factors"], strict=True):
        if f.correlated and f.q > 1:
            C = fp["sigs"][:, None] * fp["L"]
            constrained[f"chol_cov_{f.key}"] = C[np.tril_indices(f.q)]
        else:
            constrained[f"sigs_{f.key}"] = fp["sigs"]
        constrained[f"z_{f.key}"] = fp["z"]
    out = {}
    for rv in model.free_RVs:
        if rv.name not in constrained:
            raise ValueError(
                f"model must have the general cholesky parametrization's variables, found "
                f"free variable {rv.name!r} (expected {sorted(constrained)})"
            )
        value = np.asarray(constrained[rv.name], dtype=float)
        transform = model.rvs_to_transforms.get(rv)
        if transform is not None:
            value = transform.forward(pt.as_tensor(value), *rv.owner.inputs).eval()
        out[model.rvs_to_values[rv].name] = np.asarray(value, dtype=float)
    return out


def crosscheck_general(
    design: GeneralDesign,
    *,
    priors: Priors | None = None,
    model: pm.Model | None = None,
    n_points: int = 6,
    seed: int | np.random.Generator | None = 0,
    engine: str = "auto",
    rtol: float = 1e-9,
    grad_rtol: float = 1e-7,
) -> GeneralCrossCheck:
    """Compare the log density of the general PyMC model with the Stan reference.

    Parameters
    ----------
    design : GeneralDesign
        With outcome; gives the Stan data and (unless ``model`` is given) the PyMC model.
    priors : Priors, optional
        Used for both programs (and for ``model`` when it is built here).
    model : pymc.Model, optional
        A PyMC model in the general ``cholesky`` parametrization to check instead of
        ``build_general_model(design, "cholesky", priors=priors)`` (e.g. a deliberately
        wrong one).
    n_points : int
        Number of random points (>= 2).
    seed : int or Generator
        Source of the points.
    engine : {"auto", "pystan", "bridgestan"}
        See :func:`lmm_pymc.stan.load_model`.
    rtol : float
        Tolerance on the deviations relative to ``max(1, |log p|)``: both sides are exact
        double-precision evaluations of the same sums, so only rounding remains.
    grad_rtol : float
        Tolerance of the relative gradient error on ``beta`` and ``z`` (identity
        coordinates in both programs; their gradients do not involve any Jacobian).

    Returns
    -------
    GeneralCrossCheck
        ``.ok`` when every deviation is within the tolerance.
    """
    from .stan import load_model, stan_file

    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 2:
        raise ValueError(f"n_points must be an integer >= 2, found {n_points!r}")
    priors = Priors() if priors is None else priors
    if model is None:
        model = build_general_model(design, "cholesky", priors=priors)
    stan_model = load_model(
        stan_file(GENERAL_STAN_PROGRAM),
        general_stan_data(design, priors, add_jacobian=False),
        engine=engine,
    )
    logp = model.compile_logp(jacobian=False)
    dlogp = model.compile_dlogp(jacobian=False)
    value_names = [v.name for v in model.value_vars]
    rng = np.random.default_rng(seed)
    diffs, scale, grad_err = [], 1.0, 0.0
    for _ in range(n_points):
        point = _random_point(design, rng)
        values = _pymc_values(model, design, point)
        lp_pymc = float(logp(values))
        log_jac = sum(
            _log_jacobian_cov_chol(fp["sigs"], fp["L"])
            for f, fp in zip(design.factors, point["factors"], strict=True)
            if f.correlated and f.q > 1
        )
        stan_values = {
            "beta": point["beta"],
            "sigma_g": point["sigma_g"],
            "sigs": np.concatenate([fp["sigs"] for fp in point["factors"]]),
            "L_free": np.concatenate([fp["free"] for fp in point["factors"]]),
            "z": np.concatenate([fp["z"].reshape(-1) for fp in point["factors"]]),
        }
        theta = stan_model.unconstrain(stan_values)
        lp_stan = stan_model.log_density(theta, jacobian=False)
        diffs.append(lp_pymc + log_jac - lp_stan)
        scale = max(scale, abs(lp_stan))
        # gradients on the identity coordinates: Stan orders beta first and z last
        grad_flat = np.asarray(dlogp(values), dtype=float)
        grads, start = {}, 0
        for name in value_names:
            size = int(np.size(values[name]))
            grads[name] = grad_flat[start : start + size]
            start += size
        _, grad_stan = stan_model.log_density_gradient(theta)
        g_pymc = np.concatenate([grads["beta"]] + [grads[f"z_{f.key}"] for f in design.factors])
        g_stan = np.concatenate(
            [grad_stan[: len(point["beta"])], grad_stan[-stan_values["z"].size :]]
        )
        grad_err = max(
            grad_err, float(np.max(np.abs(g_pymc - g_stan) / np.maximum(1.0, np.abs(g_stan))))
        )
    diffs_arr = np.asarray(diffs)
    offset = float(diffs_arr.mean())
    deviations = diffs_arr - offset
    return GeneralCrossCheck(
        deviations=deviations,
        offset=offset,
        max_abs_deviation=float(np.max(np.abs(deviations))),
        tolerance=float(rtol * scale),
        max_grad_error=grad_err,
        grad_rtol=float(grad_rtol),
        engine=stan_model.name,
    )
