"""Train the same-shape configurations of a sweep together, as one stacked model in one process (issue 14).

Configurations that share architecture, data sizes, batch size, optimizer, loss and stopping rule but differ in
seed, learning rate, weight decay, momentum, dropout rate, initialisation scale or data seed are stacked: every
weight of every run becomes one slice of a tensor with a leading run axis, and a training step is one batched
forward/backward pass (``torch.baddbmm``) for all of them. Each run keeps what one-at-a-time training gives it:

- its own initialisation (``collect.models.build_model`` with its seed, exactly as ``run_one`` builds it),
- its own data order (its own ``collect.train.BatchSampler`` seeded with its seed) and its own data set,
- its own dropout masks, drawn from a generator seeded with its seed in the order the sequential run draws them
  from the global one (on the CPU the masks are then identical; CUDA's fused dropout draws differently),
- its own optimizer state and hyper-parameters (SGD with momentum and coupled weight decay, Adam — the update
  formulas of ``torch.optim.SGD`` / ``torch.optim.Adam``, written per run),
- its own stopping point: the stopping rule of ``collect.train.train`` is applied per run; a run that has stopped
  leaves the stack and never changes again (a run whose loss becomes non-finite fails alone).

Afterwards each run is measured and logged by ``collect.runner.run_one`` as its own child run, with a
``train_fn`` that hands over the trained weights, curves and optimizer state instead of training
(``stacked_executor``). Results equal one-at-a-time training up to floating-point rounding: a batched matrix
product sums in a different order than ``nn.Linear``'s, so weights differ in the last bits after the first step
and the difference grows slowly with training (the tests bound it: same accuracies, margins within 1e-4 relative).

What is not stacked (it runs one at a time, with a message): architectures other than ``fcn``, batch norm,
optimizers other than sgd / gd / adam, SWA, a mid-training transform, curve measures, and groups of one run.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from collect.config import RunConfig
from collect.losses import get_loss
from collect.sweep import PlannedRun

SUPPORTED_OPTIMIZERS = ("sgd", "gd", "adam")
# fields that may differ inside a stack; everything else that shapes training must be equal
PER_RUN_FIELDS = {
    "seed": (),
    "optim": ("lr", "weight_decay", "momentum"),
    "model": ("dropout", "init_sigma_w", "init_sigma_b"),
    "data": ("data_seed",),
}
_AFTER_TRAINING = ("measures", "save_weights", "transform")  # used after training only (transform: post-training)
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": torch.relu, "tanh": torch.tanh}
_ADAM_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which collect.optim uses
_EVAL_BATCH = 4096  # collect.train.evaluate's batch size


def unsupported(cfg: RunConfig) -> str | None:
    """Why ``cfg`` cannot be trained stacked, or None."""
    if cfg.model.arch != "fcn":
        return f"model.arch = {cfg.model.arch!r} (stacked training supports fcn)"
    if cfg.model.batch_norm:
        return "model.batch_norm = true"
    if cfg.model.activation not in _ACTIVATIONS:
        return f"model.activation = {cfg.model.activation!r}"
    if cfg.optim.optimizer not in SUPPORTED_OPTIMIZERS:
        return f"optim.optimizer = {cfg.optim.optimizer!r} (stacked training supports {', '.join(SUPPORTED_OPTIMIZERS)})"
    if cfg.optim.swa:
        return "optim.swa = true"
    if cfg.transform.at_epoch:
        return "transform.at_epoch is set (a mid-training transform)"
    if cfg.curve_measures:
        return "curve_measures are set (measures along training)"
    return None


def shape_key(cfg: RunConfig) -> str:
    """Runs with equal keys can share a stack: the resolved config without the per-run fields."""
    d = cfg.to_dict()
    for section, names in PER_RUN_FIELDS.items():
        if not names:
            d.pop(section, None)
        for name in names:
            d.get(section, {}).pop(name, None)
    for name in _AFTER_TRAINING:
        d.pop(name, None)
    return json.dumps(d, sort_keys=True, default=str)


def plan_stacks(runs: Sequence[PlannedRun], max_stack: int = 64) -> tuple[list[list[PlannedRun]], list[PlannedRun], list[str]]:
    """(stacks of ≥ 2 runs, runs to train one at a time, one message per reason a run is not stacked)."""
    groups: dict[str, list[PlannedRun]] = {}
    alone: list[PlannedRun] = []
    reasons: dict[str, int] = {}
    for planned in runs:
        why = unsupported(planned.config)
        if why:
            alone.append(planned)
            reasons[why] = reasons.get(why, 0) + 1
            continue
        groups.setdefault(shape_key(planned.config), []).append(planned)
    stacks: list[list[PlannedRun]] = []
    for members in groups.values():
        if len(members) == 1:
            alone.extend(members)
            reasons["no other run shares its shape"] = reasons.get("no other run shares its shape", 0) + 1
            continue
        stacks.extend(members[i : i + max_stack] for i in range(0, len(members), max_stack))
    notes = [f"--stack: {n} run(s) trained one at a time: {why}" for why, n in reasons.items()]
    return stacks, alone, notes


# --- the stacked network and its optimizers -------------------------------------------------------------------


@dataclass
class _Stack:
    """Per-layer stacked weights (R, out, in) and biases (R, out) of R fcn runs, plus their per-run settings."""

    weights: list[Tensor]
    biases: list[Tensor]
    activation: str
    dropout: list[float]
    generators: list[torch.Generator]

    def params(self) -> list[Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def forward(self, x: Tensor, train: bool) -> Tensor:
        """Logits (R, B, C) for inputs (R, B, d); in training mode each run draws its own dropout masks."""
        act = _ACTIVATIONS[self.activation]
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < last:
                h = act(h)
                if train:
                    h = self._dropout(h)
        return h

    def _dropout(self, h: Tensor) -> Tensor:
        if not any(p > 0 for p in self.dropout):
            return h
        # the sequential run calls F.dropout on its (B, width) activations, which on the CPU draws
        # empty_like(h).bernoulli_(1 - p) from the global generator and scales by 1/(1 - p)
        masks = []
        for r, p in enumerate(self.dropout):
            if p > 0:
                noise = torch.empty_like(h[r]).bernoulli_(1 - p, generator=self.generators[r])
                masks.append(noise.div_(1 - p))
            else:
                masks.append(torch.ones_like(h[r]))
        return h * torch.stack(masks)

    def select(self, keep: Tensor) -> None:
        """Keep only the runs at positions ``keep`` (a stopped run leaves the stack)."""
        idx = keep.tolist()
        self.weights = [w.detach()[keep].requires_grad_() for w in self.weights]
        self.biases = [b.detach()[keep].requires_grad_() for b in self.biases]
        self.dropout = [self.dropout[i] for i in idx]
        self.generators = [self.generators[i] for i in idx]


def _per_run(values: Sequence[float], like: Tensor) -> Tensor:
    """A (R, 1, ..., 1) tensor broadcasting one value per run over a stacked parameter."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, *([1] * (like.dim() - 1)))


class _StackedOptimizer:
    """torch.optim.SGD (momentum, dampening 0, coupled weight decay) or torch.optim.Adam, one set of
    hyper-parameters and state per run, in the order of operations of torch's single-tensor implementations."""

    def __init__(self, name: str, params: list[Tensor], lr: list[float], wd: list[float], momentum: list[float]):
        self.name = "adam" if name == "adam" else "sgd"
        self.lr, self.wd, self.momentum = list(lr), list(wd), list(momentum)
        self.steps = 0
        self.state: list[list[Tensor]] = [[torch.zeros_like(p)] for p in params]
        if self.name == "adam":
            for s, p in zip(self.state, params):
                s.append(torch.zeros_like(p))
        self._broadcast(params)

    def _broadcast(self, params: list[Tensor]) -> None:
        """Per-run hyper-parameters shaped to broadcast over each stacked parameter (rebuilt when runs leave)."""
        self.hp = [tuple(_per_run(v, p) for v in (self.lr, self.wd, self.momentum)) for p in params]
        self.use_wd, self.use_momentum = any(self.wd), any(self.momentum)

    @torch.no_grad()
    def step(self, params: list[Tensor], grads: list[Tensor]) -> None:
        self.steps += 1
        b1, b2 = _ADAM_BETAS
        for p, g, s, (lr, wd, mom) in zip(params, grads, self.state, self.hp):
            if self.use_wd:
                g = g + wd * p
            if self.name == "sgd":
                if self.use_momentum:
                    s[0].mul_(mom).add_(g)  # first step: 0·0 + g = g, torch's clone(g)
                    g = s[0]
                p.sub_(lr * g)
            else:
                m, v = s
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v.sqrt() / math.sqrt(1 - b2**self.steps)).add_(_ADAM_EPS)
                p.sub_((lr / (1 - b1**self.steps)) * (m / denom))

    def select(self, keep: Tensor, params: list[Tensor]) -> None:
        idx = keep.tolist()
        self.state = [[t[keep] for t in s] for s in self.state]
        self.lr, self.wd, self.momentum = ([xs[i] for i in idx] for xs in (self.lr, self.wd, self.momentum))
        self._broadcast(params)

    def torch_state(self, r: int) -> list[dict[str, Tensor]]:
        """Run r's state per parameter, as torch.optim.SGD / Adam keep it (for one more step from the final iterate)."""
        out = []
        for s in self.state:
            if self.name == "adam":
                out.append({"step": torch.tensor(float(self.steps)), "exp_avg": s[0][r].clone(), "exp_avg_sq": s[1][r].clone()})
            else:
                out.append({"momentum_buffer": s[0][r].clone()} if self.momentum[r] else {})
        return out


# --- training ---------------------------------------------------------------------------------------------------


@dataclass
class StackedRun:
    """What stacked training hands to ``run_one`` for one run (see ``replay_train``)."""

    weights: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # final (weight, bias) per Linear layer
    optimizer_state: list[dict[str, Tensor]] = field(default_factory=list)
    sampler: object = None
    steps: int = 0
    epochs: float = 0.0
    stop_reason: str = ""
    converged_step: int | None = None
    curves: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    diverged: str | None = None  # the Diverged message, if the run's loss became non-finite


def train_stack(configs: Sequence[RunConfig], device: torch.device, progress: bool = False) -> list[StackedRun]:
    """Train runs that share a ``shape_key`` together; one ``StackedRun`` per config, in order."""
    from collect.data import load_dataset
    from collect.models import build_model, layers_in_order
    from collect.train import BatchSampler

    started = time.perf_counter()
    first = configs[0]
    datasets: dict[int, object] = {}
    for cfg in configs:
        if cfg.data_seed not in datasets:
            datasets[cfg.data_seed] = load_dataset(cfg.data, cfg.data_seed)
    ds = [datasets[c.data_seed] for c in configs]

    def stacked(attr: str, dtype: torch.dtype) -> Tensor:
        return torch.stack([torch.as_tensor(getattr(d, attr), dtype=dtype).reshape(len(getattr(d, attr)), -1) for d in ds]).to(device)

    x_train, x_test = stacked("x_train", torch.float32), stacked("x_test", torch.float32)
    y_train = torch.stack([torch.as_tensor(d.y_train, dtype=torch.long) for d in ds]).to(device)
    y_test = torch.stack([torch.as_tensor(d.y_test, dtype=torch.long) for d in ds]).to(device)
    models = [build_model(c.model, ds[i].input_shape, ds[i].num_classes, c.seed) for i, c in enumerate(configs)]
    layers = [layers_in_order(m) for m in models]
    net = _Stack(
        weights=[torch.stack([ls[k].weight.detach() for ls in layers]).to(device).requires_grad_() for k in range(len(layers[0]))],
        biases=[torch.stack([ls[k].bias.detach() for ls in layers]).to(device).requires_grad_() for k in range(len(layers[0]))],
        activation=first.model.activation,
        dropout=[c.model.dropout for c in configs],
        generators=[torch.Generator(device=device).manual_seed(c.seed) for c in configs],
    )
    opt = _StackedOptimizer(first.optim.optimizer, net.params(), [c.optim.lr for c in configs],
                            [c.optim.weight_decay for c in configs], [c.optim.momentum for c in configs])
    loss_fn = get_loss(first.loss)
    stop = first.stop
    n = y_train.shape[1]
    batch_size = n if first.optim.optimizer == "gd" else first.optim.batch_size
    samplers = [BatchSampler(x_train[r], y_train[r], batch_size, seed=c.seed) for r, c in enumerate(configs)]
    spe = samplers[0].steps_per_epoch
    budget = min(s for s in (stop.max_steps, stop.max_epochs * spe if stop.max_epochs else None) if s is not None)
    eval_every = stop.eval_every or spe

    out = [StackedRun() for _ in configs]
    active = list(range(len(configs)))  # run index of each stack position
    deadline = [budget] * len(configs)
    step = 0
    while active:
        batches = [samplers[r]() for r in active]
        xb, yb = torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        params = net.params()
        losses = _per_run_loss(loss_fn, net.forward(xb, train=True), yb)
        grads = torch.autograd.grad(losses.sum(), params)
        opt.step(params, grads)
        step += 1
        leaving: list[int] = []
        loss_values = losses.detach().cpu().tolist()
        due = [pos for pos, r in enumerate(active) if step % eval_every == 0 or step >= deadline[r]]
        rows = _eval_rows(net, due, (x_train, y_train, x_test, y_test), [active[p] for p in due], loss_fn, step, spe) if due else {}
        for pos, r in enumerate(active):
            if not math.isfinite(loss_values[pos]):
                out[r].diverged = f"training loss became {loss_values[pos]} at step {step} (lower optim.lr or check the data)"
                leaving.append(pos)
                continue
            if pos in rows:
                row = rows[pos]
                if not math.isfinite(row["train_loss"]):
                    out[r].diverged = f"full training loss became {row['train_loss']} at step {step} (lower optim.lr)"
                    leaving.append(pos)
                    continue
                out[r].curves.append(row)
                if out[r].converged_step is None and _threshold_met(row, stop):
                    out[r].converged_step = step
                    out[r].stop_reason = "train_acc" if stop.train_acc is not None and row["train_acc"] >= stop.train_acc else "train_loss"
                    deadline[r] = min(budget, step + stop.extra_epochs * spe) if stop.extra_epochs else step
            if step >= deadline[r]:
                if out[r].converged_step is None:
                    out[r].stop_reason = "max_steps" if stop.max_steps is not None and step >= stop.max_steps else "max_epochs"
                leaving.append(pos)
        if leaving:
            for pos in leaving:
                r = active[pos]
                out[r].weights = [(w[pos].detach().cpu().clone(), b[pos].detach().cpu().clone()) for w, b in zip(net.weights, net.biases)]
                out[r].optimizer_state = opt.torch_state(pos)
                out[r].sampler = samplers[r]
                out[r].steps, out[r].epochs = step, step / spe
            keep = torch.tensor([p for p in range(len(active)) if p not in leaving], dtype=torch.long, device=device)
            active = [active[p] for p in keep.tolist()]
            if active:
                net.select(keep)
                opt.select(keep, net.params())
        if progress and step % spe == 0:
            print(f"  stacked: step {step}, {len(active)} of {len(configs)} runs still training", file=sys.stderr)
    seconds = (time.perf_counter() - started) / len(configs)
    for o in out:
        o.seconds = seconds
    return out


def _per_run_loss(loss_fn: Callable[[Tensor, Tensor], Tensor], logits: Tensor, y: Tensor) -> Tensor:
    """(R,) mean loss of each run's batch; one fused call for cross-entropy, else one call per run."""
    r, b, c = logits.shape
    if loss_fn is get_loss("cross_entropy"):
        return F.cross_entropy(logits.reshape(r * b, c), y.reshape(-1), reduction="none").view(r, b).mean(1)
    return torch.stack([loss_fn(logits[i], y[i]) for i in range(r)])


@torch.no_grad()
def _eval_rows(net: _Stack, positions: list[int], data, runs: list[int], loss_fn, step: int, spe: int) -> dict[int, dict[str, float]]:
    """collect.train._eval_row for the runs at ``positions`` of the stack (eval mode: no dropout)."""
    x_train, y_train, x_test, y_test = data
    sub = _Stack([w[positions] for w in net.weights], [b[positions] for b in net.biases], net.activation, [0.0] * len(positions), [])
    rows = {p: {"step": step, "epoch": step / spe} for p in positions}
    for split, x, y in (("train", x_train[runs], y_train[runs]), ("test", x_test[runs], y_test[runs])):
        total = [0.0] * len(positions)
        correct = [0] * len(positions)
        for i in range(0, x.shape[1], _EVAL_BATCH):
            logits = sub.forward(x[:, i : i + _EVAL_BATCH], train=False)
            yy = y[:, i : i + _EVAL_BATCH]
            losses = _per_run_loss(loss_fn, logits, yy).tolist()
            hits = (logits.argmax(2) == yy).sum(1).tolist()
            for k in range(len(positions)):
                total[k] += float(losses[k]) * logits.shape[1]
                correct[k] += int(hits[k])
        for k, p in enumerate(positions):
            rows[p][f"{split}_loss"] = total[k] / x.shape[1]
            rows[p][f"{split}_acc"] = correct[k] / x.shape[1]
    return {p: {k: rows[p][k] for k in ("step", "epoch", "train_loss", "train_acc", "test_loss", "test_acc")} for p in positions}


def _threshold_met(row: Mapping[str, float], stop) -> bool:
    from collect.train import _threshold_met as met

    return met(row, stop)


# --- handing the result to run_one --------------------------------------------------------------------------------


def replay_train(result: StackedRun) -> Callable:
    """A ``train_fn`` for ``collect.runner.run_one``: loads the stacked result into the model run_one built (same
    seed, so the same initialisation) instead of training, and gives the same ``TrainResult``."""
    from collect.models import layers_in_order
    from collect.train import Diverged, TrainResult, _one_more_step

    def train_fn(config, model: nn.Module, data, loss_fn, build_step, on_eval=None, progress=True, transform_at=None):
        if result.diverged:
            raise Diverged(result.diverged)
        init_state = {k: v.detach().clone() for k, v in model.named_parameters()}
        device = next(model.parameters()).device
        with torch.no_grad():
            for layer, (w, b) in zip(layers_in_order(model), result.weights):
                layer.weight.copy_(w.to(device))
                layer.bias.copy_(b.to(device))
        step_fn = build_step(model)
        params = [p for p in model.parameters() if p.requires_grad]
        # layers_in_order yields (weight, bias) pairs in parameter order for an fcn, like the stack's state
        for p, st in zip(params, result.optimizer_state):
            if st:
                step_fn.optimizer.state[p] = {k: v.to(device) if k != "step" else v for k, v in st.items()}
        model.eval()
        return TrainResult(
            model=model, init_state=init_state, steps=result.steps, epochs=result.epochs, stop_reason=result.stop_reason,
            converged=result.converged_step is not None, converged_step=result.converged_step, curves=result.curves,
            seconds=result.seconds, next_iterate=_one_more_step(model, step_fn, result.sampler),
        )

    return train_fn


def spread(stacks: list[list[PlannedRun]], workers: int, min_size: int = 4) -> list[list[PlannedRun]]:
    """Split the largest stacks in halves until there are at least ``workers`` of them (none smaller than
    ``min_size`` // 2), so that ``workers`` processes can train stacks at the same time."""
    out = [list(s) for s in stacks]
    while len(out) < workers:
        largest = max(range(len(out)), key=lambda i: len(out[i]), default=None)
        if largest is None or len(out[largest]) < min_size:
            break
        big = out.pop(largest)
        out += [big[: len(big) // 2], big[len(big) // 2 :]]
    return out


def stacked_executor(inner: Callable, workers: int = 1, retries: int | None = None) -> Callable:
    """An executor (``collect.runner.Executor``) that trains stackable runs together, then measures and logs each
    with ``run_one``; the other runs go to ``inner`` (one at a time), with a message.

    With ``workers`` > 1 on the CPU, stacks are spread over the workers (``spread``) and handled in waves of
    ``workers`` stacks: each stack trains in a worker process (``collect.executors`` pools: fork server, a worker
    exits with the driver), the trained weights come back here, and the runs of the wave are measured and logged in
    the same ``workers`` processes with the pools' retry rules. With 1 worker, or on a GPU this process holds,
    everything runs in this process.
    """
    from collect.executors import DEFAULT_RETRIES, _InlinePool, _ProcessPool, drive

    tries = DEFAULT_RETRIES if retries is None else retries

    def execute(runs: Sequence[PlannedRun], target) -> Iterator:
        from dataclasses import replace

        from collect.runner import resolve_device

        stacks, alone, notes = plan_stacks(runs)
        for note in notes:
            print(note, file=sys.stderr)
        if alone:
            yield from inner(alone, target)
        device = resolve_device(target.device)
        if target.torch_threads:  # as run_one does: more torch threads than free cores stalls every kernel
            torch.set_num_threads(target.torch_threads)
        if workers <= 1 or device.type != "cpu":
            for members in stacks:
                done = _trained(members, lambda m=members: train_stack([p.config for p in m], device, progress=target.progress))
                yield from drive(members, target, _InlinePool(stacked=done), tries)
            return
        stacks = spread(stacks, workers)
        quiet = replace(target, progress=False)
        for start in range(0, len(stacks), workers):
            wave = stacks[start : start + workers]
            pool = _ProcessPool(workers)
            trained = [pool.call(train_stack_in_worker, [p.config for p in m], target.torch_threads) for m in wave]
            pool.stacked = {}
            for members, future in zip(wave, trained):
                pool.stacked.update(_trained(members, future.result))
            yield from drive([p for m in wave for p in m], quiet, pool, tries)

    return execute


def _trained(members: Sequence[PlannedRun], result: Callable[[], list[StackedRun]]) -> dict[str, StackedRun]:
    """Config hash -> stacked result; when training the stack raised (or its worker died), an empty mapping and a
    message: its runs are then trained one at a time by the pool (``run_one``), so a failed stack loses no run."""
    try:
        return {p.config_hash: r for p, r in zip(members, result())}
    except Exception as exc:  # noqa: BLE001 - any failure of the stack falls back to one-at-a-time training
        print(f"--stack: training a stack of {len(members)} runs failed ({type(exc).__name__}: {exc}); "
              "training them one at a time instead", file=sys.stderr)
        return {}


def train_stack_in_worker(configs: Sequence[RunConfig], threads: int | None) -> list[StackedRun]:
    """``train_stack`` on the CPU of a pool worker, with the torch threads a run gets there."""
    if threads:
        torch.set_num_threads(threads)
    return train_stack(configs, torch.device("cpu"))
