"""Direct sampling of P(f): the frequency of each function over random initialisations of a ReLU FCN.

Paper 002 (Zhang et al.), section 5.1: on the n = 7 Boolean system (all 128 inputs) the volume V(f) = P(f) of a
function is measured by sampling 10^8 parameter vectors from the initial distribution (σ_w = 1.0, σ_b = 0.1; here
weights N(0, σ_w²/fan_in), biases N(0, σ_b²), as in ``collect.models.nngp_init_``) and counting how often each
function f = sign(network output) appears. This needs no Gaussian-process approximation, so it checks EP.

A single output unit is sampled; a two-logit network's argmax is sign(z₁ − z₂), and z₁ − z₂ is the single-output
network with last-layer variances doubled, which has the same distribution of signs, so P(f) is the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

_BITS = 63  # bits per int64 key word (the sign bit is left unused)


@dataclass(frozen=True)
class FunctionCounts:
    """How often each function appeared among ``n_samples`` random networks, most frequent first."""

    keys: np.ndarray  # (K, words) int64: the outputs packed 63 bits per word
    counts: np.ndarray  # (K,) int64
    n_samples: int
    n_points: int

    def functions(self, top: int | None = None) -> np.ndarray:
        """The ``top`` most frequent functions as a (k, n_points) int8 array of ±1."""
        keys = self.keys[:top]
        bits = (keys[:, :, None] >> np.arange(_BITS)) & 1
        bits = bits.reshape(len(keys), -1)[:, : self.n_points]
        return (2 * bits - 1).astype(np.int8)

    def log_prob(self, f: np.ndarray | torch.Tensor) -> tuple[float, float]:
        """(log P̂(f), its standard error √((1 − p̂)/count)); (−inf, inf) for a function never seen."""
        key = pack_signs(torch.as_tensor(np.asarray(f).reshape(1, -1)) > 0).numpy()[0]
        match = np.flatnonzero((self.keys == key).all(axis=1))
        if match.size == 0:
            return -math.inf, math.inf
        count = int(self.counts[match[0]])
        p = count / self.n_samples
        return math.log(p), math.sqrt((1 - p) / count)


def pack_signs(positive: torch.Tensor) -> torch.Tensor:
    """(B, n) bool → (B, ⌈n/63⌉) int64 keys, one bit per input (bit j of word w is input 63 w + j)."""
    b, n = positive.shape
    words = math.ceil(n / _BITS)
    padded = torch.zeros(b, words * _BITS, dtype=torch.int64, device=positive.device)
    padded[:, :n] = positive.to(torch.int64)
    shifts = torch.arange(_BITS, device=positive.device, dtype=torch.int64)
    return (padded.view(b, words, _BITS) << shifts).sum(-1)


def sample_fcn_functions(
    x: torch.Tensor,
    n_samples: int,
    *,
    width: int = 40,
    depth: int = 2,
    sigma_w: float = 1.0,
    sigma_b: float = 0.1,
    seed: int = 0,
    batch_size: int | None = None,
) -> FunctionCounts:
    """Count the functions sign(FCN(x)) of ``n_samples`` random ReLU FCNs (``depth`` hidden layers of ``width``).

    Vectorised over a batch of networks (batched matmuls in float32 on x's device: only signs are kept, and an
    output within float32 rounding of zero has probability ~1e-7 per input, far below the sampling error).
    ``batch_size`` networks at a time; None keeps each hidden activation tensor near 2^24 floats (64 MiB).
    """
    if batch_size is None:
        batch_size = max(1, min(4096, 2**24 // (x.shape[0] * max(width, 1))))
    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"n_samples = {n_samples} and batch_size = {batch_size} must be >= 1")
    if width < 1 or depth < 0 or not sigma_w > 0 or sigma_b < 0:
        raise ValueError("need width >= 1, depth >= 0, sigma_w > 0, sigma_b >= 0")
    x = x.reshape(x.shape[0], -1).to(torch.float32)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    fan_ins = [x.shape[1]] + [width] * depth
    fan_outs = [width] * depth + [1]
    keys: list[torch.Tensor] = []
    counts: list[torch.Tensor] = []
    done = 0
    while done < n_samples:
        b = min(batch_size, n_samples - done)
        h = x.expand(b, *x.shape)
        for layer, (fan_in, fan_out) in enumerate(zip(fan_ins, fan_outs)):
            w = torch.randn(b, fan_in, fan_out, generator=gen, device=x.device) * (sigma_w / math.sqrt(fan_in))
            bias = torch.randn(b, 1, fan_out, generator=gen, device=x.device) * sigma_b
            h = torch.baddbmm(bias, h, w)
            if layer < depth:
                h = h.relu_()
        batch_keys, batch_counts = torch.unique(pack_signs(h[..., 0] > 0), dim=0, return_counts=True)
        keys.append(batch_keys)
        counts.append(batch_counts)
        done += b
        if len(keys) >= 32:
            merged = _merge(keys, counts)
            keys, counts = [merged[0]], [merged[1]]
    merged_keys, merged_counts = _merge(keys, counts)
    order = torch.argsort(merged_counts, descending=True, stable=True)
    return FunctionCounts(
        keys=merged_keys[order].cpu().numpy(),
        counts=merged_counts[order].cpu().numpy(),
        n_samples=n_samples,
        n_points=x.shape[0],
    )


def _merge(keys: list[torch.Tensor], counts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the counts of equal keys across batches."""
    all_keys = torch.cat(keys)
    unique, inverse = torch.unique(all_keys, dim=0, return_inverse=True)
    total = torch.zeros(len(unique), dtype=torch.int64, device=all_keys.device)
    total.scatter_add_(0, inverse, torch.cat(counts))
    return unique, total
