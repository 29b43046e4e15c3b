"""Log volume log P(f) of the trained network's function under the NNGP prior (paper 002, Zhang et al.).

The function is f ∈ {±1}^{|S|+|E|}, the predicted labels on the training inputs S and the test inputs E
(definition 2.2; attack points are left out unless ``include_attack``; repeated inputs are counted once, so
``log_volume_per_point`` divides by the number of distinct inputs). Its prior probability P(f) — the volume
of parameter space that maps to f — is the Gaussian mass of the orthant of f under the NNGP kernel of the
architecture (appendix A), approximated by expectation propagation. For a function with zero error on S the
nonuniform PAC-Bayes bound of eq. (4) says ε_E(f) ≤ (ln 1/P(f) + ln 1/δ) / |S| with probability ≥ 1 − δ.
"""

from __future__ import annotations

import math
import time

import torch

from collect.logits import predict
from collect.config import ModelConfig, SpecError
from collect.measures.context import MeasureContext, MeasureResult, MeasureSkipped, batched_logits
from collect.measures.registry import measure
from collect.nngp.ep import ep_log_prob
from collect.nngp.kernels import default_mc_samples, empirical_kernel, random_init_features, relu_nngp_kernel
from collect.nngp.sampling import sample_fcn_functions

KERNELS = ("auto", "arccos", "empirical")
# Diagnostics of the estimate (ledger ``diag.*``): EP sweeps run and whether they met ``tol`` (1.0/0.0), distinct
# points f is defined on, and the standard error of ``log_volume_sampled`` (direct sampling only).
DIAGNOSTICS = ("log_volume_ep_iterations", "log_volume_ep_converged", "log_volume_n_points", "log_volume_sampled_se")
PAPER_SIGMA_W, PAPER_SIGMA_B = 1.0, 0.1  # paper 002 section 5.1


def prior_sigmas(model_cfg: ModelConfig, sigma_w: float | None, sigma_b: float | None) -> tuple[float, float]:
    """σ_w, σ_b of the prior: the options if given, else the model's NNGP initialisation (``model.init_sigma_w/b``,
    σ_b = 0 when only σ_w is set, as ``collect.models`` does), else paper 002's σ_w = 1.0, σ_b = 0.1."""
    if model_cfg.init_sigma_w is not None:
        default_w, default_b = model_cfg.init_sigma_w, model_cfg.init_sigma_b or 0.0
    else:
        default_w, default_b = PAPER_SIGMA_W, PAPER_SIGMA_B
    w = default_w if sigma_w is None else float(sigma_w)
    b = default_b if sigma_b is None else float(sigma_b)
    if not w > 0 or b < 0:
        raise SpecError(f"log_volume options: sigma_w = {w} must be > 0 and sigma_b = {b} >= 0")
    return w, b


def kernel_kind(model_cfg: ModelConfig, kernel: str) -> str:
    """"arccos" for ReLU FCNs without batch norm (and the affine model), "empirical" for everything else."""
    if kernel not in KERNELS:
        raise SpecError(f"log_volume option kernel = {kernel!r}; use one of {', '.join(KERNELS)}")
    analytic = model_cfg.arch == "affine" or (
        model_cfg.arch == "fcn" and model_cfg.activation == "relu" and not model_cfg.batch_norm
    )
    if kernel == "arccos" and not analytic:
        raise SpecError(
            f"log_volume option kernel = 'arccos' needs a ReLU FCN without batch norm (model.arch = 'fcn' or "
            f"'affine'); this model is arch = {model_cfg.arch!r}, activation = {model_cfg.activation!r}, "
            f"batch_norm = {model_cfg.batch_norm}; use kernel = 'empirical' or 'auto'"
        )
    if kernel == "auto":
        return "arccos" if analytic else "empirical"
    return kernel


def nngp_kernel(
    ctx: MeasureContext, x: torch.Tensor, kind: str, sigma_w: float, sigma_b: float, mc_samples: int | None
) -> tuple[torch.Tensor, dict[str, str]]:
    """The NNGP kernel of the run's architecture on the rows of ``x``, float64 on ctx.device."""
    cfg = ctx.config.model
    if kind == "arccos":
        depth = 0 if cfg.arch == "affine" else cfg.depth
        return relu_nngp_kernel(x, depth, sigma_w, sigma_b), {"kernel": f"arccos(depth={depth})"}
    m = default_mc_samples(x.shape[0]) if mc_samples is None else int(mc_samples)
    if m < 1:
        raise SpecError(f"log_volume option mc_samples = {m} must be >= 1 (default 0.1 (|S| + |E|))")
    features = random_init_features(
        cfg, tuple(x.shape[1:]), ctx.num_classes, x, m, sigma_w, sigma_b, seed=ctx.seed * 1_000_003 + 104_729
    )
    return empirical_kernel(features, sigma_w, sigma_b), {"kernel": "empirical", "mc_samples": str(m)}


def distinct_rows(x: torch.Tensor) -> torch.Tensor:
    """Indices of the first occurrence of each distinct input. A network maps equal inputs to equal outputs, so
    dropping repeats leaves P(f) unchanged, while EP would count a repeated orthant constraint twice."""
    flat = x.reshape(x.shape[0], -1)
    _, inverse = torch.unique(flat, dim=0, return_inverse=True)
    order = torch.arange(x.shape[0], device=x.device)
    first = torch.full((int(inverse.max()) + 1,), x.shape[0], dtype=order.dtype, device=x.device)
    first.scatter_reduce_(0, inverse, order, reduce="amin")
    return torch.sort(first).values


def predicted_signs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """±1 predictions: class 1 ↦ +1 under ``collect.logits.predict`` (argmax of two logits, 1[z > 0] for one)."""
    return torch.where(predict(batched_logits(model, x)) == 1, 1.0, -1.0).double()


@measure(
    "log_volume",
    directions={"log_volume": -1, "log_volume_per_point": -1, "pac_bayes_bound": +1, "log_volume_sampled": -1},
    diagnostics=DIAGNOSTICS,
    paper="Why Flatness Correlates With Generalization for Deep Neural Networks (paper 002), appendix A, eq. (4)",
    binary_only=True,
)
def log_volume(
    ctx: MeasureContext,
    *,
    sigma_w: float | None = None,
    sigma_b: float | None = None,
    kernel: str = "auto",
    mc_samples: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    damping: float = 0.5,
    delta: float = 0.05,
    include_attack: bool = False,
    direct_samples: int = 0,
) -> MeasureResult:
    """log P(f) of the predicted labels on S ∪ E under the NNGP prior with a Heaviside likelihood (EP), per point,
    and the PAC-Bayes bound (ln 1/P(f) + ln 1/δ)/|S| of paper 002 eq. (4) when the training error on S is zero.

    ``direct_samples`` > 0 (ReLU FCNs only) also estimates log P(f) without the GP, as the frequency of f among
    that many random initialisations of the FCN itself (``log_volume_sampled``; paper 002 section 5.1). Only small
    input sets such as the 128-input Boolean system have functions frequent enough for this; a function never
    seen gives NaN."""
    if not ctx.is_binary:
        raise MeasureSkipped(
            f"log_volume needs a binary task (num_classes = 2, this one has {ctx.num_classes}); set data.binary = "
            "'low_high' (classes 0-4 vs 5-9) or a pair of class ids such as [3, 5]"
        )
    if not 0 < delta < 1:
        raise SpecError(f"log_volume option delta = {delta} must be in (0, 1)")
    w, b = prior_sigmas(ctx.config.model, sigma_w, sigma_b)
    kind = kernel_kind(ctx.config.model, kernel)
    if direct_samples < 0 or (direct_samples and kind != "arccos"):
        raise SpecError(
            f"log_volume option direct_samples = {direct_samples}: use 0 (off) or a positive count, and only with a "
            "ReLU FCN (model.arch = 'fcn' or 'affine')"
        )

    keep = torch.ones_like(ctx.is_attack) if include_attack else ~ctx.is_attack
    x_s, y_s = ctx.x_train[keep], ctx.y_train[keep]
    x = torch.cat([x_s, ctx.x_test]).to(ctx.device)
    clean = ~ctx.is_attack[keep]
    f = predicted_signs(ctx.model, x)
    n_clean = int(clean.sum())
    train_errors = int((f[: len(y_s)][clean] != (2.0 * y_s[clean].double() - 1)).sum())
    first = distinct_rows(x)
    x, f = x[first], f[first]

    started = time.perf_counter()
    k, info = nngp_kernel(ctx, x, kind, w, b, mc_samples)
    kernel_seconds = time.perf_counter() - started
    ep = ep_log_prob(k, f, max_iter=max_iter, tol=tol, damping=damping)
    ep_seconds = time.perf_counter() - started - kernel_seconds

    if train_errors == 0 and n_clean > 0:
        bound = (-ep.log_prob + math.log(1 / delta)) / n_clean
        bound_note = f"eq. (4) with delta = {delta}, m = |S| = {n_clean}"
    else:
        bound = float("nan")
        bound_note = f"NaN: eq. (4) needs zero training error on S, this function misclassifies {train_errors} of {n_clean}"
    values = {
        "log_volume": ep.log_prob,
        "log_volume_per_point": ep.log_prob / x.shape[0],
        "pac_bayes_bound": bound,
        "log_volume_ep_iterations": float(ep.iterations),
        "log_volume_ep_converged": float(ep.converged),
        "log_volume_n_points": float(x.shape[0]),
    }
    if direct_samples:
        sampled, se, info["log_volume_sampled"] = _sampled_log_volume(ctx, x, f, w, b, direct_samples)
        values |= {"log_volume_sampled": sampled, "log_volume_sampled_se": se}
    info |= {
        "sigma_w": str(w),
        "sigma_b": str(b),
        "n_points": str(x.shape[0]),
        "n_duplicates": str(len(y_s) + ctx.x_test.shape[0] - x.shape[0]),
        "ep_iterations": str(ep.iterations),
        "ep_converged": str(ep.converged).lower(),
        "ep_last_change": f"{ep.last_change:.3g}",
        "kernel_seconds": f"{kernel_seconds:.3f}",
        "ep_seconds": f"{ep_seconds:.3f}",
        "pac_bayes_bound": bound_note,
    }
    return MeasureResult(values=values, info=info)


def _sampled_log_volume(
    ctx: MeasureContext, x: torch.Tensor, f: torch.Tensor, sigma_w: float, sigma_b: float, n_samples: int
) -> tuple[float, float, str]:
    """(log of the frequency p̂ of f among ``n_samples`` random FCNs of the run's architecture, its standard error
    √((1 − p̂)/count) by the delta method, a note for the tags); NaN for both when f was never sampled."""
    cfg = ctx.config.model
    depth = 0 if cfg.arch == "affine" else cfg.depth
    counts = sample_fcn_functions(
        x, n_samples, width=cfg.width, depth=depth, sigma_w=sigma_w, sigma_b=sigma_b, seed=ctx.seed * 1_000_003 + 7
    )
    log_p, se = counts.log_prob(f.cpu().numpy())
    if log_p == -math.inf:
        return float("nan"), float("nan"), f"NaN: f not among {n_samples} sampled functions (P(f) below about 3/{n_samples})"
    return log_p, se, f"{n_samples} samples, standard error {se:.3g}, {len(counts.counts)} distinct functions"


MEASURES = [log_volume]
