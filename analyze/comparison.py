"""Which runs the statistics see: the runs at the sweep's comparison point, and never a run that did not learn.

A sweep declares its comparison point (design page, "The comparison point"): a training target (``[stop]``
``train_loss`` / ``train_acc``; Jiang et al. 2020 compare at cross-entropy 0.01) or a fixed budget. collect logs
per run ``train.learned`` (1/0: final train accuracy >= chance + 0.25·(1 − chance)) and, in target sweeps only,
``train.converged`` (1/0: the target was reached). ``select_comparison_point`` turns them into a selection:

- a FINISHED run with ``train.learned = 0`` is dropped, always (also with ``all_runs``);
- ``mode = "target"``: the sweep declares a target (``train.converged`` has a value; when every value is 0 the
  ledger must also name the target in ``hp.train_loss`` / ``hp.train_acc``, since an older collect logged
  ``train.converged = 0`` in budget sweeps too). Only runs with ``train.converged = 1`` are kept; the others
  (0 or no value) are left out and counted. When no learned run reached the target the selection is an error
  naming the fixes (``--all-runs``, or a higher epoch/step cap);
- ``mode = "all_runs"``: as "target", but the runs that missed the target are kept (pooled; ``analyze.ledger.prepare``
  then warns that how far training got moves the gap by itself);
- ``mode = "budget"``: no declared target; only the learned filter applies. A ledger with neither column
  (``mode = "none"``) passes through unchanged.

Rows that are not FINISHED are kept as they are (the statistics never use them; the header counts them).

Per intervention level (``analyze.stats.interventions`` over the FINISHED runs before selection): n = its finished
runs, k = those kept, plus how many missed the target and how many did not learn. A level with
k < ``min_at_target`` (default ``MIN_AT_TARGET`` = 3, the fewest runs a within-level Kendall τ needs) is
"not testable (k of n runs reached the target)"; its k runs stay in the pooled statistics (they are at the target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import polars as pl

CONVERGED = "train.converged"
LEARNED = "train.learned"
LABEL = "tag.comparison_point"
TARGET_PARAMS = ("hp.train_loss", "hp.train_acc")
MIN_AT_TARGET = 3  # runs a level keeps at the comparison point to be testable (a within-level Kendall τ needs 3)
MODES = ("target", "all_runs", "budget", "none")


@dataclass(frozen=True)
class LevelCount:
    """One level of one intervention: its finished runs and what the selection kept of them."""

    intervention: str  # Intervention.label, e.g. "optimizer+lr"
    axis: str  # Intervention.name, e.g. "hp.optimizer+hp.lr" (the statistics frames' ``axis``)
    level: str  # joint level, e.g. "adam, 0.001"
    said: str  # "optimizer = adam, lr = 0.001"
    n_runs: int  # finished runs of the level
    n_kept: int  # runs that enter the statistics
    n_missed: int  # learned runs that missed the target (train.converged = 0 or no value)
    n_not_learned: int  # train.learned = 0
    testable: bool

    def sentence(self, mode: str) -> str:
        """"dropout = 0.5: not testable (2 of 20 runs reached the target; 16 missed it, 2 did not learn)"."""
        if mode == "all_runs":
            return (f"{self.said}: {self.n_runs - self.n_missed - self.n_not_learned} of {self.n_runs} runs reached "
                    f"the target; {self.n_kept} pooled (--all-runs)" + self._dropped())
        what = "reached the target" if mode == "target" else "learned"
        counts = f"{self.n_kept} of {self.n_runs} runs {what}"
        if not self.testable:
            return f"{self.said}: not testable ({counts}" + (f"; {self._why()})" if self._why() else ")")
        return f"{self.said}: {counts}" + (f" ({self._why()})" if self._why() else "")

    def _why(self) -> str:
        parts = [f"{self.n_missed} missed it"] if self.n_missed else []
        parts += [f"{self.n_not_learned} did not learn"] if self.n_not_learned else []
        return ", ".join(parts)

    def _dropped(self) -> str:
        return f"; {self.n_not_learned} did not learn and are left out" if self.n_not_learned else ""


@dataclass(frozen=True)
class Selection:
    """What ``select_comparison_point`` kept and left out (shown to the user, never silent)."""

    mode: str  # one of MODES
    label: str | None  # the comparison point in words (tag.comparison_point), when the ledger has it
    min_at_target: int
    n_finished: int
    n_kept: int
    n_missed: int
    n_not_learned: int
    levels: tuple[LevelCount, ...] = ()

    @property
    def point(self) -> str:
        """"the target (train cross-entropy <= 0.01)" or "the target"."""
        return f"the target ({self.label})" if self.label else "the target"

    def untestable(self) -> tuple[LevelCount, ...]:
        return tuple(lv for lv in self.levels if not lv.testable)

    def warnings(self) -> list[str]:
        """One warning naming the levels that are not testable at the comparison point (none when all are)."""
        bad = self.untestable()
        if not bad or self.mode == "all_runs":
            return []
        what = f"at {self.point}" if self.mode == "target" else "that learned"
        return [f"{len(bad)} intervention level(s) keep fewer than {self.min_at_target} runs {what} and are not "
                f"testable: " + "; ".join(lv.sentence(self.mode) for lv in bad)
                + ". Their remaining runs stay in the pooled statistics; raise the spec's epoch or step cap, change "
                  "those levels, or pass --all-runs for the pooled (confounded) analysis."]

    def messages(self) -> list[str]:
        """The lines the CLI prints to stderr: the totals, then every level that lost runs."""
        if self.mode == "none":
            return []
        lost = [lv for lv in self.levels if lv.n_kept < lv.n_runs]
        if self.mode == "target":
            head = (f"comparison point: {self.point}; {self.n_kept} of {self.n_finished} finished runs reached it and "
                    f"enter the statistics; left out: {self.n_missed} that missed it, {self.n_not_learned} that did not "
                    "learn (train.learned = 0)")
        elif self.mode == "all_runs":
            head = (f"--all-runs: {self.n_kept} of {self.n_finished} finished runs pooled, {self.n_missed} of them "
                    f"missed {self.point}; {self.n_not_learned} that did not learn (train.learned = 0) left out")
        else:
            head = (f"comparison point: a fixed budget; {self.n_kept} of {self.n_finished} finished runs enter the "
                    f"statistics, {self.n_not_learned} that did not learn (train.learned = 0) left out")
        if not lost or (self.n_missed == 0 and self.n_not_learned == 0):
            return [head]
        return [head + "; by intervention level:"] + [f"  {lv.sentence(self.mode)}" for lv in lost]

    def levels_frame(self) -> pl.DataFrame:
        """One row per intervention level: intervention, axis, level, n_runs, n_kept, n_missed, n_not_learned,
        testable, sentence."""
        schema = {"intervention": pl.Utf8, "axis": pl.Utf8, "level": pl.Utf8, "n_runs": pl.Int64, "n_kept": pl.Int64,
                  "n_missed": pl.Int64, "n_not_learned": pl.Int64, "testable": pl.Boolean, "sentence": pl.Utf8}
        rows = [(lv.intervention, lv.axis, lv.level, lv.n_runs, lv.n_kept, lv.n_missed, lv.n_not_learned, lv.testable,
                 lv.sentence(self.mode)) for lv in self.levels]
        return pl.DataFrame(rows, schema=schema, orient="row")

    def to_dict(self) -> dict[str, Any]:
        """The JSON field ``meta.comparison`` of every ``python -m analyze`` output."""
        return {
            "mode": self.mode, "label": self.label, "min_at_target": self.min_at_target,
            "runs": {"finished": self.n_finished, "kept": self.n_kept, "missed_target": self.n_missed,
                     "not_learned": self.n_not_learned},
            "levels": self.levels_frame().to_dicts(),
            "not_testable": [lv.sentence(self.mode) for lv in self.untestable()] if self.mode != "all_runs" else [],
        }


def _flag(done: pl.DataFrame, column: str) -> pl.Series | None:
    """``column`` as 1.0 / 0.0 / null per finished run, or None when the ledger has no value of it."""
    if column not in done.columns:
        return None
    values = done[column].cast(pl.Float64, strict=False)
    return values if values.drop_nulls().len() else None


def _declares_target(done: pl.DataFrame) -> bool:
    return any(c in done.columns and done[c].drop_nulls().len() > 0 for c in TARGET_PARAMS)


def _mode(done: pl.DataFrame, converged: pl.Series | None, learned_mask: pl.Series, all_runs: bool) -> str:
    if converged is None:
        return "budget"
    reached = converged.filter(learned_mask) == 1.0
    if not reached.any() and not _declares_target(done):
        return "budget"  # train.converged = 0 everywhere and no target declared: a budget sweep of an older collect
    return "all_runs" if all_runs else "target"


def select_comparison_point(
    ledger: pl.DataFrame,
    *,
    all_runs: bool = False,
    min_at_target: int = MIN_AT_TARGET,
    axes: Sequence[str] | None = None,
) -> tuple[pl.DataFrame, Selection]:
    """(the ledger the statistics see, what was kept and left out): rules in the module docstring.

    ``axes`` restricts the interventions counted per level, as ``--group-by`` does for the statistics.
    """
    from analyze.stats._data import StatsError, finished_runs  # here: the CLI reads MIN_AT_TARGET without scipy

    if min_at_target < 1:
        raise StatsError(f"--min-at-target {min_at_target}: must be at least 1 (default {MIN_AT_TARGET})")
    done = finished_runs(ledger)
    converged, learned = _flag(done, CONVERGED), _flag(done, LEARNED)
    label = None
    if LABEL in done.columns and done[LABEL].drop_nulls().len():
        label = str(done[LABEL].drop_nulls()[0])
    if converged is None and learned is None:
        return ledger, Selection("none", label, min_at_target, done.height, done.height, 0, 0)
    not_learned = (learned == 0.0).fill_null(False) if learned is not None else pl.Series([False] * done.height)
    mode = _mode(done, converged, ~not_learned, all_runs)
    if mode in ("target", "all_runs"):
        missed = ~not_learned & (converged != 1.0).fill_null(True)
    else:
        missed = pl.Series([False] * done.height)
    keep = ~not_learned & ~missed if mode == "target" else ~not_learned
    if mode == "target" and done.height and not keep.any():
        raise StatsError(
            f"no finished run reached the comparison point {label or '(the spec target)'}: {int(missed.sum())} of "
            f"{done.height} missed it and {int(not_learned.sum())} did not learn; raise the spec's epoch or step cap "
            "(python -m collect --probe shows which cells can reach it), or pass --all-runs to analyse every run "
            "pooled (how far training got then confounds the gap)"
        )
    levels = _level_counts(done, keep, missed, not_learned, axes, min_at_target, mode)
    selection = Selection(mode, label, min_at_target, done.height, int(keep.sum()), int(missed.sum()),
                          int(not_learned.sum()), levels)
    if "status" not in ledger.columns:
        return ledger.filter(keep), selection
    indexed = ledger.with_row_index("_row")
    finished_rows = indexed.filter(pl.col("status") == "FINISHED")["_row"]
    dropped = finished_rows.filter(~keep)
    return indexed.filter(~pl.col("_row").is_in(dropped.implode())).drop("_row"), selection


def _level_counts(done: pl.DataFrame, keep: pl.Series, missed: pl.Series, not_learned: pl.Series,
                  axes: Sequence[str] | None, min_at_target: int, mode: str) -> tuple[LevelCount, ...]:
    from analyze.stats.interventions import interventions

    if done.height == 0:
        return ()
    out = []
    k, m, d = keep.to_numpy(), missed.to_numpy(), not_learned.to_numpy()
    for iv in interventions(done, axes):
        levels = iv.levels(done)
        for level in dict.fromkeys(levels.tolist()):
            at = levels == level
            n_kept = int(k[at].sum())
            out.append(LevelCount(iv.label, iv.name, str(level), iv.said(str(level)), int(at.sum()), n_kept,
                                  int(m[at].sum()), int(d[at].sum()), n_kept >= min_at_target))
    return tuple(out)
