"""Stacked training: the runs of one stack (``collect.stack_plan``) trained together in one process, as one
``collect.stack_model.StackedFCN`` — a training strategy beside ``collect.train.train``, with the same stop rule
(``collect.stop_rule``).

Each run keeps what one-at-a-time training gives it:

- its own initialisation (``collect.models.build_model`` with its seed, exactly as ``run_one`` builds it),
- its own data order (its own ``collect.train.BatchSampler`` seeded with its seed) and its own data set,
- its own dropout masks, drawn from a generator seeded with its seed in the order the sequential run draws them
  from the global one (on the CPU the masks are then identical; CUDA's fused dropout draws differently),
- its own optimizer state and hyper-parameters (``collect.stack_model.StackedOptimizer``),
- its own stopping point: ``collect.stop_rule.StopRule`` per run; a run that has stopped leaves the stack and never
  changes again (a run whose loss becomes non-finite fails alone).

A step is one batched forward/backward pass for all runs, with no host synchronisation: the minibatches are one
gather from the runs' index tensors, and non-finite losses are accumulated on the device and read at evaluations.
Afterwards each run is measured and logged by ``collect.runner.run_one`` as its own child run, with a ``train_fn``
(``replay_train``) that hands over the trained weights, curves and optimizer state instead of training.
``run_one`` trains a supported run one at a time as a stack of one (``train_alone``); a run's arithmetic does not
depend on the other runs of its stack, so it reaches the same weights either way (the tests: 1e-6 relative, same
stopping steps). Against ``collect.train.train`` (autograd and ``torch.optim``, the reference) results agree up to
floating-point rounding: a batched matrix product sums in a different order than ``nn.Linear``'s, so weights differ
in the last bits after the first step and the difference grows slowly with training (the tests bound it: same
stopping steps and accuracies, margins within 1e-4 relative).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from collect.config import RunConfig
from collect.data import load_dataset
from collect.losses import get_loss, output_dim
from collect.logits import predict
from collect.models import build_model, layers_in_order
from collect.stack_plan import unsupported
from collect.stack_model import StackedFCN, StackedOptimizer, per_run_loss
from collect.stop_rule import Diverged, StopRule, full_loss_divergence, minibatch_divergence
from collect.train import BatchSampler, TensorData, TrainResult

EVAL_BATCH = 4096  # collect.train.evaluate's batch size


@dataclass
class StackedRun:
    """What stacked training hands to ``run_one`` for one run (see ``replay_train``)."""

    weights: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # final (weight, bias) per Linear layer
    norm_states: list[dict[str, Tensor]] = field(default_factory=list)  # final BatchNorm1d state per hidden layer
    optimizer_state: list[dict[str, Tensor]] = field(default_factory=list)
    sampler: object = None
    steps: int = 0
    epochs: float = 0.0
    stop_reason: str = ""
    target_step: int | None = None
    curves: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    diverged: str | None = None  # the Diverged message, if the run's loss became non-finite


@dataclass
class _Data:
    """The stack's data: (N, d) inputs shared by every run when all runs use one data seed, else (R, N, d)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    shared: bool

    def rows(self, runs: Sequence[int], split: str) -> tuple[Tensor, Tensor]:
        """(x, y) of ``split`` for the runs ``runs`` (x shared (N, d) when the data is)."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        if self.shared:
            return x, y.expand(len(runs), -1)
        if list(runs) == list(range(x.shape[0])):
            return x, y
        index = torch.tensor(list(runs), device=x.device)
        return x[index], y[index]


def _stack_data(configs: Sequence[RunConfig], device: torch.device) -> tuple[_Data, list]:
    datasets: dict[int, object] = {}
    for cfg in configs:
        if cfg.data_seed not in datasets:
            datasets[cfg.data_seed] = load_dataset(cfg.data, cfg.data_seed)
    ds = [datasets[c.data_seed] for c in configs]

    def tensor(d, attr: str, dtype: torch.dtype) -> Tensor:
        a = torch.as_tensor(getattr(d, attr), dtype=dtype)
        return a.reshape(len(a), -1) if dtype == torch.float32 else a

    if len(datasets) == 1:
        d = ds[0]
        arrays = [tensor(d, a, t).to(device) for a, t in (("x_train", torch.float32), ("y_train", torch.long),
                                                          ("x_test", torch.float32), ("y_test", torch.long))]
        return _Data(*arrays, shared=True), ds
    arrays = [torch.stack([tensor(d, a, t) for d in ds]).to(device) for a, t in (("x_train", torch.float32), ("y_train", torch.long),
                                                                                ("x_test", torch.float32), ("y_test", torch.long))]
    return _Data(*arrays, shared=False), ds


def train_stack(configs: Sequence[RunConfig], device: torch.device, progress: bool = False) -> list[StackedRun]:
    """Train runs that share a ``collect.stack_plan.shape_key`` together; one ``StackedRun`` per config, in order."""
    started = time.perf_counter()
    data, ds = _stack_data(configs, device)
    models = [build_model(c.model, ds[i].input_shape, output_dim(c.loss, ds[i].num_classes), c.seed)
              for i, c in enumerate(configs)]
    return _train(configs, data, models, device, started, progress)


def _train(configs: Sequence[RunConfig], data: _Data, models: Sequence[nn.Module], device: torch.device,
           started: float, progress: bool) -> list[StackedRun]:
    """The stacked training loop of ``train_stack`` on the stack's data and the runs' initial models."""
    first = configs[0]
    net = StackedFCN.from_models(
        models, first.model.activation, [c.model.dropout for c in configs],
        [torch.Generator(device=device).manual_seed(c.seed) for c in configs], device,
    )
    opt = StackedOptimizer(first.optim.optimizer, net.params(), [c.optim.lr for c in configs],
                           [c.optim.weight_decay for c in configs], [c.optim.momentum for c in configs])
    loss_fn = get_loss(first.loss)
    fused = first.loss == "cross_entropy"
    explicit = fused and net.explicit_gradients  # gradients by the written-out chain rule, into reused buffers
    grads: list[Tensor] = []
    n = data.y_train.shape[-1]
    batch_size = n if first.optim.optimizer == "gd" else first.optim.batch_size
    # the samplers draw indices only (the batch is one gather below); replay_train binds each to its run's data
    index_only = torch.empty(n, 0, device=device)
    samplers = [BatchSampler(index_only, index_only, batch_size, seed=c.seed) for c in configs]
    spe = samplers[0].steps_per_epoch
    rules = [StopRule(c.stop, spe) for c in configs]

    out = [StackedRun() for _ in configs]
    active = list(range(len(configs)))  # run index of each stack position
    rows_of_active = torch.tensor(active, device=device)[:, None]
    # Σ minibatch losses per stack position in float64, read at evaluations: non-finite exactly when one loss was
    loss_sums = torch.zeros(len(configs), dtype=torch.float64, device=device)
    step = 0
    while active:
        idx = torch.stack([samplers[r].next_indices() for r in active])
        if data.shared:
            xb, yb = data.x_train[idx], data.y_train[idx]
        else:
            xb, yb = data.x_train[rows_of_active, idx], data.y_train[rows_of_active, idx]
        params = net.params()
        if explicit and opt.name == "sgd" and net.fused_sgd:
            losses = net.cross_entropy_sgd_step(xb, yb, opt)
        elif explicit:
            if len(grads) != len(params) or grads[0].shape != params[0].shape:
                grads = [torch.empty_like(p, requires_grad=False) for p in params]
            losses = net.cross_entropy_grads(xb, yb, grads)
            opt.step(params, grads)
        else:
            losses = per_run_loss(loss_fn, net.forward(xb, train=True), yb, fused)
            opt.step(params, list(torch.autograd.grad(losses.sum(), params)))
        step += 1
        loss_sums.add_(losses.detach())
        if progress and step % spe == 0:
            print(f"  stacked: step {step}, {len(active)} of {len(configs)} runs training", file=sys.stderr)
        due = [pos for pos, r in enumerate(active) if rules[r].eval_due(step)]
        if not due:
            continue
        bad = [not math.isfinite(v) for v in loss_sums.tolist()]
        leaving: list[int] = []
        finite = [pos for pos in due if not bad[pos]]
        rows = _eval_rows(net, finite, active, data, loss_fn, fused, step, spe) if finite else {}
        for pos in due:
            r = active[pos]
            failure = minibatch_divergence(step) if bad[pos] else full_loss_divergence(rows[pos]["train_loss"], step)
            if failure:
                out[r].diverged = failure
                leaving.append(pos)
                continue
            out[r].curves.append(rows[pos])
            rules[r].record(step, rows[pos])
            if rules[r].done(step):
                leaving.append(pos)
        if leaving:
            for pos in leaving:
                r = active[pos]
                out[r].weights = net.linear(pos)
                out[r].optimizer_state = opt.torch_state(pos, net.transposed())
                out[r].norm_states = net.norm_states(pos)
                out[r].sampler = samplers[r]
                out[r].steps, out[r].epochs = step, step / spe
                out[r].stop_reason, out[r].target_step = rules[r].stop_reason, rules[r].target_step
            keep = torch.tensor([p for p in range(len(active)) if p not in leaving], dtype=torch.long, device=device)
            active = [active[p] for p in keep.tolist()]
            if active:
                net.select(keep)
                opt.select(keep, net.params())
                loss_sums = loss_sums[keep]
                rows_of_active = torch.tensor(active, device=device)[:, None]
    seconds = (time.perf_counter() - started) / len(configs)
    for o in out:
        o.seconds = seconds
    return out


@torch.no_grad()
def _eval_rows(net: StackedFCN, positions: list[int], active: list[int], data: _Data, loss_fn, fused: bool,
               step: int, spe: int) -> dict[int, dict[str, float]]:
    """``collect.train.eval_row`` for the runs at ``positions`` of the stack (eval mode: no dropout); the whole
    stack is evaluated in place when every run is due, else a copy of the runs due."""
    if len(positions) == len(active):
        sub = net
    else:
        keep = torch.tensor(positions, device=net.weights[0].device)
        sub = StackedFCN([w[keep] for w in net.weights], [b[keep] for b in net.biases], net.activation, [0.0] * len(positions), [],
                         [n.select(keep) if n is not None else None for n in net.norms])
    runs = [active[p] for p in positions]
    rows = {p: {"step": step, "epoch": step / spe} for p in positions}
    for split in ("train", "test"):
        x, y = data.rows(runs, split)
        n = y.shape[1]
        losses, hits = [], []
        for i in range(0, n, EVAL_BATCH):
            logits = sub.forward(x[..., i : i + EVAL_BATCH, :], train=False)
            yy = y[:, i : i + EVAL_BATCH]
            losses.append(per_run_loss(loss_fn, logits, yy, fused) * logits.shape[1])
            hits.append((predict(logits) == yy).sum(1))
        total, correct = torch.stack(losses).tolist(), torch.stack(hits).tolist()
        for k, p in enumerate(positions):
            rows[p][f"{split}_loss"] = sum(float(chunk[k]) for chunk in total) / n
            rows[p][f"{split}_acc"] = sum(int(chunk[k]) for chunk in correct) / n
    return rows


def replay_train(result: StackedRun) -> Callable:
    """A ``train_fn`` for ``collect.runner.run_one``: loads the stacked result into the model run_one built (same
    seed, so the same initialisation) instead of training, and gives the same ``TrainResult``."""

    def train_fn(config, model: nn.Module, data, loss_fn, build_step, on_eval=None, progress=True, transform_at=None):
        if result.diverged:
            raise Diverged(result.diverged)
        init_state = {k: v.detach().clone() for k, v in model.named_parameters()}
        device = next(model.parameters()).device
        with torch.no_grad():
            for layer, (w, b) in zip(layers_in_order(model), result.weights):
                layer.weight.copy_(w.to(device))
                layer.bias.copy_(b.to(device))
            norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
            for norm, state in zip(norms, result.norm_states):
                norm.load_state_dict({k: v.to(device) for k, v in state.items()})
        sampler = result.sampler.bound_to(data.x_train, data.y_train)  # the run's own data, on run_one's device
        model.eval()
        return TrainResult(
            model=model, init_state=init_state, steps=result.steps, epochs=result.epochs, stop_reason=result.stop_reason,
            converged=result.target_step is not None, target_step=result.target_step, curves=result.curves,
            seconds=result.seconds, next_iterate=_next_iterate(model, result.optimizer_state, build_step, sampler),
        )

    return train_fn


def _next_iterate(model: nn.Module, optimizer_state: list[dict[str, Tensor]], build_step: Callable,
                  sampler: BatchSampler) -> Callable[[], dict[str, Tensor]]:
    """``collect.train.one_more_step`` for a run trained elsewhere: the parameters after one more optimizer step from
    the final iterate, with the stack's optimizer state (in the model's parameter order, ``StackedFCN.params``),
    on copies. The step is built only when called: a torch optimizer's first construction in a process imports
    ``torch._dynamo`` (about 2 s), which a sweep whose measures never take this step does not pay."""
    frozen = copy.deepcopy((model, sampler))

    def next_iterate() -> dict[str, Tensor]:
        m, b = copy.deepcopy(frozen)
        device = next(m.parameters()).device
        step_fn = build_step(m)
        for p, st in zip([p for p in m.parameters() if p.requires_grad], optimizer_state):
            if st:
                step_fn.optimizer.state[p] = {k: v.to(device, copy=True) if k != "step" else v.clone()
                                              for k, v in st.items()}  # copies: the step updates its state in place
        m.train()
        step_fn(b)
        return {k: v.detach() for k, v in m.named_parameters()}

    return next_iterate


def trains_alone(cfg: RunConfig) -> bool:
    """Whether ``run_one`` trains ``cfg`` by ``train_alone``: a run stacked training supports
    (``collect.stack_plan.unsupported`` is None: fcn or fcn_bn, ReLU or tanh, SGD / GD / Adam) on cross-entropy,
    whose gradients it writes out (``StackedFCN.cross_entropy_grads``). Other losses keep ``collect.train.train``."""
    return unsupported(cfg) is None and cfg.loss == "cross_entropy"


def train_alone(config: RunConfig, model: nn.Module, data: TensorData, loss_fn, build_step, on_eval=None,
                progress: bool = True, transform_at=None) -> TrainResult:
    """A ``train_fn`` for ``collect.runner.run_one`` (``collect.train.train``'s signature) for one run that
    ``trains_alone``: the run trained as a stack of one (``_train``), then handed over as ``replay_train``
    hands over a stacked run. A run's arithmetic in a stack does not depend on the other runs, so it trains to the
    same result one at a time as in any stack (tests/collect/test_stacked.py: equal to 1e-6 relative, same stopping
    steps). Without batch norm its step costs less than ``train``'s (the gradients are written out, and with
    SGD ``cross_entropy_sgd_step`` needs no optimizer pass either); with batch norm about as much (0.88-0.98x
    ``train``'s speed on the quick model, one thread: torch's fused batch-norm kernels against written-out ones).
    Same initialisation, data order, dropout masks (on the CPU), stop rule and curves as ``train``, weights equal to
    rounding. Such a run has no curve measures and no mid-training transform, so ``on_eval`` has nothing to add and
    ``transform_at`` is None."""
    if not trains_alone(config):
        raise ValueError("train_alone trains what stacked training supports, on cross-entropy "
                         f"({unsupported(config) or f'loss = {config.loss!r}'}); train this run with collect.train.train")
    started = time.perf_counter()
    device = data.x_train.device
    n_train, n_test = data.x_train.shape[0], data.x_test.shape[0]
    stack_data = _Data(data.x_train.reshape(n_train, -1), data.y_train, data.x_test.reshape(n_test, -1), data.y_test,
                       shared=True)
    (result,) = _train([config], stack_data, [model], device, started, progress=False)
    return replay_train(result)(config, model, data, loss_fn, build_step)


def train_stack_in_worker(configs: Sequence[RunConfig], threads: int | None) -> list[StackedRun]:
    """``train_stack`` on the CPU of a pool worker, with the torch threads a run gets there."""
    if threads:
        torch.set_num_threads(threads)
    return train_stack(configs, torch.device("cpu"))
