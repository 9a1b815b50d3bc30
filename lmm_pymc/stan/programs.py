"""The reference Stan programs and their data dictionaries, built from a design.

``stan_reference/`` holds six programs:

===========================  ===============================  ==============================
file                         mirrors                          designs
===========================  ===============================  ==============================
``lmm_lkj_corr.stan``        ``build_model(d, "lkj_corr")``   the tutorial's (:data:`TUTORIAL`)
``lmm_cholesky.stan``        ``build_model(d, "cholesky")``   the tutorial's
``lmm_marginal.stan``        ``build_model(d, "marginal")``   the tutorial's
``lmm_general.stan``         ``build_model(d, "cholesky")``   any: crossed factors, any q, ``||``
``lmm_marginal_stats.stan``  ``build_model(d, "marginal")``   one grouping factor, any p and q
``lmm_glmm.stan``            ``build_model(d, "cholesky",     any, binary, count, Student-t
                             family=..., link=...)``
===========================  ===============================  ==============================

The tutorial's programs take ``N, x, y, N_group, group_id`` (:func:`tutorial_data`), the
general one ``N, p, X, y, F, q, J, correlated, Z, g`` (:func:`general_data`), the
sufficient-statistics one only per-group sums ``J, p, q, correlated, n, XtX, XtZ, ZtZ, Xty,
Zty, yty`` (:func:`marginal_stats_data`, no rows), the generalised one the general one's
with ``family, link, y, y_real, trials`` codes, counts or reals (:func:`glmm_data`);
every program takes the prior hyperparameters of :class:`~lmm_pymc.priors.Priors` as data,
so one ``Priors`` drives both backends. :func:`parameters_block_names` reads the names a program declares in its
``parameters`` block.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import tutorial
from ..design import Design, GroupedStatistics
from ..priors import FAMILY_PARAMETERS, Priors

__all__ = [
    "GENERAL",
    "GLMM",
    "GLMM_FAMILIES",
    "LINK_CODES",
    "MARGINAL_STATS",
    "TUTORIAL",
    "check_tutorial_design",
    "general_data",
    "glmm_data",
    "is_tutorial_design",
    "marginal_stats_data",
    "parameters_block_names",
    "stan_data",
    "stan_file",
    "stan_reference_dir",
    "tutorial_prior_data",
    "tutorial_data",
]

#: The tutorial's programs by the parametrization each mirrors.
TUTORIAL: dict[str, str] = {
    "lkj_corr": "lmm_lkj_corr",
    "cholesky": "lmm_cholesky",
    "marginal": "lmm_marginal",
}
#: The general program (mirrors ``cholesky`` for any design).
GENERAL = "lmm_general"
#: The marginal model from per-group sufficient statistics (any p, q; one factor).
MARGINAL_STATS = "lmm_marginal_stats"
#: The generalised program (mirrors ``cholesky`` for binary, count and Student-t outcomes,
#: any design).
GLMM = "lmm_glmm"
#: ``lmm_glmm.stan``'s family codes (the Gaussian family is ``lmm_general.stan``'s).
GLMM_FAMILIES = {"bernoulli": 1, "binomial": 2, "poisson": 3, "negbinomial": 4, "student": 5}
#: ``lmm_glmm.stan``'s link codes.
LINK_CODES = {"identity": 1, "log": 2, "logit": 3, "probit": 4, "cloglog": 5}


# ----------------------------------------------------------------------------- files
def stan_reference_dir() -> Path:
    """The folder holding the reference ``.stan`` files.

    An installed wheel carries them as ``lmm_pymc/stan_reference``; a source checkout has
    them in ``stan_reference/`` at the repository root. The package copy wins.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "stan_reference", package.parent / "stan_reference"):
        if candidate.is_dir() and any(candidate.glob("*.stan")):
            return candidate
    raise FileNotFoundError(
        f"stan_reference folder not found: looked in {package / 'stan_reference'} (installed "
        f"wheel) and {package.parent / 'stan_reference'} (source checkout)"
    )


def stan_file(name: str | os.PathLike) -> Path:
    """Path of a reference Stan program.

    Parameters
    ----------
    name : str or path
        A parametrization or pair name (``"cholesky"``, ``"general"``), a file stem
        (``"lmm_cholesky"``), a file name (``"lmm_cholesky.stan"``) or the path of any
        existing ``.stan`` file.

    Examples
    --------
    >>> stan_file("lkj_corr").name
    'lmm_lkj_corr.stan'
    """
    path = Path(name)
    if path.suffix == ".stan" and path.is_file():
        return path
    folder = stan_reference_dir()
    stem = path.name.removesuffix(".stan")
    for candidate in (folder / f"{stem}.stan", folder / f"lmm_{stem}.stan"):
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in folder.glob("*.stan"))
    raise ValueError(
        f"name must be a parametrization, a reference Stan file or a .stan path, found "
        f"{str(name)!r}; reference files in {folder}: {found}"
    )


def parameters_block_names(program_code: str) -> set[str]:
    """Names declared in the ``parameters { ... }`` block of a Stan program.

    >>> sorted(parameters_block_names(stan_file("general").read_text()))
    ['L_free', 'beta', 'sigma', 'sigs', 'z']
    """
    match = re.search(r"(?m)^\s*parameters\s*\{", program_code)
    if match is None:
        return set()
    depth, i = 1, match.end()
    while depth and i < len(program_code):
        depth += {"{": 1, "}": -1}.get(program_code[i], 0)
        i += 1
    body = re.sub(r"//[^\n]*", "", program_code[match.end() : i - 1])
    return set(re.findall(r"([A-Za-z]\w*)\s*;", body))


# ------------------------------------------------------------------------------ data
def is_tutorial_design(design: Design) -> bool:
    """Whether ``design`` is ``y ~ 1 + x + (1 + x | group_id)`` (any rows and groups)."""
    if len(design.factors) != 1:
        return False
    (f,) = design.factors
    return (
        design.fixed_names == ("intercept", "x")
        and f.name == tutorial.GROUP
        and f.effect_names == ("intercept", "x")
        and f.correlated
        and np.array_equal(f.Z, design.X)
        and bool(np.all(design.X[:, 0] == 1.0))
    )


def check_tutorial_design(design: Design) -> None:
    """``ValueError`` unless ``design`` is the tutorial's (see :func:`is_tutorial_design`)."""
    if not is_tutorial_design(design):
        raise ValueError(
            f"the tutorial's Stan programs ({', '.join(TUTORIAL.values())}) need the design of "
            f"{tutorial.FORMULA!r}, found formula {design.formula!r} with fixed effects "
            f"{list(design.fixed_names)} and random effects {list(design.terms)}; use the "
            f"general program (program='general') for other designs"
        )


def _checked(design: Design, priors: Priors | None) -> Priors:
    if not isinstance(design, Design):
        raise TypeError(f"design must be a lmm_pymc.Design, found {type(design).__name__}")
    if design.y is None:
        raise ValueError("design must carry an outcome y for Stan, found y=None")
    return _checked_priors(priors)


def _checked_priors(priors: Priors | None) -> Priors:
    priors = Priors() if priors is None else priors
    if not isinstance(priors, Priors):
        raise TypeError(f"priors must be a lmm_pymc.Priors, found {type(priors).__name__}")
    return priors


def tutorial_prior_data(priors: Priors) -> dict[str, float]:
    """The prior data of the tutorial's Stan programs (``fixed_mu``, ``fixed_sd``,
    ``residual_sd``, ``group_sd``, ``lkj_eta``): one number per prior, so they take the
    tutorial's families only (normal fixed effects, half-normal sds, no per-term priors)."""
    tutorial_families = (priors.fixed.family == "normal" and priors.sigs.family == "halfnormal"
                         and priors.sigma.family == "halfnormal" and not priors.terms)  # fmt: skip
    if not tutorial_families:
        raise ValueError(
            "the tutorial's Stan programs take the tutorial's prior families only (normal "
            "fixed effects, half-normal sds, no per-term priors), found "
            f"{priors!r}; use the general program (program='general')"
        )
    return {
        "fixed_mu": priors.fixed.kwargs["mu"],
        "fixed_sd": priors.fixed.kwargs["sigma"],
        "residual_sd": priors.sigma.kwargs["sigma"],
        "group_sd": priors.sigs.kwargs["sigma"],
        "lkj_eta": priors.lkj_eta,
    }


#: Family codes of the programs that take per-term priors (``prior_lpdf`` in the program).
FAMILY_CODES = {"normal": 1, "student_t": 2, "halfnormal": 3, "halfstudent_t": 4,
                "exponential": 5, "gamma": 6}  # fmt: skip


def _codes(priors_: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(K,) family codes and (K, 3) zero-padded parameters of a sequence of priors."""
    par = np.zeros((len(priors_), 3))
    for k, prior in enumerate(priors_):
        par[k, : len(prior.params)] = prior.params
    return np.array([FAMILY_CODES[p.family] for p in priors_], dtype=np.int64), par


def prior_data(
    fixed_names: Sequence[str],
    factors: Sequence,
    priors: Priors | None = None,
    parameters: Sequence[str] = ("sigma",),
) -> dict[str, object]:
    """Per-parameter priors of the programs that take any design (``lmm_general.stan``,
    ``lmm_marginal_stats.stan``, ``lmm_glmm.stan``): ``fixed_family``/``fixed_par`` per
    fixed effect, ``sd_family``/``sd_par`` per random-effect sd (factor after factor),
    ``lkj_eta`` per factor and ``<name>_family``/``<name>_par`` of each of the outcome
    family's own ``parameters`` (``sigma``, ``alpha``, ``nu``) (:data:`FAMILY_CODES`)."""
    resolved = _checked_priors(priors).resolve(fixed_names, factors, tuple(parameters))
    fixed_family, fixed_par = _codes(resolved.fixed)
    sd_family, sd_par = _codes([p for f in factors for p in resolved.sigs[f.name]])
    out: dict[str, object] = {
        "fixed_family": fixed_family, "fixed_par": fixed_par,
        "sd_family": sd_family, "sd_par": sd_par,
        "lkj_eta": np.array([resolved.etas[f.name] for f in factors], dtype=float),
    }  # fmt: skip
    for name in parameters:
        family_code, par = _codes([resolved.parameters[name]])
        out[f"{name}_family"], out[f"{name}_par"] = int(family_code[0]), par[0]
    return out


def tutorial_data(design: Design, priors: Priors | None = None) -> dict[str, object]:
    """Data of the tutorial's programs: ``N`` rows, ``x`` and ``y``, ``N_group`` groups,
    ``group_id`` the 1-based position of each row's group in the factor's ``labels`` (Stan's
    group ``j`` is label ``labels[j - 1]``) and the priors.

    Examples
    --------
    >>> from lmm_pymc import simulate
    >>> d = tutorial_data(simulate(seed=1).design)
    >>> d["N"], d["N_group"], d["group_id"][:3].tolist(), d["lkj_eta"]
    (30, 3, [1, 1, 1], 2.0)
    """
    priors = _checked(design, priors)
    check_tutorial_design(design)
    (f,) = design.factors
    return {
        "N": design.n_obs,
        "x": design.X[:, 1].astype(float),
        "y": design.y.astype(float),
        "N_group": f.n_levels,
        "group_id": (f.index + 1).astype(np.int64),
        **tutorial_prior_data(priors),
    }


def _effects_data(design: Design) -> dict[str, object]:
    """The rows' fixed and random-effects designs of the programs that take any design."""
    fs = design.factors
    return {
        "N": design.n_obs,
        "p": int(design.X.shape[1]),
        "X": design.X.astype(float),
        "F": len(fs),
        "q": np.array([f.q for f in fs], dtype=np.int64),
        "J": np.array([f.n_levels for f in fs], dtype=np.int64),
        "correlated": np.array([int(f.correlated) for f in fs], dtype=np.int64),
        "Z": np.column_stack([f.Z for f in fs]).astype(float),
        "g": (np.column_stack([f.index for f in fs]) + 1).astype(np.int64),
    }


def general_data(
    design: Design, priors: Priors | None = None, *, add_jacobian: bool = True
) -> dict[str, object]:
    """Data of ``lmm_general.stan`` for any design with outcome.

    ``Z`` holds the per-row random-effects designs side by side (factor after factor, the
    order of ``design.terms``); ``g[i, f]`` is the 1-based position of row ``i``'s level in
    ``design.factors[f].labels``. ``add_jacobian=False`` puts the density on the strictly
    lower entries of each Cholesky factor (for the cross-check), ``True`` on the
    unconstrained ``L_free`` (for sampling).
    """
    priors = _checked(design, priors)
    return {
        **_effects_data(design),
        "y": design.y.astype(float),
        **prior_data(design.fixed_names, design.factors, priors),
        "add_jacobian": int(add_jacobian),
    }


def glmm_data(
    design: Design, priors: Priors | None = None, *, family=None, add_jacobian: bool = True
) -> dict[str, object]:
    """Data of ``lmm_glmm.stan``: :func:`general_data`'s designs, the outcome family's and
    link's codes (:data:`GLMM_FAMILIES`, :data:`LINK_CODES`), ``y`` as counts and
    ``y_real`` as reals (the Student-t's outcome; each 0 where the family does not read it),
    ``trials`` (the binomial's; 1 per row otherwise) and the priors of the negative
    binomial's ``alpha`` and the Student-t's ``sigma`` and ``nu`` (``<name>_family``,
    ``<name>_par``; for a family without the parameter a default the program reads but
    does not use: :data:`~lmm_pymc.priors.FAMILY_PARAMETERS`, ``Priors.sigma``).

    Examples
    --------
    >>> from lmm_pymc import simulate
    >>> sim = simulate(seed=1, family="poisson", beta=[0.5, 0.2])
    >>> d = glmm_data(sim.design, family=sim.family)
    >>> d["family"], d["link"], d["y"].dtype.kind, d["alpha_family"]
    (3, 2, 'i', 5)
    """
    from ..families import family as as_family

    priors, fam = _checked(design, priors), as_family(family)
    if fam.name not in GLMM_FAMILIES:
        raise ValueError(
            f"family must be one of {list(GLMM_FAMILIES)} for {GLMM}.stan (the Gaussian "
            f"family is {GENERAL}.stan's), found {fam.name!r}"
        )
    trials = np.ones(design.n_obs) if design.trials is None else design.trials
    real = "nu" in fam.parameters  # the Student-t: a real outcome
    out = {
        **_effects_data(design),
        "family": GLMM_FAMILIES[fam.name],
        "link": LINK_CODES[fam.link],
        "y": np.zeros(design.n_obs, np.int64) if real else np.rint(design.y).astype(np.int64),
        "y_real": design.y.astype(float) if real else np.zeros(design.n_obs),
        "trials": np.rint(trials).astype(np.int64),
        **prior_data(design.fixed_names, design.factors, priors, fam.parameters),
        "add_jacobian": int(add_jacobian),
    }
    for name in ("alpha", "sigma", "nu"):
        if name not in fam.parameters:  # a prior the program reads but does not use
            code, par = _codes([FAMILY_PARAMETERS.get(name, priors.sigma)])
            out[f"{name}_family"], out[f"{name}_par"] = int(code[0]), par[0]
    return out


def marginal_stats_data(
    data: Design | GroupedStatistics, priors: Priors | None = None
) -> dict[str, object]:
    """Data of ``lmm_marginal_stats.stan``: the per-group sums of a single-factor design
    (or the sums themselves, no rows needed) and the priors.

    ``J`` groups in the order of the factor's ``labels``, ``p`` fixed and ``q`` random
    effects, ``correlated`` 1 where the factor has an LKJ correlation (correlated, q >= 2),
    ``n`` (J,), ``XtX`` (J, p, p), ``XtZ`` (J, p, q), ``ZtZ`` (J, q, q), ``Xty`` (J, p),
    ``Zty`` (J, q), ``yty`` (J,): :class:`~lmm_pymc.design.GroupStatistics`. Its size does
    not depend on the number of rows.

    Examples
    --------
    >>> from lmm_pymc import simulate
    >>> d = marginal_stats_data(simulate(seed=1).design)
    >>> d["J"], d["p"], d["q"], d["correlated"], d["XtZ"].shape
    (3, 2, 2, 1, (3, 2, 2))
    """
    if isinstance(data, Design):
        priors = _checked(data, priors)
        data = data.grouped_statistics()
    elif isinstance(data, GroupedStatistics):
        priors = _checked_priors(priors)
    else:
        raise TypeError(
            f"data must be a lmm_pymc.Design or GroupedStatistics, found {type(data).__name__}"
        )
    stats, f = data.statistics, data.factor
    J, p, q = stats.check()
    arrays = {name: np.asarray(getattr(stats, name), dtype=float)
              for name in ("n", "XtX", "XtZ", "ZtZ", "Xty", "Zty", "yty")}  # fmt: skip
    terms = prior_data(data.fixed_names, (f,), priors)
    terms["lkj_eta"] = float(terms["lkj_eta"][0])  # one factor: a scalar
    return {"J": J, "p": p, "q": q, "correlated": int(f.has_correlation), **arrays,
            **terms}  # fmt: skip


def stan_data(
    design: Design,
    priors: Priors | None = None,
    *,
    program: str | None = None,
    add_jacobian: bool = True,
    family=None,
) -> dict[str, object]:
    """The data dictionary of a reference program for ``design``.

    ``program`` (a name accepted by :func:`stan_file`) defaults to the tutorial's programs
    for the tutorial's design, to the general program for any other and to the generalised
    program ``lmm_glmm`` for a non-Gaussian ``family`` (:func:`lmm_pymc.families.family`).
    """
    from ..families import family as as_family

    fam = as_family(family)
    if program is None:
        stem = GLMM if not fam.is_gaussian else None
        general = not (isinstance(design, Design) and is_tutorial_design(design))
    else:
        stem = stan_file(program).stem
        general = stem == GENERAL
    if stem == MARGINAL_STATS:
        return marginal_stats_data(design, priors)
    if stem == GLMM:
        return glmm_data(design, priors, family=fam, add_jacobian=add_jacobian)
    if general:
        return general_data(design, priors, add_jacobian=add_jacobian)
    return tutorial_data(design, priors)
