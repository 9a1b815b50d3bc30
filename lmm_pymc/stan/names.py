"""Stan's flat names <-> arrays, and the one registry between Stan's names and the package's.

**Flat names.** Stan lists every scalar of its output under a flat name, 1-based and
column-major: ``random_group.2.1`` is element ``[1, 0]`` of ``random_group``, and a 3 x 2
matrix ``m`` is listed ``m.1.1, m.2.1, m.3.1, m.1.2, ...``. :func:`unflatten` and
:func:`flatten` convert between a flat vector in that order and a dict of Stan-shaped
arrays, through ``stanio`` (the reader behind CmdStanPy and BridgeStan).

**Name registry.** A :class:`NameMap` holds both directions between one family of Stan
programs and the package's names (:mod:`lmm_pymc.parameters`):

* ``to_stan``: every Stan name as a function of the package's values at one point (used
  to put a PyMC point into Stan and to check what Stan derives from it);
* ``to_package``: package names as functions of Stan's values (used on Stan draws, with
  any leading dimensions such as ``(chain, draw)``).

:data:`TUTORIAL_NAMES` is the registry of the tutorial's programs (``lmm_lkj_corr``,
``lmm_cholesky``, ``lmm_marginal``) on the design of ``y ~ 1 + x + (1 + x | group_id)``::

    alpha_0 = beta[intercept]     beta_0 = beta[x]          sigma_g = sigma
    sigs = sigs                   R = R                     rho = R[intercept|group_id, x|group_id]
    Sigma = diag(sigs) R diag(sigs)                         L_corr = cholesky(R)
    z = z_group_id                random_group = b_group_id
    chol_cov_group_id = lower triangle of diag(sigs) L_corr (packed row by row)

:func:`general_names` is the registry of ``lmm_general.stan``, whose names are the
package's already (``beta``, ``sigma``, ``sigs``, ``R``); its ``z`` is every factor's
``z_k`` flattened row-major, factor after factor, and its ``L_free`` the unconstrained
Cholesky factors of the correlated factors (:func:`cholesky_corr_free`).
:func:`glmm_names` is the registry of ``lmm_glmm.stan``: the general program's, with the
negative binomial's ``alpha`` and the Student-t's ``sigma`` and ``nu`` (Stan: vectors of
length 1, 0 for the families without them).
:func:`marginal_stats_names` is the registry of ``lmm_marginal_stats.stan`` (one factor):
the package's ``beta``, ``sigma``, ``sigs``, ``R``, with ``L_corr = cholesky(R)`` (a 1 x 1
``[[1]]`` for a factor without correlation) and ``b`` = ``b_<factor>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import require

from ..design import Design

__all__ = [
    "TUTORIAL_NAMES",
    "NameMap",
    "Rule",
    "cholesky_corr_free",
    "cholesky_corr_unfree",
    "flatten",
    "general_names",
    "glmm_names",
    "marginal_stats_names",
    "split_name",
    "unflatten",
]

Values = Mapping[str, np.ndarray]

_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)((?:\.\d+)*)$")


# ------------------------------------------------------------ flat <-> named values
def split_name(flat_name: str) -> tuple[str, tuple[int, ...]]:
    """``"random_group.2.1"`` -> ``("random_group", (1, 0))`` (Stan 1-based -> 0-based)."""
    match = _NAME.match(flat_name)
    if match is None:
        raise ValueError(f"flat_name must look like 'name' or 'name.i.j', found {flat_name!r}")
    return match.group(1), tuple(int(i) - 1 for i in match.group(2).split(".")[1:])


def _variables(names: Sequence[str]) -> dict:
    """``stanio`` variables (name, position, shape) of Stan's flat ``names``."""
    stanio = require("stanio", "stan", "Stan's flat parameter names")

    for name in names:
        split_name(name)  # validate before stanio parses
    return stanio.parse_header(",".join(names))


def unflatten(values: Sequence[float] | np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Flat values in the order of Stan's flat ``names`` -> dict of Stan-shaped arrays."""
    values = np.asarray(values, dtype=float)
    if values.shape != (len(names),):
        raise ValueError(f"values must have shape ({len(names)},), found {values.shape}")
    if not len(names):
        return {}
    stanio = require("stanio", "stan", "Stan's flat parameter names")
    out = stanio.stan_variables(_variables(names), values)
    return {name: np.asarray(v, dtype=float) for name, v in out.items()}


def flatten(values: Mapping[str, object], names: Sequence[str]) -> np.ndarray:
    """Dict of Stan-shaped arrays -> flat values in the order of Stan's flat ``names``."""
    out = np.empty(len(names))
    for name, var in _variables(names).items() if len(names) else ():
        if name not in values:
            raise ValueError(
                f"values must hold every Stan parameter, found no {name!r} among {sorted(values)}"
            )
        arr = np.asarray(values[name], dtype=float)
        if arr.shape != var.dimensions:
            raise ValueError(
                f"values[{name!r}] must have Stan's shape {var.dimensions}, found {arr.shape}"
            )
        out[var.start_idx : var.end_idx] = arr.reshape(-1, order="F")
    return out


# --------------------------------------------------- Stan's Cholesky-correlation transform
def cholesky_corr_free(y: np.ndarray, K: int) -> np.ndarray:
    """NumPy twin of ``lmm_general.stan``'s ``cholesky_corr_free`` (Stan's own transform):
    ``K (K - 1) / 2`` unconstrained values -> Cholesky factor of a K x K correlation."""
    w = np.tanh(np.asarray(y, dtype=float))
    if w.shape != (K * (K - 1) // 2,):
        raise ValueError(f"y must have K (K - 1) / 2 = {K * (K - 1) // 2} values, found {w.shape}")
    L = np.zeros((K, K))
    if K:
        L[0, 0] = 1.0
    pos = 0
    for i in range(1, K):
        sum_sqs = 0.0
        for j in range(i):
            L[i, j] = w[pos] * np.sqrt(1.0 - sum_sqs)
            sum_sqs += L[i, j] ** 2
            pos += 1
        L[i, i] = np.sqrt(1.0 - sum_sqs)
    return L


def cholesky_corr_unfree(L: np.ndarray) -> np.ndarray:
    """Inverse of :func:`cholesky_corr_free`: Cholesky factor -> unconstrained values."""
    L = np.asarray(L, dtype=float)
    out = []
    for i in range(1, L.shape[0]):
        sum_sqs = 0.0
        for j in range(i):
            out.append(np.arctanh(L[i, j] / np.sqrt(1.0 - sum_sqs)))
            sum_sqs += L[i, j] ** 2
    return np.asarray(out, dtype=float)


# ----------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Rule:
    """One name of one scheme as a function of the other scheme's values.

    Attributes
    ----------
    target : str
        The name produced (a Stan name in ``to_stan``, a package name in ``to_package``).
    source : str
        The same quantity written in the other scheme (``"beta[intercept]"``).
    needs : tuple of str
        The other scheme's names ``compute`` reads.
    compute : callable
        ``values -> array``.
    """

    target: str
    source: str
    needs: tuple[str, ...]
    compute: Callable[[Values], np.ndarray]

    def available(self, values: Values) -> bool:
        return all(n in values for n in self.needs)


@dataclass(frozen=True)
class NameMap:
    """Both directions between a family of Stan programs and the package's names."""

    to_stan: tuple[Rule, ...]
    to_package: tuple[Rule, ...]

    def stan_rule(self, name: str) -> Rule:
        for rule in self.to_stan:
            if rule.target == name:
                return rule
        raise ValueError(
            f"Stan name must be one of {[r.target for r in self.to_stan]}, found {name!r}"
        )

    def stan_values(self, point: Values, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The Stan values ``names`` of a package point (one point, no leading dims)."""
        out = {}
        for name in names:
            rule = self.stan_rule(name)
            if not rule.available(point):
                missing = [n for n in rule.needs if n not in point]
                raise ValueError(
                    f"Stan's {name!r} = {rule.source} needs {missing}, found only {sorted(point)}"
                )
            out[name] = np.asarray(rule.compute(point), dtype=float)
        return out

    def derivable(self, point: Values) -> dict[str, np.ndarray]:
        """Every Stan value the registry can compute from ``point``."""
        return {
            r.target: np.asarray(r.compute(point), dtype=float)
            for r in self.to_stan
            if r.available(point)
        }

    def package_values(self, stan_values: Values) -> dict[str, np.ndarray]:
        """Every package value the registry can compute from Stan's values (any leading
        dimensions, e.g. ``(chain, draw)``)."""
        return {
            r.target: np.asarray(r.compute(stan_values), dtype=float)
            for r in self.to_package
            if r.available(stan_values)
        }

    def table(self, stan_names: Sequence[str]) -> pd.DataFrame:
        """Stan flat names and the package's value each one is (0-based indices)."""
        rows = []
        for flat in stan_names:
            base, index = split_name(flat)
            source = self.stan_rule(base).source
            package = f"{source}[{', '.join(map(str, index))}]" if index else source
            rows.append({"stan": flat, "package": package})
        return pd.DataFrame(rows, columns=["stan", "package"])


def _identity(name: str, source: str | None = None) -> Rule:
    return Rule(name, source or name, (source or name,), lambda v: v[source or name])


def _covariance(v: Values) -> np.ndarray:
    sigs = np.asarray(v["sigs"])
    # (..., q, q) = diag(sigs) R diag(sigs)
    return sigs[..., :, None] * np.asarray(v["R"]) * sigs[..., None, :]


def _packed_chol_cov(v: Values) -> np.ndarray:
    # (..., 3): rows of diag(sigs) L_corr, lower triangle row by row (LKJCholeskyCov)
    C = np.asarray(v["sigs"])[..., :, None] * np.asarray(v["L_corr"])
    rows, cols = np.tril_indices(C.shape[-1])
    return C[..., rows, cols]


#: The tutorial's programs on the design of ``y ~ 1 + x + (1 + x | group_id)``.
TUTORIAL_NAMES = NameMap(
    to_stan=(
        Rule("alpha_0", "beta[intercept]", ("beta",), lambda v: np.asarray(v["beta"])[..., 0]),
        Rule("beta_0", "beta[x]", ("beta",), lambda v: np.asarray(v["beta"])[..., 1]),
        _identity("sigma_g", "sigma"),
        _identity("sigs"),
        _identity("R"),
        Rule(
            "rho",
            "R[intercept|group_id, x|group_id]",
            ("R",),
            lambda v: np.asarray(v["R"])[..., 0, 1],
        ),  # fmt: skip
        Rule("Sigma", "diag(sigs) R diag(sigs)", ("sigs", "R"), _covariance),
        Rule("L_corr", "cholesky(R)", ("R",), lambda v: np.linalg.cholesky(v["R"])),
        _identity("z", "z_group_id"),
        _identity("random_group", "b_group_id"),
    ),
    to_package=(
        Rule(
            "beta",
            "[alpha_0, beta_0]",
            ("alpha_0", "beta_0"),
            lambda s: np.stack([s["alpha_0"], s["beta_0"]], axis=-1),
        ),  # fmt: skip
        _identity("sigma", "sigma_g"),
        _identity("sigs"),
        _identity("R"),
        _identity("b_group_id", "random_group"),
        _identity("z_group_id", "z"),
        Rule(
            "chol_cov_group_id",
            "lower triangle of diag(sigs) L_corr",
            ("sigs", "L_corr"),
            _packed_chol_cov,
        ),  # fmt: skip
    ),
)


def general_names(
    design: Design,
    *,
    same: Sequence[str] = ("beta", "sigma", "sigs", "R"),
    extra: tuple[Sequence[Rule], Sequence[Rule]] = ((), ()),
) -> NameMap:
    """The registry of ``lmm_general.stan`` for ``design`` (module docstring): the names
    ``same`` in both schemes, ``L_free`` and ``z``; ``extra``: further rules ``(to Stan,
    to the package)`` of a program's other parameters."""
    keys = [f"z_{f.key}" for f in design.factors]
    blocks, start = [], 0
    for f in design.factors:
        if f.has_correlation:
            blocks.append(slice(start, start + f.q))
        start += f.q

    def l_free(v: Values) -> np.ndarray:
        R = np.asarray(v["R"], dtype=float)
        parts = [cholesky_corr_unfree(np.linalg.cholesky(R[b, b])) for b in blocks]
        return np.concatenate(parts) if parts else np.zeros(0)

    def z(v: Values) -> np.ndarray:
        return np.concatenate([np.asarray(v[k], dtype=float).reshape(-1) for k in keys])

    return NameMap(
        to_stan=(
            *(_identity(n) for n in same),
            Rule(
                "L_free",
                "Stan's unconstrained cholesky(R) of each correlated factor",
                ("R",),
                l_free,
            ),  # fmt: skip
            Rule("z", f"concatenated row-major {', '.join(keys)}", tuple(keys), z),
            *extra[0],
        ),
        to_package=(*(_identity(n) for n in same), *extra[1]),
    )


def _length_one(name: str) -> tuple[Rule, Rule]:
    """The package's scalar ``name`` as Stan's vector of length 1, both ways."""
    return (Rule(name, f"[{name}]", (name,), lambda v: np.asarray(v[name])[..., None]),
            Rule(name, f"{name}[1]", (name,), lambda s: np.asarray(s[name])[..., 0]))  # fmt: skip


def glmm_names(design: Design) -> NameMap:
    """The registry of ``lmm_glmm.stan`` for ``design`` (module docstring): the package's
    scalars ``alpha`` (the negative binomial's), ``sigma`` and ``nu`` (the Student-t's)
    are Stan's vectors of length 1 (length 0 for the other families, whose rules are then
    never used)."""
    rules = [_length_one(name) for name in ("alpha", "sigma", "nu")]
    extra = (tuple(r[0] for r in rules), tuple(r[1] for r in rules))
    return general_names(design, same=("beta", "sigs", "R"), extra=extra)


def marginal_stats_names(design: Design) -> NameMap:
    """The registry of ``lmm_marginal_stats.stan`` for a single-factor ``design``."""
    if len(design.factors) != 1:
        raise ValueError(
            "lmm_marginal_stats.stan takes exactly one grouping factor, found "
            f"{[f.name for f in design.factors]}"
        )
    (f,) = design.factors

    def l_corr(v: Values) -> np.ndarray:
        if not f.has_correlation:  # the program's unused 1 x 1 cholesky_factor_corr
            return np.ones(np.shape(v["R"])[:-2] + (1, 1))
        return np.linalg.cholesky(np.asarray(v["R"], dtype=float))

    same = ("beta", "sigma", "sigs", "R")
    source = "cholesky(R)" if f.has_correlation else "[[1]] (no correlation)"
    return NameMap(
        to_stan=(
            *(_identity(n) for n in same),
            Rule("L_corr", source, ("R",), l_corr),
            _identity("b", f"b_{f.key}"),
        ),
        to_package=(*(_identity(n) for n in same), _identity(f"b_{f.key}", "b")),
    )
