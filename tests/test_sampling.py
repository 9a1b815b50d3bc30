"""Compile once per model structure: :func:`lmm_pymc.compiled.compile_model`."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lmm_pymc import Priors, build_model, fit, simulate
from lmm_pymc.compiled import compile_model, last_compiled, model_structure
from lmm_pymc.design import GroupedStatistics, GroupStatistics
from lmm_pymc.tutorial import design_frame

#: the crossed formula of the ``crossed_sim`` fixture (conftest.py)
CROSSED = "rt ~ 1 + cond + (1 + cond | subject) + (1 + cond | item)"


def _shifted(sim, by: float):
    """The simulation's data with y moved by ``by`` (same structure, other values)."""
    frame = sim.data.copy()
    frame["y"] = frame["y"] + by
    return frame


def test_same_structure_same_key_other_values():
    a = build_model(simulate(seed=1).design)
    b = build_model(simulate(seed=2).design)  # other y, other data-scale priors
    assert model_structure(a) == model_structure(b)


def test_structure_key_raises_no_warning():
    """The key is computed on every fit: nothing of PyTensor's deprecations reaches users."""
    model = build_model(simulate(seed=1).design)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_structure(model)


def test_structure_key_tells_structures_apart():
    design = simulate(seed=1).design
    base = model_structure(build_model(design))
    # another parametrization, other prior families, another LKJ shape, other sizes
    assert model_structure(build_model(design, "cholesky")) != base
    assert model_structure(build_model(design, priors=Priors(sigs="half_student_t(3, 2)"))) != base
    assert model_structure(build_model(design, priors=Priors(lkj_eta=3.0))) != base
    more = simulate(data=design_frame(n_groups=5), seed=1).design
    cholesky = model_structure(build_model(design, "cholesky"))
    assert model_structure(build_model(more, "cholesky")) != cholesky  # z has J rows


def test_marginal_group_count_is_an_input():
    """The marginal model's per-group sums are inputs: more groups, same compiled model."""
    small = build_model(simulate(seed=1).design)
    large = build_model(simulate(data=design_frame(n_groups=12), seed=1).design)
    assert model_structure(small) == model_structure(large)


def test_zero_pattern_is_structure():
    """A slope that never varies within groups drops terms from the graph (marginal.py):
    a different structure, never a cache hit on a model that keeps them."""
    stats = simulate(seed=1).design.grouped_statistics()
    s = stats.statistics

    def with_sums(**sums) -> GroupedStatistics:
        fields = {k: getattr(s, k) for k in ("n", "XtX", "XtZ", "ZtZ", "Xty", "Zty", "yty")}
        fields.update(sums)
        return GroupedStatistics(
            statistics=GroupStatistics(**fields),
            fixed_names=stats.fixed_names,
            factor=stats.factor,
        )

    base = model_structure(build_model(stats, priors=Priors.tutorial()))
    other_values = with_sums(yty=s.yty * 2.0)
    assert model_structure(build_model(other_values, priors=Priors.tutorial())) == base
    # x sums to 0 in every group: the cross terms vanish from the graph
    centred = {}
    for name in ("XtX", "XtZ", "ZtZ"):
        m = getattr(s, name).copy()
        m[:, 0, 1] = m[:, 1, 0] = 0.0
        centred[name] = m
    assert model_structure(build_model(with_sums(**centred), priors=Priors.tutorial())) != base


@pytest.mark.slow
def test_second_fit_reuses_the_compiled_model_with_its_own_data():
    """A fit of other data of the same structure compiles nothing and samples its own data:
    y moved by +100 moves the intercept by 100 (a compiled model that kept the first data,
    the failure this guards against, would leave it where it was). Tolerance 5: the
    intercept's posterior sd is about 1.5 on the tutorial's 3 groups."""
    sim = simulate(seed=1)
    options = dict(draws=300, tune=300, chains=2, random_seed=3, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = fit(sim, priors=Priors.tutorial(), pointwise=False, **options)
        compiled = last_compiled()
        second = fit(_shifted(sim, 100.0), priors=Priors(fixed="normal(0, 1000)"), **options)
    # other prior scale, same families: same structure
    assert compiled is not None and last_compiled() is compiled  # reused, not compiled again
    shift = float(
        second.posterior["beta"].sel(fixed_effect="intercept").mean()
        - first.posterior["beta"].sel(fixed_effect="intercept").mean()
    )
    assert abs(shift - 100.0) < 5.0
    assert second.posterior["beta"].coords["fixed_effect"].values.tolist() == ["intercept", "x"]


@pytest.mark.slow
def test_compiled_model_takes_the_new_values():
    """The reused compiled model holds the second model's data and hyperparameters."""
    a = build_model(simulate(seed=1).design)
    b = build_model(simulate(seed=2).design)
    compile_model(a)
    compiled = compile_model(b)
    for var in b.data_vars:
        if var.name in compiled.shared_data:
            np.testing.assert_array_equal(compiled.shared_data[var.name], var.get_value())
    assert "prior_values" in compiled.shared_data  # the data-scale prior means are inputs


def _c_logp(compiled, x: np.ndarray) -> tuple[float, np.ndarray, int]:
    """The compiled C log density and gradient at ``x``, called as nutpie calls it."""
    import ctypes

    def ptr(a):
        return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    out, logp = np.zeros(compiled.n_dim), np.zeros(())
    code = compiled.compiled_logp_func.ctypes(
        compiled.n_dim, ptr(x), ptr(out), ptr(logp), ctypes.c_void_p(compiled.user_data.ctypes.data)
    )
    return float(logp), out, code


@pytest.mark.slow
def test_compiled_log_density_is_each_models_own():
    """The C function nutpie calls (lmm_pymc's cacheable wrapper) gives, for a reused
    compiled model with the second model's values swapped in, the second model's own PyMC
    log density and gradient (with the Jacobian of the transforms, as NUTS samples them) at
    a random point, to 1e-9 relative (one graph, two compilers: rounding only); the first
    model's values are > 1 away there, so the check can fail."""
    a = build_model(simulate(seed=1).design)
    b = build_model(simulate(seed=2).design, priors=Priors.tutorial())
    compiled_a = compile_model(a)
    compiled_b = compile_model(b)
    assert compiled_b.compiled_logp_func._pyfunc.__name__ == "lmm_pymc_logp"
    x = np.random.default_rng(3).normal(size=compiled_b.n_dim)
    # nutpie's x: the value variables raveled in the model's order
    point, start = {}, 0
    for var in b.value_vars:
        shape = b.initial_point()[var.name].shape
        point[var.name] = x[start : start + int(np.prod(shape))].reshape(shape)
        start += int(np.prod(shape))
    assert start == x.size
    ref_logp, ref_grad = b.compile_logp()(point), b.compile_dlogp()(point)
    logp, grad, code = _c_logp(compiled_b, x)
    assert code == 0
    assert logp == pytest.approx(float(ref_logp), rel=1e-9)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9 * np.abs(ref_grad).max())
    assert abs(_c_logp(compiled_a, x)[0] - float(ref_logp)) > 1.0


@pytest.mark.slow
def test_compiled_wrappers_load_from_disk_in_a_new_process(tmp_path):
    """A second process compiling the same structure loads the C wrappers from numba's
    on-disk cache (cache_hits 1) instead of compiling them again."""
    import subprocess
    import sys

    script = (
        "from lmm_pymc import simulate\n"
        "from lmm_pymc.models import build_model\n"
        "from lmm_pymc.compiled import compile_model\n"
        "c = compile_model(build_model(simulate(seed=4).design))\n"
        "print('HITS', c.compiled_logp_func.cache_hits, c.compiled_expand_func.cache_hits)\n"
    )
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           cwd=tmp_path, timeout=900) for _ in range(2)]  # fmt: skip
    lines = [next(x for x in r.stdout.splitlines() if x.startswith("HITS")) for r in runs]
    assert lines[1] == "HITS 1 1", (lines, runs[1].stderr[-2000:])


@pytest.mark.slow
def test_crossed_default_target_accept_follows_the_fewest_levels(crossed_sim):
    """marginal's default target_accept is 0.9 once every factor has >= MANY_GROUPS levels
    (no funnel left), 0.99 below; the value used is in ``posterior.attrs``."""
    from lmm_pymc.sampling import MANY_GROUPS

    def used(frame) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 1 chain x 30 draws: diagnostics warn
            idata = fit(frame, CROSSED, draws=30, tune=30, chains=1, random_seed=1,
                        progressbar=False)  # fmt: skip
        assert idata.attrs["parametrization"] == "marginal"
        return idata.posterior.attrs["target_accept"]

    frame = crossed_sim.data  # 24 subjects x 16 items
    assert frame["item"].nunique() < MANY_GROUPS <= frame["subject"].nunique()
    assert used(frame) == 0.99
    # the odd subjects' items relabelled, 8 of those dropped (24 items): every factor has
    # >= 20 levels
    odd = frame["subject"].str[1:].astype(int) % 2 == 1
    more = frame.assign(item=frame["item"] + np.where(odd, "b", ""))
    more = more[~more["item"].isin([f"i{i}b" for i in range(8, 16)])]
    assert more["item"].nunique() >= MANY_GROUPS and more["subject"].nunique() >= MANY_GROUPS
    assert used(more) == 0.9


def test_many_trials_per_level_lower_a_glmms_default_target_accept():
    """Non-Gaussian ``cholesky`` defaults to 0.8 when every factor's median level holds
    ``RICH_LEVELS`` trials: counted in rows, a binomial's in its trials, the factor with
    the fewest deciding; the user's own target_accept and other parametrizations keep
    theirs."""
    import pandas as pd

    from lmm_pymc.formula import design_from_formula
    from lmm_pymc.sampling import RICH_LEVELS, SamplerConfig, trials_per_level

    # 30 subjects x 4 items x 2 rows: 8 rows per subject, 60 per item
    s, i, r = np.meshgrid(np.arange(30), np.arange(4), np.arange(2), indexing="ij")
    frame = pd.DataFrame({"s": s.ravel(), "i": i.ravel(), "x": r.ravel() - 0.5,
                          "y": (s.ravel() + r.ravel()) % 2, "n": 3})  # fmt: skip
    assert trials_per_level(design_from_formula("y ~ x + (1 | i)", frame)) == 60
    assert trials_per_level(design_from_formula("y ~ x + (1 | s) + (1 | i)", frame)) == 8
    binomial = design_from_formula("y | trials(n) ~ x + (1 | s) + (1 | i)", frame)
    assert trials_per_level(binomial) == 24  # 8 rows x 3 trials

    config = SamplerConfig()
    assert config.target_accept_for("cholesky", None, RICH_LEVELS) == 0.8
    assert config.target_accept_for("cholesky", None, RICH_LEVELS - 1) == 0.95
    assert config.target_accept_for("cholesky") == 0.95
    assert config.target_accept_for("lkj_corr", None, 10 * RICH_LEVELS) == 0.99
    assert SamplerConfig(target_accept=0.9).target_accept_for("cholesky", None, 500) == 0.9
    # and nutpie's low-rank mass matrix, unless the user's sampler_kwargs say otherwise
    low_rank = "low_rank_modified_mass_matrix"
    assert config.kwargs_for("cholesky", RICH_LEVELS)[low_rank] is True
    assert low_rank not in config.kwargs_for("cholesky", RICH_LEVELS - 1)
    own = SamplerConfig(sampler_kwargs={low_rank: False})
    assert own.kwargs_for("cholesky", RICH_LEVELS)[low_rank] is False
    assert SamplerConfig(sampler="pymc").kwargs_for("cholesky", RICH_LEVELS) == {}


def test_divergences_at_the_data_rich_default_rerun_at_the_cautious_one(monkeypatch):
    """The data-rich default (0.8, low-rank) is a first try: chains that diverge there run
    again at cholesky's 0.95 with nutpie's own mass matrix, the first run's divergences named
    in ``posterior.attrs["first_run"]`` and its seconds counted; clean chains, a user's own
    target_accept and a data-poor design run once."""
    import arviz as az

    from lmm_pymc import sampling
    from lmm_pymc.sampling import RICH_LEVELS, SamplerConfig, sample_model

    runs: list[SamplerConfig] = []

    def fake_runner(model, sampler, parametrization, n_groups):
        def run(config):
            runs.append(config)
            diverging = np.zeros((2, 10), bool)
            diverging[0, :3] = model == "always" or (model == "rich" and config.target_accept == 0.8)
            idata = az.from_dict(posterior={"mu": np.zeros((2, 10))},
                                 sample_stats={"diverging": diverging})  # fmt: skip
            idata.posterior.attrs["sampling_time"] = 2.0
            return idata

        return run

    monkeypatch.setattr(sampling, "_runner", fake_runner)
    idata = sample_model("rich", SamplerConfig(), "cholesky", None, RICH_LEVELS)
    assert [c.target_accept for c in runs] == [0.8, 0.95]
    assert "low_rank_modified_mass_matrix" not in runs[1].sampler_kwargs
    assert idata.posterior.attrs["first_run"].startswith("3 divergences at target_accept 0.8")
    assert idata.posterior.attrs["sampling_time"] == 4.0
    for model, config, trials in [("clean", SamplerConfig(), RICH_LEVELS),
                                  ("always", SamplerConfig(target_accept=0.8), RICH_LEVELS),
                                  ("always", SamplerConfig(), RICH_LEVELS - 1)]:  # fmt: skip
        runs.clear()
        idata = sample_model(model, config, "cholesky", None, trials)
        assert len(runs) == 1 and "first_run" not in idata.posterior.attrs
