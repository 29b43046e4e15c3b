"""How much memory a run needs, estimated from its config before anything is built (``--dry-run`` warns with it).

Float32 throughout (4 bytes a number). For P parameters, A activations per example (outputs of every layer of
one forward pass) and n_graph examples whose forward graph is held at once:

    bytes ≈ 4 · [ P · (4 + s) + 2 · A · n_graph ]

- 4 copies of the parameters: the weights, their gradients, the initial weights kept for distance measures, and
  one working copy a measure perturbs (sharpness, PAC-Bayes) or differentiates twice (Hessian-vector products);
- s optimizer states per parameter (``OPTIMIZER_STATES``: momentum 1, Adam 2, ...);
- the activations of n_graph = min(n_train + attack_size, max(batch_size, ``MEASURE_CHUNK``)) examples, twice
  (the forward graph and its backward, as in a Hessian-vector product on a measure chunk).

It is an order-of-magnitude check (a run that cannot fit in this machine's memory), not an allocator trace.
FCNs are counted from their formula (their size can be astronomically large, e.g. width 1e8, which no one should
build even on the meta device); convolutional models are built on torch's ``meta`` device, which allocates nothing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from collect.config import DataConfig, ModelConfig, RunConfig

BYTES_PER_NUMBER = 4
PARAMETER_COPIES = 4
MEASURE_CHUNK = 2048  # examples per chunk of the curvature measures' loss (their default chunk_size)
# Input shapes of the built-in datasets (tests/collect/test_footprint.py checks them against the loaded pools).
BUILTIN_SHAPES: dict[str, tuple[int, ...]] = {"mnist": (1, 28, 28), "digits": (1, 8, 8), "mnist1d": (40,), "boolean": (7,)}
CIFAR_SHAPE = (3, 32, 32)


def optimizer_states(cfg: RunConfig) -> int:
    """Numbers an optimizer keeps per parameter: momentum buffers, Adam's two moments, SAM's perturbation."""
    o = cfg.optim
    base = {"adam": 2, "adamw": 2, "adagrad": 1, "rmsprop": 1 + (o.momentum > 0), "entropy_sgd": 2}.get(o.optimizer, int(o.momentum > 0))
    if o.optimizer == "sam":
        base = {"adam": 2, "adamw": 2, "adagrad": 1, "rmsprop": 1}.get(o.sam_base, int(o.momentum > 0)) + 1
    return base + int(o.swa)


def input_shape(data: DataConfig) -> tuple[int, ...] | None:
    """The shape of one input of ``data.dataset`` (an ``idx:`` folder's image file header is read), else None."""
    if data.dataset in BUILTIN_SHAPES:
        return BUILTIN_SHAPES[data.dataset]
    if data.dataset.startswith("cifar10:"):
        return CIFAR_SHAPE
    if data.dataset.startswith("idx:"):
        return _idx_shape(Path(data.dataset[len("idx:"):].strip()))
    return None


def _idx_shape(folder: Path) -> tuple[int, ...] | None:
    import gzip
    import struct

    from collect.datasets.idx import find_idx_file

    try:
        path = find_idx_file(folder, "train", "images")
        opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
        with opener(path, "rb") as handle:
            magic = handle.read(4)
            dims = struct.unpack(f">{magic[3]}I", handle.read(4 * magic[3]))
        return tuple(dims[1:])
    except (OSError, ValueError, IndexError, struct.error):
        return None


def model_size(model: ModelConfig, shape: tuple[int, ...], num_classes: int) -> tuple[int, int]:
    """(parameters, activations per example) of the architecture: the FCN formula, or a ``meta``-device build.

    FCN with input size d, k hidden layers of width w, c classes (batch norm: 2w more parameters a layer):
    P = Σ_i (d_i d_{i+1} + d_{i+1}) over d = (d, w, ..., w, c); A = d + k·w·(2 + bn + dropout) + c
    (the flattened input, each layer's linear output, batch-norm output, activation and dropout output, the logits),
    which is the sum of the outputs of every leaf module, the count ``_meta_size`` takes for other architectures.
    """
    if model.arch in ("affine", "fcn", "fcn_bn"):
        depth = {"affine": 0, "fcn_bn": 3}.get(model.arch, model.depth)
        bn = model.arch == "fcn_bn" or (model.arch == "fcn" and model.batch_norm)
        dims = [math.prod(shape)] + [model.width] * depth + [num_classes]
        params = sum(a * b + b for a, b in zip(dims, dims[1:])) + (2 * model.width * depth if bn else 0)
        per_layer = 2 + int(bn) + int(model.dropout > 0)
        return params, dims[0] + depth * model.width * per_layer + num_classes
    return _meta_size(model, shape, num_classes)


def _meta_size(model: ModelConfig, shape: tuple[int, ...], num_classes: int) -> tuple[int, int]:
    import torch

    from collect.models import build_model

    with torch.device("meta"):
        net = build_model(model, shape, num_classes, seed=0)
        outputs: list[int] = []
        leaves = [m for m in net.modules() if not list(m.children())]
        hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out[0].numel())) for m in leaves]
        net.eval()
        net(torch.empty((1, *shape)))
        for hook in hooks:
            hook.remove()
    return sum(p.numel() for p in net.parameters()), sum(outputs)


def run_memory(cfg: RunConfig, shape: tuple[int, ...], num_classes: int) -> tuple[int, int]:
    """(estimated bytes, parameters) of one run (formula in the module docstring)."""
    params, activations = model_size(cfg.model, shape, num_classes)
    n_fit = cfg.data.n_train + cfg.data.attack_size
    batch = n_fit if cfg.optim.optimizer == "gd" else cfg.optim.batch_size
    n_graph = min(n_fit, max(batch, MEASURE_CHUNK))
    numbers = params * (PARAMETER_COPIES + optimizer_states(cfg)) + 2 * activations * n_graph
    return BYTES_PER_NUMBER * numbers, params


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes (``sysconf``), None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"
