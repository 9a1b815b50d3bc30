"""Formula -> general design: parity with the array path, terms, factors and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmm_pymc
from lmm_pymc.formula import GeneralDesign, design_from_formula, split_formula
from lmm_pymc.general import simulate_from_formula

TUTORIAL = "y ~ 1 + x + (1 + x | group_id)"


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


def test_tutorial_formula_gives_the_array_design():
    # string labels in a non-sorted order: levels must keep the order of first appearance
    sim = lmm_pymc.simulate(
        n_groups=4, group_sizes=[3, 5, 2, 4], group_labels=["d", "b", "a", "c"], seed=1
    )
    d = design_from_formula(TUTORIAL, sim.data)
    core = sim.design
    # exact equality: the same numbers copied, no arithmetic
    np.testing.assert_array_equal(d.X, core.X)
    np.testing.assert_array_equal(d.y, core.y)
    (f,) = d.factors
    assert f.labels == core.group_labels == ("d", "b", "a", "c")
    np.testing.assert_array_equal(f.index, core.group_index)
    np.testing.assert_array_equal(f.Z, core.Z_rows)
    assert (d.Z != core.Z).nnz == 0
    assert d.fixed_names == core.fixed_names
    assert f.effect_names == core.random_names
    back = d.to_design()
    np.testing.assert_array_equal(back.x, core.x)
    assert back.group_labels == core.group_labels


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


def test_simulation_follows_the_formula_exactly(mixed_frame):
    df = mixed_frame.drop(columns="y")
    R = [[1.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 1.0]]
    sim = simulate_from_formula(
        "y ~ 1 + x + c + (1 + x + z | subject) + (1 | item)",
        df,
        beta={"intercept": 1.0, "x": 0.5, "c[lo]": -1.0, "c[mid]": 2.0},
        groups={"subject": {"sigmas": [1.0, 0.5, 0.3], "R": R}, "item": {"sigmas": [0.7]}},
        sigma=0.4,
        seed=3,
    )
    d, t = sim.design, sim.truth
    assert isinstance(d, GeneralDesign) and list(sim.data.columns)[-1] == "y"
    # y = X beta + sum_f (Z_f * b_f[g_f]).sum(1) + e, recomputed here term by term;
    # rtol=1e-12: the same sums in another order
    by_hand = d.X @ t.beta + sim.epsilon
    for f in d.factors:
        by_hand = by_hand + np.einsum("nq,nq->n", f.Z, t.factors[f.name].b[f.index])
    np.testing.assert_allclose(sim.data["y"], by_hand, rtol=1e-12)
    assert t.factors["subject"].b.shape == (5, 3) and t.factors["item"].b.shape == (4, 1)
    groups = {"subject": {"sigmas": [1.0, 0.5, 0.3], "R": R}, "item": {"sigmas": [0.7]}}
    again = simulate_from_formula("y ~ 1 + x + c + (1 + x + z | subject) + (1 | item)", df,
                                  beta=t.beta, groups=groups, sigma=0.4, seed=3)  # fmt: skip
    np.testing.assert_array_equal(again.data["y"], sim.data["y"])  # same seed, same data
    names = t.by_name()
    assert names["R[intercept|subject, z|subject]"] == 0.1 and names["sigs[intercept|item]"] == 0.7


def test_simulation_bad_parameters(mixed_frame):
    f = "y ~ 1 + x + (1 + x || subject)"
    ok = {"subject": {"sigmas": [1.0, 0.5]}}
    with pytest.raises(ValueError, match=r"beta must have 2 values"):
        simulate_from_formula(f, mixed_frame, beta=[1.0], groups=ok)
    with pytest.raises(ValueError, match=r"missing \['x'\]"):
        simulate_from_formula(f, mixed_frame, beta={"intercept": 1.0}, groups=ok)
    with pytest.raises(ValueError, match=r"must be the identity for the uncorrelated"):
        simulate_from_formula(
            f, mixed_frame, beta=[1.0, 1.0], groups={"subject": {"sigmas": [1.0, 0.5], "rho": 0.5}}
        )
    with pytest.raises(ValueError, match=r"groups\['subject'\]\['sigmas'\] must have 2 values"):
        simulate_from_formula(
            f, mixed_frame, beta=[1.0, 1.0], groups={"subject": {"sigmas": [1.0]}}
        )
    with pytest.raises(ValueError, match=r"missing \['subject'\]"):
        simulate_from_formula(f, mixed_frame, beta=[1.0, 1.0], groups={})
