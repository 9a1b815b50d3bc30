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


@pytest.fixture(scope="session")
def sim_30x20() -> lmm_pymc.SimulatedData:
    """30 groups x 20 rows, the tutorial's parameters: well identified group-level sds."""
    return lmm_pymc.simulate(n_groups=30, n_per_group=20, seed=7)
