"""The bridge to R, shared by brms and lme4: ``Rscript`` on ``benchmarks/peers_brms.R``, and
which R packages it can load."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

#: the R side of the R peers: one mode per peer (``brms``, ``lme4``)
R_SCRIPT = Path(__file__).resolve().parents[1] / "peers_brms.R"


def rscript(mode: str, sim, *extra: str) -> tuple[dict, Path]:
    """Run ``peers_brms.R`` in ``mode`` on the simulation's data (a CSV of ``y, x,
    group_id``); return its ``times.csv`` row and the folder of its outputs (a temporary
    folder the caller removes)."""
    import pandas as pd

    out = Path(tempfile.mkdtemp(prefix=f"lmm_bench_{mode}_"))
    data = out / "data.csv"
    sim.data[["y", "x", "group_id"]].to_csv(data, index=False)
    cmd = ["Rscript", "--vanilla", str(R_SCRIPT), mode, str(data), str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:]) or "no output"
        shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError(f"Rscript {R_SCRIPT.name} {mode} failed: {tail}")
    row = pd.read_csv(out / "times.csv").iloc[0].to_dict()
    return row, out


def r_packages(names: list[str]) -> tuple[bool, set[str], str]:
    """(is ``Rscript`` on the PATH, which of the R packages ``names`` it loads, versions)."""
    if shutil.which("Rscript") is None:
        return False, set(), ""
    code = (
        "for (p in commandArgs(TRUE)) if (requireNamespace(p, quietly = TRUE)) "
        "cat(p, format(packageVersion(p)), '\\n')"
    )
    proc = subprocess.run(["Rscript", "--vanilla", "-e", code, *names], capture_output=True,
                          text=True, check=False, timeout=120)  # fmt: skip
    found = dict(line.split()[:2] for line in proc.stdout.splitlines() if line.strip())
    versions = ", ".join(f"{name} {version}" for name, version in found.items())
    return True, set(found), versions
