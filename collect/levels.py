"""Shares of runs that meet a condition (reached the training target), per level of each swept axis.

Used by the convergence probe (``collect.probe``) and by a sweep's closing summary. Pure functions, no torch.

Axes are the dotted paths a spec sweeps (``PlannedRun.axes``). Paths that move together over the cells (a
``[[zip]]`` block: ``optim.optimizer`` and ``optim.lr``) partition the cells identically and are reported as one
axis whose level reads ``optim.optimizer=adam, optim.lr=0.001``. For a level ℓ of axis a,

    share(a, ℓ) = k / n,  n = #{cells with a = ℓ},  k = #{those cells that meet the condition}.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class LevelShare:
    """``k`` of the ``n`` cells at ``level`` of ``axis`` meet the condition."""

    axis: str  # e.g. "optim.weight_decay" or "optim.optimizer, optim.lr" (zipped paths)
    level: str  # e.g. "optim.weight_decay=0.0005"
    k: int
    n: int

    @property
    def share(self) -> float:
        return self.k / self.n if self.n else float("nan")


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def axis_groups(cells: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """The swept paths of ``cells`` (each a ``{path: value}`` mapping) grouped by how they partition the cells:
    paths with identical partitions (zipped axes) form one group; paths with a single value are dropped."""
    paths = list(dict.fromkeys(p for c in cells for p in c))
    groups: dict[tuple[int, ...], list[str]] = {}
    for path in paths:
        codes: dict[str, int] = {}
        signature = tuple(codes.setdefault(_key(c.get(path)), len(codes)) for c in cells)
        if len(codes) > 1:
            groups.setdefault(signature, []).append(path)
    return [tuple(g) for g in groups.values()]


def _fmt(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def level_shares(cells: Sequence[Mapping[str, Any]], met: Sequence[bool]) -> list[LevelShare]:
    """``share(a, ℓ)`` for every level ℓ of every axis group a of ``cells``, in the order levels first appear."""
    if len(cells) != len(met):
        raise ValueError(f"level_shares: {len(cells)} cells but {len(met)} outcomes")
    out: list[LevelShare] = []
    for group in axis_groups(cells):
        tally: dict[str, list[int]] = {}
        for cell, ok in zip(cells, met):
            label = ", ".join(f"{p}={_fmt(cell.get(p))}" for p in group)
            k_n = tally.setdefault(label, [0, 0])
            k_n[0] += bool(ok)
            k_n[1] += 1
        out.extend(LevelShare(", ".join(group), label, k, n) for label, (k, n) in tally.items())
    return out


def shares_line(shares: Sequence[LevelShare], k: int, n: int, condition: str) -> str:
    """One line: the overall share and every level below 100 %, worst first, e.g.
    ``at the target (train accuracy >= 1.0): 120 of 128 runs (94 %); below 100 %: optim.batch_size=500 56 of 64``."""
    head = f"at the target ({condition}): {k} of {n} runs ({100 * k / n:.0f} %)" if n else f"at the target ({condition}): no runs"
    low = sorted((s for s in shares if s.k < s.n), key=lambda s: (s.share, s.level))
    if not low:
        return head + ("; every axis level at 100 %" if shares else "")
    return head + "; below 100 %: " + "; ".join(f"{s.level} {s.k} of {s.n}" for s in low)


def shares_json(shares: Sequence[LevelShare]) -> str:
    """``[{"level": ..., "k": ..., "n": ...}, ...]``: the per-level shares as a tag value."""
    return json.dumps([{"axis": s.axis, "level": s.level, "k": s.k, "n": s.n} for s in shares])


@dataclass(frozen=True)
class TargetSummary:
    """How many finished runs of a target sweep reached the target, overall and per axis level."""

    k: int
    n: int
    shares: tuple[LevelShare, ...]
    condition: str  # the target in words, e.g. "train accuracy >= 1"

    def line(self) -> str:
        return shares_line(self.shares, self.k, self.n, self.condition)


def target_summary(runs: Sequence[Any], outcomes: Sequence[Any]) -> TargetSummary | None:
    """Shares at the target of the FINISHED ``outcomes`` (``RunOutcome``: ``config_hash``, ``status``, ``metrics``
    with ``train.converged``) of ``runs`` (``PlannedRun``: ``config_hash``, ``axes``, ``config``); None when no
    finished run carries ``train.converged`` (a fixed-budget sweep, or nothing finished)."""
    by_hash = {r.config_hash: r for r in runs}
    done = [(by_hash[o.config_hash], o.metrics["train.converged"] == 1.0) for o in outcomes
            if o.status == "FINISHED" and "train.converged" in o.metrics and o.config_hash in by_hash]
    if not done:
        return None
    first = done[0][0].config
    target = dataclasses.replace(first.stop, extra_epochs=0).label(first.loss)  # the target, without overtraining
    shares = level_shares([r.axes for r, _ in done], [ok for _, ok in done])
    return TargetSummary(sum(ok for _, ok in done), len(done), tuple(shares), target)
