"""Argument checks shared by every stage: each error names the argument, the value found
and what was expected (``chains must be a positive integer, found 0``): ``TypeError`` for a
value of the wrong type, ``ValueError`` for a value of the right type out of range."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "choice",
    "exact_keys",
    "finite_column",
    "non_negative_int",
    "positive_int",
    "probability",
]


def _integer(name: str, value: object, lowest: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be {what}, found {value!r} ({type(value).__name__})")
    if int(value) < lowest:
        raise ValueError(f"{name} must be {what}, found {value!r}")
    return int(value)


def positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1: ``TypeError`` for a non-integer, ``ValueError`` below 1."""
    return _integer(name, value, 1, "a positive integer")


def non_negative_int(name: str, value: object) -> int:
    """``value`` as an int >= 0: ``TypeError`` for a non-integer, ``ValueError`` below 0."""
    return _integer(name, value, 0, "a non-negative integer")


def probability(name: str, value: object) -> float:
    """``value`` as a float strictly between 0 and 1 (``TypeError`` for a non-number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number in (0, 1), found {value!r}")
    v = float(value)
    if not 0 < v < 1:
        raise ValueError(f"{name} must be in (0, 1), found {value!r}")
    return v


def choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else an error listing them (``TypeError`` for
    a non-string)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(choices)}, found {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, found {value!r}")
    return value


def exact_keys(name: str, given: Mapping[str, object], expected: Sequence[str], what: str) -> None:
    """``given`` must have exactly the keys ``expected`` (a value for every ``what``)."""
    if not isinstance(given, Mapping):
        raise TypeError(f"{name} must be a mapping of {what} names, found {type(given).__name__}")
    unknown = sorted(set(given) - set(expected))
    missing = [n for n in expected if n not in given]
    if unknown or missing:
        raise ValueError(
            f"{name} must give every {what} {list(expected)}, found unknown {unknown} and "
            f"missing {missing}"
        )


def finite_column(name: str, values: object) -> np.ndarray:
    """A numeric, finite data column as a float array (booleans and strings refused)."""
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)):
        raise ValueError(
            f"column {name!r} must be numeric, found dtype {series.dtype} "
            f"(first values {series.head(3).tolist()})"
        )
    arr = series.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"column {name!r} must be finite, found {arr[rows[0]]} at row {rows[0]} "
            f"({bad.sum()} non-finite value(s) in total)"
        )
    return arr
