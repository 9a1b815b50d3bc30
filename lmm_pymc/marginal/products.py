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

A matrix that loses nothing in a narrower type (:func:`narrow`: small multiples of a
power of two, as counts and sums of +-0.5 or 0/1 codes are, in int8 or int16 with the
power of two as a factor outside the product; otherwise float32 where every entry is
exactly a float32) is read at an eighth, a quarter or half the bytes and multiplied in
float64 (each entry widened, the sums in float64): the same numbers as the float64 product
up to the order of the additions. The products above are memory-bound, so their time
falls with the bytes (docs/fast-path.md).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key
from pytensor.scalar import upcast

__all__ = ["MatVec", "NARROW_TYPES", "matvec", "narrow"]


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


#: The storage types :class:`MatVec` widens to float64 entry by entry under numba.
NARROW_TYPES = ("float32", "int16", "int8")


@numba_njit(fastmath=True)
def _widened_rows(A, x):
    """``A @ x`` for a C-ordered narrow ``A``: each row's sum in float64."""
    R, C = A.shape
    out = np.empty(R)
    for r in range(R):
        acc = 0.0
        for c in range(C):
            acc += np.float64(A[r, c]) * x[c]
        out[r] = acc
    return out


@numba_njit(fastmath=True)
def _widened_columns(A, g):
    """``A.T @ g`` for a C-ordered narrow ``A``: a pass over its rows, sums in float64."""
    R, C = A.shape
    out = np.zeros(C)
    for r in range(R):
        gr = g[r]
        for c in range(C):
            out[c] += np.float64(A[r, c]) * gr
    return out


@numba_njit
def _widened_matvec(A, x):
    """``A @ x`` for a narrow ``A`` (:data:`NARROW_TYPES`; C- or Fortran-ordered, else
    copied) and a float64 ``x``: every entry widened to float64, no float64 copy of ``A``."""
    x = np.ascontiguousarray(x).astype(np.float64)
    if A.flags.f_contiguous and not A.flags.c_contiguous:
        return _widened_columns(np.ascontiguousarray(A.T), x)
    return _widened_rows(np.ascontiguousarray(A), x)


@numba_njit
def _plain_blas(A, x):
    return _blas_matvec(A, x)


@numba_njit
def _transposed_blas(A, x):
    return _blas_matvec(A.T, x)


@numba_njit
def _plain_widened(A, x):
    return _widened_matvec(A, x)


@numba_njit
def _transposed_widened(A, x):
    return _widened_matvec(A.T, x)


#: (transposed, narrow matrix) -> the numba function and its cache version.
_NUMBA_FORMS = {
    (False, False): (_plain_blas, 1),
    (True, False): (_transposed_blas, 1),
    (False, True): (_plain_widened, 2),
    (True, True): (_transposed_widened, 2),
}


@register_funcify_default_op_cache_key(MatVec)
def _numba_matvec(op: MatVec, node, **kwargs):
    widened = (node.inputs[0].type.dtype in NARROW_TYPES
               and node.outputs[0].type.dtype == "float64")  # fmt: skip
    return _NUMBA_FORMS[(op.transposed, widened)]


def matvec(A, x) -> pt.TensorVariable:
    """``A @ x`` for a (data) matrix ``A`` and a vector ``x``; its gradient in ``x`` is
    ``A.T @ g``, both BLAS products under numba (module docstring)."""
    return MatVec(False)(A, x)


def _integral(values: np.ndarray) -> bool:
    return bool(np.array_equal(values, np.round(values)))


def narrow(A: np.ndarray, scales=(1, 2, 4, 8)) -> tuple[np.ndarray, float]:
    """``(B, f)`` with ``A == f * B`` exactly and ``B`` as narrow as that allows: int8 or
    int16 where ``A`` times one of ``scales`` (ascending powers of two, so the scaling is
    exact) is integral and small enough (``f`` its inverse), else float32 where every entry
    is exactly a float32, else ``A`` itself (``f = 1``)."""
    A = np.asarray(A)
    if A.dtype != np.float64:
        return A, 1.0
    # a few thousand entries turn continuous data away before any pass over all of A; where
    # the largest scale leaves a fraction (or a NaN) no smaller one makes A integral
    sample = A.ravel()[:: max(1, A.size // 4096)]
    if _integral(sample * scales[-1]) and _integral(A * scales[-1]):
        for scale in scales:  # the smallest that makes A integral (the last one does)
            B = A * scale
            if _integral(B):
                break
        for dtype in (np.int8, np.int16):  # the range check also turns away infinities
            info = np.iinfo(dtype)
            if B.size == 0 or (B.min() >= info.min and B.max() <= info.max):
                return B.astype(dtype), 1.0 / scale
    if not np.array_equal(sample.astype(np.float32), sample):
        return A, 1.0
    single = A.astype(np.float32)
    return (single, 1.0) if np.array_equal(single, A) else (A, 1.0)
