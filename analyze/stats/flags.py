"""Break flags: where the measure–generalization relationship changes with an intervention.

For every intervention axis (``hp.*`` columns with 2–12 values, and ``tag.intervention``) and every value of it,
the relationship inside that group is compared with the axis's reference value (the baseline: no dropout, no weight
decay, SGD, small batch, α = 1, …; see ``reference_value``; override with ``references``). The coefficient is
Spearman's ρ; differences of correlations use Fisher's z with the Fieller–Hartley–Pearson variance 1.06/(n − 3)
for ρ; shifts of a distribution use the Mann–Whitney U test with the rank-biserial effect size. All p-values of one
call form one Benjamini–Hochberg family, and flags are raised on adjusted p-values at ``alpha``:

- ``sign_reversal``: ρ in the group and ρ in the reference are both significant, with opposite signs, and differ.
- ``weakening``: the reference's ρ is significant and the group's is significantly smaller in magnitude.
- ``simpson_reversal``: the pooled ρ over the axis's groups and the n-weighted within-group ρ (Fisher-z mean)
  are both significant and of opposite sign (the pooled trend comes from between-group differences).
- ``decoupling``: the measure shifts with the intervention (significant, |effect| ≥ ``decouple_measure_effect``)
  while generalization does not (p ≥ alpha and |effect| < ``decouple_target_effect``) — paper 004's large-batch
  learning-rate and dropout results.
- ``too_small``: a group (or its reference) has fewer than ``min_group`` runs; reported, not skipped.

Each row carries its evidence and one sentence a researcher can paste into a paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

from analyze.columns import DEFAULT_TARGET, HP
from analyze.stats._data import StatsError, as_float, finished_runs, pick_measures, pick_targets, require_columns, sign_word
from analyze.stats.multiple_testing import benjamini_hochberg

MAX_LEVELS = 12
FIELLER = 1.06  # variance inflation of Fisher's z for Spearman's ρ (Fieller, Hartley & Pearson 1957)
BASELINE_WORDS = ("none", "off", "baseline", "default", "control", "reference", "sgd", "false", "no")

SCHEMA: dict[str, pl.DataType] = {
    "flag": pl.Utf8,
    "measure": pl.Utf8,
    "target": pl.Utf8,
    "axis": pl.Utf8,
    "group": pl.Utf8,
    "reference": pl.Utf8,
    "n_group": pl.Int64,
    "n_reference": pl.Int64,
    "coefficient": pl.Utf8,
    "r_group": pl.Float64,
    "r_group_ci_low": pl.Float64,
    "r_group_ci_high": pl.Float64,
    "r_reference": pl.Float64,
    "r_reference_ci_low": pl.Float64,
    "r_reference_ci_high": pl.Float64,
    "test": pl.Utf8,
    "effect": pl.Float64,
    "p_value": pl.Float64,
    "p_adj": pl.Float64,
    "sentence": pl.Utf8,
}


def _label(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, float) and v.is_integer():
        return str(int(v)) if v != 0 else "0"
    return str(v)


def reference_value(axis: str, values: Sequence[Any], counts: Sequence[int] | None = None) -> Any:
    """The baseline level of an axis: null ("off"), False, 1 for α/scale axes, 0, the smallest number, a word
    such as "sgd"/"none"/"baseline", else the most common value."""
    present = list(values)
    if any(v is None for v in present):
        return None
    if all(isinstance(v, bool) for v in present) and False in present:
        return False
    numeric = [v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numeric and len(numeric) == len(present):
        if any(w in axis.lower() for w in ("alpha", "scale")) and 1 in numeric:
            return next(v for v in present if v == 1)
        return min(numeric)
    for word in BASELINE_WORDS:
        for v in present:
            if str(v).lower() == word:
                return v
    if counts is not None:
        best = max(counts)
        return sorted((str(v), v) for v, c in zip(present, counts) if c == best)[0][1]
    return sorted(present, key=str)[0]


def default_axes(runs: pl.DataFrame) -> list[str]:
    cols = [c for c in runs.columns if c.startswith(HP) and c != "hp.n_test"]
    if "tag.intervention" in runs.columns:
        cols.append("tag.intervention")
    return [c for c in cols if runs[c].n_unique() >= 2]


@dataclass
class _Group:
    label: str
    mask: np.ndarray


class _Ranker:
    """Spearman ρ of (x, y) on any subset of runs without re-sorting: the subset's order is the global order
    filtered, and average ranks of tied values follow from that order in O(n)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y
        self.ox, self.oy = np.argsort(x, kind="stable"), np.argsort(y, kind="stable")

    def ranks(self, v: np.ndarray, order: np.ndarray, mask: np.ndarray, with_ties: bool = False):
        sub = order[mask[order]]
        vs = v[sub]
        new = np.r_[True, vs[1:] != vs[:-1]] if vs.size else np.zeros(0, dtype=bool)
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], vs.size]
        out = np.empty(v.size)
        out[sub] = ((starts + 1 + ends) / 2.0)[np.cumsum(new) - 1]
        return (out, ends - starts) if with_ties else out[mask]

    def shift(self, which: str, group: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
        """Mann–Whitney U of ``which`` ("x" or "y") in ``group`` vs ``ref``: (two-sided p, rank-biserial effect).

        For two samples of more than 8 runs this is scipy.stats.mannwhitneyu's asymptotic test (tie-corrected
        variance, continuity correction), computed from the presorted order; smaller samples go to scipy itself.
        """
        v, order = (self.x, self.ox) if which == "x" else (self.y, self.oy)
        n1, n2 = int(group.sum()), int(ref.sum())
        if n1 <= 8 or n2 <= 8:
            return _shift(v[group], v[ref])
        both = group | ref
        ranks, ties = self.ranks(v, order, both, with_ties=True)
        if ties.size == 1:  # every value equal: no shift
            return 1.0, 0.0
        n = n1 + n2
        u1 = ranks[group].sum() - n1 * (n1 + 1) / 2.0
        u = max(u1, n1 * n2 - u1)
        sd = np.sqrt(n1 * n2 / 12.0 * ((n + 1) - (ties.astype(np.float64) ** 3 - ties).sum() / (n * (n - 1))))
        p = float(np.clip(2 * stats.norm.sf((u - n1 * n2 / 2.0 - 0.5) / sd), 0.0, 1.0))
        return p, float(2 * u1 / (n1 * n2) - 1)

    def spearman(self, mask: np.ndarray) -> tuple[float, float]:
        """Spearman ρ and its two-sided p-value (t with n − 2 df), the formulas of scipy.stats.spearmanr."""
        n = int(mask.sum())
        if n < 3:
            return float("nan"), float("nan")
        rx, ry = self.ranks(self.x, self.ox, mask), self.ranks(self.y, self.oy, mask)
        rx -= rx.mean()
        ry -= ry.mean()
        den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
        if den == 0:
            return float("nan"), float("nan")
        r = float(np.clip((rx * ry).sum() / den, -1.0, 1.0))
        if abs(r) == 1.0:
            return r, 0.0
        t = r * np.sqrt((n - 2) / (1 - r * r))
        return r, float(2 * stats.t.sf(abs(t), n - 2))


def _z(r: float) -> float:
    return float(np.arctanh(np.clip(r, -0.999999, 0.999999)))


def _ci(r: float, n: int, confidence: float) -> tuple[float, float]:
    if not np.isfinite(r) or n <= 3:
        return float("nan"), float("nan")
    half = stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(FIELLER / (n - 3))
    return float(np.tanh(_z(r) - half)), float(np.tanh(_z(r) + half))


def _shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(two-sided Mann–Whitney p, rank-biserial effect of a over b in [−1, 1])."""
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0, 0.0
    res = stats.mannwhitneyu(a, b, alternative="two-sided")
    return float(res.pvalue), float(2 * res.statistic / (a.size * b.size) - 1)


def flag_evidence(
    ledger: pl.DataFrame,
    *,
    target: str = DEFAULT_TARGET,
    measures: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
    min_group: int = 8,
    confidence: float = 0.95,
    references: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Every comparison behind the flags, with raw p-values (records; ``break_flags`` adjusts and decides)."""
    if min_group < 4:
        raise StatsError(f"--min-group {min_group}: at least 4 runs per group are needed for a Fisher z test")
    runs = finished_runs(ledger)
    (target,) = pick_targets(runs, target)
    measure_cols = pick_measures(runs, measures)
    if group_by is None:
        axes = default_axes(runs)
        if not axes:
            raise StatsError("break flags: no hp.* or tag.intervention column varies among the finished runs; nothing to group by")
    else:
        axes = [a if a.startswith((HP, "tag.")) else HP + a for a in group_by]
        require_columns(runs, axes, "--group-by")
    references = dict(references or {})
    y_all = as_float(runs, [target])[:, 0]
    x_all = as_float(runs, measure_cols)
    records: list[dict] = []
    for axis in axes:
        raw = runs[axis].to_list()
        labels = np.array([_label(v) for v in raw], dtype=object)
        uniq = list(dict.fromkeys(raw))
        if len(uniq) > MAX_LEVELS:
            records.append({"kind": "too_many_levels", "axis": axis, "n_levels": len(uniq), "target": target})
            continue
        counts = [sum(1 for v in raw if v == u) for u in uniq]
        ref = references.get(axis, reference_value(axis, uniq, counts))
        ref_label = _label(ref)
        if ref_label not in set(labels):
            raise StatsError(f"reference {axis}={ref_label} is not a value of {axis}; values are {sorted(set(labels))}")
        groups = [_Group(_label(u), labels == _label(u)) for u in uniq]
        target_shift: dict[tuple[str, bytes, bytes], tuple[float, float]] = {}
        for k, measure in enumerate(measure_cols):
            ok = np.isfinite(x_all[:, k]) & np.isfinite(y_all)
            x, y = np.where(ok, x_all[:, k], 0.0), np.where(ok, y_all, 0.0)
            ranker = _Ranker(x, y)
            ref_mask = ok & (labels == ref_label)
            n_ref = int(ref_mask.sum())
            r_ref, p_ref = ranker.spearman(ref_mask)
            base = {"measure": measure, "target": target, "axis": axis, "reference": ref_label, "n_reference": n_ref,
                    "r_reference": r_ref, "p_reference": p_ref, "ci_reference": _ci(r_ref, n_ref, confidence)}
            within = []
            for grp in groups:
                mask = ok & grp.mask
                n = int(mask.sum())
                r_g, p_g = (r_ref, p_ref) if grp.label == ref_label else ranker.spearman(mask)
                if n >= min_group and np.isfinite(r_g):
                    within.append((n, r_g))
                if grp.label == ref_label:
                    continue
                rec = {**base, "kind": "comparison", "group": grp.label, "n_group": n}
                if n < min_group or n_ref < min_group:
                    rec["kind"] = "too_small"
                    records.append(rec)
                    continue
                se = np.sqrt(FIELLER / (n - 3) + FIELLER / (n_ref - 3))
                p_diff = float(2 * stats.norm.sf(abs(_z(r_g) - _z(r_ref)) / se)) if np.isfinite(r_g) and np.isfinite(r_ref) else float("nan")
                p_mshift, e_mshift = ranker.shift("x", mask, ref_mask)
                key = (grp.label, mask.tobytes(), ref_mask.tobytes())
                if key not in target_shift:  # the same for every measure with the same complete runs
                    target_shift[key] = ranker.shift("y", mask, ref_mask)
                p_tshift, e_tshift = target_shift[key]
                rec.update({"r_group": r_g, "p_group": p_g, "ci_group": _ci(r_g, n, confidence), "p_diff": p_diff,
                            "p_measure_shift": p_mshift, "measure_shift": e_mshift, "p_target_shift": p_tshift,
                            "target_shift": e_tshift})
                records.append(rec)
            if len(within) >= 2:
                pool = ok & np.isin(labels, [g.label for g in groups])
                r_pool, p_pool = ranker.spearman(pool)
                weights = np.array([n - 3 for n, _ in within], dtype=np.float64)
                zbar = float((weights * np.array([_z(r) for _, r in within])).sum() / weights.sum())
                p_within = float(2 * stats.norm.sf(abs(zbar) / np.sqrt(FIELLER / weights.sum())))
                records.append({**base, "kind": "simpson", "group": "(within groups)", "n_group": int(sum(n for n, _ in within)),
                                "n_pooled": int(pool.sum()), "r_pooled": r_pool, "p_pooled": p_pool,
                                "ci_pooled": _ci(r_pool, int(pool.sum()), confidence), "r_within": float(np.tanh(zbar)),
                                "p_within": p_within, "n_groups": len(within)})
    return records


def break_flags(
    ledger: pl.DataFrame,
    *,
    target: str = DEFAULT_TARGET,
    measures: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
    alpha: float = 0.05,
    min_group: int = 8,
    confidence: float = 0.95,
    references: Mapping[str, Any] | None = None,
    decouple_measure_effect: float = 0.5,
    decouple_target_effect: float = 0.2,
) -> pl.DataFrame:
    """The raised flags (and the untestable groups), one row each, with evidence and a sentence."""
    records = flag_evidence(
        ledger, target=target, measures=measures, group_by=group_by, min_group=min_group,
        confidence=confidence, references=references,
    )
    _adjust(records)
    rows: list[dict] = []
    pct = f"{confidence * 100:g}%"
    for rec in records:
        kind = rec["kind"]
        if kind == "too_many_levels":
            rows.append(_row("too_small", {"measure": "*", "target": rec["target"], "axis": rec["axis"], "group": "*",
                                           "reference": "", "n_group": None, "n_reference": None},
                             sentence=f"{rec['axis']} has {rec['n_levels']} distinct values; bin it into at most {MAX_LEVELS} "
                                      "groups to test where the relationship breaks."))
        elif kind == "too_small":
            rows.append(_row("too_small", rec, sentence=(
                f"{rec['axis']}={rec['group']} has {rec['n_group']} finished run(s) with both {rec['measure']} and "
                f"{rec['target']} (reference {rec['axis']}={rec['reference']}: {rec['n_reference']}); at least {min_group} "
                "are needed in each group, so this relationship was not tested.")))
        elif kind == "comparison":
            rows.extend(_comparison_flags(rec, alpha, pct, decouple_measure_effect, decouple_target_effect))
        elif kind == "simpson":
            if (rec["p_pooled_adj"] < alpha and rec["p_within_adj"] < alpha
                    and np.sign(rec["r_pooled"]) * np.sign(rec["r_within"]) < 0):
                lo, hi = rec["ci_pooled"]
                rows.append(_row("simpson_reversal", {**rec, "group": "(within groups)", "reference": "(pooled)",
                                                      "n_reference": rec["n_pooled"]},
                                 r_group=rec["r_within"], r_reference=rec["r_pooled"], ci_reference=(lo, hi),
                                 test="stratified_fisher_z", p_value=rec["p_within"], p_adj=max(rec["p_within_adj"], rec["p_pooled_adj"]),
                                 sentence=(
                    f"Across {rec['axis']} groups, {rec['measure']} correlates {sign_word(rec['r_pooled'])}ly with "
                    f"{rec['target']} when runs are pooled (Spearman ρ = {rec['r_pooled']:.2f}, {pct} CI [{lo:.2f}, {hi:.2f}], "
                    f"n = {rec['n_pooled']}) but {sign_word(rec['r_within'])}ly within each group (n-weighted ρ = "
                    f"{rec['r_within']:.2f} over {rec['n_groups']} groups, BH-adjusted p {_p(rec['p_within_adj'])}): a "
                    f"Simpson reversal, so the pooled trend reflects differences between {rec['axis']} groups.")))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)


def _adjust(records: list[dict]) -> None:
    """One BH family over every p-value the flags rest on (reference correlations counted once per measure × axis)."""
    keys: list[tuple[int, str]] = []
    seen_ref: dict[tuple[str, str], int] = {}
    for i, rec in enumerate(records):
        if rec["kind"] == "comparison":
            keys += [(i, "p_group"), (i, "p_diff"), (i, "p_measure_shift")]
            ref_key = (rec["measure"], rec["axis"])
            if ref_key not in seen_ref:
                seen_ref[ref_key] = i
                keys.append((i, "p_reference"))
        elif rec["kind"] == "simpson":
            keys += [(i, "p_pooled"), (i, "p_within")]
    adjusted = benjamini_hochberg(np.array([records[i][k] for i, k in keys], dtype=np.float64))
    for (i, k), v in zip(keys, adjusted):
        records[i][f"{k}_adj"] = 1.0 if np.isnan(v) else float(v)
    for rec in records:
        if rec["kind"] == "comparison":
            rec["p_reference_adj"] = records[seen_ref[(rec["measure"], rec["axis"])]]["p_reference_adj"]


def _comparison_flags(rec: dict, alpha: float, pct: str, m_effect: float, t_effect: float) -> list[dict]:
    out = []
    r_g, r_r = rec["r_group"], rec["r_reference"]
    (lo, hi), (rlo, rhi) = rec["ci_group"], rec["ci_reference"]
    where = f"Within {rec['axis']}={rec['group']} (n = {rec['n_group']})"
    ref = f"{rec['axis']}={rec['reference']} (ρ = {r_r:.2f}, {pct} CI [{rlo:.2f}, {rhi:.2f}], n = {rec['n_reference']})"
    reversal = (
        rec["p_group_adj"] < alpha and rec["p_reference_adj"] < alpha and rec["p_diff_adj"] < alpha
        and np.sign(r_g) * np.sign(r_r) < 0
    )
    if reversal:
        out.append(_row("sign_reversal", rec, test="fisher_z", p_value=rec["p_diff"], p_adj=rec["p_diff_adj"], sentence=(
            f"{where}, {rec['measure']} correlates {sign_word(r_g)}ly with {rec['target']} (Spearman ρ = {r_g:.2f}, "
            f"{pct} CI [{lo:.2f}, {hi:.2f}]), the reverse of the reference {ref}; Fisher z test of the difference, "
            f"BH-adjusted p {_p(rec['p_diff_adj'])}.")))
    elif rec["p_reference_adj"] < alpha and rec["p_diff_adj"] < alpha and abs(r_g) < abs(r_r):
        out.append(_row("weakening", rec, test="fisher_z", p_value=rec["p_diff"], p_adj=rec["p_diff_adj"], sentence=(
            f"{where}, the correlation of {rec['measure']} with {rec['target']} weakens to Spearman ρ = {r_g:.2f} "
            f"({pct} CI [{lo:.2f}, {hi:.2f}]) from the reference {ref}; Fisher z test of the difference, "
            f"BH-adjusted p {_p(rec['p_diff_adj'])}.")))
    if (rec["p_measure_shift_adj"] < alpha and abs(rec["measure_shift"]) >= m_effect
            and rec["p_target_shift"] >= alpha and abs(rec["target_shift"]) < t_effect):
        out.append(_row("decoupling", rec, test="mann_whitney", effect=rec["measure_shift"], p_value=rec["p_measure_shift"],
                        p_adj=rec["p_measure_shift_adj"], sentence=(
            f"Changing {rec['axis']} from {rec['reference']} to {rec['group']} shifts {rec['measure']} (rank-biserial "
            f"effect {rec['measure_shift']:+.2f}, Mann–Whitney BH-adjusted p {_p(rec['p_measure_shift_adj'])}) while "
            f"{rec['target']} does not move (effect {rec['target_shift']:+.2f}, p {_p(rec['p_target_shift'])}; "
            f"n = {rec['n_group']} vs {rec['n_reference']}): along this intervention {rec['measure']} is decoupled "
            "from generalization.")))
    return out


def _row(flag: str, rec: Mapping[str, Any], *, sentence: str, r_group: float | None = None, r_reference: float | None = None,
         ci_reference: tuple[float, float] | None = None, test: str | None = None, effect: float | None = None,
         p_value: float | None = None, p_adj: float | None = None) -> dict:
    ci_g = rec.get("ci_group", (None, None))
    ci_r = ci_reference or rec.get("ci_reference", (None, None))
    return {
        "flag": flag, "measure": rec["measure"], "target": rec["target"], "axis": rec["axis"], "group": rec["group"],
        "reference": rec["reference"], "n_group": rec.get("n_group"), "n_reference": rec.get("n_reference"),
        "coefficient": "spearman",
        "r_group": _f(r_group if r_group is not None else rec.get("r_group")),
        "r_group_ci_low": _f(ci_g[0]), "r_group_ci_high": _f(ci_g[1]),
        "r_reference": _f(r_reference if r_reference is not None else rec.get("r_reference")),
        "r_reference_ci_low": _f(ci_r[0]), "r_reference_ci_high": _f(ci_r[1]),
        "test": test, "effect": _f(effect), "p_value": _f(p_value), "p_adj": _f(p_adj), "sentence": sentence,
    }


def _f(v: Any) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def evidence_frame(records: list[dict]) -> pl.DataFrame:
    """The comparisons behind the flags as a flat frame (for the report's evidence table)."""
    rows = []
    for rec in records:
        if rec["kind"] != "comparison":
            continue
        rows.append({k: rec.get(k) for k in ("measure", "target", "axis", "group", "reference", "n_group", "n_reference",
                                             "r_group", "r_reference", "measure_shift", "target_shift")}
                    | {"p_group": rec.get("p_group"), "p_diff": rec.get("p_diff"), "p_measure_shift": rec.get("p_measure_shift"),
                       "p_target_shift": rec.get("p_target_shift")})
    schema = {"measure": pl.Utf8, "target": pl.Utf8, "axis": pl.Utf8, "group": pl.Utf8, "reference": pl.Utf8,
              "n_group": pl.Int64, "n_reference": pl.Int64, "r_group": pl.Float64, "r_reference": pl.Float64,
              "measure_shift": pl.Float64, "target_shift": pl.Float64, "p_group": pl.Float64, "p_diff": pl.Float64,
              "p_measure_shift": pl.Float64, "p_target_shift": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
