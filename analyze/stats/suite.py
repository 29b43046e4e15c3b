"""Every statistic of a report in one call: the frames ``analyze.report.write_report`` renders.

A statistic that cannot be computed on this ledger (no hp.* columns, no test-set size, too few runs) is left out
of the frames and explained in the returned notes, never silently dropped. All p-values of all frames except the
flags form one Benjamini–Hochberg family (``*_p_adj`` columns); the flags carry their own families, on which they
were decided (``p_adj``; ``analyze.stats.flags.adjust_flag_families``). The verdict frames
(``analyze.stats.verdict``) are built from the rank table and the flags, over measures only.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import polars as pl

from analyze.columns import DEFAULT_TARGET, DEFAULT_TARGETS, target_badness
from analyze.stats._data import StatsError, finished_runs, pick_measures, pick_targets
from analyze.stats.cmi import conditional_mutual_information
from analyze.stats.correlations import correlations
from analyze.defaults import CONFIDENCE
from analyze.stats.flags import decide_flags, evidence_frame, flag_coverage, flag_evidence, flag_interventions, tested_relationships
from analyze.stats.granulated import granulated_kendall
from analyze.stats.interventions import alias_notes
from analyze.stats.multiple_testing import adjust_family
from analyze.stats.partial import partial_correlations, partial_matrix
from analyze.stats.per_sample import per_sample_correlations
from analyze.stats.ranking import rank_frame, tau_significant
from analyze.stats.sign_error import sign_error_tables
from analyze.stats.verdict import reversal_explanations, untested_reasons, verdict_matrix, verdict_sentences


def time_cost(runs: pl.DataFrame) -> pl.DataFrame:
    """Median seconds per run of each ``time.<measure>`` column and its ratio to the cheapest measure."""
    cols = [c for c in runs.columns if c.startswith("time.") and runs.schema[c].is_numeric()]
    rows = [(c.removeprefix("time."), runs[c].cast(pl.Float64).median()) for c in cols]
    rows = [(m, float(v)) for m, v in rows if v is not None]
    schema = {"measure": pl.Utf8, "median_seconds": pl.Float64, "ratio_to_cheapest": pl.Float64}
    if not rows:
        return pl.DataFrame(schema=schema)
    cheapest = min((v for _, v in rows if v > 0), default=None)
    return pl.DataFrame(
        [(m, v, v / cheapest if cheapest else None) for m, v in rows], schema=schema, orient="row"
    ).sort("median_seconds")


def _all_target_correlations(ledger: pl.DataFrame, target: str, measures: Sequence[str] | None, resamples: int,
                             confidence: float, seed: int) -> pl.DataFrame:
    """``correlations`` of ``target`` with bootstrap CIs, then of the other default targets the ledger has without."""
    ranked = correlations(ledger, targets=[target], measures=measures, resamples=resamples, confidence=confidence, seed=seed)
    others = [t for t in DEFAULT_TARGETS if t != target and t in ledger.columns and ledger.schema[t].is_numeric()]
    if not others:
        return ranked
    rest = correlations(ledger, targets=others, measures=measures, resamples=0)
    return pl.concat([ranked, rest])


def report_frames(
    ledger: pl.DataFrame,
    *,
    target: str = DEFAULT_TARGET,
    covariates: Sequence[str] = (),
    measures: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
    resamples: int = 1000,
    confidence: float = CONFIDENCE,
    alpha: float = 0.05,
    seed: int = 0,
    n_test: int | None = None,
    min_ess: float = 12.0,
    hoeffding: bool = True,
    min_group: int = 8,
    min_configs: int = 2,
    references: Mapping[str, object] | None = None,
    per_sample: Callable[[pl.DataFrame], Mapping[str, pl.DataFrame]] | Mapping[str, pl.DataFrame] | None = None,
    target_better: str | None = None,
    every_run: pl.DataFrame | None = None,
) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """(frames by name, notes). Names (as ``analyze.report.frames.FRAMES`` reads them): correlations (all targets),
    rank, partial, partial_matrix, granulated, sign_error, sign_error_envs, cmi, flags, flag_evidence,
    flag_coverage (relationships tested vs untestable per intervention), verdict_matrix, reversal_explanations,
    verdict_sentences, cost, per_sample (the raw per-sample rows with run_id) and per_sample_corr (their
    correlations).

    Every statistic is computed for ``target`` (any numeric ``gen.*`` column; ``target_better`` = "lower" | "higher"
    orients one ``analyze.columns.target_badness`` does not know). The correlations frame also holds the default
    targets the ledger has, without bootstrap intervals (the report shows only their τ), so the bootstrap is paid
    for the ranked target alone.

    ``ledger`` may hold one row per configuration (seeds averaged, ``analyze.configurations``); ``every_run`` is then
    the ledger with every run, for sign-error, whose Hoeffding-weighted environments pair the seeds themselves
    (default: ``ledger``)."""
    frames: dict[str, pl.DataFrame] = {}
    notes: list[str] = []
    runs = finished_runs(ledger)
    (target,) = pick_targets(runs, target)
    notes.extend(alias_notes(runs))

    def attempt(name: str, fn: Callable[[], pl.DataFrame]) -> None:
        try:
            frames[name] = fn()
        except StatsError as exc:
            notes.append(f"{name}: {exc}")

    attempt("correlations", lambda: _all_target_correlations(ledger, target, measures, resamples, confidence, seed))
    if "correlations" in frames:
        one = frames["correlations"].filter(pl.col("target") == target)
        frames["rank"] = rank_frame(one, resamples=resamples, alpha=alpha, target_better=target_better)
    cost = time_cost(runs)
    if cost.height:
        frames["cost"] = cost
    if covariates:
        attempt("partial", lambda: partial_correlations(ledger, covariates=covariates, measures=measures,
                                                        resamples=resamples, confidence=confidence, seed=seed))
    attempt("partial_matrix", lambda: partial_matrix(ledger, target=target, measures=measures))
    attempt("granulated", lambda: granulated_kendall(ledger, target=target, measures=measures, axes=group_by,
                                                             min_configs=min_configs, confidence=confidence))
    try:
        frames["sign_error"], frames["sign_error_envs"] = sign_error_tables(
            ledger if every_run is None else every_run, target=target, measures=measures, axes=group_by, n_test=n_test,
            min_ess=min_ess, hoeffding=hoeffding)
    except StatsError as exc:
        notes.append(f"sign_error: {exc}")
    attempt("cmi", lambda: conditional_mutual_information(ledger, target=target, measures=measures, axes=group_by))
    records: list[dict] = []
    try:
        records = flag_evidence(ledger, target=target, measures=measures, group_by=group_by, min_group=min_group,
                                confidence=confidence, references=references)
        frames["flags"] = decide_flags(records, alpha=alpha, min_group=min_group, confidence=confidence)
        frames["flag_evidence"] = evidence_frame(records)
        frames["flag_coverage"] = flag_coverage(records)
    except StatsError as exc:
        notes.append(f"flags: {exc}")
    _verdict(frames, notes, runs, records, target=target, measures=measures, group_by=group_by, alpha=alpha,
             min_group=min_group, confidence=confidence, target_better=target_better)
    if per_sample is not None:
        try:
            samples = per_sample(runs) if callable(per_sample) else per_sample
        except Exception as exc:  # an unreachable artifact store must not sink the whole report
            notes.append(f"per_sample: could not load per-sample artifacts ({exc})")
            samples = {}
        if samples:
            frames["per_sample"] = pl.concat(
                [f.with_columns(pl.lit(r).alias("run_id")) for r, f in samples.items()], how="diagonal_relaxed")
            attempt("per_sample_corr", lambda: per_sample_correlations(samples))
        elif not any(n.startswith("per_sample") for n in notes):
            notes.append("per_sample: no run has a per-sample artifact (per_sample/per_sample_trace.parquet)")
    own = ("flags", "flag_evidence", "flag_coverage", "per_sample", "verdict_matrix", "reversal_explanations",
           "verdict_sentences")
    family = {k: v for k, v in frames.items() if k not in own}
    frames.update(adjust_family(family))
    return frames, notes


def _verdict(frames: dict[str, pl.DataFrame], notes: list[str], runs: pl.DataFrame, records: list[dict], *, target: str,
             measures: Sequence[str] | None, group_by: Sequence[str] | None, alpha: float, min_group: int,
             confidence: float, target_better: str | None = None) -> None:
    """verdict_matrix, reversal_explanations and verdict_sentences from the rank table and the flags."""
    try:
        measure_cols = pick_measures(runs, measures)
        found = flag_interventions(runs, group_by)
    except StatsError as exc:
        notes.append(f"verdict: {exc}")
        return
    rank = frames.get("rank")
    matrix = verdict_matrix(runs, target=target, measures=measure_cols, found=found, flags=frames.get("flags"),
                            tested=tested_relationships(records), untested_reasons=untested_reasons(records),
                            rank=rank, min_group=min_group, alpha=alpha, target_better=target_better, confidence=confidence)
    explanations = None
    if rank is not None:
        explanations = reversal_explanations(runs, target=target, rank=rank, found=found, min_group=min_group,
                                             confidence=confidence, alpha=alpha, target_better=target_better)
        frames["reversal_explanations"] = explanations
    frames["verdict_matrix"] = matrix
    why = None if found else "no hyperparameter varies among the finished runs"
    sentences = verdict_sentences(matrix, rank, explanations, target=target, alpha=alpha, min_group=min_group,
                                  no_interventions=why, confidence=confidence)
    unknown = direction_unknown_sentence(rank, target=target, alpha=alpha, target_better=target_better)
    if unknown:
        first, rest = sentences.head(1), sentences.slice(1)
        sentences = pl.concat([first, pl.DataFrame({"sentence": [unknown]}, schema=sentences.schema), rest])
    frames["verdict_sentences"] = sentences


def direction_unknown_sentence(rank: pl.DataFrame | None, *, target: str, alpha: float, target_better: str | None = None,
                               shown: int = 6) -> str | None:
    """The measures whose pooled τ differs from 0 (``ranking.tau_significant``: the confidence interval shown in the
    rank table excludes 0; without one, p < ``alpha``) but whose expected sign is unknown (no registered direction
    for the measure, or no orientation of the target): they are neither predictors "with the expected sign" nor "no
    relation", so they get a sentence of their own."""
    if rank is None or rank.height == 0:
        return None
    hits = [(r["measure"], r["kendall_tau"]) for r in rank.iter_rows(named=True)
            if r["direction"] == "unknown"
            and tau_significant(r["kendall_ci_low"], r["kendall_ci_high"], r["kendall_p"], alpha)]
    if not hits:
        return None
    names = ", ".join(f"{m.removeprefix('measure.')} (τ = {t:+.2f})" for m, t in hits[:shown])
    more = f" and {len(hits) - shown} more" if len(hits) > shown else ""
    fix = ("the target has no known orientation: pass --target-better lower|higher" if target_badness(target, target_better) == 0
           else "no expected sign is registered for these measures")
    return (f"Direction unknown: {names}{more} relate{'s' if len(hits) == 1 else ''} to {target} (the confidence "
            f"interval of Kendall τ excludes 0), but {fix}, so whether that is the expected sign is not judged.")
