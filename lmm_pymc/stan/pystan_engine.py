"""The PyStan engine: a Stan program built by PyStan 3 / httpstan.

httpstan ships a complete Stan toolchain in its wheel and so compiles offline (builds
cached in ``~/.cache/httpstan``). Its log density always drops constants
(``propto=True``); its gradient always includes the Jacobian of the transforms. Log
densities and gradients are evaluated in-process by httpstan's compiled module where it
can be imported, else by PyStan's HTTP calls. PyStan runs its own asyncio loop, so inside
Jupyter it needs ``nest_asyncio``. :meth:`PyStanEngine.sample` runs Stan's NUTS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import numpy as np

from ..errors import StanUnavailableError
from .engine import StanEngine, pystan_hint, stan_json
from .names import split_name
from .programs import parameters_block_names

__all__ = ["PyStanEngine"]


class PyStanEngine(StanEngine):
    """A Stan program built by PyStan 3 (offline Stan toolchain in the httpstan wheel).

    Parameters
    ----------
    program_code : str
        The Stan program.
    data : dict
        Its data dictionary.
    random_seed : int, optional
        Seed of the program's random number generator (``_rng`` generated quantities).
    """

    name = "pystan"

    def __init__(self, program_code: str, data: Mapping[str, object], random_seed: int = 1):
        try:
            import stan
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise StanUnavailableError(
                f"engine 'pystan' needs PyStan, which is not installed: {pystan_hint()}"
            ) from err
        _allow_nested_event_loop()
        self.model = stan.build(
            program_code, data=json.loads(stan_json(data)), random_seed=random_seed
        )
        self._all = list(self.model.constrained_param_names)
        declared = parameters_block_names(program_code)
        self._params = [n for n in self._all if split_name(n)[0] in declared]

    @property
    def param_names(self) -> list[str]:
        return list(self._params)

    @property
    def all_names(self) -> list[str]:
        return list(self._all)

    @property
    def _services(self):
        """httpstan's compiled module of this program, imported afresh at each use as
        httpstan's own HTTP views do (a module kept across the loading of other programs'
        modules was seen to run another program's code), or None."""
        return _httpstan_services(self.model.model_name)

    def log_density(self, theta_unc: np.ndarray, *, jacobian: bool = True) -> float:
        theta = np.asarray(theta_unc, dtype=float).tolist()
        services = self._services
        if services is not None:
            return float(services.log_prob(self.model.data, theta, jacobian))
        return float(self.model.log_prob(theta, adjust_transform=jacobian))

    def log_density_gradient(self, theta_unc: np.ndarray) -> tuple[float, np.ndarray]:
        # PyStan has no call that returns both: httpstan's log_prob_grad (the HTTP endpoint
        # and the C++ function behind it) evaluates stan::model::log_prob_grad, which computes
        # the log density, but returns only the gradient. Where httpstan's compiled module
        # imports, both calls run in-process without an HTTP round trip; else two round trips.
        theta = np.asarray(theta_unc, dtype=float).tolist()
        services = self._services
        if services is not None:
            lp = services.log_prob(self.model.data, theta, True)
            grad = services.log_prob_grad(self.model.data, theta, True)
            return float(lp), np.asarray(grad, dtype=float)
        grad = np.asarray(self.model.grad_log_prob(theta), dtype=float)
        return float(self.model.log_prob(theta, adjust_transform=True)), grad

    def _constrain_flat(self, theta_unc: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.constrain_pars(theta_unc.tolist()), dtype=float)

    def _unconstrain_flat(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        context = {k: v.tolist() for k, v in values.items()}
        return np.asarray(self.model.unconstrain_pars(context), dtype=float)

    def sample(self, draws: int, tune: int, chains: int) -> dict[str, np.ndarray]:
        """Stan's NUTS on this program, seeded by the ``random_seed`` it was built with
        (PyStan takes the seed in ``stan.build``, not in ``sample``).

        Returns
        -------
        dict of str to ndarray
            Every parameter, transformed parameter and generated quantity by Stan name,
            shape ``(chains, draws, *stan_shape)``.
        """
        fit = self.model.sample(num_chains=chains, num_samples=draws, num_warmup=tune)
        out = {}
        for name, dims in zip(self.model.param_names, self.model.dims, strict=True):
            # PyStan: (*stan_shape, draws * chains) with the chains interleaved, draw-major
            arr = np.asarray(fit[name]).reshape(*dims, draws * chains)
            arr = np.moveaxis(arr, -1, 0).reshape(draws, chains, *dims)
            out[name] = np.swapaxes(arr, 0, 1)
        return out


def _httpstan_services(model_name: str):
    """httpstan's compiled module of a built program (what its HTTP views call), or None
    where this httpstan does not expose it (then PyStan's HTTP calls are used)."""
    try:
        import httpstan.models

        return httpstan.models.import_services_extension_module(model_name)
    except Exception:  # noqa: BLE001 - a private API: any failure means "use HTTP"
        return None


def _allow_nested_event_loop() -> None:
    """PyStan runs its own asyncio loop; inside Jupyter (a running loop) that needs
    ``nest_asyncio.apply()``, as PyStan documents."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    try:
        import nest_asyncio
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise StanUnavailableError(
            "PyStan inside a running event loop (Jupyter) needs nest_asyncio: "
            "pip install nest_asyncio"
        ) from err
    nest_asyncio.apply()
