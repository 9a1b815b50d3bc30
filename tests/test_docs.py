"""Every Python block of README.md and of the docs pages runs as written, in order, one
fresh process per page (a block may build on the page's earlier blocks), in an empty
folder (files a block writes land there)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: str) -> list[str]:
    """The page's ```python blocks, in order."""
    return _BLOCK.findall((ROOT / page).read_text())


def test_blocks_are_found() -> None:
    # the extraction itself can fail: the README has four blocks, a page without any none
    assert len(python_blocks("README.md")) == 4
    assert python_blocks("docs/notebooks.md") == []
    assert "lmm_pymc.fit(df" in python_blocks("README.md")[1]


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)])
def test_page_blocks_run_as_written(page: str, tmp_path) -> None:
    blocks = python_blocks(page)
    # each block in turn in one namespace; a failure names the block and its first line
    script = "\n".join(
        [f"print('--- block {i + 1}: ' + {b.strip().splitlines()[0]!r}, flush=True)\n{b}"
         for i, b in enumerate(blocks)]
    )  # fmt: skip
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{page}: a block failed\n{out[-4000:]}"
    assert out.count("--- block ") == len(blocks)
