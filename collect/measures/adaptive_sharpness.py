"""Adaptive sharpness, worst case and average case (Kwon et al. 2021; Andriushchenko et al. 2023, "A modern look at
the relationship between sharpness and generalization"). The numerics live in ``collect.hessian.adaptive_sharpness``.

Worst case:   S_max = max_{‖u‖_p ≤ ρ} L(w + c ⊙ u) − L(w),          p ∈ {∞, 2}
Average case: S_avg = E_{z ~ N(0, I)} L(w + ρ c ⊙ z) − L(w)
with c = |w| (``adaptive = true``, the default) or c = 1 (plain), over all trainable parameters, on the mean
training loss of the run (``ctx.loss_fn``) over a seeded subset of ``n_samples`` training points (default 1,024, the
evaluation set size of Andriushchenko et al.; the whole set when smaller). With ``m`` set, the subset is cut into
batches of m points and the worst case is the mean over batches of each batch's maximum (their m-sharpness, m = 128
in their code); the default (``m`` omitted) is one batch of all the points. The loss rise is reported as is
(not divided by 1 + L(w), unlike Keskar sharpness).

Logit normalisation (``logit_normalize = true``): the loss is evaluated on f̄(x)/‖f̄(x)‖₂, f̄ = f − mean_c f_c (the
centred logits), which removes the scale of the outputs; with it, adaptive sharpness is also unchanged when the last layer is multiplied by a constant (paper
000, Prop. 5.1), which changes the logits and so the plain loss.

With one logit (``loss = "binary_cross_entropy"``) the centred logit is 0, so logit normalisation is not defined
and the measure is skipped when it is asked for; without it, the measures apply to the logistic loss unchanged.

Output keys: ``{adaptive_|plain_}sharpness_{linf|l2}`` (worst case) and ``{adaptive_|plain_}avg_sharpness``
(average case), each with the suffix ``_ln`` under logit normalisation.
"""

from __future__ import annotations

import torch

from collect.hessian import sharpness as box
from collect.hessian.adaptive_sharpness import NORMS, PATIENCE, average_case_rise, worst_case_ball_max
from collect.hessian.operator import ChunkedLoss
from collect.losses import SINGLE_LOGIT_LOSSES
from collect.measures.context import check_option, MeasureContext, MeasureResult, MeasureSkipped
from collect.measures.registry import measure

DEFAULT_POINTS = 1024
DEFAULT_RHO = {"linf": 1e-3, "l2": 0.1}  # radius of the ball in u (relative units when adaptive)
PAPERS = (
    "Kwon et al. 2021 (ASAM); Andriushchenko et al. 2023, A modern look at the relationship between sharpness and "
    "generalization"
)
WORST_DIAG = ("n_evals", "n_restarts", "converged", "last_restart_improved")


def _key(adaptive: bool, kind: str, logit_normalize: bool) -> str:
    return f"{'adaptive' if adaptive else 'plain'}_{kind}{'_ln' if logit_normalize else ''}"


WORST_KEYS = [_key(a, f"sharpness_{n}", ln) for a in (True, False) for n in NORMS for ln in (False, True)]
AVG_KEYS = [_key(a, "avg_sharpness", ln) for a in (True, False) for ln in (False, True)]


def normalized_logits_loss(loss_fn):
    """ℓ(f̄/‖f̄‖₂, y) with f̄ = f − mean_c f_c: the run's loss on centred logits of unit ℓ2 norm per sample (the
    logit normalisation of Andriushchenko et al.)."""

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        centred = logits - logits.mean(dim=-1, keepdim=True)
        return loss_fn(centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-10), labels)

    return loss


def _chunked(ctx: MeasureContext, name: str, n_samples: int | None, chunk_size: int, logit_normalize: bool) -> ChunkedLoss:
    check_option(n_samples is None or n_samples >= 1, name, "n_samples", n_samples, "give a positive number of points")
    check_option(chunk_size >= 1, name, "chunk_size", chunk_size, "must be >= 1")
    if logit_normalize and ctx.config.loss in SINGLE_LOGIT_LOSSES:
        raise MeasureSkipped(
            f"{name} with logit_normalize = true needs C >= 2 logits: this run's model has one logit (loss = "
            f"{ctx.config.loss!r}), whose centred logit z - mean(z) is 0 for every input, so the normalised loss is a "
            "constant; use logit_normalize = false"
        )
    x, y = ctx.train_subset(DEFAULT_POINTS if n_samples is None else n_samples, salt=11)
    loss_fn = normalized_logits_loss(ctx.loss_fn) if logit_normalize else ctx.loss_fn
    return ChunkedLoss(ctx.model, loss_fn, x, y, chunk_size=chunk_size)


@measure(
    "adaptive_sharpness",
    directions={k: 1 for k in WORST_KEYS},
    diagnostics=tuple(f"{k}_{d}" for k in WORST_KEYS for d in WORST_DIAG),
    paper=PAPERS,
)
def adaptive_sharpness(
    ctx: MeasureContext,
    *,
    norm: str = "linf",
    adaptive: bool = True,
    rho: float | None = None,
    logit_normalize: bool = False,
    restarts: int = box.RESTARTS,
    max_restarts: int = box.MAX_RESTARTS,
    max_iter: int = 20,
    tol: float = box.TOL,
    refound: int = box.REFOUND,
    round_tol: float = box.ROUND_TOL,
    patience: int = PATIENCE,
    m: int | None = None,
    n_samples: int | None = None,
    chunk_size: int = 2048,
) -> MeasureResult:
    """Worst-case (adaptive) sharpness max_{‖u‖_p ≤ ρ} L(w + c ⊙ u) − L(w), c = |w| (adaptive) or 1, by batched
    Auto-PGD restarts under Keskar sharpness's round rule (``collect.hessian.adaptive_sharpness``).

    ``rho`` defaults to 1e-3 for ``norm = "linf"`` and 0.1 for ``"l2"``; a round stops after ``patience`` steps
    that did not raise its best by more than ``tol`` relative (0: all ``max_iter`` steps). Diagnostics: loss evaluations, restarts,
    whether the round rule (not ``max_restarts``) ended the search, whether the last restart still beat the others.
    """
    name = "adaptive_sharpness"
    check_option(norm in NORMS, name, "norm", norm, f"use one of {', '.join(NORMS)}")
    rho = DEFAULT_RHO[norm] if rho is None else rho
    check_option(rho > 0, name, "rho", rho, "must be > 0 (the radius of the perturbation ball)")
    check_option(restarts >= 1, name, "restarts", restarts, "must be >= 1")
    check_option(max_restarts >= restarts, name, "max_restarts", max_restarts, f"must be >= restarts = {restarts}")
    check_option(max_iter >= 1, name, "max_iter", max_iter, "must be >= 1")
    check_option(tol >= 0, name, "tol", tol, "must be >= 0")
    check_option(refound >= 1, name, "refound", refound, "must be >= 1")
    check_option(round_tol >= 0, name, "round_tol", round_tol, "must be >= 0")
    check_option(patience >= 0, name, "patience", patience, "stale steps before a round stops; 0 runs every step")
    check_option(m is None or m >= 1, name, "m", m, "a positive batch size (or omitted: one batch of all points)")
    full = _chunked(ctx, name, n_samples, chunk_size, logit_normalize)
    w = full.theta0
    scale = w.abs() if adaptive else torch.ones_like(w)
    size = full.n if m is None else m
    generator = ctx.generator(121)
    results = []
    for i in range(0, full.n, size):
        loss = ChunkedLoss(ctx.model, full.loss_fn, full.x[i : i + size], full.y[i : i + size], chunk_size=chunk_size)
        results.append(worst_case_ball_max(
            loss.values_and_grads_batch, w, scale, rho=rho, norm=norm, generator=generator,
            restarts=restarts, max_restarts=max_restarts, max_iter=max_iter, tol=tol, refound=refound,
            round_tol=round_tol, patience=patience,
        ))
    key = _key(adaptive, f"sharpness_{norm}", logit_normalize)
    values = {
        key: sum(r.sharpness for r in results) / len(results),
        f"{key}_n_evals": float(sum(r.n_evals for r in results)),
        f"{key}_n_restarts": float(sum(r.n_restarts for r in results)),
        f"{key}_converged": float(all(r.converged for r in results)),
        f"{key}_last_restart_improved": float(any(r.last_restart_improved for r in results)),
    }
    info = {"rho": str(rho), "n_points": str(full.n), "batches": str(len(results))}
    return MeasureResult(values=values, info=info)


@measure(
    "average_sharpness",
    directions={k: 1 for k in AVG_KEYS},
    diagnostics=tuple(f"{k}_se" for k in AVG_KEYS),
    paper=PAPERS,
)
def average_sharpness(
    ctx: MeasureContext,
    *,
    adaptive: bool = True,
    rho: float = 0.05,
    logit_normalize: bool = False,
    n_draws: int = 100,
    n_samples: int | None = None,
    chunk_size: int = 2048,
) -> MeasureResult:
    """Average-case (adaptive) sharpness E_z L(w + ρ c ⊙ z) − L(w), z ~ N(0, I), c = |w| or 1: a mean over
    ``n_draws`` seeded Gaussian draws, with its standard error as the diagnostic ``<key>_se``."""
    name = "average_sharpness"
    check_option(rho > 0, name, "rho", rho, "must be > 0 (the noise scale)")
    check_option(n_draws >= 2, name, "n_draws", n_draws, "must be >= 2 so a standard error exists")
    loss = _chunked(ctx, name, n_samples, chunk_size, logit_normalize)
    w = loss.theta0
    scale = w.abs() if adaptive else torch.ones_like(w)
    res = average_case_rise(loss.values_batch, w, scale, rho=rho, n_draws=n_draws, generator=ctx.generator(122))
    key = _key(adaptive, "avg_sharpness", logit_normalize)
    return MeasureResult(values={key: res.rise, f"{key}_se": res.std_error}, info={"rho": str(rho), "n_points": str(loss.n)})


MEASURES = [adaptive_sharpness, average_sharpness]
