"""Model structure: free variables, shapes, coords, shared names, finite logp and gradient."""

from __future__ import annotations

import numpy as np
import pytest

from lmm_pymc import PARAMETRIZATIONS, Priors, build_model, simulate

SHARED = {
    "alpha_0": (),
    "beta_0": (),
    "sigma_g": (),
    "sigs": ("random_effect",),
    "R": ("random_effect", "random_effect_"),
    "Sigma": ("random_effect", "random_effect_"),
    "rho": (),
}


@pytest.fixture(scope="module")
def labelled_sim():
    return simulate(
        n_groups=4, group_sizes=[3, 5, 4, 6], group_labels=["s1", "s2", "s3", "s4"], seed=2
    )


def test_lkj_corr_free_variables(labelled_sim):
    m = build_model(labelled_sim.design, "lkj_corr")
    assert [v.name for v in m.free_RVs] == [
        "alpha_0",
        "beta_0",
        "sigma_g",
        "sigs",
        "R_upper",
        "random_group",
    ]
    ip = m.initial_point()
    assert ip["random_group"].shape == (4, 2)
    assert ip["sigs_log__"].shape == (2,)
    assert ip["R_upper_interval__"].shape == (1,)
    assert m.named_vars_to_dims["random_group"] == ("group", "random_effect")


def test_cholesky_free_variables(labelled_sim):
    m = build_model(labelled_sim.design, "cholesky")
    assert [v.name for v in m.free_RVs] == ["alpha_0", "beta_0", "sigma_g", "chol_cov", "z"]
    ip = m.initial_point()
    assert ip["z"].shape == (4, 2)
    assert ip["chol_cov_cholesky-cov-packed__"].shape == (3,)
    assert m.named_vars_to_dims["random_group"] == ("group", "random_effect")


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_shared_names_coords_and_finite_logp(labelled_sim, parametrization):
    m = build_model(labelled_sim.design, parametrization)
    assert m.coords["group"] == ("s1", "s2", "s3", "s4")
    assert m.coords["random_effect"] == ("intercept", "x")
    assert m.coords["fixed_effect"] == ("intercept", "x")
    for name, dims in SHARED.items():
        assert name in m.named_vars, name
        assert m.named_vars_to_dims.get(name, ()) == dims, name
    ip = m.initial_point()
    logp = m.compile_logp()(ip)
    grad = m.compile_dlogp()(ip)
    assert np.isfinite(logp)
    assert np.all(np.isfinite(grad)) and grad.size == sum(np.size(v) for v in ip.values())


def test_deterministics_are_consistent(labelled_sim):
    """Sigma = diag(sigs) R diag(sigs) and rho = R[0, 1] in both explicit parametrizations."""
    for p in ("lkj_corr", "cholesky"):
        m = build_model(labelled_sim.design, p)
        f = m.compile_fn(
            [m["sigs"], m["R"], m["Sigma"], m["rho"]], inputs=m.value_vars, on_unused_input="ignore"
        )
        rng = np.random.default_rng(0)
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in m.initial_point().items()}
        sigs, R, Sigma, rho = f(point)
        # same arithmetic in another order: rtol 1e-12
        np.testing.assert_allclose(Sigma, sigs[:, None] * R * sigs[None, :], rtol=1e-12)
        assert rho == R[0, 1] and np.allclose(np.diag(R), 1.0, rtol=1e-12)


def test_priors_reach_the_model(tutorial_sim):
    """Changing one prior changes exactly the term it governs."""
    base = build_model(tutorial_sim.design, "lkj_corr")
    wide = build_model(tutorial_sim.design, "lkj_corr", priors=Priors(fixed_sd=20.0))
    ip = base.initial_point()  # alpha_0 = beta_0 = 0
    a, b = base.point_logps(ip), wide.point_logps(ip)
    # Normal(0, s) at 0: -log(s) - 0.5 log(2 pi); the difference is log 2 per term (2 d.p.)
    assert a["alpha_0"] - b["alpha_0"] == pytest.approx(np.log(2), abs=0.01)
    assert a["sigs"] == b["sigs"] and a["y"] == b["y"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"parametrization": "centred"}, r"parametrization must be one of .* found 'centred'"),
        (
            {"priors": None, "parametrization": "lkj_corr", "design": "nope"},
            "must be a lmm_pymc.Design",
        ),
    ],
)
def test_bad_model_input(tutorial_sim, kwargs, match):
    design = kwargs.pop("design", tutorial_sim.design)
    with pytest.raises(ValueError, match=match):
        build_model(design, **kwargs)


@pytest.mark.parametrize(
    ("field", "value"), [("lkj_eta", 0.0), ("group_sd", -1.0), ("fixed_sd", float("nan"))]
)
def test_bad_priors(field, value):
    with pytest.raises(ValueError, match=rf"Priors.{field} must be"):
        Priors(**{field: value})
