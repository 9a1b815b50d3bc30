"""brms (R): ``y ~ 1 + x + (1 + x | group_id)`` with the tutorial's priors on brms's own
non-centred program, compiled by rstan (cached between runs in :data:`R_CACHE`) and sampled
by ``rstan::sampling`` in ``Rscript`` (:func:`benchmarks.peers.r.rscript`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from benchmarks.peers.bound import bound_record
from benchmarks.peers.r import rscript
from benchmarks.peers.stan import stan_posterior

#: brms's names of the six scalars -> the tutorial's Stan names (then the package's)
BRMS_NAMES = {
    "b_Intercept": "alpha_0",
    "b_x": "beta_0",
    "sigma": "sigma_g",
    "sd_group_id__Intercept": "sigs[0]",
    "sd_group_id__x": "sigs[1]",
    "cor_group_id__Intercept__x": "rho",
}

#: where rstan keeps brms's compiled program between runs (``auto_write``)
R_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lmm_pymc-benchmark"

#: seconds added to ``--timeout`` for brms: its first compile takes 1-7 minutes
BRMS_COMPILE_ALLOWANCE = 600


def _brms_draws(frame, chains: int) -> dict:
    """brms's draws (one row per draw, columns ``.chain``, ``.iteration`` and
    :data:`BRMS_NAMES`) as the tutorial's Stan draws, shape ``(chain, draw, ...)``."""
    import numpy as np

    frame = frame.sort_values([".chain", ".iteration"])

    def col(name):
        return frame[name].to_numpy(dtype=float).reshape(chains, -1)

    rho = col("cor_group_id__Intercept__x")
    R = np.ones((*rho.shape, 2, 2))
    R[..., 0, 1] = R[..., 1, 0] = rho
    return {
        "alpha_0": col("b_Intercept"),
        "beta_0": col("b_x"),
        "sigma_g": col("sigma"),
        "sigs": np.stack([col("sd_group_id__Intercept"), col("sd_group_id__x")], axis=-1),
        "R": R,
    }


def _sampled_record(sim, out: Path, row: dict, compile_s: float, chains: int,
                    note: str) -> dict:  # fmt: skip
    """The record of a sampled run from its ``draws.csv`` in ``out``."""
    import pandas as pd

    frame = pd.read_csv(out / "draws.csv")
    sampling_s = float(row["sampling_s"])
    return {
        "compile_s": compile_s,
        "sampling_s": sampling_s,
        "end_to_end_s": compile_s + sampling_s,
        "divergences": int(frame["divergent__"].sum()),
        "steps_per_draw": float(frame["n_leapfrog__"].mean()),
        "posterior": stan_posterior(_brms_draws(frame, chains), sim.design),
        "note": f"{note}; {int(row['cores'])} chains at a time, the longest "
        f"{row['chain_s']:.1f} s",
    }


def run_brms(sim, draws: int, tune: int, chains: int, seed: int, cold: bool = False,
             bound: bool = False) -> dict:  # fmt: skip
    """brms's program (non-centred, the tutorial's priors) compiled and sampled by rstan in
    ``Rscript``; compile = brms's program and data + ``rstan::stan_model`` (cold, or loaded
    from an earlier run's ``auto_write``); R's start-up, loading brms and reading the CSV are
    reported apart and left out of end-to-end, as the package's import is."""
    import pandas as pd

    R_CACHE.mkdir(parents=True, exist_ok=True)
    extra = [str(draws), str(tune), str(chains), str(seed), str(R_CACHE / "brms"),
             str(int(cold)), str(int(bound))]  # fmt: skip
    row, out = rscript("brms", sim, *extra)
    try:
        compile_s = float(row["prepare_s"]) + float(row["compile_s"])
        cache = "cached" if bool(row["cached"]) and not cold else "cold"
        note = (
            f"brms {row['brms']}, rstan {row['rstan']}; compile {cache}: brms's program and "
            f"data {row['prepare_s']:.1f} s + rstan::stan_model {row['compile_s']:.1f} s; not "
            f"in end-to-end: R start-up {row['startup_s']:.1f} s, loading brms and rstan "
            f"{row['load_s']:.1f} s, reading the CSV {row['read_s']:.1f} s"
        )
        if bound:
            grad = pd.read_csv(out / "gradient.csv")
            timings = list(zip(grad["seconds"], grad["leapfrog"], strict=True))
            rec = bound_record(compile_s, timings, draws, tune, chains)
            rec["note"] = f"{rec['note']}; {note}"
        else:
            rec = _sampled_record(sim, out, row, compile_s, chains, note)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rec["compile_cache"] = cache
    rec.update({k: float(row[k]) for k in ("startup_s", "load_s", "read_s")})
    return rec
