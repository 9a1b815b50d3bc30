"""From an lme4/brms formula and a data frame to a :class:`~lmm_pymc.design.Design`.

Formulas are parsed by ``formulae`` (the formula engine of bambi). ``formulae`` does not
know lme4's ``||``; a term ``(1 + x || g)`` is parsed as ``(1 + x | g)`` and marked
uncorrelated. Supported: several fixed effects, interactions, categorical predictors,
``(1 | g)``, ``(1 + x + z | g)``, ``(1 + x || g)``, crossed and interacted factors
(``(1 | g:h)``). Each factor may appear in one random term only.

This module knows nothing about PyMC or Stan.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from .checks import finite_column
from .design import RESERVED_DIMS, Design, GroupingFactor

__all__ = ["design_from_formula", "split_formula"]

_GROUP_TERM = re.compile(r"\(([^()|]*?)(\|\|?)([^()|]*?)\)")


def _effect_name(name: str) -> str:
    """formulae's ``Intercept`` / ``1`` is the core's ``intercept``."""
    return "intercept" if name in ("Intercept", "1") else name


def split_formula(formula: str) -> tuple[str, str | None, str, dict[str, bool]]:
    """Split a formula into ``(rhs_for_formulae, response, cleaned, correlated)``.

    ``correlated`` maps each grouping factor to ``False`` for ``||`` terms, ``True`` for
    ``|`` terms; ``rhs_for_formulae`` has ``||`` replaced by ``|`` and no response.
    """
    if not isinstance(formula, str) or not formula.strip():
        raise ValueError(f"formula must be a non-empty string, found {formula!r}")
    if formula.count("~") > 1:
        raise ValueError(f"formula must contain at most one '~', found {formula!r}")
    lhs, rhs = formula.split("~") if "~" in formula else ("", formula)
    response = lhs.strip() or None
    if response is not None and not re.fullmatch(r"\w+", response):
        raise ValueError(
            f"formula's response must be a single column name, found {response!r} in {formula!r}"
        )
    correlated: dict[str, bool] = {}
    for _expr, bar, factor in _GROUP_TERM.findall(rhs):
        name = factor.strip().replace(" ", "")
        if name in correlated:
            raise ValueError(
                f"formula: grouping factor {name!r} appears in more than one random term; "
                "expected one term per factor, e.g. (1 + x | g)"
            )
        correlated[name] = bar == "|"
    rhs_clean = rhs.replace("||", "|")
    return rhs_clean.strip(), response, formula.strip(), correlated


def _term_mentions(term_text: str, column: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(column)}(?!\w)", term_text) is not None


def _unknown_column_error(column: str, rhs: str, data: pd.DataFrame) -> ValueError:
    for expr, _bar, factor in _GROUP_TERM.findall(rhs):
        term = f"({expr.strip()} | {factor.strip()})"
        if _term_mentions(factor, column):
            return ValueError(
                f"formula term {term}: grouping factor column {column!r} is not in data; "
                f"columns found: {list(data.columns)}"
            )
        if _term_mentions(expr, column):
            return ValueError(
                f"formula term {term}: random slope on {column!r}, a column absent from data; "
                f"columns found: {list(data.columns)}"
            )
    return ValueError(
        f"formula refers to column {column!r}, which is not in data; columns found: "
        f"{list(data.columns)}"
    )


def _check_finite(data: pd.DataFrame, columns: set[str]) -> None:
    for col in sorted(columns):
        s = data[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            arr = s.to_numpy(dtype=float, na_value=np.nan)
            bad = ~np.isfinite(arr)
        else:
            bad = s.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"column {col!r} must be finite and not missing, found {s.iloc[row]!r} at "
                f"row {row} ({int(bad.sum())} bad value(s) in total)"
            )


def _formula_columns(rhs: str, data: pd.DataFrame) -> set[str]:
    """Data columns named anywhere in the right-hand side."""
    return {c for c in map(str, data.columns) if _term_mentions(rhs, c)}


def _split_terms(rhs: str) -> tuple[str, list[tuple[str, str]]]:
    """``(fixed part, [(expression, factor), ...])`` of a right-hand side whose ``||`` are
    already ``|``; an empty fixed part is lme4's implicit intercept ``1``."""
    terms = [(expr.strip(), factor.strip().replace(" ", ""))
             for expr, _bar, factor in _GROUP_TERM.findall(rhs)]  # fmt: skip
    rest = [part.strip() for part in _GROUP_TERM.sub("", rhs).split("+")]
    return " + ".join(p for p in rest if p) or "1", terms


def _columns(
    rhs: str, frame: pd.DataFrame, formula: str, full_rhs: str, *, what: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The dense (N, k) design of a formulae right-hand side without random terms, and the
    names of its columns (``intercept``, ``x``, ``c[b]``, ``x:c[b]``)."""
    from formulae import design_matrices

    try:
        common = design_matrices(rhs, frame, na_action="error").common
    except KeyError as err:
        column = str(err.args[0]) if err.args else str(err)
        raise _unknown_column_error(column, full_rhs, frame) from None
    except Exception as err:  # formulae's ParseError, ScanError and friends
        raise ValueError(
            f"formula {formula!r} could not be parsed by formulae: {type(err).__name__}: {err}"
        ) from None
    if common is None:
        raise ValueError(f"formula must have at least one {what}, found {formula!r}")
    matrix = np.asarray(common.design_matrix, dtype=float)
    names: list[str] = []
    for term, sl in common.slices.items():
        width = sl.stop - sl.start
        names.extend([_effect_name(term)] if width == 1 else common.terms[term].labels)
    if len(names) != matrix.shape[1]:  # formulae labels every column; keep a safe fallback
        names = [f"X{k}" for k in range(matrix.shape[1])]
    return matrix, tuple(names)


def _warn_single_row_levels(factors: list[GroupingFactor]) -> None:
    """Warn where a factor with random slopes has levels of a single row (data to fit)."""
    for f in factors:
        sizes = f.sizes
        if f.q > 1 and (sizes == 1).any():
            singles = [f.labels[j] for j in np.flatnonzero(sizes == 1)]
            warnings.warn(
                f"grouping factor {f.name!r} has {len(singles)} group(s) with one row "
                f"({singles[:5]}): their random slopes are informed by the prior and the "
                "other groups only",
                UserWarning,
                stacklevel=3,
            )


def _check_formula(
    formula: str, data: pd.DataFrame, require_response: bool
) -> tuple[str, str | None, str, dict[str, bool]]:
    """Check the formula and the columns it names before any matrix is built; return
    :func:`split_formula`'s parts."""
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame, found {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("data must have at least one row, found 0 rows")
    from formulae import model_description

    rhs, response, cleaned, correlated = split_formula(formula)
    try:
        model_description(rhs)
    except Exception as err:  # formulae's ParseError, ScanError and friends
        raise ValueError(
            f"formula {formula!r} could not be parsed by formulae: {type(err).__name__}: {err}"
        ) from None
    if not correlated:
        raise ValueError(
            f"formula must have at least one random term such as (1 | g), found {formula!r}"
        )
    if response is None and require_response:
        raise ValueError(f"formula must name a response (y ~ ...), found {formula!r}")
    if response is not None and response not in data.columns and require_response:
        raise ValueError(
            f"formula's response column {response!r} is not in data; columns found: "
            f"{list(data.columns)}"
        )
    for name in correlated:
        for col in name.split(":"):
            if col not in data.columns:
                raise _unknown_column_error(col, rhs, data)
        if name in RESERVED_DIMS:
            raise ValueError(
                f"grouping factor name {name!r} clashes with a model dimension; rename the "
                f"column (reserved: {list(RESERVED_DIMS)})"
            )
    return rhs, response, cleaned, correlated


def design_from_formula(
    formula: str,
    data: pd.DataFrame,
    *,
    require_response: bool = True,
) -> Design:
    """Build a :class:`~lmm_pymc.design.Design` from an lme4/brms formula and a data frame.

    Parameters
    ----------
    formula : str
        For example ``"y ~ 1 + x + (1 + x | group_id)"``,
        ``"rt ~ 1 + cond + (1 + cond | subject) + (1 + cond | item)"`` or
        ``"y ~ x1 * c + (1 + x1 || g)"``.
    data : pandas.DataFrame
        One row per observation; group labels may be strings or numbers.
    require_response : bool
        With ``False`` the response may be absent from ``data`` (a design to simulate from).

    Returns
    -------
    Design
        Fixed effects named by the formula's terms (``intercept``, ``x``, ``c[b]``), one
        :class:`GroupingFactor` per random term, levels in order of first appearance.

    Raises
    ------
    ValueError
        Naming the term or column: an unknown column, a formula ``formulae`` cannot parse,
        a formula without random term, a grouping factor with fewer than 2 levels, a random
        slope on an absent variable, non-finite or missing values.

    Examples
    --------
    >>> from lmm_pymc import simulate
    >>> d = design_from_formula("y ~ 1 + x + (1 + x | group_id)", simulate(seed=1).data)
    >>> d.fixed_names, d.terms
    (('intercept', 'x'), ('intercept|group_id', 'x|group_id'))
    """
    rhs, response, cleaned, correlated = _check_formula(formula, data, require_response)
    frame = data.reset_index(drop=True)
    _check_finite(frame, _formula_columns(rhs, frame) | ({response} & set(frame.columns)))
    fixed_rhs, terms = _split_terms(rhs)
    X, fixed_names = _columns(fixed_rhs, frame, formula, rhs, what="fixed effect")
    factors = []
    for expr, fname in terms:
        # (N, q): the term's own columns, never formulae's dense N x (J q) group matrix
        Z, names = _columns(expr, frame, formula, rhs, what=f"effect in ({expr} | {fname})")
        columns = fname.split(":")
        raw = frame[columns[0]]
        if len(columns) > 1:
            raw = raw.astype(str)
            for col in columns[1:]:
                raw = raw + ":" + frame[col].astype(str)
        codes, uniques = pd.factorize(raw, sort=False)  # order of first appearance
        if len(uniques) < 2:
            raise ValueError(
                f"formula term with grouping factor {fname!r}: needs at least 2 levels to "
                f"estimate group-level variation, found {len(uniques)} ({list(uniques)})"
            )
        factors.append(
            GroupingFactor(
                name=fname,
                labels=tuple(uniques.tolist()),
                index=codes.astype(np.int64),
                Z=Z,
                effect_names=names,
                correlated=correlated.get(fname, True),
            )
        )
    y = None
    if response is not None and response in frame.columns:
        y = finite_column(response, frame[response])
        _warn_single_row_levels(factors)
    return Design(
        X=X,
        fixed_names=fixed_names,
        factors=tuple(factors),
        y=y,
        formula=cleaned,
        response=response,
    )
