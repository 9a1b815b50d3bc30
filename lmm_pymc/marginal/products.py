"""A data matrix times a parameter vector, at BLAS speed in both directions under numba.

The integrated-out likelihoods multiply large matrices of sums by the sampled vector:
``Z'D delta`` in the crossed likelihood (levels x effects rows, a column per fixed and
sampled effect: 2 x 10^4 x 1002 numbers for 10^4 subjects x 10^3 items), ``E beta`` per
group, ``D'D delta``. With ``pt.dot`` the gradient multiplies by the transposed matrix,
which PyTensor's numba backend makes a strided view ("A" layout); numba's ``np.dot`` on
such a view runs an elementwise loop instead of BLAS: 170 ms against 7 ms for the product
above, 15x on the whole crossed gradient (docs/fast-path.md). :func:`matvec` is an Op
whose numba form checks the layout at run time and hands a C- or Fortran-ordered matrix
to BLAS as it is (no copy), and whose gradient is the same Op, transposed.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key
from pytensor.scalar import upcast

__all__ = ["MatVec", "matvec"]


class MatVec(Op):
    """``A @ x`` (``transposed``: ``A.T @ x``) for a matrix ``A`` and a vector ``x``."""

    __props__ = ("transposed",)

    def __init__(self, transposed: bool = False):
        self.transposed = bool(transposed)

    def make_node(self, A, x) -> Apply:
        A, x = pt.as_tensor_variable(A), pt.as_tensor_variable(x)
        if A.ndim != 2 or x.ndim != 1:
            raise TypeError(f"MatVec takes a matrix and a vector, got ndim {A.ndim} and {x.ndim}")
        dtype = upcast(A.dtype, x.dtype)
        length = A.type.shape[1 if self.transposed else 0]
        return Apply(self, [A, x], [pt.tensor(dtype=dtype, shape=(length,))])

    def perform(self, node, inputs, output_storage) -> None:
        A, x = inputs
        out = (A.T if self.transposed else A) @ x
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][1 if self.transposed else 0],)]

    def L_op(self, inputs, outputs, output_grads):
        A, x = inputs
        (g,) = output_grads
        # d/dA of g'(A x) is g x' (transposed: x g'); A is data in every use, so PyTensor
        # prunes that term from a gradient with respect to the parameters
        gA = pt.outer(x, g) if self.transposed else pt.outer(g, x)
        return [gA, MatVec(not self.transposed)(A, g)]


@numba_njit
def _blas_matvec(A, x):
    """``A @ x`` through BLAS wherever ``A`` is C- or Fortran-ordered (checked at run
    time: a transposed view arrives typed as a strided "A" array)."""
    x = np.ascontiguousarray(x)
    if A.flags.f_contiguous and not A.flags.c_contiguous:
        return np.dot(np.ascontiguousarray(A.T).T, x)
    return np.dot(np.ascontiguousarray(A), x)  # a copy only for a strided A


@register_funcify_default_op_cache_key(MatVec)
def _numba_matvec(op: MatVec, node, **kwargs):
    if op.transposed:

        @numba_njit
        def matvec_transposed(A, x):
            return _blas_matvec(A.T, x)

        return matvec_transposed, 1

    @numba_njit
    def matvec_plain(A, x):
        return _blas_matvec(A, x)

    return matvec_plain, 1


def matvec(A, x) -> pt.TensorVariable:
    """``A @ x`` for a (data) matrix ``A`` and a vector ``x``; its gradient in ``x`` is
    ``A.T @ g``, both BLAS products under numba (module docstring)."""
    return MatVec(False)(A, x)
