"""After sampling: pointwise log-likelihood, posterior predictive draws and predictions for
new data, as InferenceData groups ArviZ understands.

For posterior draw ``s`` and row ``i``::

    mu_si = X_i beta_s + sum_f Z_fi b_f,s[g_f(i)]          y_si ~ Normal(mu_si, sigma_s)

or, for a binary or count outcome, ``y_si ~ family(g^-1(mu_si))`` (:mod:`lmm_pymc.families`,
the fit's ``attrs["family"]`` and ``attrs["link"]``): its log pmf, its draws and its mean.

* :func:`add_log_likelihood`: ``log_likelihood["y"]`` (chain, draw, obs) is the conditional
  log density of each row given the draw's random effects, the one variable ``az.loo``,
  ``az.waic``, ``az.compare`` and ``az.plot_loo_pit`` read by default; it estimates the fit
  to **new rows of the same groups**.
* :func:`group_log_likelihood`: for a single grouping factor, an InferenceData whose
  ``log_likelihood["y"]`` (chain, draw, <factor>) is each group's **marginal** log density
  with its random effects integrated out (:func:`lmm_pymc.marginal.marginal_loglik_numpy`):
  ``az.loo`` of it estimates leave-one-group-out, the fit to **new groups**. A fit of
  per-group sums has no rows: its own ``log_likelihood["y"]`` is this per-group one.
* :func:`add_posterior_predictive`: ``posterior_predictive["y"]`` replicates the data
  (``az.plot_ppc``), beside ``observed_data["y"]``.
* :func:`predict`: rows of new data, for groups seen in the fit (their posterior random
  effects), for new groups (random effects drawn from ``N(0, Sigma_s)`` per draw, as brms's
  ``allow_new_levels``) or for the fixed effects alone (``random_effects=False``, lme4's
  ``re.form = NA``).

The fit keeps the data columns its formula uses in ``constant_data`` (that is how
:func:`predict` rebuilds the design of new rows with the same coding).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .design import Design, GroupedStatistics
from .families import Family, family as as_family
from .formula import formula_columns, design_from_formula, split_formula
from .response import parse_response

__all__ = [
    "add_log_likelihood",
    "group_log_likelihood",
    "add_posterior_predictive",
    "linear_predictor",
    "predict",
    "store_data",
]

_SAMPLE = ("chain", "draw")


def _draws(posterior: xr.Dataset, name: str) -> np.ndarray:
    """(S, ...) draws of ``name`` with chains stacked."""
    v = posterior[name].values
    return v.reshape(-1, *v.shape[2:])


def _shape(posterior: xr.Dataset) -> tuple[int, int]:
    return posterior.sizes["chain"], posterior.sizes["draw"]


def linear_predictor(
    posterior: xr.Dataset, design: Design, *, random_effects: bool = True,
    new_effects: dict[str, np.ndarray] | None = None,
) -> np.ndarray:  # fmt: skip
    """``mu`` of shape (S, N): ``X beta`` plus, with ``random_effects``, every factor's
    ``Z b[g]``. ``new_effects[factor]`` (S, J_new, q) are appended after the fitted levels."""
    mu = _draws(posterior, "beta") @ design.X.T
    if not random_effects:
        return mu
    for f in design.factors:
        b = _draws(posterior, f"b_{f.key}")
        if new_effects and f.name in new_effects:
            b = np.concatenate([b, new_effects[f.name]], axis=1)
        mu = mu + np.einsum("sng,ng->sn", b[:, f.index, :], f.Z)
    return mu


def _dataset(
    values: np.ndarray, posterior: xr.Dataset, dims: tuple[str, ...], coords
) -> xr.Dataset:
    chains, draws = _shape(posterior)
    data = values.reshape(chains, draws, *values.shape[1:])
    return xr.Dataset({"y": (_SAMPLE + dims, data)},
                      coords={"chain": posterior["chain"].values,
                              "draw": posterior["draw"].values, **coords})  # fmt: skip


def _replace_group(idata: az.InferenceData, name: str, ds: xr.Dataset) -> None:
    if name in idata.groups():
        idata[name] = ds  # type: ignore[index]
    else:
        idata.add_groups({name: ds})


def _family(idata: az.InferenceData, family: Family | None) -> Family:
    """``family``, or the fit's (its attrs; a fit without them is Gaussian)."""
    if family is not None:
        return family
    return as_family(idata.attrs.get("family", "gaussian"), idata.attrs.get("link") or None)


def _parameters(posterior: xr.Dataset, family: Family) -> dict[str, np.ndarray]:
    """(S, 1) draws of the family's own parameters (``sigma``, ``alpha``)."""
    return {p: _draws(posterior, p)[:, None] for p in family.parameters}


def add_log_likelihood(
    idata: az.InferenceData, design: Design | GroupedStatistics, family: Family | None = None
) -> None:
    """Add ``log_likelihood["y"]`` to ``idata`` (module docstring): per row (``obs``) given
    the draw's random effects for a :class:`Design`; per group with the effects integrated
    out for per-group sums (rows are gone: leave-one-group-out is the only LOO there).
    ``family`` defaults to the fit's."""
    post = idata.posterior
    if isinstance(design, GroupedStatistics):
        ds = _group_dataset(post, design)
    else:
        family = _family(idata, family)
        mu = linear_predictor(post, design)
        ll = family.log_density(design.y[None], mu, _parameters(post, family), design.trials)
        ds = _dataset(ll, post, ("obs",), {"obs": np.arange(design.n_obs)})
    _replace_group(idata, "log_likelihood", ds)


def _group_dataset(post: xr.Dataset, grouped: GroupedStatistics) -> xr.Dataset:
    """``y`` (chain, draw, <factor>): each group's marginal log density per draw."""
    if grouped.crossed is not None:
        raise ValueError(
            "a per-group log-likelihood needs one grouping factor, found per-group sums of "
            f"crossed factors {[f.name for f in grouped.factors]} (the groups of "
            f"{grouped.factor.name!r} share the other factors' effects); fit the rows for "
            "pointwise LOO"
        )
    from .marginal import marginal_loglik_numpy

    beta, sigma = _draws(post, "beta"), _draws(post, "sigma")
    sigs, R = _draws(post, "sigs"), _draws(post, "R")
    Sigma = sigs[:, :, None] * R * sigs[:, None, :]
    stats = grouped.statistics
    # draws in blocks of ~2e6 numbers of (draws, J, q, q)
    step = max(1, 2_000_000 // stats.ZtZ.size)
    per_group = np.concatenate([
        marginal_loglik_numpy(stats, beta[s : s + step], sigma[s : s + step],
                              Sigma[s : s + step])
        for s in range(0, beta.shape[0], step)
    ])  # fmt: skip
    f = grouped.factor
    return _dataset(per_group, post, (f.level_dim,), {f.level_dim: list(f.labels)})


def group_log_likelihood(
    idata: az.InferenceData, data: Design | GroupedStatistics | None = None
) -> az.InferenceData:
    """The fit's posterior with a per-group ``log_likelihood["y"]``: each group's log density
    with its random effects integrated out, so ``az.loo`` of the result estimates
    **leave-one-group-out** (the fit to new groups) where ``az.loo(idata)`` estimates the
    fit to new rows of known groups.

    Parameters
    ----------
    idata : InferenceData
        A fit of :func:`lmm_pymc.fit` with one grouping factor.
    data : Design or GroupedStatistics, optional
        The fitted data where the fit was not given a data frame or a simulation (those keep
        their columns in ``constant_data`` and ``observed_data``, from which the per-group
        sums are rebuilt).

    Returns
    -------
    InferenceData
        Groups ``posterior`` (the fit's) and ``log_likelihood`` (``y``: chain, draw, factor).

    Examples
    --------
    >>> loo_groups = az.loo(lmm_pymc.group_log_likelihood(idata))  # doctest: +SKIP
    """
    family = _family(idata, None)
    if not family.is_gaussian:
        raise ValueError(
            "group_log_likelihood integrates each group's effects out exactly, which holds for "
            f"family 'gaussian' only, found a fit of family {family.name!r}; use az.loo(idata) "
            "(per row) instead"
        )
    if data is None:
        data = _fitted_design(idata)
    if isinstance(data, Design):
        if len(data.factors) != 1:
            raise ValueError(
                "group_log_likelihood needs a fit with one grouping factor (leave one level "
                f"out), found {len(data.factors)}: {[f.name for f in data.factors]}"
            )
        data = data.grouped_statistics()
    if not isinstance(data, GroupedStatistics):
        raise TypeError(
            f"data must be a Design or GroupedStatistics, found {type(data).__name__}"
        )
    ds = _group_dataset(idata.posterior, data)
    return az.InferenceData(posterior=idata.posterior, log_likelihood=ds)


def _fitted_design(idata: az.InferenceData) -> Design:
    """The fitted rows' design, rebuilt from ``constant_data``, ``observed_data`` and the
    formula that :func:`lmm_pymc.fit` keeps."""
    formula = idata.attrs.get("formula")
    if not formula or "observed_data" not in idata.groups():
        raise ValueError(
            "idata keeps no fitted rows (a fit of a data frame or a simulation with "
            "pointwise=True keeps them); pass data= the fitted Design or GroupedStatistics"
        )
    frame = _fitted_frame(idata)
    _, response, _, _ = split_formula(formula)
    frame[response or "y"] = idata.observed_data["y"].values
    return design_from_formula(formula, frame)


def add_posterior_predictive(
    idata: az.InferenceData, design: Design, seed: int | np.random.Generator | None = None,
    family: Family | None = None,
) -> None:  # fmt: skip
    """Add ``posterior_predictive["y"]`` (replicated data per draw: values, 0/1, counts or
    successes out of the trials) and ``observed_data["y"]``; ``family`` defaults to the
    fit's."""
    rng = np.random.default_rng(seed)
    post = idata.posterior
    family = _family(idata, family)
    mu = linear_predictor(post, design)
    y_rep = family.draw(rng, mu, _parameters(post, family), design.trials)
    coords = {"obs": np.arange(design.n_obs)}
    _replace_group(idata, "posterior_predictive", _dataset(y_rep, post, ("obs",), coords))
    _replace_group(idata, "observed_data", xr.Dataset({"y": ("obs", design.y)}, coords=coords))


def store_data(idata: az.InferenceData, frame: pd.DataFrame, formula: str) -> None:
    """Keep the columns ``formula`` uses in ``idata.constant_data`` (for :func:`predict`)."""
    rhs, response, _, _ = split_formula(formula)
    trials = parse_response(formula.split("~")[0], formula).trials_column if response else None
    data = {}
    for c in sorted((formula_columns(rhs, frame) | ({trials} - {None})) - {response}):
        values = frame[c].to_numpy()
        data[c] = ("obs", values.astype(str) if values.dtype == object else values)
    _replace_group(idata, "constant_data", xr.Dataset(data, coords={"obs": np.arange(len(frame))}))


def _fitted_frame(idata: az.InferenceData) -> pd.DataFrame:
    if "constant_data" not in idata.groups():
        raise ValueError(
            "idata must come from lmm_pymc.fit on a data frame or a simulation (it keeps the "
            "data's columns in constant_data), found no constant_data group"
        )
    return idata.constant_data.to_dataframe().reset_index(drop=True)


def _new_effects(posterior: xr.Dataset, design: Design, n_fitted: dict[str, int],
                 rng: np.random.Generator) -> dict[str, np.ndarray]:  # fmt: skip
    """(S, J_new, q) draws ``b ~ N(0, Sigma_s)`` for the levels of each factor beyond the
    fitted ones (a new group's effects, per posterior draw)."""
    sigs, R = _draws(posterior, "sigs"), _draws(posterior, "R")
    terms = list(posterior["sigs"].coords["random_effect"].values)
    out = {}
    for f in design.factors:
        extra = f.n_levels - n_fitted[f.name]
        if extra <= 0:
            continue
        pos = [terms.index(t) for t in f.terms]
        s, r = sigs[:, pos], R[:, pos][:, :, pos]
        Sigma = s[:, :, None] * r * s[:, None, :]
        L = np.linalg.cholesky(Sigma + 1e-12 * np.eye(f.q))
        z = rng.standard_normal((Sigma.shape[0], extra, f.q))
        out[f.name] = np.einsum("sqk,sjk->sjq", L, z)
    return out


def _new_rows(
    idata: az.InferenceData, new_data: pd.DataFrame, formula: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fitted rows' columns and ``new_data``'s same columns, coded alike."""
    fitted = _fitted_frame(idata)
    missing = [c for c in fitted.columns if c not in new_data.columns]
    if missing:
        raise ValueError(
            f"new_data lacks column(s) {missing} that the formula {formula!r} uses; columns "
            f"found: {list(new_data.columns)}"
        )
    new = new_data[list(fitted.columns)].reset_index(drop=True)
    for c in fitted.columns:  # the fitted frame stores text labels as text
        if fitted[c].dtype == object or pd.api.types.is_string_dtype(fitted[c]):
            new[c] = new[c].astype(str)
    return fitted, new


def predict(
    idata: az.InferenceData,
    new_data: pd.DataFrame,
    *,
    random_effects: bool = True,
    allow_new_levels: bool = True,
    kind: str = "response",
    seed: int | np.random.Generator | None = None,
) -> az.InferenceData:
    """Predict rows of ``new_data`` from a fit of :func:`lmm_pymc.fit`.

    Parameters
    ----------
    idata : InferenceData
        A fit (its ``posterior``, attrs ``formula`` and ``constant_data``).
    new_data : DataFrame
        The predictors and grouping columns of the formula (the outcome may be absent).
    random_effects : bool
        ``True``: fitted groups use their posterior random effects and new groups draw
        theirs from ``N(0, Sigma)``; ``False``: the fixed effects alone, ``X beta``.
    allow_new_levels : bool
        With ``False``, a level absent from the fit is an error.
    kind : {"response", "mean", "link"}
        ``"response"``: draws of y (with residual noise; 0/1, counts or successes out of the
        trials for other families); ``"mean"``: draws of E[y] on the response scale
        (``g^-1(eta)``: a probability for bernoulli, ``n g^-1(eta)`` successes for
        binomial, whose ``new_data`` then needs the trials column); ``"link"``: draws of the
        linear predictor ``eta`` (for the Gaussian all three but ``"response"`` coincide).
    seed : int or Generator, optional
        For the new groups' effects and the residual noise.

    Returns
    -------
    InferenceData
        ``predictions["y"]`` (chain, draw, obs) and ``predictions_constant_data`` holding
        ``new_data``'s columns.
    """
    if kind not in ("response", "mean", "link"):
        raise ValueError(f"kind must be 'response', 'mean' or 'link', found {kind!r}")
    if not isinstance(new_data, pd.DataFrame):
        raise TypeError(f"new_data must be a non-empty pandas DataFrame, found {new_data!r}")
    if new_data.empty:
        raise ValueError(f"new_data must be a non-empty pandas DataFrame, found {new_data!r}")
    formula = idata.attrs.get("formula")
    if not formula:
        raise ValueError("idata must carry the attr 'formula' of lmm_pymc.fit, found none")
    fitted, new = _new_rows(idata, new_data, formula)
    both = pd.concat([fitted, new], ignore_index=True)
    rhs_formula = formula.split("~", 1)[1]
    design = design_from_formula(rhs_formula, both, require_response=False)
    post = idata.posterior
    n_fitted = {f.name: post.sizes[f.level_dim] for f in design.factors}
    rows = np.arange(len(fitted), len(both))
    for f in design.factors:
        unseen = sorted({f.labels[j] for j in f.index[rows] if j >= n_fitted[f.name]}, key=str)
        if unseen and random_effects and not allow_new_levels:
            raise ValueError(
                f"new_data has level(s) {unseen[:5]} of {f.name!r} absent from the fit; pass "
                "allow_new_levels=True to draw their effects from N(0, Sigma)"
            )
    if design.X.shape[1] != post.sizes["fixed_effect"]:
        raise ValueError(
            f"new_data gives {design.X.shape[1]} fixed-effect columns where the fit has "
            f"{post.sizes['fixed_effect']} (a category absent from the fit?)"
        )
    rng = np.random.default_rng(seed)
    effects = _new_effects(post, design, n_fitted, rng) if random_effects else None
    mu = linear_predictor(post, design, random_effects=random_effects, new_effects=effects)
    mu = mu[:, rows]
    family = _family(idata, None)
    lhs = formula.split("~", 1)[0]
    trials = parse_response(lhs, formula).trials_values(new) if family.needs_trials else None
    if kind == "mean":
        mu = family.mean(mu, trials)
    elif kind == "response":
        mu = family.draw(rng, mu, _parameters(post, family), trials)
    coords = {"obs": np.arange(len(rows))}
    out = az.InferenceData(predictions=_dataset(mu, post, ("obs",), coords))
    data = {c: ("obs", new[c].to_numpy()) for c in new.columns}
    out.add_groups(predictions_constant_data=xr.Dataset(data, coords=coords))
    out.attrs.update(formula=formula, kind=kind, random_effects=str(random_effects))
    return out
