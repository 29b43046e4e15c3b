"""The verdict: for each measure and each intervention, does its relation to the target hold, weaken or reverse?

Three frames for the top of the report (``suite.report_frames``), built from the statistics already computed:

- ``verdict_matrix`` — one row per (measure, intervention). The verdict is the break flags' decision (so it inherits
  their error control, ``analyze.stats.flags``): ``reverses`` when a ``sign_reversal`` or ``simpson_reversal`` flag
  was raised along the intervention, ``weakens`` for ``weakening`` or ``decoupling``, ``holds`` when at least one of
  its levels was compared with the reference and nothing was flagged, ``not_testable`` when no level could be
  compared (fewer than ``min_group`` runs, too many levels, no intervention). ``tau_within`` lists Kendall τ-b
  inside each level (needs ≥ 3 runs; else "not enough runs"). ``pooled_relation`` says what there is to hold:
  ``expected`` / ``reversed`` (pooled τ significant after Benjamini–Hochberg over the rank table, with / against
  the literature's sign), ``none`` (not significant) or ``unknown`` (no expected sign or no τ); a measure that
  "holds" with ``none`` has no relation to lose.
- ``reversal_explanations`` — one row per measure whose pooled τ has the sign the literature does not expect and is
  significant after Benjamini–Hochberg over the rank table (``pooled_relation == "reversed"``; a τ of the wrong sign
  that is not significant is no reversal to explain). Within each level of each intervention Kendall τ-b is computed with the
  interval tanh(artanh τ ± z·√(0.437/(n − 4))) (Fieller, Hartley & Pearson 1957's variance of Fisher's z for
  Kendall's τ) and scipy.stats.kendalltau's p. An intervention *explains* the reversal when in at least one of its
  levels (≥ ``min_group`` runs) τ takes the expected sign with p·m < alpha, m = the number of levels examined for
  that measure (Bonferroni); of several, the one with most such levels (then most runs in them) is named.
- ``verdict_sentences`` — 3 to 6 sentences: which measures predict the target across every intervention, which break
  and where, why reversals happen, and what could not be tested and what would make it testable. A measure is said
  to predict "along every intervention" only if, besides a significant pooled τ of the expected sign and no flag,
  τ has the expected sign inside every level with ≥ ``min_group`` runs (``wrong_sign_levels`` lists the others, and
  the sentence names them: a pooled relation that one level carries, e.g. only the attack-set runs, is not robust).

Measures only: the frames list ``measure.*`` columns (``pick_measures``), never ``diag.*``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

from analyze.stats._data import as_float, expected_sign, sign_word
from analyze.stats.flags import fisher_z_interval
from analyze.stats.interventions import Intervention
from analyze.stats.multiple_testing import benjamini_hochberg

KENDALL_Z_VARIANCE = 0.437  # var(artanh τ) ≈ 0.437/(n − 4) for Kendall's τ (Fieller, Hartley & Pearson 1957)
MIN_TAU_RUNS = 3
FAMILIES: dict[str, tuple[str, ...]] = {
    "margins": ("margins", "normalized_margin"),
    "norms": ("norms",),
    "Hessian trace": ("hessian_trace", "per_sample_trace", "hessian_frobenius", "relative_flatness"),
    "λ_max": ("lambda_max", "lambda_max_between_iterates", "top_eigenvalues", "top_k"),
    "sharpness": ("sharpness",),
    "PAC-Bayes": ("pacbayes_flatness", "pacbayes_mag_flatness"),
    "log volume": ("log_volume",),
}
FAMILY_ORDER = (*FAMILIES, "other")
VERDICTS = ("holds", "weakens", "reverses", "not_testable")

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


@lru_cache(maxsize=None)
def _registry_entry(key: str) -> str | None:
    try:
        from collect.measures.registry import registry
    except Exception:  # torch missing: families unknown, not an error
        return None
    for m in registry().values():
        if key in m.directions or key in getattr(m, "diagnostics", ()):
            return m.name
    return None


def kendall_ci(tau: float, n: int, confidence: float) -> tuple[float | None, float | None]:
    """tanh(artanh τ ± z_{(1+c)/2}·√(0.437/(n − 4))); None for n ≤ 4 or undefined τ."""
    lo, hi = fisher_z_interval(tau, n, confidence, KENDALL_Z_VARIANCE, offset=4)
    return (None, None) if np.isnan(lo) else (lo, hi)


def level_taus(x: np.ndarray, y: np.ndarray, levels: np.ndarray) -> list[dict]:
    """Kendall τ-b (scipy) of x and y inside each level (complete cases): level, n, tau, p; tau None below 3 runs
    or when a variable is constant in the level."""
    ok = np.isfinite(x) & np.isfinite(y)
    out = []
    for lv in dict.fromkeys(levels.tolist()):
        m = ok & (levels == lv)
        n = int(m.sum())
        tau = p = None
        if n >= MIN_TAU_RUNS and np.ptp(x[m]) > 0 and np.ptp(y[m]) > 0:
            res = stats.kendalltau(x[m], y[m])
            tau, p = float(res.statistic), float(res.pvalue)
        out.append({"level": lv, "n": n, "tau": tau, "p": p})
    return out


def _within_text(iv: Intervention, taus: list[dict]) -> str:
    parts = []
    for t in taus:
        name = iv.said(t["level"])
        parts.append(f"{name}: τ = {t['tau']:+.2f} (n = {t['n']})" if t["tau"] is not None
                     else f"{name}: not enough runs (n = {t['n']})" if t["n"] < MIN_TAU_RUNS
                     else f"{name}: undefined (constant, n = {t['n']})")
    return "; ".join(parts)


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
) -> pl.DataFrame:
    """One row per (measure, intervention) with its verdict and evidence (module docstring)."""
    pooled = pooled_relations(rank, alpha)
    tau_pooled = {m: t for m, (t, _) in pooled.items()}
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
        for ii, iv in enumerate(found):
            taus = level_taus(x, y, levels[iv.name])
            raised = by_key.get((measure, iv.name), [])
            kinds = {r["flag"] for r in raised}
            want = expected_sign(measure, target)
            wrong = [f"{iv.said(t['level'])}: τ = {t['tau']:+.2f} (n = {t['n']})" for t in taus
                     if want and t["tau"] is not None and t["n"] >= min_group and np.sign(t["tau"]) == -want]
            if kinds & {"sign_reversal", "simpson_reversal"}:
                verdict = "reverses"
                evidence = next(r["sentence"] for r in raised if r["flag"] in ("sign_reversal", "simpson_reversal"))
            elif kinds:
                verdict = "weakens"
                evidence = raised[0]["sentence"]
            elif (iv.name, measure) in tested:
                verdict = "holds"
                evidence = (f"No break flagged along {iv.label} (each level compared with the reference, "
                            f"Benjamini–Hochberg within each flag family); within levels: {_within_text(iv, taus)}.")
                if pooled.get(measure, (None, "unknown"))[1] == "none":
                    evidence += " The pooled relation itself is not significant, so there is little to break."
                if wrong:
                    evidence += (" Not flagged, but τ has the sign the literature does not expect within "
                                 + "; ".join(wrong) + ".")
            else:
                verdict = "not_testable"
                reason = untested_reasons.get((iv.name, measure)) or f"no level of {iv.label} has {min_group} runs"
                evidence = (f"Not testable along {iv.label}: {reason}. Each level and the reference need at least "
                            f"{min_group} finished runs with {short(measure)}: run more seeds per configuration, "
                            "a larger scale (e.g. --scale cpu), or lower --min-group.")
            rows.append({
                "measure": measure, "family": measure_family(measure), "target": target, "intervention": iv.label,
                "axes": list(iv.axes), "axis": iv.name, "verdict": verdict, "tau_pooled": tau_pooled.get(measure),
                "pooled_relation": pooled.get(measure, (None, "unknown"))[1],
                "tau_within": _within_text(iv, taus), "n_runs": n_runs, "evidence": evidence,
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
    confidence: float = 0.95,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """One row per significantly reversed measure: is the reversal explained by an intervention (module docstring)?"""
    relations = pooled_relations(rank, alpha)
    reversed_rows = rank.filter(pl.col("measure").is_in([m for m, (_, rel) in relations.items() if rel == "reversed"]))
    y = as_float(runs, [target])[:, 0]
    levels = {iv.name: iv.levels(runs) for iv in found}
    pct = f"{confidence * 100:g}%"
    rows = []
    for r in reversed_rows.iter_rows(named=True):
        measure, tau = r["measure"], r["kendall_tau"]
        lo, hi = r.get("kendall_ci_low"), r.get("kendall_ci_high")
        if lo is None or hi is None:
            lo, hi = kendall_ci(tau, r["n"], confidence)
        want = expected_sign(measure, target)
        x = as_float(runs, [measure])[:, 0]
        per_iv = {iv.name: [t for t in level_taus(x, y, levels[iv.name]) if t["n"] >= min_group and t["tau"] is not None]
                  for iv in found}
        m = sum(len(v) for v in per_iv.values())
        best: tuple[int, int, Intervention] | None = None
        for iv in found:
            support = [t for t in per_iv[iv.name] if np.sign(t["tau"]) == want and t["p"] * m < alpha]
            if support and (best is None or (len(support), sum(t["n"] for t in support)) > best[:2]):
                best = (len(support), sum(t["n"] for t in support), iv)
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        head = (f"{short(measure)} is reversed overall (τ = {tau:+.2f}{ci}, n = {r['n']}; the literature expects a "
                f"{sign_word(want)} τ with {target})")
        if best is None:
            sentence = (f"{head}; unexplained: in no level of any intervention ({m} level(s) with ≥ {min_group} runs "
                        f"examined) does τ take the expected sign significantly (Bonferroni over the levels).")
            explained = None
        else:
            iv = best[2]
            parts = []
            for t in level_taus(x, y, levels[iv.name]):
                name = iv.said(t["level"])
                if t["tau"] is None:
                    parts.append(f"within {name}, not enough runs (n = {t['n']})")
                    continue
                tlo, thi = kendall_ci(t["tau"], t["n"], confidence)
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
) -> pl.DataFrame:
    """3–6 sentences answering the researcher's question (module docstring), in order."""
    out: list[str] = []
    predictors = _predictors(matrix, rank, alpha)
    n_iv = matrix["intervention"].n_unique() if matrix.height else 0
    criterion = f"Kendall τ significant after Benjamini–Hochberg at {alpha:g}"
    if no_interventions:
        pooled = [(m, t) for m, (t, rel) in pooled_relations(rank, alpha).items() if rel == "expected"]
        names = ", ".join(f"{short(m)} (τ = {t:+.2f})" for m, t in pooled[:6]) or "No measure"
        out.append(f"{names} predict{'s' if len(pooled) <= 1 else ''} {target} with the expected sign over all runs "
                   f"({criterion}); whether that holds across interventions is unknown.")
    elif predictors:
        robust = [(m, t) for m, t, wrong in predictors if wrong is None]
        fragile = [(m, t, wrong) for m, t, wrong in predictors if wrong is not None]
        if robust:
            shown = ", ".join(f"{short(m)} (τ = {t:+.2f})" for m, t in robust[:6])
            more = f" and {len(robust) - 6} more" if len(robust) > 6 else ""
            one = len(robust) == 1
            out.append(f"{shown}{more} predict{'s' if one else ''} {target} with the expected sign ({criterion}) and "
                       f"hold{'s' if one else ''} along every intervention tested ({n_iv} intervention(s)), with τ of "
                       "the expected sign inside every level.")
        else:
            out.append(f"No measure predicts {target} with the expected sign ({criterion}) inside every level of every "
                       "intervention.")
        if fragile:
            parts = [f"{short(m)} (τ = {t:+.2f}; inside {wrong})" for m, t, wrong in fragile[:3]]
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


def pooled_relations(rank: pl.DataFrame | None, alpha: float) -> dict[str, tuple[float | None, str]]:
    """measure → (pooled τ, "expected" | "reversed" | "none" | "unknown"); significance is BH over the rank table."""
    if rank is None or rank.height == 0:
        return {}
    p = benjamini_hochberg(rank["kendall_p"].cast(pl.Float64).fill_null(np.nan).to_numpy())
    out = {}
    for row, p_adj in zip(rank.iter_rows(named=True), p):
        direction = row["direction"]
        if direction not in ("as expected", "reversed", "none"):
            relation = "unknown"
        elif not (p_adj < alpha):
            relation = "none"
        else:
            relation = "expected" if direction == "as expected" else "reversed"
        out[row["measure"]] = (row["kendall_tau"], relation)
    return out


def _predictors(matrix: pl.DataFrame, rank: pl.DataFrame | None, alpha: float) -> list[tuple[str, float, str | None]]:
    """Measures with a significant (BH over the rank table) pooled τ of the expected sign and no break, with the
    levels (≥ min_group runs) inside which τ nevertheless has the other sign (None when there is none): a pooled
    relation that one intervention creates (e.g. only the attack-set runs carry it) is not claimed to hold."""
    out = []
    for measure, (tau, relation) in pooled_relations(rank, alpha).items():
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
            out.setdefault((rec["axis"], rec["measure"]),
                           f"{rec['group_where']} has {rec['n_group']} run(s), the reference {rec['reference_where']} "
                           f"{rec['n_reference']}")
        elif rec["kind"] == "too_many_levels":
            for m in rec["measures"]:
                out.setdefault((rec["axis"], m), f"{rec['axis']} has {rec['n_levels']} levels (bin it into at most 12)")
    return out
