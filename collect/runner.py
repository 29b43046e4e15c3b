"""Train, measure and log one configuration (``run_one``); plan and run a sweep with resume (``run_sweep``).

A run's outcome is always written to the store: FINISHED with its metrics, FAILED with a reason (divergence, a
measure error, a bug), or KILLED on Ctrl-C. Nothing already logged is touched by later failures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from collect.config import RunConfig
from collect.levels import shares_json, target_summary
from collect.losses import get_loss, output_dim
from collect.measures.context import MeasureContext, MeasureResult, MeasureSkipped
from collect.measures.registry import get_measure
from collect.progress import print_line, progress_line
from collect.store_check import write_failure_error
from collect.sweep import PlannedRun
from collect import claims, tracking
from collect.train import Diverged, TensorData, train
from collect.train_stacked import train_alone, trains_alone
from collect.train_outcome import chance_level, outcome_metrics, outcome_tags


@dataclass(frozen=True)
class SweepTarget:
    """Where and how runs are logged; picklable so that worker processes can receive it."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None
    sweep: str
    device: str = "auto"
    progress: bool = True
    torch_threads: int | None = None


@dataclass(frozen=True)
class RunOutcome:
    config_hash: str
    run_id: str | None
    status: str  # FINISHED, FAILED, KILLED, SKIPPED (another invocation has or trains it: ``collect.claims``)
    reason: str = ""
    seconds: float = 0.0
    metrics: Mapping[str, float] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU. Asking for ``cuda`` without one is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch.cuda.is_available() is False; use --device auto or cpu")
    return torch.device(name)


def to_tensors(dataset, device: torch.device) -> TensorData:
    return TensorData(
        x_train=torch.as_tensor(dataset.x_train, dtype=torch.float32, device=device),
        y_train=torch.as_tensor(dataset.y_train, dtype=torch.long, device=device),
        x_test=torch.as_tensor(dataset.x_test, dtype=torch.float32, device=device),
        y_test=torch.as_tensor(dataset.y_test, dtype=torch.long, device=device),
        is_attack=torch.as_tensor(dataset.is_attack, dtype=torch.bool, device=device),
    )


def apply_transforms(model: torch.nn.Module, config: RunConfig) -> torch.nn.Module:
    """Function-preserving reparametrisations of ``config.transform`` (papers 000 section 5, 002 appendix C)."""
    t = config.transform
    if t.alpha_scale == 1.0 and t.last_layer_scale == 1.0:
        return model
    from collect.transforms import alpha_scale, last_layer_scale

    if t.alpha_scale != 1.0:
        model = alpha_scale(model, t.alpha_scale, t.alpha_layer)
    if t.last_layer_scale != 1.0:
        model = last_layer_scale(model, t.last_layer_scale)
    return model


# Ledger prefix of each kind of registry output (``Measure.kind``): diagnostics go to ``diag.<key>``, never ``measure.``.
LEDGER_PREFIX = {"measure": "measure", "diagnostic": "diag", "gen": "gen"}


def compute_measures(ctx: MeasureContext, names_and_options: Sequence[tuple[str, Mapping]], timing: bool = True) -> tuple[dict[str, float], dict[str, pd.DataFrame], dict[str, str]]:
    """Run each measure; returns ledger metrics, per-sample frames and tags (skips, errors, info)."""
    metrics: dict[str, float] = {}
    frames: dict[str, pd.DataFrame] = {}
    tags: dict[str, str] = {}
    for name, options in names_and_options:
        m = get_measure(name)
        if m.binary_only and not ctx.is_binary:
            tags[f"measure_skipped.{name}"] = f"{name} needs a binary task; set data.binary = \"low_high\" or a class pair"
            continue
        started = time.perf_counter()
        try:
            result: MeasureResult = m.fn(ctx, **options)
        except MeasureSkipped as exc:
            tags[f"measure_skipped.{name}"] = str(exc)
            continue
        except Exception as exc:  # a failing measure must not lose the trained run's other numbers
            tags[f"measure_error.{name}"] = f"{type(exc).__name__}: {exc}"
            continue
        if timing and m.prefix == "measure":
            # a measure listed twice (two option sets) reports the time of all its entries together
            metrics[f"time.{name}"] = metrics.get(f"time.{name}", 0.0) + time.perf_counter() - started
        metrics.update({f"{LEDGER_PREFIX[m.kind(k)]}.{k}": float(v) for k, v in result.values.items()})
        if result.per_sample:
            frames[name] = pd.DataFrame({k: np.asarray(v) for k, v in result.per_sample.items()})
        tags.update({f"info.{name}.{k}": v for k, v in result.info.items()})
    return metrics, frames, tags


def run_one(planned: PlannedRun, target: SweepTarget, train_fn: Callable | None = None) -> RunOutcome:
    """Claim, train and measure one configuration, logging everything as a child run of ``target.parent_run_id``.

    ``train_fn`` (None: ``collect.train_stacked.train_alone`` for a run it ``trains_alone``, else
    ``collect.train.train``) is replaced by ``collect.train_stacked.replay_train`` to hand over weights trained in a
    stack instead of training here.

    SKIPPED (nothing trained, the claim run deleted) when another invocation already finished or trains it.
    """
    if target.torch_threads:
        torch.set_num_threads(target.torch_threads)
    cfg = planned.config
    # Global RNG (dropout masks, optimizer noise) from the run's seed, so results do not depend on which worker ran
    # the run or what it ran before.
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    client = tracking.ensure_store(target.tracking_uri)
    run_id = tracking.start_child(
        client,
        target.experiment_id,
        target.parent_run_id,
        cfg.to_dict(),
        {tracking.TAG_SWEEP: target.sweep, tracking.TAG_HASH: planned.config_hash, tracking.TAG_INTERVENTION: planned.intervention, "seed": str(cfg.seed),
         **claims.owner_tags(), **planned.interventions_tags()},  # which machine and process runs it, its first heartbeat
        run_name=f"{planned.intervention} seed={cfg.seed}",
    )
    # The child run is this attempt's claim on the configuration: train only if no other invocation has it.
    got = claims.claim(client, target.experiment_id, planned.config_hash, run_id)
    if not got.won:
        claims.release_lost(client, run_id, got)
        return RunOutcome(planned.config_hash, got.holder, "SKIPPED", f"{got.reason}: run {got.holder}", time.perf_counter() - started)
    with claims.Heartbeat(client, run_id):
        return _train_measure_log(planned, target, client, run_id, started, train_fn)


def _train_measure_log(
    planned: PlannedRun, target: SweepTarget, client, run_id: str, started: float, train_fn: Callable | None = None
) -> RunOutcome:
    """The body of ``run_one`` once its claim won: every outcome is written to the run ``run_id``."""
    from collect.data import load_dataset
    from collect.models import build_model
    from collect.optim import build_optimizer

    cfg = planned.config
    try:
        device = resolve_device(target.device)
        dataset = load_dataset(cfg.data, cfg.data_seed)
        data = to_tensors(dataset, device)
        tracking.log_datasets(client, run_id, [(f"{dataset.name}-train", dataset.x_train, dataset.y_train, "training"),
                                               (f"{dataset.name}-test", dataset.x_test, dataset.y_test, "testing")])
        model = build_model(cfg.model, dataset.input_shape, output_dim(cfg.loss, dataset.num_classes), cfg.seed).to(device)
        loss_fn = get_loss(cfg.loss)

        def context(m: torch.nn.Module, init_state, step=None, next_iterate=None, curves=None) -> MeasureContext:
            return MeasureContext(
                model=m, config=cfg, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test,
                is_attack=data.is_attack, num_classes=dataset.num_classes, loss_fn=loss_fn, init_state=init_state,
                device=device, seed=cfg.seed, next_iterate=next_iterate, step=step, curves=curves,
            )

        init_state = {k: v.detach().clone() for k, v in model.named_parameters()}
        curve_specs = [(n, dict(_options_of(cfg, n))) for n in cfg.curve_measures]

        def on_eval(m: torch.nn.Module, step: int) -> dict[str, float]:
            if not curve_specs:
                return {}
            m.eval()
            values, _, _ = compute_measures(context(m, init_state, step=step), curve_specs, timing=False)
            return {k.split(".", 1)[1]: v for k, v in values.items()}  # logged as curve/<key>

        mid = cfg.transform.at_epoch
        if train_fn is None:
            train_fn = train_alone if trains_alone(cfg) else train
        result = train_fn(
            cfg, model, data, loss_fn, lambda m: build_optimizer(cfg.optim, m, loss_fn), on_eval=on_eval,
            progress=target.progress, transform_at=(mid, lambda m: apply_transforms(m, cfg)) if mid else None,
        )
        model = (result.model if mid else apply_transforms(result.model, cfg)).eval()
        ctx = context(model, result.init_state, next_iterate=result.next_iterate, curves=result.curves)
        specs = [("generalization", {})] + [(m.name, dict(m.options)) for m in cfg.measures if m.name != "generalization"]
        metrics, frames, tags = compute_measures(ctx, specs)
        metrics.update(outcome_metrics(cfg, result.steps, result.epochs, result.seconds, result.target_step,
                                       result.curves[-1]["train_acc"], chance_level(dataset.y_train)))
        tags.update(outcome_tags(cfg, result.stop_reason))
        tracking.log_run(client, run_id, metrics=metrics, curves=result.curves, tags=tags)  # one write (log_batch)
        artifacts: dict = {"config.json": cfg.to_dict(), "curves.json": result.curves}
        artifacts.update({f"per_sample/{name}.parquet": frame for name, frame in frames.items()})
        if cfg.save_weights:
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            artifacts["model/state_dict.pt"] = lambda path: torch.save(state, path)
        tracking.log_artifact_files(client, run_id, artifacts)
        errors = {k: v for k, v in tags.items() if k.startswith("measure_error.")}
        if errors:
            reason = "; ".join(f"{k.removeprefix('measure_error.')}: {v}" for k, v in errors.items())
            tracking.terminate(client, run_id, "FAILED", f"measure failed: {reason}")
            return RunOutcome(planned.config_hash, run_id, "FAILED", reason, time.perf_counter() - started, metrics)
        if not _still_claimed(client, run_id):  # another invocation has the configuration now: not a failure here
            return RunOutcome(planned.config_hash, run_id, "SKIPPED", TAKEN_OVER, time.perf_counter() - started, metrics)
        tracking.terminate(client, run_id, "FINISHED")
        return RunOutcome(planned.config_hash, run_id, "FINISHED", "", time.perf_counter() - started, metrics)
    except KeyboardInterrupt:
        tracking.terminate(client, run_id, "KILLED", "interrupted (Ctrl-C)")
        raise
    except Diverged as exc:
        tracking.log_tags(client, run_id, {"diverged": "True"})
        tracking.terminate(client, run_id, "FAILED", f"diverged: {exc}")
        return RunOutcome(planned.config_hash, run_id, "FAILED", f"diverged: {exc}", time.perf_counter() - started)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        tracking.terminate(client, run_id, "FAILED", reason)
        return RunOutcome(planned.config_hash, run_id, "FAILED", f"{type(exc).__name__}: {exc}", time.perf_counter() - started)


TAKEN_OVER = ("taken over by another invocation: it closed this run while it trained (no heartbeat reached the store "
              f"for {claims.STALE_S:.0f} s) and trains the configuration itself; this run's results are logged but it "
              "stays FAILED")


def _still_claimed(client, run_id: str) -> bool:
    """False when another invocation took the run over (it looked dead: e.g. this worker was cut off from the store);
    the run then keeps the FAILED status the taker gave it, so no configuration ends with two FINISHED runs."""
    if client.get_run(run_id).info.status == "RUNNING":
        return True
    tracking.log_tags(client, run_id, {"claim.taken_over": "True"})
    return False


def _options_of(cfg: RunConfig, name: str) -> Mapping:
    for m in cfg.measures:
        if m.name == name:
            return m.options
    return {}


Executor = Callable[[Sequence[PlannedRun], SweepTarget], Iterator[RunOutcome]]


def sequential_executor(runs: Sequence[PlannedRun], target: SweepTarget) -> Iterator[RunOutcome]:
    """Run each configuration in this process, one after another."""
    for planned in runs:
        yield run_one(planned, target)


@dataclass(frozen=True)
class SweepSummary:
    experiment_id: str
    parent_run_id: str | None  # None: nothing was left to do, so no parent run was logged
    planned: int
    skipped: int
    outcomes: tuple[RunOutcome, ...]
    seconds: float
    parent_status: str = "FINISHED"  # another status: another invocation closed the parent first, and it stays so

    @property
    def finished(self) -> int:
        return sum(o.status == "FINISHED" for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(o.status == "FAILED" for o in self.outcomes)

    @property
    def elsewhere(self) -> int:
        """Configurations another invocation finished, was training, or took over from this one (SKIPPED)."""
        return sum(o.status == "SKIPPED" for o in self.outcomes)


def run_sweep(
    runs: Sequence[PlannedRun],
    *,
    sweep: str,
    tracking_uri: str,
    experiment: str | None = None,
    device: str = "auto",
    executor: Executor = sequential_executor,
    parent_tags: Mapping[str, str] | None = None,
    progress: bool = True,
    torch_threads: int | None = None,
    checked: bool = False,
) -> SweepSummary:
    """Check the runs and the store, close what dead invocations left RUNNING, skip configurations already FINISHED
    (resume), log a parent run and run the rest (each claimed first: ``collect.claims``), close the parent.

    ``checked``: the caller has already run the pre-flight checks (``collect.preflight.check_runs`` on ``runs``
    and ``collect.store_check.check_store`` on ``tracking_uri``, as ``python -m collect`` does before importing
    torch), so they are not run twice; a library caller leaves it False and gets them here.
    Nothing left to do: no parent run is logged (``parent_run_id`` None).
    """
    from collect.preflight import check_runs

    started = time.perf_counter()
    if not checked:
        check_runs(runs)
        tracking.check_store(tracking_uri)
    client = tracking.ensure_store(tracking_uri)
    experiment_id = tracking.get_or_create_experiment(client, experiment or sweep, tracking_uri)
    tracking.close_stale_parents(client, experiment_id, STALE_PARENT)
    tracking.close_stale_runs(client, experiment_id, "interrupted: the process running it stopped before it finished")
    done = tracking.finished_hashes(client, experiment_id)
    todo = [r for r in runs if r.config_hash not in done]
    if not todo:
        return SweepSummary(experiment_id, None, len(runs), len(runs), (), time.perf_counter() - started)
    parent = tracking.start_parent(client, experiment_id, sweep, {"planned": str(len(runs)), "skipped_finished": str(len(runs) - len(todo)), **(parent_tags or {})})
    target = SweepTarget(tracking_uri, experiment_id, parent, sweep, device, progress, torch_threads)
    tracking.log_tags(client, parent, runs[0].interventions_tags() if runs else {})  # the spec's interventions
    outcomes: list[RunOutcome] = []
    stream = _with_heartbeat(client, parent, executor(todo, target))
    bar = tqdm(total=len(todo), desc=f"sweep {sweep}", unit="run", disable=not progress or None)
    lines = progress and bar.disable  # tqdm draws only on a terminal; elsewhere (a pipe, a log file) one line per run
    index = {r.config_hash: (i, r) for i, r in enumerate(runs)}
    if lines:
        print_line(f"sweep {sweep}: {len(todo)} run(s) to do, {len(runs) - len(todo)} already finished")
    try:
        for outcome in stream:
            if outcome.status == "FAILED" and (full := write_failure_error(tracking_uri, outcome.reason)) is not None:
                _stop_after_write_failure(client, parent, stream, str(full))
                raise full
            outcomes.append(outcome)
            bar.update(1)
            bar.set_postfix(failed=sum(o.status == "FAILED" for o in outcomes))
            if lines:
                print_line(progress_line(len(outcomes), len(todo), sweep, *index[outcome.config_hash], outcome))
            elif outcome.status == "FAILED":
                bar.write(f"run {outcome.run_id} failed: {outcome.reason.splitlines()[0] if outcome.reason else ''}")
    except KeyboardInterrupt:
        tracking.terminate_if_running(client, parent, "KILLED", "interrupted (Ctrl-C); re-run the same command to resume")
        raise
    finally:
        bar.close()
    summary = SweepSummary(experiment_id, parent, len(runs), len(runs) - len(todo), tuple(outcomes), time.perf_counter() - started)
    with _write_failures_as_one_line(tracking_uri):
        return _close_parent(client, parent, runs, outcomes, summary)


def _close_parent(client, parent: str, runs: Sequence[PlannedRun], outcomes: list[RunOutcome], summary: "SweepSummary") -> "SweepSummary":
    """The parent run's counts and tags, then its status (kept if another invocation already wrote one)."""
    tracking.log_metrics(client, parent, {"runs.finished": summary.finished, "runs.failed": summary.failed, "runs.skipped": summary.skipped, "sweep.seconds": summary.seconds})
    tracking.log_tags(client, parent, {"runs.trained_elsewhere": str(summary.elsewhere)})
    at_target = target_summary(runs, outcomes)  # this invocation's finished runs, per axis level
    if at_target is not None:
        tracking.log_metrics(client, parent, {"runs.at_target": at_target.k, "runs.at_target_share": at_target.k / at_target.n})
        tracking.log_tags(client, parent, {"at_target": at_target.line(), "at_target.levels": shares_json(at_target.shares)})
    closed = tracking.terminate_if_running(client, parent, "FINISHED")
    return summary if closed is None else dataclasses.replace(summary, parent_status=closed)


@contextlib.contextmanager
def _write_failures_as_one_line(uri: str) -> Iterator[None]:
    """A write the store cannot take (a full disk: ``store_check.write_failure``) becomes its one-line ``StoreError``."""
    try:
        yield
    except Exception as exc:
        full = write_failure_error(uri, f"{type(exc).__name__}: {exc}")
        if full is None:
            raise
        raise full from None


def _stop_after_write_failure(client, parent: str, stream: Iterator[RunOutcome], reason: str) -> None:
    """The store cannot take writes: cancel the runs not started, stop the workers (``stream.close()``), and try to
    mark the parent FAILED; what cannot be written stays RUNNING with a dead owner, closed by the next invocation."""
    with contextlib.suppress(Exception):
        stream.close()
    with contextlib.suppress(Exception):
        tracking.terminate_if_running(client, parent, "FAILED", reason)


STALE_PARENT = "driver stopped: the invocation's process ended (or sent no heartbeat) before the sweep finished; re-run the command to resume"


def _with_heartbeat(client, parent: str, outcomes: Iterator[RunOutcome]) -> Iterator[RunOutcome]:
    """The executor's outcomes, while the parent run's heartbeat says this invocation is alive."""
    with claims.Heartbeat(client, parent):
        yield from outcomes
