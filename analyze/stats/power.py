"""Effects sized against the noise: the smallest difference in the target a sweep could detect, per intervention.

Design. For an intervention with level a compared with its reference level b, the runs are matched by *block*: the
configuration of every other ``hp.*`` column (so in a full grid, batch size is compared at equal optimizer, lr, …).
With C blocks holding both levels, n_ac and n_bc runs (seeds) of each in block c, the estimated effect is the
precision-weighted mean of the within-block differences (a fixed-effect meta-analysis over blocks, so a block with one
run of each level counts less than one with twenty):

    d̂ = Σ_c w_c (ȳ_ac − ȳ_bc) / Σ_c w_c,   w_c = 1 / (1/n_ac + 1/n_bc),   Var d̂ = σ² k²,   k² = 1 / Σ_c w_c

(k² = 1/n_a + 1/n_b for a balanced grid, n_a = Σ_c n_ac). σ² is the per-run noise of the target:

    σ² = max(s²_seeds, p(1 − p)/n_test)

s²_seeds is the pooled seed-to-seed variance of the target within configurations (runs equal in every ``hp.*``
column; df = Σ_config (n_config − 1)); p(1 − p)/n_test is the binomial variance of an accuracy measured on n_test
test points (p = mean ``gen.test_acc``; n_test from ``hp.n_test`` or the ``n_test`` argument; accuracy targets
only: ``gen.test_acc``, ``gen.test_err``, ``gen.gap_acc``): two levels can never be told apart more finely than the
test set allows (df stays that of s²_seeds, which errs towards a larger MDE). Without a configuration run twice, σ²
is the binomial term alone (df = ∞), a lower bound of the noise (``sigma_source`` says which). The seed noise is
pooled over configurations: it is assumed the same in each.

Test: T = d̂ / (σ̂ k) against Student's t with df degrees of freedom (two-sided, level alpha); CI d̂ ± t_{1−α/2,df} σ̂ k.
Minimum detectable effect (MDE): the δ at which that test rejects with probability ``power``,

    P(|T| > t_{1−α/2,df}) = power,   T ~ noncentral t(df, λ = δ / (σ k)),

solved exactly for λ (``scipy.stats.nct``; normal for df = ∞), δ = λ σ k. For large df this is the textbook
δ ≈ (z_{1−α/2} + z_power) σ k. Defaults alpha = 0.05, power = 0.8 (Cohen 1988).

A difference that is not significant is never called absent: ``null_verdict`` says "undecided (design could detect
>= MDE)" unless the (1 − 2α) CI lies inside ±effect for a stated effect in question (two one-sided tests, TOST;
Schuirmann 1987). ``claim_verdict`` applies the same rule to a paper's claim: reproduced / not reproduced /
undecided (design too weak: detectable effect X vs paper's Y).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import polars as pl
from scipy import optimize, special, stats

from analyze.columns import HP
from analyze.stats._data import StatsError, as_float, finished_runs, group_codes, pick_targets
from analyze.stats.flags import reference_value
from analyze.stats.interventions import NOT_AN_INTERVENTION, Intervention, interventions, level_label

ALPHA = 0.05
POWER = 0.8
ACCURACY_TARGETS = ("gen.test_acc", "gen.test_err", "gen.gap_acc")
TEST_ACC = "gen.test_acc"
N_TEST = "hp.n_test"

SCHEMA: dict[str, pl.DataType] = {
    "target": pl.Utf8, "intervention": pl.Utf8, "axis": pl.Utf8, "level": pl.Utf8, "reference": pl.Utf8,
    "n_level": pl.Int64, "n_reference": pl.Int64, "n_blocks": pl.Int64, "sigma": pl.Float64, "sigma_source": pl.Utf8,
    "df": pl.Float64, "mde": pl.Float64, "diff": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    "p": pl.Float64, "decision": pl.Utf8,
}


def detection_power(delta: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """P(|T| > t_{1−α/2,df}) for T ~ noncentral t(df, delta/se): the power of the two-sided t-test (normal at df = ∞)."""
    lam = abs(delta) / se
    if math.isinf(df):
        c = stats.norm.ppf(1 - alpha / 2)
        return float(stats.norm.sf(c - lam) + stats.norm.cdf(-c - lam))
    c = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(c, df, lam) + stats.nct.cdf(-c, df, lam))


def detectable_difference(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The minimum detectable effect δ (module docstring) for a difference estimated with standard error ``se``
    = σ·k on ``df`` degrees of freedom: ``detection_power(δ, se, df, alpha) == power``."""
    if not (se > 0 and math.isfinite(se)):
        raise StatsError(f"detectable difference: the standard error must be a positive number, got {se}")
    if not df > 0:
        raise StatsError(f"detectable difference: needs at least 1 degree of freedom for the noise, got {df}")
    if not 0 < alpha < 1 or not alpha / 2 < power < 1:
        raise StatsError(f"detectable difference: alpha {alpha} must be in (0, 1) and power {power} in (alpha/2, 1)")
    hi = 1.0
    while detection_power(hi, 1.0, df, alpha) < power:
        hi *= 2.0
    lam = optimize.brentq(lambda x: detection_power(x, 1.0, df, alpha) - power, 0.0, hi, xtol=1e-10)
    return float(lam * se)


def seed_spread(y: np.ndarray, configs: np.ndarray) -> tuple[float | None, int]:
    """(pooled within-configuration variance s²_seeds, its degrees of freedom Σ (n_config − 1)); (None, 0) when no
    configuration has two finite values."""
    ok = np.isfinite(y)
    _, inv = np.unique(configs[ok], return_inverse=True)
    v = y[ok]
    n = np.bincount(inv)
    means = np.bincount(inv, weights=v) / np.maximum(n, 1)
    ss = float(np.bincount(inv, weights=(v - means[inv]) ** 2).sum())
    df = int((n - 1)[n >= 2].sum())
    return (ss / df, df) if df else (None, 0)


def binomial_variance(test_acc: np.ndarray, n_test: float | None) -> float | None:
    """p(1 − p)/n_test with p the mean finite test accuracy; None without a test-set size or an accuracy."""
    acc = test_acc[np.isfinite(test_acc)]
    if n_test is None or not n_test > 0 or acc.size == 0:
        return None
    p = float(np.clip(acc.mean(), 0.0, 1.0))
    return p * (1.0 - p) / float(n_test)


def noise(y: np.ndarray, configs: np.ndarray, binomial: float | None) -> tuple[float, float, str]:
    """(σ, df, source) of the per-run noise: σ² = max(s²_seeds, binomial) (module docstring)."""
    s2, df = seed_spread(y, configs)
    if s2 is None:
        if binomial is None:
            raise StatsError("detectable effect: no configuration was run with two seeds and the test-set size is "
                             "unknown; run ≥ 2 seeds per configuration (e.g. --seeds 0-2) or give hp.n_test / --n-test")
        return math.sqrt(binomial), math.inf, "binomial only (no configuration has 2 seeds; a lower bound)"
    if binomial is not None and binomial > s2:
        return math.sqrt(binomial), float(df), "test-set binomial noise (larger than the seed spread)"
    return math.sqrt(s2), float(df), "seed-to-seed spread"


def blocked_difference(y: np.ndarray, is_level: np.ndarray, is_reference: np.ndarray, blocks: np.ndarray) -> tuple[float, float, int, int, int] | None:
    """(d̂, k, C, n_level, n_reference) over the blocks holding both levels (module docstring); None when no block does."""
    ok = np.isfinite(y)
    _, inv = np.unique(blocks, return_inverse=True)
    size = int(inv.max()) + 1 if inv.size else 0
    a, b = ok & is_level, ok & is_reference
    n_a = np.bincount(inv[a], minlength=size)
    n_b = np.bincount(inv[b], minlength=size)
    both = (n_a > 0) & (n_b > 0)
    if not both.any():
        return None
    mean_a = np.bincount(inv[a], weights=y[a], minlength=size)[both] / n_a[both]
    mean_b = np.bincount(inv[b], weights=y[b], minlength=size)[both] / n_b[both]
    w = 1.0 / (1.0 / n_a[both] + 1.0 / n_b[both])
    diff = float(np.dot(w, mean_a - mean_b) / w.sum())
    return diff, float(1.0 / math.sqrt(w.sum())), int(both.sum()), int(n_a[both].sum()), int(n_b[both].sum())


def difference_test(diff: float, se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> dict[str, float | str]:
    """mde, diff, ci_low, ci_high, p and decision of an estimated difference d̂ = ``diff`` with standard error ``se``
    on ``df`` degrees of freedom (two-sided t-test at ``alpha``; module docstring)."""
    mde = detectable_difference(se, df, alpha, power)
    lo, hi, p = difference_interval(diff, se, df, alpha)
    return {"mde": mde, "diff": diff, "ci_low": lo, "ci_high": hi, "p": p, "decision": null_verdict(lo, hi, mde)}


def difference_interval(diff: float, se: float, df: float, alpha: float = ALPHA) -> tuple[float, float, float]:
    """(d̂ − t_{1−α/2,df}·se, d̂ + t_{1−α/2,df}·se, two-sided p of d̂/se against t_df); normal at df = ∞."""
    if math.isinf(df):
        crit, p = float(special.ndtri(1 - alpha / 2)), float(2 * special.ndtr(-abs(diff / se)))
    else:  # Student's t quantile and tail (scipy.special: the same values as scipy.stats.t, without freezing it)
        crit, p = float(special.stdtrit(df, 1 - alpha / 2)), float(2 * special.stdtr(df, -abs(diff / se)))
    return diff - crit * se, diff + crit * se, p


def detectable_effects(
    ledger: pl.DataFrame,
    *,
    target: str,
    axes: Sequence[str] | None = None,
    n_test: int | None = None,
    references: Mapping[str, str] | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
) -> pl.DataFrame:
    """One row per (intervention, level ≠ reference) of the FINISHED runs: the MDE of the target (``mde``), the
    noise it rests on (``sigma``, ``sigma_source``, ``df``), the observed difference level − reference (``diff``,
    its (1 − alpha) CI and p) and ``decision``: "differs" when the CI excludes 0, else "undecided (design could
    detect >= MDE)". ``references`` maps an intervention's axis (``Intervention.name``) to its reference level
    (``level_label`` text); default: the break flags' baseline (``analyze.stats.flags.reference_value``) for a
    one-column intervention, the level with the most runs (ties: the first in sorted order) for a group."""
    runs = finished_runs(ledger)
    (target,) = pick_targets(runs, target)
    y = as_float(runs, [target])[:, 0]
    hp = [c for c in runs.columns if c.startswith(HP) and c not in NOT_AN_INTERVENTION]
    configs = group_codes(runs, hp)
    binomial = None
    if target in ACCURACY_TARGETS and TEST_ACC in runs.columns:
        binomial = binomial_variance(as_float(runs, [TEST_ACC])[:, 0], _n_test(runs, n_test))
    sigma, df, source = noise(y, configs, binomial)
    rows = []
    for iv in interventions(runs, axes):
        levels = iv.levels(runs)
        blocks = group_codes(runs, [c for c in hp if c not in iv.axes])
        reference = _reference(iv, runs, levels, references)
        for level in sorted(set(levels.tolist()) - {reference}, key=_sort_key):
            found = blocked_difference(y, levels == level, levels == reference, blocks)
            if found is None:
                continue
            diff, k, n_blocks, n_a, n_b = found
            rows.append({
                "target": target, "intervention": iv.label, "axis": iv.name, "level": level, "reference": reference,
                "n_level": n_a, "n_reference": n_b, "n_blocks": n_blocks, "sigma": sigma, "sigma_source": source,
                "df": df, **difference_test(diff, sigma * k, df, alpha, power),
            })
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)


def _n_test(runs: pl.DataFrame, n_test: int | None) -> float | None:
    if N_TEST in runs.columns:
        sizes = as_float(runs, [N_TEST])[:, 0]
        sizes = sizes[np.isfinite(sizes)]
        if sizes.size:
            return float(np.median(sizes))
    return None if n_test is None else float(n_test)


def _sort_key(level: str) -> tuple[int, float, str]:
    try:
        return (0, float(level.split(", ")[0]), level)
    except ValueError:
        return (1, 0.0, level)


def _reference(iv: Intervention, runs: pl.DataFrame, levels: np.ndarray, references: Mapping[str, str] | None) -> str:
    for key in (iv.name, *iv.axes):
        if references and key in references:
            wanted = level_label(references[key]) if not isinstance(references[key], str) else references[key]
            if wanted not in set(levels.tolist()):
                raise StatsError(f"--reference {key}={wanted}: no finished run has that level of {iv.label}; "
                                 f"levels are {sorted(set(levels.tolist()))}")
            return wanted
    if len(iv.axes) == 1:  # the baseline the break flags compare with (null, False, 0, the smallest, "sgd", ...)
        values = runs[iv.axes[0]].unique(maintain_order=True).to_list()
        counts = [int((runs[iv.axes[0]] == v).sum()) if v is not None else int(runs[iv.axes[0]].is_null().sum()) for v in values]
        return level_label(reference_value(iv.axes[0], values, counts))
    values, counts = np.unique(levels.astype(str), return_counts=True)
    return str(values[int(np.argmax(counts))])  # np.unique sorts, argmax takes the first of equal counts


def null_verdict(ci_low: float, ci_high: float, mde: float, effect: float | None = None,
                 tost_low: float | None = None, tost_high: float | None = None) -> str:
    """"differs" when the CI [ci_low, ci_high] excludes 0; "no effect as large as E" when ``effect`` E is given and
    the (1 − 2α) CI [tost_low, tost_high] lies inside (−|E|, |E|) (TOST); else "undecided (design could detect >= MDE)"."""
    if ci_low > 0 or ci_high < 0:
        return "differs"
    if effect is not None and tost_low is not None and tost_high is not None and -abs(effect) < tost_low and tost_high < abs(effect):
        return f"no effect as large as {abs(effect):.3g}"
    return f"undecided (design could detect >= {mde:.3g})"


def claim_verdict(diff: float, se: float, df: float, claimed: float, *, alpha: float = ALPHA, power: float = POWER) -> str:
    """A paper's claimed effect ``claimed`` (signed, in the target's units; 0 for a claim of "no difference" is not
    accepted: state the smallest difference the claim rules out instead) against the sweep's estimate d̂ = ``diff``
    with standard error ``se`` on ``df`` degrees of freedom:

    - "reproduced": the (1 − α) CI excludes 0 on the claimed side;
    - "not reproduced": the CI excludes 0 on the other side, or the (1 − 2α) CI lies inside (−|claimed|, |claimed|)
      (TOST: an effect as large as the paper's is excluded);
    - else "undecided (design too weak: detectable effect X vs paper's Y)", X = the MDE at (alpha, power).
    """
    if claimed == 0 or not math.isfinite(claimed):
        raise StatsError("claimed effect: give the paper's effect size as a nonzero number in the target's units "
                         "(for a claim of 'no difference', the smallest difference it rules out)")
    crit = stats.norm.ppf(1 - alpha / 2) if math.isinf(df) else stats.t.ppf(1 - alpha / 2, df)
    crit2 = stats.norm.ppf(1 - alpha) if math.isinf(df) else stats.t.ppf(1 - alpha, df)
    lo, hi = diff - crit * se, diff + crit * se
    if lo > 0 or hi < 0:
        return "reproduced" if np.sign(diff) == np.sign(claimed) else "not reproduced"
    if -abs(claimed) < diff - crit2 * se and diff + crit2 * se < abs(claimed):
        return "not reproduced"
    mde = detectable_difference(se, df, alpha, power)
    return f"undecided (design too weak: detectable effect {mde:.3g} vs paper's {abs(claimed):.3g})"


def design_sentences(effects: pl.DataFrame | None, *, alpha: float = ALPHA, power: float = POWER) -> list[str]:
    """Sentences for the verdict: the detectable effect on the target per intervention, which differences are
    significant, and that a non-significant one is undecided rather than absent."""
    if effects is None or effects.height == 0:
        return []
    target = effects["target"][0]
    first = effects.row(0, named=True)
    df_text = "∞" if math.isinf(first["df"]) else f"{first['df']:.0f}"
    parts = []
    for iv in effects["intervention"].unique(maintain_order=True).to_list():
        mine = effects.filter(pl.col("intervention") == iv)
        lo, hi = float(mine["mde"].min()), float(mine["mde"].max())
        size = f"{lo:.3g}" if math.isclose(lo, hi, rel_tol=0.005) else f"{lo:.3g}–{hi:.3g}"
        n_lo, n_hi = int(mine["n_level"].min()), int(mine["n_level"].max())
        runs = f"{n_lo}" if n_lo == n_hi else f"{n_lo}–{n_hi}"
        parts.append(f"{iv} ≥ {size} ({mine.height} level(s) vs {mine['reference'][0]} with "
                     f"{int(mine['n_reference'].max())} runs; {runs} runs per level)")
    out = [f"Smallest difference in {target} this design could detect (α = {alpha:g}, power {power:g}; noise σ = "
           f"{first['sigma']:.3g} from the {first['sigma_source']}, {df_text} df): " + "; ".join(parts) + "."]
    differs = effects.filter(pl.col("decision") == "differs")
    undecided = effects.filter(pl.col("decision").str.starts_with("undecided"))
    if differs.height:
        items = [f"{r['intervention']} {r['level']} vs {r['reference']}: {r['diff']:+.3g} [{r['ci_low']:+.3g}, "
                 f"{r['ci_high']:+.3g}]" for r in differs.head(4).iter_rows(named=True)]
        more = f" and {differs.height - 4} more" if differs.height > 4 else ""
        out.append(f"{differs.height} level(s) change {target} beyond the noise: " + "; ".join(items) + more + ".")
    if undecided.height:
        items = [f"{r['intervention']} {r['level']} vs {r['reference']} (design could detect ≥ {r['mde']:.3g})"
                 for r in undecided.head(4).iter_rows(named=True)]
        more = f" and {undecided.height - 4} more" if undecided.height > 4 else ""
        out.append(f"{undecided.height} level(s) show no significant change in {target}; that is undecided, not "
                   "absent: " + "; ".join(items) + more + ".")
    return out
