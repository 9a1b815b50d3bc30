"""Designs of ``benchmarks/scale.py`` beyond the tutorial's formula, fitted from the files
themselves: several numeric predictors, a five-level text predictor and its interaction
with a slope (``general``), and crossed subjects x items (``crossed_files``).

Both go through :func:`lmm_pymc.bigdata.group_statistics_from_files` (Dask); ``general``
also times that pass on a dask.distributed cluster of one and of two worker processes, the
pass's scaling with workers.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from benchmarks.common import peak_rss_mb

#: ``general``: the fixed effects by name, the factor's (sds, correlation), sigma
GENERAL_FORMULA = "y ~ x1 + x2 + x3 + cat5 + x1:cat5 + (1 + x1 | g)"
GENERAL_LEVELS = ("a", "b", "c", "d", "e")
GENERAL_BETA = {"intercept": 1.0, "x1": 0.5, "x2": -0.3, "x3": 0.2,
                **{f"cat5[{c}]": 0.25 * k for k, c in enumerate(GENERAL_LEVELS[1:], 1)},
                **{f"x1:cat5[{c}]": -0.1 * k for k, c in enumerate(GENERAL_LEVELS[1:], 1)}}  # fmt: skip
GENERAL_FACTOR = ((1.0, 0.5), 0.3)
GENERAL_SIGMA = 1.0

#: ``crossed_files``: (intercept, slope), subjects' (sds, correlation), items' sd, sigma
CROSSED_FORMULA = "y ~ x + (1 + x | subject) + (1 | item)"
CROSSED_BETA = (400.0, 30.0)
CROSSED_SUBJECT = ((40.0, 15.0), 0.3)
CROSSED_ITEM_SD = 25.0
CROSSED_SIGMA = 60.0


def _factor_truth(name: str, effects: tuple[str, ...], sds, rho, b) -> tuple[list, dict]:
    """The truth rows and realized values of one factor's sds (and correlation)."""
    import numpy as np

    terms = [f"{e}|{name}" for e in effects]
    truth = [[f"sigs[{t}]", "sigs", {"random_effect": t}, sd] for t, sd in zip(terms, sds, strict=True)]
    realized = {f"sigs[{t}]": float(b[:, k].std(ddof=1)) for k, t in enumerate(terms)}
    if len(terms) == 2:
        key = f"R[{terms[0]}, {terms[1]}]"
        truth.append([key, "R", {"random_effect": terms[0], "random_effect_": terms[1]}, rho])
        realized[key] = float(np.corrcoef(b.T)[0, 1])
    return truth, realized


def _correlated(rng, sds, rho, size):
    import numpy as np

    (s0, s1) = sds
    cov = np.array([[s0**2, rho * s0 * s1], [rho * s0 * s1, s1**2]])
    return rng.multivariate_normal(np.zeros(2), cov, size=size)


def write_general(directory: Path, rows: int, groups: int, files: int, seed: int) -> dict:
    """``y = X beta + b0_g + b1_g x1 + e`` with :data:`GENERAL_BETA` (x1, x2, x3 standard
    normal, cat5 uniform over five levels), every row in a uniformly drawn group."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    b = _correlated(rng, *GENERAL_FACTOR, groups)
    beta = GENERAL_BETA
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for k in range(files):
        n = int(bounds[k + 1] - bounds[k])
        g = rng.integers(0, groups, size=n)
        x1, x2, x3 = rng.standard_normal((3, n))
        level = rng.integers(0, len(GENERAL_LEVELS), size=n)
        cat_effect = np.array([0.0] + [beta[f"cat5[{c}]"] for c in GENERAL_LEVELS[1:]])
        cat_slope = np.array([0.0] + [beta[f"x1:cat5[{c}]"] for c in GENERAL_LEVELS[1:]])
        y = (beta["intercept"] + b[g, 0] + cat_effect[level]
             + (beta["x1"] + b[g, 1] + cat_slope[level]) * x1 + beta["x2"] * x2
             + beta["x3"] * x3 + GENERAL_SIGMA * rng.standard_normal(n))  # fmt: skip
        cat5 = np.array(GENERAL_LEVELS)[level]
        table = pa.table({"g": g.astype(np.int32) + 1, "x1": x1, "x2": x2, "x3": x3,
                          "cat5": cat5, "y": y})  # fmt: skip
        pq.write_table(table, directory / f"part-{k:03d}.parquet", row_group_size=1 << 20)
    truth, realized = _factor_truth("g", ("intercept", "x1"), *GENERAL_FACTOR, b)
    truth = [[f"beta[{name}]", "beta", {"fixed_effect": name}, value]
             for name, value in beta.items()] + [["sigma", "sigma", {}, GENERAL_SIGMA], *truth]  # fmt: skip
    # the data identify the intercept and the x1 slope plus the drawn effects' means
    realized["beta[intercept]"] = float(beta["intercept"] + b[:, 0].mean())
    realized["beta[x1]"] = float(beta["x1"] + b[:, 1].mean())
    return {"truth": truth, "realized": realized}


def statistics_on_cluster(directory: Path, formula: str, workers: int) -> float:
    """Seconds of the files' statistics pass on a dask.distributed cluster of ``workers``
    single-threaded worker processes (started, and the package imported on them, before
    the clock starts: a user starts a cluster once)."""
    from dask.distributed import Client, LocalCluster

    from lmm_pymc.bigdata import group_statistics_from_files

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        client.run(importlib.import_module, "lmm_pymc.bigdata")
        t0 = time.perf_counter()
        group_statistics_from_files(directory, formula)
        return time.perf_counter() - t0


def run_general(directory: Path, fit_options: dict) -> tuple[object, dict[str, float]]:
    """The statistics with Dask's default (threads in the process), then fitted; the pass
    also timed on a cluster of 1 and of 2 worker processes (threads share Python's lock:
    formulae's coding of a block holds it)."""
    import lmm_pymc
    from benchmarks.scale_cases import timed_fit
    from lmm_pymc.bigdata import group_statistics_from_files

    t0 = time.perf_counter()
    stats = group_statistics_from_files(directory, GENERAL_FORMULA)
    seconds = {"statistics_s": time.perf_counter() - t0, "groups_found": len(stats.group_labels)}
    seconds["peak_rss_after_statistics_mb"] = peak_rss_mb()["peak_rss_mb"]
    idata, stages = timed_fit(lambda: lmm_pymc.fit(stats, **fit_options))
    t1 = time.perf_counter()  # side measurements, outside the end to end
    one = statistics_on_cluster(directory, GENERAL_FORMULA, 1)
    two = statistics_on_cluster(directory, GENERAL_FORMULA, 2)
    seconds.update({"statistics_1_worker_s": one, "statistics_2_workers_s": two,
                    "workers_speedup": one / two, "untimed_s": time.perf_counter() - t1})  # fmt: skip
    return idata, {**seconds, **stages}


def write_crossed_files(directory: Path, rows: int, groups: int, files: int, seed: int) -> dict:
    """Subjects x items, fully crossed: ``groups`` subjects, ``rows // groups`` items, a
    +-0.5 condition ``x`` per row; :data:`CROSSED_FORMULA` with its true values."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_items = max(2, rows // groups)
    bs = _correlated(rng, *CROSSED_SUBJECT, groups)
    bi = CROSSED_ITEM_SD * rng.standard_normal((n_items, 1))
    per_file = np.linspace(0, groups, files + 1).astype(np.int64)  # whole subjects per file
    for k in range(files):
        subject = np.repeat(np.arange(per_file[k], per_file[k + 1]), n_items)
        item = np.tile(np.arange(n_items), int(per_file[k + 1] - per_file[k]))
        x = rng.choice([-0.5, 0.5], size=subject.size)
        y = (CROSSED_BETA[0] + bs[subject, 0] + bi[item, 0]
             + (CROSSED_BETA[1] + bs[subject, 1]) * x
             + CROSSED_SIGMA * rng.standard_normal(subject.size))  # fmt: skip
        table = pa.table({"subject": subject.astype(np.int32) + 1,
                          "item": item.astype(np.int32) + 1, "x": x, "y": y})  # fmt: skip
        pq.write_table(table, directory / f"part-{k:03d}.parquet", row_group_size=1 << 20)
    truth, realized = _factor_truth("subject", ("intercept", "x"), *CROSSED_SUBJECT, bs)
    item_truth, item_realized = _factor_truth("item", ("intercept",), (CROSSED_ITEM_SD,), 0.0, bi)
    realized.update(item_realized)
    realized["beta[intercept]"] = float(CROSSED_BETA[0] + bs[:, 0].mean() + bi[:, 0].mean())
    realized["beta[x]"] = float(CROSSED_BETA[1] + bs[:, 1].mean())
    truth = [["beta[intercept]", "beta", {"fixed_effect": "intercept"}, CROSSED_BETA[0]],
             ["beta[x]", "beta", {"fixed_effect": "x"}, CROSSED_BETA[1]],
             ["sigma", "sigma", {}, CROSSED_SIGMA], *truth, *item_truth]  # fmt: skip
    return {"truth": truth, "realized": realized}


def run_crossed_files(directory: Path, fit_options: dict) -> tuple[object, dict[str, float]]:
    import lmm_pymc
    from benchmarks.scale_cases import timed_fit
    from lmm_pymc.bigdata import group_statistics_from_files

    t0 = time.perf_counter()
    stats = group_statistics_from_files(directory, CROSSED_FORMULA)
    seconds = {"statistics_s": time.perf_counter() - t0, "groups_found": len(stats.group_labels)}
    seconds["peak_rss_after_statistics_mb"] = peak_rss_mb()["peak_rss_mb"]
    idata, stages = timed_fit(lambda: lmm_pymc.fit(stats, **fit_options))
    return idata, {**seconds, **stages}
