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

from analyze.columns import DEFAULT_TARGET
from analyze.stats._data import StatsError, finished_runs, pick_measures, pick_targets
from analyze.stats.cmi import conditional_mutual_information
from analyze.stats.correlations import correlations
from analyze.stats.flags import decide_flags, evidence_frame, flag_coverage, flag_evidence, flag_interventions, tested_relationships
from analyze.stats.granulated import granulated_kendall
from analyze.stats.multiple_testing import adjust_family
from analyze.stats.partial import partial_correlations, partial_matrix
from analyze.stats.per_sample import per_sample_correlations
from analyze.stats.ranking import rank_frame
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


def report_frames(
    ledger: pl.DataFrame,
    *,
    target: str = DEFAULT_TARGET,
    covariates: Sequence[str] = (),
    measures: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    alpha: float = 0.05,
    seed: int = 0,
    n_test: int | None = None,
    min_ess: float = 12.0,
    hoeffding: bool = True,
    min_group: int = 8,
    min_configs: int = 3,
    references: Mapping[str, object] | None = None,
    per_sample: Callable[[pl.DataFrame], Mapping[str, pl.DataFrame]] | Mapping[str, pl.DataFrame] | None = None,
) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """(frames by name, notes). Names (as ``analyze.report.frames.FRAMES`` reads them): correlations (all targets),
    rank, partial, partial_matrix, granulated, sign_error, sign_error_envs, cmi, flags, flag_evidence,
    flag_coverage (relationships tested vs untestable per intervention), verdict_matrix, reversal_explanations,
    verdict_sentences, cost, per_sample (the raw per-sample rows with run_id) and per_sample_corr (their
    correlations)."""
    frames: dict[str, pl.DataFrame] = {}
    notes: list[str] = []
    runs = finished_runs(ledger)
    (target,) = pick_targets(runs, target)

    def attempt(name: str, fn: Callable[[], pl.DataFrame]) -> None:
        try:
            frames[name] = fn()
        except StatsError as exc:
            notes.append(f"{name}: {exc}")

    attempt("correlations", lambda: correlations(ledger, measures=measures, resamples=resamples, confidence=confidence, seed=seed))
    if "correlations" in frames:
        one = frames["correlations"].filter(pl.col("target") == target)
        frames["rank"] = rank_frame(one, resamples=resamples, alpha=alpha)
    cost = time_cost(runs)
    if cost.height:
        frames["cost"] = cost
    if covariates:
        attempt("partial", lambda: partial_correlations(ledger, covariates=covariates, measures=measures,
                                                        resamples=resamples, confidence=confidence, seed=seed))
    attempt("partial_matrix", lambda: partial_matrix(ledger, target=target, measures=measures))
    attempt("granulated", lambda: granulated_kendall(ledger, target=target, measures=measures, axes=group_by,
                                                             min_configs=min_configs))
    try:
        frames["sign_error"], frames["sign_error_envs"] = sign_error_tables(
            ledger, target=target, measures=measures, axes=group_by, n_test=n_test, min_ess=min_ess, hoeffding=hoeffding)
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
             min_group=min_group, confidence=confidence)
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
             confidence: float) -> None:
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
                            rank=rank, min_group=min_group, alpha=alpha)
    explanations = None
    if rank is not None:
        explanations = reversal_explanations(runs, target=target, rank=rank, found=found, min_group=min_group,
                                             confidence=confidence, alpha=alpha)
        frames["reversal_explanations"] = explanations
    frames["verdict_matrix"] = matrix
    why = None if found else "no hyperparameter varies among the finished runs"
    frames["verdict_sentences"] = verdict_sentences(matrix, rank, explanations, target=target, alpha=alpha,
                                                    min_group=min_group, no_interventions=why)
