"""Per-gradient cost of the joint marginal likelihood (every factor's random effects
integrated out, one dense M x M Cholesky factorisation per gradient) beside the crossed
one (the factor with the most levels integrated out, the others sampled), at M = 30, 60,
120, 240 random effects: the measurement behind ``lmm_pymc.marginal.JOINT_LIMIT``.

Two crossed random intercepts, 2/3 and 1/3 of the M levels, every cell observed twice;
the log density and its gradient compiled by PyTensor's numba backend (nutpie's), timed
over repeated calls at the model's initial point.

    python benchmarks/joint_cost.py [--sizes 30 60 120 240] [--calls 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

FORMULA = "y ~ 1 + (1 | a) + (1 | b)"


def _design(M: int, seed: int = 0):
    import lmm_pymc

    Ja, Jb = 2 * M // 3, M - 2 * M // 3
    a, b = np.meshgrid(np.arange(Ja), np.arange(Jb), indexing="ij")
    frame = pd.DataFrame({"a": np.tile(a.ravel(), 2), "b": np.tile(b.ravel(), 2)})
    frame["y"] = np.random.default_rng(seed).normal(size=len(frame))
    return lmm_pymc.design_from_formula(FORMULA, frame)


def _per_gradient(model, calls: int) -> float:
    """Seconds per call of the numba-compiled log density and gradient."""
    fn = model.compile_fn(
        [model.logp(), model.dlogp()],
        inputs=model.value_vars, mode="NUMBA", on_unused_input="ignore",
    )  # fmt: skip
    point = model.initial_point()
    fn(point)  # compile and warm up
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            fn(point)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 60, 120, 240])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    import lmm_pymc
    import lmm_pymc.marginal

    print("| M | rows | joint us / gradient | crossed us / gradient |")
    print("| --- | --- | --- | --- |")
    for M in args.sizes:
        design = _design(M)
        big = max(design.factors, key=lambda f: f.n_levels).name
        plan = lmm_pymc.marginal.MarginalPlan.from_data(design)
        joint_model = lmm_pymc.build_model(
            design, plan=plan if plan.joint is not None else _forced_joint(design)
        )
        crossed_model = lmm_pymc.build_model(design, integrate=big)
        joint = _per_gradient(joint_model, args.calls)
        crossed = _per_gradient(crossed_model, args.calls)
        print(f"| {M} | {design.n_obs} | {joint * 1e6:.0f} | {crossed * 1e6:.0f} |", flush=True)


def _forced_joint(design):
    """The joint plan beyond JOINT_LIMIT (for the measurement only)."""
    import dataclasses

    from lmm_pymc.marginal import JointStatistics, MarginalPlan

    plan = MarginalPlan.from_data(design, max(design.factors, key=lambda f: f.n_levels).name)
    return dataclasses.replace(plan, crossed=None, joint=JointStatistics.from_design(design))


if __name__ == "__main__":
    main()
