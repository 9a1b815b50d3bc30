"""lmm_pymc.marginal.products: a data matrix times a parameter vector, in both directions,
under numba as under the C backend."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.tensor.math import Dot

from lmm_pymc import build_model
from lmm_pymc.marginal.products import MatVec, matvec, narrow


def _layouts(rng):
    """The same (5, 3) matrix C-ordered, Fortran-ordered, as a transposed view and strided."""
    A = rng.normal(size=(5, 3))
    return {"C": A, "F": np.asfortranarray(A), "T": np.ascontiguousarray(A.T).T,
            "strided": rng.normal(size=(5, 6))[:, ::2]}  # fmt: skip


@pytest.mark.parametrize("mode", ["NUMBA", "FAST_RUN"])
@pytest.mark.parametrize("layout", ["C", "F", "T", "strided"])
def test_values_and_gradient_equal_numpy(mode, layout):
    """``A @ x`` and the gradient of ``w'(A @ x)`` in ``x``, ``A.T @ w``, for every memory
    layout numba can meet. Tolerance 1e-12 relative: BLAS and NumPy sum 3-5 products of
    unit-size numbers in possibly different orders (~1e-16 apart)."""
    rng = np.random.default_rng(1)
    A = _layouts(rng)[layout]
    x_val, w_val = rng.normal(size=3), rng.normal(size=5)
    Av, x, w = pt.matrix("A"), pt.vector("x"), pt.vector("w")
    y = matvec(Av, x)
    fn = pytensor.function([Av, x, w], [y, pytensor.grad(pt.dot(w, y), x)], mode=mode)
    value, grad = fn(A, x_val, w_val)
    np.testing.assert_allclose(value, A @ x_val, rtol=1e-12)
    np.testing.assert_allclose(grad, A.T @ w_val, rtol=1e-12)
    # the check can fail: the transposed product is a different vector
    assert not np.allclose(grad, np.resize(A @ w_val[:3], 3))


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(4, 3))
    pytensor.gradient.verify_grad(lambda x: matvec(pt.as_tensor(A), x).sum() ** 2,
                                  [rng.normal(size=3)], rng=rng)  # fmt: skip


def test_bad_shapes_are_refused():
    with pytest.raises(TypeError, match="matrix and a vector"):
        MatVec()(pt.vector("a"), pt.vector("x"))


def _dots_on(fgraph, name: str) -> list:
    """The ``Dot`` nodes whose inputs are the data input ``name`` or a view of it."""
    found = []
    for node in fgraph.apply_nodes:
        if not isinstance(node.op, Dot):
            continue
        for inp in node.inputs:
            while inp.owner is not None and len(inp.owner.inputs) == 1:
                inp = inp.owner.inputs[0]  # through a transpose or reshape
            if inp.name == name:
                found.append(node)
    return found


def test_crossed_gradient_multiplies_the_cross_products_through_blas(crossed_sim):
    """The crossed likelihood's gradient, as nutpie compiles it (numba), multiplies ``Z'D``
    by the sampled vector and its transpose through :class:`MatVec` only: a plain ``Dot``
    on the transposed input ran numba's elementwise loop (15x slower at 10^4 x 10^3)."""
    model = build_model(crossed_sim.design, integrate="subject")
    fn = model.logp_dlogp_function(mode="NUMBA", ravel_inputs=True)
    fgraph = fn._pytensor_function.maker.fgraph
    ops = [node.op for node in fgraph.apply_nodes if isinstance(node.op, MatVec)]
    assert {op.transposed for op in ops} == {False, True}
    assert _dots_on(fgraph, "stat_ZtD") == []
    # the check can fail: the same likelihood through pt.dot has a Dot on stat_ZtD.T
    Kv, d = pt.matrix("stat_ZtD"), pt.vector("d")
    plain = pytensor.function([Kv, d], pytensor.grad(pt.dot(Kv, d).sum() ** 2, d), mode="NUMBA")
    assert _dots_on(plain.maker.fgraph, "stat_ZtD")


def _exact(rng, shape, step=0.25, top=4) -> np.ndarray:
    """A float64 matrix of multiples of ``step`` from ``-top`` to ``top``."""
    n = int(top / step)
    return rng.integers(-n, n + 1, size=shape) * step


@pytest.mark.parametrize("mode", ["NUMBA", "FAST_RUN"])
@pytest.mark.parametrize("layout", ["C", "F", "T"])
@pytest.mark.parametrize("kind", ["int8", "int16", "float32"])
def test_narrow_matrix_is_multiplied_in_float64(mode, layout, kind):
    """A matrix stored narrow (:func:`narrow`) times a float64 vector, both directions:
    the float64 product of the same numbers. Tolerance 1e-13 relative: the products are
    exact and only the order of 40 float64 additions differs (~1e-15)."""
    rng = np.random.default_rng(3)
    step, top = {"int8": (0.25, 4), "int16": (0.5, 1000), "float32": (1 / 3, 4)}[kind]
    A64 = _exact(rng, (37, 40), step, top)
    if kind == "float32":  # thirds are no binary fractions: exactly float32, not scaled ints
        A64 = A64.astype(np.float32).astype(np.float64)
    A64 = {"C": A64, "F": np.asfortranarray(A64), "T": np.ascontiguousarray(A64.T).T}[layout]
    B, factor = narrow(A64)
    assert B.dtype == kind
    np.testing.assert_array_equal(B * factor, A64)
    x_val, w_val = rng.normal(size=40), rng.normal(size=37)
    Bv, x, w = pt.matrix("B", dtype=kind), pt.vector("x"), pt.vector("w")
    y = matvec(Bv, x) * factor
    assert y.dtype == "float64"
    fn = pytensor.function([Bv, x, w], [y, pytensor.grad(pt.dot(w, y), x)], mode=mode)
    value, grad = fn(B, x_val, w_val)
    np.testing.assert_allclose(value, A64 @ x_val, rtol=1e-13)
    np.testing.assert_allclose(grad, A64.T @ w_val, rtol=1e-13)
    # the check can fail: sums kept in float32 are off by ~1e-7
    single = (A64.astype(np.float32) @ x_val.astype(np.float32)).astype(float)
    assert np.max(np.abs(single - A64 @ x_val) / np.abs(A64 @ x_val)) > 1e-12


def test_narrow_keeps_what_it_cannot_hold_exactly():
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 200, size=(3, 4)).astype(float)
    assert narrow(counts)[0].dtype == np.int16 and narrow(counts)[1] == 1.0
    halves = _exact(rng, (3, 4), 0.5, 10)
    B, factor = narrow(halves)
    assert B.dtype == np.int8 and factor == 0.5
    inexact = halves + 0.1  # 0.1 is no float32 either
    assert narrow(inexact)[0] is inexact and narrow(inexact)[1] == 1.0
    ints = np.arange(6).reshape(2, 3)
    assert narrow(ints)[0] is ints
    with_nan = halves.copy()
    with_nan[0, 0] = np.nan
    assert narrow(with_nan)[0].dtype == np.float64


def test_crossed_model_reads_exact_cross_products_narrow(crossed_sim, monkeypatch):
    """``Z'D`` of counts and +-0.5 codes enters the model as int8 once it is large
    (NARROW_SIZE, lowered here): the log density and its gradient equal the float64
    model's to 1e-12 relative (the same exact products, sums in float64 in another
    order; the log density is a sum of ~400 terms)."""
    from lmm_pymc.marginal import graph

    wide = build_model(crossed_sim.design, integrate="subject")
    monkeypatch.setattr(graph, "NARROW_SIZE", 0)
    narrowed = build_model(crossed_sim.design, integrate="subject")
    assert {v.name: v.dtype for v in narrowed.data_vars}["stat_ZtD"] == "int8"
    assert {v.name: v.dtype for v in wide.data_vars}["stat_ZtD"] == "float64"
    rng = np.random.default_rng(5)
    for seed in range(3):
        point = {k: v + rng.normal(0.0, 0.3, np.shape(v))
                 for k, v in wide.initial_point().items()}  # fmt: skip
        values = []
        for model in (wide, narrowed):
            fn = model.logp_dlogp_function(mode="NUMBA", ravel_inputs=True)
            fn.set_extra_values({})
            x = np.concatenate([np.ravel(point[v.name]) for v in fn._grad_vars])
            values.append(fn(x))
        (lw, gw), (ln, gn) = values
        assert abs(ln - lw) <= 1e-12 * abs(lw), (seed, ln, lw)
        np.testing.assert_allclose(gn, gw, rtol=1e-9, atol=1e-9 * np.abs(gw).max())
