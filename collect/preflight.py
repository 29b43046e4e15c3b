"""Checks of a sweep's runs that need no training, done by ``--dry-run`` and before any run is logged.

Errors (``SpecError`` naming the run and the field): an unknown measure or curve measure, an option a measure does
not have or of the wrong type (checked against the measure function's annotations), a split larger than its
dataset (``n_train + n_test + attack_size`` against the pool, after binary relabelling; local folders are read for
their label counts). Warnings: measures that will be skipped in some runs (log volume on a multi-class task).
"""

from __future__ import annotations

import json
import typing
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from collect.config import DataConfig, RunConfig, SpecError, check_value
from collect.measures.registry import Measure, get_measure
from collect.sweep import PlannedRun


def check_runs(runs: Sequence[PlannedRun], cache_dir: Path = Path("data/cache")) -> list[str]:
    """Raise SpecError for what would fail during training; return warnings for what would be skipped."""
    classes: dict[DataConfig, int] = {}
    checked: set[str] = set()
    skipped: Counter = Counter()
    for run in runs:
        cfg = run.config
        where = f"run '{run.intervention}' seed={cfg.seed}"
        key = json.dumps([cfg.to_dict()["measures"], list(cfg.curve_measures)], sort_keys=True, default=str)
        if key not in checked:
            check_measures(cfg, where)
            checked.add(key)
        if cfg.data not in classes:
            from collect.data import check_sizes

            try:
                classes[cfg.data] = check_sizes(cfg.data, cache_dir)
            except SpecError as exc:
                raise SpecError(f"{where}: {exc}") from None
        if classes[cfg.data] != 2:
            names = {m.name for m in cfg.measures} | set(cfg.curve_measures)
            skipped.update(name for name in names if get_measure(name).binary_only)
    return [
        f"warning: {name} needs a binary task and will be skipped in {n} of {len(runs)} runs (multi-class data); "
        "set data.binary = \"low_high\" or a class pair such as [3, 5] to compute it"
        for name, n in sorted(skipped.items())
    ]


def check_measures(cfg: RunConfig, where: str) -> None:
    """Every measure and curve measure exists, and every option is one it takes, of the type it declares."""
    for i, spec in enumerate(cfg.measures):
        measure = _lookup(spec.name, f"{where}: measures[{i}]")
        measure.check_options(spec.options, f"{where}: measures[{i}]")
        check_option_types(measure, spec.options, f"{where}: measures[{i}]")
    for i, name in enumerate(cfg.curve_measures):
        _lookup(name, f"{where}: curve_measures[{i}]")


def check_option_types(measure: Measure, options: Mapping[str, object], where: str) -> None:
    try:
        hints = typing.get_type_hints(measure.fn)
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved: nothing to check against
        return
    for key, value in options.items():
        if key in hints:
            check_value(value, hints[key], f"{where}: option {measure.name}.{key}")


def _lookup(name: str, where: str) -> Measure:
    try:
        return get_measure(name)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
