"""Design: validation of user data, the matrix form, coordinates and per-group statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmm_pymc import GroupedStatistics, GroupStatistics, design_from_formula, tutorial


def frame(**overrides):
    df = pd.DataFrame(
        {"y": [1.0, 2.0, 3.0, 4.0], "x": [1.0, 2.0, 1.0, 2.0], "group_id": ["a", "a", "b", "b"]}
    )
    for k, v in overrides.items():
        df[k] = v
    return df


def test_labels_keep_the_order_of_first_appearance():
    d = design_from_formula(tutorial.FORMULA, frame(group_id=["b", "b", "a", "a"]))
    (f,) = d.factors
    assert f.labels == ("b", "a")
    assert f.index.tolist() == [0, 0, 1, 1]
    assert d.coords()["group_id"] == ["b", "a"]
    assert d.coords()["random_effect"] == ["intercept|group_id", "x|group_id"]
    np.testing.assert_array_equal(d.X, [[1, 1], [1, 2], [1, 1], [1, 2]])
    np.testing.assert_array_equal(f.Z, d.X)  # the tutorial: Z_rows equals X


@pytest.mark.parametrize(
    ("df", "match"),
    [
        (frame().drop(columns="x"), "random slope on 'x', a column absent from data"),
        (frame().drop(columns="group_id"), "grouping factor column 'group_id' is not in data"),
        (frame(y=[1.0, np.nan, 3.0, 4.0]), r"column 'y' must be finite.*row 1"),
        (frame(x=[1.0, 2.0, np.inf, 2.0]), r"column 'x' must be finite.*row 2"),
        (frame(y=["a", "b", "c", "d"]), r"column 'y' must be numeric, found dtype"),
        (frame(group_id=["a"] * 4), r"needs at least 2 levels.*found 1 \(\['a'\]\)"),
        (frame(group_id=["a", None, "b", "b"]), r"column 'group_id' must be finite.*row 1"),
    ],
)
def test_bad_data(df, match):
    with pytest.raises(ValueError, match=match):
        design_from_formula(tutorial.FORMULA, df)


def test_bad_data_leaves_user_frame_untouched():
    df = frame(y=[1.0, np.nan, 3.0, 4.0])
    before = df.copy()
    with pytest.raises(ValueError):
        design_from_formula(tutorial.FORMULA, df)
    pd.testing.assert_frame_equal(df, before)


def test_group_with_one_row_warns():
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 3.0], "group_id": [1, 1, 2]})
    with pytest.warns(UserWarning, match=r"1 group\(s\) with one row \(\[2\]\)"):
        d = design_from_formula(tutorial.FORMULA, df)
    assert d.factors[0].sizes.tolist() == [2, 1]


def test_group_statistics_match_dense_products(tutorial_sim):
    d = tutorial_sim.design
    grouped = d.grouped_statistics()
    s, (f,) = grouped.statistics, d.factors
    assert grouped.group_labels == f.labels and grouped.fixed_names == ("intercept", "x")
    for j in range(f.n_levels):
        rows = f.index == j
        X, y = d.X[rows], d.y[rows]
        # same products summed in a different order: rtol 1e-12
        np.testing.assert_allclose(s.XtX[j], X.T @ X, rtol=1e-12)
        np.testing.assert_allclose(s.Zty[j], X.T @ y, rtol=1e-12)
        np.testing.assert_allclose(s.yty[j], y @ y, rtol=1e-12)
        assert s.n[j] == rows.sum()
    with pytest.raises(ValueError, match="found y=None"):
        design_from_formula(tutorial.FORMULA, frame().drop(columns="y"),
                            require_response=False).grouped_statistics()  # fmt: skip


def test_many_rows_are_summed_compiled_to_the_same_bits(monkeypatch):
    """Past ``COMPILED_SUMS_FROM`` products the per-group sums run as one numba pass over
    the rows; both paths add each group's rows in their order, so they agree bitwise
    (tolerance 0), and a group without rows sums to 0."""
    import lmm_pymc.design as design

    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(5_000, 4)), rng.normal(size=5_000)
    index = rng.integers(0, 40, 5_000)
    index[index == 7] = 8
    compiled = []
    real = design._compiled_pair_sums

    def counted():
        compiled.append(True)
        return real()

    monkeypatch.setattr(design, "_compiled_pair_sums", counted)
    small = GroupStatistics.from_rows(X, X[:, :2], y, index, 40)
    assert not compiled  # 5,000 rows x 28 pairs: below the threshold
    monkeypatch.setattr(design, "COMPILED_SUMS_FROM", 1)
    large = GroupStatistics.from_rows(X, X[:, :2], y, index, 40)
    assert compiled
    for name in ("n", "XtX", "XtZ", "ZtZ", "Xty", "Zty", "yty"):
        np.testing.assert_array_equal(getattr(large, name), getattr(small, name), err_msg=name)
    assert large.n[7] == 0 and not large.XtX[7].any()
    np.testing.assert_allclose(large.XtX[3], X[index == 3].T @ X[index == 3], rtol=1e-12)


def test_statistics_checks_and_reorder(tutorial_sim):
    grouped = tutorial_sim.design.grouped_statistics()
    s = grouped.statistics
    bad = GroupStatistics(**{**s.__dict__, "Zty": s.Zty[:, :1]})
    with pytest.raises(ValueError, match=r"stats.Zty must have shape \(3, 2\), found \(3, 1\)"):
        bad.check()
    nan = GroupStatistics(**{**s.__dict__, "yty": np.full(3, np.nan)})
    with pytest.raises(ValueError, match="stats.yty must be finite"):
        nan.check()
    with pytest.raises(
        ValueError, match=r"one row per level of 'group_id' and \(p, q\) = \(3, 2\)"
    ):
        GroupedStatistics(s, ("intercept", "x", "z"), grouped.factor)
    back = grouped.reorder([3, 1, 2])
    assert back.group_labels == (3, 1, 2)
    np.testing.assert_array_equal(back.statistics.yty, s.yty[[2, 0, 1]])  # exact: a copy
    with pytest.raises(ValueError, match="permutation"):
        grouped.reorder([1, 2])
