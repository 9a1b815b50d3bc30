"""A posterior beside lme4's fit of the same rows (one record of
``benchmarks/results/realdata_lme4.json``, REML, or ``realdata_glmer.json``, glmer's Laplace
fit of a binary or count outcome, without ``sigma``), and the sampler's diagnostics.

- fixed effects: ``z = (posterior mean - lme4 estimate) / posterior sd`` per effect, and the
  largest ``|z|``: how far, in posterior sds, the Bayesian and the REML point estimates lie
  apart (lme4's standard error is listed beside the posterior sd);
- variance parameters (``sigma``, every ``sigs``, every correlation in ``R``): REML's value
  beside the posterior mean, median and central 95% interval; no z (the posterior of an sd
  is skewed and REML's value is a mode, at 0 for a singular fit);
- diagnostics: divergences, NUTS steps per draw, and the smallest bulk ESS and largest
  r_hat over ``beta``, ``sigma``, ``sigs`` and the correlations lme4 estimates.
"""

from __future__ import annotations

#: central interval of the variance parameters
INTERVAL = 0.95


def _draws(post, variable: str, selection: dict):
    """One scalar's draws, (chain, draw)."""
    return post[variable].sel(selection) if selection else post[variable]


def scalars(reference: dict) -> list[tuple[str, str, dict]]:
    """Every compared scalar as (name, posterior variable, selection): the fixed effects,
    sigma, the sds and the correlations of the reference record."""
    out = [(f"beta[{n}]", "beta", {"fixed_effect": n}) for n in reference["fixed"]]
    if reference["sigma"] is not None:  # None: a binary or count outcome (glmer)
        out.append(("sigma", "sigma", {}))
    out += [(f"sigs[{n}]", "sigs", {"random_effect": n}) for n in reference["sigs"]]
    for pair in reference["correlations"]:
        first, second = pair.split(", ")
        out.append((f"R[{pair}]", "R", {"random_effect": first, "random_effect_": second}))
    return out


def fixed_effects(idata, reference: dict) -> dict[str, dict]:
    """Per fixed effect: lme4's estimate and standard error, the posterior mean and sd,
    and ``z = (mean - estimate) / sd``."""
    post = idata.posterior
    out = {}
    for name, ref in reference["fixed"].items():
        draws = post["beta"].sel(fixed_effect=name).values
        mean, sd = float(draws.mean()), float(draws.std(ddof=1))
        out[name] = {"lme4": ref["estimate"], "lme4_se": ref["se"], "mean": mean, "sd": sd,
                     "z": (mean - ref["estimate"]) / sd}  # fmt: skip
    return out


def max_abs_z(fixed: dict[str, dict]) -> float:
    """The largest ``|z|`` over the fixed effects."""
    return max(abs(v["z"]) for v in fixed.values())


def variance_parameters(idata, reference: dict) -> dict[str, dict]:
    """Per residual sd, random-effect sd and correlation: REML's value beside the
    posterior mean, median and central :data:`INTERVAL` interval."""
    import numpy as np

    post = idata.posterior
    values = {"sigma": reference["sigma"]}
    values |= {f"sigs[{n}]": v["sd"] for n, v in reference["sigs"].items()}
    values |= {f"R[{n}]": v["value"] for n, v in reference["correlations"].items()}
    tail = (1 - INTERVAL) / 2
    out = {}
    for name, variable, selection in scalars(reference):
        if variable == "beta":
            continue
        draws = _draws(post, variable, selection).values.reshape(-1)
        lo, median, hi = np.quantile(draws, [tail, 0.5, 1 - tail])
        out[name] = {"reml": values[name], "mean": float(draws.mean()), "median": float(median),
                     "interval": [float(lo), float(hi)],
                     "reml_inside": bool(lo <= values[name] <= hi)}  # fmt: skip
    return out


def diagnostics(idata, reference: dict) -> dict:
    """Divergences, NUTS steps per draw, min bulk ESS and max r_hat over the compared
    scalars (with the scalar where each extreme is reached)."""
    import arviz as az

    ess, r_hat = {}, {}
    for name, variable, selection in scalars(reference):
        draws = _draws(idata.posterior, variable, selection).values
        ess[name] = float(az.ess(draws, method="bulk"))
        r_hat[name] = float(az.rhat(draws))
    stats = idata.sample_stats
    steps = next((v for v in ("n_steps", "tree_size") if v in stats), None)
    worst_ess, worst_r_hat = min(ess, key=ess.get), max(r_hat, key=r_hat.get)
    return {
        "divergences": int(stats["diverging"].sum()),
        "steps_per_draw": float(stats[steps].mean()) if steps else None,
        "min_ess_bulk": ess[worst_ess],
        "min_ess_bulk_at": worst_ess,
        "max_r_hat": r_hat[worst_r_hat],
        "max_r_hat_at": worst_r_hat,
        "ess_bulk": ess,
        "r_hat": r_hat,
    }


def shifted(reference: dict, by_se: float) -> dict:
    """A copy of ``reference`` whose fixed-effect estimates are moved by ``by_se`` of their
    standard errors: what the comparison must catch (the tests' check that it can fail)."""
    import copy

    moved = copy.deepcopy(reference)
    for v in moved["fixed"].values():
        v["estimate"] += by_se * v["se"]
    return moved


def compare(idata, reference: dict) -> dict:
    """The whole comparison of one fit with its lme4 record."""
    fixed = fixed_effects(idata, reference)
    return {
        "fixed": fixed,
        "max_abs_z": max_abs_z(fixed),
        "max_abs_z_at": max(fixed, key=lambda n: abs(fixed[n]["z"])),
        "variance": variance_parameters(idata, reference),
        **diagnostics(idata, reference),
    }
