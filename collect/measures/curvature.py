"""Curvature (flatness) measures of the training loss: Hessian trace, λ_max, top eigenvalues, Frobenius norm,
per-sample traces with ACEHT, Keskar sharpness, PAC-Bayes flatness and scale-aware flatness.

All are computed on the model as the runner hands it over — eval mode: batch norm on running statistics, dropout
off — and never modify it. Hessian measures use the mean training loss (``ctx.loss_fn``) over the whole training
set S ∪ A when it has at most 5,000 points and over a seeded 5,000-point subset otherwise (``n_samples`` overrides);
all of them use the same subset of a run (same salt), so their values are comparable. Estimators are seeded from
the run seed (``ctx.generator``), so a run's values are reproducible. The numerics live in ``collect.hessian``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from collect.config import SpecError
from collect.hessian import pacbayes as sigma_search
from collect.hessian.lanczos import lanczos_top_eigenvalues
from collect.hessian.operator import ChunkedLoss, squared_weight_norm
from collect.hessian.pacbayes import isotropic_std, largest_admissible_sigma, magnitude_aware_std, zero_one_error
from collect.hessian.per_sample import (
    EXACT_LOSSES,
    aceht,
    exact_per_sample_trace,
    hutchinson_per_sample_trace,
    margin_bound,
    margins,
    piecewise_linear_reason,
)
from collect.hessian import sharpness as box
from collect.hessian.sharpness import keskar_sharpness
from collect.hessian.trace import (
    MAX_PROBES,
    MIN_PROBES,
    REL_SE,
    Estimate,
    check_budget,
    hutchinson_frobenius,
    hutchinson_trace,
    hutchpp_trace,
)
from collect.logits import predict
from collect.measures.context import check_option, MeasureContext, MeasureResult, MeasureSkipped
from collect.measures.registry import measure
from collect.models import layers_in_order

DEFAULT_MAX_POINTS = 5000  # Hessian measures use the whole training set up to this size, else a seeded subset
SUBSET_SALT = 0  # one training subset shared by all curvature measures of a run
TOP_K_DECLARED = 20  # top_eig_1 .. top_eig_20 have a declared direction

P000 = "On Flat Minima, Large Margins and Generalizability (paper 000)"
P002 = "Why Flatness Correlates With Generalization for Deep Neural Networks (paper 002)"
P003 = "Flatness is a False Friend (paper 003)"
P004 = "On the Maximum Hessian Eigenvalue and Generalization (paper 004)"
JIANG = "Jiang et al. 2020, Fantastic Generalization Measures and Where to Find Them"


# ---------------------------------------------------------------------------------------------- helpers
def _points(ctx: MeasureContext, n_samples: int | None, name: str, default: int | None = DEFAULT_MAX_POINTS):
    check_option(n_samples is None or n_samples >= 1, name, "n_samples", n_samples, "give a positive number of points")
    return ctx.train_subset(default if n_samples is None else n_samples, salt=SUBSET_SALT)


def _loss(ctx: MeasureContext, n_samples: int | None, chunk_size: int, name: str, **kwargs) -> ChunkedLoss:
    check_option(chunk_size >= 1, name, "chunk_size", chunk_size, "give a positive number of points per chunk")
    x, y = _points(ctx, n_samples, name)
    return ChunkedLoss(ctx.model, ctx.loss_fn, x, y, chunk_size=chunk_size, **kwargs)


def _check_probes(name: str, rel_se: float, min_probes: int | None, max_probes: int) -> int:
    """The pilot size to use: ``min_probes`` if set, else min(MIN_PROBES, max_probes) (a budget the spec set wins
    over the default pilot; below 64 probes the 2-SE coverage falls under 92 %, see collect.hessian.trace)."""
    pilot = min(MIN_PROBES, max_probes) if min_probes is None else min_probes
    try:
        check_budget(rel_se, pilot, max_probes)
    except ValueError as exc:  # the estimator's own check, told as the spec's option
        raise SpecError(f"measures.{name}: {exc}") from None
    return pilot


def _trace_estimate(
    loss: ChunkedLoss, ctx: MeasureContext, salt: int, *, method: str, rel_se: float, min_probes: int | None,
    max_probes: int, hutchpp_rank: int, name: str,
) -> Estimate:
    check_option(method in ("hutchinson", "hutchpp"), name, "method", method, "use 'hutchinson' or 'hutchpp'")
    min_probes = _check_probes(name, rel_se, min_probes, max_probes)
    common = dict(
        generator=ctx.generator(salt), dtype=loss.dtype, device=loss.device,
        rel_se=rel_se, min_probes=min_probes, max_probes=max_probes,
    )
    if method == "hutchinson":
        return hutchinson_trace(loss.hvp_batch, loss.dim, **common)
    check_option(hutchpp_rank >= 1, name, "hutchpp_rank", hutchpp_rank, "must be >= 1")
    return hutchpp_trace(loss.hvp_batch, loss.dim, rank=hutchpp_rank, **common)


def exact_trace_reason(ctx: MeasureContext) -> str | None:
    """None when the exact (Gauss–Newton) trace of ``collect.hessian.per_sample`` applies to this run, else why not:
    the network must be piecewise linear in each parameter and the loss one with a known output Hessian."""
    reason = piecewise_linear_reason(ctx.model)
    if reason is None and ctx.config.loss not in EXACT_LOSSES:
        reason = f"loss {ctx.config.loss!r} has no exact formula"
    return reason


def _layer_names(model: nn.Module) -> list[str]:
    """Module names of the Linear/Conv layers in forward order."""
    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(m)] for m in layers_in_order(model)]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    import scipy.stats  # imported on use: the driver loads this module only to check a spec

    return float(scipy.stats.pearsonr(a, b).statistic)


def _pearson_after_lof(a: np.ndarray, b: np.ndarray, n_neighbors: int) -> tuple[float, int]:
    """Pearson r after removing LocalOutlierFactor outliers of the standardised (a, b) scatter; (r, points kept)."""
    from sklearn.neighbors import LocalOutlierFactor

    if a.size < 4 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), int(a.size)
    z = np.column_stack([(a - a.mean()) / a.std(), (b - b.mean()) / b.std()])
    keep = LocalOutlierFactor(n_neighbors=min(n_neighbors, a.size - 1)).fit_predict(z) == 1
    return _pearson(a[keep], b[keep]), int(keep.sum())


# ---------------------------------------------------------------------------------------------- Hessian trace
@measure(
    "hessian_trace",
    directions={"hessian_trace": 1, "hessian_trace_over_weight_norm": 1, "hessian_trace_times_weight_norm": 1},
    diagnostics=("hessian_trace_se", "hessian_trace_n_hvp"),
    paper=f"{P000}, section 3; {P003}",
)
def hessian_trace(
    ctx: MeasureContext,
    *,
    n_samples: int | None = None,
    rel_se: float = REL_SE,
    min_probes: int | None = None,
    max_probes: int = MAX_PROBES,
    method: str = "auto",
    hutchpp_rank: int = 10,
    chunk_size: int = 2048,
) -> MeasureResult:
    """Tr ∇²L of the mean training loss L = (1/N) Σ_i ℓ_i: exact where it can be, else Hutchinson (or Hutch++)
    stopped at a target relative standard error.

    ``method``: "auto" (default) is "exact" whenever it applies and "hutchinson" otherwise; "exact" computes
    Tr ∇²L = (1/N) Σ_i Tr Jᵢᵀ(∇²_f ℓ)Jᵢ with the Gauss–Newton identity of ``collect.hessian.per_sample`` (paper
    000, section 3.2): exact (standard error 0, no Hessian-vector products) for networks that are piecewise linear
    in each parameter (Linear/Conv with ReLU, pooling, eval-mode batch norm and dropout) under cross-entropy,
    ``binary_cross_entropy`` (one logit), ``mse`` or ``mse_mean``, and about 10x cheaper than the 64-probe pilot of
    Hutchinson on the quick sweep's FCN;
    "hutchinson" and "hutchpp" are the stochastic estimators (``rel_se``, ``min_probes``,
    ``max_probes``, ``hutchpp_rank`` apply to them only). Which one ran is the ``method`` tag.

    Also the scale-aware versions of paper 003's argument that raw curvature follows weight scale:
    Tr H / ‖θ‖² (the trace normalised by the squared weight norm) and Tr H · ‖θ‖² (the expected loss rise under
    noise proportional to the weights, the global form of relative flatness).
    """
    name = "hessian_trace"
    check_option(method in ("auto", "exact", "hutchinson", "hutchpp"), name, "method", method,
           "use 'auto', 'exact', 'hutchinson' or 'hutchpp'")
    loss = _loss(ctx, n_samples, chunk_size, name)
    reason = exact_trace_reason(ctx)
    if method == "exact" and reason is not None:
        raise SpecError(f"measures.{name}.method = 'exact' does not apply to this model ({reason}); use 'auto'")
    info = {"n_points": str(loss.n)}
    if method in ("auto", "exact") and reason is None:
        per_point, _ = exact_per_sample_trace(ctx.model, loss.x, loss.y, loss=ctx.config.loss)
        est = Estimate(float(per_point.double().mean()), 0.0, 0, 0, True)
        used = "exact"
    else:
        used = "hutchinson" if method in ("auto", "exact") else method
        est = _trace_estimate(
            loss, ctx, 101, method=used, rel_se=rel_se, min_probes=min_probes, max_probes=max_probes,
            hutchpp_rank=hutchpp_rank, name=name,
        )
        if reason is not None:
            info["why_not_exact"] = reason
    w2 = squared_weight_norm(ctx.model)
    values = {
        "hessian_trace": est.value,
        "hessian_trace_se": est.std_error,
        "hessian_trace_n_hvp": float(est.n_matvecs),
        "hessian_trace_over_weight_norm": est.value / w2,
        "hessian_trace_times_weight_norm": est.value * w2,
    }
    info.update(method=used, converged=str(est.converged))
    return MeasureResult(values=values, info=info)


@measure(
    "hessian_frobenius",
    directions={"hessian_frobenius": 1},
    diagnostics=("hessian_frobenius_se", "hessian_frobenius_n_hvp"),
    paper=P003,
)
def hessian_frobenius(
    ctx: MeasureContext,
    *,
    n_samples: int | None = None,
    rel_se: float = REL_SE,
    min_probes: int | None = None,
    max_probes: int = MAX_PROBES,
    chunk_size: int = 2048,
) -> MeasureResult:
    """‖∇²L‖_F estimated as sqrt(E‖Hz‖²) over Rademacher z, with its standard error (delta method)."""
    min_probes = _check_probes("hessian_frobenius", rel_se, min_probes, max_probes)
    loss = _loss(ctx, n_samples, chunk_size, "hessian_frobenius")
    est = hutchinson_frobenius(
        loss.hvp_batch, loss.dim, generator=ctx.generator(102), dtype=loss.dtype, device=loss.device,
        rel_se=rel_se, min_probes=min_probes, max_probes=max_probes,
    )
    values = {
        "hessian_frobenius": est.value,
        "hessian_frobenius_se": est.std_error,
        "hessian_frobenius_n_hvp": float(est.n_matvecs),
    }
    return MeasureResult(values=values, info={"converged": str(est.converged)})


# ---------------------------------------------------------------------------------------------- eigenvalues
def _check_lanczos(name: str, tol: float, max_iter: int, k: int = 1) -> None:
    check_option(tol > 0, name, "tol", tol, "must be > 0 (a relative residual tolerance, e.g. 1e-3)")
    check_option(max_iter >= k, name, "max_iter", max_iter, f"must be >= {k} Hessian-vector products")


@measure(
    "lambda_max",
    directions={"lambda_max": 1},
    diagnostics=("lambda_max_residual", "lambda_max_n_hvp", "lambda_max_converged"),
    paper=P004,
)
def lambda_max(
    ctx: MeasureContext,
    *,
    n_samples: int | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    chunk_size: int = 2048,
) -> MeasureResult:
    """Largest algebraic eigenvalue of ∇²L by Lanczos; an eigenvalue lies within ``lambda_max_residual`` of it.

    Converged means the residual is at most ``tol``·|λ_max|, i.e. λ_max is certified to relative accuracy ``tol``.
    """
    _check_lanczos("lambda_max", tol, max_iter)
    loss = _loss(ctx, n_samples, chunk_size, "lambda_max")
    res = lanczos_top_eigenvalues(
        loss.hvp_operator(), loss.dim, k=1, tol=tol, max_iter=max_iter, generator=ctx.generator(103),
        dtype=loss.dtype, device=loss.device,
    )
    values = {
        "lambda_max": res.eigenvalues[0],
        "lambda_max_residual": res.residuals[0],
        "lambda_max_n_hvp": float(res.n_matvecs),
        "lambda_max_converged": float(res.converged),
    }
    return MeasureResult(values=values, info={"converged": str(res.converged), "tol": str(tol)})


@measure(
    "top_eigenvalues",
    directions={f"top_eig_{i}": 1 for i in range(1, TOP_K_DECLARED + 1)},
    diagnostics=("top_eig_max_residual", "top_eig_n_hvp", "top_eig_converged"),
    paper=f"{P004}; {P002} appendix (products of top eigenvalues)",
)
def top_eigenvalues(
    ctx: MeasureContext,
    *,
    k: int = 3,
    n_samples: int | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    chunk_size: int = 2048,
) -> MeasureResult:
    """The k largest algebraic eigenvalues of ∇²L (``top_eig_1`` ≥ … ≥ ``top_eig_k``) by Lanczos."""
    check_option(k >= 1, "top_eigenvalues", "k", k, "must be >= 1")
    _check_lanczos("top_eigenvalues", tol, max_iter, k)
    loss = _loss(ctx, n_samples, chunk_size, "top_eigenvalues")
    res = lanczos_top_eigenvalues(
        loss.hvp_operator(), loss.dim, k=k, tol=tol, max_iter=max_iter, generator=ctx.generator(104),
        dtype=loss.dtype, device=loss.device,
    )
    values = {f"top_eig_{i + 1}": v for i, v in enumerate(res.eigenvalues)}
    values |= {
        "top_eig_max_residual": max(res.residuals),
        "top_eig_n_hvp": float(res.n_matvecs),
        "top_eig_converged": float(res.converged),
    }
    return MeasureResult(values=values, info={"converged": str(res.converged)})


@measure(
    "lambda_max_between_iterates",
    directions={"lambda_max_between_iterates": 1},
    diagnostics=(
        "lambda_max_between_iterates_at", "lambda_max_between_iterates_n_hvp", "lambda_max_between_iterates_converged",
    ),
    paper=f"{P004}, section 3.5 (after Cohen et al. 2021)",
)
def lambda_max_between_iterates(
    ctx: MeasureContext,
    *,
    n_points: int = 8,
    n_samples: int | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    chunk_size: int = 2048,
) -> MeasureResult:
    """max λ_max over ``n_points`` evenly spaced points θ_t = θ + t(θ' − θ), t = 0 … 1 (both ends included),
    between the final iterate θ and one further training step θ' (paper 004's procedure for batch-norm networks).
    """
    check_option(n_points >= 2, "lambda_max_between_iterates", "n_points", n_points, "must be >= 2 (both iterates)")
    _check_lanczos("lambda_max_between_iterates", tol, max_iter)
    if ctx.next_iterate is None:
        raise MeasureSkipped("no next training iterate is available for this run (ctx.next_iterate is None)")
    t = ctx.config.transform
    if t.alpha_scale != 1.0 or t.last_layer_scale != 1.0:
        raise MeasureSkipped(
            "the run is reparametrised (transform.alpha_scale / last_layer_scale), but the next iterate is a step of "
            "the untransformed model, so the segment between them means nothing; measure it without the transform"
        )
    current = {k: v.detach() for k, v in ctx.model.named_parameters() if v.requires_grad}
    nxt = {k: v.detach().to(current[k]) for k, v in ctx.next_iterate().items() if k in current}
    best, best_t, n_hvp, all_converged = -math.inf, 0.0, 0, True
    for i, t in enumerate(np.linspace(0.0, 1.0, n_points)):
        base = {k: current[k] + float(t) * (nxt[k] - current[k]) for k in nxt}
        loss = _loss(ctx, n_samples, chunk_size, "lambda_max_between_iterates", base=base)
        res = lanczos_top_eigenvalues(
            loss.hvp_operator(), loss.dim, k=1, tol=tol, max_iter=max_iter, generator=ctx.generator(105 + 1000 * i),
            dtype=loss.dtype, device=loss.device,
        )
        n_hvp += res.n_matvecs
        all_converged &= res.converged
        if res.eigenvalues[0] > best:
            best, best_t = res.eigenvalues[0], float(t)
    values = {
        "lambda_max_between_iterates": best,
        "lambda_max_between_iterates_at": best_t,
        "lambda_max_between_iterates_n_hvp": float(n_hvp),
        "lambda_max_between_iterates_converged": float(all_converged),
    }
    return MeasureResult(values=values, info={"converged": str(all_converged)})


# ---------------------------------------------------------------------------------------------- per-sample trace
@measure(
    "per_sample_trace",
    directions={"per_sample_trace_mean": 1},
    # the r-values describe paper 000's per-point analysis (trace vs ACEHT / margin bound); they are not proposed
    # to predict generalization, so they are diagnostics of the measure, not measures
    diagnostics=(
        "per_sample_trace_mean_se", "per_sample_n_correct", "per_sample_r_aceht", "per_sample_r_aceht_lof",
        "per_sample_r_margin_bound", "per_sample_r_margin_bound_lof",
    ),
    paper=f"{P000}, sections 3.1-3.2",
)
def per_sample_trace(
    ctx: MeasureContext,
    *,
    n_points: int = 1000,
    method: str = "auto",
    n_probes: int = 64,
    chunk_size: int | None = None,
    lof_neighbors: int = 20,
) -> MeasureResult:
    """Trace of each training point's own loss Hessian on ``n_points`` seeded points, with ACEHT and margins.

    ``method``: "exact" (Gauss–Newton identity; piecewise-linear networks in eval mode), "hutchinson"
    (``n_probes`` probes per point, any network) or "auto" (exact whenever it applies). Pearson r of the trace
    with ACEHT and with the margin bound on the correctly classified points, before and after LocalOutlierFactor
    outlier removal on the standardised scatter (paper 000, section 3.2).
    """
    name = "per_sample_trace"
    check_option(n_points >= 1, name, "n_points", n_points, "give a positive number of training points")
    check_option(method in ("auto", "exact", "hutchinson"), name, "method", method, "use 'auto', 'exact' or 'hutchinson'")
    check_option(lof_neighbors >= 1, name, "lof_neighbors", lof_neighbors, "must be >= 1")
    check_option(chunk_size is None or chunk_size >= 1, name, "chunk_size", chunk_size, "must be >= 1 (or omitted)")
    x, y = ctx.train_subset(n_points, salt=SUBSET_SALT)
    reason = exact_trace_reason(ctx)
    if method == "exact" and reason is not None:
        raise SpecError(f"measures.{name}.method = 'exact' does not apply to this model ({reason}); use 'auto'")
    use_exact = method == "exact" or (method == "auto" and reason is None)
    if use_exact:
        trace, logits = exact_per_sample_trace(ctx.model, x, y, loss=ctx.config.loss, chunk_size=chunk_size)
        se = torch.zeros_like(trace)
    else:
        check_option(n_probes >= 2, name, "n_probes", n_probes, "must be >= 2")
        trace, se, logits = hutchinson_per_sample_trace(
            ctx.model, ctx.loss_fn, x, y, n_probes=n_probes, generator=ctx.generator(106),
            chunk_size=chunk_size or 64,
        )
    logits = logits.double()
    out_m, soft_m = margins(logits, y)
    xd = x.double()
    cols = {
        "trace": trace.double().cpu().numpy(),
        "trace_se": se.double().cpu().numpy(),
        "aceht": aceht(xd, logits).cpu().numpy(),
        "margin_bound": margin_bound(xd, soft_m).cpu().numpy(),
        "output_margin": out_m.cpu().numpy(),
        "softmax_margin": soft_m.cpu().numpy(),
        "x_sq_norm": xd.reshape(xd.shape[0], -1).pow(2).sum(1).cpu().numpy(),
        "label": y.cpu().numpy(),
        "correct": (predict(logits) == y).cpu().numpy(),
    }
    c = cols["correct"]
    tr = cols["trace"][c]
    r_ac_lof, kept_ac = _pearson_after_lof(cols["aceht"][c], tr, lof_neighbors)
    r_mb_lof, kept_mb = _pearson_after_lof(cols["margin_bound"][c], tr, lof_neighbors)
    values = {
        "per_sample_trace_mean": float(cols["trace"].mean()),
        "per_sample_trace_mean_se": float(np.sqrt((cols["trace_se"] ** 2).sum()) / len(c)),
        "per_sample_n_correct": float(c.sum()),
        "per_sample_r_aceht": _pearson(cols["aceht"][c], tr),
        "per_sample_r_aceht_lof": r_ac_lof,
        "per_sample_r_margin_bound": _pearson(cols["margin_bound"][c], tr),
        "per_sample_r_margin_bound_lof": r_mb_lof,
    }
    info = {
        "method": "exact" if use_exact else f"hutchinson ({n_probes} probes per point)",
        "lof_kept": f"aceht {kept_ac}/{int(c.sum())}, margin_bound {kept_mb}/{int(c.sum())}",
    }
    if not use_exact and reason is not None:
        info["why_not_exact"] = reason
    return MeasureResult(values=values, per_sample=cols, info=info)


# ---------------------------------------------------------------------------------------------- sharpness
SHARPNESS_DIAGNOSTICS = (
    "sharpness_n_restarts", "sharpness_n_iter", "sharpness_n_evals", "sharpness_n_hvp",
    "sharpness_last_restart_improved", "sharpness_converged",
)


@measure(
    "sharpness",
    directions={"sharpness": 1},
    diagnostics=SHARPNESS_DIAGNOSTICS,
    paper=f"{P002}, definition 2.1 and appendix B (Keskar et al.)",
)
def sharpness(
    ctx: MeasureContext,
    *,
    epsilon: float = 1e-3,
    method: str = "multistart",
    subspace_dim: int | None = None,
    max_iter: int | None = None,
    restarts: int = box.RESTARTS,
    max_restarts: int = box.MAX_RESTARTS,
    polish_iter: int = 0,
    tol: float = box.TOL,
    step: float = box.STEP,
    patience: int = box.PATIENCE,
    refound: int = box.REFOUND,
    round_tol: float = box.ROUND_TOL,
    n_samples: int | None = None,
    chunk_size: int = 2048,
) -> MeasureResult:
    """Keskar sharpness 100 · max_{Δ ∈ C_ε} (L(w + Δ) − L(w)) / (1 + L(w)), C_ε = {Δ : |Δ_i| ≤ ε(|w_i| + 1)}, on
    the training set; with ``subspace_dim`` = p, Δ = A y over a random orthonormal dim × p matrix A and
    |y_j| ≤ ε(|(Aᵀw)_j| + 1) (Keskar et al.'s subspace variant).

    ``method``: "multistart" (default: batched restarts of sign-gradient ascent from spectral and random box
    corners, ``restarts`` a round (default 12), more rounds until ``refound`` (default 2) random-corner restarts reach
    the best value within ``round_tol`` (default 1 %) of its rise or a round raises the best by no more than that, at
    most ``max_restarts`` (default 36), ``max_iter`` steps each (default 15) of size ``step``·r (default 1.0), a
    round ending after ``patience`` steps without a gain > ``tol`` relative (defaults 2 and 1e-3), then ``polish_iter`` L-BFGS-B iterations (default 0); see
    ``collect.hessian.sharpness``), "lbfgsb" (one L-BFGS-B run, ``max_iter`` default 20) or "pga". The value is a
    lower bound on the box maximum. Diagnostics: restarts, ascent iterations, loss evaluations, Hessian-vector
    products, whether the last restart still improved the best, and whether the round rule stopped the search.
    """
    name = "sharpness"
    check_option(epsilon > 0, name, "epsilon", epsilon, "must be > 0 (paper 002 uses 1e-4 to 1e-3)")
    check_option(method in box.METHODS, name, "method", method, f"use one of {', '.join(box.METHODS)}")
    check_option(max_iter is None or max_iter >= 1, name, "max_iter", max_iter, "must be >= 1 (or omitted)")
    check_option(restarts >= 1, name, "restarts", restarts, "must be >= 1")
    check_option(max_restarts >= restarts, name, "max_restarts", max_restarts, f"must be >= restarts = {restarts}")
    check_option(polish_iter >= 0, name, "polish_iter", polish_iter, "must be >= 0 (0: no polish)")
    check_option(tol >= 0, name, "tol", tol, "must be >= 0")
    check_option(0 < step <= 2, name, "step", step, "must be in (0, 2] (units of the box half-width r)")
    check_option(patience >= 1, name, "patience", patience, "must be >= 1")
    check_option(refound >= 1, name, "refound", refound, "must be >= 1")
    check_option(round_tol >= 0, name, "round_tol", round_tol, "must be >= 0")
    check_option(chunk_size >= 1, name, "chunk_size", chunk_size, "must be >= 1")
    x, y = _points(ctx, n_samples, name, default=None)
    loss = ChunkedLoss(ctx.model, ctx.loss_fn, x, y, chunk_size=chunk_size)
    check_option(
        subspace_dim is None or 1 <= subspace_dim <= loss.dim, name, "subspace_dim", subspace_dim,
        f"must be between 1 and the number of parameters ({loss.dim}), or omitted for the full space",
    )
    res = keskar_sharpness(
        loss, epsilon=epsilon, method=method, subspace_dim=subspace_dim, max_iter=max_iter, restarts=restarts,
        max_restarts=max_restarts, polish_iter=polish_iter, tol=tol, step=step, patience=patience,
        refound=refound, round_tol=round_tol, generator=ctx.generator(107),
    )
    values = {
        "sharpness": res.sharpness,
        "sharpness_n_restarts": float(res.n_restarts),
        "sharpness_n_iter": float(res.n_iter),
        "sharpness_n_evals": float(res.n_evals),
        "sharpness_n_hvp": float(res.n_hvp),
        "sharpness_last_restart_improved": float(res.last_restart_improved),
        "sharpness_converged": float(res.converged),
    }
    return MeasureResult(values=values, info={"optimizer": res.message})


# ---------------------------------------------------------------------------------------------- PAC-Bayes
def check_search_options(name: str, target_deviation: float, n_iter: int, rel_tol: float, chunk_size: int) -> None:
    """The options of the bracket-and-bisect search (collect.hessian.bisection) that PAC-Bayes flatness and Jiang et
    al.'s bounds and sharpness share."""
    check_option(0 < target_deviation < 1, name, "target_deviation", target_deviation, "a rise in training error in (0, 1)")
    check_option(n_iter >= 0, name, "n_iter", n_iter, "must be >= 0")
    check_option(rel_tol >= 0, name, "rel_tol", rel_tol, "must be >= 0 (0: run all n_iter bisection steps)")
    check_option(chunk_size >= 1, name, "chunk_size", chunk_size, "must be >= 1")


def _pacbayes(ctx: MeasureContext, name: str, key: str, noise, *, target_deviation: float, n_draws: int,
              n_iter: int, rel_tol: float, n_samples: int | None, chunk_size: int, salt: int) -> MeasureResult:
    check_search_options(name, target_deviation, n_iter, rel_tol, chunk_size)
    check_option(n_draws >= 1, name, "n_draws", n_draws, "must be >= 1")
    x, y = _points(ctx, n_samples, name, default=None)
    error = ChunkedLoss(ctx.model, zero_one_error, x, y, chunk_size=chunk_size)
    res = largest_admissible_sigma(
        error, noise_std=noise, target=target_deviation, n_draws=n_draws, n_iter=n_iter, rel_tol=rel_tol,
        seed=ctx.seed * 7 + salt,
    )
    values = {
        key: res.flatness,
        f"{key}_sigma": res.sigma,
        f"{key}_n_evals": float(res.n_evals),
        f"{key}_bracketed": float(res.bracketed),
    }
    info = {"bracketed": str(res.bracketed), "deviation": f"{res.deviation:.4f}"}
    return MeasureResult(values=values, info=info)


@measure(
    "pacbayes_flatness",
    directions={"pacbayes_flatness": 1},
    diagnostics=("pacbayes_flatness_sigma", "pacbayes_flatness_n_evals", "pacbayes_flatness_bracketed"),
    paper=JIANG,
)
def pacbayes_flatness(
    ctx: MeasureContext,
    *,
    target_deviation: float = sigma_search.TARGET_DEVIATION,
    n_draws: int = sigma_search.N_DRAWS,
    n_iter: int = sigma_search.N_ITER,
    rel_tol: float = sigma_search.REL_TOL,
    n_samples: int | None = None,
    chunk_size: int = 2048,
) -> MeasureResult:
    """1/σ'² for the largest σ' with E[err(w + N(0, σ'²I))] − err(w) ≤ ``target_deviation`` on the training set
    (a mean over ``n_draws`` common-random-number draws; bisection on log σ to hi/lo ≤ 1 + ``rel_tol``, at most
    ``n_iter`` steps; the draws of one σ in one vmapped forward pass)."""
    return _pacbayes(
        ctx, "pacbayes_flatness", "pacbayes_flatness", isotropic_std, target_deviation=target_deviation,
        n_draws=n_draws, n_iter=n_iter, rel_tol=rel_tol, n_samples=n_samples, chunk_size=chunk_size, salt=1,
    )


@measure(
    "pacbayes_mag_flatness",
    directions={"pacbayes_mag_flatness": 1},
    diagnostics=("pacbayes_mag_flatness_sigma", "pacbayes_mag_flatness_n_evals", "pacbayes_mag_flatness_bracketed"),
    paper=JIANG,
)
def pacbayes_mag_flatness(
    ctx: MeasureContext,
    *,
    target_deviation: float = sigma_search.TARGET_DEVIATION,
    n_draws: int = sigma_search.N_DRAWS,
    n_iter: int = sigma_search.N_ITER,
    rel_tol: float = sigma_search.REL_TOL,
    mag_eps: float = 1e-3,
    n_samples: int | None = None,
    chunk_size: int = 2048,
) -> MeasureResult:
    """1/α'² for the largest α' with noise u_i ~ N(0, α'² w_i² + ε²) raising training error by ≤ the target."""
    check_option(mag_eps >= 0, "pacbayes_mag_flatness", "mag_eps", mag_eps, "must be >= 0")
    return _pacbayes(
        ctx, "pacbayes_mag_flatness", "pacbayes_mag_flatness", magnitude_aware_std(mag_eps),
        target_deviation=target_deviation, n_draws=n_draws, n_iter=n_iter, rel_tol=rel_tol, n_samples=n_samples,
        chunk_size=chunk_size, salt=2,
    )


# ---------------------------------------------------------------------------------------------- scale-aware
@measure(
    "relative_flatness",
    directions={"relative_flatness": 1},
    diagnostics=("relative_flatness_se", "relative_flatness_n_hvp"),
    paper="Petzka et al. 2021, Relative flatness and generalization; " + P003,
)
def relative_flatness(
    ctx: MeasureContext,
    *,
    layer: int = -1,
    n_samples: int | None = None,
    rel_se: float = REL_SE,
    min_probes: int | None = None,
    max_probes: int = MAX_PROBES,
    chunk_size: int = 2048,
) -> MeasureResult:
    """‖W_l‖² · Tr H_l, with H_l the Hessian block of layer ``layer``'s weight matrix (default: the last layer).

    This is the scalar form of Petzka et al.'s relative flatness: invariant under alpha scaling of layer l
    (‖αW‖² · Tr H / α²), unlike Tr H itself. Tr H_l by Hutchinson on the layer's Hessian block.
    """
    name = "relative_flatness"
    layers = _layer_names(ctx.model)
    check_option(-len(layers) <= layer < len(layers), name, "layer", layer,
           f"the model has {len(layers)} Linear/Conv layers; use an index in {-len(layers)}..{len(layers) - 1}")
    weight = f"{layers[layer]}.weight"
    loss = _loss(ctx, n_samples, chunk_size, name, names=[weight])
    est = _trace_estimate(
        loss, ctx, 110, method="hutchinson", rel_se=rel_se, min_probes=min_probes, max_probes=max_probes,
        hutchpp_rank=1, name=name,
    )
    w2 = squared_weight_norm(ctx.model, [weight])
    values = {
        "relative_flatness": w2 * est.value,
        "relative_flatness_se": w2 * est.std_error,
        "relative_flatness_n_hvp": float(est.n_matvecs),
    }
    info = {"layer": weight, "converged": str(est.converged)}
    return MeasureResult(values=values, info=info)


MEASURES = [
    hessian_trace,
    hessian_frobenius,
    lambda_max,
    top_eigenvalues,
    lambda_max_between_iterates,
    per_sample_trace,
    sharpness,
    pacbayes_flatness,
    pacbayes_mag_flatness,
    relative_flatness,
]
