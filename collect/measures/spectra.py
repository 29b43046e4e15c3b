"""Heavy-tailed self-regularisation metrics (Martin & Mahoney 2019, 2021, "Predicting trends in the quality of
state-of-the-art neural networks without access to training or testing data"; the WeightWatcher tool): data-free
measures of the eigenvalue spectrum (ESD) of each layer's correlation matrix X = WᵀW.

Per weight layer (Linear/Conv, forward order; a conv kernel reshaped to (out, in·k·k) as in ``collect.measures.norms``
— WeightWatcher instead splits a conv layer into its k·k slices), with λ_1 ≥ … ≥ λ_M the eigenvalues of WᵀW
(= the squared singular values of W, M = min(out, in·k·k), no normalisation):

* α: the exponent of a power law p(λ) ∝ λ^{−α}, λ ≥ λ_min, fitted to the tail of the ESD by maximum likelihood with
  λ_min chosen by the Kolmogorov–Smirnov rule of Clauset, Shalizi & Newman 2009: for each candidate λ_min among the
  eigenvalues (tails of at least ``min_tail`` points), α̂ = 1 + n / Σ_{λ_i ≥ λ_min} ln(λ_i / λ_min) and
  D = max_x |F̂_n(x) − (1 − (x/λ_min)^{1−α̂})| over the tail's empirical CDF; the λ_min with the smallest D wins.
* α-weighted: α̂ · log₁₀ λ_max;   log spectral norm: log₁₀ λ_max (= 2 log₁₀ ‖W‖₂);   stable rank: Σ_i λ_i / λ_max
  (= ‖W‖_F² / ‖W‖₂²).

The measures are the means over the layers with at least ``min_evals`` eigenvalues (smaller layers, such as a 10-class
output layer, give no usable tail); the per-layer values are a per-sample artifact (one row per layer). Expected
direction +1 for all four: Martin & Mahoney find smaller α (heavier tails), smaller α-weighted and smaller spectral
norms in better-generalizing models, and a lower stable rank is a smaller capacity in compression bounds (Arora et
al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from collect.config import SpecError
from collect.measures.context import MeasureContext, MeasureResult, MeasureSkipped
from collect.measures.norms import weight_layers
from collect.measures.registry import measure

PAPER = "Martin & Mahoney 2021 (Nature Communications), heavy-tailed self-regularisation; WeightWatcher"


@dataclass(frozen=True)
class PowerLawFit:
    alpha: float
    xmin: float
    ks_distance: float
    n_tail: int


def fit_power_law(evals: np.ndarray, min_tail: int = 5) -> PowerLawFit:
    """Continuous power-law fit of the tail of ``evals`` (Clauset et al. 2009: MLE α for each candidate λ_min,
    the candidate with the smallest KS distance). Needs at least ``min_tail`` positive values."""
    x = np.sort(np.asarray(evals, dtype=np.float64))
    x = x[x > 0]
    n = x.size
    if n < min_tail or min_tail < 2:
        raise ValueError(f"fit_power_law: {n} positive eigenvalues; need at least min_tail = {min_tail} (>= 2)")
    best = PowerLawFit(float("nan"), float("nan"), float("inf"), 0)
    logs = np.log(x)
    suffix = np.cumsum(logs[::-1])[::-1]  # Σ_{j ≥ i} ln x_j
    for i in range(0, n - min_tail + 1):
        if i > 0 and x[i] == x[i - 1]:
            continue
        tail = n - i
        s = suffix[i] - tail * logs[i]
        if s <= 0:
            continue
        alpha = 1 + tail / s
        t = x[i:]
        model_cdf = 1 - (t / x[i]) ** (1 - alpha)
        upper = np.arange(1, tail + 1) / tail
        lower = np.arange(0, tail) / tail
        d = float(max(np.max(np.abs(upper - model_cdf)), np.max(np.abs(model_cdf - lower))))
        if d < best.ks_distance:
            best = PowerLawFit(float(alpha), float(x[i]), d, tail)
    return best


def layer_spectra(model: torch.nn.Module) -> list[np.ndarray]:
    """Eigenvalues of WᵀW (squared singular values of W, conv kernels reshaped) per weight layer, descending."""
    out = []
    for m in weight_layers(model):
        w = m.weight.detach().double().reshape(m.weight.shape[0], -1)
        out.append(torch.linalg.svdvals(w).pow(2).cpu().numpy())
    return out


KEYS = ("ht_alpha", "ht_alpha_weighted", "ht_log_spectral_norm", "ht_stable_rank")


@measure(
    "heavy_tail",
    directions={k: 1 for k in KEYS},
    diagnostics=("ht_n_layers", "ht_ks_distance"),
    paper=PAPER,
)
def heavy_tail(ctx: MeasureContext, *, min_evals: int = 10, min_tail: int = 5) -> MeasureResult:
    """Layer means of the power-law exponent α of the ESD of WᵀW, α·log₁₀ λ_max, log₁₀ λ_max and the stable rank
    Σλ/λ_max, over layers with ≥ ``min_evals`` eigenvalues (module docstring). Diagnostics: layers fitted, mean KS
    distance of the fits."""
    if min_tail < 2 or min_evals < min_tail:
        raise SpecError(f"measures.heavy_tail.min_evals = {min_evals}, min_tail = {min_tail}: need min_evals >= min_tail >= 2")
    rows = []
    for i, ev in enumerate(layer_spectra(ctx.model)):
        if ev.size < min_evals:
            continue
        fit = fit_power_law(ev, min_tail=min_tail)
        lmax = float(ev.max())
        rows.append((i, ev.size, fit.alpha, fit.xmin, fit.ks_distance, fit.n_tail, lmax, float(ev.sum() / lmax)))
    if not rows:
        raise MeasureSkipped(f"no weight layer has >= {min_evals} eigenvalues (min_evals) to fit a power law to")
    table = np.array(rows, dtype=np.float64)
    alpha, lmax, srank = table[:, 2], table[:, 6], table[:, 7]
    values = {
        "ht_alpha": float(alpha.mean()),
        "ht_alpha_weighted": float((alpha * np.log10(lmax)).mean()),
        "ht_log_spectral_norm": float(np.log10(lmax).mean()),
        "ht_stable_rank": float(srank.mean()),
        "ht_n_layers": float(len(rows)),
        "ht_ks_distance": float(table[:, 4].mean()),
    }
    per_layer = {
        "layer": table[:, 0].astype(int), "n_evals": table[:, 1].astype(int), "alpha": alpha, "xmin": table[:, 3],
        "ks_distance": table[:, 4], "n_tail": table[:, 5].astype(int), "lambda_max": lmax, "stable_rank": srank,
    }
    return MeasureResult(values=values, per_sample=per_layer)


MEASURES = [heavy_tail]
