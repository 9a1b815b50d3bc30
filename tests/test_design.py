"""Design: validation of user data and the per-group statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmm_pymc import Design


def frame(**overrides):
    df = pd.DataFrame(
        {"y": [1.0, 2.0, 3.0, 4.0], "x": [1.0, 2.0, 1.0, 2.0], "group_id": ["a", "a", "b", "b"]}
    )
    for k, v in overrides.items():
        df[k] = v
    return df


def test_from_dataframe_keeps_labels_and_order():
    d = Design.from_dataframe(frame(group_id=["b", "b", "a", "a"]))
    assert d.group_labels == ("b", "a")
    assert d.group_index.tolist() == [0, 0, 1, 1]
    assert d.coords()["group"] == ["b", "a"]
    np.testing.assert_array_equal(d.X, [[1, 1], [1, 2], [1, 1], [1, 2]])


def test_from_arrays_equals_from_dataframe():
    a = Design.from_arrays(x=[1.0, 2.0, 1.0, 2.0], group=["a", "a", "b", "b"], y=[1, 2, 3, 4])
    b = Design.from_dataframe(frame())
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.group_labels == b.group_labels


@pytest.mark.parametrize(
    ("df", "kwargs", "match"),
    [
        (frame().drop(columns="x"), {}, r"missing column\(s\) \['x'\]"),
        (frame(), {"group": "subject"}, r"missing column\(s\) \['subject'\]"),
        (frame(y=[1.0, np.nan, 3.0, 4.0]), {}, r"column 'y' must be finite, found nan at row 1"),
        (frame(x=[1.0, 2.0, np.inf, 2.0]), {}, r"column 'x' must be finite, found inf at row 2"),
        (frame(x=["a", "b", "c", "d"]), {}, r"column 'x' must be numeric, found dtype"),
        (frame(group_id=["a"] * 4), {}, r"at least 2 groups.*found 1 \(\['a'\]\)"),
        (frame(group_id=["a", None, "b", "b"]), {}, r"missing labels, found NaN at row 1"),
    ],
)
def test_bad_data(df, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Design.from_dataframe(df, **kwargs)


def test_bad_data_leaves_user_frame_untouched():
    df = frame(y=[1.0, np.nan, 3.0, 4.0])
    before = df.copy()
    with pytest.raises(ValueError):
        Design.from_dataframe(df)
    pd.testing.assert_frame_equal(df, before)


def test_group_with_one_row_warns():
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 3.0], "group_id": [1, 1, 2]})
    with pytest.warns(UserWarning, match=r"1 group\(s\) with one row \(\[2\]\)"):
        d = Design.from_dataframe(df)
    assert d.group_sizes.tolist() == [2, 1]


def test_group_statistics_match_dense_products(tutorial_sim):
    d = tutorial_sim.design
    s = d.group_statistics()
    for j in range(d.n_groups):
        rows = d.group_index == j
        X, y = d.X[rows], d.y[rows]
        # same products summed in a different order: rtol 1e-12
        np.testing.assert_allclose(s.XtX[j], X.T @ X, rtol=1e-12)
        np.testing.assert_allclose(s.Zty[j], X.T @ y, rtol=1e-12)
        np.testing.assert_allclose(s.yty[j], y @ y, rtol=1e-12)
        assert s.n[j] == rows.sum()
    with pytest.raises(ValueError, match="needs an outcome y"):
        Design.from_dataframe(frame(), y=None).group_statistics()
