"""Convergence probe: can every cell of a sweep reach its training target, and how long does it take?

``python -m collect --probe`` trains ONE seed of every grid cell (the spec's first seed) with a generous epoch cap
(``--probe-cap-epochs``, default 3 × the largest cap of the sweep's runs in epochs, ``default_cap``), no
measures, no overtraining (``stop.extra_epochs = 0``) and no MLflow runs, on the sweep's own training path
(``collect.train.train`` one at a time, ``collect.train_stacked.train_stack`` with ``--stack``), so it trains exactly
what the sweep would. It prints per cell whether and when it reached the target, names the axis levels whose
cells cannot (``levels.level_shares``), suggests a cap, and writes a JSON result that ``--dry-run`` shows.

Conventions:
- target: ``stop.train_acc`` (train accuracy >= a) and/or ``stop.train_loss`` (train loss <= l, under the sweep's
  loss), labelled by ``RunConfig.comparison_label``; a sweep without one is compared at a fixed budget, which every
  run reaches, and is not probed; in a sweep that mixes both (``[[cases]]`` with and without a target) only the cells
  with a target are probed and the others are counted as "compared at a fixed budget".
- a run's cap in epochs: ``stop.max_epochs``, or ⌈``stop.max_steps`` / steps per epoch⌉ with steps per epoch
  ⌈(|S| + |A|) / B⌉ (1 for full-batch ``gd``), the smaller when both are set.
- target epoch of a cell = first evaluated step s with the target met, divided by steps per epoch ⌈n / B⌉.
- learned: ``collect.train_outcome.learned`` on the final train accuracy (the rule every run is logged with).
- suggested cap = ⌈1.5 × max target epoch⌉ over the cells that reached the target (None when none did).
- spec hash = SHA-256 of the sorted training-relevant configs of the sweep's cells (seed, measures, saved weights and
  the caps ``max_epochs`` / ``max_steps`` / ``extra_epochs`` left out), so a probe stays valid when only the cap or
  the seeds change and goes stale when anything that moves training does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from collect.config import RunConfig, SpecError
from collect.levels import LevelShare, level_shares
from collect.names import safe_component
from collect.stop_rule import step_budget
from collect.sweep import PlannedRun
from collect.train_outcome import chance_level, learned

DEFAULT_CAP_EPOCHS = 300  # when no run sets a cap
CAP_FACTOR = 3  # default probe cap = CAP_FACTOR × the largest run cap in epochs
SUGGEST_FACTOR = 1.5  # suggested cap = SUGGEST_FACTOR × the slowest cell that reached the target
_CAP_FIELDS = ("max_epochs", "max_steps", "extra_epochs")


@dataclass(frozen=True)
class CellResult:
    """One probed cell: its swept values, and how far training got within the probe's cap."""

    intervention: str
    axes: Mapping[str, Any]
    seed: int
    reached: bool
    target_step: int | None
    target_epoch: float | None
    steps: int
    epochs: float
    train_loss: float  # at the end of training (the target step when reached: the probe does not overtrain)
    train_acc: float
    learned: bool
    cpu_seconds: float  # process CPU time (all threads) spent training this cell; a stack's time split evenly
    diverged: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    sweep: str
    scale: str
    spec_hash: str
    target: str  # e.g. "train cross-entropy <= 0.01"
    cap_epochs: int
    stacked: bool
    seconds: float
    cells: tuple[CellResult, ...]

    def shares(self) -> list[LevelShare]:
        return level_shares([c.axes for c in self.cells], [c.reached for c in self.cells])

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, default=str)

    @staticmethod
    def from_json(text: str) -> "ProbeResult":
        raw = json.loads(text)
        raw["cells"] = tuple(CellResult(**c) for c in raw["cells"])
        return ProbeResult(**raw)


# --- pure planning -----------------------------------------------------------------------------------------------


def _training_key(cfg: RunConfig) -> str:
    d = cfg.to_dict()
    for name in ("seed", "measures", "save_weights", "curve_measures"):
        d.pop(name, None)
    for name in _CAP_FIELDS:
        d["stop"].pop(name, None)
    if d["transform"].get("at_epoch") is None:  # a post-training transform does not move training
        d.pop("transform")
    return json.dumps(d, sort_keys=True, default=str)


def spec_hash(runs: Sequence[PlannedRun]) -> str:
    """16 hex digits identifying what the sweep's cells train (see the module docstring)."""
    keys = sorted({_training_key(r.config) for r in runs})
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def probe_cells(runs: Sequence[PlannedRun]) -> list[PlannedRun]:
    """One run per grid cell: the first run (in spec order, i.e. the first seed) of each distinct training key."""
    seen: dict[str, PlannedRun] = {}
    for r in runs:
        seen.setdefault(_training_key(r.config), r)
    return list(seen.values())


def epoch_cap(cfg: RunConfig) -> int | None:
    """The run's own cap in epochs (module docstring): ``stop.max_epochs``, or ⌈``stop.max_steps`` / ⌈(|S| + |A|) / B⌉⌉,
    the smaller when both are set; None when neither is."""
    if cfg.stop.max_epochs is None and cfg.stop.max_steps is None:
        return None
    n = cfg.data.n_train + cfg.data.attack_size
    steps_per_epoch = 1 if cfg.optim.optimizer == "gd" else math.ceil(n / min(cfg.optim.batch_size, n))
    return math.ceil(step_budget(cfg.stop, steps_per_epoch) / steps_per_epoch)  # the stop rule's budget, in epochs


def default_cap(runs: Sequence[PlannedRun]) -> int:
    """CAP_FACTOR × the largest ``epoch_cap`` of the runs, or DEFAULT_CAP_EPOCHS when none sets a cap."""
    caps = [c for c in (epoch_cap(r.config) for r in runs) if c is not None]
    return CAP_FACTOR * max(caps) if caps else DEFAULT_CAP_EPOCHS


def probe_config(cfg: RunConfig, cap_epochs: int) -> RunConfig:
    """``cfg`` as the probe trains it: cap ``cap_epochs`` epochs, no step cap, no overtraining, no measures."""
    if cap_epochs < 1:
        raise SpecError(f"--probe-cap-epochs = {cap_epochs} must be >= 1")
    stop = dataclasses.replace(cfg.stop, max_epochs=cap_epochs, max_steps=None, extra_epochs=0)
    return dataclasses.replace(cfg, stop=stop, measures=(), curve_measures=(), save_weights=False)


def suggest_cap(cells: Sequence[CellResult]) -> int | None:
    """⌈SUGGEST_FACTOR × the largest target epoch⌉ over the cells that reached the target; None if none did."""
    epochs = [c.target_epoch for c in cells if c.reached and c.target_epoch is not None]
    return math.ceil(SUGGEST_FACTOR * max(epochs)) if epochs else None


def probe_path(tracking_uri: str, sweep: str, scale: str) -> Path:
    """``<folder of the SQLite store>/probes/<sweep>-<scale>.json`` (``data/probes/`` for any other store)."""
    from collect.store_check import sqlite_path

    db = sqlite_path(tracking_uri)
    root = db.parent if db is not None else Path("data")
    return root / "probes" / f"{safe_component(sweep)}-{safe_component(scale)}.json"


# --- training ------------------------------------------------------------------------------------------------------


def _final(curves: Sequence[Mapping[str, float]]) -> tuple[float, float]:
    last = curves[-1] if curves else {}
    return float(last.get("train_loss", math.nan)), float(last.get("train_acc", math.nan))


def _cell(planned: PlannedRun, *, target_step: int | None, steps: int, epochs: float, curves, chance: float,
          cpu: float, diverged: str | None = None) -> CellResult:
    loss, acc = _final(curves)
    spe = steps / epochs if epochs else 1.0
    return CellResult(
        intervention=planned.intervention, axes=dict(planned.axes), seed=planned.config.seed,
        reached=target_step is not None and diverged is None, target_step=target_step,
        target_epoch=None if target_step is None else target_step / spe, steps=steps, epochs=epochs,
        train_loss=loss, train_acc=acc, learned=diverged is None and learned(acc, chance), cpu_seconds=cpu, diverged=diverged,
    )


def _train_one(planned: PlannedRun, device, chance: float) -> CellResult:
    """Train as ``collect.runner.run_one`` does (same seeding, model, optimizer and loop), without measuring."""
    import torch

    from collect.data import load_dataset
    from collect.losses import get_loss, output_dim
    from collect.models import build_model
    from collect.optim import build_optimizer
    from collect.runner import apply_transforms, to_tensors
    from collect.train import Diverged, train

    cfg = planned.config
    started = time.process_time()
    torch.manual_seed(cfg.seed)
    dataset = load_dataset(cfg.data, cfg.data_seed)
    model = build_model(cfg.model, dataset.input_shape, output_dim(cfg.loss, dataset.num_classes), cfg.seed).to(device)
    loss_fn = get_loss(cfg.loss)
    mid = cfg.transform.at_epoch
    try:
        result = train(cfg, model, to_tensors(dataset, device), loss_fn, lambda m: build_optimizer(cfg.optim, m, loss_fn),
                       progress=False, transform_at=(mid, lambda m: apply_transforms(m, cfg)) if mid else None)
    except Diverged as exc:
        return _cell(planned, target_step=None, steps=0, epochs=0.0, curves=[], chance=chance,
                     cpu=time.process_time() - started, diverged=str(exc))
    return _cell(planned, target_step=result.target_step, steps=result.steps, epochs=result.epochs,
                 curves=result.curves, chance=chance, cpu=time.process_time() - started)


def _train_stacked(members: Sequence[PlannedRun], device, chances: Sequence[float]) -> list[CellResult]:
    from collect.train_stacked import train_stack

    started = time.process_time()
    results = train_stack([p.config for p in members], device, progress=False)
    cpu = (time.process_time() - started) / len(members)
    return [_cell(p, target_step=r.target_step, steps=r.steps, epochs=r.epochs, curves=r.curves, chance=c, cpu=cpu,
                  diverged=r.diverged) for p, r, c in zip(members, results, chances)]


def train_cells(cells: Sequence[PlannedRun], *, stack: bool = False, device: str = "auto", log=print) -> list[CellResult]:
    """Train every (probe-configured) cell; with ``stack``, same-shape cells train together (``collect.train_stacked``).
    Results come back in the order of ``cells``; ``log`` gets one line per finished cell or stack."""
    from collect.data import load_dataset
    from collect.runner import resolve_device

    dev = resolve_device(device)
    chance_of: dict[tuple, float] = {}

    def chance(p: PlannedRun) -> float:
        key = (p.config.data, p.config.data_seed)
        if key not in chance_of:
            chance_of[key] = chance_level(load_dataset(p.config.data, p.config.data_seed).y_train.tolist())
        return chance_of[key]

    out: dict[str, CellResult] = {}
    groups: list[list[PlannedRun]] = [[c] for c in cells]
    if stack:
        from collect.stack_plan import plan_stacks

        stacks, alone, notes = plan_stacks(cells)
        for note in notes:
            log(note)
        groups = stacks + [[c] for c in alone]
    done = 0
    for group in groups:
        if len(group) > 1:
            results = _train_stacked(group, dev, [chance(p) for p in group])
        else:
            results = [_train_one(group[0], dev, chance(group[0]))]
        for p, r in zip(group, results):
            out[p.config_hash] = r
        done += len(group)
        log(f"  probe: {done} of {len(cells)} cells trained ({sum(r.reached for r in results)} of {len(group)} just "
            f"trained reached the target)")
    return [out[c.config_hash] for c in cells]


def run_probe(spec_name: str, scale: str, runs: Sequence[PlannedRun], *, cap_epochs: int | None = None, stack: bool = False,
              device: str = "auto", log=print) -> ProbeResult:
    """Probe the cells of ``runs`` (one seed each) with the cap ``cap_epochs`` (None: ``default_cap``)."""
    if not runs:
        raise SpecError(f"sweep '{spec_name}': no runs to probe")
    targeted = [r for r in runs if r.config.stop.comparison_point == "target"]
    if not targeted:
        raise SpecError(f"sweep '{spec_name}' declares no training target (stop.train_acc or stop.train_loss): its runs are "
                        "compared at a fixed budget, which every run reaches, so there is nothing to probe; set a target "
                        "in [base.stop] to probe one")
    cap = default_cap(targeted) if cap_epochs is None else cap_epochs
    cells = [dataclasses.replace(p, config=probe_config(p.config, cap)) for p in probe_cells(targeted)]
    budget_cells = len(probe_cells(runs)) - len(cells)
    target = cells[0].config.comparison_label  # no overtraining in the probe: the target alone
    log(f"probe of sweep '{spec_name}' (scale {scale}): {len(cells)} cells, one seed each, target {target}, cap {cap} epochs"
        + (", stacked" if stack else "")
        + (f"; {budget_cells} more cell(s) are compared at a fixed budget and not probed" if budget_cells else ""))
    started = time.perf_counter()
    results = train_cells(cells, stack=stack, device=device, log=log)
    return ProbeResult(spec_name, scale, spec_hash(runs), target, cap, stack, time.perf_counter() - started, tuple(results))


# --- reporting -------------------------------------------------------------------------------------------------------


def _cell_label(axes: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in axes.items()) or "base"


def report_lines(result: ProbeResult, per_cell: bool = True) -> list[str]:
    """The probe's findings: per cell (optional), the levels whose cells cannot reach the target, a suggested cap."""
    lines: list[str] = []
    within = f"{result.target} within {result.cap_epochs} epochs"
    if per_cell:
        lines.append(f"  {'reached':<8}{'epoch':>7}{'train loss':>12}{'train acc':>10}  {'learned':<8}cell")
        for c in result.cells:
            epoch = f"{c.target_epoch:.0f}" if c.target_epoch is not None else "-"
            state = "diverged" if c.diverged else ("yes" if c.reached else "no")
            lines.append(f"  {state:<8}{epoch:>7}{c.train_loss:>12.4g}{c.train_acc:>10.3f}  {'yes' if c.learned else 'NO':<8}"
                         f"{_cell_label(c.axes)}")
    n, k = len(result.cells), sum(c.reached for c in result.cells)
    lines.append(f"{k} of {n} cells reach {within} (probe: {result.seconds:.0f} s, "
                 f"{sum(c.cpu_seconds for c in result.cells):.0f} CPU s of training)")
    shares = result.shares()
    low = sorted((s for s in shares if s.k < s.n), key=lambda s: (s.share, s.level))
    if low:
        lines.append("axis levels whose cells cannot all reach it (worst first):")
        lines += [f"  {s.level}: {s.k} of {s.n} cells reach {within}" for s in low]
    elif shares:
        lines.append("every level of every axis reaches it")
    failing = [c for c in result.cells if not c.reached]
    if failing:
        lines.append("cells that cannot: " + "; ".join(
            f"{_cell_label(c.axes)} ({'diverged' if c.diverged else f'train loss {c.train_loss:.3g}, acc {c.train_acc:.3f}'}"
            f"{'' if c.learned or c.diverged else ', did not learn'})" for c in failing))
    cap = suggest_cap(result.cells)
    if cap is not None:
        slowest = max((c for c in result.cells if c.reached), key=lambda c: c.target_epoch or 0.0)
        lines.append(f"suggested cap: stop.max_epochs = {cap} ({SUGGEST_FACTOR:g} x the slowest cell that reached the "
                     f"target: {slowest.target_epoch:.0f} epochs at {_cell_label(slowest.axes)})")
    else:
        lines.append("suggested cap: none (no cell reached the target; change the design or the target)")
    return lines


def dry_run_lines(path: Path, runs: Sequence[PlannedRun]) -> list[str]:
    """What ``--dry-run`` says about the probe result at ``path`` for these runs."""
    if not path.exists():
        return [f"no probe result for this sweep and scale ({path}); run the same command with --probe instead of --dry-run"]
    result = ProbeResult.from_json(path.read_text())
    if result.spec_hash != spec_hash(runs):
        return [f"probe result {path} is for another version of this sweep (spec hash {result.spec_hash}, now "
                f"{spec_hash(runs)}); re-run with --probe"]
    return [f"probe result {path} (same spec hash {result.spec_hash}):"] + report_lines(result, per_cell=False)
