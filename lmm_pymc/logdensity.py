"""The two graph functions nutpie calls (log density with gradient; the stored values), made
so that their compiled form does not depend on the sizes of the model's numbers.

nutpie's own ``_make_functions`` reads the sampled vector as a vector of static length and
every variable as a slice of it with constant bounds: the graph, and so PyTensor's cache key
of the compiled function, differ for every number of fixed effects, and every such model
compiled its log density anew (about 20-80 s of numba). Here the sampled vector has no
static length and its last variable (``beta`` in :func:`lmm_pymc.build_model`) is the rest
of it, ``x[start:]``: with the data and prior hyperparameters as inputs, one compiled log
density serves every number of fixed effects and groups of a model's kind (same random
terms, prior families, likelihood), in the process and, through numba's on-disk cache, in
later processes (docs/measurements.md).
"""

from __future__ import annotations

from math import prod

__all__ = ["make_functions"]


def _unraveled(model, joined, shapes):
    """Each free variable's value as a piece of the vector ``joined``: ``(names, slices,
    shapes, replacements)``; the last one (of one dimension or more, its leading length not
    1) is ``joined[start:]``, reshaped on its trailing dimensions only."""
    names, slices, var_shapes, replacements = [], [], [], {}
    count = 0
    free = list(model.free_RVs)
    for k, var in enumerate(free):
        value = model.rvs_to_values[var]
        shape = tuple(int(s) for s in shapes[value.name])
        length = prod(shape)
        names.append(value.name)
        var_shapes.append(shape)
        slices.append(slice(count, count + length))
        # a leading length of 1 stays static: the log density was rewritten with it
        # broadcastable (p = 1: an intercept only), and a piece of unknown length there
        # fails at run time
        if k == len(free) - 1 and shape and shape[0] != 1:
            piece = joined[count:]
            piece = piece if len(shape) == 1 else piece.reshape((-1, *shape[1:]))
        else:
            piece = joined[count : count + length].reshape(shape)
        replacements[value] = piece.astype(var.dtype)
        count += length
    return names, slices, var_shapes, replacements


def make_functions(model, initial_point):
    """``(n_dim, n_expanded, logp_fn, expand_fn, initial_point_fn, shape_info)`` as nutpie's
    ``nutpie.compile_pymc._make_functions(model, mode="NUMBA", compute_grad=True,
    join_expanded=True, ...)`` returns them, with graphs free of the model's sizes (module
    docstring). ``initial_point``: PyMC's initial-point function of the model."""
    import nutpie.compile_pymc as ncp
    import pytensor
    import pytensor.tensor as pt
    from pymc.pytensorf import compile as compile_pymc

    shapes = ncp._compute_shapes(model)
    rewrites = ["canonicalize", "stabilize"]
    if not model.check_bounds:
        rewrites.append("local_remove_check_parameter")
    logp = pytensor.graph.rewrite_graph(model.logp(), include=rewrites)
    joined = pt.dvector("_unconstrained_point")  # no static length
    names, slices, var_shapes, replacements = _unraveled(model, joined, shapes)
    # not strict: the pieces' types (no static length) replace the value variables' types;
    # the gradient then follows, with no static length in it either
    (logp,) = pytensor.clone_replace([logp], replacements, rebuild_strict=False)
    grad = pytensor.gradient.grad(logp, joined)
    with model:
        logp_fn = compile_pymc((joined,), (logp, grad), mode="NUMBA")
    n_dim = slices[-1].stop if slices else 0
    remaining = [v for v in model.unobserved_value_vars if v.name not in names]
    all_names, all_slices, all_shapes, count = list(names), list(slices), list(var_shapes), n_dim
    for var in remaining:
        shape = tuple(int(s) for s in shapes[var.name])
        all_names.append(var.name)
        all_shapes.append(shape)
        all_slices.append(slice(count, count + prod(shape)))
        count += prod(shape)
    expanded = pt.concatenate([joined, *(pt.as_tensor(v).ravel() for v in remaining)])
    (expanded,) = pytensor.clone_replace([expanded], replacements, rebuild_strict=False)
    with model:
        expand_fn = compile_pymc((joined,), [expanded], mode="NUMBA")
    initial_point_fn = ncp._rv_dict_to_flat_array_wrapper(initial_point, names=names,
                                                          shapes=var_shapes)  # fmt: skip
    return n_dim, count, logp_fn, expand_fn, initial_point_fn, (all_names, all_slices, all_shapes)
