"""lmm_pymc.marginal.products: a data matrix times a parameter vector, in both directions,
under numba as under the C backend."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.tensor.math import Dot

from lmm_pymc import build_model
from lmm_pymc.marginal.products import MatVec, matvec


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
