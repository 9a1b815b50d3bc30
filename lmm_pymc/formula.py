"""From an lme4/brms formula and a data frame to the design of a general linear mixed model.

The model, for ``N`` rows, ``p`` fixed effects and grouping factors ``f = 1..F``::

    y = X beta + sum_f (Z_f * b_f[g_f]).sum(1) + e,     e ~ N(0, sigma^2)
    b_f[j] ~ N(0, Sigma_f)    (q_f x q_f; diagonal for an uncorrelated ``||`` term)

    X   : (N, p)     fixed-effects design, columns named by the formula's terms
    Z_f : (N, q_f)   per-row random-effects design of factor f ("Z_rows" of the core)
    g_f : (N,)       position of each row's level of factor f in ``labels``

Formulas are parsed by ``formulae`` (the formula engine of bambi). ``formulae`` does not
know lme4's ``||``; a term ``(1 + x || g)`` is parsed as ``(1 + x | g)`` and marked
uncorrelated. Supported: several fixed effects, interactions, categorical predictors,
``(1 | g)``, ``(1 + x + z | g)``, ``(1 + x || g)``, crossed and interacted factors
(``(1 | g:h)``). Each factor may appear in one random term only.

This module knows nothing about PyMC or Stan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .design import Design

__all__ = ["GeneralDesign", "GroupingFactor", "design_from_formula", "split_formula"]

#: Dimension names the general model uses itself; a factor may not be called like them.
RESERVED_DIMS: tuple[str, ...] = ("obs", "fixed_effect", "random_effect", "random_effect_")

_GROUP_TERM = re.compile(r"\(([^()|]*?)(\|\|?)([^()|]*?)\)")


def _effect_name(name: str) -> str:
    """formulae's ``Intercept`` / ``1`` is the core's ``intercept``."""
    return "intercept" if name in ("Intercept", "1") else name


@dataclass(frozen=True)
class GroupingFactor:
    """One grouping factor and its random effects.

    Attributes
    ----------
    name : str
        The factor as written in the formula (``"subject"``, ``"g:h"``).
    labels : tuple
        The factor's levels, in order of first appearance in the data.
    index : ndarray of int, shape (N,)
        Position of each row's level in ``labels``.
    Z : ndarray, shape (N, q)
        Per-row random-effects design (the columns multiplying ``b[index]``).
    effect_names : tuple of str
        Names of the q random effects (``"intercept"``, ``"x"``, ``"c[b]"``).
    correlated : bool
        ``True`` for ``(... | g)`` (LKJ over q x q), ``False`` for ``(... || g)``.
    """

    name: str
    labels: tuple
    index: np.ndarray
    Z: np.ndarray
    effect_names: tuple[str, ...]
    correlated: bool = True

    @property
    def q(self) -> int:
        return len(self.effect_names)

    @property
    def n_levels(self) -> int:
        return len(self.labels)

    @property
    def key(self) -> str:
        """The factor name usable inside variable names (``g:h`` -> ``g_h``)."""
        return re.sub(r"\W", "_", self.name)

    @property
    def terms(self) -> tuple[str, ...]:
        """Coordinate labels of the random effects, ``"x|subject"``."""
        return tuple(f"{e}|{self.name}" for e in self.effect_names)

    @property
    def level_dim(self) -> str:
        return self.name

    @property
    def effect_dim(self) -> str:
        return f"{self.name}_effect"


@dataclass(frozen=True)
class GeneralDesign:
    """Design of a general linear mixed model (see the module docstring).

    Build it with :func:`design_from_formula`.

    Attributes
    ----------
    X : ndarray, shape (N, p)
    fixed_names : tuple of str
        Names of the columns of ``X`` (``"intercept"``, ``"x"``, ``"c[b]"``, ``"x:c[b]"``).
    factors : tuple of GroupingFactor
    y : ndarray, shape (N,), or None
    formula : str
    response : str or None
        Name of the outcome column.
    """

    X: np.ndarray
    fixed_names: tuple[str, ...]
    factors: tuple[GroupingFactor, ...]
    y: np.ndarray | None = None
    formula: str = ""
    response: str | None = None

    @property
    def n_obs(self) -> int:
        return int(self.X.shape[0])

    @property
    def terms(self) -> tuple[str, ...]:
        """All random-effect labels, factor after factor (coord ``random_effect``)."""
        return tuple(t for f in self.factors for t in f.terms)

    @property
    def Z(self) -> sp.csr_matrix:
        """Full sparse random-effects design, shape (N, sum_f q_f J_f).

        Factor after factor; within a factor the columns are interleaved per level as in
        the core's :attr:`Design.Z` (effects of level 1, effects of level 2, ...).
        """
        blocks = []
        for f in self.factors:
            rows = np.repeat(np.arange(self.n_obs), f.q)
            cols = (f.index[:, None] * f.q + np.arange(f.q)[None, :]).reshape(-1)
            blocks.append(
                sp.csr_matrix((f.Z.reshape(-1), (rows, cols)), shape=(self.n_obs, f.q * f.n_levels))
            )
        return sp.hstack(blocks, format="csr")

    def coords(self) -> dict[str, list]:
        """Coordinates of the general model: obs, fixed_effect, random_effect and per factor."""
        out: dict[str, list] = {
            "obs": list(range(self.n_obs)),
            "fixed_effect": list(self.fixed_names),
            "random_effect": list(self.terms),
            "random_effect_": list(self.terms),
        }
        for f in self.factors:
            out[f.level_dim] = list(f.labels)
            out[f.effect_dim] = list(f.terms)
            out[f.effect_dim + "_"] = list(f.terms)
        return out

    def factor(self, name: str) -> GroupingFactor:
        for f in self.factors:
            if f.name == name:
                return f
        raise ValueError(f"factor must be one of {[f.name for f in self.factors]}, found {name!r}")

    def with_y(self, y: np.ndarray) -> GeneralDesign:
        """The same design with a new outcome vector."""
        y_arr = np.asarray(y, dtype=float)
        if y_arr.shape != (self.n_obs,):
            raise ValueError(f"y must have shape ({self.n_obs},), found {y_arr.shape}")
        if not np.all(np.isfinite(y_arr)):
            raise ValueError("y must be finite, found non-finite values")
        return replace(self, y=y_arr)

    def to_design(self) -> Design:
        """The core :class:`Design` of ``y ~ 1 + x + (1 + x | g)``, for that formula only.

        Raises
        ------
        ValueError
            If the design is not one intercept and one slope, with the same correlated
            intercept and slope for a single grouping factor.
        """
        ok = (
            self.fixed_names == ("intercept", self.fixed_names[-1])
            and len(self.factors) == 1
            and self.factors[0].effect_names == self.fixed_names
            and self.factors[0].correlated
        )
        if not ok:
            raise ValueError(
                "to_design needs the tutorial's formula y ~ 1 + x + (1 + x | g), found "
                f"{self.formula!r}"
            )
        f = self.factors[0]
        return Design(x=self.X[:, 1].copy(), group_index=f.index, group_labels=f.labels, y=self.y)


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


def design_from_formula(
    formula: str,
    data: pd.DataFrame,
    *,
    require_response: bool = True,
) -> GeneralDesign:
    """Build a :class:`GeneralDesign` from an lme4/brms formula and a data frame.

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
    GeneralDesign
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
    from formulae import design_matrices

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

    frame = data.reset_index(drop=True)
    _check_finite(frame, _formula_columns(rhs, frame) | ({response} & set(frame.columns)))
    try:
        dm = design_matrices(rhs, frame, na_action="error")
    except KeyError as err:
        column = str(err.args[0]) if err.args else str(err)
        raise _unknown_column_error(column, rhs, frame) from None
    except Exception as err:  # formulae's ParseError, ScanError and friends
        raise ValueError(
            f"formula {formula!r} could not be parsed by formulae: {type(err).__name__}: {err}"
        ) from None
    if dm.common is None:
        raise ValueError(f"formula must have at least one fixed effect, found {formula!r}")

    X = np.asarray(dm.common.design_matrix, dtype=float)
    fixed_names = []
    for term, sl in dm.common.slices.items():
        width = sl.stop - sl.start
        if width == 1:
            fixed_names.append(_effect_name(term))
        else:
            names = dm.common.terms[term].labels
            fixed_names.extend(names)
    if len(fixed_names) != X.shape[1]:  # formulae labels every column; keep a safe fallback
        fixed_names = [f"X{k}" for k in range(X.shape[1])]

    factors: list[GroupingFactor] = []
    by_factor: dict[str, list[str]] = {}
    for term_name in dm.group.terms:
        fname = term_name.split("|", 1)[1]
        by_factor.setdefault(fname, []).append(term_name)
    for fname, term_names in by_factor.items():
        columns = fname.split(":")
        labels_per_row = frame[columns[0]].astype(str)
        for col in columns[1:]:
            labels_per_row = labels_per_row + ":" + frame[col].astype(str)
        raw = frame[columns[0]] if len(columns) == 1 else labels_per_row
        codes, uniques = pd.factorize(raw, sort=False)
        if len(uniques) < 2:
            raise ValueError(
                f"formula term with grouping factor {fname!r}: needs at least 2 levels to "
                f"estimate group-level variation, found {len(uniques)} ({list(uniques)})"
            )
        Z_parts, names = [], []
        for term_name in term_names:
            term = dm.group.terms[term_name]
            # formulae's level order -> position of each row's level there
            pos = {str(g): k for k, g in enumerate(term.groups)}
            level_pos = np.array([pos[s] for s in labels_per_row.to_numpy()])
            mat = sp.csr_matrix(dm.group[term_name])
            k = mat.shape[1] // len(term.groups)
            # (N, k): columns of this row's own level, interleaved per level in formulae
            cols = level_pos[:, None] * k + np.arange(k)[None, :]
            Z_parts.append(np.asarray(mat[np.arange(len(frame))[:, None], cols].toarray()))
            expr = term_name.split("|", 1)[0]
            if k == 1:
                names.append(_effect_name(expr))
            else:  # categorical random slope: 'c[b]|g[u]' -> 'c[b]'
                names.extend(lab.split("|", 1)[0] for lab in term.labels[:k])
        factors.append(
            GroupingFactor(
                name=fname,
                labels=tuple(uniques.tolist()),
                index=codes.astype(np.int64),
                Z=np.column_stack(Z_parts),
                effect_names=tuple(names),
                correlated=correlated.get(fname, True),
            )
        )
    y = None
    if response is not None and response in frame.columns:
        from .design import _finite_numeric

        y = _finite_numeric(response, frame[response])
    return GeneralDesign(
        X=X,
        fixed_names=tuple(fixed_names),
        factors=tuple(factors),
        y=y,
        formula=cleaned,
        response=response,
    )
