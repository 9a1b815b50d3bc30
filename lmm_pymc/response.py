"""The left-hand side of a formula: the outcome column and, for a binomial outcome, the number
of trials of each row, in brms's or bambi's syntax::

    y ~ ...                 the outcome column y
    y | trials(n) ~ ...     brms: y successes out of n trials (a column, or one whole number)
    p(y, n) ~ ...           bambi: the same

This module knows nothing about PyMC or Stan.

>>> parse_response("y | trials(n)", "y | trials(n) ~ x + (1 | g)")
Response(column='y', trials='n')
>>> parse_response("p(y, 10)", "p(y, 10) ~ x + (1 | g)").trials
10
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Response", "check_outcome_type", "parse_response"]

_BRMS = re.compile(r"^(\w+)\s*\|\s*trials\s*\(\s*(\w+)\s*\)$")
_BAMBI = re.compile(r"^p\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)$")


@dataclass(frozen=True)
class Response:
    """The outcome ``column`` and its ``trials``: a column name, a whole number or None."""

    column: str
    trials: str | int | None = None

    @property
    def trials_column(self) -> str | None:
        """The trials' column, None for a fixed number or no trials."""
        return self.trials if isinstance(self.trials, str) else None

    @property
    def trials_label(self) -> str:
        """How error messages name the trials."""
        return "" if self.trials is None else str(self.trials)

    def trials_values(self, frame: pd.DataFrame) -> np.ndarray | None:
        """(N,) trials of the rows of ``frame`` as floats; None without trials."""
        if self.trials is None:
            return None
        if isinstance(self.trials, int):
            return np.full(len(frame), float(self.trials))
        if self.trials not in frame.columns:
            raise ValueError(
                f"trials column {self.trials!r} of the response '{self.column} | "
                f"trials({self.trials})' is not in data; columns found: {list(frame.columns)}"
            )
        from .checks import finite_column

        return finite_column(self.trials, frame[self.trials])


def parse_response(lhs: str, formula: str) -> Response:
    """The :class:`Response` of a formula's left-hand side ``lhs`` (``formula``: for the
    error message)."""
    text = lhs.strip()
    match = _BRMS.match(text) or _BAMBI.match(text)
    if match is None:
        if re.fullmatch(r"\w+", text):
            return Response(text)
        raise ValueError(
            f"formula's response must be a single column name (or 'y | trials(n)', "
            f"'p(y, n)' for a binomial outcome), found {text!r} in {formula!r}"
        )
    column, trials = match.groups()
    return Response(column, int(trials) if trials.isdigit() else trials)


def check_outcome_type(column: str, series: pd.Series) -> None:
    """Refuse an outcome that holds no numbers (text, a categorical): a ValueError naming the
    column and its distinct values, with the 0/1 coding of a two-valued one. Booleans pass:
    True/False is read as 1/0."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return
    values = sorted(pd.unique(series.dropna()).tolist(), key=str)
    hint = ""
    if len(values) == 2:  # a binary outcome: code it 0/1 for family='bernoulli'
        hint = (f"; a two-valued outcome is a 'bernoulli' one coded 0/1, e.g. "
                f"data[{column!r}] = (data[{column!r}] == {values[1]!r}).astype(int)")  # fmt: skip
    raise ValueError(
        f"outcome column {column!r} must be numeric, found dtype {series.dtype} with "
        f"{len(values)} distinct value(s) {values[:6]}{'...' if len(values) > 6 else ''}{hint}"
    )
