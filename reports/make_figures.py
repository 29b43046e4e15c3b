"""Tables and figures of reports/reproductions.md, straight from the logged runs of the seven paper sweeps.

    PYTHONPATH=$PWD python reports/make_figures.py --tracking-uri sqlite:////tmp/repro/mlflow.db --sweeps lambda-max

prints one markdown block per sweep (the tables and numbers quoted in reproductions.md) and writes
reports/figures/<sweep>*.png. Only FINISHED runs are used. Columns are read as ``measure.<key>`` or ``diag.<key>``
(whichever the store has), curves as ``curve.<key>`` or ``curve/<key>``.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from scipy import stats  # noqa: E402

from analyze.ledger import finished, load_ledger, load_per_sample  # noqa: E402

FIGURES = Path(__file__).parent / "figures"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def col(frame: pl.DataFrame, key: str) -> pl.Series:
    """``measure.<key>`` or ``diag.<key>`` or the column itself; NaNs where the store has neither."""
    for name in (key, f"measure.{key}", f"diag.{key}", f"gen.{key}", f"train.{key}"):
        if name in frame.columns:
            return frame[name]
    return pl.Series(key, [math.nan] * frame.height)


def value(row: dict[str, Any], key: str) -> Any:
    for name in (key, f"measure.{key}", f"diag.{key}", f"gen.{key}", f"train.{key}", f"hp.{key}", f"tag.{key}"):
        if name in row and row[name] is not None:
            return row[name]
    return math.nan


def curve(client: MlflowClient, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    for name in (f"curve.{key}", f"curve/{key}"):
        hist = client.get_metric_history(run_id, name)
        if hist:
            pts = sorted((m.step, m.value) for m in hist)
            return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    return np.array([]), np.array([])


def sweep_runs(tracking_uri: str, sweep: str) -> pl.DataFrame:
    """The FINISHED runs of experiment ``sweep``, without the sweep's parent run."""
    led = finished(load_ledger(tracking_uri=tracking_uri, experiment=sweep))
    return led.filter(pl.col("tag.flatlas.kind") != "parent") if "tag.flatlas.kind" in led.columns else led


def fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (int, np.integer)) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e6):
        return str(int(x))
    return f"{x:.{digits}g}"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r if isinstance(r, str) else fmt(r) for r in row) + " |" for row in rows]
    return "\n".join(lines)


def sharpness_keys(frame: pl.DataFrame) -> list[str]:
    """Every logged output of the sharpness measure (value and its convergence diagnostics)."""
    return sorted({c.split(".", 1)[1] for c in frame.columns if c.split(".", 1)[-1].startswith("sharpness")
                   and c.startswith(("measure.", "diag."))})


# ---------------------------------------------------------------------------------------------------------------
def keskar_batch(led: pl.DataFrame, client: MlflowClient, uri: str) -> str:
    led = led.sort("hp.batch_size", "seed")
    rows = []
    for r in led.iter_rows(named=True):
        rows.append([value(r, "batch_size"), r["seed"], value(r, "train_loss"), value(r, "test_loss"), value(r, "train_acc"),
                     value(r, "test_acc"), f"{value(r, 'hessian_trace'):.2f} ± {value(r, 'hessian_trace_se'):.2f}",
                     value(r, "margin_skew"), value(r, "margin_mean"), value(r, "margin_min"), value(r, "steps")])
    for b in sorted(set(led["hp.batch_size"].to_list())):
        sub = led.filter(pl.col("hp.batch_size") == b)
        rows.append([f"**mean {b}**", ""] + [float(np.mean(col(sub, k).to_numpy())) for k in
                    ("train_loss", "test_loss", "train_acc", "test_acc", "hessian_trace", "margin_skew", "margin_mean", "margin_min")]
                    + [""])
        rows[-1][6] = fmt(rows[-1][6])
    out = [table(["batch", "seed", "train loss", "test loss", "train acc", "test acc", "Hessian trace (± s.e.)",
                  "margin skew", "margin mean", "margin min", "steps"], rows)]
    sizes = sorted(set(led["hp.batch_size"].to_list()))
    if len(sizes) == 2:
        both = set(led.filter(pl.col("hp.batch_size") == sizes[0])["seed"]) & set(led.filter(pl.col("hp.batch_size") == sizes[1])["seed"])
        small, large = (led.filter((pl.col("hp.batch_size") == b) & pl.col("seed").is_in(sorted(both))).sort("seed") for b in sizes)
        d_acc = col(small, "test_acc").to_numpy() - col(large, "test_acc").to_numpy()
        d_tr = col(small, "hessian_trace").to_numpy() - col(large, "hessian_trace").to_numpy()
        t = stats.ttest_1samp(d_acc, 0.0) if len(d_acc) > 1 else None
        out.append(f"\nSeeds with both batch sizes: {sorted(both)}. Per-seed test-accuracy difference small − large: {', '.join(f'{x:+.4f}' for x in d_acc)} "
                   f"(mean {d_acc.mean():+.4f}, paired t-test p = {t.pvalue:.3g}); trace difference: "
                   f"{', '.join(f'{x:+.1f}' for x in d_tr)}.")
    per = load_per_sample(led, "per_sample_trace", tracking_uri=uri)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for b, colour in zip(sizes, ("tab:blue", "tab:red")):
        for r in led.filter((pl.col("hp.batch_size") == b) & (pl.col("seed") == 0)).iter_rows(named=True):
            ps = per.get(r["run_id"])
            if ps is None:
                continue
            axes[0].hist(ps["output_margin"].to_numpy(), bins=40, alpha=0.5, color=colour, label=f"batch {b}", density=True)
            axes[1].scatter(ps["output_margin"].to_numpy(), ps["trace"].to_numpy(), s=3, alpha=0.4, color=colour, label=f"batch {b}")
    axes[0].set(xlabel="output margin (1,000 training points, seed 0)", ylabel="density")
    axes[1].set(xlabel="output margin", ylabel="per-sample Hessian trace", yscale="log")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(FIGURES / "keskar-batch.png", dpi=110)
    return "\n".join(out)


def margin_trace(led: pl.DataFrame, client: MlflowClient, uri: str) -> str:
    rows, lines = [], []
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for r in led.sort("hp.arch", "seed").iter_rows(named=True):
        rows.append([value(r, "arch"), r["seed"], value(r, "train_acc"), value(r, "test_acc"), value(r, "per_sample_n_correct"),
                     value(r, "per_sample_r_aceht"), value(r, "per_sample_r_aceht_lof"), value(r, "per_sample_r_margin_bound"),
                     value(r, "per_sample_r_margin_bound_lof")])
        steps, r_ace = curve(client, r["run_id"], "per_sample_r_aceht")
        s_acc, acc = curve(client, r["run_id"], "train_acc")
        acc_at = dict(zip(s_acc.tolist(), acc.tolist()))
        accs = np.array([acc_at.get(s, math.nan) for s in steps.tolist()])
        ax.plot(steps, r_ace, marker="o", ms=2, label=f"{value(r, 'arch')}, seed {r['seed']}: r(trace, ACEHT)")
        lines.append(f"{value(r, 'arch')}, seed {r['seed']}: r(trace, ACEHT) along training = {', '.join(f'{x:.3f}' for x in r_ace)} at steps "
                     f"{', '.join(str(int(s)) for s in steps)}; training accuracy {', '.join(f'{x:.3f}' for x in accs)}.")
        ok = np.isfinite(accs) & np.isfinite(r_ace)
        if ok.sum() > 2:
            lines.append(f"  Pearson r(training accuracy, r(trace, ACEHT)) over {ok.sum()} points: "
                         f"{np.corrcoef(accs[ok], r_ace[ok])[0, 1]:.3f}")
            late = ok & (accs >= 0.5)
            if late.sum() > 2:
                lines.append(f"  over the {late.sum()} points with training accuracy >= 0.5: "
                             f"{np.corrcoef(accs[late], r_ace[late])[0, 1]:.3f}")
    ax.set(xlabel="step", ylabel="Pearson r (correct points)", ylim=(0, 1.05))
    ax.legend()
    fig.tight_layout()
    fig.savefig(FIGURES / "margin-trace.png", dpi=110)
    first = led.filter(pl.col("seed") == led["seed"].min())  # the scatter of the first seed of each model
    per = load_per_sample(first, "per_sample_trace", tracking_uri=uri)
    fig, axes = plt.subplots(1, max(1, len(per)), figsize=(5 * max(1, len(per)), 3.6))
    for ax, r in zip(np.atleast_1d(axes), [r for r in first.sort("hp.arch").iter_rows(named=True) if r["run_id"] in per]):
        ps = per[r["run_id"]]
        ax.scatter(ps["aceht"].to_numpy(), ps["trace"].to_numpy(), s=3, alpha=0.5)
        ax.set(title=value(r, "arch"), xlabel="ACEHT", ylabel="per-sample trace")
    fig.tight_layout()
    fig.savefig(FIGURES / "margin-trace-scatter.png", dpi=110)
    header = ["model", "seed", "train acc", "test acc", "correct points", "r(trace, ACEHT)", "r, LOF", "r(trace, margin bound)", "r, LOF"]
    return table(header, rows) + "\n\n" + "\n".join(lines)


def flat_by_scaling(led: pl.DataFrame, client: MlflowClient, uri: str) -> str:
    led = led.sort("seed", "hp.last_layer_scale")
    rows = [[r["seed"], value(r, "last_layer_scale"), value(r, "train_acc"), value(r, "test_acc"), value(r, "train_loss"),
             value(r, "hessian_trace"), value(r, "lambda_max"), value(r, "lambda_max_converged"), value(r, "margin_mean"),
             value(r, "margin_min"), value(r, "steps")] for r in led.iter_rows(named=True)]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for seed in sorted(set(led["seed"].to_list())):
        sub = led.filter(pl.col("seed") == seed)
        a = sub["hp.last_layer_scale"].to_numpy()
        ax.plot(a, np.abs(col(sub, "hessian_trace").to_numpy()) + 1e-40, "o-", label=f"trace, seed {seed}")
        ax.plot(a, np.abs(col(sub, "lambda_max").to_numpy()) + 1e-40, "s--", label=f"|λ_max|, seed {seed}")
    ax.set(xscale="log", yscale="log", xlabel="α (last layer scale)", ylabel="Hessian measure")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIGURES / "flat-by-scaling.png", dpi=110)
    return table(["seed", "α", "train acc", "test acc", "train loss", "Hessian trace", "λ_max", "λ_max converged",
                  "margin mean", "margin min", "steps"], rows)


def volume(led: pl.DataFrame, client: MlflowClient, uri: str) -> str:
    rows = []
    keys = sharpness_keys(led)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for opt in sorted(set(led["hp.optimizer"].to_list())):
        sub = led.filter(pl.col("hp.optimizer") == opt)
        err = col(sub, "test_err").to_numpy()
        lv, sh = col(sub, "log_volume").to_numpy(), col(sub, "sharpness").to_numpy()
        tau_v, p_v = stats.kendalltau(lv, err)
        tau_s, p_s = stats.kendalltau(sh, err)
        rows.append([opt, sub.height, f"{np.corrcoef(lv, err)[0, 1]:+.3f}", f"{tau_v:+.3f} (p = {p_v:.2g})",
                     f"{np.corrcoef(sh, err)[0, 1]:+.3f}", f"{tau_s:+.3f} (p = {p_s:.2g})"])
        axes[0].scatter(lv, err, label=opt, s=12)
        axes[1].scatter(sh, err, label=opt, s=12)
    axes[0].set(xlabel="log volume", ylabel="test error")
    axes[1].set(xlabel="Keskar sharpness", ylabel="test error", xscale="log")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(FIGURES / "volume.png", dpi=110)
    out = table(["optimizer", "runs", "r(log_volume, test error)", "τ(log_volume, test error)", "r(sharpness, test error)",
                 "τ(sharpness, test error)"], rows)
    diag = [[opt, *(f"{np.nanmean(col(led.filter(pl.col('hp.optimizer') == opt), k).to_numpy()):.4g}" for k in keys)]
            for opt in sorted(set(led["hp.optimizer"].to_list()))]
    out += "\n\nSharpness outputs (means over each optimizer's runs):\n\n" + table(["optimizer", *keys], diag)
    per_run = [[value(r, "optimizer"), value(r, "attack_size"), r["seed"], value(r, "test_err"), value(r, "train_acc"),
                value(r, "log_volume"), *(value(r, k) for k in keys)]
               for r in led.sort("hp.optimizer", "hp.attack_size", "seed").iter_rows(named=True)]
    out += "\n\nPer run:\n\n" + table(["optimizer", "|A|", "seed", "test error", "train acc", "log volume", *keys], per_run)
    return out


def alpha_text(a: float) -> str:
    """α as the spec writes it: "5.9" for α ≥ 1, "1/5.9" for α < 1 (the reverse direction)."""
    return f"{a:g}" if a >= 1 else f"1/{1 / a:.3g}"


def alpha_scaling(led: pl.DataFrame, client: MlflowClient, uri: str) -> str:
    """Curves per α (either direction: α > 1 grows layer i and shrinks layer i+1, α < 1 the reverse), plus one
    summary row per α: sharpness at the last point before the scaling, the first point after it, the maximum after
    it, the final value, and the log-volume range after zero training error."""
    out, summary = [], []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    keys = sharpness_keys(led)
    several_seeds = led["seed"].n_unique() > 1 if "seed" in led.columns else False
    for r in led.sort("hp.alpha_scale", "seed").iter_rows(named=True):
        a = value(r, "alpha_scale")
        at = value(r, "at_epoch") or 0
        s_sh, sh = curve(client, r["run_id"], "sharpness")
        s_lv, lv = curve(client, r["run_id"], "log_volume")
        s_acc, acc = curve(client, r["run_id"], "train_acc")
        s_ep, ep = curve(client, r["run_id"], "epoch")
        epoch_of = dict(zip(s_ep.tolist(), ep.tolist()))
        e_sh = np.array([epoch_of.get(s, math.nan) for s in s_sh.tolist()])
        label = f"α = {alpha_text(a)}" + (f", seed {r['seed']}" if several_seeds else "")
        axes[0].plot(e_sh, sh, "o-", label=label)
        e_lv = np.array([epoch_of.get(s, math.nan) for s in s_lv.tolist()])
        axes[1].plot(e_lv, lv, "o-", label=label)
        out.append(f"{label}: sharpness by epoch " + ", ".join(f"{e:g}: {v:.4g}" for e, v in zip(e_sh, sh)))
        out.append(f"{label}: log volume by epoch " + ", ".join(f"{e:g}: {v:.6g}" for e, v in zip(e_lv, lv)))
        first_full = next((epoch_of.get(s, math.nan) for s, v in zip(s_acc.tolist(), acc) if v >= 1.0), math.nan)
        after = [v for s, v in zip(s_acc.tolist(), acc) if epoch_of.get(s, 0) >= at]
        before_sh, after_sh = sh[e_sh < at], sh[e_sh >= at]
        lv_after_fit = lv[e_lv > first_full] if math.isfinite(first_full) else lv[:0]
        summary.append([alpha_text(a), r["seed"], first_full,
                        before_sh[-1] if before_sh.size else math.nan, after_sh[0] if after_sh.size else math.nan,
                        after_sh[1] if after_sh.size > 1 else math.nan, after_sh.max() if after_sh.size else math.nan,
                        sh[-1] if sh.size else math.nan,
                        f"{lv_after_fit.min():.6g} to {lv_after_fit.max():.6g}" if lv_after_fit.size else "–",
                        min(after) if after else math.nan, value(r, "test_acc")])
        out.append(f"{label}: first zero training error at epoch {first_full:g}; min train acc after scaling "
                   f"{min(after) if after else math.nan:.4g}; test acc {value(r, 'test_acc'):.4g}; final "
                   + ", ".join(f"{k} = {fmt(value(r, k))}" for k in keys))
        for k in keys:
            if k != "sharpness":
                s_k, v_k = curve(client, r["run_id"], k)
                if len(v_k):
                    out.append(f"{label}: curve {k}: " + ", ".join(
                        f"{epoch_of.get(s, math.nan):g}: {fmt(v)}" for s, v in zip(s_k.tolist(), v_k)))
    for ax, name in zip(axes, ("Keskar sharpness", "log volume")):
        ax.set(xlabel="epoch", ylabel=name)
        ax.legend()
    axes[0].set_yscale("log")
    fig.tight_layout()
    fig.savefig(FIGURES / "alpha-scaling.png", dpi=110)
    head = ["α", "seed", "first zero training error (epoch)", "sharpness: last point before scaling", "first point after",
            "next point", "max after scaling", "final", "log volume after zero error", "min train acc after scaling",
            "test acc"]
    return table(head, summary) + "\n\n" + "\n".join(out)


def l2_sharper(led: pl.DataFrame, client: MlflowClient, uri: str) -> str:
    keys = ("test_acc", "train_acc", "train_loss", "hessian_trace", "lambda_max", "hessian_frobenius", "l2_norm")
    rows = []
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for arch in ("affine", "fcn", "lenet5"):
        sub = led.filter(pl.col("hp.arch") == arch)
        if sub.height == 0:
            continue
        for wd in sorted(set(sub["hp.weight_decay"].to_list())):
            s = sub.filter(pl.col("hp.weight_decay") == wd)
            rows.append([arch, wd, *(float(np.nanmean(col(s, k).to_numpy())) for k in keys)])
        wds = sorted(set(sub["hp.weight_decay"].to_list()))
        base = {k: np.nanmean(col(sub.filter(pl.col("hp.weight_decay") == wds[0]), k).to_numpy()) for k in keys}
        for ax, k in zip(axes, ("hessian_trace", "lambda_max", "test_acc")):
            ys = [np.nanmean(col(sub.filter(pl.col("hp.weight_decay") == w), k).to_numpy()) / base[k] for w in wds]
            ax.plot(range(len(wds)), ys, "o-", label=arch)
            ax.set(xticks=range(len(wds)), xticklabels=[f"{w:g}" for w in wds], xlabel="weight decay",
                   ylabel=f"{k} / value at wd {wds[0]:g}")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(FIGURES / "l2-sharper.png", dpi=110)
    return "Means over seeds:\n\n" + table(["model", "weight decay", "test acc", "train acc", "train loss", "Hessian trace",
                                             "λ_max", "Hessian Frobenius", "weight ℓ2 norm"], rows)


def initial_lambda_max(config_hash: str, sweep: str = "lambda-max") -> float:
    """λ_max of the training loss at initialisation, recomputed from the run's spec config and seed (the curve starts
    at the first evaluation, not at step 0): same data, same seeded initialisation, same Lanczos measure."""
    import torch

    from collect.data import load_dataset
    from collect.losses import get_loss
    from collect.measures.context import MeasureContext
    from collect.measures.curvature import lambda_max as lanczos_lambda_max
    from collect.models import build_model
    from collect.runner import to_tensors
    from collect.sweep import expand, find_sweep, load_spec

    planned = {p.config_hash: p.config for p in expand(load_spec(find_sweep(sweep)), "cpu")}
    cfg = planned[config_hash]
    dataset = load_dataset(cfg.data, cfg.data_seed)
    data = to_tensors(dataset, torch.device("cpu"))
    model = build_model(cfg.model, dataset.input_shape, dataset.num_classes, cfg.seed).eval()
    ctx = MeasureContext(model=model, config=cfg, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
                         y_test=data.y_test, is_attack=data.is_attack, num_classes=dataset.num_classes,
                         loss_fn=get_loss(cfg.loss), init_state={}, device=torch.device("cpu"), seed=cfg.seed)
    options = dict(next(m.options for m in cfg.measures if m.name == "lambda_max"))
    return lanczos_lambda_max(ctx, **options).values["lambda_max"]


def lambda_max(led: pl.DataFrame, client: MlflowClient, uri: str) -> str:
    """One row per configuration: means over its seeds (± the seed-to-seed standard deviation where there are
    several), then the GD curves against 2/η."""
    rows = []
    for label in sorted(set(led["tag.intervention"].to_list())):
        runs = led.filter(pl.col("tag.intervention") == label)
        r = runs.row(0, named=True)
        gd = value(r, "optimizer") == "gd"
        lr = value(r, "lr")

        def mean_sd(key: str, digits: int = 4) -> str:
            v = col(runs, key).cast(pl.Float64).to_numpy()
            return fmt(float(np.mean(v)), digits) + (f" ± {np.std(v, ddof=1):.2g}" if v.size > 1 else "")

        lam = col(runs, "lambda_max").cast(pl.Float64).to_numpy()
        rows.append([label, lr, "all" if gd else value(r, "batch_size"), value(r, "loss"), runs.height,
                     mean_sd("test_acc"), mean_sd("train_acc"), mean_sd("lambda_max"), mean_sd("lambda_max_between_iterates"),
                     2 / lr, f"{np.mean(lam) * lr / 2:.3f}", mean_sd("steps"),
                     ", ".join(sorted(set(str(x) for x in runs["tag.stop_reason"].to_list())))])
    out = [table(["configuration", "lr", "batch", "loss", "seeds", "test acc", "train acc", "λ_max",
                  "λ_max between iterates", "2/η", "mean λ_max/(2/η)", "steps", "stop"], rows)]
    gd_runs = led.filter(pl.col("hp.optimizer") == "gd").sort("hp.lr", "seed")
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    colours = dict(zip(sorted(set(gd_runs["hp.lr"].cast(pl.Float64).to_list())), ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    for r in gd_runs.iter_rows(named=True):
        lr = value(r, "lr")
        colour = colours[float(lr)]
        steps, lam = curve(client, r["run_id"], "lambda_max")
        ax.plot(steps, lam, "o-", color=colour, ms=3, label=f"GD η = {lr:g}, seed {r['seed']}")
        ax.axhline(2 / lr, color=colour, ls="--", lw=0.8)
        half = lam[len(lam) // 2:]
        lam0 = initial_lambda_max(r["tag.config_hash"])
        ax.plot([0], [lam0], "x", color=colour)
        out.append(f"GD η = {lr:g}, seed {r['seed']} (2/η = {2 / lr:.3g}): λ_max at initialisation {lam0:.3g} (ratio {lam0 * lr / 2:.3f}); curve.lambda_max = {', '.join(f'{x:.3g}' for x in lam)} at steps "
                   f"{', '.join(str(int(s)) for s in steps)}; final λ_max/(2/η) = {value(r, 'lambda_max') * lr / 2:.3f}; "
                   f"second half of the curve: mean ratio {np.mean(half) * lr / 2:.3f}, range "
                   f"{np.min(half) * lr / 2:.3f}–{np.max(half) * lr / 2:.3f}")
    ax.set(xlabel="step", ylabel="λ_max of the training loss (dashed: 2/η)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(FIGURES / "lambda-max-eos.png", dpi=110)
    sgd = led.filter(pl.col("hp.optimizer") != "gd")
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.scatter(col(sgd, "lambda_max").to_numpy(), col(sgd, "test_acc").to_numpy())
    for r in sgd.iter_rows(named=True):
        ax.annotate(value(r, "intervention").split(":")[0], (value(r, "lambda_max"), value(r, "test_acc")), fontsize=6)
    ax.set(xlabel="λ_max (final iterate)", ylabel="test accuracy")
    fig.tight_layout()
    fig.savefig(FIGURES / "lambda-max.png", dpi=110)
    return "\n".join(out)


SWEEPS: dict[str, Callable[[pl.DataFrame, MlflowClient, str], str]] = {
    "keskar-batch": keskar_batch,
    "margin-trace": margin_trace,
    "flat-by-scaling": flat_by_scaling,
    "volume": volume,
    "alpha-scaling": alpha_scaling,
    "l2-sharper": l2_sharper,
    "lambda-max": lambda_max,
}


def for_each_sweep(description: str, names: Sequence[str], show: Callable[[str, pl.DataFrame, MlflowClient, str], str]) -> None:
    """The command line both report scripts share: ``--tracking-uri URI [--sweeps a,b]`` (default ``names``); for each
    sweep, a heading with its number of finished runs, then what ``show(name, runs, client, uri)`` returns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--sweeps", default=",".join(names), help="comma-separated sweep names")
    args = parser.parse_args()
    client = MlflowClient(tracking_uri=args.tracking_uri)
    for name in args.sweeps.split(","):
        led = sweep_runs(args.tracking_uri, name)
        print(f"## {name} ({led.height} finished runs)\n")
        print(show(name, led, client, args.tracking_uri))
        print()


def main() -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    for_each_sweep(__doc__.splitlines()[0], list(SWEEPS), lambda name, led, client, uri: SWEEPS[name](led, client, uri))

if __name__ == "__main__":
    main()
