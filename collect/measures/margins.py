"""Margin measures (paper 000 section 4; Jiang et al. 2020; Bartlett et al. 2017).

Output margin of a sample: γ = f_y − max_{j≠y} f_j, signed (negative when misclassified); the softmax margin is the
same on S(f). Their distributions are summarised by mean, std, skewness, kurtosis, min and quantiles.

Single-logit (sigmoid) head, one logit z and labels y ∈ {0, 1} (``loss = "binary_cross_entropy"``): the output margin
is γ = (2y − 1)·z and the softmax margin is the same on S(z) = (1 − σ(z), σ(z)), i.e. 2σ((2y − 1)z) − 1 — the values
of the two logits (0, z), which classify and train exactly as z does (``collect.logits``).
"""

from __future__ import annotations

import numpy as np
import torch

from collect.logits import output_margins, predict, probability_margins
from collect.measures.context import MeasureContext, MeasureResult, batched_logits
from collect.measures.norms import spectral_norms
from collect.measures.registry import measure

QUANTILES = (5, 10, 25, 50, 75)


def summarize(values: np.ndarray, prefix: str) -> dict[str, float]:
    """Distribution summary of ``values``: mean, std, skewness, excess kurtosis, min, quantiles 5/10/25/50/75."""
    import scipy.stats  # imported on use: the driver loads this module only to check a spec

    v = np.asarray(values, dtype=np.float64)
    out = {
        f"{prefix}_mean": float(v.mean()),
        f"{prefix}_std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
        f"{prefix}_skew": float(scipy.stats.skew(v)) if v.size > 2 else float("nan"),
        f"{prefix}_kurtosis": float(scipy.stats.kurtosis(v)) if v.size > 3 else float("nan"),
        f"{prefix}_min": float(v.min()),
    }
    for q, value in zip(QUANTILES, np.percentile(v, QUANTILES)):
        out[f"{prefix}_q{q}"] = float(value)
    return out


def _split(ctx: MeasureContext, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if split == "train":
        return ctx.x_train, ctx.y_train
    if split == "test":
        return ctx.x_test, ctx.y_test
    raise ValueError(f"margins: split = {split!r}; use 'train' or 'test'")


def _directions(prefix: str) -> dict[str, int]:
    larger_is_better = {"mean", "min", *(f"q{q}" for q in QUANTILES)}
    return {f"{prefix}_{k}": -1 for k in larger_is_better} | {f"{prefix}_{k}": 0 for k in ("std", "skew", "kurtosis")}


@measure(
    "margins",
    directions=_directions("margin") | _directions("softmax_margin"),
    paper="On Flat Minima, Large Margins and Generalizability (paper 000), section 4",
)
def margins(ctx: MeasureContext, *, split: str = "train") -> MeasureResult:
    """Output- and softmax-margin distributions on the training (or test) set, with per-sample margins."""
    x, y = _split(ctx, split)
    logits = batched_logits(ctx.model, x).double()
    gamma = output_margins(logits, y).cpu().numpy()
    soft = probability_margins(logits, y).cpu().numpy()
    per_sample = {
        "index": np.arange(len(y)),
        "label": y.cpu().numpy(),
        "prediction": predict(logits).cpu().numpy(),
        "output_margin": gamma,
        "softmax_margin": soft,
        "correct": gamma > 0,
    }
    if split == "train":
        per_sample["is_attack"] = ctx.is_attack.cpu().numpy()
    return MeasureResult(values=summarize(gamma, "margin") | summarize(soft, "softmax_margin"), per_sample=per_sample)


@measure(
    "normalized_margin",
    directions={"spectral_margin_q10": -1, "spectral_margin_median": -1},
    paper="Bartlett, Foster, Telgarsky 2017; Jiang et al. 2020 (margin over the product of spectral norms)",
)
def normalized_margin(ctx: MeasureContext, *, split: str = "train") -> MeasureResult:
    """10th-percentile and median output margin divided by the product of the layers' spectral norms."""
    x, y = _split(ctx, split)
    gamma = output_margins(batched_logits(ctx.model, x).double(), y).cpu().numpy()
    product = float(np.prod(spectral_norms(ctx.model)))
    return MeasureResult(
        values={
            "spectral_margin_q10": float(np.percentile(gamma, 10)) / product,
            "spectral_margin_median": float(np.median(gamma)) / product,
        }
    )


MEASURES = [margins, normalized_margin]
