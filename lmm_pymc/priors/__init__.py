"""Every prior of the models, in one place: families, per-term priors, data-scale defaults.

A :class:`Priors` holds a prior for the fixed effects, for the random-effect sds, for the
residual sd and the LKJ shape, each overridable per term by the name the term has in the
posterior::

    Priors(fixed=Normal(0, 10), sigs=HalfNormal(5), sigma=HalfNormal(5), lkj_eta=2.0,
           terms={"beta[x]": Normal(0, 1),          # one fixed effect
                  "sigs[subject]": HalfNormal(2),   # every sd of a factor
                  "sigs[x|subject]": Exponential(1),  # one sd
                  "R[subject]": 4.0})               # the LKJ shape of a factor

``Priors()`` is the tutorial's Stan model (the preset :meth:`Priors.tutorial`, used by the
demo, the tutorial notebook, SBC and the Stan cross-check)::

    beta ~ Normal(0, 10)    sigma ~ HalfNormal(5)    sigs ~ HalfNormal(5)    R ~ LKJ(2)

:func:`default_priors` sets weakly informative priors from the data's scale (what
:func:`lmm_pymc.fit` uses unless told otherwise). With ``m_y, s_y`` the mean and sd of y
and ``m_k, s_k`` those of column k of X (or of a factor's Z)::

    slope k            beta[k] ~ Normal(0, 2.5 s_y / s_k)
    intercept          beta[1] ~ Normal(m_y, sqrt((2.5 s_y)^2 + sum_k (2.5 s_y m_k / s_k)^2))
    sd of an intercept sigs    ~ HalfNormal(2.5 s_y)
    sd of a slope k    sigs    ~ HalfNormal(2.5 s_y / s_k)
    residual sd        sigma   ~ HalfNormal(2.5 s_y)
    correlations       R       ~ LKJ(2)

The intercept's spread covers the slopes' priors at the predictors' means (the intercept
is y at x = 0, which may lie far from the data), as in bambi's defaults; the factor 2.5
follows brms and rstanarm. The priors shift and scale with y and x, so a fit does not
depend on the units of the data. A constant column k (no intercept in the formula) uses
its root mean square for ``s_k``.

A binary or count outcome (``family=``, :mod:`lmm_pymc.families`) has the same priors on
its link's scale, as rstanarm's and brms's defaults for GLMs: ``s_y = 1`` and ``m_y`` the
link of the mean response, and no ``sigma``::

    logit, probit, cloglog   m_y = g(mean of y), binomial g(successes / trials)
                             (half a success added, so that it stays inside (0, 1))
    log (poisson, negbinomial)   m_y = log(mean count)
    slope k            beta[k] ~ Normal(0, 2.5 / s_k)
    intercept          beta[1] ~ Normal(m_y, sqrt(2.5^2 + sum_k (2.5 m_k / s_k)^2))
    sds                sigs    ~ HalfNormal(2.5) (intercept), HalfNormal(2.5 / s_k) (slope)
    negbinomial shape  alpha   ~ Exponential(1)   (rstanarm's prior_aux; Priors.terms["alpha"])

An identity link (poisson) keeps the Gaussian's formulas on the counts' scale. The
Student-t outcome (``student``, identity link: robust residuals) has the Gaussian's priors
on the data's scale, ``sigma`` included, and its degrees of freedom brms's default::

    degrees of freedom nu      ~ Gamma(2, 0.1)    (shape, rate; Priors.terms["nu"])

Modules: :mod:`~lmm_pymc.priors.spec` (the value objects :class:`Prior`, :class:`Priors`),
:mod:`~lmm_pymc.priors.defaults` (:func:`default_priors`) and
:mod:`~lmm_pymc.priors.builders` (the PyMC variables, :meth:`Prior.create_variable`).
Importing the package loads no PyMC.
"""

from .defaults import SCALE, default_priors
from .spec import (
    FAMILIES,
    FAMILY_PARAMETERS,
    Exponential,
    Gamma,
    HalfNormal,
    HalfStudentT,
    Normal,
    Prior,
    Priors,
    ResolvedPriors,
    StudentT,
    parse_prior,
)

__all__ = [
    "FAMILIES",
    "FAMILY_PARAMETERS",
    "SCALE",
    "Exponential",
    "Gamma",
    "HalfNormal",
    "HalfStudentT",
    "Normal",
    "Prior",
    "Priors",
    "ResolvedPriors",
    "StudentT",
    "default_priors",
    "parse_prior",
]
