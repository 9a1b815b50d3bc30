"""A bound on a sampler's ESS per second from the measured cost of one gradient: the
record of a Stan program or of brms where it gets no draws on a size."""

from __future__ import annotations

from benchmarks.common import usable_cpus


def bound_record(compile_s: float, timings, draws: int, tune: int, chains: int) -> dict:
    """Bound a sampler's ESS/s from two timed runs ``[(seconds, leapfrog steps), ...]`` that
    differ only in their number of iterations.

    The time difference over the leapfrog difference is the cost of one gradient, with the
    fixed costs (data transfer, model instantiation) cancelled. Each NUTS iteration costs at
    least one gradient and the minimum bulk ESS is taken to be at most the number of draws,
    so ``chains * draws / (chains * (tune + draws) * t_grad / parallel)`` bounds the ESS per
    second of sampling from above.
    """
    (t_a, l_a), (t_b, l_b) = timings
    grad_s = (t_b - t_a) / (l_b - l_a) if l_b > l_a else float("nan")
    if not grad_s > 0:
        raise RuntimeError(
            f"the gradient timing is lost in noise ({t_a:.2f} s for {l_a:.0f} steps, "
            f"{t_b:.2f} s for {l_b:.0f}): give this size slow draws instead"
        )
    parallel = min(chains, usable_cpus())
    sampling_lower = chains * (tune + draws) * grad_s / parallel
    return {
        "bound": True,
        "compile_s": compile_s,
        "grad_s": grad_s,
        "sampling_s": sampling_lower,
        "end_to_end_s": compile_s + sampling_lower,
        "divergences": None,
        "steps_per_draw": 1.0,
        "min_ess_bulk": float(chains * draws),
        "ess_bulk": {},
        "note": f"not sampled: one gradient in the sampler takes {grad_s * 1e3:.1f} ms "
        f"(two runs of {int(l_a)} and {int(l_b)} leapfrog steps, {t_a:.1f} s and {t_b:.1f} s); "
        "times are lower bounds (1 gradient per iteration), the ESS an upper bound (= draws)",
    }
