"""Checks of a sweep's runs that need no training, done by ``--dry-run`` and before any run is logged.

Errors (``SpecError`` naming the run and the field): an unknown measure or curve measure, an option a measure does
not have or of the wrong type (checked against the measure function's annotations), a split larger than its
dataset (``n_train + n_test + attack_size`` against the pool, after binary relabelling; local folders are read for
their label counts), a count option that is not positive or a float option that is not finite. Warnings: measures
that will be skipped in some runs (log volume on a multi-class task), a batch larger than the training set, a model
whose memory estimate (``collect.footprint``) exceeds this machine's memory.
"""

from __future__ import annotations

import json
import math
import re
import typing
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from collect import footprint
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
    ] + batch_warnings(runs) + memory_warnings(runs, classes)


def batch_warnings(runs: Sequence[PlannedRun]) -> list[str]:
    """Runs whose ``optim.batch_size`` exceeds their training set (n_train + attack_size): each step then uses the
    whole training set, one step an epoch, as full-batch ``gd`` does."""
    big = [r for r in runs if r.config.optim.optimizer != "gd"
           and r.config.optim.batch_size > r.config.data.n_train + r.config.data.attack_size]
    if not big:
        return []
    cfg = big[0].config
    n_fit = cfg.data.n_train + cfg.data.attack_size
    return [f"warning: optim.batch_size = {cfg.optim.batch_size} exceeds the {n_fit} training examples (n_train + "
            f"attack_size) in {len(big)} of {len(runs)} runs (first: run '{big[0].intervention}' seed={cfg.seed}); "
            "every step will use the whole training set (full batch, one step per epoch)"]


def memory_warnings(runs: Sequence[PlannedRun], classes: dict[DataConfig, int], memory: int | None = None) -> list[str]:
    """A warning when the largest run's memory estimate (``collect.footprint.run_memory``) exceeds ``memory``
    (default: this machine's physical memory)."""
    memory = footprint.machine_memory() if memory is None else memory
    if not memory:
        return []
    sizes: dict[tuple, tuple[int, int]] = {}
    largest: tuple[int, int, PlannedRun] | None = None
    for run in runs:
        cfg = run.config
        shape = footprint.input_shape(cfg.data)
        if shape is None or cfg.data not in classes:
            continue
        key = (cfg.model, cfg.data, cfg.optim, shape)
        if key not in sizes:
            try:
                sizes[key] = footprint.run_memory(cfg, shape, classes[cfg.data])
            except Exception:  # noqa: BLE001 - an architecture that cannot be built here fails with its own error later
                continue
        need, params = sizes[key]
        if largest is None or need > largest[0]:
            largest = (need, params, run)
    if largest is None or largest[0] <= memory:
        return []
    need, params, run = largest
    m = run.config.model
    return [f"warning: run '{run.intervention}' seed={run.config.seed} ({m.arch}, width {m.width}, depth {m.depth}: "
            f"{params:.3g} parameters) needs about {footprint.human_bytes(need)} of memory (weights, gradients, optimizer "
            f"state, activations), more than this machine's {footprint.human_bytes(memory)}; it will fail with out of "
            "memory: lower model.width or model.depth"]


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
            value = check_value(value, hints[key], f"{where}: option {measure.name}.{key}")
            check_option_value(key, value, f"{where}: option {measure.name}.{key}")


COUNT_OPTION = re.compile(r"^(n|max|min)_|_(samples|probes|draws|points|iter|size|restarts|neighbors|rank)$|^(k|restarts|patience)$")
ZERO_MEANS_OFF = frozenset({"direct_samples", "polish_iter"})  # count options whose 0 switches a step off


def check_option_value(key: str, value: object, where: str) -> None:
    """A count option (``n_samples``, ``max_iter``, ``chunk_size``, ``restarts``, ...: ``COUNT_OPTION``) is >= 1
    (>= 0 for ``ZERO_MEANS_OFF``); a float option is finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where} = {value}: must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and COUNT_OPTION.search(key):
        low = 0 if key in ZERO_MEANS_OFF else 1
        if value < low:
            raise SpecError(f"{where} = {value}: a count, must be >= {low}")


def _lookup(name: str, where: str) -> Measure:
    try:
        return get_measure(name)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
