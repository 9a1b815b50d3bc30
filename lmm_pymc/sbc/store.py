"""Storage of an SBC run: one JSON file per finished simulation, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..files import atomic_path
from .config import SBCConfig

__all__ = ["CONFIG_FILE", "RESULT_KEYS", "SBCStore"]

FILE_PREFIX = "sim_"
#: The run's settings, beside the results.
CONFIG_FILE = "config.json"
#: Keys every result file must hold (``seconds`` is optional).
RESULT_KEYS = ("index", "truth", "ranks", "max_rank", "diagnostics")


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    """``{"sampling": {"draws": 5}}`` -> ``{"sampling.draws": 5}``."""
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class SBCStore:
    """One JSON file per finished simulation in a directory, written atomically.

    ``sim_000012.json`` holds simulation 12. A result is first written to a temporary file
    in the same directory and then moved into place with :func:`os.replace`, so a reader
    (or a resumed run) sees either no file or a complete one, whatever kills the writer.
    ``config.json`` holds the run's :class:`SBCConfig`.

    Parameters
    ----------
    directory : path
        Directory of the run (created by :meth:`prepare`).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def path(self, index: int) -> Path:
        """File of simulation ``index``."""
        return self.directory / f"{FILE_PREFIX}{int(index):06d}.json"

    def _write_json(self, path: Path, payload: dict) -> None:
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            json.dump(payload, fh, indent=1)

    def prepare(self, config: SBCConfig) -> None:
        """Create the directory, store ``config`` or check it equals the stored one.

        Raises
        ------
        ValueError
            If the directory holds a run with another configuration (naming the fields).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f".{FILE_PREFIX}*.tmp*"):
            stale.unlink(missing_ok=True)  # partial writes of a killed run
        stored = self.config()
        if stored is None:
            self._write_json(self.directory / CONFIG_FILE, config.to_dict())
        elif stored != config:
            a, b = _flat(stored.to_dict()), _flat(config.to_dict())
            diff = {k: (a.get(k), b.get(k)) for k in {**a, **b} if a.get(k) != b.get(k)}
            raise ValueError(
                f"out directory {str(self.directory)!r} holds an SBC run with a different "
                f"configuration (field: (stored, requested)) {diff}; use a new directory or "
                "the stored settings to resume"
            )

    def config(self) -> SBCConfig | None:
        """The stored configuration, or None for a directory without a run."""
        path = self.directory / CONFIG_FILE
        if not path.exists():
            return None
        try:
            return SBCConfig.from_dict(self._read(path))
        except (TypeError, ValueError) as err:
            raise ValueError(f"SBC config file {str(path)!r} is not usable: {err}") from None

    def write(self, result: dict) -> Path:
        """Write one result (a :func:`lmm_pymc.sbc.run_one` dict) atomically."""
        path = self.path(result["index"])
        self._write_json(path, result)
        return path

    def _read(self, path: Path) -> dict:
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"SBC result file {str(path)!r} is corrupted (not valid JSON: {err}); "
                "delete it and re-run to redo that simulation"
            ) from None
        if not isinstance(data, dict):
            raise ValueError(
                f"SBC result file {str(path)!r} is corrupted: expected a JSON object, "
                f"found {type(data).__name__}"
            )
        return data

    def read(self, index_or_path: int | Path) -> dict:
        """One result, checked for its keys.

        Raises
        ------
        ValueError
            Naming the file, if it is not valid JSON or lacks a key.
        """
        path = self.path(index_or_path) if isinstance(index_or_path, int) else index_or_path
        data = self._read(path)
        missing = [k for k in RESULT_KEYS if k not in data]
        if missing:
            raise ValueError(
                f"SBC result file {str(path)!r} is corrupted: missing key(s) {missing}, "
                f"expected {list(RESULT_KEYS)}"
            )
        if set(data["ranks"]) != set(data["truth"]):
            raise ValueError(
                f"SBC result file {str(path)!r} is corrupted: ranks for {sorted(data['ranks'])} "
                f"but truth for {sorted(data['truth'])}"
            )
        return data

    def set_aside(self, index: int) -> Path:
        """Rename a corrupted result to ``sim_<index>.json.corrupt`` (kept for inspection,
        no longer counted as finished) and return the new path."""
        path = self.path(index)
        target = path.with_name(path.name + ".corrupt")
        os.replace(path, target)
        return target

    def finished(self) -> list[int]:
        """Indices of the finished simulations, sorted."""
        if not self.directory.exists():
            return []
        out = []
        for p in self.directory.glob(f"{FILE_PREFIX}*.json"):
            stem = p.stem[len(FILE_PREFIX) :]
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)
