"""Finished SBC simulations: the tidy table, uniformity per parameter, ArviZ form, plots."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
from scipy import stats

from ..files import atomic_path
from .config import SBCConfig
from .ranks import default_bins, ecdf_band, uniformity_test
from .store import CONFIG_FILE, SBCStore

__all__ = ["SBCResult", "load_sbc"]

COLUMNS = ("simulation", "parameter", "truth", "rank", "max_rank", "divergences",
           "max_r_hat", "min_ess_bulk", "seconds")  # fmt: skip


def _panels(
    names: Sequence[str], path: str | os.PathLike, draw: Callable, title: str | None = None
) -> Path:
    """One small panel per parameter, ``draw(ax, name)`` in each, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ncol = min(4, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        draw(ax, name)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


@dataclass(frozen=True)
class SBCResult:
    """Finished SBC simulations.

    Attributes
    ----------
    table : pandas.DataFrame
        Tidy: one row per simulation and parameter with ``simulation, parameter, truth,
        rank, max_rank, divergences, max_r_hat, min_ess_bulk, seconds``.
    config : SBCConfig
    """

    table: pd.DataFrame
    config: SBCConfig

    @property
    def n_simulations(self) -> int:
        """Number of finished simulations."""
        return int(self.table["simulation"].nunique())

    @property
    def parameters(self) -> list[str]:
        """Ranked parameters, in the order of the results."""
        return list(dict.fromkeys(self.table["parameter"]))

    def diagnostics(self) -> pd.DataFrame:
        """Per-fit diagnostics, one row per simulation."""
        cols = ["simulation", "divergences", "max_r_hat", "min_ess_bulk", "seconds"]
        return self.table[cols].drop_duplicates("simulation").reset_index(drop=True)

    def ranks(self) -> pd.DataFrame:
        """Wide table of ranks: simulations x parameters."""
        wide = self.table.pivot(index="simulation", columns="parameter", values="rank")
        return wide[self.parameters]

    def uniformity(
        self, *, prob: float = 0.95, parameters: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """:func:`uniformity_test` for every parameter, at family-wise level ``prob``.

        Each parameter is tested at ``1 - (1 - prob) / m`` for ``m`` parameters (Bonferroni),
        so a calibrated model passes all of them with probability at least ``prob``.
        """
        names = list(parameters) if parameters is not None else self.parameters
        per = 1.0 - (1.0 - prob) / len(names)
        wide = self.ranks()
        rows = []
        for name in names:
            res = uniformity_test(wide[name].dropna().astype(int), self.config.max_rank, prob=per)
            rows.append({"parameter": name, **res})
        return pd.DataFrame(rows)

    def to_inference_data(self) -> az.InferenceData:
        """ArviZ form: groups ``ranks`` and ``truth`` (one chain, draw = simulation) and
        ``sample_stats`` with the per-fit diagnostics; ``attrs["max_rank"]``."""
        wide = self.ranks()
        truth = self.table.pivot(index="simulation", columns="parameter", values="truth")
        diag = self.diagnostics().set_index("simulation").loc[wide.index]

        def as_dataset(frame: pd.DataFrame):
            data = {str(c): frame[c].to_numpy()[None, :] for c in frame.columns}
            return az.dict_to_dataset(data, coords={"draw": wide.index.to_numpy()})

        idata = az.InferenceData(
            truth=as_dataset(truth[self.parameters]),
            ranks=as_dataset(wide),
            sample_stats=as_dataset(diag),
        )
        idata.attrs["max_rank"] = self.config.max_rank
        return idata

    def plot_ecdf(self, path: str | os.PathLike, *, prob: float = 0.95) -> Path:
        """ECDF-difference plot (ECDF minus uniform CDF) of every parameter's ranks with its
        simultaneous ``1 - (1 - prob) / m`` band, written to ``path``."""
        names = self.parameters
        per = 1.0 - (1.0 - prob) / len(names)
        wide = self.ranks()
        k, z, lower, upper = ecdf_band(len(wide), self.config.max_rank, per, 100)

        def draw(ax, name: str) -> None:
            r = wide[name].to_numpy(dtype=int)
            ecdf = (r[None, :] < k[:, None]).mean(axis=1)
            ax.fill_between(z, lower - z, upper - z, step="mid", color="C0", alpha=0.25)
            inside = (ecdf >= lower) & (ecdf <= upper)
            ax.step(z, ecdf - z, where="mid", color="C0" if inside.all() else "C3")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xlabel("fractional rank")

        title = f"SBC: ECDF - uniform, {len(wide)} simulations, {per:.4f} simultaneous bands"
        return _panels(names, path, draw, title)

    def plot_histograms(self, path: str | os.PathLike, *, n_bins: int | None = None) -> Path:
        """Rank histograms with the 99% range of a bin count under uniformity."""
        wide, L = self.ranks(), self.config.max_rank
        n = len(wide)
        n_bins = n_bins or default_bins(n, L)
        edges = np.linspace(0, L + 1, n_bins + 1)
        lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / n_bins)

        def draw(ax, name: str) -> None:
            ax.hist(wide[name].to_numpy(), bins=edges, color="C0", alpha=0.8)
            ax.axhspan(lo, hi, color="grey", alpha=0.25)
            ax.axhline(n / n_bins, color="k", lw=0.5)
            ax.set_xlabel(f"rank (0..{L})")

        return _panels(self.parameters, path, draw)


def load_sbc(directory: str | os.PathLike, *, n_simulations: int | None = None) -> SBCResult:
    """Read the finished simulations of an SBC run (those below ``n_simulations`` if given).

    Raises
    ------
    ValueError
        If the directory holds no SBC run, or a result file is corrupted (the error names it).
    """
    store = SBCStore(directory)
    config = store.config()
    if config is None:
        raise ValueError(f"directory {str(directory)!r} holds no SBC run (no {CONFIG_FILE})")
    indices = store.finished()
    if n_simulations is not None:
        indices = [i for i in indices if i < n_simulations]
    rows = []
    for i in indices:
        res = store.read(i)
        for name, rank in res["ranks"].items():
            rows.append(
                {
                    "simulation": int(res["index"]),
                    "parameter": name,
                    "truth": float(res["truth"][name]),
                    "rank": int(rank),
                    "max_rank": int(res["max_rank"]),
                    **res["diagnostics"],
                    "seconds": float(res.get("seconds", np.nan)),
                }
            )
    return SBCResult(table=pd.DataFrame(rows, columns=list(COLUMNS)), config=config)
