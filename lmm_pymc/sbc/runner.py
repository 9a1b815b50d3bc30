"""Running SBC: one simulation (:func:`run_one`) and many on Dask (:func:`run_sbc`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

import arviz as az
import numpy as np

from ..checks import positive_int
from ..errors import require
from ..sampling import SamplingWarning, diagnose
from ..simulation import Simulation
from .config import SBCConfig
from .prior import simulate_targets, true_values
from .ranks import posterior_draws, ranks_from_draws
from .results import SBCResult, load_sbc
from .store import SBCStore

__all__ = ["fit_seed", "fit_simulation", "run_one", "run_sbc"]


def _as_config(config: object) -> SBCConfig:
    if isinstance(config, SBCConfig):
        return config
    if isinstance(config, Mapping):
        return SBCConfig.from_dict(config)
    raise TypeError(
        f"config must be a lmm_pymc.SBCConfig or its dict, found {type(config).__name__}"
    )


def fit_seed(seed: int, index: int) -> int:
    """Sampler seed of simulation ``index``: from ``SeedSequence([seed, index, 1])``."""
    return int(np.random.SeedSequence([int(seed), int(index), 1]).generate_state(1)[0])


def fit_simulation(config: SBCConfig, sim: Simulation, seed: int) -> az.InferenceData:
    """Fit one simulated data set as ``config`` says (its family and link, its fitted prior,
    its parametrization), the sampler seeded by ``seed``.

    Through :func:`lmm_pymc.fit`, which builds the PyMC model of ``sim``; with nutpie its
    compiled log density is reused by every later simulation of the same design in the
    process (:func:`lmm_pymc.compiled.compile_model`), while PyMC's sampler compiles its
    functions for every fit. No pointwise groups (SBC needs the posterior only).
    ``marginal`` adds exact draws of the random effects, seeded by ``seed`` too. PyMC runs
    its chains in this process unless ``config.sampling.cores`` says otherwise (Dask
    workers are daemonic and one CPU each).
    """
    from ..fitting import fit

    sampling = replace(config.sampling, random_seed=int(seed))
    if sampling.sampler == "pymc" and sampling.cores is None:
        sampling = replace(sampling, cores=1)
    return fit(
        sim,
        parametrization=config.parametrization,
        priors=config.fit_priors,
        sampling=sampling,
        pointwise=False,
        family=config.family,
        link=config.link,
    )


def run_one(config: SBCConfig | Mapping, index: int) -> dict:
    """Run simulation ``index``: prior draw, simulate, fit, ranks and sampler diagnostics.

    Parameters
    ----------
    config : SBCConfig or dict
        The run's settings (a dict as from :meth:`SBCConfig.to_dict`, as sent to workers).
    index : int
        Simulation number; prior, data and sampler are seeded from ``(config.seed, index)``.

    Returns
    -------
    dict
        JSON-able: ``index, truth, ranks, max_rank, diagnostics, seconds``.
    """
    config = _as_config(config)
    start = time.perf_counter()
    targets, sim = simulate_targets(config, index)
    truth = true_values(targets)
    with warnings.catch_warnings():
        # per-fit diagnostics are stored in the result, not warned about
        warnings.simplefilter("ignore", SamplingWarning)
        idata = fit_simulation(config, sim, fit_seed(config.seed, index))
    diag = diagnose(idata, warn=False)
    draws = posterior_draws(idata, targets, config.thin)
    return {
        "index": int(index),
        "truth": truth,
        "ranks": ranks_from_draws(truth, draws),
        "max_rank": int(min(len(v) for v in draws.values())),
        "diagnostics": {
            "divergences": int(diag.divergences),
            "max_r_hat": float(diag.max_r_hat),
            "min_ess_bulk": float(diag.min_ess_bulk),
        },
        "seconds": time.perf_counter() - start,
    }


@contextlib.contextmanager
def _dask_client(workers: int | None, scheduler: str | None) -> Iterator[tuple[object, int]]:
    """A Dask client on a new ``LocalCluster`` (``workers`` single-threaded processes) or on
    the scheduler at ``scheduler``, and the number of workers; closed on exit."""
    distributed = require("dask.distributed", "dask", "run_sbc (simulations on Dask)")
    Client, LocalCluster = distributed.Client, distributed.LocalCluster

    if scheduler is not None:
        client = Client(scheduler)
        try:
            n = positive_int("workers", workers) if workers is not None else None
            yield client, n or max(1, len(client.scheduler_info()["workers"]))
        finally:
            client.close()
        return
    workers = positive_int("workers", workers or len(os.sched_getaffinity(0)))
    # dashboard on any free port: runs side by side do not collide
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster)
    try:
        yield client, workers
    finally:
        client.close()
        cluster.close()


def _submit_all(client, task, config: SBCConfig, todo: list[int], store: SBCStore,
                window: int, on_done: Callable[[], None]) -> None:  # fmt: skip
    """Submit ``todo`` with at most ``window`` in flight; write each result as it comes."""
    from dask.distributed import as_completed

    payload = config.to_dict()
    # task keys unique to this configuration: runs sharing a scheduler never mix results
    token = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def submit(i: int):
        return client.submit(task, payload, i, key=f"sbc-{i}-{token}", pure=False)

    queue = iter(todo)
    pending = as_completed()
    for i in queue:
        pending.add(submit(i))
        if pending.count() >= window:
            break
    for future in pending:
        result = future.result()
        future.release()
        store.write(result)
        on_done()
        nxt = next(queue, None)
        if nxt is not None:
            pending.add(submit(nxt))


def run_sbc(
    n_simulations: int,
    out: str | os.PathLike,
    config: SBCConfig | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    window: int | None = None,
    progressbar: bool = True,
    task: Callable[[dict, int], dict] = run_one,
) -> SBCResult:
    """Run (or resume) ``n_simulations`` SBC simulations on Dask distributed.

    Parameters
    ----------
    n_simulations : int
        Simulations ``0..n_simulations-1``; those already in ``out`` are not run again.
    out : path
        Directory of the run: ``config.json`` and one ``sim_<index>.json`` per simulation.
    config : SBCConfig, optional
        Default ``SBCConfig()``; on resume it must equal the stored one (default: the stored
        one).
    workers : int, optional
        Worker processes of the ``LocalCluster`` (one thread each); default: the CPUs
        available. With ``scheduler``, only sizes the default ``window``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``) to run on a cluster; the
        workers need ``lmm_pymc`` installed. Results come back to this process, which writes
        them, so the workers need no shared file system.
    window : int, optional
        At most this many simulations are submitted at a time (bounded memory on the
        scheduler and here); default ``2 * workers``.
    progressbar : bool
        Show a tqdm progress bar.
    task : callable
        ``task(config_dict, index) -> result dict``; the default :func:`run_one`. Must be
        importable by the workers.

    Returns
    -------
    SBCResult
        All finished simulations with index below ``n_simulations``.

    Raises
    ------
    ValueError
        If ``out`` holds a run with another configuration or a corrupted result file.
    TypeError
        If ``config`` is neither an :class:`SBCConfig` nor its dict.
    """
    from tqdm.auto import tqdm

    n_simulations = positive_int("n_simulations", n_simulations)
    if workers is not None:
        positive_int("workers", workers)
    store = SBCStore(out)
    config = _as_config(config) if config is not None else (store.config() or SBCConfig())
    store.prepare(config)
    done = set(store.finished())
    for i in sorted(done):
        try:
            store.read(i)
        except ValueError as err:  # truncated or garbage: never used, recomputed
            moved = store.set_aside(i)
            done.discard(i)
            warnings.warn(f"{err}; moved to {moved.name} and recomputed", UserWarning,
                          stacklevel=2)  # fmt: skip
    todo = [i for i in range(n_simulations) if i not in done]
    if todo:
        with _dask_client(workers, scheduler) as (client, n_workers):
            window = positive_int("window", window or 2 * n_workers)
            bar = tqdm(total=n_simulations, initial=len(done), disable=not progressbar,
                       desc="SBC")  # fmt: skip
            try:
                _submit_all(client, task, config, todo, store, window, lambda: bar.update(1))
            finally:
                bar.close()
    return load_sbc(out, n_simulations=n_simulations)
