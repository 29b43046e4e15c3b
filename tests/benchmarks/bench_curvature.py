"""Cost and accuracy of the curvature measures, measured side by side in one run.

    python tests/benchmarks/bench_curvature.py                 # everything (several minutes on 2 cores)
    python tests/benchmarks/bench_curvature.py --points 200    # a faster per-sample comparison
    python tests/benchmarks/bench_curvature.py --only lambda   # one part: per_sample | lambda | cost | quick

A. Per-sample Hessian trace of LeNet-5 (trained 3 epochs on 1,000 MNIST points) on ``--points`` training points:
   the exact Gauss–Newton method (``collect.hessian.per_sample``) vs a per-point Hutchinson loop with double
   backward and 16 Rademacher probes (the PyHessian way). Prints the speed ratio and the loop's error against the
   exact values. Target: exact ≥ 10x faster, and exact.
B. λ_max (k = 1) and the top 3 (k = 3) of the ``quick`` sweep's FCN (trained as its first configuration):
   Hessian-vector products needed by Lanczos vs power iteration (with deflation for k = 3, as PyHessian does) to
   reach a 1e-3 relative error against a tightly converged reference (Lanczos tol 1e-7). Lanczos is counted at
   its own certified stop (residual ≤ 1e-3·λ, which guarantees the error) and at the oracle point where its error
   first drops below 1e-3; power iteration at the oracle point (generous to it) and at PyHessian's
   change-of-mean stop. Target: ≥ 3x fewer products.
C. Cost of each curvature measure vs the margin measures (``margins``) on the same trained FCN (paper 000:
   1.5 h for the trace of all MNIST vs 5 s for margins).
D. Per-run cost of the curvature entries recommended for the ``quick`` sweep (printed as TOML), on its FCN.
E. Keskar sharpness: the default batched multistart maximiser vs the old default (L-BFGS-B, 20
   iterations) and the quick sweep's old setting (10 iterations) on trained quick-sweep FCNs: seconds, loss
   evaluations and the value each reaches (the maximisers return lower bounds; larger is better).
F. Measuring vs training: for ``--runs`` configurations of the ``quick`` sweep, the training time and,
   side by side in one process, old and new seconds of every measure in the sweep's list with the value each
   returns; then the medians per measure and per run. "old" = the quick sweep's measures at the last landing
   (commit 9119fb7): Hessian trace by Hutchinson (64-probe pilot, its SE printed), sharpness with sign-ascent
   steps of 0.5·r and patience 5. (Before that: PAC-Bayes one draw per pass, sharpness by L-BFGS-B.)

Runs with one torch thread unless ``--threads`` says otherwise. The machine may be shared: the load average is
printed beside every number; compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collect.config import RunConfig  # noqa: E402
from collect.data import load_dataset  # noqa: E402
from collect.hessian.lanczos import lanczos_top_eigenvalues  # noqa: E402
from collect.hessian.operator import ChunkedLoss  # noqa: E402
from collect.hessian.per_sample import exact_per_sample_trace  # noqa: E402
from collect.losses import get_loss  # noqa: E402
from collect.measures.context import MeasureContext  # noqa: E402
from collect.measures.registry import get_measure  # noqa: E402
from collect.models import build_model  # noqa: E402
from collect.optim import build_optimizer  # noqa: E402
from collect.runner import to_tensors  # noqa: E402
from collect.sweep import expand, find_sweep, load_spec  # noqa: E402
from collect.train import train  # noqa: E402

# The curvature entries recommended for the quick sweep (part D prints them as TOML).
QUICK_MEASURES: list[tuple[str, dict]] = [
    ("hessian_trace", {"rel_se": 0.05, "max_probes": 200}),
    ("lambda_max", {"tol": 1e-3, "max_iter": 60}),
    ("per_sample_trace", {"n_points": 1000}),
    ("sharpness", {"epsilon": 1e-3, "max_iter": 10}),
    ("pacbayes_flatness", {"n_draws": 5, "n_iter": 10}),
]


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


def trained(cfg: RunConfig) -> MeasureContext:
    """Train ``cfg`` as the runner does and return the measure context of the final model (eval mode)."""
    return trained_with_seconds(cfg)[0]


def trained_with_seconds(cfg: RunConfig) -> tuple[MeasureContext, float]:
    """``trained`` and the training time in seconds."""
    dataset = load_dataset(cfg.data, cfg.data_seed)
    data = to_tensors(dataset, torch.device("cpu"))
    model = build_model(cfg.model, dataset.input_shape, dataset.num_classes, cfg.seed)
    loss_fn = get_loss(cfg.loss)
    result = train(cfg, model, data, loss_fn, lambda m: build_optimizer(cfg.optim, m, loss_fn), progress=False)
    print(f"  trained {cfg.model.arch}: {result.steps} steps, {result.seconds:.1f} s, stop: {result.stop_reason}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, {data.x_train.shape[0]} training points")
    return MeasureContext(
        model=result.model.eval(), config=cfg, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
        y_test=data.y_test, is_attack=data.is_attack, num_classes=dataset.num_classes, loss_fn=loss_fn,
        init_state=result.init_state, device=torch.device("cpu"), seed=cfg.seed, next_iterate=result.next_iterate,
    ), result.seconds


def quick_config(**model_changes) -> RunConfig:
    cfg = expand(load_spec(find_sweep("quick")))[0].config
    if model_changes:
        from dataclasses import replace

        cfg = replace(cfg, model=replace(cfg.model, **model_changes), measures=())
    return cfg


# ---------------------------------------------------------------------------------------------- A
def hutchinson_loop(model, loss_fn, x, y, probes: int, seed: int) -> np.ndarray:
    """Per point: 16 probes zᵀ∇²ℓ_i z, each by double backward through that point's graph (PyHessian style)."""
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    out = np.empty(len(x))
    for i in range(len(x)):
        loss = loss_fn(model(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, params, create_graph=True)
        acc = 0.0
        for _ in range(probes):
            v = [(2 * torch.randint(0, 2, p.shape, generator=g) - 1).to(p.dtype) for p in params]
            hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
            acc += float(sum((a * b).sum() for a, b in zip(hv, v)))
        out[i] = acc / probes
    return out


def bench_per_sample(points: int) -> None:
    print(f"\nA. per-sample Hessian trace, LeNet-5, {points} MNIST training points ({load()})")
    cfg = quick_config(arch="lenet5")
    from dataclasses import replace

    cfg = replace(cfg, stop=replace(cfg.stop, max_epochs=3, train_acc=None, extra_epochs=0))
    ctx = trained(cfg)
    x, y = ctx.train_subset(points)
    exact_per_sample_trace(ctx.model, x[:4], y[:4], loss=cfg.loss)  # warm both up (first-call vmap/autograd setup)
    hutchinson_loop(ctx.model, ctx.loss_fn, x[:2], y[:2], probes=2, seed=1)
    t0 = time.perf_counter()
    exact, _ = exact_per_sample_trace(ctx.model, x, y, loss=cfg.loss)
    t_exact = time.perf_counter() - t0
    print(f"  exact (vmap per-sample Jacobians): {t_exact:7.2f} s  ({load()})")
    t0 = time.perf_counter()
    loop = hutchinson_loop(ctx.model, ctx.loss_fn, x, y, probes=16, seed=0)
    t_loop = time.perf_counter() - t0
    print(f"  Hutchinson loop, 16 probes/point: {t_loop:7.2f} s  ({load()})")
    exact = exact.double().numpy()
    rel = np.abs(loop - exact) / np.maximum(exact, 1e-12)
    print(f"  speed ratio loop/exact = {t_loop / t_exact:.1f}x  (target >= 10x)")
    print(f"  loop error vs exact: median relative {np.median(rel):.1%}, 90th percentile {np.quantile(rel, 0.9):.1%}, "
          f"mean signed {np.mean(loop - exact):+.3g} (mean exact trace {exact.mean():.3g}), "
          f"{np.mean(loop < 0):.1%} of loop estimates negative, Pearson r(loop, exact) = {np.corrcoef(loop, exact)[0, 1]:.3f}")


# ---------------------------------------------------------------------------------------------- B
def power_iteration(matvec, v0: torch.Tensor, max_iter: int, reference: float, rel: float, deflate=()):
    """PyHessian-style power iteration (optionally deflated against found eigenvectors). Returns the products until
    |λ_k − ref| ≤ rel·|ref| (oracle), until PyHessian's rule |λ_k − λ_{k−1}| < rel·|λ_k| and that stop's error,
    and the final vector."""
    def project(u: torch.Tensor) -> torch.Tensor:
        for e in deflate:
            u = u - torch.dot(u, e) * e
        return u

    v = project(v0)
    v = v / v.norm()
    prev, oracle, own, own_err = None, None, None, None
    for k in range(1, max_iter + 1):
        hv = project(matvec(v))
        lam = float(torch.dot(v, hv))  # Rayleigh quotient at v, then step
        if oracle is None and abs(lam - reference) <= rel * abs(reference):
            oracle = k
        if own is None and prev is not None and abs(lam - prev) < rel * abs(lam):
            own, own_err = k, abs(lam - reference) / abs(reference)
        prev = lam
        v = hv / hv.norm()
        if oracle is not None and own is not None:
            break
    return oracle, own, own_err, v


def bench_lambda(seeds: int = 3) -> None:
    print(f"\nB. lambda_max and top-3, quick sweep FCN ({load()})")
    ctx = trained(quick_config())
    loss = ChunkedLoss(ctx.model, ctx.loss_fn, ctx.x_train, ctx.y_train, chunk_size=2048)
    op = loss.hvp_operator()
    common = dict(dtype=loss.dtype, device=loss.device)
    ref = lanczos_top_eigenvalues(op, loss.dim, k=10, tol=1e-7, max_iter=400, generator=torch.Generator().manual_seed(99), **common)
    lam = ref.eigenvalues
    print(f"  reference top-10 spectrum (Lanczos tol 1e-7, {ref.n_matvecs} products): " + ", ".join(f"{v:.4g}" for v in lam))
    print(f"  lambda_2/lambda_1 = {lam[1] / lam[0]:.3f}: power iteration's eigenvalue error shrinks by its square per product")
    one, three = [], []
    for seed in range(seeds):
        for k, rows in ((1, one), (3, three)):
            track: list[tuple[int, np.ndarray]] = []
            res = lanczos_top_eigenvalues(
                op, loss.dim, k=k, tol=1e-3, max_iter=400, generator=torch.Generator().manual_seed(seed),
                callback=lambda n, theta: track.append((n, theta.copy())), **common,
            )
            ok = [n for n, th in track if len(th) >= k and all(abs(th[i] - lam[i]) <= 1e-3 * abs(lam[i]) for i in range(k))]
            g = torch.Generator().manual_seed(seed)
            found, pw_oracle, pw_own, pw_own_err = [], 0, 0, 0.0
            for i in range(k):
                v0 = torch.randn(loss.dim, generator=g, **common)
                o, w, e, vec = power_iteration(op, v0, 1000, lam[i], 1e-3, deflate=found)
                pw_oracle = None if (o is None or pw_oracle is None) else pw_oracle + o
                pw_own = None if (w is None or pw_own is None) else pw_own + w
                pw_own_err = max(pw_own_err, e or 0.0)
                found.append(vec)
            err = max(abs(res.eigenvalues[i] - lam[i]) / abs(lam[i]) for i in range(k))
            rows.append((res.n_matvecs, ok[0] if ok else None, pw_oracle, pw_own))
            print(f"  k={k} seed {seed}: Lanczos certified stop {res.n_matvecs} (max error {err:.1e}), oracle {rows[-1][1]}; "
                  f"power{' + deflation' if k > 1 else ''} oracle {pw_oracle}, change-of-mean stop {pw_own} "
                  f"(max error {pw_own_err:.1e})  ({load()})")
    for k, rows in ((1, one), (3, three)):
        lz_cert = np.mean([r[0] for r in rows])
        lz_orac = np.mean([r[1] for r in rows if r[1] is not None])
        pw = [r[2] for r in rows if r[2] is not None]
        if len(pw) < len(rows):
            print(f"  k={k}: power iteration missed 1e-3 within 1000 products per eigenvalue in {len(rows) - len(pw)} seeds")
            continue
        print(f"  k={k}: products to 1e-3 relative error: power (oracle) {np.mean(pw):.1f}, Lanczos certified {lz_cert:.1f} "
              f"({np.mean(pw) / lz_cert:.1f}x fewer), Lanczos oracle {lz_orac:.1f} ({np.mean(pw) / lz_orac:.1f}x fewer); target >= 3x")


# ---------------------------------------------------------------------------------------------- C, D
def timed(name: str, ctx: MeasureContext, **options) -> tuple[float, dict]:
    m = get_measure(name)
    t0 = time.perf_counter()
    res = m.fn(ctx, **options)
    return time.perf_counter() - t0, dict(res.values)


def bench_cost() -> None:
    print(f"\nC. cost of each curvature measure vs margins, quick sweep FCN ({load()})")
    ctx = trained(quick_config())
    t_margin = min(timed("margins", ctx)[0] for _ in range(3))
    print(f"  margins: {t_margin * 1000:.1f} ms (best of 3)")
    for name, options in [
        ("hessian_trace", {}),
        ("hessian_trace", {"method": "hutchpp"}),
        ("per_sample_trace", {"n_points": 1000}),
        ("lambda_max", {}),
        ("top_eigenvalues", {"k": 3}),
        ("hessian_frobenius", {}),
        ("relative_flatness", {}),
        ("sharpness", {}),
        ("pacbayes_flatness", {}),
        ("pacbayes_mag_flatness", {}),
    ]:
        t, values = timed(name, ctx, **options)
        main = {k: v for k, v in values.items() if k in (name, "per_sample_trace_mean", "top_eig_1", "hessian_trace_se",
                                                           "hessian_trace_n_hvp", "lambda_max_n_hvp", "per_sample_r_aceht")}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in main.items())
        print(f"  {name:22s} {str(options):22s} {t:8.2f} s = {t / t_margin:8.0f}x margins   {shown}  ({load()})")


def bench_quick() -> None:
    print(f"\nD. recommended quick-sweep curvature entries, per run on its FCN ({load()})")
    ctx = trained(quick_config())
    total = 0.0
    for name, options in QUICK_MEASURES:
        t, _ = timed(name, ctx, **options)
        total += t
        print(f"  {name:18s} {t:6.2f} s  ({load()})")
    runs = len(expand(load_spec(find_sweep("quick"))))
    print(f"  total {total:.1f} s per run; x {runs} runs = {total * runs / 60:.1f} min of measuring for the quick sweep")
    entries = ", ".join(
        f'{{name = "{n}", options = {{{", ".join(f"{k} = {v!r}" for k, v in o.items())}}}}}' for n, o in QUICK_MEASURES
    )
    print(f"  TOML: measures = [..., {entries}]")


# ---------------------------------------------------------------------------------------------- E, F
def sharpness_cost(runs: int) -> None:
    print(f"\nE. Keskar sharpness (eps 1e-3, 500 points) on trained quick FCNs: new default vs old L-BFGS-B ({load()})")
    for cfg in quick_configs(runs):
        ctx = trained(cfg)
        for label, opts in (("old: lbfgsb, max_iter 20", {"method": "lbfgsb", "max_iter": 20}),
                            ("old quick: lbfgsb, max_iter 10", {"method": "lbfgsb", "max_iter": 10}),
                            ("new default: multistart", {})):
            t, v = timed("sharpness", ctx, epsilon=1e-3, n_samples=500, **opts)
            print(f"  {label:32s} {t:6.2f} s  sharpness {v['sharpness']:.5g}  evals {v['sharpness_n_evals']:.0f}  "
                  f"restarts {v['sharpness_n_restarts']:.0f}  last restart improved "
                  f"{bool(v['sharpness_last_restart_improved'])}  ({load()})")


def quick_configs(runs: int) -> list[RunConfig]:
    """``runs`` configurations of the quick sweep, spread over its grid (every k-th of the 32)."""
    cfgs = [r.config for r in expand(load_spec(find_sweep("quick")))]
    step = max(1, len(cfgs) // runs)
    return cfgs[::step][:runs]


def throughput(runs: int) -> None:
    print(f"\nF. quick sweep: training vs measuring per run, old vs new paths side by side ({load()})")
    # "old": the quick sweep's measures as they were at the last landing (commit 9119fb7): the Hessian trace by
    # Hutchinson (64-probe pilot) and sharpness with sign-ascent steps of 0.5·r and a patience of 5.
    old_opts = {"hessian_trace": {"method": "hutchinson"}, "sharpness": {"step": 0.5, "patience": 5}}
    train_s, old_tot, new_tot = [], [], []
    per_old: dict[str, list[float]] = {}
    per_new: dict[str, list[float]] = {}
    for cfg in quick_configs(runs):
        ctx, seconds = trained_with_seconds(cfg)
        train_s.append(seconds)
        old_sum = new_sum = 0.0
        for spec in cfg.measures:
            t_new, v_new = timed(spec.name, ctx, **spec.options)
            t_old, v_old = (timed(spec.name, ctx, **{**spec.options, **old_opts[spec.name]})
                            if spec.name in old_opts else (t_new, v_new))
            new_sum += t_new
            old_sum += t_old
            per_new.setdefault(spec.name, []).append(t_new)
            per_old.setdefault(spec.name, []).append(t_old)
            key = spec.name if spec.name in v_new else next(iter(v_new))
            se = v_old.get(f"{key}_se")
            note = f"  (old ± {se:.3g})" if se else ""
            print(f"  {spec.name:18s} old {t_old:6.3f} s  new {t_new:6.3f} s   {key}: old {v_old.get(key, float('nan')):.5g}"
                  f"  new {v_new[key]:.5g}{note}")
        old_tot.append(old_sum)
        new_tot.append(new_sum)
        print(f"  -> run: training {train_s[-1]:.2f} s, measures old {old_sum:.2f} s, new {new_sum:.2f} s  ({load()})")
    print(f"  medians per measure over {len(train_s)} runs (old -> new, s): " + ", ".join(
        f"{k} {np.median(per_old[k]):.3f} -> {np.median(per_new[k]):.3f}" for k in per_new))
    print(f"  medians per run over {len(train_s)} runs: training {np.median(train_s):.2f} s, measures old "
          f"{np.median(old_tot):.2f} s, new {np.median(new_tot):.2f} s; new/training = "
          f"{np.median(new_tot) / np.median(train_s):.2f} (goal <= 1), old/new = {np.median(old_tot) / np.median(new_tot):.2f}x"
          f"  ({load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1000, help="training points for part A (default 1000)")
    parser.add_argument("--only", choices=["per_sample", "lambda", "cost", "quick", "sharpness", "throughput"],
                        help="run one part")
    parser.add_argument("--runs", type=int, default=4, help="quick-sweep configurations for parts E and F")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, see below)")
    args = parser.parse_args()
    # One thread by default: what each of `python -m collect`'s two workers gets on 2 cores, and on a shared machine
    # two threads per process measured 5-10x *slower* per Hessian-vector product (oversubscription).
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, {load()}")
    parts = {"per_sample": lambda: bench_per_sample(args.points), "lambda": bench_lambda, "cost": bench_cost,
             "quick": bench_quick, "sharpness": lambda: sharpness_cost(args.runs),
             "throughput": lambda: throughput(args.runs)}
    for name, fn in parts.items():
        if args.only in (None, name):
            fn()


if __name__ == "__main__":
    main()
