"""Weight-norm measures (Jiang et al. 2020 "Fantastic generalization measures"; Neyshabur et al. 2015).

Spectral norms of convolutional layers are those of the kernel reshaped to (out, in·k·k), the common surrogate
(Jiang et al. 2020); batch-norm parameters are not weight matrices and are left out of the spectral terms.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from collect.measures.context import MeasureContext, MeasureResult
from collect.measures.registry import measure

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Linear and convolutional layers in registration (forward) order."""
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]


def spectral_norms(model: nn.Module) -> list[float]:
    """Largest singular value of each weight layer (conv kernels reshaped to matrices)."""
    return [
        float(torch.linalg.matrix_norm(m.weight.detach().double().reshape(m.weight.shape[0], -1), ord=2))
        for m in weight_layers(model)
    ]


def path_norm(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """ℓ2 path norm: sqrt of the sum over input-output paths of the product of squared weights (and biases).

    Computed as sqrt(Σ f_{w²}(1)): a copy of the network with every parameter squared, fed an all-ones input.
    Defined for ReLU networks without batch norm; NaN otherwise.
    """
    if any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Tanh)) for m in model.modules()):
        return float("nan")
    squared = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in squared.parameters():
            p.copy_(p**2)
        device = next(squared.parameters()).device
        out = squared(torch.ones((1, *input_shape), dtype=torch.float64, device=device))
    return math.sqrt(float(out.sum()))


@measure(
    "norms",
    directions={
        "l2_norm": 1,
        "dist_from_init": 1,
        "spectral_product": 1,
        "log_spectral_product": 1,
        "spectral_sum": 1,
        "frobenius_sum": 1,
        "path_norm": 1,
    },
    paper="Jiang et al. 2020 (Fantastic generalization measures and where to find them)",
)
def norms(ctx: MeasureContext) -> MeasureResult:
    """L2 norm of all parameters, distance from initialisation, spectral product and sum, path norm."""
    params = dict(ctx.model.named_parameters())
    flat = torch.cat([p.detach().double().flatten() for p in params.values()])
    init = torch.cat([ctx.init_state[k].double().flatten().to(flat.device) for k in params])
    spectral = np.array(spectral_norms(ctx.model))
    frob = [float(m.weight.detach().double().norm()) for m in weight_layers(ctx.model)]
    return MeasureResult(
        values={
            "l2_norm": float(flat.norm()),
            "dist_from_init": float((flat - init).norm()),
            "spectral_product": float(np.prod(spectral)),
            "log_spectral_product": float(np.log(spectral).sum()),
            "spectral_sum": float(spectral.sum()),
            "frobenius_sum": float(np.sum(np.square(frob))),
            "path_norm": path_norm(ctx.model, tuple(ctx.x_train.shape[1:])),
        }
    )


MEASURES = [norms]
