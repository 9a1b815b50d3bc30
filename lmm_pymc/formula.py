"""From an lme4/brms formula and a data frame to a :class:`~lmm_pymc.design.Design`.

Formulas are parsed by ``formulae`` (the formula engine of bambi). ``formulae`` does not
know lme4's ``||``; a term ``(1 + x || g)`` is parsed as ``(1 + x | g)`` and marked
uncorrelated. Supported: several fixed effects, interactions, categorical predictors,
``(1 | g)``, ``(1 + x + z | g)``, ``(1 + x || g)``, crossed and interacted factors
(``(1 | g:h)``) and lme4's nesting (``(1 | g/h)`` is ``(1 | g) + (1 | g:h)``). Each factor
may appear in one random term only. A binomial outcome's response names its trials,
``y | trials(n) ~ ...`` (brms) or ``p(y, n) ~ ...`` (bambi): :mod:`lmm_pymc.response`.

This module knows nothing about PyMC or Stan.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from .checks import finite_column
from .design import RESERVED_DIMS, Design, GroupingFactor, factor_labels
from .response import check_outcome_type, parse_response

__all__ = [
    "check_formula",
    "column_names",
    "design_from_formula",
    "formula_columns",
    "grouping_column",
    "split_formula",
    "split_terms",
    "term_design",
]

_GROUP_TERM = re.compile(r"\(([^()|]*?)(\|\|?)([^()|]*?)\)")


def split_formula(formula: str) -> tuple[str, str | None, str, dict[str, bool]]:
    """Split a formula into ``(rhs_for_formulae, response, cleaned, correlated)``.

    ``correlated`` maps each grouping factor to ``False`` for ``||`` terms, ``True`` for
    ``|`` terms; ``rhs_for_formulae`` has ``||`` replaced by ``|`` and no response.
    """
    if not isinstance(formula, str) or not formula.strip():
        error = ValueError if isinstance(formula, str) else TypeError
        raise error(f"formula must be a non-empty string, found {formula!r}")
    if formula.count("~") > 1:
        raise ValueError(f"formula must contain at most one '~', found {formula!r}")
    lhs, rhs = formula.split("~") if "~" in formula else ("", formula)
    response = parse_response(lhs, formula).column if lhs.strip() else None
    rhs = _GROUP_TERM.sub(_expand_nesting, rhs)
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


def _expand_nesting(match: re.Match) -> str:
    """lme4's nesting ``(e | a/b/c)`` is ``(e | a) + (e | a:b) + (e | a:b:c)``."""
    expr, bar, factor = match.groups()
    parts = [p.strip() for p in factor.split("/")]
    if len(parts) == 1:
        return match.group(0)
    if not all(parts):
        raise ValueError(
            f"formula term ({expr.strip()} {bar} {factor.strip()}): expected nested factors "
            "as a/b, found an empty name"
        )
    return " + ".join(f"({expr} {bar} {':'.join(parts[: k + 1])})" for k in range(len(parts)))


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
    if re.search(rf"(?<![\w.]){re.escape(column)}\s*\(", rhs):
        return ValueError(
            f"formula calls {column}(...), which is neither a column nor a function formulae "
            "knows (supported: C(), I(), scale(), center(), np.<function>); compute the "
            "column in the data frame instead"
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
            value = s.iloc[row]
            value = value.item() if isinstance(value, np.generic) else value
            raise ValueError(
                f"column {col!r} must be finite and not missing, found {value!r} at "
                f"row {row} ({int(bad.sum())} bad value(s) in total)"
            )


def formula_columns(rhs: str, data: pd.DataFrame) -> set[str]:
    """Data columns named anywhere in the right-hand side."""
    return {c for c in map(str, data.columns) if _term_mentions(rhs, c)}


def split_terms(rhs: str) -> tuple[str, list[tuple[str, str]]]:
    """``(fixed part, [(expression, factor), ...])`` of a right-hand side whose ``||`` are
    already ``|``; an empty fixed part is lme4's implicit intercept ``1``."""
    terms = [(expr.strip(), factor.strip().replace(" ", ""))
             for expr, _bar, factor in _GROUP_TERM.findall(rhs)]  # fmt: skip
    rest = [part.strip() for part in _GROUP_TERM.sub("", rhs).split("+")]
    return " + ".join(p for p in rest if p) or "1", terms


def grouping_column(frame: pd.DataFrame, name: str) -> pd.Series:
    """The raw labels of grouping factor ``name``: its column, or for ``a:b`` the text of
    the columns joined by ``:``."""
    columns = name.split(":")
    raw = frame[columns[0]]
    for col in columns[1:]:
        raw = raw.astype(str) + ":" + frame[col].astype(str)
    return raw


def _formulae_error(formula: str, rhs: str, err: Exception) -> ValueError:
    """One line for a formulae failure: a syntax error (its parser's and scanner's errors)
    is "could not be parsed"; anything else happened while the terms ``rhs`` were evaluated
    on the data (a function of a text column, say), and is said so."""
    from formulae.parser import ParseError
    from formulae.scanner import ScanError

    reason = f"{type(err).__name__}: {' '.join(str(err).split())}"
    if isinstance(err, ParseError | ScanError):
        return ValueError(f"formula {formula!r} could not be parsed by formulae: {reason}")
    return ValueError(
        f"formula {formula!r}: the terms {rhs.strip()!r} could not be evaluated on data "
        f"({reason}); check the columns' types, e.g. a function of a text column"
    )


def term_design(rhs: str, frame: pd.DataFrame, formula: str, full_rhs: str, *, what: str):
    """formulae's design (its ``CommonComponent``, which also codes new rows) of a
    right-hand side without random terms; errors name the column or the formula's problem."""
    from formulae import design_matrices

    try:
        common = design_matrices(rhs, frame, na_action="error").common
    except KeyError as err:
        column = str(err.args[0]) if err.args else str(err)
        raise _unknown_column_error(column, full_rhs, frame) from None
    except Exception as err:  # noqa: BLE001 - any failure of formulae, said in one line
        raise _formulae_error(formula, rhs, err) from None
    if common is None:
        raise ValueError(f"formula must have at least one {what}, found {formula!r}")
    return common


def _columns(
    rhs: str, frame: pd.DataFrame, formula: str, full_rhs: str, *, what: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The dense (N, k) design of a formulae right-hand side without random terms, and the
    names of its columns (``intercept``, ``x``, ``c[b]``, ``x:c[b]``)."""
    common = term_design(rhs, frame, formula, full_rhs, what=what)
    matrix = np.asarray(common.design_matrix, dtype=float)
    return matrix, column_names(common, matrix.shape[1])


def column_names(common, k: int) -> tuple[str, ...]:
    """The names of formulae's ``k`` design columns: ``Intercept`` is the core's
    ``intercept``; a level-coded column is ``column[level]``, as bambi writes it."""
    labels = [label for term in common.slices for label in common.terms[term].labels]
    names = ["intercept" if n in ("Intercept", "1") else n for n in labels]
    return tuple(names) if len(names) == k else tuple(f"X{j}" for j in range(k))


#: Largest magnitude of a data value: squares and sums of squares must stay finite in
#: float64 (max ~1.8e308), with room for sums over 10^8 rows.
MAX_ABS_VALUE = 1e150


def _check_fittable(design: Design) -> None:
    """Refuse data whose parameters are not identified, before any model is built; warn
    where a fit is still meaningful but weakly informed. Each message names the column."""
    y, X = design.y, design.X
    for name, values in ((design.response, y), *zip(design.fixed_names, X.T, strict=True)):
        big = float(np.max(np.abs(values)))
        if big > MAX_ABS_VALUE:
            raise ValueError(
                f"column {name!r} has values up to {big:.3g}; expected magnitudes below "
                f"{MAX_ABS_VALUE:.0e} (their squares must stay finite in float64): rescale it"
            )
    if np.ptp(y) == 0:
        raise ValueError(
            f"outcome column {design.response!r} is constant (every value {float(y[0])!r}); "
            "expected an outcome that varies: a constant outcome identifies neither a "
            "gaussian model's residual sd nor a binary or count model's intercept (its "
            "default prior is centred at the link of the outcome's mean)"
        )
    if X.shape[1] >= design.n_obs:
        raise ValueError(
            f"formula has {X.shape[1]} fixed-effect columns for {design.n_obs} rows; expected "
            "fewer columns than rows (a categorical predictor with a level per row?)"
        )
    for k in range(X.shape[1]):
        others = X[:, :k]
        if not np.any(X[:, k]):
            raise ValueError(
                f"fixed effect {design.fixed_names[k]!r} is zero on every row; expected a "
                "column that varies"
            )
        if k and _in_span(X[:, k], others):
            raise ValueError(
                f"fixed effect {design.fixed_names[k]!r} is a linear combination of "
                f"{list(design.fixed_names[:k])} (e.g. a constant predictor beside the "
                "intercept, or a duplicated column): expected linearly independent "
                "predictors; drop it from the formula"
            )
    for f in design.factors:
        if (f.sizes == 1).all():
            raise ValueError(
                f"every level of grouping factor {f.name!r} has one row ({f.n_levels} levels "
                f"for {design.n_obs} rows): expected repeated rows per level, else its sd "
                "is not separately identified from the residual sd"
            )
        _warn_within_group_constant(f)


def _in_span(column: np.ndarray, others: np.ndarray) -> bool:
    """Whether ``column`` lies in the span of ``others`` (relative residual < 1e-10)."""
    coef, *_ = np.linalg.lstsq(others, column, rcond=None)
    scale = max(float(np.linalg.norm(column)), 1e-300)
    return float(np.linalg.norm(column - others @ coef)) <= 1e-10 * scale


def _warn_within_group_constant(f: GroupingFactor) -> None:
    """Warn where a random slope's variable does not vary within any level."""
    if f.q < 2:
        return
    counts = np.bincount(f.index, minlength=f.n_levels)
    for k, effect in enumerate(f.effect_names):
        col = f.Z[:, k]
        mean = np.bincount(f.index, weights=col, minlength=f.n_levels) / counts
        if effect != "intercept" and np.allclose(col, mean[f.index], rtol=0, atol=1e-12 * (
                1 + np.abs(col).max())):  # fmt: skip
            warnings.warn(
                f"random slope {effect!r} in ({' + '.join(f.effect_names)} | {f.name}) does "
                f"not vary within any level of {f.name!r}: its sd is informed only by the "
                "prior and is confounded with the random intercept; consider dropping it",
                UserWarning,
                stacklevel=4,
            )


def _check_text_columns(frame: pd.DataFrame, columns: set[str]) -> None:
    """Refuse a categorical predictor with one level (formulae would drop it silently);
    warn where a text column holds numbers (formulae would treat it as categorical)."""
    for col in sorted(columns):
        s = frame[col]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            if s.nunique() < 2:
                raise ValueError(
                    f"column {col!r} is categorical (dtype {s.dtype}) with the single value "
                    f"{s.iloc[0]!r}; expected a numeric column or at least 2 categories"
                )
            as_num = pd.to_numeric(s, errors="coerce")
            if as_num.notna().all() and s.nunique() > 2:
                warnings.warn(
                    f"column {col!r} holds numbers stored as text (dtype {s.dtype}, first "
                    f"values {s.head(3).tolist()}); it enters the model as a categorical "
                    f"predictor with {s.nunique()} levels. Convert it with pd.to_numeric if "
                    "it is numeric",
                    UserWarning,
                    stacklevel=4,
                )


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


def check_formula(
    formula: str, data: pd.DataFrame, require_response: bool
) -> tuple[str, str | None, str, dict[str, bool]]:
    """Check the formula and the columns it names before any matrix is built; return
    :func:`split_formula`'s parts."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, found {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("data must have at least one row, found 0 rows")
    from formulae import model_description

    rhs, response, cleaned, correlated = split_formula(formula)
    try:
        model_description(rhs)
    except Exception as err:  # noqa: BLE001 - any failure of formulae, said in one line
        raise _formulae_error(formula, rhs, err) from None
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
    rhs, response, cleaned, correlated = check_formula(formula, data, require_response)
    frame = data.reset_index(drop=True)
    outcome = parse_response(formula.split("~")[0], formula) if response else None
    named = {response, outcome and outcome.trials_column}  # the outcome and its trials
    if response in frame.columns:  # text or a factor: named with its values
        check_outcome_type(response, frame[response])
    _check_finite(frame, formula_columns(rhs, frame) | (named & set(frame.columns)))
    _check_text_columns(frame, formula_columns(rhs, frame) - set(correlated))
    fixed_rhs, terms = split_terms(rhs)
    X, fixed_names = _columns(fixed_rhs, frame, formula, rhs, what="fixed effect")
    factors = []
    for expr, fname in terms:
        # (N, q): the term's own columns, never formulae's dense N x (J q) group matrix
        Z, names = _columns(expr, frame, formula, rhs, what=f"effect in ({expr} | {fname})")
        codes, uniques = factor_labels(grouping_column(frame, fname), fname)  # order of first appearance
        if len(uniques) < 2:
            raise ValueError(
                f"formula term with grouping factor {fname!r}: needs at least 2 levels to "
                f"estimate group-level variation, found {len(uniques)} ({list(uniques)})"
            )
        factors.append(
            GroupingFactor(
                name=fname,
                labels=uniques,
                index=codes,
                Z=Z,
                effect_names=names,
                correlated=correlated.get(fname, True),
            )
        )
    y = trials = None
    if response is not None and response in frame.columns:
        column = frame[response]
        if pd.api.types.is_bool_dtype(column):  # a binary outcome as True/False: 1/0
            column = column.astype(int)
        y = finite_column(response, column)
    if outcome is not None and (y is not None or outcome.trials_column in (None, *frame)):
        trials = outcome.trials_values(frame)  # (N,) or None; simulate reads them without y
    design = Design(X=X, fixed_names=fixed_names, factors=tuple(factors), y=y,
                    formula=cleaned, response=response, trials=trials)  # fmt: skip
    if y is not None:
        _check_fittable(design)
        _warn_single_row_levels(factors)
    return design
