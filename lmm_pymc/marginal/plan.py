"""What a marginal fit integrates out and from which numbers: :class:`MarginalPlan`, made
once per fit and used by the model (:func:`lmm_pymc.build_model`), the sampler's defaults
and the exact draws of the integrated effects (:func:`lmm_pymc.marginal.add_random_effects`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..design import Design, GroupedStatistics, GroupingFactor, GroupStatistics
from .joint import JointStatistics, joint_statistics
from .statistics import CrossedStatistics, crossed_statistics

__all__ = ["CENTRE_INFORMATION", "MarginalPlan", "integrated_factor"]

#: A sampled factor of a crossed fit whose every effect has a data-to-prior precision
#: ratio (:meth:`~lmm_pymc.marginal.CrossedStatistics.information`) of at least this is
#: sampled centred on the fixed effects (:attr:`MarginalPlan.centred`); others non-centred.
#: Measured (docs/fast-path.md): at a ratio of 124 (1000 rows per item) the centred items
#: took 20 leapfrog steps per draw and a min bulk ESS of 1491 in 4 x 500 draws, the
#: non-centred 24 and 814; at 1089 (10^4 rows per item) the non-centred fit had not
#: finished tuning after 19 minutes. At 60 rows per item the non-centred items mix better.
CENTRE_INFORMATION = 100.0


def integrated_factor(
    data: Design | GroupedStatistics, integrate: str | None = None
) -> GroupingFactor:
    """The grouping factor whose random effects ``marginal`` integrates out: ``integrate``
    (a factor's name, as in the formula) or the one with the most levels (the first of
    equals)."""
    factors = data.factors
    if integrate is None:
        return max(factors, key=lambda f: f.n_levels)
    names = [f.name for f in factors]
    if integrate not in names:
        raise ValueError(
            f"integrate must name a grouping factor among {names}, found {integrate!r}"
        )
    return factors[names.index(integrate)]


@dataclass(frozen=True)
class MarginalPlan:
    """How a ``marginal`` fit uses its data.

    Attributes
    ----------
    grouped : GroupedStatistics
        The integrated factor's per-group sums (with one factor: everything the likelihood
        needs; with crossed factors: its rows per level and ``Z'Z``).
    factors : tuple of GroupingFactor
        Every grouping factor of the model, in the formula's order.
    design : Design or None
        The rows, when the likelihood or the draws need them (crossed factors); None when
        per-group sums suffice.
    crossed : CrossedStatistics or None
        With crossed factors: the cross-products that give the likelihood without the rows
        (None beyond :data:`~lmm_pymc.marginal.CROSS_PRODUCT_LIMIT`: one pass over the rows
        per gradient).
    joint : JointStatistics or None
        With two or more factors and at most :data:`~lmm_pymc.marginal.JOINT_LIMIT`
        random effects in total, when ``integrate`` is not given: every factor's effects
        are integrated out together (:mod:`lmm_pymc.marginal.joint`); ``grouped`` then
        only names the factor with the most levels.
    """

    grouped: GroupedStatistics
    factors: tuple[GroupingFactor, ...]
    design: Design | None = None
    crossed: CrossedStatistics | None = None
    joint: JointStatistics | None = None

    @classmethod
    def from_data(
        cls, data: Design | GroupedStatistics, integrate: str | None = None
    ) -> MarginalPlan:
        """The plan of ``data`` (a design with outcome or per-group sums), integrating out
        ``integrate`` (default: every factor's effects jointly where they are few, else the
        factor with the most levels)."""
        if isinstance(data, GroupedStatistics):  # the sums were made for data.factor
            if integrate is not None and integrate != data.factor.name:
                raise ValueError(
                    f"integrate must be {data.factor.name!r}, the factor the per-group sums "
                    f"were made for, found {integrate!r}; make the sums for {integrate!r}"
                )
            return cls(grouped=data, factors=data.factors, crossed=data.crossed)
        factor = integrated_factor(data, integrate)
        if len(data.factors) == 1:
            return cls(grouped=data.grouped_statistics(), factors=data.factors)
        stats = GroupStatistics.from_rows(data.X, factor.Z, data.y, factor.index, factor.n_levels)
        grouped = GroupedStatistics(stats, data.fixed_names, factor)
        joint = joint_statistics(data) if integrate is None else None
        if joint is not None:
            return cls(grouped=grouped, factors=data.factors, design=data, joint=joint)
        return cls(
            grouped=grouped,
            factors=data.factors,
            design=data,
            crossed=crossed_statistics(data, factor),
        )

    @property
    def integrated(self) -> GroupingFactor:
        """The factor whose random effects are integrated out (with ``joint``: the one with
        the most levels, among all integrated out)."""
        return self.grouped.factor

    @property
    def integrated_names(self) -> tuple[str, ...]:
        """The names of every factor whose random effects are integrated out."""
        if self.joint is not None:
            return tuple(f.name for f in self.factors)
        return (self.integrated.name,)

    @property
    def sampled(self) -> tuple[GroupingFactor, ...]:
        """The other factors, whose random effects are sampled."""
        return tuple(f for f in self.factors if f.name not in self.integrated_names)

    @property
    def likelihood(self) -> str:
        """``"joint"`` (every factor's effects at once), ``"grouped"`` (per-group sums),
        ``"crossed"`` (cross-products) or ``"rows"`` (one pass over the rows per gradient)."""
        if self.joint is not None:
            return "joint"
        if not self.sampled:
            return "grouped"
        return "crossed" if self.crossed is not None else "rows"

    @property
    def centred(self) -> tuple[str, ...]:
        """The sampled factors whose effects are sampled centred on the fixed effects
        (``coef_<key>``, :func:`lmm_pymc.build_model`): those of a crossed fit from
        cross-products whose every effect's rows outweigh its prior
        (:data:`CENTRE_INFORMATION`); the others are sampled non-centred."""
        if self.crossed is None:
            return ()
        rich = [bool(np.all(self.crossed.information(o) >= CENTRE_INFORMATION))
                for o in self.crossed.others]  # fmt: skip
        return tuple(o.name for o, r in zip(self.crossed.others, rich, strict=True) if r)

    @property
    def n_groups(self) -> int:
        """The fewest levels of any factor (sets the sampler's default ``target_accept``)."""
        return min(f.n_levels for f in self.factors)
