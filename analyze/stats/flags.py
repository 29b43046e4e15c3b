"""Break flags: where the measure–generalization relationship changes with an intervention.

For every intervention (an ``hp.*`` column, a group of columns the spec moves together — its levels are joint
values such as "adam, 0.001", see ``analyze.stats.interventions`` — or ``tag.intervention``) with 2–12 levels, every
pair of levels with at least ``min_group`` runs each is compared (``analyze.stats.level_tests``), all pairs in the
flag's Benjamini–Hochberg family: a break in any level, the automatically picked reference level included, is
looked for, and a break shared by several levels (e.g. every Adam level of a zipped optimizer+lr group) is seen
against the levels without it. Each pair is one test, shown from the side that breaks (the level of the unexpected
sign for a reversal, the weaker level for a weakening). The reference level (``reference_value``,
``joint_reference``, ``references``) only orders a pair when neither side breaks: it is a presentation choice.

The coefficient is Spearman's ρ inside a level and the stratified coefficient (within-level centred ranks,
``level_tests.stratified_r``) over all levels for the Simpson test; its CI and p-value come from
``analyze.stats.rank_intervals`` (a Gaussian-copula Neyman belt and the permutation null for ≤ 50 runs, Fisher's z
above: valid at |ρ| = 1 and in groups of 8). The difference of two levels is a permutation test when either side has
≤ 200 runs, Fisher's z with Bonett & Wright's variance otherwise (one test of any change for reversals, one of the
change in |ρ| for weakenings).
Shifts of a distribution use the Mann–Whitney U test with the rank-biserial effect size 2U/(n₁n₂) − 1.

Each flag is decided on the family of tests that can raise it, Benjamini–Hochberg within that family only
(``adjust_flag_families``: the difference family for weakening, the reversal family for sign and Simpson
reversals, the shift family for decoupling), and raised on its adjusted p at ``alpha``:

- ``sign_reversal``: ρ in the level and ρ in the other level are both significant, with opposite signs, and differ.
- ``weakening``: the other level's ρ is significant and this level's is significantly smaller in magnitude.
- ``simpson_reversal``: the pooled ρ over the intervention's levels and the stratified within-level ρ are both
  significant and of opposite sign (the pooled trend comes from between-level differences).
- ``decoupling``: the measure shifts between the two levels (significant, |effect| ≥
  ``decouple_measure_effect``) while generalization does not (raw p ≥ alpha and |effect| < ``decouple_target_effect``)
  — paper 004's large-batch learning-rate and dropout results.
- ``too_small``: a level has fewer than ``min_group`` runs; reported, not skipped.

Each row carries its evidence and one sentence a researcher can paste into a paper.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

from analyze.columns import DEFAULT_TARGET
from analyze.numbers import finite_or_none
from analyze.stats._data import StatsError, as_float, expected_sign, finished_runs, pick_measures, pick_targets, sign_word
from analyze.defaults import CONFIDENCE
from analyze.stats.interventions import TAG_COLUMN, Intervention, interventions, level_label
from analyze.stats.level_tests import PERMUTATION_MAX_N, PERMUTATION_SEED, Side, centred_ranks, difference_pvalues
from analyze.stats.multiple_testing import benjamini_hochberg
from analyze.stats.rank_intervals import rank_interval, rank_pvalue
from analyze.stats.tails import normal_sf, t_sf

MAX_LEVELS = 12
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


def flag_interventions(runs: pl.DataFrame, group_by: Sequence[str] | None) -> list[Intervention]:
    """The interventions the flags split runs by: those of ``analyze.stats.interventions`` (or exactly the
    ``--group-by`` ones), plus ``tag.intervention`` when it varies in a ledger without ``tag.interventions`` (a
    collect sweep's ``tag.intervention`` is the label of a run's whole combination of levels, redundant with the
    groups ``tag.interventions`` declares: adding it would test the same split twice)."""
    found = interventions(runs, group_by)
    if (group_by is None and "tag.intervention" in runs.columns and TAG_COLUMN not in runs.columns
            and runs["tag.intervention"].n_unique() >= 2):
        found.append(Intervention(("tag.intervention",)))
    return found


def joint_reference(iv: Intervention, runs: pl.DataFrame, references: Mapping[str, Any]) -> str:
    """The reference level of an intervention: for one column ``reference_value``; for a group, narrow the joint
    levels column by column (each column's ``reference_value`` among the levels still in), so a zipped
    (optimizer, lr) group's reference is SGD's level. ``references`` may name a column or the group's name."""
    raw = runs.select(iv.axes).rows()
    levels = list(dict.fromkeys(raw))
    counts = {lv: 0 for lv in levels}
    for r in raw:
        counts[r] += 1
    if iv.name in references and len(iv.axes) > 1:
        wanted = str(references[iv.name])
        if wanted not in {", ".join(level_label(v) for v in lv) for lv in levels}:
            raise StatsError(f"reference {iv.name}={wanted} is not a level of {iv.name}; levels are "
                             f"{sorted(', '.join(level_label(v) for v in lv) for lv in levels)}")
        return wanted
    for k, axis in enumerate(iv.axes):
        values = list(dict.fromkeys(lv[k] for lv in levels))
        if axis in references:
            ref_label = level_label(references[axis]) if not isinstance(references[axis], str) else references[axis]
            if ref_label not in {level_label(v) for v in values}:
                raise StatsError(f"reference {axis}={ref_label} is not a value of {axis}; values are "
                                 f"{sorted(level_label(v) for v in values)}")
        else:
            per_value = [sum(counts[lv] for lv in levels if lv[k] == v) for v in values]
            ref_label = level_label(reference_value(axis, values, per_value))
        levels = [lv for lv in levels if level_label(lv[k]) == ref_label]
    return ", ".join(level_label(v) for v in levels[0])


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
        p = float(np.clip(2 * normal_sf((u - n1 * n2 / 2.0 - 0.5) / sd), 0.0, 1.0))
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
        return r, float(2 * t_sf(abs(t), n - 2))


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
    confidence: float = CONFIDENCE,
    references: Mapping[str, Any] | None = None,
    seed: int = PERMUTATION_SEED,
) -> list[dict]:
    """Every comparison behind the flags, with raw p-values (records; ``break_flags`` adjusts and decides).

    Every pair of levels with ≥ ``min_group`` runs each is compared (``level_pairs``), and the stratified
    within-level ρ over all of them is compared with the pooled ρ (Simpson); see the module docstring and
    ``analyze.stats.level_tests``. Permutations draw from ``numpy.random.default_rng(seed)``: reproducible."""
    if min_group < 4:
        raise StatsError(f"--min-group {min_group}: at least 4 runs per group are needed for a rank correlation test")
    runs = finished_runs(ledger)
    (target,) = pick_targets(runs, target)
    measure_cols = pick_measures(runs, measures)
    found = flag_interventions(runs, group_by)
    if not found:
        raise StatsError("break flags: no hp.* or tag.intervention column varies among the finished runs; nothing to group by")
    references = dict(references or {})
    rng = np.random.default_rng(seed)
    y_all = as_float(runs, [target])[:, 0]
    x_all = as_float(runs, measure_cols)
    records: list[dict] = []
    for iv in found:
        axis = iv.name
        labels = iv.levels(runs)
        uniq = list(dict.fromkeys(labels.tolist()))
        if len(uniq) > MAX_LEVELS:
            records.append({"kind": "too_many_levels", "axis": axis, "n_levels": len(uniq), "target": target,
                            "measures": list(measure_cols)})
            continue
        ref_label = joint_reference(iv, runs, references)
        codes = np.array([uniq.index(v) for v in labels.tolist()], dtype=np.int64)
        target_shift: dict[tuple[bytes, bytes], tuple[float, float]] = {}
        target_ranks: dict[bytes, np.ndarray] = {}  # the target's centred ranks, per set of complete runs
        for k, measure in enumerate(measure_cols):
            ok = np.isfinite(x_all[:, k]) & np.isfinite(y_all)
            x, y = np.where(ok, x_all[:, k], 0.0), np.where(ok, y_all, 0.0)
            ranker = _Ranker(x, y)
            counts = np.bincount(codes[ok], minlength=len(uniq))
            sizes = {u: int(counts[c]) for c, u in enumerate(uniq)}
            testable = [u for u in uniq if sizes[u] >= min_group]
            rest_word = iv.where(testable[0]) if len(testable) == 1 else f"the other levels of {iv.label}"
            for u in uniq:
                if sizes[u] < min_group:
                    other = [v for v in testable if v != u]
                    records.append({"kind": "too_small", "measure": measure, "target": target, "axis": axis,
                                    "group": u, "n_group": sizes[u], "group_where": iv.where(u),
                                    "reference": other[0] if len(other) == 1 else "(other levels)",
                                    "reference_where": iv.where(other[0]) if len(other) == 1 else rest_word,
                                    "n_reference": sum(sizes[v] for v in other)})
            if len(testable) < 2:
                continue
            keep = ok & np.isin(codes, [uniq.index(u) for u in testable])
            cx = centred_ranks(x[keep], codes[keep])
            cy = target_ranks.get(keep.tobytes())
            if cy is None:  # the same for every measure with the same complete runs
                cy = target_ranks.setdefault(keep.tobytes(), centred_ranks(y[keep], codes[keep]))
            kept_codes, kept_at = codes[keep], np.flatnonzero(keep)
            levels: dict[str, tuple[Side, np.ndarray, float, tuple[float, float]]] = {}
            for u in testable:  # each level's side, runs, p-value and CI, shared by every pair it is in
                inside = kept_codes == uniq.index(u)
                side = Side(cx[inside], cy[inside], 1)
                runs_in = np.zeros(ok.size, dtype=bool)
                runs_in[kept_at[inside]] = True
                levels[u] = (side, runs_in, side.pvalue(), side.interval(confidence))
            for g_label, rest_label in level_pairs(testable, ref_label):
                g_side, mask, p_g, ci_g = levels[g_label]
                rest_side, rest_mask, p_r, ci_r = levels[rest_label]
                where_rest = iv.where(rest_label)
                r_g, r_r = g_side.r(), rest_side.r()
                p_diff, p_strength = difference_pvalues(g_side, rest_side, rng)
                p_mshift, e_mshift = ranker.shift("x", mask, rest_mask)
                key = (mask.tobytes(), rest_mask.tobytes())
                if key not in target_shift:  # the same for every measure with the same complete runs
                    target_shift[key] = ranker.shift("y", mask, rest_mask)
                p_tshift, e_tshift = target_shift[key]
                records.append({
                    "kind": "comparison", "measure": measure, "target": target, "axis": axis, "group": g_label,
                    "n_group": g_side.n, "group_where": iv.where(g_label), "reference": rest_label,
                    "n_reference": rest_side.n, "reference_where": where_rest,
                    "r_group": r_g, "p_group": p_g, "ci_group": ci_g,
                    "r_reference": r_r, "p_reference": p_r, "ci_reference": ci_r,
                    "p_diff": p_diff, "p_strength": p_strength,
                    "p_measure_shift": p_mshift, "measure_shift": e_mshift, "p_target_shift": p_tshift,
                    "target_shift": e_tshift,
                })
            all_side = Side(cx, cy, len(testable))
            r_within = all_side.r()
            if np.isfinite(r_within):
                pool = keep
                r_pool, _ = ranker.spearman(pool)
                n_pool = int(pool.sum())
                records.append({
                    "kind": "simpson", "measure": measure, "target": target, "axis": axis, "group": "(within groups)",
                    "reference": "(pooled)", "reference_where": "all levels pooled", "n_group": n_pool,
                    "n_reference": n_pool, "n_pooled": n_pool, "r_pooled": r_pool,
                    "p_pooled": rank_pvalue(r_pool, n_pool), "ci_pooled": rank_interval(r_pool, n_pool, confidence),
                    "r_within": r_within, "p_within": all_side.pvalue(), "ci_within": all_side.interval(confidence),
                    "n_groups": len(testable),
                })
    return records


def level_pairs(testable: Sequence[str], ref_label: str) -> list[tuple[str, str]]:
    """Every pair of testable levels once, as (group, other): the reference level, when in the pair, is the other."""
    out = []
    for i, a in enumerate(testable):
        for b in testable[i + 1 :]:
            out.append((b, a) if a == ref_label else (a, b) if b == ref_label else (b, a))
    return out


SWAP = (("group", "reference"), ("n_group", "n_reference"), ("group_where", "reference_where"),
        ("r_group", "r_reference"), ("p_group", "p_reference"), ("ci_group", "ci_reference"))


def _shown_from_breaking_side(rec: dict, want: int, reversal: bool) -> dict:
    """A comparison of two levels is one test; show it from the level that breaks: for a reversal the level whose ρ
    has the unexpected sign (when the expected sign is known), for a weakening the weaker level."""
    r_g, r_r = rec["r_group"], rec["r_reference"]
    swap = (want != 0 and np.sign(r_g) == want) if reversal else abs(r_g) > abs(r_r)
    if not swap:
        return rec
    out = dict(rec)
    for a, b in SWAP:
        out[a], out[b] = rec[b], rec[a]
    return out


def break_flags(
    ledger: pl.DataFrame,
    *,
    target: str = DEFAULT_TARGET,
    measures: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
    alpha: float = 0.05,
    min_group: int = 8,
    confidence: float = CONFIDENCE,
    references: Mapping[str, Any] | None = None,
    decouple_measure_effect: float = 0.5,
    decouple_target_effect: float = 0.2,
) -> pl.DataFrame:
    """The raised flags (and the untestable groups), one row each, with evidence and a sentence."""
    records = flag_evidence(
        ledger, target=target, measures=measures, group_by=group_by, min_group=min_group,
        confidence=confidence, references=references,
    )
    return decide_flags(records, alpha=alpha, min_group=min_group, confidence=confidence,
                        decouple_measure_effect=decouple_measure_effect, decouple_target_effect=decouple_target_effect)


def decide_flags(
    records: list[dict],
    *,
    alpha: float = 0.05,
    min_group: int = 8,
    confidence: float = CONFIDENCE,
    decouple_measure_effect: float = 0.5,
    decouple_target_effect: float = 0.2,
) -> pl.DataFrame:
    """Adjust ``flag_evidence`` records family by family (in place) and return the flags frame."""
    adjust_flag_families(records, decouple_measure_effect, decouple_target_effect)
    rows: list[dict] = []
    pct = f"{confidence * 100:g}%"
    for rec in records:
        kind = rec["kind"]
        if kind == "too_many_levels":
            rows.append(_row("too_small", {"measure": "*", "target": rec["target"], "axis": rec["axis"], "group": "*",
                                           "reference": "", "n_group": None, "n_reference": None},
                             sentence=f"{rec['axis']} has {rec['n_levels']} distinct levels; bin it into at most {MAX_LEVELS} "
                                      "groups to test where the relationship breaks."))
        elif kind == "too_small":
            rows.append(_row("too_small", rec, sentence=(
                f"{rec['group_where']} has {rec['n_group']} finished run(s) with both {rec['measure']} and "
                f"{rec['target']}; at least {min_group} are needed in a level, so its relationship was not tested.")))
        elif kind == "comparison":
            rows.extend(_comparison_flags(rec, alpha, pct, decouple_target_effect))
        elif kind == "simpson" and rec["p_simpson_adj"] < alpha:
            lo, hi = rec["ci_pooled"]
            rows.append(_row("simpson_reversal", {**rec, "group": "(within groups)", "reference": "(pooled)",
                                                  "n_reference": rec["n_pooled"]},
                             r_group=rec["r_within"], r_reference=rec["r_pooled"], ci_reference=(lo, hi),
                             ci_group=rec["ci_within"], test="stratified_rank", p_value=rec["p_simpson"], p_adj=rec["p_simpson_adj"],
                             sentence=(
                f"Across {rec['axis']} groups, {rec['measure']} correlates {sign_word(rec['r_pooled'])}ly with "
                f"{rec['target']} when runs are pooled (Spearman ρ = {rec['r_pooled']:.2f}, {pct} CI [{lo:.2f}, {hi:.2f}], "
                f"n = {rec['n_pooled']}) but {sign_word(rec['r_within'])}ly within each group (stratified ρ = "
                f"{rec['r_within']:.2f} over {rec['n_groups']} groups; reversal test BH-adjusted p {_p(rec['p_simpson_adj'])}): "
                f"a Simpson reversal, so the pooled trend reflects differences between {rec['axis']} groups.")))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)


FAMILIES = ("difference", "reversal", "shift")


def adjust_flag_families(records: list[dict], decouple_measure_effect: float = 0.5, decouple_target_effect: float = 0.2) -> None:
    """Each flag is decided on the family of tests that can raise it, Benjamini–Hochberg within that family only.

    Every test is an intersection–union test (Berger 1982: the largest of its component p-values, each two-sided)
    whose p-value is set to 1 when the estimates point the other way, so a family holds only tests of its flag:

    - difference (``weakening``): p = max(p_strength, p of the stronger level's ρ) when the two levels' |ρ| differ
      (one test per pair of levels, shown from the weaker level), else 1;
    - reversal (``sign_reversal`` and ``simpson_reversal``): p = max(p_group, p_reference, p_diff) when ρ_group and
      ρ_reference have opposite signs, else 1; Simpson: p = max(p_pooled, p_within) when the pooled and the
      within-group ρ have opposite signs, else 1;
    - shift (``decoupling``): p = p_measure_shift when |measure shift| ≥ ``decouple_measure_effect`` and the
      target's shift is below ``decouple_target_effect``, else 1 (the flag also needs the target's raw p ≥ alpha).

    Adds ``p_weakening``/``p_reversal``/``p_decoupling``/``p_simpson`` and their ``_adj`` twins to the records.
    """
    family: dict[str, list[tuple[int, str]]] = {f: [] for f in FAMILIES}
    for i, rec in enumerate(records):
        if rec["kind"] == "comparison":
            r_g, r_r = rec["r_group"], rec["r_reference"]
            finite = np.isfinite(r_g) and np.isfinite(r_r)
            stronger_p = rec["p_reference"] if abs(r_r) >= abs(r_g) else rec["p_group"]
            rec["p_weakening"] = max(rec["p_strength"], stronger_p) if finite and abs(r_g) != abs(r_r) else 1.0
            rec["p_reversal"] = (max(rec["p_group"], rec["p_reference"], rec["p_diff"])
                                 if finite and np.sign(r_g) * np.sign(r_r) < 0 else 1.0)
            rec["p_decoupling"] = (rec["p_measure_shift"] if abs(rec["measure_shift"]) >= decouple_measure_effect
                                   and abs(rec["target_shift"]) < decouple_target_effect else 1.0)
            family["difference"].append((i, "p_weakening"))
            family["reversal"].append((i, "p_reversal"))
            family["shift"].append((i, "p_decoupling"))
        elif rec["kind"] == "simpson":
            opposite = np.sign(rec["r_pooled"]) * np.sign(rec["r_within"]) < 0
            rec["p_simpson"] = max(rec["p_pooled"], rec["p_within"]) if opposite else 1.0
            family["reversal"].append((i, "p_simpson"))
    for keys in family.values():
        adjusted = benjamini_hochberg(np.array([records[i][k] for i, k in keys], dtype=np.float64))
        for (i, k), v in zip(keys, adjusted):
            records[i][f"{k}_adj"] = 1.0 if np.isnan(v) else float(v)


def _comparison_flags(rec: dict, alpha: float, pct: str, t_effect: float) -> list[dict]:
    out = []
    reversal = rec["p_reversal_adj"] < alpha
    original, rec = rec, _shown_from_breaking_side(rec, expected_sign(rec["measure"], rec["target"]), reversal)
    r_g, r_r = rec["r_group"], rec["r_reference"]
    (lo, hi), (rlo, rhi) = rec["ci_group"], rec["ci_reference"]
    where = f"Within {rec['group_where']} (n = {rec['n_group']})"
    ref = f"{rec['reference_where']} (ρ = {r_r:.2f}, {pct} CI [{rlo:.2f}, {rhi:.2f}], n = {rec['n_reference']})"
    test_name = "permutation" if min(rec["n_group"], rec["n_reference"]) <= PERMUTATION_MAX_N else "Fisher z"
    if reversal:
        out.append(_row("sign_reversal", rec, test="rank_difference", p_value=rec["p_reversal"], p_adj=rec["p_reversal_adj"], sentence=(
            f"{where}, {rec['measure']} correlates {sign_word(r_g)}ly with {rec['target']} (Spearman ρ = {r_g:.2f}, "
            f"{pct} CI [{lo:.2f}, {hi:.2f}]), the reverse of {ref}; reversal test (both ρ and their "
            f"difference significant, {test_name} test), BH-adjusted p {_p(rec['p_reversal_adj'])}.")))
    elif rec["p_weakening_adj"] < alpha:
        out.append(_row("weakening", rec, test="rank_difference", p_value=rec["p_weakening"], p_adj=rec["p_weakening_adj"], sentence=(
            f"{where}, the correlation of {rec['measure']} with {rec['target']} weakens to Spearman ρ = {r_g:.2f} "
            f"({pct} CI [{lo:.2f}, {hi:.2f}]) from {ref}; {test_name} test of the difference, "
            f"BH-adjusted p {_p(rec['p_weakening_adj'])}.")))
    rec = original  # a shift is shown from the level to the reference, as the intervention is applied
    if rec["p_decoupling_adj"] < alpha and rec["p_target_shift"] >= alpha:
        out.append(_row("decoupling", rec, test="mann_whitney", effect=rec["measure_shift"], p_value=rec["p_decoupling"],
                        p_adj=rec["p_decoupling_adj"], sentence=(
            f"Changing {rec['reference_where']} to {rec['group_where']} shifts {rec['measure']} (rank-biserial "
            f"effect {rec['measure_shift']:+.2f}, Mann–Whitney BH-adjusted p {_p(rec['p_decoupling_adj'])}) while "
            f"{rec['target']} does not move (effect {rec['target_shift']:+.2f}, p {_p(rec['p_target_shift'])}; "
            f"n = {rec['n_group']} vs {rec['n_reference']}): along this intervention {rec['measure']} is decoupled "
            "from generalization.")))
    return out


def flag_coverage(records: list[dict]) -> pl.DataFrame:
    """How many relationships (measure × intervention) the flags tested and how many they could not, per intervention.

    A relationship is tested when at least one pair of its levels was compared; "No break was
    flagged" is a finding only for tested ones.
    """
    status: dict[tuple[str, str], bool] = {}
    for rec in records:
        if rec["kind"] == "too_many_levels":
            for m in rec["measures"]:
                status.setdefault((rec["axis"], m), False)
        elif rec["kind"] in ("comparison", "too_small"):
            key = (rec["axis"], rec["measure"])
            status[key] = status.get(key, False) or rec["kind"] == "comparison"
    axes = list(dict.fromkeys(a for a, _ in status))
    rows = [{"axis": a, "n_relationships": sum(1 for (b, _), _t in status.items() if b == a),
             "n_tested": sum(1 for (b, _), t in status.items() if b == a and t),
             "n_untestable": sum(1 for (b, _), t in status.items() if b == a and not t)} for a in axes]
    schema = {"axis": pl.Utf8, "n_relationships": pl.Int64, "n_tested": pl.Int64, "n_untestable": pl.Int64}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def tested_relationships(records: list[dict]) -> set[tuple[str, str]]:
    """(axis, measure) pairs with at least one comparison tested."""
    return {(r["axis"], r["measure"]) for r in records if r["kind"] == "comparison"}


def _row(flag: str, rec: Mapping[str, Any], *, sentence: str, r_group: float | None = None, r_reference: float | None = None,
         ci_reference: tuple[float, float] | None = None, ci_group: tuple[float, float] | None = None, test: str | None = None, effect: float | None = None,
         p_value: float | None = None, p_adj: float | None = None) -> dict:
    ci_g = ci_group or rec.get("ci_group", (None, None))
    ci_r = ci_reference or rec.get("ci_reference", (None, None))
    return {
        "flag": flag, "measure": rec["measure"], "target": rec["target"], "axis": rec["axis"], "group": rec["group"],
        "reference": rec["reference"], "n_group": rec.get("n_group"), "n_reference": rec.get("n_reference"),
        "coefficient": "spearman",
        "r_group": finite_or_none(r_group if r_group is not None else rec.get("r_group")),
        "r_group_ci_low": finite_or_none(ci_g[0]), "r_group_ci_high": finite_or_none(ci_g[1]),
        "r_reference": finite_or_none(r_reference if r_reference is not None else rec.get("r_reference")),
        "r_reference_ci_low": finite_or_none(ci_r[0]), "r_reference_ci_high": finite_or_none(ci_r[1]),
        "test": test, "effect": finite_or_none(effect), "p_value": finite_or_none(p_value), "p_adj": finite_or_none(p_adj), "sentence": sentence,
    }


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
