"""Interventions as the sweep spec defined them: groups of ``hp.*`` columns that move together.

A collect sweep writes the tag ``interventions`` (ledger column ``tag.interventions``): a JSON list of groups of
ledger hp columns, e.g. ``[["hp.batch_size"], ["hp.dropout"], ["hp.optimizer", "hp.lr"]]`` (a ``[[zip]]`` block or
the fields ``cases`` vary are one group; every grid axis is its own group). Every statistic that splits runs by
hyperparameter (granulated Kendall, sign-error environments, CMI conditioning, flags, the verdict) treats one group
as ONE intervention whose *level* is the joint value of its columns, e.g. (adam, 0.001). A ledger without the tag
(or with runs whose tag is empty) is analysed per column: every varying ``hp.*`` column is its own intervention.
Groups are merged when different runs' tags overlap; columns a tag names that the ledger lacks or that do not vary
among the finished runs are dropped; varying hp columns no tag names are interventions of their own.
``hp.n_test`` (the test-set size, used by sign-error's Hoeffding weights) is never an intervention.

Aliasing: two interventions A and B whose values determine each other among the finished runs (#levels(A) =
#levels(B) = #levels(A, B): every level of A goes with exactly one level of B) cannot be told apart by any
statistic, so they are merged into one intervention (its level is the joint value), and ``alias_notes`` names them
for the report's warnings. A spec that declares them as one group gets no warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl

from analyze.columns import HP, TAG, hp_columns
from analyze.stats._data import StatsError, require_columns

TAG_COLUMN = "tag.interventions"
NOT_AN_INTERVENTION = ("hp.n_test",)


@dataclass(frozen=True)
class Intervention:
    """One intervention: the ledger columns it moves together (in ledger order)."""

    axes: tuple[str, ...]

    @property
    def name(self) -> str:
        """The statistics frames' ``axis`` value: the column itself, or the columns joined by "+"."""
        return "+".join(self.axes)

    @property
    def label(self) -> str:
        """A short label for people: "optimizer+lr" (prefixes dropped)."""
        return "+".join(short_axis(a) for a in self.axes)

    def levels(self, runs: pl.DataFrame) -> np.ndarray:
        """The joint level of each run as text: "adam" for one column, "adam, 0.001" for a group."""
        parts = [[level_label(v) for v in runs[a].to_list()] for a in self.axes]
        return np.array([", ".join(p) for p in zip(*parts)], dtype=object) if parts else np.array([], dtype=object)

    def said(self, level: str) -> str:
        """"attack_size = 0" or "optimizer = adam, lr = 0.001": the level in a sentence."""
        return self.where(level).replace("hp.", "").replace("tag.", "").replace("=", " = ")

    def where(self, level: str) -> str:
        """"hp.optimizer=adam" or "hp.optimizer=adam, hp.lr=0.001" for a joint level."""
        values = level.split(", ")
        if len(self.axes) == 1 or len(values) != len(self.axes):  # one column, or a value that itself holds ", "
            return f"{self.name}={level}"
        return ", ".join(f"{a}={v}" for a, v in zip(self.axes, values))


def short_axis(column: str) -> str:
    return column.removeprefix(HP).removeprefix(TAG)


def level_label(v: Any) -> str:
    """Printable level of one column value (null → "none", 1.0 → "1")."""
    if v is None:
        return "none"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def tagged_groups(runs: pl.DataFrame) -> list[tuple[str, ...]] | None:
    """The groups the runs' ``tag.interventions`` declare (merged across runs), or None without the tag."""
    if TAG_COLUMN not in runs.columns:
        return None
    groups: list[set[str]] = []
    seen_any = False
    for text in runs[TAG_COLUMN].drop_nulls().unique(maintain_order=True).to_list():
        if not str(text).strip():
            continue
        try:
            parsed = json.loads(text)
            if not all(isinstance(g, list) and all(isinstance(a, str) for a in g) for g in parsed):
                raise ValueError
        except (ValueError, TypeError):
            raise StatsError(
                f"{TAG_COLUMN}: {str(text)[:80]!r} is not a JSON list of lists of hp columns, e.g. "
                '[["hp.batch_size"], ["hp.optimizer", "hp.lr"]]; fix the tag or drop the column to analyse per column'
            ) from None
        seen_any = True
        for g in parsed:
            merged = set(g)
            for other in [o for o in groups if o & merged]:
                merged |= other
                groups.remove(other)
            groups.append(merged)
    if not seen_any:
        return None
    return [tuple(sorted(g)) for g in groups]


def interventions(runs: pl.DataFrame, axes: Sequence[str] | None = None) -> list[Intervention]:
    """The interventions among ``runs`` (FINISHED runs), each with ≥ 2 joint levels, in ledger column order.

    ``axes`` (``--group-by``) restricts them: a named column stands for the whole intervention it belongs to
    (naming ``hp.optimizer`` of a zipped optimizer+lr group analyses the group). ``tag.*`` columns named there
    (e.g. ``tag.intervention``) are interventions of their own.
    """
    order = {c: i for i, c in enumerate(runs.columns)}
    hp = [c for c in hp_columns(runs.columns) if c not in NOT_AN_INTERVENTION]
    varying = {c for c in hp if runs[c].n_unique() >= 2}
    declared = tagged_groups(runs) or []
    groups: list[tuple[str, ...]] = []
    named: set[str] = set()
    for g in declared:
        kept = tuple(sorted((a for a in g if a in varying), key=order.__getitem__))
        named |= set(g)
        if kept:
            groups.append(kept)
    groups += [(c,) for c in hp if c in varying and c not in named]
    groups = [tuple(sorted(g, key=order.__getitem__)) for g in merge_aliases(runs, groups)]
    if axes is not None:
        wanted = [a if a.startswith((HP, TAG)) else HP + a for a in axes]
        require_columns(runs, wanted, "--group-by")
        chosen: list[tuple[str, ...]] = []
        for a in wanted:
            g = next((g for g in groups if a in g), (a,))
            if g not in chosen:
                chosen.append(g)
        groups = chosen
    groups.sort(key=lambda g: order[g[0]])
    return [Intervention(g) for g in groups if runs.select(g).n_unique() >= 2]


def intervention_of(column: str, found: Sequence[Intervention]) -> Intervention | None:
    return next((i for i in found if column in i.axes), None)


def _aliased(runs: pl.DataFrame, a: Sequence[str], b: Sequence[str]) -> bool:
    """Do the joint values of columns a and of columns b determine each other among ``runs``?"""
    na, nb = runs.select(a).n_unique(), runs.select(b).n_unique()
    return na == nb and runs.select([*a, *b]).n_unique() == na


def merge_aliases(runs: pl.DataFrame, groups: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """``groups`` with every set of mutually aliased groups merged into one (module docstring)."""
    merged: list[list[str]] = [list(g) for g in groups]
    i = 0
    while i < len(merged):
        j = i + 1
        while j < len(merged):
            if _aliased(runs, merged[i], merged[j]):
                merged[i] += merged.pop(j)
            else:
                j += 1
        i += 1
    return [tuple(g) for g in merged]


def alias_notes(runs: pl.DataFrame) -> list[str]:
    """One warning per intervention formed by merging aliased hp columns the spec did not declare together."""
    declared = [set(g) for g in (tagged_groups(runs) or [])]
    notes = []
    for iv in interventions(runs):
        if len(iv.axes) > 1 and not any(set(iv.axes) <= g for g in declared):
            names = ", ".join(iv.axes)
            notes.append(f"aliased hyperparameters: {names} determine each other in this ledger (each value of one goes "
                         f"with one value of the other), so their effects cannot be told apart; they are analysed as "
                         f"one intervention, {iv.label}. Vary them independently to separate them.")
    return notes
