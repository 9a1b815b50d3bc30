"""NUTS on a built model: one sampler configuration, nutpie or PyMC, and diagnostics.

:class:`SamplerConfig` is validated once, where it is made, and used as it is by
:func:`lmm_pymc.fit`, SBC, the Stan cross-check and the command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

import arviz as az
import numpy as np

from .checks import choice, non_negative_int, positive_int, probability

__all__ = [
    "DEFAULT_TARGET_ACCEPT",
    "NUTPIE_DEFAULTS",
    "SAMPLERS",
    "Diagnostics",
    "SamplerConfig",
    "SamplingWarning",
    "compile_model",
    "diagnose",
    "sample_compiled",
    "sample_model",
]

#: NUTS implementations; the first is the default. nutpie (Rust NUTS on a numba-compiled
#: log density) takes ~1/10 of PyMC's time per draw on these models
#: (``benchmarks/benchmark.py``).
SAMPLERS: tuple[str, ...] = ("nutpie", "pymc")

#: NUTS target acceptance rate per parametrization when ``target_accept=None``. The
#: marginal posterior keeps a mild funnel between the fixed effects and the group sds
#: when there are few groups (3 in the tutorial): at 0.95 about one draw in 4000 diverges,
#: at 0.99 none did in 6 sampler seeds, and a draw still costs well under a millisecond.
DEFAULT_TARGET_ACCEPT: Mapping[str, float] = MappingProxyType(
    {"marginal": 0.99, "cholesky": 0.95, "lkj_corr": 0.95}
)

#: With at least this many levels in every factor the marginal posterior has no funnel left
#: and ``marginal`` defaults to :data:`MANY_GROUPS_TARGET_ACCEPT`: at 0.9 fits of 10, 30,
#: 100 and 1000 groups had no divergence in 2 seeds each and took 6 leapfrog steps per
#: draw where 0.99 took 14-20 (same ESS), and a 10^4-group fit 21 where 0.99 took 72.
#: Crossed (subjects x items, one integrated, the other sampled non-centred): 30 x 20 in 3
#: seeds, 60 x 25 and 1000 x 100 in 2: no divergence at 0.9, 15-19 steps per draw where
#: 0.99 took 72-104 at a lower min bulk ESS.
MANY_GROUPS = 20
MANY_GROUPS_TARGET_ACCEPT = 0.9

#: nutpie options per parametrization, under the user's ``sampler_kwargs``. The marginal
#: posterior has few, correlated parameters: nutpie's low-rank mass matrix update raised
#: the minimum bulk ESS per second ~1.6x on 1000 groups (benchmarks/benchmark.py).
NUTPIE_DEFAULTS: Mapping[str, Mapping[str, object]] = MappingProxyType(
    {"marginal": MappingProxyType({"low_rank_modified_mass_matrix": True})}
)

#: Parametrizations to suggest on divergences, best-behaved first.
_FASTER = ("marginal", "cholesky")


class SamplingWarning(UserWarning):
    """Divergences or unconverged chains: the posterior draws may not be trustworthy."""


@dataclass(frozen=True)
class SamplerConfig:
    """How to run NUTS; validated when made.

    Parameters
    ----------
    draws, tune, chains : int
        Posterior draws and tuning steps per chain (``tune`` may be 0), number of chains.
    cores : int, optional
        Chains run in parallel on this many processes (PyMC) or threads (nutpie); default
        ``min(chains, available CPUs)`` for PyMC (its own default halves the CPU count) and
        nutpie's own default (all CPUs).
    target_accept : float, optional
        NUTS target acceptance rate in (0, 1); higher means smaller steps, fewer
        divergences. Default :data:`DEFAULT_TARGET_ACCEPT` of the parametrization: 0.99 for
        ``marginal`` (0.9 when every factor has >= :data:`MANY_GROUPS` levels), 0.95 for
        the others.
    sampler : {"nutpie", "pymc"}
        nutpie's NUTS (the default: Rust, on a numba-compiled log density; a few seconds of
        compilation, then ~10x PyMC's speed) or PyMC's own NUTS.
    random_seed : int, optional
        Seed of the sampler (and of the exact random-effect draws of ``marginal``).
    progressbar : bool
        Show a progress bar while sampling.
    sampler_kwargs : mapping, optional
        Further options of ``pymc.sample`` (e.g. ``init="jitter+adapt_full"``) or
        ``nutpie.sample`` (e.g. ``low_rank_modified_mass_matrix=False``); with nutpie they
        update :data:`NUTPIE_DEFAULTS` of the parametrization.

    Examples
    --------
    >>> SamplerConfig(draws=500, chains=2).target_accept_for("marginal")
    0.99
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    cores: int | None = None
    target_accept: float | None = None
    sampler: str = SAMPLERS[0]
    random_seed: int | None = None
    progressbar: bool = True
    sampler_kwargs: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "draws", positive_int("draws", self.draws))
        set_(self, "tune", non_negative_int("tune", self.tune))
        set_(self, "chains", positive_int("chains", self.chains))
        if self.cores is not None:
            set_(self, "cores", positive_int("cores", self.cores))
        if self.target_accept is not None:
            set_(self, "target_accept", probability("target_accept", self.target_accept))
        choice("sampler", self.sampler, SAMPLERS)
        if self.sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
            raise ValueError(
                "sampler='nutpie' needs the nutpie package, which is not installed; "
                "install it with `pip install nutpie` or use sampler='pymc'"
            )
        if self.random_seed is not None:
            set_(self, "random_seed", non_negative_int("random_seed", self.random_seed))
        if not isinstance(self.sampler_kwargs, Mapping):
            raise ValueError(
                f"sampler_kwargs must be a mapping of option names to values, found "
                f"{type(self.sampler_kwargs).__name__}"
            )
        set_(self, "sampler_kwargs", MappingProxyType(dict(self.sampler_kwargs)))
        set_(self, "progressbar", bool(self.progressbar))

    @classmethod
    def from_options(cls, config: SamplerConfig | None = None, **options: object) -> SamplerConfig:
        """``config`` updated by keyword ``options`` (field names), or a new configuration.

        Raises
        ------
        ValueError
            On an unknown option name.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"sampler options must be among {sorted(known)}, found unknown {unknown}"
            )
        if config is None:
            return cls(**options)
        if not isinstance(config, SamplerConfig):
            raise ValueError(
                f"sampling must be a lmm_pymc.SamplerConfig, found {type(config).__name__}"
            )
        return replace(config, **options) if options else config

    def target_accept_for(self, parametrization: str, n_groups: int | None = None) -> float:
        """``target_accept``, or the parametrization's default when it is None
        (:data:`MANY_GROUPS_TARGET_ACCEPT` for ``marginal`` when ``n_groups``, the fewest
        levels of any factor, is >= :data:`MANY_GROUPS`)."""
        if self.target_accept is not None:
            return self.target_accept
        if parametrization == "marginal" and n_groups is not None and n_groups >= MANY_GROUPS:
            return MANY_GROUPS_TARGET_ACCEPT
        return DEFAULT_TARGET_ACCEPT.get(parametrization, 0.95)

    def kwargs_for(self, parametrization: str) -> dict[str, object]:
        """Sampler options: nutpie's defaults of the parametrization under the user's."""
        base = NUTPIE_DEFAULTS.get(parametrization, {}) if self.sampler == "nutpie" else {}
        return {**base, **self.sampler_kwargs}

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["sampler_kwargs"] = dict(self.sampler_kwargs)
        return out


def sample_model(
    model, config: SamplerConfig, parametrization: str, n_groups: int | None = None
) -> az.InferenceData:
    """Run NUTS on a PyMC model as ``config`` says; PyMC-shaped InferenceData either way
    (nutpie's unconstrained values dropped, ``posterior.attrs["sampling_time"]`` and
    ``["target_accept"]`` set).
    ``n_groups``: the fewest levels of any factor of a ``marginal`` model (default
    target_accept)."""
    if config.sampler == "pymc":
        import pymc as pm

        cores = config.cores or max(1, min(config.chains, len(os.sched_getaffinity(0))))
        with model:
            idata = pm.sample(
                draws=config.draws,
                tune=config.tune,
                chains=config.chains,
                cores=cores,
                target_accept=config.target_accept_for(parametrization, n_groups),
                random_seed=config.random_seed,
                progressbar=config.progressbar,
                compute_convergence_checks=False,
                **config.kwargs_for(parametrization),
            )
    else:
        idata = sample_compiled(compile_model(model), config, parametrization, n_groups)
    idata.posterior.attrs["target_accept"] = config.target_accept_for(parametrization, n_groups)
    return idata


#: nutpie-compiled models of this process by structure (:func:`compile_model`), newest last.
_COMPILED: OrderedDict[str, tuple[object, object]] = OrderedDict()
#: How many structures :func:`compile_model` keeps compiled.
COMPILED_LIMIT = 16
_COMPILED_LOCK = threading.Lock()


def model_structure(model) -> str:
    """A key that two PyMC models share exactly when one compiled log density computes both,
    given each its own values of the shared data (``pm.Data``): the printed graph of the
    log density and of every deterministic, with types, plus every constant's bytes (so
    that no two differing constants can share a key however they print), the variables'
    dims, the names of the coords, the free variables' shapes and the lengths of the dims
    they and the deterministics use (random generators' addresses left out)."""
    import pytensor
    from pytensor.graph.basic import Constant

    try:  # its home in newer PyTensor; importing it from the old one warns
        from pytensor.graph.traversal import ancestors
    except ImportError:
        from pytensor.graph.basic import ancestors

    outputs = [model.logp(), *model.deterministics]
    digest = hashlib.sha256()
    text = pytensor.dprint(outputs, file="str", print_type=True)
    # random generators print with their address, which differs between equal models
    digest.update(re.sub(r" at 0x[0-9a-fA-F]+", "", text).encode())
    for var in ancestors(outputs):
        if isinstance(var, Constant):
            data = np.asarray(var.data)
            digest.update(f"{data.dtype}{data.shape}".encode() + data.tobytes())
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
# wrappers hold the graph function as a closure constant, which numba cannot keep on disk:
# every process paid ~8 s of numba compile for them, even with PyTensor's graph function in
# its on-disk cache. The wrappers below take the same user data (nutpie's record of
# pointers to the shared values, so ``with_data`` works unchanged) and are written as source
# keyed by the graph function's PyTensor cache key, so that numba keeps them on disk too.

#: The C signatures nutpie calls: logp(dim, x, grad, logp, user_data) and
#: expand(dim, n_expanded, x, expanded, user_data), 0 on success.
_LOGP_SOURCE = """
def lmm_pymc_logp(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    x = numba.carray(x_, ({n_dim},))
    out = numba.carray(out_, ({n_dim},))
    logp = numba.carray(logp_, ())
    shared = numba.carray(user_data_, (), RECORD)[()]["shared"]
{extract}
    try:
        logp_val, grad = inner(x{args})
    except Exception:  # noqa: BLE001
        return 1
    logp[()] = logp_val
    for i in range({n_dim}):
        out[i] = grad[i]
        if not np.isfinite(grad[i]):
            return 3
    if not np.isfinite(logp_val):
        return 4
    return 0
"""
_EXPAND_SOURCE = """
def lmm_pymc_expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    x = numba.carray(x_, ({n_dim},))
    out = numba.carray(out_, ({n_expanded},))
    shared = numba.carray(user_data_, (), RECORD)[()]["shared"]
{extract}
    try:
        (values,) = inner(x{args})
    except Exception:  # noqa: BLE001
        return -2
    for i in range({n_expanded}):
        out[i] = values[i]
    return 0
"""
# (only the graph function's call sits in the try block: with the copy loop inside it too,
# numba took 15.5 s instead of 3.9 s to compile the tutorial's wrapper)


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


def _c_wrapper(template: str, name: str, inner, shared: Mapping[str, np.ndarray], record,
               **sizes: int):  # fmt: skip
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
    source = template.format(extract="\n".join(extract), args=args, **sizes)
    inner_key = CACHED_SRC_FUNCTIONS.get(inner.py_func)
    key = None
    if inner_key is not None:
        text = "\n".join([source, str(record), *(str(v.dtype) for v in shared.values()),
                          inner_key, numba.__version__])  # fmt: skip
        key = hashlib.sha256(text.encode()).hexdigest()
    function = compile_numba_function_src(source, name, env, cache_key=key)
    c_sig = numba.types.int64(numba.types.uint64, *(
        (numba.types.uint64,) if name == "lmm_pymc_expand" else ()),
        numba.types.CPointer(numba.types.double), numba.types.CPointer(numba.types.double),
        *((numba.types.CPointer(numba.types.double),) if name == "lmm_pymc_logp" else ()),
        numba.types.voidptr)  # fmt: skip
    return numba.cfunc(c_sig, cache=key is not None)(function)


def _nutpie_compile(model):
    """``nutpie.compile_pymc_model(model)`` (numba backend) with :func:`_c_wrapper`'s
    cacheable wrappers; nutpie's own compile where its internals differ from those this
    was written for (nutpie 0.16)."""
    import nutpie
    import nutpie.compile_pymc as ncp
    from pymc.initial_point import make_initial_point_fn

    internals = ("_make_functions", "_prepare_dims_and_coords", "_wrap_with_lock",
                 "make_user_data", "CompiledPyMCModel")  # fmt: skip
    if not all(hasattr(ncp, name) for name in internals):
        return nutpie.compile_pymc_model(model)
    initial_point = ncp._wrap_with_lock(
        make_initial_point_fn(model=model, jitter_rvs=set(model.free_RVs),
                              default_strategy="support_point", return_transformed=True)
    )  # fmt: skip
    n_dim, n_expanded, logp_fn, expand_fn, initial_point_fn, shape_info = ncp._make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=True,
        pymc_initial_point_fn=initial_point, var_names=None,
    )  # fmt: skip
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

    logp_c = _c_wrapper(_LOGP_SOURCE, "lmm_pymc_logp", logp_fn.vm.jit_fn, shared_of(logp_fn),
                        user_data.dtype, n_dim=n_dim)  # fmt: skip
    expand_c = _c_wrapper(_EXPAND_SOURCE, "lmm_pymc_expand", expand_fn.vm.jit_fn,
                          shared_of(expand_fn), user_data.dtype, n_dim=n_dim,
                          n_expanded=n_expanded)  # fmt: skip
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


def sample_compiled(
    compiled, config: SamplerConfig, parametrization: str, n_groups: int | None = None
) -> az.InferenceData:
    """nutpie's NUTS on an already compiled model (``nutpie.compile_pymc_model``, possibly
    with other data swapped in by ``compiled.with_data``), as :func:`sample_model` does."""
    import nutpie

    extra = config.kwargs_for(parametrization)
    if config.cores is not None:
        extra = {"cores": config.cores, **extra}
    start = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=config.draws,
        tune=config.tune,
        chains=config.chains,
        seed=np.random.SeedSequence(config.random_seed).entropy % 2**32,
        target_accept=config.target_accept_for(parametrization, n_groups),
        progress_bar=config.progressbar,
        **extra,
    )
    # nutpie also stores the unconstrained values (``sigma_log__``, ...); PyMC does not
    unconstrained = [v for v in idata.posterior.data_vars if str(v).endswith("__")]
    idata.posterior = idata.posterior.drop_vars(unconstrained)
    # seconds of tuning and sampling, under the attribute name PyMC uses
    idata.posterior.attrs["sampling_time"] = time.perf_counter() - start
    return idata


@dataclass(frozen=True)
class Diagnostics:
    """Sampler health: divergences after tuning, worst r_hat and smallest bulk ESS."""

    divergences: int
    max_r_hat: float
    min_ess_bulk: float
    worst_r_hat_parameter: str

    @property
    def ok(self) -> bool:
        """No divergences and r_hat <= 1.01 (r_hat is NaN, so unchecked, with one chain)."""
        return self.divergences == 0 and not self.max_r_hat > 1.01


#: The variables whose r_hat and ESS are checked by default: every model's scalars.
CHECKED: tuple[str, ...] = ("beta", "sigma", "sigs")


def diagnose(
    idata: az.InferenceData, *, warn: bool = True, var_names: Sequence[str] | None = None
) -> Diagnostics:
    """Count divergences and find the worst r_hat / bulk ESS (unrounded).

    With ``warn=True`` a :class:`SamplingWarning` names the problem and the fix to try.
    ``var_names`` are the variables checked (default ``beta``, ``sigma``, ``sigs``).
    """
    names = [v for v in (CHECKED if var_names is None else var_names) if v in idata.posterior]
    summary = az.summary(idata, var_names=names, kind="diagnostics", round_to="none")
    divergences = int(idata.sample_stats["diverging"].sum()) if "sample_stats" in idata else 0
    r_hat = summary["r_hat"].astype(float).dropna()  # r_hat needs >= 2 chains
    diag = Diagnostics(
        divergences=divergences,
        max_r_hat=float(r_hat.max()) if len(r_hat) else float("nan"),
        min_ess_bulk=float(summary["ess_bulk"].min()),
        worst_r_hat_parameter=str(r_hat.idxmax()) if len(r_hat) else "",
    )
    if warn and divergences:
        n_draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
        used = idata.attrs.get("parametrization")
        other = [p for p in _FASTER if p != used]
        switch = f", or parametrization={other[0]!r}" if other else ""
        warnings.warn(
            f"{divergences} divergent transitions in {n_draws} draws: NUTS could not follow the "
            "posterior's geometry (typically the funnel of group sds near 0). Try "
            f"target_accept=0.99{switch}.",
            SamplingWarning,
            stacklevel=2,
        )
    if warn and diag.max_r_hat > 1.01:
        warnings.warn(
            f"r_hat = {diag.max_r_hat:.3f} > 1.01 for {diag.worst_r_hat_parameter}: the chains "
            "disagree. Try more tuning and draws (e.g. tune=2000, draws=2000) or more chains.",
            SamplingWarning,
            stacklevel=2,
        )
    return diag
