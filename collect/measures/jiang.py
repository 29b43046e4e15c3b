"""The measures of Jiang et al. 2020 ("Fantastic generalization measures and where to find them", appendix C) that
the other modules do not compute: parameter count, inverse margin, the margin-normalised spectral / Frobenius /
path norms and distances to initialisation, the PAC-Bayes bound forms (``pacbayes.orig``/``.init`` and their
magnitude-aware forms) and the sharpness family (``sharpness.flatness``/``.orig``/``.init`` and ``.mag``).

Conventions (Jiang et al.):
* W_1 … W_d: the weight matrices of the Linear/Conv layers in forward order (conv kernels reshaped to
  (out, in·k·k)); biases and batch-norm parameters are not weight matrices. W_i⁰: the same at initialisation.
* γ: the 10th percentile of the output margins f_y(x) − max_{j≠y} f_j(x) over the training set S ∪ A. When γ ≤ 0
  (more than 10 % of the training points misclassified) every "/margin" value is NaN (the bound has no meaning).
* Products of d norms over- or underflow, so products are reported as logs (``log_…``): Jiang et al.'s value is
  exp of it; a log is monotone, so every rank statistic is the same.
* w: all trainable parameters as one vector, ω = their number, w⁰ at initialisation, m = the number of training
  points (S ∪ A). The flatness bounds use σ' (PAC-Bayes) or α' (sharpness), found by search on a 0.1 rise of the
  training error (``collect.hessian.pacbayes``, ``collect.hessian.jiang_sharpness``):
      pacbayes_orig     = ‖w‖²/(4σ'²) + log(m/σ') + 10,      pacbayes_init = ‖w − w⁰‖²/(4σ'²) + log(m/σ') + 10
      pacbayes_mag_{orig,init} = ¼ Σ_i log[(ε² + (σ'² + 1)‖v‖²/ω) / (ε² + σ'²(w_i − w⁰_i)²)] + log(m/σ') + 10
      sharpness_orig    = ‖w‖² log(2ω)/(4α'²) + log(m/α') + 10,   sharpness_init with ‖w − w⁰‖²
      sharpness_mag_{orig,init} = ¼ Σ_i log[(ε² + (α'² + 4 log(2ω/δ))‖v‖²/ω) / (ε² + α'²(w_i − w⁰_i)²)] + log(m/α') + 10
  with v = w (orig) or w − w⁰ (init), ε = 10⁻³, δ = 0.1; the sharpness flatness is 1/α'² (the PAC-Bayes flatness
  1/σ'² is ``pacbayes_flatness`` in ``collect.measures.curvature``). The additive log(m/·) term follows the public
  robust-measures implementation of the same bounds (Dziugaite et al. 2020).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from collect.hessian import pacbayes as sigma_search
from collect.hessian.jiang_sharpness import sharpness_radius
from collect.hessian.operator import ChunkedLoss
from collect.hessian.pacbayes import isotropic_std, largest_admissible_sigma, magnitude_aware_std, zero_one_error
from collect.measures.curvature import check_search_options
from collect.measures.context import batched_logits, check_option, MeasureContext, MeasureResult
from collect.measures.margins import output_margins
from collect.measures.norms import path_norm, weight_layers
from collect.measures.registry import measure

JIANG = "Jiang et al. 2020, Fantastic Generalization Measures and Where to Find Them, appendix C"
MAG_EPS = 1e-3
DELTA = 0.1
MARGIN_PERCENTILE = 10


def _log(v: float) -> float:
    """log v, −inf at 0 (e.g. the distance from initialisation of an untrained model)."""
    return math.log(v) if v > 0 else -math.inf


def margin_gamma(ctx: MeasureContext) -> float:
    """γ: the 10th percentile of the training output margins (Jiang et al.)."""
    gamma = output_margins(batched_logits(ctx.model, ctx.x_train).double(), ctx.y_train)
    return float(np.percentile(gamma.cpu().numpy(), MARGIN_PERCENTILE))


def layer_matrices(ctx: MeasureContext) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(W_i, W_i⁰) as float64 matrices (out, in·k·k) for the weight layers in forward order."""
    names = {id(m): n for n, m in ctx.model.named_modules()}
    out = []
    for m in weight_layers(ctx.model):
        w = m.weight.detach().double()
        w0 = ctx.init_state[f"{names[id(m)]}.weight"].double().to(w.device)
        out.append((w.reshape(w.shape[0], -1), w0.reshape(w.shape[0], -1)))
    return out


def flat_params(ctx: MeasureContext) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, w⁰): all trainable parameters as float64 vectors, in ``named_parameters`` order."""
    params = {k: v for k, v in ctx.model.named_parameters() if v.requires_grad}
    w = torch.cat([p.detach().double().reshape(-1) for p in params.values()])
    w0 = torch.cat([ctx.init_state[k].double().reshape(-1).to(w.device) for k in params])
    return w, w0


# ---------------------------------------------------------------------------------------------- norms and margin
NORM_KEYS = {
    "param_count": 1,
    "inverse_margin": 1,
    "log_prod_of_spec": 1,
    "log_prod_of_spec_over_margin": 1,
    "log_sum_of_spec": 1,
    "log_sum_of_spec_over_margin": 1,
    "log_spec_init_main": 1,
    "log_spec_orig_main": 1,
    "fro_over_spec": 1,
    "log_prod_of_fro": 1,
    "log_prod_of_fro_over_margin": 1,
    "log_sum_of_fro": 1,
    "log_sum_of_fro_over_margin": 1,
    "frobenius_distance": 1,
    "dist_spec_init": 1,
    "param_norm": 1,
    "path_norm_sq": 1,
    "path_norm_over_margin": 1,
}


@measure("jiang_norms", directions=NORM_KEYS, diagnostics=("jiang_margin_q10",), paper=JIANG)
def jiang_norms(ctx: MeasureContext) -> MeasureResult:
    """Parameter count, inverse margin and Jiang et al.'s norm and margin-normalised norm measures (module docstring):

    param_count = ω;  inverse_margin = 1/γ²;  log_prod_of_spec = Σ log‖W_i‖₂²;  …_over_margin: − 2 log γ;
    log_sum_of_spec = log d + (1/d) Σ log‖W_i‖₂² (the log of d·(Π‖W_i‖₂²)^{1/d}), …_over_margin: + (1/d)(− 2 log γ);
    log_spec_init_main = log_prod_of_spec_over_margin + log Σ ‖W_i − W_i⁰‖_F²/‖W_i‖₂²;
    log_spec_orig_main = log_prod_of_spec_over_margin + log fro_over_spec, fro_over_spec = Σ ‖W_i‖_F²/‖W_i‖₂²;
    log_prod_of_fro, log_sum_of_fro (and /margin): the same with ‖W_i‖_F²;  frobenius_distance = Σ ‖W_i − W_i⁰‖_F²;
    dist_spec_init = Σ ‖W_i − W_i⁰‖₂²;  param_norm = Σ ‖W_i‖_F²;  path_norm_sq = Σ_paths Π w² = f_{w²}(1)
    (the square of ``path_norm`` of ``norms``), path_norm_over_margin = path_norm_sq/γ².
    """
    mats = layer_matrices(ctx)
    d = len(mats)
    if d == 0:
        raise ValueError("jiang_norms: the model has no Linear/Conv layer")
    spec = np.array([float(torch.linalg.matrix_norm(w, ord=2)) ** 2 for w, _ in mats])
    fro = np.array([float(w.pow(2).sum()) for w, _ in mats])
    dist_fro = np.array([float((w - w0).pow(2).sum()) for w, w0 in mats])
    dist_spec = np.array([float(torch.linalg.matrix_norm(w - w0, ord=2)) ** 2 for w, w0 in mats])
    gamma = margin_gamma(ctx)
    log_m2 = 2 * math.log(gamma) if gamma > 0 else float("nan")
    log_spec, log_fro = float(np.log(spec).sum()), float(np.log(fro).sum())
    path_sq = path_norm(ctx.model, tuple(ctx.x_train.shape[1:])) ** 2
    values = {
        "param_count": float(sum(p.numel() for p in ctx.model.parameters() if p.requires_grad)),
        "inverse_margin": 1 / gamma**2 if gamma > 0 else float("nan"),
        "log_prod_of_spec": log_spec,
        "log_prod_of_spec_over_margin": log_spec - log_m2,
        "log_sum_of_spec": math.log(d) + log_spec / d,
        "log_sum_of_spec_over_margin": math.log(d) + (log_spec - log_m2) / d,
        "log_spec_init_main": log_spec - log_m2 + _log(float((dist_fro / spec).sum())),
        "log_spec_orig_main": log_spec - log_m2 + math.log(float((fro / spec).sum())),
        "fro_over_spec": float((fro / spec).sum()),
        "log_prod_of_fro": log_fro,
        "log_prod_of_fro_over_margin": log_fro - log_m2,
        "log_sum_of_fro": math.log(d) + log_fro / d,
        "log_sum_of_fro_over_margin": math.log(d) + (log_fro - log_m2) / d,
        "frobenius_distance": float(dist_fro.sum()),
        "dist_spec_init": float(dist_spec.sum()),
        "param_norm": float(fro.sum()),
        "path_norm_sq": path_sq,
        "path_norm_over_margin": path_sq / gamma**2 if gamma > 0 else float("nan"),
        "jiang_margin_q10": gamma,
    }
    info = {} if gamma > 0 else {"margin": f"γ = {gamma:.4g} ≤ 0: more than 10 % of training points misclassified"}
    return MeasureResult(values=values, info=info)


# ---------------------------------------------------------------------------------------------- bound forms
def pacbayes_bound(v_sq: float, sigma: float, m: int) -> float:
    """‖v‖²/(4σ²) + log(m/σ) + 10 (Jiang et al. pacbayes.orig/.init, and sharpness.* with log(2ω)‖v‖² for ‖v‖²)."""
    return v_sq / (4 * sigma**2) + math.log(m / sigma) + 10 if sigma > 0 else float("inf")


def magnitude_bound(v_sq: float, spread: float, sigma: float, dist: torch.Tensor, m: int, eps: float = MAG_EPS) -> float:
    """¼ Σ_i log[(ε² + spread·‖v‖²/ω) / (ε² + σ²(w_i − w⁰_i)²)] + log(m/σ) + 10 (``dist`` = w − w⁰, ω = its length;
    spread = σ² + 1 for PAC-Bayes, α² + 4 log(2ω/δ) for sharpness)."""
    if not sigma > 0:
        return float("inf")
    omega = dist.numel()
    num = eps**2 + spread * v_sq / omega
    den = eps**2 + sigma**2 * dist.double().pow(2)
    return 0.25 * float(torch.log(num / den).sum()) + math.log(m / sigma) + 10


@measure(
    "pacbayes_bounds",
    directions={"pacbayes_orig": 1, "pacbayes_init": 1, "pacbayes_mag_orig": 1, "pacbayes_mag_init": 1},
    diagnostics=("pacbayes_bounds_sigma", "pacbayes_bounds_mag_sigma", "pacbayes_bounds_bracketed"),
    paper=JIANG,
)
def pacbayes_bounds(
    ctx: MeasureContext,
    *,
    target_deviation: float = sigma_search.TARGET_DEVIATION,
    n_draws: int = sigma_search.N_DRAWS,
    n_iter: int = sigma_search.N_ITER,
    rel_tol: float = sigma_search.REL_TOL,
    n_samples: int | None = None,
    chunk_size: int = 2048,
) -> MeasureResult:
    """pacbayes.orig/.init (isotropic σ') and pacbayes.mag.orig/.mag.init (magnitude-aware σ', noise
    N(0, σ'²w_i² + ε²)), with σ' from the same search as ``pacbayes_flatness`` / ``pacbayes_mag_flatness`` (the same
    seeds, so the same σ'); formulas in the module docstring. m is the training-set size (S ∪ A) even when the
    search uses a subset (``n_samples``)."""
    name = "pacbayes_bounds"
    check_search_options(name, target_deviation, n_iter, rel_tol, chunk_size)
    check_option(n_draws >= 1, name, "n_draws", n_draws, "must be >= 1")
    x, y = ctx.train_subset(n_samples, salt=0)
    error = ChunkedLoss(ctx.model, zero_one_error, x, y, chunk_size=chunk_size)
    common = dict(target=target_deviation, n_draws=n_draws, n_iter=n_iter, rel_tol=rel_tol)
    iso = largest_admissible_sigma(error, noise_std=isotropic_std, seed=ctx.seed * 7 + 1, **common)
    mag = largest_admissible_sigma(error, noise_std=magnitude_aware_std(MAG_EPS), seed=ctx.seed * 7 + 2, **common)
    w, w0 = flat_params(ctx)
    m = int(ctx.x_train.shape[0])
    w_sq, d_sq = float(w.pow(2).sum()), float((w - w0).pow(2).sum())
    values = {
        "pacbayes_orig": pacbayes_bound(w_sq, iso.sigma, m),
        "pacbayes_init": pacbayes_bound(d_sq, iso.sigma, m),
        "pacbayes_mag_orig": magnitude_bound(w_sq, mag.sigma**2 + 1, mag.sigma, w - w0, m),
        "pacbayes_mag_init": magnitude_bound(d_sq, mag.sigma**2 + 1, mag.sigma, w - w0, m),
        "pacbayes_bounds_sigma": iso.sigma,
        "pacbayes_bounds_mag_sigma": mag.sigma,
        "pacbayes_bounds_bracketed": float(iso.bracketed and mag.bracketed),
    }
    return MeasureResult(values=values, info={"n_points": str(x.shape[0])})


def _sharpness_family(ctx: MeasureContext, name: str, prefix: str, magnitude: bool, *, target_deviation: float,
                      restarts: int, n_steps: int, n_iter: int, rel_tol: float, n_samples: int | None,
                      chunk_size: int, mag_eps: float = MAG_EPS) -> MeasureResult:
    check_search_options(name, target_deviation, n_iter, rel_tol, chunk_size)
    check_option(restarts >= 1, name, "restarts", restarts, "must be >= 1")
    check_option(n_steps >= 1, name, "n_steps", n_steps, "must be >= 1")
    x, y = ctx.train_subset(n_samples, salt=0)
    loss = ChunkedLoss(ctx.model, ctx.loss_fn, x, y, chunk_size=chunk_size)
    res = sharpness_radius(
        loss, magnitude_eps=mag_eps if magnitude else None, target=target_deviation, restarts=restarts,
        n_steps=n_steps, n_iter=n_iter, rel_tol=rel_tol, generator=ctx.generator(131 + int(magnitude)),
    )
    w, w0 = flat_params(ctx)
    m, omega, a = int(ctx.x_train.shape[0]), w.numel(), res.alpha
    w_sq, d_sq = float(w.pow(2).sum()), float((w - w0).pow(2).sum())
    if magnitude:
        spread = a**2 + 4 * math.log(2 * omega / DELTA)
        orig = magnitude_bound(w_sq, spread, a, w - w0, m, mag_eps)
        init = magnitude_bound(d_sq, spread, a, w - w0, m, mag_eps)
    else:
        orig = pacbayes_bound(w_sq * math.log(2 * omega), a, m)
        init = pacbayes_bound(d_sq * math.log(2 * omega), a, m)
    values = {
        f"{prefix}_flatness": 1 / a**2 if a > 0 else float("inf"),
        f"{prefix}_orig": orig,
        f"{prefix}_init": init,
        f"{prefix}_alpha": a,
        f"{prefix}_n_evals": float(res.n_evals),
        f"{prefix}_bracketed": float(res.bracketed),
    }
    return MeasureResult(values=values, info={"deviation": f"{res.deviation:.4f}", "n_points": str(x.shape[0])})


def _sharpness_entry(prefix: str):
    return dict(
        directions={f"{prefix}_flatness": 1, f"{prefix}_orig": 1, f"{prefix}_init": 1},
        diagnostics=(f"{prefix}_alpha", f"{prefix}_n_evals", f"{prefix}_bracketed"),
        paper=JIANG,
    )


@measure("jiang_sharpness", **_sharpness_entry("jiang_sharpness"))
def jiang_sharpness(
    ctx: MeasureContext,
    *,
    target_deviation: float = sigma_search.TARGET_DEVIATION,
    restarts: int = 4,
    n_steps: int = 8,
    n_iter: int = sigma_search.N_ITER,
    rel_tol: float = sigma_search.REL_TOL,
    n_samples: int | None = None,
    chunk_size: int = 2048,
) -> MeasureResult:
    """sharpness.flatness 1/α'², sharpness.orig and sharpness.init, α' the largest box half-width with a worst-case
    training-error rise ≤ ``target_deviation`` (``collect.hessian.jiang_sharpness``; formulas in the module docstring)."""
    return _sharpness_family(
        ctx, "jiang_sharpness", "jiang_sharpness", False, target_deviation=target_deviation, restarts=restarts,
        n_steps=n_steps, n_iter=n_iter, rel_tol=rel_tol, n_samples=n_samples, chunk_size=chunk_size,
    )


@measure("jiang_sharpness_mag", **_sharpness_entry("jiang_sharpness_mag"))
def jiang_sharpness_mag(
    ctx: MeasureContext,
    *,
    target_deviation: float = sigma_search.TARGET_DEVIATION,
    restarts: int = 4,
    n_steps: int = 8,
    n_iter: int = sigma_search.N_ITER,
    rel_tol: float = sigma_search.REL_TOL,
    mag_eps: float = MAG_EPS,
    n_samples: int | None = None,
    chunk_size: int = 2048,
) -> MeasureResult:
    """sharpness.mag.flatness 1/α'², sharpness.mag.orig and .mag.init, with the magnitude-aware box
    |u_i| ≤ α'|w_i| + ε (``mag_eps`` ε, default 10⁻³; formulas in the module docstring). When the ε-box alone
    raises the error by more than the target, α' = 0: the flatness and the bounds are inf (lower ``mag_eps``)."""
    check_option(mag_eps >= 0, "jiang_sharpness_mag", "mag_eps", mag_eps, "must be >= 0")
    return _sharpness_family(
        ctx, "jiang_sharpness_mag", "jiang_sharpness_mag", True, target_deviation=target_deviation,
        restarts=restarts, n_steps=n_steps, n_iter=n_iter, rel_tol=rel_tol, n_samples=n_samples,
        chunk_size=chunk_size, mag_eps=mag_eps,
    )


MEASURES = [jiang_norms, pacbayes_bounds, jiang_sharpness, jiang_sharpness_mag]
