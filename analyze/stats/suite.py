"""Every statistic of a report in one call: the frames ``analyze.report.write_report`` renders.

A statistic that cannot be computed on this ledger (no hp.* columns, no test-set size, too few runs) is left out
of the frames and explained in the returned notes, never silently dropped. All p-values of all frames except the
flags form one Benjamini–Hochberg family (``*_p_adj`` columns); the flags carry their own family, on which they
were decided (``p_adj``).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import polars as pl

from analyze.columns import DEFAULT_TARGET
from analyze.stats._data import StatsError, finished_runs, pick_targets
from analyze.stats.cmi import conditional_mutual_information
from analyze.stats.correlations import correlations
from analyze.stats.flags import break_flags, evidence_frame, flag_evidence
from analyze.stats.granulated import granulated_kendall
from analyze.stats.multiple_testing import adjust_family
from analyze.stats.partial import partial_correlations, partial_matrix
from analyze.stats.per_sample import per_sample_correlations
from analyze.stats.ranking import rank_frame
from analyze.stats.sign_error import sign_error_tables


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
    references: Mapping[str, object] | None = None,
    per_sample: Callable[[pl.DataFrame], Mapping[str, pl.DataFrame]] | Mapping[str, pl.DataFrame] | None = None,
) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """(frames by name, notes). Names (as ``analyze.report.frames.FRAMES`` reads them): correlations (all targets),
    rank, partial, partial_matrix, granulated, sign_error, sign_error_envs, cmi, flags, flag_evidence, cost,
    per_sample (the raw per-sample rows with run_id) and per_sample_corr (their correlations)."""
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
    attempt("granulated", lambda: granulated_kendall(ledger, target=target, measures=measures, axes=group_by))
    try:
        frames["sign_error"], frames["sign_error_envs"] = sign_error_tables(
            ledger, target=target, measures=measures, axes=group_by, n_test=n_test, min_ess=min_ess, hoeffding=hoeffding)
    except StatsError as exc:
        notes.append(f"sign_error: {exc}")
    attempt("cmi", lambda: conditional_mutual_information(ledger, target=target, measures=measures, axes=group_by))
    attempt("flags", lambda: break_flags(ledger, target=target, measures=measures, group_by=group_by, alpha=alpha,
                                         min_group=min_group, confidence=confidence, references=references))
    if "flags" in frames:
        frames["flag_evidence"] = evidence_frame(flag_evidence(
            ledger, target=target, measures=measures, group_by=group_by, min_group=min_group, confidence=confidence,
            references=references))
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
    family = {k: v for k, v in frames.items() if k not in ("flags", "flag_evidence", "per_sample")}
    frames.update(adjust_family(family))
    return frames, notes
