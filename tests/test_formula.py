"""Formula -> general design: parity with the array path, terms, factors and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmm_pymc import tutorial
from lmm_pymc.formula import design_from_formula, split_formula


@pytest.fixture(scope="module")
def mixed_frame() -> pd.DataFrame:
    """Unbalanced, string labels, a categorical predictor, two crossed factors."""
    rng = np.random.default_rng(5)
    n = 40
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "c": rng.choice(["lo", "mid", "hi"], size=n),
            "subject": rng.choice(["ann", "bob", "cy", "dee", "eve"], size=n),
            "item": rng.choice(["i1", "i2", "i3", "i4"], size=n),
        }
    )


def test_tutorial_formula_gives_the_matrix_form():
    # string labels in a non-sorted order: levels must keep the order of first appearance
    df = tutorial.design_frame(4, group_sizes=[3, 5, 2, 4], group_labels=["d", "b", "a", "c"])
    df["y"] = np.arange(len(df), dtype=float)
    d = design_from_formula(tutorial.FORMULA, df)
    # exact equality: the same numbers copied, no arithmetic
    np.testing.assert_array_equal(d.X, np.column_stack([np.ones(len(df)), df["x"]]))
    np.testing.assert_array_equal(d.y, df["y"])
    (f,) = d.factors
    assert f.labels == ("d", "b", "a", "c")
    np.testing.assert_array_equal(f.index, np.repeat(np.arange(4), [3, 5, 2, 4]))
    np.testing.assert_array_equal(f.Z, d.X)
    assert d.fixed_names == f.effect_names == ("intercept", "x")
    assert d.formula == tutorial.FORMULA and d.response == "y"


def test_terms_and_coords(mixed_frame):
    d = design_from_formula("y ~ 1 + x * c + (1 + x + z | subject) + (1 || item)", mixed_frame)
    assert d.fixed_names == ("intercept", "x", "c[lo]", "c[mid]", "x:c[lo]", "x:c[mid]")
    assert d.terms == ("intercept|subject", "x|subject", "z|subject", "intercept|item")
    sub, item = d.factors
    assert sub.q == 3 and sub.correlated and not item.correlated
    coords = d.coords()
    assert coords["random_effect"] == list(d.terms)
    assert coords["subject"] == list(pd.unique(mixed_frame["subject"]))
    assert coords["subject_effect"] == ["intercept|subject", "x|subject", "z|subject"]
    # Z rows of a factor are its terms' columns, here (1, x, z)
    np.testing.assert_array_equal(
        sub.Z, np.column_stack([np.ones(40), mixed_frame.x, mixed_frame.z])
    )
    np.testing.assert_array_equal(item.Z, np.ones((40, 1)))
    X = d.X
    lo = (mixed_frame.c == "lo").to_numpy(float)
    np.testing.assert_array_equal(X[:, 2], lo)
    np.testing.assert_array_equal(X[:, 4], mixed_frame.x.to_numpy() * lo)


def test_uncorrelated_categorical_slope_and_interacted_factor(mixed_frame):
    d = design_from_formula("y ~ x + (1 + c || subject) + (x | subject:item)", mixed_frame)
    sub, inter = d.factors
    assert sub.effect_names == ("intercept", "c[lo]", "c[mid]") and not sub.correlated
    assert inter.name == "subject:item" and inter.key == "subject_item"
    assert inter.effect_names == ("intercept", "x")
    labels = (mixed_frame.subject + ":" + mixed_frame.item).to_numpy()
    assert [inter.labels[i] for i in inter.index] == labels.tolist()
    assert split_formula("y ~ x + (1 + x || g) + (1 | h)")[3] == {"g": False, "h": True}


def test_zero_predictor_rows_keep_their_level(mixed_frame):
    # a slope-only term has Z = 0 where x = 0: the level must come from the factor itself
    df = mixed_frame.assign(x=np.where(np.arange(40) % 3 == 0, 0.0, mixed_frame.x))
    d = design_from_formula("y ~ x + (0 + x | subject)", df)
    (f,) = d.factors
    assert [f.labels[i] for i in f.index] == df.subject.tolist()
    np.testing.assert_array_equal(f.Z[:, 0], df.x.to_numpy())


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ 1 + w + (1 | subject)", "column 'w', which is not in data"),
        ("y ~ 1 + x + (1 + w | subject)", "(1 + w | subject): random slope on 'w'"),
        ("y ~ 1 + x + (1 | nobody)", "grouping factor column 'nobody' is not in data"),
        ("y ~ 1 + x + (1 + x | subject", "could not be parsed by formulae"),
        ("y ~ 1 + x", "at least one random term"),
        ("y ~ 1 + x + (1 | one)", "grouping factor 'one': needs at least 2 levels"),
        ("w ~ 1 + x + (1 | subject)", "response column 'w' is not in data"),
        ("y ~ x + (1 | subject) + (x | subject)", "'subject' appears in more than one"),
        ("", "formula must be a non-empty string"),
    ],
)
def test_bad_formulas_name_the_term_or_column(mixed_frame, formula, message):
    with pytest.raises(ValueError, match=None) as err:
        design_from_formula(formula, mixed_frame.assign(one="a"))
    assert message in str(err.value)


@pytest.mark.parametrize(("column", "value"), [("x", np.inf), ("y", np.nan), ("subject", None)])
def test_non_finite_values_name_the_column(mixed_frame, column, value):
    df = mixed_frame.copy()
    df[column] = df[column].astype(object) if value is None else df[column]
    df.loc[7, column] = value
    with pytest.raises(ValueError) as err:
        design_from_formula("y ~ 1 + x + (1 + x | subject)", df)
    assert f"column {column!r} must be finite" in str(err.value) and "row 7" in str(err.value)


def test_a_level_coded_column_is_column_level_whatever_its_number_of_levels():
    # lme4 says SexM, bambi Sex[M]: the reader sees the reference level either way
    rng = np.random.default_rng(0)
    n = 48
    df = pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.normal(size=n),
        "Sex": np.tile(["F", "M"], n // 2), "recipe": np.tile(["A", "B", "C"], n // 3),
        "g": np.repeat(np.arange(8), n // 8),
    })  # fmt: skip
    d = design_from_formula("y ~ x + Sex + recipe + x:Sex + (1 + Sex | g)", df)
    assert d.fixed_names == ("intercept", "x", "Sex[M]", "recipe[B]", "recipe[C]", "x:Sex[M]")
    assert tuple(d.factors[0].effect_names) == ("intercept", "Sex[M]")
    assert d.factors[0].terms == ("intercept|g", "Sex[M]|g")


def test_a_term_that_fails_on_the_data_is_not_called_a_parse_error():
    df = pd.DataFrame({"y": np.arange(8.0), "s": list("abcdabcd"), "g": [1, 2] * 4})
    with pytest.raises(ValueError) as err:
        design_from_formula("y ~ np.log(s) + (1 | g)", df)
    text = str(err.value)
    assert "could not be evaluated on data" in text and "TypeError" in text
    assert "could not be parsed" not in text
    with pytest.raises(ValueError, match="could not be parsed by formulae: ParseError"):
        design_from_formula("y ~ x + + (1 | g", df)
