"""SBC validation of the default model: a calibrated run and a deliberately miscalibrated one.

Run (resumable: re-run to continue)::

    python benchmarks/sbc_validation.py --simulations 200 --miscalibrated 50 --workers 2 \\
        --out sbc_validation

1. ``calibrated``: parameters drawn from the default priors, fitted with the same priors
   (``SBCConfig(parametrization=...)``, default ``cholesky``: nutpie on the model compiled
   once per worker; 2 chains x 500 draws after 500 tuning steps, thin 5, ranks 0..200).
   Every parameter must pass the ECDF-band uniformity test at family-wise level 0.95.
2. ``miscalibrated``: the same simulations fitted with ``beta ~ Normal(0, 1)`` instead of
   ``Normal(0, 10)``. The same test must fail.

``--parametrization marginal`` validates the package's default parametrization instead; each
fit then goes through :func:`lmm_pymc.fit`, which builds and compiles the model again.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd

from lmm_pymc.files import atomic_path
from lmm_pymc.priors import Priors
from lmm_pymc.sbc import DEFAULT_SAMPLING, SBCConfig, SBCResult, run_sbc


def _report(name: str, result: SBCResult, seconds: float, out: Path) -> bool:
    """Print the uniformity table and diagnostics, write plots and ranks; True if all pass."""
    table = result.uniformity(prob=0.95)
    diag = result.diagnostics()
    print(
        f"\n== {name}: {result.n_simulations} simulations, ranks in 0..{result.config.max_rank}, "
        f"{result.config.parametrization}, {seconds:.0f} s this run, "
        f"median {diag['seconds'].median():.1f} s per fit"
    )
    print(
        f"fits with divergences: {int((diag['divergences'] > 0).sum())} "
        f"(median {diag['divergences'].median():.0f}), max r_hat > 1.01: "
        f"{int((diag['max_r_hat'] > 1.01).sum())}"
    )
    columns = ["parameter", "passed", "max_ecdf_excess", "chi2", "chi2_p_value"]
    with pd.option_context("display.width", 120, "display.float_format", "{:.4f}".format):
        print(table[columns].to_string(index=False))
    result.plot_ecdf(out / "ecdf.png")
    result.plot_histograms(out / "ranks.png")
    with atomic_path(out / "ranks.csv") as tmp:
        result.table.to_csv(tmp, index=False)
    return bool(table["passed"].all())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--miscalibrated", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parametrization", default="cholesky")
    parser.add_argument("--out", default="sbc_validation")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    out = Path(args.out)
    good_config = SBCConfig(parametrization=args.parametrization, sampling=DEFAULT_SAMPLING)

    start = time.perf_counter()
    good = run_sbc(args.simulations, out / "calibrated", good_config, workers=args.workers)
    ok = _report("calibrated", good, time.perf_counter() - start, out / "calibrated")

    wrong = SBCConfig(parametrization=args.parametrization, fit_priors=Priors(fixed="normal(0, 1)"))
    start = time.perf_counter()
    bad = run_sbc(args.miscalibrated, out / "miscalibrated", wrong, workers=args.workers)
    detected = not _report("miscalibrated", bad, time.perf_counter() - start, out / "miscalibrated")
    print(f"\ncalibrated run passes: {ok}; miscalibration detected: {detected}")
    return 0 if ok and detected else 1


if __name__ == "__main__":
    raise SystemExit(main())
