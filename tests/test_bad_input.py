"""Every bad input gets a clear, fast error (or, where a fit is still meaningful, a clear
warning), through the Python API and through the command line.

Each row of a table is one case: the input, the entry point, the error type expected and
the words the message must contain (the argument or column, the value found, what was
expected). The command-line cases also assert a non-zero exit status, one line on stderr
and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmm_pymc
import lmm_pymc.sbc
from lmm_pymc.formula import design_from_formula
from lmm_pymc.priors import Priors
from lmm_pymc.sampling import SamplerConfig

FORMULA = "y ~ 1 + x + (1 + x | g)"


def frame(n_groups: int = 5, rows: int = 6, **columns: object) -> pd.DataFrame:
    """A valid data set (y, x, x2, g) with some columns replaced."""
    rng = np.random.default_rng(0)
    n = n_groups * rows
    df = pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.normal(size=n), "x2": rng.normal(size=n),
        "g": np.repeat([f"g{i}" for i in range(n_groups)], rows),
    })  # fmt: skip
    for name, values in columns.items():
        df[name] = values
    return df


def _set(df: pd.DataFrame, column: str, row: int, value: object) -> pd.DataFrame:
    df = df.copy()
    if column == "g" and not isinstance(value, str):
        df[column] = np.repeat(np.arange(len(df) // 6, dtype=float), 6)
    df.loc[row, column] = value
    return df


N = 30
RNG = np.random.default_rng(1)
# (id, formula, data, expected words) for design_from_formula / fit: each a ValueError
DATA_ERRORS: list[tuple[str, str, Callable[[], pd.DataFrame], tuple[str, ...]]] = [
    ("missing column", "y ~ 1 + z + (1 | g)", frame, ("'z'", "not in data", "columns found")),
    ("misspelt group", "y ~ 1 + x + (1 | grp)", frame, ("'grp'", "grouping factor", "not in")),
    ("missing response", "yy ~ 1 + x + (1 | g)", frame, ("response column 'yy'", "not in")),
    ("NaN in y", FORMULA, lambda: _set(frame(), "y", 3, np.nan), ("'y'", "nan", "row 3")),
    ("inf in y", FORMULA, lambda: _set(frame(), "y", 4, np.inf), ("'y'", "inf", "row 4")),
    ("NaN in x", FORMULA, lambda: _set(frame(), "x", 5, np.nan), ("'x'", "nan", "row 5")),
    (
        "-inf in x2",
        "y ~ x + x2 + (1 | g)",
        lambda: _set(frame(), "x2", 0, -np.inf),
        ("'x2'", "-inf", "row 0"),
    ),  # fmt: skip
    ("NaN in group", FORMULA, lambda: _set(frame(), "g", 7, np.nan), ("'g'", "nan", "row 7")),
    ("inf in group", FORMULA, lambda: _set(frame(), "g", 8, np.inf), ("'g'", "inf", "row 8")),
    (
        "None in text group",
        FORMULA,
        lambda: _set(frame(), "g", 2, None),
        ("'g'", "not missing", "row 2"),
    ),  # fmt: skip
    (
        "text outcome",
        FORMULA,
        lambda: frame(y=["a"] * N),
        ("'y'", "must be numeric", "str", "1 distinct value(s) ['a']"),
    ),  # fmt: skip
    ("single group", FORMULA, lambda: frame(g=["a"] * N), ("'g'", "at least 2 levels", "1")),
    (
        "all groups one row",
        "y ~ x + (1 | g)",
        lambda: frame(g=[f"g{i}" for i in range(N)]),
        ("every level", "'g'", "one row"),
    ),  # fmt: skip
    (
        "y near the float limit",
        FORMULA,
        lambda: frame(y=RNG.normal(size=N) * 1e300),
        ("'y'", "e+300", "rescale"),
    ),  # fmt: skip
    (
        "x near the float limit",
        FORMULA,
        lambda: frame(x=RNG.normal(size=N) * 1e300),
        ("'x'", "e+300", "rescale"),
    ),  # fmt: skip
    (
        "constant y",
        FORMULA,
        lambda: frame(y=np.full(N, 5.0)),
        ("'y'", "constant", "5.0", "residual sd", "intercept"),
    ),  # fmt: skip
    (
        "constant x",
        FORMULA,
        lambda: frame(x=np.full(N, 2.0)),
        ("'x'", "linear combination", "intercept"),
    ),  # fmt: skip
    (
        "collinear predictors",
        "y ~ x + x2 + (1 | g)",
        lambda: frame(x2=frame()["x"] * 2 + 1),
        ("'x2'", "linear combination", "'x'"),
    ),  # fmt: skip
    (
        "zero predictor",
        "y ~ 0 + x + (1 | g)",
        lambda: frame(x=np.zeros(N)),
        ("'x'", "zero on every row"),
    ),  # fmt: skip
    (
        "level per row",
        "y ~ x2 + (1 | g)",
        lambda: frame(x2=[f"v{i}" for i in range(N)]),
        ("30 fixed-effect columns", "30 rows"),
    ),  # fmt: skip
    (
        "mixed labels clash",
        FORMULA,
        lambda: frame(g=np.repeat(np.array([1, "1", 2, "b", 3], dtype=object), 6)),
        ("'g'", "mixes label types", "'1'"),
    ),  # fmt: skip
    ("unbalanced parenthesis", "y ~ 1 + x + (1 + x | g", frame, ("could not be parsed", "')'")),
    ("empty factor", "y ~ 1 + x + (1 + x | )", frame, ("could not be parsed", "(1 + x | )")),
    ("unknown function", "y ~ s(x) + (1 | g)", frame, ("s(...)", "neither a column")),
    ("no random term", "y ~ 1 + x", frame, ("at least one random term", "(1 | g)")),
    (
        "factor in two terms",
        "y ~ x + (1 | g) + (0 + x | g)",
        frame,
        ("'g'", "more than one random term"),
    ),  # fmt: skip
    ("two tildes", "y ~ x ~ z + (1 | g)", frame, ("at most one '~'",)),
    ("empty formula", "  ", frame, ("non-empty string",)),
    ("empty nesting", "y ~ x + (1 | g/)", frame, ("nested factors", "empty name")),
    (
        "reserved factor name",
        "y ~ x + (1 | obs)",
        lambda: frame(obs=frame()["g"]),
        ("'obs'", "clashes", "rename"),
    ),  # fmt: skip
    ("empty data frame", FORMULA, lambda: frame().iloc[:0], ("at least one row", "0 rows")),
]


@pytest.mark.parametrize(("formula", "make", "words"), [c[1:] for c in DATA_ERRORS],
                         ids=[c[0] for c in DATA_ERRORS])  # fmt: skip
def test_bad_data_and_formulas_are_named(formula, make, words) -> None:
    data = make()
    before = data.copy(deep=True)
    with pytest.raises(ValueError) as err:
        design_from_formula(formula, data)
    for word in words:
        assert word in str(err.value), (word, str(err.value))
    pd.testing.assert_frame_equal(data, before)  # the user's data is untouched


def test_data_must_be_a_frame() -> None:
    with pytest.raises(TypeError, match="data must be a pandas DataFrame, .* found list"):
        lmm_pymc.fit([[1, 2]], FORMULA)


# (id, call, error words): a value of the wrong type is a TypeError naming the argument
TYPE_ERRORS: list[tuple[str, Callable[[], object], tuple[str, ...]]] = [
    ("draws 1.5", lambda: SamplerConfig(draws=1.5), ("draws", "positive integer", "1.5")),
    ("tune True", lambda: SamplerConfig(tune=True), ("tune", "non-negative", "True")),
    ("target_accept text", lambda: SamplerConfig(target_accept="high"), ("target_accept", "'high'")),
    ("sampler 3", lambda: SamplerConfig(sampler=3), ("sampler", "nutpie", "3")),
    ("formula None", lambda: design_from_formula(None, frame()), ("formula", "None")),
    ("priors dict", lambda: lmm_pymc.build_model(design_from_formula(FORMULA, frame()),
                                                 priors={}), ("priors", "Priors", "dict")),
    ("prior 2.0", lambda: Priors(sigma=2.0), ("Priors.sigma", "Prior", "2.0")),
    ("lkj_eta text", lambda: Priors(lkj_eta="flat"), ("lkj_eta", "'flat'")),
    ("sampling dict", lambda: lmm_pymc.fit(frame(), FORMULA, sampling={"draws": 10}),
     ("sampling", "SamplerConfig", "dict")),
]


@pytest.mark.parametrize(("call", "words"), [c[1:] for c in TYPE_ERRORS],
                         ids=[c[0] for c in TYPE_ERRORS])  # fmt: skip
def test_wrong_types_are_type_errors(call, words) -> None:
    with pytest.raises(TypeError) as err:
        call()
    for word in words:
        assert word in str(err.value), (word, str(err.value))


# (id, call, error words): errors before any model is built
OPTION_ERRORS: list[tuple[str, Callable[[], object], tuple[str, ...]]] = [
    ("chains 0", lambda: SamplerConfig(chains=0), ("chains", "positive integer", "0")),
    ("negative draws", lambda: SamplerConfig(draws=-5), ("draws", "positive integer", "-5")),
    ("negative tune", lambda: SamplerConfig(tune=-1), ("tune", "non-negative", "-1")),
    (
        "target_accept 1.5",
        lambda: SamplerConfig(target_accept=1.5),
        ("target_accept", "(0, 1)", "1.5"),
    ),  # fmt: skip
    ("target_accept 0", lambda: SamplerConfig(target_accept=0.0), ("target_accept", "0.0")),
    ("unknown sampler", lambda: SamplerConfig(sampler="stan"), ("sampler", "'stan'", "nutpie")),
    (
        "unknown parametrization",
        lambda: lmm_pymc.fit(frame(), FORMULA, parametrization="foo"),
        ("parametrization", "'foo'", "marginal"),
    ),  # fmt: skip
    (
        "unknown sampler option",
        lambda: lmm_pymc.fit(frame(), FORMULA, chain=2),
        ("chain", "draws"),
    ),  # fmt: skip
    ("prior sd negative", lambda: Priors(fixed="normal(0, -1.0)"), ("sigma", "> 0", "-1.0")),
    ("prior eta 0", lambda: Priors(lkj_eta=0), ("lkj_eta", "> 0", "0")),
    ("prior sd NaN", lambda: Priors(sigma="halfnormal(nan)"), ("sigma", "finite")),
    ("prior sd text", lambda: Priors(sigs="wide"), ("prior", "family(parameters)", "'wide'")),
    (
        "prior family off the real line for a fixed effect",
        lambda: Priors(terms={"beta[x]": "gamma(2, 1)"}),
        ("gamma(2, 1)", "family", "normal"),
    ),
    (
        "prior parameter negative",
        lambda: Priors(sigma="halfnormal(-2)"),
        ("halfnormal's sigma", "> 0", "-2"),
    ),
    (
        "prior term unknown",
        lambda: lmm_pymc.fit(frame(), FORMULA, priors=Priors(terms={"beta[z]": "normal(0, 1)"})),
        ("beta[z]", "does not have"),
    ),
    (
        "SBC 0 simulations",
        lambda: lmm_pymc.sbc.run_sbc(0, "/nonexistent/run"),
        ("n_simulations", "positive integer", "0"),
    ),  # fmt: skip
    (
        "SBC negative workers",
        lambda: lmm_pymc.sbc.run_sbc(2, "/nonexistent/run", workers=-2),
        ("workers", "positive integer", "-2"),
    ),  # fmt: skip
]


@pytest.mark.parametrize(("call", "words"), [c[1:] for c in OPTION_ERRORS],
                         ids=[c[0] for c in OPTION_ERRORS])  # fmt: skip
def test_bad_options_are_named(call, words) -> None:
    with pytest.raises(ValueError) as err:
        call()
    for word in words:
        assert word in str(err.value), (word, str(err.value))


# ------------------------------------------------------------ accepted, or a clear warning
@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([1180591620717411303425 + i for i in range(5)], "1180591620717411303425"),
        ([1, "a", 2.5, "b", 3], "1"),  # mixed types: text
        ([0.5, 1.5, 2.5, 3.5, 4.5], 0.5),  # floats stay floats
        (["é", "ß", "日本", "Ω", "🙂"], "é"),  # unicode stays unicode
        ([np.int64(7), 8, 9, 10, 11], 7),
    ],
    ids=["huge integers", "mixed types", "floats", "unicode", "integers"],
)
def test_group_labels_become_coordinates_every_sampler_accepts(labels, expected) -> None:
    g = np.repeat(np.array(labels, dtype=object), 6)
    d = design_from_formula(FORMULA, frame(g=g))
    assert d.factors[0].labels[0] == expected and d.factors[0].n_levels == 5
    kinds = {type(v) for v in d.factors[0].labels}
    assert len(kinds) == 1 and kinds <= {str, int, float}  # one plain type, no big ints


def test_boolean_predictor_enters_as_zero_one() -> None:
    flag = np.tile([True, False, False], 10)
    d = design_from_formula("y ~ 1 + flag + (1 | g)", frame(flag=flag))
    assert np.array_equal(d.X[:, 1], flag.astype(float))


@pytest.mark.parametrize(
    ("formula", "columns", "words"),
    [
        (FORMULA, {"g": np.r_[np.repeat(["a", "b", "c", "d"], 7), ["e", "f"]]},
         ("'g'", "2 group(s) with one row", "['e', 'f']")),
        ("y ~ 1 + x2 + (1 | g)", {"x2": [f"{v:.1f}" for v in np.tile([0.5, 1.5, 2.5], 10)]},
         ("'x2'", "numbers stored as text", "pd.to_numeric")),
        (FORMULA, {"x": np.repeat(np.arange(5.0), 6)},
         ("random slope 'x'", "does not vary within any level", "'g'")),
    ],
    ids=["some groups of one row", "numbers as text", "slope constant within groups"],
)  # fmt: skip
def test_weakly_informed_designs_warn(formula, columns, words) -> None:
    with pytest.warns(UserWarning) as record:
        design_from_formula(formula, frame(**columns))
    text = " ".join(str(w.message) for w in record)
    for word in words:
        assert word in text, (word, text)


def test_nested_factors_expand_as_in_lme4() -> None:
    df = frame(h=np.tile(["u", "v", "w"], 10))
    d = design_from_formula("y ~ x + (1 | g/h)", df)
    assert [f.name for f in d.factors] == ["g", "g:h"]
    assert d.factors[1].n_levels == 15 and d.factors[1].labels[0] == "g0:u"


# -------------------------------------------------------------------- the command line
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "lmm_pymc.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder with valid and broken input files for the command line."""
    d = tmp_path_factory.mktemp("cli_inputs")
    good = frame().rename(columns={"g": "group_id"})
    good.to_csv(d / "good.csv", index=False)
    good.assign(y=3.0).to_csv(d / "constant_y.csv", index=False)
    _set(frame(), "g", 3, np.nan).rename(columns={"g": "group_id"}).to_csv(
        d / "nan_group.csv", index=False
    )
    good.assign(x="a").to_csv(d / "text_x.csv", index=False)
    (d / "empty.csv").write_text("")
    (d / "header.csv").write_text("y,x,group_id\n")
    (d / "binary.csv").write_bytes(bytes(range(160, 256)) * 4)
    (d / "folder").mkdir()
    return d


# (id, arguments, exit status, words on stderr)
CLI_CASES: list[tuple[str, tuple[str, ...], int, tuple[str, ...]]] = [
    ("misspelt flag", ("fit", "good.csv", "--chain", "2"), 2, ("unrecognized", "--chain")),
    ("unknown command", ("fitt", "good.csv"), 2, ("invalid choice", "'fitt'")),
    ("missing file", ("fit", "nope.csv"), 2, ("csv", "no file", "'nope.csv'")),
    ("directory", ("fit", "folder"), 2, ("csv", "directory", "'folder'")),
    ("binary file", ("fit", "binary.csv"), 2, ("'binary.csv'", "not a text CSV", "0xa0")),
    ("empty CSV", ("fit", "empty.csv"), 2, ("'empty.csv'", "is empty", "header")),
    ("header-only CSV", ("fit", "header.csv"), 2, ("'header.csv'", "no data rows")),
    ("misspelt column", ("fit", "good.csv", "--x", "xx"), 2, ("'xx'", "absent from data")),
    ("constant y", ("fit", "constant_y.csv"), 2, ("'y'", "constant", "3.0")),
    ("NaN group", ("fit", "nan_group.csv"), 2, ("'group_id'", "nan", "row 3")),
    ("text predictor", ("fit", "text_x.csv"), 2, ("'x'", "categorical", "single value 'a'")),
    ("chains 0", ("fit", "good.csv", "--chains", "0"), 2, ("--chains", "positive", "0")),
    ("negative draws", ("fit", "good.csv", "--draws", "-3"), 2, ("--draws", "-3")),
    ("draws not a number", ("fit", "good.csv", "--draws", "many"), 2, ("--draws", "'many'")),
    ("target accept 1.5", ("demo", "--target-accept", "1.5"), 2, ("--target-accept", "1.5")),
    ("unknown sampler", ("fit", "good.csv", "--sampler", "stan"), 2, ("--sampler", "'stan'")),
    (
        "unknown parametrization",
        ("fit", "good.csv", "--parametrization", "foo"),
        2,
        ("--parametrization", "'foo'"),
    ),  # fmt: skip
    (
        "out in a missing folder",
        ("fit", "good.csv", "--out", "no/such/dir/post.nc"),
        2,
        ("--out", "does not exist"),
    ),  # fmt: skip
    ("out unwritable", ("simulate", "--out", "/proc/sim.csv"), 2, ("--out", "cannot be written")),
    ("out is a folder", ("simulate", "--out", "folder"), 2, ("--out", "directory")),
    (
        "simulate one group",
        ("simulate", "--out", "s.csv", "--groups", "1"),
        2,
        ("--groups", "at least 2", "found 1"),
    ),  # fmt: skip
    (
        "prior of an unknown term",
        ("fit", "good.csv", "--prior", "beta[z]=normal(0, 1)"),
        2,
        ("beta[z]", "does not have", "beta[x]"),
    ),
    (
        "prior of an unknown family",
        ("fit", "good.csv", "--prior", "beta[x]=weibull(2, 1)"),
        2,
        ("'weibull(2, 1)'", "family"),
    ),
    ("prior without a name", ("fit", "good.csv", "--prior", "normal(0, 1)"), 2, ("NAME=PRIOR",)),
    (
        "sd prior on the real line",
        ("fit", "good.csv", "--prior", "sigs[group_id]=normal(0, 1)"),
        2,
        ("sigs[group_id]", "positive family"),
    ),
    (
        "predict without a posterior",
        ("predict", "nope.nc", "good.csv", "--out", "p.csv"),
        2,
        ("posterior", "'nope.nc'"),
    ),
    (
        "SBC 0 simulations",
        ("sbc", "--simulations", "0", "--out", "run"),
        2,
        ("--simulations", "positive", "0"),
    ),  # fmt: skip
    (
        "SBC negative workers",
        ("sbc", "--simulations", "2", "--workers", "-1", "--out", "run"),
        2,
        ("--workers", "-1"),
    ),  # fmt: skip
    (
        "SBC out is a file",
        ("sbc", "--simulations", "2", "--out", "good.csv"),
        2,
        ("--out", "directory", "good.csv"),
    ),  # fmt: skip
]


@pytest.mark.parametrize(("args", "status", "words"), [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])  # fmt: skip
def test_cli_bad_input_one_line_no_traceback(files, args, status, words) -> None:
    before = sorted(p.name for p in files.iterdir())
    proc = _cli(*args, cwd=files)
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert sorted(p.name for p in files.iterdir()) == before  # nothing written or left


def test_cli_debug_shows_the_traceback(files) -> None:
    proc = _cli("--debug", "fit", "constant_y.csv", cwd=files)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "constant" in proc.stderr


# ------------------------------------------------------------------------------- SBC files
@pytest.mark.parametrize(
    "damage",
    [b'{"index": 1, "tru', b"\x00\xff garbage", b"[1, 2, 3]", b'{"index": 1}'],
    ids=["truncated", "binary garbage", "not an object", "missing keys"],
)
def test_sbc_damaged_result_is_named_set_aside_and_recomputed(tmp_path, damage) -> None:
    from test_sbc import CHEAP, fake_task

    from lmm_pymc.sbc import SBCStore, load_sbc, run_sbc

    run_sbc(3, tmp_path, CHEAP, workers=1, progressbar=False, task=fake_task)
    store = SBCStore(tmp_path)
    kept = {i: store.path(i).read_bytes() for i in (0, 2)}
    store.path(1).write_bytes(damage)
    with pytest.raises(ValueError, match=r"sim_000001\.json' is corrupted"):
        load_sbc(tmp_path)  # read directly: refused, naming the file
    with pytest.warns(UserWarning, match=r"sim_000001\.json' is corrupted.*recomputed"):
        result = run_sbc(3, tmp_path, CHEAP, workers=1, progressbar=False, task=fake_task)
    assert result.n_simulations == 3 and store.read(1)["index"] == 1
    assert (tmp_path / "sim_000001.json.corrupt").read_bytes() == damage
    assert all(store.path(i).read_bytes() == b for i, b in kept.items())  # others untouched


def test_outputs_are_written_atomically(tmp_path) -> None:
    from lmm_pymc.files import atomic_path

    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the ne")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


@pytest.mark.slow
def test_huge_integer_labels_sample(recwarn) -> None:
    """Labels beyond int64 once crashed the sampler ("unsupported type"): now they are text."""
    sim = lmm_pymc.simulate(data=lmm_pymc.tutorial.design_frame(4, 8), seed=5)
    huge = [int(g) + 1180591620717411303424 for g in sim.data["group_id"]]  # beyond int64
    df = sim.data.assign(group_id=pd.Series(huge, dtype=object))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = lmm_pymc.fit(df, draws=30, tune=30, chains=1, random_seed=1, progressbar=False)
    labels = idata.posterior["b_group_id"].coords["group_id"].values
    assert labels[0] == "1180591620717411303425"
