"""Sweep specs: TOML files with a base config, a grid, zipped axes, explicit cases, seeds, measures and scales.

``expand(spec, scale)`` turns a spec into the list of runs to train, each a validated ``RunConfig`` with an
intervention label saying which axes make it differ from the base. Every error names the field and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from collect.config import RunConfig, SpecError, parse_measures, run_config_from_dict
from collect.measures.registry import check_measure_specs

SWEEP_DIR = Path(__file__).parent / "sweeps"
SPEC_KEYS = {"name", "description", "default_scale", "seeds", "measures", "base", "grid", "zip", "cases", "scales", "curve_measures"}
TAG_INTERVENTIONS = "interventions"  # ledger column tag.interventions
SCALE_KEYS = {"description", "base", "grid", "zip", "cases", "seeds", "measures"}


@dataclass(frozen=True)
class PlannedRun:
    """One configuration of a sweep: what to train, what to call it, and where it sits in the grid."""

    config: RunConfig
    intervention: str  # e.g. "optim.batch_size=512, optim.optimizer=adam", or "base"
    axes: Mapping[str, Any]  # the swept values of this run, by dotted path
    # The spec's interventions as groups of ledger hp columns moved together (``intervention_groups``); None for a
    # run planned outside a spec. Logged as the tag ``interventions`` on the run and its sweep's parent.
    interventions: tuple[tuple[str, ...], ...] | None = None

    @property
    def config_hash(self) -> str:
        return self.config.config_hash()

    def interventions_tags(self) -> dict[str, str]:
        """``{"interventions": JSON groups}`` for a run planned from a spec, else ``{}`` (analyze then treats every
        varying hp column as its own intervention)."""
        return {} if self.interventions is None else {TAG_INTERVENTIONS: interventions_tag(self.interventions)}


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, not yet expanded sweep spec."""

    name: str
    description: str
    raw: Mapping[str, Any]
    source: str

    @property
    def scales(self) -> list[str]:
        """The scales a run can ask for: the declared ``[scales.*]`` and ``default_scale`` (the base config itself
        when the spec declares no table of that name)."""
        default = self.raw.get("default_scale")
        return sorted(set(self.raw.get("scales", {})) | ({default} if default else set()))

    @property
    def default_scale(self) -> str | None:
        return self.raw.get("default_scale")


def list_sweeps() -> list[SweepSpec]:
    return [load_spec(p) for p in sorted(SWEEP_DIR.glob("*.toml"))]


def find_sweep(name: str) -> Path:
    known = {p.stem: p for p in sorted(SWEEP_DIR.glob("*.toml"))}
    if name not in known:  # looked up by name, never joined to a path
        raise SpecError(f"no built-in sweep '{name}'; built-in sweeps: {', '.join(known)} (or pass --config PATH)")
    return known[name]


def load_spec(path: Path) -> SweepSpec:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"sweep spec {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    return parse_spec(raw, str(path))


def parse_spec(raw: Mapping[str, Any], source: str = "<spec>") -> SweepSpec:
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise SpecError(f"{source}: unknown top-level key(s) {sorted(unknown)}; a spec has {', '.join(sorted(SPEC_KEYS))}")
    if "name" not in raw:
        raise SpecError(f"{source}: missing 'name' (the sweep's name, used as the MLflow experiment)")
    if not isinstance(raw["name"], str) or not raw["name"].strip():
        raise SpecError(f"{source}: name = {raw['name']!r}: give the sweep a non-empty name (it names the MLflow experiment), "
                        "e.g. name = \"my-sweep\"")
    for scale, body in raw.get("scales", {}).items():
        if not isinstance(body, Mapping):
            raise SpecError(f"{source}: scales.{scale} must be a table")
        bad = set(body) - SCALE_KEYS
        if bad:
            raise SpecError(f"{source}: scales.{scale} has unknown key(s) {sorted(bad)}; allowed: {', '.join(sorted(SCALE_KEYS))}")
    return SweepSpec(name=str(raw["name"]), description=str(raw.get("description", "")), raw=raw, source=source)


def expand(spec: SweepSpec, scale: str | None = None, seeds: list[int] | None = None) -> list[PlannedRun]:
    """All runs of ``spec`` at ``scale`` (default: the spec's default scale), validated before any training."""
    raw = _apply_scale(spec, scale)
    where = f"{spec.source}" + (f" (scale {scale})" if scale else "")
    base = raw.get("base", {})
    if not isinstance(base, Mapping):
        raise SpecError(f"{where}: 'base' must be a table holding a run config")
    measures = parse_measures(raw.get("measures", []), f"{where}: measures")
    check_measure_specs(measures, f"{where}: measures")
    base = copy.deepcopy(dict(base))
    base["measures"] = [m.to_dict() for m in measures]
    if "curve_measures" in raw:
        base["curve_measures"] = list(raw["curve_measures"])
    run_seeds = seeds if seeds is not None else parse_seeds(raw.get("seeds", [base.get("seed", 0)]), where)

    grid = raw.get("grid", {})
    if not isinstance(grid, Mapping):
        raise SpecError(f"{where}: 'grid' must be a table of dotted field paths to lists")
    check_axes_once(raw, where)
    factors: list[list[dict[str, Any]]] = []
    for axis, values in grid.items():
        _check_axis(axis, values, f"{where}: grid")
        factors.append([{axis: v} for v in values])
    for i, group in enumerate(raw.get("zip", [])):
        lengths = set()
        for axis, values in group.items():
            _check_axis(axis, values, f"{where}: zip[{i}]")
            lengths.add(len(values))
        if len(lengths) != 1:
            raise SpecError(f"{where}: zip[{i}] axes must have equal lengths, got {sorted(lengths)}")
        n = lengths.pop()
        factors.append([{axis: values[k] for axis, values in group.items()} for k in range(n)])
    combos = [dict(kv for part in parts for kv in part.items()) for parts in itertools.product(*factors)]
    cases = raw.get("cases", [])
    if cases:
        combos = [dict(c, **case) for c in combos for case in cases] if grid or raw.get("zip") else [dict(c) for c in cases]

    resolved_base = run_config_from_dict(base, where=f"{where}: base").to_dict()
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    for combo in combos:
        label = combo.pop("label", None)
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise SpecError(f"{where}: cases: label = {label!r}: give a non-empty label, or leave it out to get one from the values")
        cfg_raw = copy.deepcopy(base)
        for path, value in combo.items():
            _set_path(cfg_raw, path, value, where)
        for seed in run_seeds:
            cfg_raw["seed"] = seed
            cfg = run_config_from_dict(cfg_raw, where=f"{where} run {_describe(combo)}")
            if cfg.config_hash() in seen:
                continue
            seen.add(cfg.config_hash())
            runs.append(PlannedRun(cfg, label or _intervention_label(combo, resolved_base), dict(combo)))
    groups = intervention_groups(raw, [r.config for r in runs])
    return [dataclasses.replace(r, interventions=groups) for r in runs]


def intervention_groups(raw: Mapping[str, Any], configs: list[RunConfig]) -> tuple[tuple[str, ...], ...]:
    """The interventions of a (scaled) spec as groups of ledger columns ``hp.<leaf>`` that the spec moves together:
    every grid axis is its own group, each ``[[zip]]`` block is one group, and the fields that ``cases`` set are one
    group. Only columns that take more than one value among ``configs`` count (a one-value axis, or one a scale
    removed, intervenes on nothing); groups that share a column are merged; seeds are not interventions."""
    candidates = [[axis] for axis in raw.get("grid", {})]
    candidates += [list(group) for group in raw.get("zip", [])]
    cases = raw.get("cases", [])
    if cases:
        candidates.append(list(dict.fromkeys(k for case in cases for k in case if k != "label")))
    hps = [c.hyperparameters() for c in configs]
    groups: list[list[str]] = []
    for paths in candidates:
        columns = [f"hp.{leaf}" for leaf in dict.fromkeys(p.rsplit(".", 1)[-1] for p in paths) if _varies(leaf, hps)]
        if not columns:
            continue
        overlapping = [g for g in groups if set(g) & set(columns)]
        merged = [c for g in overlapping for c in g] + [c for c in columns if not any(c in g for g in overlapping)]
        groups = [g for g in groups if g not in overlapping] + [merged]
    return tuple(tuple(g) for g in groups)


def interventions_tag(groups: tuple[tuple[str, ...], ...]) -> str:
    """The ``interventions`` tag: JSON list of column groups, e.g. ``[["hp.batch_size"], ["hp.optimizer", "hp.lr"]]``."""
    return json.dumps([list(g) for g in groups])


def _varies(leaf: str, hps: list[dict[str, Any]]) -> bool:
    if not hps or leaf not in hps[0]:
        return False  # not a hyperparameter column (seed, label)
    return len({json.dumps(h[leaf], sort_keys=True, default=str) for h in hps}) > 1


def check_axes_once(raw: Mapping[str, Any], where: str) -> None:
    """Each axis is set by one of ``[grid]``, one ``[[zip]]`` block, or ``[[cases]]``: a second place would silently
    override the first one's values (a case's value replaces the grid's, so the grid's other values never run)."""
    places: dict[str, str] = {}
    blocks = [("grid", raw.get("grid", {}))] + [(f"zip[{i}]", g) for i, g in enumerate(raw.get("zip", []))]
    blocks.append(("cases", {k: None for case in raw.get("cases", []) if isinstance(case, Mapping) for k in case}))
    for place, block in blocks:
        if not isinstance(block, Mapping):
            continue
        for axis in block:
            if axis == "label":
                continue
            if axis in places:
                raise SpecError(f"{where}: axis '{axis}' is set in {places[axis]} and in {place}; an axis belongs to one "
                                f"of [grid], one [[zip]] block or [[cases]] (move its values into one of them)")
            places[axis] = place


def plan_warnings(spec: "SweepSpec", scale: str | None = None, seeds: list[int] | None = None) -> list[str]:
    """Warnings about values a spec lists twice (seeds, an axis's values, zip rows, cases): each repeat is the same
    configuration, trained once, so the sweep has fewer runs than the lists suggest."""
    raw = _apply_scale(spec, scale)
    out = []
    run_seeds = seeds if seeds is not None else raw.get("seeds", [])
    lists = [("seeds" if seeds is None else "--seeds", run_seeds if isinstance(run_seeds, list) else [])]
    lists += [(f"grid.{axis}", values) for axis, values in raw.get("grid", {}).items() if isinstance(values, list)]
    for i, group in enumerate(raw.get("zip", [])):
        axes = list(group)
        rows = [tuple(group[a][k] for a in axes) for k in range(min((len(v) for v in group.values()), default=0))]
        lists.append((f"zip[{i}] ({', '.join(axes)})", rows))
    lists.append(("cases", [{k: v for k, v in c.items() if k != "label"} for c in raw.get("cases", []) if isinstance(c, Mapping)]))
    for where, values in lists:
        seen: dict[str, tuple[Any, int]] = {}
        for v in values:
            key = json.dumps(_number_key(v), sort_keys=True, default=str)
            first, n = seen.get(key, (v, 0))
            seen[key] = (first, n + 1)
        repeated = [f"{json.dumps(v, default=str)} ({n} times)" for v, n in seen.values() if n > 1]
        if repeated:
            out.append(f"warning: {where} lists {', '.join(repeated)}; each repeat is the same configuration and is "
                       "trained once")
    return out


def _number_key(value: Any) -> Any:
    """``value`` with every number as a float, so 1 and 1.0 compare equal (they give the same config hash)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list, tuple, Mapping)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _number_key(v) for k, v in value.items()}
    return [_number_key(v) for v in value]


def parse_seeds(value: Any, where: str) -> list[int]:
    """The spec's ``seeds``: a non-empty TOML list of integers; a string or a bare number gets the exact fix."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
        example = ", ".join(items) if items and all(v.isdigit() for v in items) else "0, 1, 2"
        raise SpecError(f"{where}: seeds = {value!r} is a string; write a TOML list of integers, seeds = [{example}] "
                        "(or pass --seeds 0,1,2 / --seeds 0-4 on the command line)")
    if isinstance(value, int) and not isinstance(value, bool):
        raise SpecError(f"{where}: seeds = {value!r} is a single number; write a list, seeds = [{value}]")
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise SpecError(f"{where}: seeds = {value!r} must be a non-empty list of integers, e.g. seeds = [0, 1, 2]")
    negative = [s for s in value if s < 0]
    if negative:
        raise SpecError(f"{where}: seeds = {list(value)}: {negative} negative; seeds must be >= 0, e.g. seeds = [0, 1, 2]")
    return list(value)


def _apply_scale(spec: SweepSpec, scale: str | None) -> dict[str, Any]:
    raw = copy.deepcopy(dict(spec.raw))
    scales = raw.pop("scales", {})
    scale = scale or raw.get("default_scale")
    if scale is None:
        return raw
    if scale not in scales:
        if scale == raw.get("default_scale") or not scales and scale == "cpu":
            return raw
        raise SpecError(f"sweep '{spec.name}' has no scale '{scale}'; its scales: {', '.join(sorted(scales)) or 'none'}")
    body = scales[scale]
    base = raw.setdefault("base", {})
    for path, value in body.get("base", {}).items():
        if isinstance(value, Mapping):
            raise SpecError(f"scales.{scale}.base: give dotted keys, e.g. \"data.n_train\" = 100 (got table '{path}')")
        _set_path(base, path, value, f"scales.{scale}.base")
    if "grid" in body:
        grid = raw.setdefault("grid", {})
        for axis, values in body["grid"].items():
            if values == [] or values is None:
                grid.pop(axis, None)
            else:
                grid[axis] = values
    for key in ("zip", "cases", "seeds", "measures"):
        if key in body:
            raw[key] = body[key]
    return raw


def _check_axis(axis: str, values: Any, where: str) -> None:
    if axis == "label":
        return
    if "." not in axis and axis not in ("loss", "seed", "save_weights"):
        raise SpecError(f"{where}: axis '{axis}' must be a dotted field path such as 'optim.lr'")
    if not isinstance(values, list) or not values:
        raise SpecError(f"{where}: axis '{axis}' must map to a non-empty list of values")


def _set_path(cfg: dict[str, Any], path: str, value: Any, where: str) -> None:
    parts = path.split(".")
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"{where}: cannot set '{path}': '{part}' is not a table")
    node[parts[-1]] = value


def _get_path(cfg: Mapping[str, Any], path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _intervention_label(combo: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """Which swept axes differ from the resolved base config, e.g. 'batch_size=512, optimizer=adam'."""
    changed = [f"{k.split('.')[-1]}={v}" for k, v in sorted(combo.items()) if _normal(_get_path(base, k)) != _normal(v)]
    return ", ".join(changed) if changed else "base"


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _describe(combo: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v!r}" for k, v in combo.items()) + "}" if combo else "{base}"
