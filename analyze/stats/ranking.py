"""Rank the measures by |Kendall τ-b| with one target, and check each sign against the literature.

The expected sign of corr(measure, target) is the registry's direction for the measure (+1: larger measure,
larger gap) times the target's orientation (+1 for gaps and losses, −1 for test accuracy). A measure whose τ has
the opposite sign is marked ``reversed``; ``reversal_significant`` adds that its confidence interval (or, without a
bootstrap, its p-value at ``alpha``) excludes zero. A measure the registry does not know, or a target without an
orientation (``analyze.columns.target_badness``; ``target_better`` gives one), gets direction "unknown": it is
ranked by its τ like every other measure, and neither "as expected" nor "reversed".
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from analyze.columns import DEFAULT_TARGET
from analyze.stats._data import expected_sign, finished_runs, pick_targets
from analyze.stats.correlations import correlations
from analyze.defaults import CONFIDENCE


def rank_measures(
    ledger: pl.DataFrame,
    *,
    target: str = DEFAULT_TARGET,
    measures: Sequence[str] | None = None,
    resamples: int = 0,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    alpha: float = 0.05,
    target_better: str | None = None,
) -> pl.DataFrame:
    """One row per measure, sorted by |τ| (largest first); tied |τ| share a rank; undefined τ come last."""
    (target,) = pick_targets(finished_runs(ledger), target)
    corr = correlations(
        ledger, targets=[target], measures=measures, resamples=resamples, confidence=confidence, seed=seed
    )
    return rank_frame(corr, resamples=resamples, alpha=alpha, target_better=target_better)


def tau_significant(ci_low: float | None, ci_high: float | None, p: float | None, alpha: float) -> bool:
    """Whether τ differs from 0: its confidence interval [ci_low, ci_high] excludes 0 when there is one (the interval
    shown decides), else its p-value is below ``alpha``."""
    if ci_low is not None and ci_high is not None and np.isfinite(ci_low) and np.isfinite(ci_high):
        return bool(ci_low > 0 or ci_high < 0)
    return bool(p is not None and np.isfinite(p) and p < alpha)


def rank_frame(corr: pl.DataFrame, *, resamples: int = 0, alpha: float = 0.05,
               target_better: str | None = None) -> pl.DataFrame:
    """Add rank and direction columns to a one-target ``correlations`` frame and sort it by |τ|; ``target_better``
    ("lower" | "higher") orients a target ``analyze.columns.target_badness`` does not know."""
    tau = corr["kendall_tau"].to_numpy().astype(np.float64)
    abs_tau = np.where(np.isnan(tau), -1.0, np.abs(tau))  # undefined τ rank last and never push others down
    # competition ranking on |τ|: 1 + number of measures with a strictly larger |τ|
    rank = np.array([1 + int((abs_tau > a).sum()) for a in abs_tau])
    rank_list = [None if np.isnan(t) else int(r) for t, r in zip(tau, rank)]
    expected = [expected_sign(m, t, target_better) for m, t in zip(corr["measure"], corr["target"])]
    observed = [0 if np.isnan(t) else int(np.sign(t)) for t in tau]
    direction, reversed_, significant = [], [], []
    lo, hi, p = corr["kendall_ci_low"].to_list(), corr["kendall_ci_high"].to_list(), corr["kendall_p"].to_list()
    for e, o, t, l_, h_, p_ in zip(expected, observed, tau, lo, hi, p):
        if np.isnan(t):
            direction.append("undefined")
        elif e == 0:
            direction.append("unknown")
        elif o == 0:
            direction.append("none")
        else:
            direction.append("as expected" if o == e else "reversed")
        rev = direction[-1] == "reversed"
        reversed_.append(rev)
        significant.append(rev and tau_significant(l_ if resamples > 0 else None, h_ if resamples > 0 else None, p_, alpha))
    out = corr.with_columns(
        pl.Series("rank", rank_list, dtype=pl.Int64),
        pl.Series("expected_sign", expected, dtype=pl.Int64),
        pl.Series("observed_sign", observed, dtype=pl.Int64),
        pl.Series("direction", direction, dtype=pl.Utf8),
        pl.Series("reversed", reversed_, dtype=pl.Boolean),
        pl.Series("reversal_significant", significant, dtype=pl.Boolean),
        pl.Series("_abs", np.where(np.isnan(tau), -1.0, np.abs(tau))),
    )
    coef = {"kendall": "kendall_tau", "spearman": "spearman_rho", "pearson": "pearson_r"}
    coefs = [c for m, name in coef.items() for c in (name, f"{m}_p", f"{m}_ci_low", f"{m}_ci_high")]
    cols = ["rank", "measure", "target", "n", "n_missing", *coefs, "expected_sign", "observed_sign", "direction",
            "reversed", "reversal_significant", "note"]
    return out.sort(["_abs", "measure"], descending=[True, False]).select(cols)
