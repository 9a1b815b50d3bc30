"""One measurement of :mod:`benchmarks.first_fit`, in its own process: where a fit's time goes.

Run by the orchestrator as ``python -m benchmarks.first_fit_child SPEC_JSON RESULT_JSON``
(``SPEC_JSON``: the case, the package to fit with, how many fits in the process). The
package's phases are timed from outside, by wrapping the functions each phase calls
(:class:`Phases`: exclusive seconds, a nested phase's time is not counted in its parent's);
numba's own compile events (``numba:compile``, loading from its on-disk cache included) are
a phase of their own wherever they happen, so "numba compile" is numba's time alone.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np


# ------------------------------------------------------------------ phase timer
class Phases:
    """Exclusive wall seconds per named phase: entering a phase pauses its parent's clock."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []

    def push(self, name: str) -> None:
        now = time.perf_counter()
        if self._stack:
            parent = self._stack[-1]
            self.seconds[parent[0]] += now - parent[1]
        self._stack.append([name, now])
        self.calls[name] += 1

    def pop(self) -> None:
        now = time.perf_counter()
        name, start = self._stack.pop()
        self.seconds[name] += now - start
        if self._stack:
            self._stack[-1][1] = now

    @contextmanager
    def phase(self, name: str):
        self.push(name)
        try:
            yield
        finally:
            self.pop()

    def wrap(self, owner, attr: str, name: str) -> None:
        """Time every call of ``owner.attr`` as phase ``name`` (a class's classmethod too)."""
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            with self.phase(name):
                return original(*args, **kwargs)

        is_class_method = isinstance(owner, type) and getattr(original, "__self__", None) is owner
        setattr(owner, attr, staticmethod(timed) if is_class_method else timed)

    def take(self) -> dict[str, float]:
        """The seconds so far, then a fresh count."""
        out = {k: round(v, 4) for k, v in self.seconds.items()}
        self.seconds.clear()
        self.calls.clear()
        return out


def listen_to_numba(phases: Phases) -> None:
    """Numba's compiles (and on-disk cache loads) as phase ``numba compile``, outermost only."""
    from numba.core import event

    class Listener(event.Listener):
        depth = 0

        def on_start(self, ev) -> None:
            if self.depth == 0:
                phases.push("numba compile")
            self.depth += 1

        def on_end(self, ev) -> None:
            self.depth -= 1
            if self.depth == 0:
                phases.pop()

    event.register("numba:compile", Listener())


# ------------------------------------------------------------------ data
def formula(p: int, q: int, factors: int) -> str:
    """``y ~ 1 + x1 + ... + xp + (1 + x1 .. x(q-1) | g)`` (+ ``(1 | h)`` with 2 factors)."""
    fixed = " + ".join(["1", *(f"x{i}" for i in range(1, p + 1))])
    random = " + ".join(["1", *(f"x{i}" for i in range(1, q))])
    extra = " + (1 | h)" if factors == 2 else ""
    return f"y ~ {fixed} + ({random} | g){extra}"


def frame(p: int, q: int, factors: int, groups: int, rows: int, seed: int):
    """Simulated rows: ``groups`` levels of g x ``rows`` rows; with 2 factors, h is crossed
    with g (row k of every group is level k of h). Fixed effects 0.5, random sds 1 and 0.5."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = groups * rows
    X = rng.normal(size=(n, p))
    g = np.repeat(np.arange(groups), rows)
    h = np.tile(np.arange(rows), groups)
    b = rng.normal(size=(groups, q)) * np.r_[1.0, np.full(q - 1, 0.5)]
    Z = np.column_stack([np.ones(n), X[:, : q - 1]])
    y = 1.0 + X @ np.full(p, 0.5) + (Z * b[g]).sum(1) + rng.normal(size=n)
    if factors == 2:
        y += rng.normal(size=rows)[h] * 0.7
    out = pd.DataFrame(X, columns=[f"x{i}" for i in range(1, p + 1)])
    out["g"] = [f"g{j}" for j in g]
    out["h"] = [f"h{k}" for k in h]
    out["y"] = y
    return out


# ------------------------------------------------------------------ lmm_pymc
LMM_IMPORTS = ("numpy", "pandas", "arviz", "pymc", "nutpie", "lmm_pymc")


def instrument_lmm(phases: Phases) -> None:
    """Wrap the functions of every phase of :func:`lmm_pymc.fit` (module docstring)."""
    import nutpie
    import pymc.initial_point
    import pymc.pytensorf
    import pytensor.gradient
    import pytensor.graph

    import lmm_pymc.compiled as compiled
    import lmm_pymc.fitting as fitting
    import lmm_pymc.predictions as predictions

    nutpie_sample = sys.modules["nutpie.sample"]
    ncp = sys.modules["nutpie.compile_pymc"]
    for owner, attr, name in [
        (fitting, "as_design", "formula and design"),
        (fitting, "default_priors", "priors"),
        (fitting.MarginalPlan, "from_data", "marginal plan (sums)"),
        (fitting, "build_model", "PyMC model"),
        (compiled, "model_structure", "structure key"),
        (pytensor.graph, "rewrite_graph", "graph rewrites"),
        (pytensor.gradient, "grad", "gradient"),
        (pymc.pytensorf, "compile", "PyTensor compile (rewrites, linking)"),
        (compiled, "_c_wrapper", "C wrappers (numba cfunc)"),
        (pymc.initial_point, "make_initial_point_fn", "initial point"),
        (ncp, "_prepare_dims_and_coords", "nutpie set-up"),
        (ncp.CompiledPyMCModel, "with_data", "nutpie set-up"),
        (nutpie, "sample", "sampling"),
        (nutpie_sample._BackgroundSampler, "__init__", "nutpie set-up"),
        (nutpie_sample, "_arrow_to_arviz", "InferenceData"),
        (fitting, "add_random_effects", "exact random-effect draws"),
        (predictions, "store_data", "InferenceData"),
        (predictions, "add_log_likelihood", "pointwise log-likelihood"),
        (predictions, "add_posterior_predictive", "posterior predictive"),
        (fitting, "diagnose", "diagnostics"),
    ]:
        phases.wrap(owner, attr, name)


def fit_lmm(spec: dict, phases: Phases, data) -> dict:
    """One default fit of the spec's formula; its phases, sampling and cache facts."""
    import lmm_pymc
    from lmm_pymc.compiled import last_compiled

    start = time.perf_counter()
    with phases.phase("fit (other)"):
        idata = lmm_pymc.fit(data, spec["formula"], random_seed=spec["seed"],
                             progressbar=False, **spec["sampling"])  # fmt: skip
    total = time.perf_counter() - start
    compiled = last_compiled()
    hits = getattr(getattr(compiled, "compiled_logp_func", None), "cache_hits", None)
    return {"total_s": total, "phases": phases.take(), "divergences":
            int(idata.sample_stats["diverging"].sum()), "wrapper_cache_hits": str(hits)}  # fmt: skip


# ------------------------------------------------------------------ bambi
BAMBI_IMPORTS = ("numpy", "pandas", "arviz", "pymc", "nutpie", "bambi")


def instrument_bambi(phases: Phases) -> None:
    import bambi
    import nutpie

    nutpie_sample = sys.modules["nutpie.sample"]
    for owner, attr, name in [
        (bambi.Model, "__init__", "formula and design"),
        (bambi.Model, "build", "PyMC model"),
        (nutpie, "compile_pymc_model", "nutpie compile"),
        (nutpie, "sample", "sampling"),
        (nutpie_sample, "_arrow_to_arviz", "InferenceData"),
    ]:
        phases.wrap(owner, attr, name)


def fit_bambi(spec: dict, phases: Phases, data) -> dict:
    import bambi

    sampling = spec["sampling"]
    start = time.perf_counter()
    with phases.phase("fit (other)"):
        model = bambi.Model(spec["formula"], data)
        idata = model.fit(draws=sampling["draws"], tune=sampling["tune"],
                          chains=sampling["chains"], inference_method="nutpie",
                          random_seed=spec["seed"], progressbar=False)  # fmt: skip
    total = time.perf_counter() - start
    return {"total_s": total, "phases": phases.take(),
            "divergences": int(idata.sample_stats["diverging"].sum())}  # fmt: skip


# ------------------------------------------------------------------ main
def main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    phases = Phases()
    t0 = time.perf_counter()
    peer = spec["package"] == "bambi"
    for module in BAMBI_IMPORTS if peer else LMM_IMPORTS:
        __import__(module)
    import_s = time.perf_counter() - t0
    (instrument_bambi if peer else instrument_lmm)(phases)
    listen_to_numba(phases)
    phases.take()
    fits = []
    for k in range(spec["fits"]):
        case = spec["case"]
        data = frame(case["p"], case["q"], case["factors"], case["groups"], case["rows"],
                     seed=spec["seed"] + k)  # fmt: skip
        fits.append((fit_bambi if peer else fit_lmm)(spec, phases, data))
    record = {"import_s": import_s, "fits": fits}
    Path(result_path).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
