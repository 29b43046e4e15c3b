"""The verdict: for each measure and each intervention, does its relation to the target hold, weaken or reverse?

Three frames for the top of the report (``suite.report_frames``), built from the statistics already computed.
Every "significant" below means one thing: the interval shown next to the number excludes 0 (the rank table's
Kendall CI for a pooled τ; ``kendall_ci`` — a Gaussian-copula Neyman belt up to 50 runs, Fisher's z above, see
``analyze.stats.rank_intervals`` — for a τ inside a level), so the word and the CI never disagree.

- ``verdict_matrix`` — one row per (measure, intervention); the cell rules are ``cell_verdict``: ``reverses`` when a
  ``sign_reversal`` / ``simpson_reversal`` flag was raised or two levels (≥ ``min_group`` runs) have τ CIs excluding 0
  on opposite sides, flag or not; ``weakens`` for a ``weakening`` / ``decoupling`` flag; ``undecided`` when nothing
  was flagged but some testable level's τ lacks the expected sign (the pooled τ's sign for a measure or target
  without a known orientation) — a point estimate the design cannot tell from noise, neither a hold nor a break;
  ``holds`` only when τ has the expected sign in every testable level and nothing was flagged; ``not_testable`` when
  fewer than two levels have ``min_group`` runs. ``tau_within`` lists Kendall τ-b with its CI inside each level (≥ 3 runs;
  else "not enough runs"). ``pooled_relation``: ``expected`` / ``reversed`` (pooled CI excludes 0 on the
  literature's / the other side), ``none`` (it contains 0) or ``unknown`` (no expected sign or no τ).
- ``reversal_explanations`` — one row per measure whose pooled CI excludes 0 on the unexpected side
  (``pooled_relation == "reversed"``). An intervention *explains* it ("because of X") only when τ has the expected
  sign in every level of X with ≥ ``min_group`` runs and, in at least one, its CI at confidence 1 − alpha/m (m = the
  levels examined for that measure, Bonferroni) excludes 0 on the expected side; of several, the one with most such
  levels (then most runs in them) is named.
- ``verdict_sentences`` — 3 to 6 sentences: which measures predict the target across every intervention, which break
  and where, why reversals happen, and what could not be tested and what would make it testable. A measure is said
  to predict "along every intervention" only if its pooled CI excludes 0 on the expected side and every cell holds.

Measures only: the frames list ``measure.*`` columns (``pick_measures``), never ``diag.*``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

from analyze.stats._data import as_float, expected_sign, sign_word
from analyze.defaults import CONFIDENCE
from analyze.stats.rank_intervals import excludes_zero, rank_interval
from collect.catalog import entry_name
from analyze.stats.interventions import Intervention

KENDALL_Z_VARIANCE = 0.437  # var(artanh τ) ≈ 0.437/(n − 4) for Kendall's τ (Fieller, Hartley & Pearson 1957)
MIN_TAU_RUNS = 3
FAMILIES: dict[str, tuple[str, ...]] = {
    "margins": ("margins", "normalized_margin"),
    "norms": ("norms", "jiang_norms", "fisher_rao"),
    "Hessian trace": ("hessian_trace", "per_sample_trace", "hessian_frobenius", "relative_flatness"),
    "λ_max": ("lambda_max", "lambda_max_between_iterates", "top_eigenvalues", "top_k"),
    "sharpness": ("sharpness", "jiang_sharpness", "jiang_sharpness_mag"),
    "adaptive sharpness": ("adaptive_sharpness", "average_sharpness"),
    "PAC-Bayes": ("pacbayes_flatness", "pacbayes_mag_flatness", "pacbayes_bounds"),
    "log volume": ("log_volume",),
    "spectra": ("heavy_tail",),
    "optimization": ("optimization_speed", "grad_noise"),
}
FAMILY_ORDER = (*FAMILIES, "other")
VERDICTS = ("holds", "undecided", "weakens", "reverses", "not_testable")

MATRIX_SCHEMA: dict[str, pl.DataType] = {
    "measure": pl.Utf8, "family": pl.Utf8, "target": pl.Utf8, "intervention": pl.Utf8, "axes": pl.List(pl.Utf8),
    "axis": pl.Utf8, "verdict": pl.Utf8, "tau_pooled": pl.Float64, "pooled_relation": pl.Utf8, "tau_within": pl.Utf8,
    "n_runs": pl.Int64, "evidence": pl.Utf8, "sort_key": pl.Int64, "wrong_sign_levels": pl.Utf8,
}
EXPLAIN_SCHEMA: dict[str, pl.DataType] = {
    "measure": pl.Utf8, "target": pl.Utf8, "tau_pooled": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    "n": pl.Int64, "explained_by": pl.Utf8, "sentence": pl.Utf8,
}


def short(measure: str) -> str:
    return measure.removeprefix("measure.")


def measure_family(measure: str) -> str:
    """The family of a ``measure.<key>`` column by the registry entry that declares the key; "other" if none."""
    entry = _registry_entry(short(measure))
    return next((f for f, entries in FAMILIES.items() if entry in entries), "other")


def _registry_entry(key: str) -> str | None:
    """The measure whose entry declares output ``key`` (torch-free ``collect.catalog``), or None."""
    return entry_name(key)


def kendall_ci(tau: float, n: int, confidence: float) -> tuple[float | None, float | None]:
    """The interval of Kendall's τ from n runs (``rank_intervals.rank_interval``: a Gaussian-copula Neyman belt for
    n ≤ 50, tanh(artanh τ ± z_{(1+c)/2}·√(0.437/(n − 4))) above); None for n ≤ 4 or undefined τ."""
    lo, hi = rank_interval(tau, n, confidence, "kendall")
    return (None, None) if np.isnan(lo) else (lo, hi)


def level_taus(x: np.ndarray, y: np.ndarray, levels: np.ndarray, confidence: float = CONFIDENCE) -> list[dict]:
    """Kendall τ-b (scipy) of x and y inside each level (complete cases): level, n, tau, p, ci (``kendall_ci``) and
    side (+1 / −1 when the CI lies above / below 0, else 0); tau None below 3 runs or when a variable is constant."""
    ok = np.isfinite(x) & np.isfinite(y)
    out = []
    for lv in dict.fromkeys(levels.tolist()):
        m = ok & (levels == lv)
        n = int(m.sum())
        tau = p = None
        ci: tuple[float | None, float | None] = (None, None)
        if n >= MIN_TAU_RUNS and np.ptp(x[m]) > 0 and np.ptp(y[m]) > 0:
            res = stats.kendalltau(x[m], y[m])
            tau, p = float(res.statistic), float(res.pvalue)
            ci = kendall_ci(tau, n, confidence)
        out.append({"level": lv, "n": n, "tau": tau, "p": p, "ci": ci, "side": excludes_zero(ci)})
    return out


def _within_text(iv: Intervention, taus: list[dict]) -> str:
    parts = []
    for t in taus:
        name = iv.said(t["level"])
        lo, hi = t.get("ci", (None, None))
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        parts.append(f"{name}: τ = {t['tau']:+.2f}{ci} (n = {t['n']})" if t["tau"] is not None
                     else f"{name}: not enough runs (n = {t['n']})" if t["n"] < MIN_TAU_RUNS
                     else f"{name}: undefined (constant, n = {t['n']})")
    return "; ".join(parts)


def cell_verdict(taus: list[dict], flag_kinds: set[str], tested: bool, want: int, pooled_side: int,
                 min_group: int) -> tuple[str, list[dict], list[dict]]:
    """(verdict, levels of the unexpected sign, opposite significant levels) of one measure × intervention cell.

    - ``reverses``: a reversal flag was raised, or two levels with ≥ ``min_group`` runs have Kendall τ CIs that
      exclude 0 on opposite sides;
    - ``weakens``: a weakening or decoupling flag was raised;
    - ``undecided``: nothing was flagged, but some testable level's τ does not have the expected sign (for a measure
      or target with no known orientation: the sign of the pooled τ when its CI excludes 0, ``pooled_side``) — a
      null result that neither confirms the relation there nor shows a break;
    - ``holds``: the relation was tested and τ has the expected sign in every testable level — or there is no sign
      to hold (no known orientation and a pooled CI containing 0; the report shows it as "direction unknown");
    - ``not_testable``: fewer than two levels have ``min_group`` runs.
    """
    testable = [t for t in taus if t["n"] >= min_group and t["tau"] is not None]
    sides = {t["side"] for t in testable}
    opposite = [t for t in testable if t["side"] != 0] if {1, -1} <= sides else []
    side = want or pooled_side
    wrong = [t for t in testable if side and np.sign(t["tau"]) != side]
    if flag_kinds & {"sign_reversal", "simpson_reversal"} or opposite:
        return "reverses", wrong, opposite
    if flag_kinds:
        return "weakens", wrong, opposite
    if not tested and len(testable) < 2:
        return "not_testable", wrong, opposite
    return ("undecided" if wrong else "holds"), wrong, opposite


def verdict_matrix(
    runs: pl.DataFrame,
    *,
    target: str,
    measures: Sequence[str],
    found: Sequence[Intervention],
    flags: pl.DataFrame | None,
    tested: set[tuple[str, str]],
    untested_reasons: Mapping[tuple[str, str], str],
    rank: pl.DataFrame | None,
    min_group: int,
    alpha: float = 0.05,
    target_better: str | None = None,
    confidence: float = CONFIDENCE,
) -> pl.DataFrame:
    """One row per (measure, intervention) with its verdict and evidence (module docstring); ``target_better``
    orients a target without a known orientation (``analyze.columns.target_badness``)."""
    pooled = pooled_relations(rank, alpha, confidence)
    tau_pooled = {m: t for m, (t, _) in pooled.items()}
    pooled_sides = ({r["measure"]: excludes_zero(pooled_interval(r, confidence)) for r in rank.iter_rows(named=True)}
                    if rank is not None else {})
    y = as_float(runs, [target])[:, 0]
    x_all = as_float(runs, list(measures))
    by_key: dict[tuple[str, str], list[dict]] = {}
    if flags is not None:
        for row in flags.filter(pl.col("flag") != "too_small").iter_rows(named=True):
            by_key.setdefault((row["measure"], row["axis"]), []).append(row)
    levels = {iv.name: iv.levels(runs) for iv in found}
    order = sorted(measures, key=lambda m: (FAMILY_ORDER.index(measure_family(m)), -abs(tau_pooled.get(m) or 0.0), m))
    rows = []
    for mi, measure in enumerate(measures):
        x = x_all[:, mi]
        n_runs = int((np.isfinite(x) & np.isfinite(y)).sum())
        want = expected_sign(measure, target, target_better)
        for ii, iv in enumerate(found):
            taus = level_taus(x, y, levels[iv.name], confidence)
            raised = by_key.get((measure, iv.name), [])
            kinds = {r["flag"] for r in raised}
            verdict, wrong_levels, opposite = cell_verdict(taus, kinds, (iv.name, measure) in tested, want,
                                                           pooled_sides.get(measure, 0), min_group)
            expected_word = "the literature's sign" if want else "the pooled τ's sign"
            wrong = [f"{iv.said(t['level'])}: τ = {t['tau']:+.2f} (n = {t['n']})" for t in wrong_levels]
            within = _within_text(iv, taus)
            pct = f"{confidence * 100:g}%"
            if verdict == "reverses":
                flagged = [r for r in raised if r["flag"] in ("sign_reversal", "simpson_reversal")]
                if flagged:
                    evidence = flagged[0]["sentence"]
                else:
                    pos = ", ".join(iv.said(t["level"]) for t in opposite if t["side"] > 0)
                    neg = ", ".join(iv.said(t["level"]) for t in opposite if t["side"] < 0)
                    evidence = (f"τ is positive within {pos} and negative within {neg}, each {pct} CI excluding 0 "
                                f"(no flag family needed: the CIs alone show opposite signs); within levels: {within}.")
            elif verdict == "weakens" and kinds:
                evidence = raised[0]["sentence"]
            elif verdict == "undecided":
                evidence = (f"No break flagged along {iv.label}, but τ does not have {expected_word} within "
                            + "; ".join(wrong) + ", so the relation is not seen there and no break is shown either "
                            f"(undecided); within levels: {within}.")
            elif verdict == "holds" and not (want or pooled_sides.get(measure, 0)):
                evidence = (f"No break flagged along {iv.label}; no expected sign is known and the pooled τ's {pct} CI "
                            f"contains 0, so there is no sign to hold; within levels: {within}.")
            elif verdict == "holds":
                evidence = (f"No break flagged along {iv.label} (each level compared with the rest of its levels, "
                            f"Benjamini–Hochberg within each flag family) and τ has {expected_word} in every level "
                            f"with ≥ {min_group} runs; within levels: {within}.")
                if pooled.get(measure, (None, "unknown"))[1] == "none":
                    evidence += f" The pooled relation itself is not significant ({pct} CI includes 0)."
            else:
                reason = untested_reasons.get((iv.name, measure)) or f"no level of {iv.label} has {min_group} runs"
                evidence = (f"Not testable along {iv.label}: {reason}. At least two levels need at least {min_group} finished "
                            f"runs with {short(measure)}: run more seeds per configuration, a larger scale "
                            "(e.g. --scale cpu), or lower --min-group.")
            rows.append({
                "measure": measure, "family": measure_family(measure), "target": target, "intervention": iv.label,
                "axes": list(iv.axes), "axis": iv.name, "verdict": verdict, "tau_pooled": tau_pooled.get(measure),
                "pooled_relation": pooled.get(measure, (None, "unknown"))[1],
                "tau_within": within, "n_runs": n_runs, "evidence": evidence,
                "sort_key": order.index(measure) * max(1, len(found)) + ii,
                "wrong_sign_levels": "; ".join(wrong) or None,
            })
    frame = pl.DataFrame(rows, schema=MATRIX_SCHEMA, orient="row") if rows else pl.DataFrame(schema=MATRIX_SCHEMA)
    return frame.sort("sort_key")


def reversal_explanations(
    runs: pl.DataFrame,
    *,
    target: str,
    rank: pl.DataFrame,
    found: Sequence[Intervention],
    min_group: int,
    confidence: float = CONFIDENCE,
    alpha: float = 0.05,
    target_better: str | None = None,
) -> pl.DataFrame:
    """One row per significantly reversed measure: is the reversal explained by an intervention (module docstring)?"""
    relations = pooled_relations(rank, alpha, confidence)
    reversed_rows = rank.filter(pl.col("measure").is_in([m for m, (_, rel) in relations.items() if rel == "reversed"]))
    y = as_float(runs, [target])[:, 0]
    levels = {iv.name: iv.levels(runs) for iv in found}
    pct = f"{confidence * 100:g}%"
    rows = []
    for r in reversed_rows.iter_rows(named=True):
        measure, tau = r["measure"], r["kendall_tau"]
        lo, hi = pooled_interval(r, confidence)
        want = expected_sign(measure, target, target_better)
        x = as_float(runs, [measure])[:, 0]
        m = sum(1 for iv in found for t in level_taus(x, y, levels[iv.name])
                if t["n"] >= min_group and t["tau"] is not None)
        strict = 1 - alpha / max(m, 1)  # Bonferroni over the levels examined
        per_iv = {iv.name: [t for t in level_taus(x, y, levels[iv.name], strict) if t["n"] >= min_group and t["tau"] is not None]
                  for iv in found}
        best: tuple[int, int, Intervention] | None = None
        for iv in found:
            levels_in = per_iv[iv.name]
            support = [t for t in levels_in if t["side"] == want]
            everywhere = bool(levels_in) and all(np.sign(t["tau"]) == want for t in levels_in)
            if everywhere and support and (best is None or (len(support), sum(t["n"] for t in support)) > best[:2]):
                best = (len(support), sum(t["n"] for t in support), iv)
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        head = (f"{short(measure)} is reversed overall (τ = {tau:+.2f}{ci}, n = {r['n']}; the literature expects a "
                f"{sign_word(want)} τ with {target})")
        if best is None:
            sentence = (f"{head}; unexplained: no intervention has τ of the expected sign in every one of its levels "
                        f"with ≥ {min_group} runs and a {strict * 100:.3g}% CI (Bonferroni over the {m} level(s) "
                        "examined) excluding 0 on that side in at least one.")
            explained = None
        else:
            iv = best[2]
            parts = []
            for t in level_taus(x, y, levels[iv.name], confidence):
                name = iv.said(t["level"])
                if t["tau"] is None or t["n"] < min_group:
                    parts.append(f"within {name}, not enough runs (n = {t['n']})")
                    continue
                tlo, thi = t["ci"]
                tci = f" [{tlo:.2f}, {thi:.2f}]" if tlo is not None else ""
                parts.append(f"within {name}, τ = {t['tau']:+.2f}{tci} (n = {t['n']})")
            sentence = f"{head} because of {iv.label}: " + "; ".join(parts) + f" ({pct} CIs)."
            explained = iv.label
        rows.append({"measure": measure, "target": target, "tau_pooled": tau, "ci_low": lo, "ci_high": hi, "n": r["n"],
                     "explained_by": explained, "sentence": sentence})
    return pl.DataFrame(rows, schema=EXPLAIN_SCHEMA, orient="row") if rows else pl.DataFrame(schema=EXPLAIN_SCHEMA)


def verdict_sentences(
    matrix: pl.DataFrame,
    rank: pl.DataFrame | None,
    explanations: pl.DataFrame | None,
    *,
    target: str,
    alpha: float = 0.05,
    min_group: int = 8,
    no_interventions: str | None = None,
    confidence: float = CONFIDENCE,
) -> pl.DataFrame:
    """3–6 sentences answering the researcher's question (module docstring), in order."""
    out: list[str] = []
    predictors = _predictors(matrix, rank, alpha, confidence)
    n_iv = matrix["intervention"].n_unique() if matrix.height else 0
    criterion = f"the {confidence * 100:g}% CI of the pooled Kendall τ excludes 0"
    cis = {r["measure"]: pooled_interval(r, confidence) for r in rank.iter_rows(named=True)} if rank is not None else {}

    def tau_text(m: str, t: float) -> str:
        lo, hi = cis.get(m, (None, None))
        return f"τ = {t:+.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "")

    if no_interventions:
        pooled = [(m, t) for m, (t, rel) in pooled_relations(rank, alpha, confidence).items() if rel == "expected"]
        names = ", ".join(f"{short(m)} ({tau_text(m, t)})" for m, t in pooled[:6]) or "No measure"
        out.append(f"{names} predict{'s' if len(pooled) <= 1 else ''} {target} with the expected sign over all runs "
                   f"({criterion}); whether that holds across interventions is unknown.")
    elif predictors:
        robust = [(m, t) for m, t, wrong in predictors if wrong is None]
        fragile = [(m, t, wrong) for m, t, wrong in predictors if wrong is not None]
        if robust:
            shown = ", ".join(f"{short(m)} ({tau_text(m, t)})" for m, t in robust[:6])
            more = f" and {len(robust) - 6} more" if len(robust) > 6 else ""
            one = len(robust) == 1
            out.append(f"{shown}{more} predict{'s' if one else ''} {target} with the expected sign ({criterion}) and "
                       f"hold{'s' if one else ''} along every intervention tested ({n_iv} intervention(s)), with τ of "
                       "the expected sign inside every level.")
        else:
            out.append(f"No measure predicts {target} with the expected sign ({criterion}) inside every level of every "
                       "intervention.")
        if fragile:
            parts = [f"{short(m)} ({tau_text(m, t)}; inside {wrong})" for m, t, wrong in fragile[:3]]
            more = f" and {len(fragile) - 3} more" if len(fragile) > 3 else ""
            out.append("These predict " + target + " over all runs with no break flagged, but τ has the sign the "
                       "literature does not expect inside some level, so the pooled relation rests on the other levels: "
                       + "; ".join(parts) + more + ".")
    else:
        out.append(f"No measure predicts {target} with the expected sign ({criterion}) while holding along every "
                   "intervention tested.")
    broken = matrix.filter(pl.col("verdict").is_in(["reverses", "weakens"])) if matrix.height else matrix
    tested = matrix.filter(pl.col("verdict") != "not_testable") if matrix.height else matrix
    if no_interventions:
        out.append(f"Breaks could not be looked for: {no_interventions}.")
    elif broken.height:
        items = [f"{short(r['measure'])} {r['verdict']} along {r['intervention']}" for r in broken.iter_rows(named=True)]
        more = f"; and {len(items) - 5} more" if len(items) > 5 else ""
        out.append(f"{broken.height} of {tested.height} tested measure × intervention relationship(s) break: "
                   + "; ".join(items[:5]) + more + ".")
    elif tested.height:
        out.append(f"No break was flagged among the {tested.height} measure × intervention relationship(s) tested.")
    else:
        out.append("No measure × intervention relationship could be tested for breaks, so none is claimed.")
    if explanations is not None and explanations.height:
        expl = explanations.filter(pl.col("explained_by").is_not_null())
        unexpl = explanations.filter(pl.col("explained_by").is_null())
        if expl.height:
            out.append(expl["sentence"][0] + (f" ({expl.height - 1} more reversal(s) explained likewise in the table.)"
                                               if expl.height > 1 else ""))
        if unexpl.height:
            names = ", ".join(short(m) for m in unexpl["measure"].to_list()[:5])
            more = f" and {unexpl.height - 5} more" if unexpl.height > 5 else ""
            out.append(f"{unexpl.height} reversal(s) are unexplained by any intervention: {names}{more}.")
    undecided = matrix.filter(pl.col("verdict") == "undecided") if matrix.height else matrix
    if undecided.height:
        out.append(f"{undecided.height} of {tested.height} relationship(s) are undecided: no break was detected, but τ "
                   "lacks the expected sign inside some level, so the design can neither confirm the relation there "
                   "nor show that it breaks (more seeds or configurations per level would decide).")
    untestable = matrix.filter(pl.col("verdict") == "not_testable") if matrix.height else matrix
    if untestable.height:
        ivs = ", ".join(dict.fromkeys(untestable["intervention"].to_list()))
        out.append(f"{untestable.height} of {matrix.height} relationship(s) could not be tested (along {ivs}): each "
                   f"level and its reference need at least {min_group} finished runs; run more seeds per configuration "
                   "or a larger scale (--scale cpu), or lower --min-group.")
    elif matrix.height:
        out.append(f"Every one of the {matrix.height} measure × intervention relationship(s) was tested.")
    if no_interventions:
        out.append(f"To test where the relations break, vary at least one hyperparameter in the sweep spec (a grid "
                   f"axis) with at least {min_group} finished runs per level.")
    out = out[:6]
    return pl.DataFrame({"sentence": out}, schema={"sentence": pl.Utf8})


def pooled_relations(rank: pl.DataFrame | None, alpha: float = 0.05,
                     confidence: float = CONFIDENCE) -> dict[str, tuple[float | None, str]]:
    """measure → (pooled τ, "expected" | "reversed" | "none" | "unknown"), decided by the interval the report shows:
    the rank table's Kendall CI (``kendall_ci_low``/``kendall_ci_high``), else ``kendall_ci(τ, n, confidence)``.
    "expected"/"reversed": the CI excludes 0 on the literature's / the other side; "none": it contains 0;
    "unknown": no expected sign or no τ. ``alpha`` is not used: one interval decides, so word and CI agree."""
    if rank is None or rank.height == 0:
        return {}
    out = {}
    for row in rank.iter_rows(named=True):
        relation = "unknown"
        if row["direction"] in ("as expected", "reversed", "none"):
            side = excludes_zero(pooled_interval(row, confidence))
            want = row.get("expected_sign") or (1 if row["direction"] == "as expected" else -1) * int(np.sign(row["kendall_tau"] or 0))
            relation = "none" if side == 0 else "expected" if side == want else "reversed"
        out[row["measure"]] = (row["kendall_tau"], relation)
    return out


def pooled_interval(row: Mapping[str, Any], confidence: float) -> tuple[float | None, float | None]:
    """The rank row's Kendall CI, or ``kendall_ci`` of its τ and n when the table has none."""
    lo, hi = row.get("kendall_ci_low"), row.get("kendall_ci_high")
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        return float(lo), float(hi)
    tau, n = row.get("kendall_tau"), row.get("n")
    return kendall_ci(tau, int(n), confidence) if tau is not None and n else (None, None)


def _predictors(matrix: pl.DataFrame, rank: pl.DataFrame | None, alpha: float,
                confidence: float = CONFIDENCE) -> list[tuple[str, float, str | None]]:
    """Measures whose pooled τ's CI excludes 0 on the expected side and with no break, with the
    levels (≥ min_group runs) inside which τ nevertheless has the other sign (None when there is none): a pooled
    relation that one intervention creates (e.g. only the attack-set runs carry it) is not claimed to hold."""
    out = []
    for measure, (tau, relation) in pooled_relations(rank, alpha, confidence).items():
        if relation != "expected":
            continue
        mine = matrix.filter(pl.col("measure") == measure) if matrix.height else matrix
        verdicts = set(mine["verdict"].to_list()) if mine.height else set()
        if "holds" in verdicts and not verdicts & {"reverses", "weakens"}:
            wrong = [w for w in mine["wrong_sign_levels"].to_list() if w] if mine.height else []
            out.append((measure, float(tau), "; ".join(wrong) or None))
    return out


def untested_reasons(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(axis, measure) → why it was not tested, from the flags' too_small / too_many_levels records."""
    out: dict[tuple[str, str], str] = {}
    for rec in records:
        if rec["kind"] == "too_small":
            out.setdefault((rec["axis"], rec["measure"]), f"{rec['group_where']} has {rec['n_group']} run(s)")
        elif rec["kind"] == "too_many_levels":
            for m in rec["measures"]:
                out.setdefault((rec["axis"], m), f"{rec['axis']} has {rec['n_levels']} levels (bin it into at most 12)")
    return out
