"""Per-group sufficient statistics from CSV / Parquet files with dask.dataframe."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

import lmm_pymc
from lmm_pymc import build_model, design_from_formula, tutorial
from lmm_pymc.bigdata import group_statistics_from_files
from lmm_pymc.design import GroupStatistics

FIELDS = [f.name for f in fields(GroupStatistics)]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """40 groups with string labels and unequal sizes, rows shuffled across files."""
    sizes = [5 + (7 * j) % 23 for j in range(40)]
    labels = [f"site-{j:02d}" for j in range(40)]
    sim = lmm_pymc.simulate(
        data=tutorial.design_frame(40, group_sizes=sizes, group_labels=labels), seed=11
    )
    return sim.data.sample(frac=1.0, random_state=5).reset_index(drop=True)


def _write_parts(frame: pd.DataFrame, directory, suffix: str, n_parts: int = 5) -> list:
    paths = []
    bounds = np.linspace(0, len(frame), n_parts + 1).astype(int)
    for k in range(n_parts):
        part = frame.iloc[bounds[k] : bounds[k + 1]]
        path = directory / f"part-{k}.{suffix}"
        if suffix == "parquet":
            part.to_parquet(path, index=False)
        else:
            part.to_csv(path, index=False)
        paths.append(path)
    return paths


def _assert_equal(got: GroupStatistics, ref: GroupStatistics) -> None:
    # rtol=1e-12: the same sums in a different order of summation (blocks, then groups)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-12, atol=0)


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_multi_file_statistics_equal_in_memory(tmp_path, frame, suffix):
    _write_parts(frame, tmp_path, suffix)
    design = design_from_formula(tutorial.FORMULA, frame)
    got = group_statistics_from_files(
        str(tmp_path / f"*.{suffix}"), group_labels=design.factors[0].labels
    )
    assert got.group_labels == design.factors[0].labels
    assert got.n_obs == len(frame)
    _assert_equal(got.statistics, design.grouped_statistics().statistics)


def test_parquet_directory_sorted_labels_and_reorder(tmp_path, frame):
    paths = _write_parts(frame, tmp_path, "parquet")
    got = group_statistics_from_files(tmp_path)  # a Parquet data set directory
    assert list(got.group_labels) == sorted(frame["group_id"].unique())
    design = design_from_formula(tutorial.FORMULA, frame)
    _assert_equal(
        got.reorder(design.factors[0].labels).statistics, design.grouped_statistics().statistics
    )
    # a list of files gives the same result
    listed = group_statistics_from_files(paths)
    _assert_equal(listed.statistics, got.statistics)


def test_equality_check_can_fail(tmp_path, frame):
    """One changed outcome in one file must break the equality the tests above assert."""
    changed = frame.copy()
    changed.loc[17, "y"] += 1e-3
    _write_parts(changed, tmp_path, "parquet")
    design = design_from_formula(tutorial.FORMULA, frame)
    got = group_statistics_from_files(tmp_path, group_labels=design.factors[0].labels)
    with pytest.raises(AssertionError):
        _assert_equal(got.statistics, design.grouped_statistics().statistics)


def test_other_column_names(tmp_path, frame):
    renamed = frame.rename(columns={"y": "score", "x": "week", "group_id": "school"})
    renamed.to_parquet(tmp_path / "one.parquet", index=False)
    got = group_statistics_from_files(tmp_path / "one.parquet",
                                      "score ~ 1 + week + (1 + week | school)")  # fmt: skip
    design = design_from_formula(tutorial.FORMULA, frame)
    ref = design.grouped_statistics().statistics
    order = [design.factors[0].labels.index(g) for g in got.group_labels]
    assert got.fixed_names == ("intercept", "week") and got.factor.name == "school"
    for name in FIELDS:
        # rtol=1e-12: same sums, different order of summation
        np.testing.assert_allclose(getattr(got.statistics, name), getattr(ref, name)[order],
                                   rtol=1e-12, atol=0)  # fmt: skip


def test_errors_name_the_problem(tmp_path, frame):
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    with pytest.raises(ValueError, match="response column 'outcome' is not in data"):
        group_statistics_from_files(tmp_path / "a.parquet", "outcome ~ x + (1 | group_id)")
    with pytest.raises(ValueError, match="column 'size', which is not in data"):
        group_statistics_from_files(tmp_path / "a.parquet", "y ~ size + (1 | group_id)")
    with pytest.raises(ValueError, match="existing files"):
        group_statistics_from_files(tmp_path / "nope.parquet")
    with pytest.raises(ValueError, match="file_format"):
        group_statistics_from_files(tmp_path / "a.parquet", file_format="json")
    bad = frame.copy()
    bad.loc[3, "y"] = np.inf
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="column 'y' must be finite, found 1 non-finite"):
        group_statistics_from_files(tmp_path / "bad.csv")
    nolabel = frame.copy()
    nolabel.loc[4, "group_id"] = None
    nolabel.to_parquet(tmp_path / "nolabel.parquet", index=False)
    with pytest.raises(ValueError, match="missing labels, found 1"):
        group_statistics_from_files(tmp_path / "nolabel.parquet")
    got = group_statistics_from_files(tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="permutation"):
        got.reorder(["site-00"])


def test_dask_statistics_feed_the_marginal_model(tmp_path, frame):
    """The fast path fits from the per-group sums alone: same log density either way."""
    _write_parts(frame, tmp_path, "parquet")
    design = design_from_formula(tutorial.FORMULA, frame)
    got = group_statistics_from_files(tmp_path, group_labels=design.factors[0].labels)
    from_files = build_model(got)
    in_memory = build_model(design)
    point = in_memory.initial_point(random_seed=3)
    point = {k: v + 0.3 for k, v in point.items()}  # away from the symmetric start
    a = from_files.compile_logp()(point)
    b = in_memory.compile_logp()(point)
    # rtol=1e-10: the same model on sums that agree to ~1e-15 relative
    np.testing.assert_allclose(a, b, rtol=1e-10)
    changed = frame.copy()
    changed.loc[17, "y"] += 0.5
    wrong = design_from_formula(tutorial.FORMULA, changed)
    c = build_model(wrong).compile_logp()(point)
    assert abs(c - b) > 1e-6  # the comparison can fail: one changed row moves the log density


def _exact_group_sums(group: np.ndarray, x: np.ndarray, y: np.ndarray, labels) -> dict:
    """Correctly rounded per-group sums (math.fsum) and the sums of absolute terms."""
    import math

    exact, absolute = {}, {}
    terms = {"n": np.ones_like(x), "Sx": x, "Sxx": x * x, "Sy": y, "Sxy": x * y, "Syy": y * y}
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], labels, side="left").tolist() + [len(group)]
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    for name, t in terms.items():
        t = t[order]
        exact[name] = np.array([math.fsum(t[a:b]) for a, b in spans])
        absolute[name] = np.array([np.abs(t[a:b]).sum() for a, b in spans])
    return exact, absolute


def test_float64_sums_match_exact_sums(tmp_path):
    """The sums over blocks and files equal the correctly rounded sums of the same products.

    Tolerance: summing m terms in float64 in any order (per block, then across blocks) is
    off by at most about m u sum|t_i| (u = 2^-53, the terms x*y themselves rounded once);
    m u with the largest group (m < 700 rows here) is below 1e-13, and the test allows
    m 2^-52 sum|t_i| per group and statistic. The outcome is centred far from 0 (mean
    ~1e3), so Syy and Sy are large and an error of single precision (1e-7) or a lost block
    shows up many orders of magnitude above the bound.
    """
    rng = np.random.default_rng(3)
    rows, groups = 120_000, 300
    group = rng.integers(0, groups, size=rows)
    x = rng.normal(2.0, 3.0, size=rows)
    y = 1e3 + rng.normal(0.0, 5.0, size=groups)[group] + 0.7 * x + rng.normal(size=rows)
    frame = pd.DataFrame({"g": group, "x": x, "y": y, "unused": rng.normal(size=rows)})
    _write_parts(frame, tmp_path, "parquet", n_parts=6)
    got = group_statistics_from_files(tmp_path, "y ~ 1 + x + (1 + x | g)")
    labels = np.arange(groups)
    assert list(got.group_labels) == labels.tolist()
    exact, absolute = _exact_group_sums(group, x, y, labels)
    stats = got.statistics
    found = {"n": stats.n, "Sx": stats.XtX[:, 0, 1], "Sxx": stats.XtX[:, 1, 1],
             "Sy": stats.Xty[:, 0], "Sxy": stats.Xty[:, 1], "Syy": stats.yty}  # fmt: skip
    m = exact["n"]
    assert m.max() < 700
    for name, value in found.items():
        bound = m * 2.0**-52 * absolute[name]
        assert np.all(np.abs(value - exact[name]) <= bound), name
    # the same bound rejects sums off by one part in 1e10 (far below single precision)
    assert not np.all(np.abs(stats.yty * (1 + 1e-10) - exact["Syy"]) <= m * 2.0**-52
                      * absolute["Syy"])  # fmt: skip
    # the other matrix entries are copies of these sums
    np.testing.assert_array_equal(stats.XtX[:, 1, 0], stats.XtX[:, 0, 1])
    np.testing.assert_array_equal(stats.ZtZ, stats.XtX)
    np.testing.assert_array_equal(stats.Zty, stats.Xty)


def test_schedulers_agree_and_bad_arguments_are_named(tmp_path, frame):
    _write_parts(frame, tmp_path, "parquet")
    threads = group_statistics_from_files(tmp_path, scheduler="threads")
    single = group_statistics_from_files(tmp_path, scheduler="synchronous")
    for name in FIELDS:
        # rtol=1e-12: the same sums, the blocks possibly added in another order
        a, b = getattr(threads.statistics, name), getattr(single.statistics, name)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match=r"scheduler must be one of .*found 'gpu'"):
        group_statistics_from_files(tmp_path, scheduler="gpu")
    with pytest.raises(ValueError, match=r"integrate must name a grouping factor among "
                                         r"\['group_id'\], found 'g'"):
        group_statistics_from_files(tmp_path, integrate="g")
    with pytest.raises(ValueError, match=r"uses \['scale'\], which depend on all the rows"):
        group_statistics_from_files(tmp_path, "y ~ scale(x) + (1 | group_id)")


def test_non_finite_predictor_and_many_blocks(tmp_path, frame):
    """NaN in x is counted (not summed into NaN sums), and 20 blocks go through two levels
    of the tree of additions."""
    bad = frame.copy()
    bad.loc[[2, 9], "x"] = np.nan
    _write_parts(bad, tmp_path, "csv", n_parts=20)
    with pytest.raises(ValueError, match="column 'x' must be finite, found 2 non-finite"):
        group_statistics_from_files(tmp_path / "*.csv")
    for path in tmp_path.glob("*.csv"):
        path.unlink()
    _write_parts(frame, tmp_path, "csv", n_parts=20)
    design = design_from_formula(tutorial.FORMULA, frame)
    got = group_statistics_from_files(tmp_path / "*.csv", group_labels=design.factors[0].labels)
    _assert_equal(got.statistics, design.grouped_statistics().statistics)


# --------------------------------------------------------------------- any formula from files
ANY = "y ~ 1 + x * cond + x2 + (1 + x | group_id)"


@pytest.fixture(scope="module")
def general_frame(frame) -> pd.DataFrame:
    """The 40 groups with a three-level text predictor (the first file holds one level only,
    so the coding must come from all the files) and a second numeric predictor."""
    rng = np.random.default_rng(8)
    out = frame.copy()
    out["cond"] = rng.choice(["ctl", "low", "high"], size=len(out))
    out.loc[: len(out) // 5, "cond"] = "low"
    out["x2"] = rng.normal(3.0, 2.0, size=len(out))
    out["y"] = out["y"] + 0.5 * out["x2"] + np.where(out["cond"] == "high", 2.0, 0.0)
    return out


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_any_single_factor_formula_equals_in_memory(tmp_path, general_frame, suffix):
    """Categorical levels, an interaction and a second slope: the same columns, names and
    sums as the in-memory design. Tolerance 1e-12 relative: the same products summed in
    another order (blocks, then groups)."""
    _write_parts(general_frame, tmp_path, suffix)
    design = design_from_formula(ANY, general_frame)
    got = group_statistics_from_files(str(tmp_path / f"*.{suffix}"), ANY,
                                      group_labels=design.factors[0].labels)  # fmt: skip
    assert got.fixed_names == design.fixed_names
    assert "cond[low]" in got.fixed_names and "x:cond[low]" in got.fixed_names
    assert got.factor.effect_names == design.factors[0].effect_names
    _assert_equal(got.statistics, design.grouped_statistics().statistics)
    # uncorrelated effects (||) keep their flag
    flat = group_statistics_from_files(str(tmp_path / f"*.{suffix}"),
                                       ANY.replace("| group_id", "|| group_id"))  # fmt: skip
    assert flat.factor.correlated is False


def test_fit_from_files_matches_the_in_memory_fit(tmp_path, general_frame):
    """The same model from the files' sums as from the rows: log density and gradient agree
    to 1e-10 relative at random points (the sums differ by rounding only, ~1e-15
    relative), and the fits' posterior means within 4 Monte Carlo standard errors. (Not
    draw for draw: NUTS's trajectories amplify a rounding difference in the log density
    until a U-turn decision differs, after which the chains part.)"""
    import arviz as az

    _write_parts(general_frame, tmp_path, "parquet")
    design = design_from_formula(ANY, general_frame)
    grouped = design.grouped_statistics()
    stats = group_statistics_from_files(tmp_path, ANY, group_labels=grouped.group_labels)
    priors = lmm_pymc.default_priors(grouped)
    files_model, rows_model = build_model(stats, priors=priors), build_model(grouped, priors=priors)
    f_logp, r_logp = files_model.compile_logp(), rows_model.compile_logp()
    f_grad, r_grad = files_model.compile_dlogp(), rows_model.compile_dlogp()
    rng = np.random.default_rng(2)
    for _ in range(5):
        point = {k: v + rng.normal(0, 0.3, np.shape(v))
                 for k, v in rows_model.initial_point(random_seed=1).items()}  # fmt: skip
        np.testing.assert_allclose(f_logp(point), r_logp(point), rtol=1e-10)
        np.testing.assert_allclose(f_grad(point), r_grad(point), rtol=1e-8, atol=1e-8)
    options = dict(draws=300, tune=300, chains=2, random_seed=4, progressbar=False)
    # fit takes the files themselves (their sums, labels sorted)
    a = lmm_pymc.fit(str(tmp_path / "*.parquet"), ANY, priors=priors, **options)
    assert list(a.posterior["fixed_effect"].values) == list(design.fixed_names)
    assert a.posterior["b_group_id"].sizes["group_id"] == len(grouped.group_labels)
    b = lmm_pymc.fit(grouped, priors=priors, **options)
    for name in ("beta", "sigma", "sigs"):
        se = np.hypot(az.mcse(a, var_names=[name])[name], az.mcse(b, var_names=[name])[name])
        diff = np.abs(a.posterior[name].mean(("chain", "draw")) - b.posterior[name].mean(
            ("chain", "draw")))  # fmt: skip
        assert bool((diff <= 4 * se).all()), (name, diff.values, se.values)


def test_bad_values_are_named_with_their_column(tmp_path, general_frame):
    bad = general_frame.copy()
    bad.loc[5, "x2"] = np.inf
    _write_parts(bad, tmp_path, "parquet")
    with pytest.raises(ValueError, match="column 'x2' must be finite, found 1 non-finite"):
        group_statistics_from_files(tmp_path, ANY)
    text_y = general_frame.assign(y=general_frame["cond"])
    text_y.to_parquet(tmp_path / "part-0.parquet", index=False)
    with pytest.raises(ValueError, match="column 'y' must be numeric"):
        group_statistics_from_files(tmp_path / "part-0.parquet", ANY)


def test_bad_files_are_named(tmp_path, general_frame):
    """An empty file, a corrupted Parquet file and text in a numeric column of a later CSV
    block each give one error naming the file or the column, before any sums are used."""
    _write_parts(general_frame, tmp_path, "parquet")
    (tmp_path / "part-9.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match=r"part-9\.parquet' is empty"):
        group_statistics_from_files(tmp_path, ANY)
    (tmp_path / "part-9.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(ValueError, match=r"part-9\.parquet' is not a readable Parquet file"):
        group_statistics_from_files(tmp_path, ANY)
    csv = tmp_path / "csv"
    csv.mkdir()
    text = general_frame.astype({"x2": object})
    text.loc[len(text) - 3, "x2"] = "abc"
    text.to_csv(csv / "one.csv", index=False)
    with pytest.raises(ValueError, match=r"reading the files .*one\.csv.* failed") as err:
        group_statistics_from_files(str(csv / "one.csv"), ANY, blocksize=2_000)
    assert "x2" in str(err.value) and "'abc'" in str(err.value) and "\n" not in str(err.value)


def test_a_distributed_cluster_sums_the_blocks(tmp_path, general_frame):
    """With a dask.distributed Client in use (a LocalCluster of 2 worker processes here, as
    a cluster of machines would be), the blocks are summed on the workers: the coding and
    the per-block tables travel between processes, never the rows. Tolerance as above."""
    distributed = pytest.importorskip("dask.distributed")
    _write_parts(general_frame, tmp_path, "parquet", n_parts=6)
    design = design_from_formula(ANY, general_frame)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:  # fmt: skip
        cluster_workers = set(cluster.scheduler_info["workers"])
        with distributed.Client(cluster) as client, distributed.get_task_stream(client) as ts:
            got = group_statistics_from_files(tmp_path, ANY,
                                              group_labels=design.factors[0].labels)  # fmt: skip
    # the blocks' sums ran as tasks on the worker processes (dask may merge small files
    # into one block: at least two blocks here)
    sums = [t for t in ts.data if str(t["key"]).startswith("sums-")]
    assert len(sums) >= 2 and all(t["worker"] in cluster_workers for t in sums), ts.data[:3]
    _assert_equal(got.statistics, design.grouped_statistics().statistics)


# ------------------------------------------------------------------ crossed factors from files
CROSSED = "rt ~ 1 + x + cond + (1 + x | subject) + (1 | item)"


@pytest.fixture(scope="module")
def crossed_frame() -> pd.DataFrame:
    """30 subjects x 12 items (each subject sees 8 to 12 items), a two-level text
    predictor; rows shuffled, so the files' sorted labels differ from the in-memory order
    of first appearance."""
    rng = np.random.default_rng(21)
    rows = [(s, i) for s in range(30) for i in range(12) if (s + i) % 7 or i < 8]
    subject, item = (np.array(c) for c in zip(*rows, strict=True))
    x = rng.normal(2.0, 1.0, size=subject.size)
    rt = (400 + 30 * x + rng.normal(0, 40, 30)[subject] + rng.normal(0, 10, 30)[subject] * x
          + rng.normal(0, 20, 12)[item] + rng.normal(0, 60, subject.size))  # fmt: skip
    frame = pd.DataFrame({"subject": [f"s{k:02d}" for k in subject],
                          "item": [f"i{k:02d}" for k in item], "x": x, "rt": rt,
                          "cond": rng.choice(["a", "b"], size=subject.size)})  # fmt: skip
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


def _crossed_pair(tmp_path, frame, formula, suffix="parquet", **options):
    """(from files, in memory) as GroupedStatistics with their cross-products, the files'
    integrated levels put in the in-memory order."""
    from lmm_pymc.marginal import MarginalPlan, integrated_factor

    _write_parts(frame, tmp_path, suffix)
    design = design_from_formula(formula, frame)
    # the files' sums integrate one factor (the most levels unless told): so does the plan
    integrate = options.get("integrate") or integrated_factor(design).name
    plan = MarginalPlan.from_data(design, integrate)
    got = group_statistics_from_files(str(tmp_path / f"*.{suffix}"), formula,
                                      group_labels=plan.integrated.labels, **options)  # fmt: skip
    return got, plan, design


def _in_sorted_order(plan):
    """The in-memory cross-products with every sampled factor's levels sorted (the files'
    order): the columns of D permuted."""
    cs = plan.crossed
    order = [np.arange(cs.DtD.shape[0] - sum(o.n_levels * o.q for o in cs.others))]
    for o in cs.others:
        block = np.arange(cs.columns(o).start, cs.columns(o).stop).reshape(o.n_levels, o.q)
        order.append(block[np.argsort(np.array(o.labels, dtype=object))].ravel())
    order = np.concatenate(order)
    return cs.DtD[np.ix_(order, order)], cs.K[:, order]


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_crossed_statistics_equal_in_memory(tmp_path, crossed_frame, suffix):
    """The integrated factor's sums and the cross-products D'D, Z'D equal the in-memory ones
    (rtol 1e-12: the same products summed in another order); e0'e0 (from sums, not rows:
    the outcome less its mean, so its cancellation stays at rounding of y's variance) to
    1e-9 relative."""
    got, plan, _ = _crossed_pair(tmp_path, crossed_frame, CROSSED, suffix)
    assert [f.name for f in got.factors] == ["subject", "item"]
    assert got.factor.name == "subject" and got.crossed.others[0].labels == tuple(
        sorted(crossed_frame["item"].unique()))  # fmt: skip
    _assert_equal(got.statistics, plan.grouped.statistics)
    DtD, K = _in_sorted_order(plan)
    np.testing.assert_allclose(got.crossed.DtD, DtD, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got.crossed.K, K, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got.crossed.e0e0, plan.crossed.e0e0, rtol=1e-9)


def _logp_agree(got, design, plan, items_sorted_from_memory):
    """Log densities of the files' and of the rows' model at 5 random points, the item
    effects given in each model's own level order."""
    priors = lmm_pymc.default_priors(design)
    files_model = build_model(got, priors=priors)
    rows_model = build_model(design, priors=priors, plan=plan)
    f_logp, r_logp = files_model.compile_logp(), rows_model.compile_logp()
    rng = np.random.default_rng(2)
    values = []
    for _ in range(5):
        point = {k: v + rng.normal(0, 0.3, np.shape(v))
                 for k, v in rows_model.initial_point(random_seed=1).items()}  # fmt: skip
        mapped = dict(point)
        for name in [k for k in point if k.startswith("z_")]:  # sampled factors' levels
            mapped[name] = point[name][items_sorted_from_memory]
        values.append((f_logp(mapped), r_logp(point)))
    return np.array(values)


def test_crossed_model_from_files_has_the_rows_likelihood(tmp_path, crossed_frame):
    """The model from the files' cross-products and the model from the rows: the same log
    density to 1e-10 relative at random points (the sums differ by rounding only), and a
    changed outcome in one file breaks it."""
    got, plan, design = _crossed_pair(tmp_path, crossed_frame, CROSSED)
    order = np.argsort(np.array(plan.crossed.others[0].labels, dtype=object))
    values = _logp_agree(got, design, plan, order)
    np.testing.assert_allclose(values[:, 0], values[:, 1], rtol=1e-10)
    changed = crossed_frame.copy()
    changed.loc[11, "rt"] += 10.0
    for path in tmp_path.glob("*.parquet"):
        path.unlink()
    wrong, *_ = _crossed_pair(tmp_path, changed, CROSSED)
    values = _logp_agree(wrong, design, plan, order)
    # 100 times the tolerance of the agreement above
    assert np.all(np.abs(values[:, 0] - values[:, 1]) > 1e-8 * np.abs(values[:, 1]))


def test_crossed_fit_from_files(tmp_path, crossed_frame):
    """fit(paths, formula) with crossed factors: both factors' effects drawn (the integrated
    one exactly, from the cross-products), no pointwise groups; pointwise=True is refused
    before sampling; integrate= picks the factor."""
    _write_parts(crossed_frame, tmp_path, "parquet")
    with pytest.raises(ValueError, match=r"pointwise=True needs one grouping factor or the rows"):
        lmm_pymc.fit(tmp_path, CROSSED, pointwise=True)
    idata = lmm_pymc.fit(tmp_path, CROSSED, draws=150, tune=200, chains=2, random_seed=3,
                         progressbar=False)  # fmt: skip
    post = idata.posterior
    assert post["b_subject"].shape == (2, 150, 30, 2) and post["b_item"].shape == (2, 150, 12, 1)
    assert "log_likelihood" not in idata.groups()
    assert list(post["fixed_effect"].values) == ["intercept", "x", "cond[b]"]
    # the intercept lies where lme4-style estimates put it: within 5 posterior sds of OLS
    ols = np.linalg.lstsq(design_from_formula(CROSSED, crossed_frame).X, crossed_frame["rt"],
                          rcond=None)[0]  # fmt: skip
    beta = post["beta"].values.reshape(-1, 3)
    assert np.all(np.abs(beta.mean(0) - ols) < 5 * beta.std(0)), (beta.mean(0), ols)
    items = group_statistics_from_files(tmp_path, CROSSED, integrate="item")
    assert items.factor.name == "item" and items.crossed.others[0].name == "subject"
    with pytest.raises(ValueError, match=r"integrate must name a grouping factor among "
                                         r"\['subject', 'item'\], found 'cond'"):
        group_statistics_from_files(tmp_path, CROSSED, integrate="cond")


def test_nested_factors_from_files(tmp_path, crossed_frame):
    """(1 | subject/cond): the nested factor subject:cond is coded from the joined labels,
    as in memory (same statistics, tolerance as above)."""
    formula = "rt ~ 1 + x + (1 | subject/cond)"
    got, plan, _ = _crossed_pair(tmp_path, crossed_frame, formula)
    assert {f.name for f in got.factors} == {"subject", "subject:cond"}
    assert got.factor.name == "subject:cond"
    _assert_equal(got.statistics, plan.grouped.statistics)
    DtD, K = _in_sorted_order(plan)
    np.testing.assert_allclose(got.crossed.K, K, rtol=1e-12, atol=1e-9)


def test_crossed_cross_products_beyond_the_limit_are_refused(tmp_path, crossed_frame,
                                                             monkeypatch):  # fmt: skip
    from lmm_pymc.bigdata import crossed

    _write_parts(crossed_frame, tmp_path, "parquet")
    monkeypatch.setattr(crossed, "FILE_CROSS_PRODUCT_LIMIT", 100)
    with pytest.raises(ValueError, match=r"integrating out 'subject' needs a 60 x 15 "
                                         r"cross-product matrix \(900 numbers\)"):
        group_statistics_from_files(tmp_path, CROSSED)
