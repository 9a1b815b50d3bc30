"""The designs of ``benchmarks/scale.py`` and what one repeat measures on them.

A design is a :class:`Case` in :data:`CASES`: a function that writes the Parquet files and
returns the true values, and a function that fits them in the child process, timing its
stages (:func:`timed_fit`). :func:`posterior_checks` then gives the repeat's divergences,
ESS, r_hat and whether each true value lies in its central posterior interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import scale_files_cases as files_cases
from benchmarks.common import peak_rss_mb

#: the variables whose smallest bulk ESS is reported
ESS_VARIABLES = ("beta", "sigma", "sigs")

#: central posterior interval used for "truth covered"
INTERVAL = 0.95


# ------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    """One benchmarked design.

    ``write(directory, rows, groups, files, seed)`` writes the Parquet files into
    ``directory`` and returns ``{"truth": [[name, variable, selection, value], ...],
    "realized": {name: value}}`` (JSON-able; ``realized``: the same quantities computed
    from the random effects actually drawn, e.g. their sample sds, which the posterior
    estimates for a finite number of groups); ``run(directory, fit_options)`` runs in the
    child process, reads the files, fits, and returns ``(idata, {stage: seconds})`` with at least
    ``statistics_s``.
    """

    name: str
    description: str
    formula: str
    write: Callable[[Path, int, int, int, int], dict]
    run: Callable[[Path, dict], tuple[object, dict[str, float]]]
    #: (rows, groups, files) of the full and of the quick run, unless given on the command line
    full: tuple[int, int, int] = (10_000_000, 10_000, 16)
    quick: tuple[int, int, int] = (100_000, 100, 4)


def _write_single(directory: Path, rows: int, groups: int, files: int, seed: int) -> dict:
    """The tutorial's generative model on ``rows`` rows of ``groups`` groups.

    ``y = (6 + b0_j) + (4 + b1_j) x + e``, ``(b0_j, b1_j) ~ N(0, Sigma)`` with sds (3, 2)
    and correlation 0.7, ``e ~ N(0, 1)`` (the values of :mod:`lmm_pymc.tutorial`); ``x``
    takes the tutorial's values 1..10 and every row falls into a uniformly drawn group, so
    every file holds rows of (nearly) every group, in no order.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmm_pymc import tutorial

    rng = np.random.default_rng(seed)
    sd0, sd1 = tutorial.SIGS
    cov = np.array([[sd0**2, tutorial.RHO * sd0 * sd1], [tutorial.RHO * sd0 * sd1, sd1**2]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=groups)  # (J, 2)
    beta0, beta1 = tutorial.BETA
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for k in range(files):
        n = int(bounds[k + 1] - bounds[k])
        group = rng.integers(0, groups, size=n)
        x = rng.integers(1, 11, size=n).astype(np.float64)
        y = (beta0 + b[group, 0]) + (beta1 + b[group, 1]) * x
        y += tutorial.SIGMA * rng.standard_normal(n)
        table = pa.table({"group_id": group.astype(np.int32) + 1, "x": x, "y": y})
        pq.write_table(table, directory / f"part-{k:03d}.parquet", row_group_size=1 << 20)
        del group, x, y, table
    truth = [
        ["beta[intercept]", "beta", {"fixed_effect": "intercept"}, beta0],
        ["beta[x]", "beta", {"fixed_effect": "x"}, beta1],
        ["sigma", "sigma", {}, tutorial.SIGMA],
        ["sigs[intercept|group_id]", "sigs", {"random_effect": "intercept|group_id"}, sd0],
        ["sigs[x|group_id]", "sigs", {"random_effect": "x|group_id"}, sd1],
        ["R[intercept|group_id, x|group_id]", "R",
         {"random_effect": "intercept|group_id", "random_effect_": "x|group_id"},
         tutorial.RHO],
    ]  # fmt: skip
    realized = {
        # the data identify the fixed effects plus the drawn effects' mean
        "beta[intercept]": float(tutorial.BETA[0] + b[:, 0].mean()),
        "beta[x]": float(tutorial.BETA[1] + b[:, 1].mean()),
        "sigs[intercept|group_id]": float(b[:, 0].std(ddof=1)),
        "sigs[x|group_id]": float(b[:, 1].std(ddof=1)),
        "R[intercept|group_id, x|group_id]": float(np.corrcoef(b.T)[0, 1]),
    }
    return {"truth": truth, "realized": realized}


def _run_single(directory: Path, fit_options: dict) -> tuple[object, dict[str, float]]:
    import lmm_pymc
    from lmm_pymc.bigdata import group_statistics_from_files

    t0 = time.perf_counter()
    stats = group_statistics_from_files(directory, "y ~ 1 + x + (1 + x | group_id)")
    seconds = {"statistics_s": time.perf_counter() - t0, "groups_found": len(stats.group_labels)}
    seconds["peak_rss_after_statistics_mb"] = peak_rss_mb()["peak_rss_mb"]
    idata, stages = timed_fit(lambda: lmm_pymc.fit(stats, **fit_options))
    return idata, {**seconds, **stages}


#: the crossed design's true values: (intercept, slope), per factor (sds, correlation), sigma
CROSSED_BETA = (400.0, 30.0)
CROSSED_FACTORS = {"subject": ((40.0, 15.0), 0.3), "item": ((25.0, 10.0), -0.2)}
CROSSED_SIGMA = 60.0


def _write_crossed(directory: Path, rows: int, groups: int, files: int, seed: int) -> dict:
    """Subjects x items, fully crossed: ``groups`` subjects, ``rows // groups`` items, a
    +-0.5 condition ``x`` drawn per row; ``rt ~ 1 + x + (1 + x | subject) + (1 + x | item)``
    with :data:`CROSSED_BETA`, :data:`CROSSED_FACTORS`, :data:`CROSSED_SIGMA`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_items = max(2, rows // groups)
    sizes = {"subject": groups, "item": n_items}
    effects, truth, realized = {}, [], {}
    for name, ((sd0, sd1), rho) in CROSSED_FACTORS.items():
        cov = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
        b = rng.multivariate_normal(np.zeros(2), cov, size=sizes[name])
        effects[name] = b
        terms = [f"intercept|{name}", f"x|{name}"]
        for t, sd in zip(terms, (sd0, sd1), strict=True):
            truth.append([f"sigs[{t}]", "sigs", {"random_effect": t}, sd])
        truth.append([f"R[{terms[0]}, {terms[1]}]", "R",
                      {"random_effect": terms[0], "random_effect_": terms[1]}, rho])  # fmt: skip
        realized[f"sigs[{terms[0]}]"] = float(b[:, 0].std(ddof=1))
        realized[f"sigs[{terms[1]}]"] = float(b[:, 1].std(ddof=1))
        realized[f"R[{terms[0]}, {terms[1]}]"] = float(np.corrcoef(b.T)[0, 1])
    subject, item = np.meshgrid(np.arange(groups), np.arange(n_items), indexing="ij")
    subject, item = subject.ravel(), item.ravel()
    x = rng.choice([-0.5, 0.5], size=subject.size)
    bs, bi = effects["subject"], effects["item"]
    y = (CROSSED_BETA[0] + bs[subject, 0] + bi[item, 0]
         + (CROSSED_BETA[1] + bs[subject, 1] + bi[item, 1]) * x
         + CROSSED_SIGMA * rng.standard_normal(subject.size))  # fmt: skip
    bounds = np.linspace(0, subject.size, files + 1).astype(np.int64)
    for k in range(files):
        sl = slice(int(bounds[k]), int(bounds[k + 1]))
        columns = {"subject": subject[sl].astype(np.int32) + 1,
                   "item": item[sl].astype(np.int32) + 1, "x": x[sl], "rt": y[sl]}  # fmt: skip
        pq.write_table(pa.table(columns), directory / f"part-{k:03d}.parquet")
    # the data identify the fixed effects plus both factors' drawn effects' means
    for k, name in enumerate(("beta[intercept]", "beta[x]")):
        realized[name] = float(CROSSED_BETA[k] + bs[:, k].mean() + bi[:, k].mean())
    truth = [
        ["beta[intercept]", "beta", {"fixed_effect": "intercept"}, CROSSED_BETA[0]],
        ["beta[x]", "beta", {"fixed_effect": "x"}, CROSSED_BETA[1]],
        ["sigma", "sigma", {}, CROSSED_SIGMA],
        *truth,
    ]
    return {"truth": truth, "realized": realized}


def _run_crossed(directory: Path, fit_options: dict) -> tuple[object, dict[str, float]]:
    import pandas as pd

    import lmm_pymc

    t0 = time.perf_counter()
    frame = pd.read_parquet(directory)
    seconds = {"statistics_s": time.perf_counter() - t0}
    seconds["peak_rss_after_statistics_mb"] = peak_rss_mb()["peak_rss_mb"]
    formula = CASES["crossed"].formula
    idata, stages = timed_fit(lambda: lmm_pymc.fit(frame, formula, **fit_options))
    return idata, {**seconds, **stages}


#: the registry of designs; the report has one section per case run
CASES: dict[str, Case] = {
    "single": Case(
        name="single",
        description="one grouping factor, the tutorial's model on per-group sums from Parquet",
        formula="y ~ 1 + x + (1 + x | group_id)",
        write=_write_single,
        run=_run_single,
    ),
    "crossed": Case(
        name="crossed",
        description="crossed subjects x items, read from Parquet, subjects integrated out and "
        "items sampled (the default marginal fit)",
        formula="rt ~ 1 + x + (1 + x | subject) + (1 + x | item)",
        write=_write_crossed,
        run=_run_crossed,
        full=(100_000, 1_000, 1),
        quick=(4_000, 100, 1),
    ),
    "general": Case(
        name="general",
        description="any single-factor formula from Parquet: three numeric predictors, a "
        "five-level text predictor and its interaction with the factor's slope; the "
        "statistics pass also timed on a cluster of 1 and of 2 worker processes",
        formula=files_cases.GENERAL_FORMULA,
        write=files_cases.write_general,
        run=files_cases.run_general,
    ),
    "crossed_files": Case(
        name="crossed_files",
        description="crossed subjects x items fitted from Parquet: the subjects' sums and "
        "their cross-products with the items' levels, summed block by block with Dask",
        formula=files_cases.CROSSED_FORMULA,
        write=files_cases.write_crossed_files,
        run=files_cases.run_crossed_files,
        quick=(20_000, 200, 4),
    ),
}


# ------------------------------------------------------------- one repeat: stages, checks
def timed_fit(call: Callable[[], object]) -> tuple[object, dict[str, float]]:
    """Run ``call`` (a :func:`lmm_pymc.fit`) and split its time into stages.

    Sampling is nutpie's own clock (``posterior.attrs["sampling_time"]``); the exact
    random-effect draws are timed around :func:`lmm_pymc.marginal.random_effects_draws` (where
    :func:`lmm_pymc.marginal.add_random_effects` calls it);
    the rest of the fit (model build, compilation, diagnostics) is build + compile, of
    which the PyMC model's build is timed around ``lmm_pymc.fitting.build_model``.
    """
    import lmm_pymc.fitting as fitting
    import lmm_pymc.marginal.draws as marginal

    spent = {"random_effects_s": 0.0, "build_s": 0.0}
    patched = [(marginal, "random_effects_draws", "random_effects_s"),
               (fitting, "build_model", "build_s")]  # fmt: skip
    originals = []
    for module, name, key in patched:
        if not hasattr(module, name):  # timed only where the package still has it
            spent[key] = float("nan")
            continue
        original = getattr(module, name)
        originals.append((module, name, original))
        setattr(module, name, _stopwatch(original, spent, key))
    try:
        t0 = time.perf_counter()
        idata = call()
        fit_s = time.perf_counter() - t0
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
    sampling_s = float(idata.posterior.attrs.get("sampling_time", float("nan")))
    return idata, {
        "fit_s": fit_s,
        "sampling_s": sampling_s,
        **spent,
        "build_compile_s": fit_s - sampling_s - spent["random_effects_s"],
    }


def _stopwatch(function: Callable, spent: dict[str, float], key: str) -> Callable:
    """``function``, adding the seconds of every call to ``spent[key]``."""

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - t

    return timed


def posterior_checks(idata, truth: list, realized: dict) -> dict:
    """Divergences, NUTS steps per draw, min bulk ESS over :data:`ESS_VARIABLES`, and
    whether each true value (and each realized one) lies in its central interval."""
    import arviz as az
    import numpy as np

    post = idata.posterior
    checked = post[[v for v in ESS_VARIABLES if v in post]]
    ess = az.ess(checked, method="bulk")
    min_ess = min(float(ess[v].min()) for v in ess.data_vars)
    r_hat = az.rhat(checked)
    max_r_hat = max(float(r_hat[v].max()) for v in r_hat.data_vars)
    covered, covered_realized = {}, {}
    lo_q, hi_q = (1 - INTERVAL) / 2, 1 - (1 - INTERVAL) / 2
    intervals = {}
    for name, var, sel, value in truth:
        draws = post[var].sel(sel).values.reshape(-1) if sel else post[var].values.reshape(-1)
        lo, hi = np.quantile(draws, [lo_q, hi_q])
        intervals[name] = [float(lo), float(hi), float(value)]
        covered[name] = bool(lo <= value <= hi)
        if name in realized:
            covered_realized[name] = bool(lo <= realized[name] <= hi)
    steps = next((v for v in ("n_steps", "tree_size") if v in idata.sample_stats), None)
    b_names = [v for v in post.data_vars if str(v).startswith("b_")]
    return {
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "steps_per_draw": float(idata.sample_stats[steps].mean()) if steps else None,
        "min_ess_bulk": min_ess,
        "max_r_hat": max_r_hat,
        "covered": covered,
        "all_covered": all(covered.values()),
        "realized": realized,
        "covered_realized": covered_realized,
        "intervals": intervals,
        "random_effect_shapes": {str(v): list(post[v].shape) for v in b_names},
    }
