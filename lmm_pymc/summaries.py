"""A fit's summary as a statistician reads it, in the spirit of ``summary(brm(...))``:
fixed effects, random-effect sds and correlations per factor, residual sd, each with a
95% interval, R-hat and effective sample sizes, the divergences and the priors used. A fit of
a binary or count outcome names its family and link and has no residual sd (the negative
binomial's ``alpha`` in its place; the Student-t's ``sigma`` and ``nu``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .families import family as as_family

if TYPE_CHECKING:
    import arviz as az

__all__ = ["FitSummary", "summary", "text_table"]

_COLUMNS = ["mean", "sd", "2.5%", "97.5%", "r_hat", "ess_bulk", "ess_tail"]


@dataclass(frozen=True)
class FitSummary:
    """Tables of :func:`summary`; ``str()`` prints them."""

    header: str
    fixed: pd.DataFrame
    groups: dict[str, pd.DataFrame]
    residual: pd.DataFrame
    priors: pd.DataFrame
    divergences: int
    #: Title of ``residual``: the residual sd, or the family's own parameters (may be none).
    residual_title: str = "Residual"

    def __str__(self) -> str:
        parts = [self.header, "", "Group-level effects:"]
        for name, table in self.groups.items():
            parts += [f"~{name}", text_table(table, index=True), ""]
        parts += ["Population-level effects:", text_table(self.fixed, index=True), ""]
        if len(self.residual):
            parts += [f"{self.residual_title}:", text_table(self.residual, index=True), ""]
        parts += ["Priors:", self.priors.to_string(index=False), "",
                  f"Divergent transitions after warmup: {self.divergences}"]  # fmt: skip
        if self.divergences:
            parts.append("(raise target_accept; see the SamplingWarning)")
        return "\n".join(parts)


def _number_format(column: str, precise: bool):
    """How a statistician reads a column: effective sample sizes as whole draws, R-hat to
    three decimals (the 1.01 threshold stays visible), estimates to 3 decimals (6
    significant digits where ``precise``)."""
    if column.startswith("ess"):
        return lambda v: "nan" if not np.isfinite(v) else f"{v:.0f}"
    if column == "r_hat":
        return "{:.3f}".format
    return "{:.6g}".format if precise else "{:.3f}".format


def text_table(table: pd.DataFrame, *, index: bool = False, precise: bool = False) -> str:
    """A table as printed by :class:`FitSummary` and the command line: all columns, numbers
    formatted per column (:func:`_number_format`)."""
    formatters = {c: _number_format(str(c), precise) for c in table.columns
                  if pd.api.types.is_float_dtype(table[c])}  # fmt: skip
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        return table.to_string(index=index, formatters=formatters)


def _table(idata: az.InferenceData, var: str, coords: dict | None = None) -> pd.DataFrame:
    import arviz as az

    post = idata.posterior[var]
    if coords:  # select first: R's constant diagonal has no ESS (0 / 0)
        post = post.sel(coords)
    draws = post.stack(sample=("chain", "draw"))
    lo, hi = draws.quantile(0.025, "sample"), draws.quantile(0.975, "sample")
    one = post.to_dataset(name=var)
    ess_b = az.ess(one, method="bulk")[var]
    ess_t = az.ess(one, method="tail")[var]
    rhat = az.rhat(one)[var]
    values = [draws.mean("sample"), draws.std("sample"), lo, hi, rhat, ess_b, ess_t]
    data = np.stack([np.atleast_1d(np.asarray(v)) for v in values], axis=1)
    index = [str(c) for c in post.coords[post.dims[-1]].values] if post.ndim > 2 else [var]
    return pd.DataFrame(data, index=index, columns=_COLUMNS)


def summary(idata: az.InferenceData) -> FitSummary:
    """The summary of a fit of :func:`lmm_pymc.fit` (``print(lmm_pymc.summary(idata))``)."""
    post = idata.posterior
    terms = [str(t) for t in post["sigs"].coords["random_effect"].values]
    factors: dict[str, list[str]] = {}
    for t in terms:
        factors.setdefault(t.split("|", 1)[1], []).append(t)
    groups = {}
    for name, fterms in factors.items():
        sds = _table(idata, "sigs", {"random_effect": fterms})
        sds.index = [f"sd({t.split('|', 1)[0]})" for t in fterms]
        rows = [sds]
        for i, a in enumerate(fterms):
            for b in fterms[i + 1 :]:
                r = _table(idata, "R", {"random_effect": a, "random_effect_": b})
                r.index = [f"cor({a.split('|', 1)[0]}, {b.split('|', 1)[0]})"]
                rows.append(r)
        table = pd.concat(rows)
        key = name.replace(":", "_")
        levels = post.sizes.get(name) or post.sizes.get(key)
        groups[f"{name} (levels: {levels})" if levels else name] = table
    stats = idata.sample_stats
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    n_obs = idata.observed_data.sizes["obs"] if "observed_data" in idata.groups() else "?"
    family = idata.attrs.get("family", "gaussian")
    own = list(as_family(family, idata.attrs.get("link") or None).parameters)  # sigma, alpha
    header = (
        (f"Family: {family} (link: {idata.attrs.get('link')})\n" if family != "gaussian" else "")
        + f"Formula: {idata.attrs.get('formula', '?')}\n"
        f"Parametrization: {idata.attrs.get('parametrization', '?')}; sampler "
        f"{idata.attrs.get('sampler', '?')}; {post.sizes['chain']} chains x "
        f"{post.sizes['draw']} draws; observations: {n_obs}"
    )
    if post.attrs.get("target_accept") is not None:
        header += f"; target_accept {float(post.attrs['target_accept']):g}"
    if post.attrs.get("first_run"):  # sample_model ran the chains again
        header += f"\nSampled twice: {post.attrs['first_run']}; these draws are the second run's"
    prior_rows = json.loads(idata.attrs.get("prior_table", "[]"))  # written by fit
    return FitSummary(
        header=header,
        fixed=_table(idata, "beta"),
        groups=groups,
        residual=pd.concat([_table(idata, v) for v in own]) if own else pd.DataFrame(),
        priors=pd.DataFrame(prior_rows, columns=["parameter", "prior"]),
        divergences=divergences,
        residual_title="Residual" if family == "gaussian" else "Family-specific parameters",
    )
