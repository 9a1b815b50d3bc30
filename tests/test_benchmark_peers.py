"""The peers' runners of the benchmark, without running a peer: brms's draws under the
package's names, and where the default fit's compiled log density came from."""

from __future__ import annotations

import types

import numpy as np
import pytest

from benchmarks.peers import brms, own
from benchmarks.peers.stan import stan_posterior


def test_brms_draws_get_the_package_names():
    import pandas as pd

    from lmm_pymc import simulate

    sim = simulate(seed=2024)
    chains, draws = 2, 5
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {name: rng.normal(size=chains * draws) for name in brms.BRMS_NAMES}
        | {".chain": np.repeat([1, 2], draws), ".iteration": np.tile(np.arange(1, draws + 1), 2)}
    ).iloc[::-1]  # any row order
    post = stan_posterior(brms._brms_draws(frame, chains), sim.design)
    ordered = frame.sort_values([".chain", ".iteration"])
    np.testing.assert_array_equal(
        post["sigs"].sel(random_effect="x|group_id").values,
        ordered["sd_group_id__x"].to_numpy().reshape(chains, draws),
    )
    np.testing.assert_array_equal(
        post["R"].sel(random_effect="intercept|group_id", random_effect_="x|group_id").values,
        ordered["cor_group_id__Intercept__x"].to_numpy().reshape(chains, draws),
    )
    np.testing.assert_array_equal(
        post["beta"].sel(fixed_effect="intercept").values,
        ordered["b_Intercept"].to_numpy().reshape(chains, draws),
    )


def _compiled(cache_hits: int):
    """A stand-in for nutpie's compiled model: numba's cache hits of its log density."""
    return types.SimpleNamespace(compiled_logp_func=types.SimpleNamespace(cache_hits=cache_hits))


@pytest.mark.parametrize(
    ("last", "in_process", "expected"),
    [
        (None, False, "-"),  # sampled without nutpie: nothing compiled in the process
        (_compiled(1), False, "cached on disk"),
        (_compiled(0), False, "cold"),
        (_compiled(0), True, "cached in process"),
    ],
)
def test_default_compile_cache_reads_the_last_compiled_model(
    monkeypatch, last, in_process, expected
):
    import lmm_pymc.compiled

    monkeypatch.setattr(lmm_pymc.compiled, "last_compiled", lambda: last)
    assert own._default_compile_cache(in_process) == expected
