"""lme4 (R): ``lmer(..., REML = FALSE)``, the frequentist floor, time only, in ``Rscript``
(:func:`benchmarks.peers.r.rscript`)."""

from __future__ import annotations

import shutil

from benchmarks.peers.r import rscript


def run_lme4(sim) -> dict:
    """lme4's maximum-likelihood fit (``REML = FALSE``), time only: the first ``lmer`` call
    after loading lme4 (a second one, when the first takes under 10 s, in the note)."""
    import pandas as pd

    row, out = rscript("lme4", sim)
    shutil.rmtree(out, ignore_errors=True)
    fit_s = float(row["fit_s"])
    refit = "" if pd.isna(row["refit_s"]) else f", a second fit {row['refit_s']:.2f} s"
    return {
        "compile_s": None,
        "sampling_s": fit_s,
        "end_to_end_s": fit_s,
        "divergences": None,
        "steps_per_draw": None,
        "min_ess_bulk": None,
        "ess_bulk": {},
        "startup_s": float(row["startup_s"]),
        "load_s": float(row["load_s"]),
        "read_s": float(row["read_s"]),
        "note": f"lme4 {row['version']}: lmer(y ~ 1 + x + (1 + x | group_id), REML = FALSE) "
        f"{fit_s:.2f} s{refit}; converged without warnings: {bool(row['converged'])}; not "
        f"included: R start-up {row['startup_s']:.1f} s, loading lme4 {row['load_s']:.1f} s, "
        f"reading the CSV {row['read_s']:.1f} s",
    }
