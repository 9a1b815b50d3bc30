"""Compile once: a model's compiled log density, reused by every model of its structure.

The data flow is formula + data -> design -> PyMC model -> **compiled log density** ->
sampling. Every number of a model built by :func:`lmm_pymc.build_model` (data, per-group
sums, prior hyperparameters) is a model input (:func:`packed_input`), so one compiled log
density serves every data set of the same structure: :func:`compile_model` keeps nutpie's
compiled model per structure (:func:`model_structure`) in the process and swaps each new
model's values in, and the compiled C functions nutpie calls are written so that numba
keeps them on disk for later processes (:func:`_c_wrapper`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

__all__ = [
    "COMPILED_LIMIT",
    "compile_model",
    "last_compiled",
    "model_structure",
    "packed_input",
    "probe_blas",
    "register_numba_positive_definite",
]


def probe_blas() -> str:
    """PyTensor's BLAS link flags, found by PyTensor's own probe (or the user's setting),
    without the warning the probe prints where it finds none.

    pip's PyTensor finds no system BLAS on most machines and warns that "operations that
    might benefit from BLAS will be severely degraded". The package's compiled log densities
    do not use PyTensor's C BLAS: nutpie's are numba functions, whose matrix products call
    the BLAS that SciPy ships. The probe still runs wherever a graph rewrite asks for the
    flags (a sparse product's rewrite does, even for numba), so it is run here once,
    quietly; its result is the same value PyTensor would have used, so PyTensor's C
    backend (``sampler="pymc"``) links to a BLAS wherever one is installed.
    """
    import warnings

    import pytensor

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        return str(pytensor.config.blas__ldflags)


# ------------------------------------------------------------------ numba for every op
_POSDEF_LOCK = threading.Lock()


def register_numba_positive_definite() -> None:
    """Give PyMC's positive-definiteness check (``PosDefMatrix``, in ``pm.LKJCorr``'s log
    density) a numba implementation: without one numba runs its Python ``perform`` in object
    mode, a Python call in every gradient, and says so in a warning. The check is a Cholesky
    factorisation that stops at the first pivot that is not > 0 (NaN included), the test
    ``numpy.linalg.cholesky`` makes in PyMC's own ``perform``. Idempotent."""
    from pymc.distributions.multivariate import PosDefMatrix
    from pytensor.link.numba.dispatch import basic as numba_basic

    with _POSDEF_LOCK:
        if PosDefMatrix in numba_basic.numba_funcify.registry:
            return

        @numba_basic.register_funcify_default_op_cache_key(PosDefMatrix)
        def _positive_definite(op, node=None, **kwargs):  # noqa: ARG001
            @numba_basic.numba_njit
            def is_positive_definite(x):
                n = x.shape[0]
                L = np.zeros((n, n))
                for j in range(n):
                    pivot = x[j, j]
                    for k in range(j):
                        pivot -= L[j, k] * L[j, k]
                    if not pivot > 0.0:
                        return np.array(False)
                    L[j, j] = np.sqrt(pivot)
                    for i in range(j + 1, n):
                        v = x[i, j]
                        for k in range(j):
                            v -= L[i, k] * L[j, k]
                        L[i, j] = v / L[j, j]
                return np.array(True)

            return is_positive_definite, 1


# ------------------------------------------------------------------ model inputs
# nutpie's compiled log density reads every pm.Data through its own extraction code, whose
# numba compile grows with the number of inputs: the model's numbers enter as a few packed
# inputs (docs/measurements.md).
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def packed_input(name: str, value, *, rows: bool = False):
    """``value`` as a part of the ``pm.Data`` ``name`` of the model being built.

    ``rows=False``: the parts are the entries of one vector, in the order of the calls, and
    ``value`` comes back as its slice with ``value``'s shape (which the model's structure
    must fix: prior hyperparameters, cross-products of the sampled coefficients).
    ``rows=True``: the parts are the rows of one matrix and must share one length (per-group
    columns, whose length is the data's, not the structure's); ``value`` comes back as its
    row. A later model of the same structure then has the same inputs with its own values
    (:func:`compile_model`).
    """
    import pymc as pm

    model = pm.modelcontext(None)
    value = np.asarray(value, dtype=float)
    packs = _PACKED.setdefault(model, {})
    var, parts = packs.get(name, (None, []))
    if rows and parts and value.shape != parts[0].shape:
        raise ValueError(
            f"the rows of input {name!r} must share one shape, found {value.shape} after "
            f"{parts[0].shape}"
        )
    parts.append(value)
    full = np.stack(parts) if rows else np.concatenate([p.ravel() for p in parts])
    if var is None:
        var = pm.Data(name, full)
        packs[name] = (var, parts)
    else:
        var.set_value(full)
    if rows:
        return var[len(parts) - 1]
    start = full.size - value.size
    if value.ndim == 0:
        return var[start]
    return var[start : start + value.size].reshape(value.shape)


#: nutpie-compiled models of this process by structure (:func:`compile_model`), newest last.
_COMPILED: OrderedDict[str, tuple[object, object]] = OrderedDict()
#: How many structures :func:`compile_model` keeps compiled.
COMPILED_LIMIT = 16
_COMPILED_LOCK = threading.Lock()


def _op_text(node) -> str:
    """An apply node's op as text: its class and every property (``__props__``, which
    PyTensor's own op equality compares), or, for an op without properties (an
    ``OpFromGraph``), its printed graph with the inner graphs."""
    import pytensor

    op = node.op
    props = getattr(op, "__props__", None)
    if props is None:
        return pytensor.dprint(node.outputs, file="str", print_type=True, print_op_info=True)
    values = ",".join(f"{p}={getattr(op, p)!r}" for p in props)
    return f"{type(op).__module__}.{type(op).__qualname__}({values})"


def _graph_text(outputs) -> str:
    """The graph of ``outputs`` as text, node by node in topological order: each node's op
    (:func:`_op_text`), its inputs by position and its outputs' types; a root variable by
    its type and name, a constant by its type and bytes. A tenth of the time of
    ``pytensor.dprint`` (docs/measurements.md)."""
    from pytensor.graph.basic import Constant

    try:  # its home in newer PyTensor; importing it from the old one warns
        from pytensor.graph.traversal import io_toposort
    except ImportError:
        from pytensor.graph.basic import io_toposort

    ids: dict = {}
    lines = []

    def ref(var) -> int:
        if var not in ids:
            ids[var] = len(ids)
            if isinstance(var, Constant):
                data = np.asarray(var.data)
                text = f"{data.dtype}{data.shape}{hashlib.sha256(data.tobytes()).hexdigest()}"
            else:
                text = var.name
            lines.append(f"v{ids[var]}={var.type}:{text}")
        return ids[var]

    for node in io_toposort([], outputs):
        inputs = [ref(v) for v in node.inputs]
        lines.append(f"{_op_text(node)}{inputs}->{[str(o.type) for o in node.outputs]}")
        for out in node.outputs:
            ids[out] = len(ids)
    lines.append(f"out{[ref(o) for o in outputs]}")
    # random generators print with their address, which differs between equal models
    return re.sub(r" at 0x[0-9a-fA-F]+", "", "\n".join(lines))


def model_structure(model) -> str:
    """A key that two PyMC models share exactly when one compiled log density computes both,
    given each its own values of the shared data (``pm.Data``): the graph of the log density
    and of every deterministic (:func:`_graph_text`: ops with their properties, types,
    every constant's bytes), the variables' dims, the names of the coords, the free
    variables' shapes and the lengths of the dims they and the deterministics use."""
    outputs = [model.logp(), *model.deterministics]
    digest = hashlib.sha256(_graph_text(outputs).encode())
    digest.update(repr(sorted(model.named_vars_to_dims.items())).encode())
    digest.update(repr(sorted(model.coords)).encode())
    # the sampled vector's length and the stored variables' shapes are fixed at compile
    shapes = model.eval_rv_shapes()
    digest.update(repr(sorted((v.name, tuple(shapes[v.name])) for v in model.free_RVs)).encode())
    dims = model.named_vars_to_dims
    used = sorted({d for v in [*model.free_RVs, *model.deterministics]
                   for d in dims.get(v.name, ()) if d is not None})  # fmt: skip
    digest.update(repr([(d, len(model.coords[d])) for d in used if d in model.coords]).encode())
    return digest.hexdigest()


# ------------------------------------------------------------------ compiled log density
# nutpie calls two C functions, the log density with its gradient and the expansion into
# stored values, each a numba cfunc around PyTensor's numba function of the graph. Its own
# wrappers hold the graph function as a closure constant, which numba cannot keep on disk,
# so every process compiled them again (docs/measurements.md). The wrappers below take the same user data (nutpie's record of
# pointers to the shared values, so ``with_data`` works unchanged) and are written as source
# keyed by the graph function's PyTensor cache key, so that numba keeps them on disk too.

#: The C signatures nutpie calls: logp(dim, x, grad, logp, user_data) and
#: expand(dim, n_expanded, x, expanded, user_data), 0 on success.
_LOGP_SOURCE = """
def lmm_pymc_logp(dim, x_, out_, logp_, user_data_):
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, ())
    shared = numba.carray(user_data_, (), RECORD)[()]["shared"]
{extract}
    try:
        logp_val, grad = inner(x{args})
    except Exception:  # noqa: BLE001
        return 1
    if grad.shape[0] != dim:
        return -1
    logp[()] = logp_val
    for i in range(dim):
        out[i] = grad[i]
        if not np.isfinite(grad[i]):
            return 3
    if not np.isfinite(logp_val):
        return 4
    return 0
"""
_EXPAND_SOURCE = """
def lmm_pymc_expand(dim, expanded, x_, out_, user_data_):
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (expanded,))
    shared = numba.carray(user_data_, (), RECORD)[()]["shared"]
{extract}
    try:
        (values,) = inner(x{args})
    except Exception:  # noqa: BLE001
        return -2
    if values.shape[0] != expanded:
        return -1
    for i in range(expanded):
        out[i] = values[i]
    return 0
"""
# (only the graph function's call sits in the try block: with the copy loop inside it too,
# numba compiles the wrapper four times slower: docs/measurements.md)


def _pointer_intrinsic():
    """numba intrinsic: an integer address as ``void*``."""
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def as_void_pointer(typingctx, address):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return types.voidptr(address), codegen

    return as_void_pointer


def _c_wrapper(template: str, name: str, c_sig, inner, shared: Mapping[str, np.ndarray],
               record):  # fmt: skip
    """numba cfunc of ``template`` around the graph function ``inner``, reading each shared
    value through nutpie's user-data record ``record``; kept in numba's on-disk cache under
    a key of the source, the record's layout and the graph function's PyTensor cache key
    (not cached when PyTensor gave that function no key: a wrong graph must never load)."""
    import numba
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    env = {"__name__": __name__, "numba": numba, "np": np, "RECORD": record, "inner": inner,
           "as_void_pointer": _pointer_intrinsic()}  # fmt: skip
    extract, args = [], ""
    for k, (var, value) in enumerate(shared.items()):
        shape = "".join(f"int(shared['shape']['{var}'][{d}]), " for d in range(value.ndim))
        env[f"DTYPE_{k}"] = value.dtype
        extract.append(
            f"    d{k} = numba.carray(as_void_pointer(shared['data']['{var}']), ({shape}),"
            f" DTYPE_{k})"
        )
        args += f", d{k}"
    source = template.format(extract="\n".join(extract), args=args)
    inner_key = CACHED_SRC_FUNCTIONS.get(inner.py_func)
    key = None
    if inner_key is not None:
        text = "\n".join([source, str(record), *(str(v.dtype) for v in shared.values()),
                          inner_key, numba.__version__])  # fmt: skip
        key = hashlib.sha256(text.encode()).hexdigest()
    function = compile_numba_function_src(source, name, env, cache_key=key)
    return numba.cfunc(c_sig, cache=key is not None)(function)


def _python_linked(initial_point):
    """PyMC's initial-point function, run with PyTensor's Python linker for the graphs it
    compiles on first call (an ``OpFromGraph``'s inner graph, e.g. the ``einsum`` of an LKJ
    draw, follows ``config.mode``, the C backend): a few 2 x 2 products per chain, where the
    C backend would compile new modules and look for a BLAS library that pip's PyTensor has
    no way to link (and warns about)."""
    import pytensor

    def run(seed, *args, **kwargs):
        with pytensor.config.change_flags(mode="FAST_COMPILE"):
            return initial_point(seed, *args, **kwargs)

    return run


def _freeze_constants(model) -> None:
    """Compute every graph constant's ``unique_value`` once, before any function of the
    model is compiled. PyTensor's rewrites compute it lazily and then mark the constant's
    data read-only; an initial-point function compiled earlier may hold a writeable view of
    that data (a constant-folded ``[0.]`` of a prior's ``loc``), which SciPy's broadcasting
    then fails to mark writeable ("cannot set WRITEABLE flag"): every chain's start fails.
    Seen with two correlated factors integrated out together."""
    from pytensor.tensor.variable import TensorConstant

    try:  # its home in newer PyTensor; importing it from the old one warns
        from pytensor.graph.traversal import ancestors
    except ImportError:
        from pytensor.graph.basic import ancestors

    outputs = [*model.basic_RVs, *model.potentials, *model.deterministics]
    for var in ancestors(outputs):
        if isinstance(var, TensorConstant):
            var.unique_value  # noqa: B018  (computed and cached, data read-only)


def _nutpie_compile(model):
    """``nutpie.compile_pymc_model(model)`` (numba backend) with :func:`_c_wrapper`'s
    cacheable wrappers; nutpie's own compile where its internals differ from those this
    was written for (nutpie 0.16)."""
    import nutpie
    import nutpie.compile_pymc as ncp
    import pytensor
    from numba import types
    from pymc.initial_point import make_initial_point_fn

    from .logdensity import make_functions

    internals = ("_compute_shapes", "_rv_dict_to_flat_array_wrapper", "_prepare_dims_and_coords",
                 "_wrap_with_lock", "make_user_data", "CompiledPyMCModel")  # fmt: skip
    if not all(hasattr(ncp, name) for name in internals):
        return nutpie.compile_pymc_model(model)
    _freeze_constants(model)
    initial_point = ncp._wrap_with_lock(_python_linked(
        make_initial_point_fn(model=model, jitter_rvs=set(model.free_RVs),
                              default_strategy="support_point", return_transformed=True)
    ))  # fmt: skip
    # the log density is compiled by numba (mode="NUMBA"); only the graphs compiled with the
    # default mode (nutpie's shape probe runs an initial-point function) use the Python linker
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        n_dim, n_expanded, logp_fn, expand_fn, initial_point_fn, shape_info = make_functions(
            model, initial_point)  # graphs free of the model's sizes  # fmt: skip
    shared_vars, shared_data = {}, {}
    for var in [*logp_fn.get_shared(), *expand_fn.get_shared()]:
        if var.name in shared_vars and shared_vars[var.name] is not var:
            raise ValueError(f"shared variables must have distinct names, found {var.name!r} twice")
        value = np.array(var.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_vars[var.name], shared_data[var.name] = var, value
    user_data = ncp.make_user_data(shared_vars, shared_data)

    def shared_of(fn) -> dict[str, np.ndarray]:
        return {v.name: shared_data[v.name] for v in fn.get_shared()}

    double = types.CPointer(types.double)
    logp_sig = types.int64(types.uint64, double, double, double, types.voidptr)
    expand_sig = types.int64(types.uint64, types.uint64, double, double, types.voidptr)
    logp_c = _c_wrapper(_LOGP_SOURCE, "lmm_pymc_logp", logp_sig, logp_fn.vm.jit_fn,
                        shared_of(logp_fn), user_data.dtype)  # fmt: skip
    expand_c = _c_wrapper(_EXPAND_SOURCE, "lmm_pymc_expand", expand_sig, expand_fn.vm.jit_fn,
                          shared_of(expand_fn), user_data.dtype)  # fmt: skip
    dims, coords = ncp._prepare_dims_and_coords(model, shape_info)
    return ncp.CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp_c, compiled_expand_func=expand_c,
        initial_point_func=initial_point_fn, shared_data=shared_data, user_data=user_data,
        n_expanded=n_expanded, shape_info=shape_info, logp_func=logp_fn, expand_func=expand_fn,
    )  # fmt: skip


def compile_model(model):
    """nutpie's compiled form of ``model``, compiled once per model structure and process.

    Every data set and prior hyperparameter of :func:`lmm_pymc.build_model` is ``pm.Data``:
    a later model of the same structure (:func:`model_structure`: same formula, number of
    fixed and random effects, prior families, zero pattern of the per-group sums ...)
    reuses the compiled log density with its own values swapped in (nutpie's
    ``with_data``), so repeated fits, SBC and benchmarks pay numba's compile once. The
    newest :data:`COMPILED_LIMIT` structures are kept. Not for models sampled from two
    threads at once (the compiled model's initial-point function reads the shared values).
    """
    import pandas as pd

    key = model_structure(model)
    values = {v.name: v.get_value() for v in model.data_vars}
    with _COMPILED_LOCK:
        cached = _COMPILED.get(key)
        if cached is None:
            compiled = _nutpie_compile(model)
            _COMPILED[key] = (model, compiled)
            while len(_COMPILED) > COMPILED_LIMIT:
                _COMPILED.popitem(last=False)
            return compiled
        _COMPILED.move_to_end(key)
        first, compiled = cached
        # the initial point is drawn by a function of the first model's shared variables
        for var in first.data_vars:
            var.set_value(values[var.name])
    coords = dict(compiled.coords or {})
    coords.update({k: pd.Index(v) for k, v in model.coords.items() if v is not None})
    swapped = compiled.with_data(**{k: v for k, v in values.items() if k in compiled.shared_data})
    return dataclasses.replace(swapped, _coords=coords)


def last_compiled():
    """The nutpie-compiled model that :func:`compile_model` compiled or reused last in this
    process, or None before its first call (e.g. for benchmarks: whether numba loaded its
    log density from the on-disk cache, ``last_compiled().compiled_logp_func.cache_hits``)."""
    with _COMPILED_LOCK:
        return next(reversed(_COMPILED.values()))[1] if _COMPILED else None
