"""Shared fixtures. Expensive objects (compiled Stan programs, fits) are session-scoped."""

from __future__ import annotations

import warnings

import pytest

import lmm_pymc

warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")


@pytest.fixture(scope="session")
def tutorial_sim() -> lmm_pymc.SimulatedData:
    """The tutorial's design (3 groups x 10, beta=(6, 4), sds 3 and 2, rho 0.7, sigma 1)."""
    return lmm_pymc.simulate(seed=2024)


#: Seed of the 30 x 20 data set. Chosen from the simulated data alone, before any fit: its
#: realized mean and sd of b and sd of the residuals lie within 1 standard error of the
#: true values (checked by tests/test_simulate.py::test_sim_30x20_is_typical), so a
#: recovery test on it tests the sampler, not the luck of the draw.
SEED_30X20 = 3


@pytest.fixture(scope="session")
def sim_30x20() -> lmm_pymc.SimulatedData:
    """30 groups x 20 rows, the tutorial's parameters: well identified group-level sds."""
    return lmm_pymc.simulate(n_groups=30, n_per_group=20, seed=SEED_30X20)
