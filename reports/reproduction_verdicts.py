"""The verdicts of reports/reproductions.md, computed from the logged runs of the paper sweeps.

    PYTHONPATH=$PWD python reports/reproduction_verdicts.py --tracking-uri sqlite:////tmp/repro/mlflow.db

reads the FINISHED runs of each sweep (``--sweeps``, default all seven with verdicts; section 8's are printed by
reports/boolean_volume.py) and prints one table of claims per sweep: estimate, 95 % CI, p, standard error, the
detectable effect (power 0.8 at α = 0.05) and the verdict. Each claim is judged with
``analyze.stats.power.claim_verdict`` (reproduced / not reproduced / undecided (design too weak: detectable effect X
vs paper's Y)), with the same rule on the sign alone when the paper states a direction but no size, or with an
equivalence rule for a claim of "no (meaningful) change":

- two groups of runs a, b (seeds): d̂ = ȳ_a − ȳ_b, se = σ √(1/n_a + 1/n_b), σ² = max(s²_seeds, p(1 − p)/n_test) as in
  ``analyze.stats.power`` (s²_seeds pooled within groups, df = n_a + n_b − 2; the binomial term for test accuracies
  only; without two runs of a group σ² is the binomial term alone, df = ∞, a lower bound of the noise);
- one group against a reference value r: d̂ = ȳ − r, se = s/√n, df = n − 1 (Student's one-sample t);
- a Kendall τ over n runs: se = √(2(2n + 5) / (9n(n − 1))), τ's standard deviation under independence, df = ∞;
- "no meaningful change" with margin m (stated per claim): reproduced when the (1 − 2α) CI lies inside (−m, m) (TOST)
  — or, for a one-sided claim ("no gain", "not smaller"), when the one-sided bound is on the claimed side of ±m —
  not reproduced when the 95 % CI excludes 0 on the other side and beyond m, else undecided.

Where the paper gives no number, "our reading" is the size used (|τ| = 0.5 as in section 8; a sharpness spike of at
least ×2, ln 2 = 0.69; one point of test accuracy, 0.01, for "vanishes" and "unchanged"; 15 % for "λ_max unchanged"
and "λ_max ≈ 2/η"). Every statistic here was fixed before the runs it judges.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import polars as pl
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_figures import col, curve, for_each_sweep  # noqa: E402  (the sibling script's store readers)

from analyze.stats.power import claim_verdict, detectable_difference, difference_interval  # noqa: E402

# name, n, d̂, se, df, claimed (None: sign only), sign, equivalence (margin m, side) for a claim of no meaningful change
Row = tuple[str, str, float, float, float, float | None, int, tuple[float, int] | None]


def two_groups(a: Sequence[float], b: Sequence[float], n_test: int | None = None) -> tuple[float, float, float]:
    """(d̂ = mean a − mean b, se, df) with σ² = max(pooled seed variance, binomial variance of an accuracy)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    df_seeds = (a.size - 1) + (b.size - 1)
    s2 = ((a.size - 1) * a.var(ddof=1 if a.size > 1 else 0) + (b.size - 1) * b.var(ddof=1 if b.size > 1 else 0)) / df_seeds \
        if df_seeds > 0 else None
    binomial = None
    if n_test is not None:
        p = float(np.concatenate([a, b]).mean())
        binomial = p * (1 - p) / n_test
    if s2 is None:
        if binomial is None:
            raise ValueError("one run per group and no test-set size: the noise cannot be sized")
        s2, df = binomial, math.inf
    else:
        s2, df = max(s2, binomial or 0.0), float(df_seeds)
    return float(a.mean() - b.mean()), math.sqrt(s2 * (1 / a.size + 1 / b.size)), df


def one_group(a: Sequence[float], reference: float) -> tuple[float, float, float]:
    """(d̂ = mean a − reference, s/√n, n − 1): Student's one-sample t."""
    a = np.asarray(a, float)
    if a.size < 2:
        raise ValueError("one run: the seed-to-seed spread cannot be sized")
    return float(a.mean() - reference), float(a.std(ddof=1) / math.sqrt(a.size)), float(a.size - 1)


def kendall(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float, int]:
    """(τ_b, its se under independence, p, n)."""
    tau, p = stats.kendalltau(x, y)
    n = len(x)
    return float(tau), math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1))), float(p), n


def verdict(diff: float, se: float, df: float, claimed: float | None, sign: int) -> str:
    """claim_verdict for a sized claim; for a sign-only claim (``claimed`` None) the same rule on the sign."""
    if claimed is not None:
        return claim_verdict(diff, se, df, claimed)
    lo, hi, _ = difference_interval(diff, se, df)
    if lo > 0 or hi < 0:
        return "reproduced" if np.sign(diff) == sign else "not reproduced"
    return f"undecided (design too weak: detectable effect {detectable_difference(se, df):.3g}; the paper gives no size)"


def equivalence(diff: float, se: float, df: float, margin: float, side: int = 0) -> str:
    """A claim of no meaningful change, margin m > 0. side 0: |d| < m (TOST, the 90 % CI inside (−m, m));
    side +1: "no gain", d < m (the one-sided 95 % upper bound below m); side −1: "not smaller", d > −m."""
    crit = stats.norm.ppf(0.95) if math.isinf(df) else stats.t.ppf(0.95, df)
    lo90, hi90 = diff - crit * se, diff + crit * se
    lo, hi, _ = difference_interval(diff, se, df)
    if (side == 0 and -margin < lo90 and hi90 < margin) or (side > 0 and hi90 < margin) or (side < 0 and lo90 > -margin):
        return {0: f"reproduced (the 90 % CI lies inside ±{margin:.3g})", 1: f"reproduced (the one-sided 95 % bound is below {margin:.3g})",
                -1: f"reproduced (the one-sided 95 % bound is above −{margin:.3g})"}[side]
    if (side >= 0 and lo > margin) or (side <= 0 and hi < -margin):
        return f"not reproduced (a change beyond {margin:.3g})"
    return f"undecided (design too weak: detectable effect {detectable_difference(se, df):.3g} vs margin {margin:.3g})"


def line(row: Row) -> str:
    name, n, diff, se, df, claimed, sign, equivalent_within = row
    lo, hi, p = difference_interval(diff, se, df)
    mde = detectable_difference(se, df)
    df_text = "∞" if math.isinf(df) else f"{df:g}"
    if equivalent_within is not None:
        margin, side = equivalent_within
        paper, word = f"±{margin:.3g} (margin)", equivalence(diff, se, df, margin, side)
    else:
        paper = "no size" if claimed is None else f"{claimed:+.3g}"
        word = verdict(diff, se, df, claimed, sign)
    return (f"| {name} | {n} | {diff:+.4g} | [{lo:+.3g}, {hi:+.3g}] | {p:.2g} | {se:.3g} ({df_text} df) | {mde:.3g} | "
            f"{paper} | {word} |")


HEADER = ("| claim | runs | estimate | 95 % CI | p | se (df) | detectable effect | paper's effect | verdict |\n"
          "|---|---|---|---|---|---|---|---|---|")


def values(led: pl.DataFrame, key: str) -> np.ndarray:
    return col(led, key).cast(pl.Float64).to_numpy()


def at(led: pl.DataFrame, **hp: object) -> pl.DataFrame:
    """The runs whose ``hp.<name>`` equal the given values (floats compared to 1e-9 relative)."""
    for name, v in hp.items():
        c = pl.col(f"hp.{name}")
        led = led.filter((c.cast(pl.Float64) - float(v)).abs() <= 1e-9 * max(1.0, abs(float(v)))
                         if isinstance(v, (int, float)) and not isinstance(v, bool) else c.cast(pl.Utf8) == str(v))
    return led.sort("seed")


def n_test_of(led: pl.DataFrame) -> int:
    return int(led["hp.n_test"].cast(pl.Float64)[0])


# ------------------------------------------------------------------------------------------------------- sections
def keskar_batch(led: pl.DataFrame, client: object) -> Iterable[Row]:
    sizes = sorted({float(b) for b in led["hp.batch_size"].cast(pl.Float64).to_list()})
    small, large = at(led, batch_size=sizes[0]), at(led, batch_size=sizes[-1])
    n = f"{small.height} + {large.height}"
    yield ("test acc, small − large batch", n, *two_groups(values(small, "test_acc"), values(large, "test_acc"),
                                                             n_test_of(led)), 0.9834 - 0.9794, +1, None)
    yield ("ln Hessian trace, small − large batch", n, *two_groups(np.log(values(small, "hessian_trace")),
                                                                     np.log(values(large, "hessian_trace"))),
           math.log(1.01 / 6.62), -1, None)
    yield ("margin skewness, small − large batch (more left-skewed)", n,
           *two_groups(values(small, "margin_skew"), values(large, "margin_skew")), None, -1, None)


def margin_trace(led: pl.DataFrame, client: object) -> Iterable[Row]:
    affine, lenet = at(led, arch="affine"), at(led, arch="lenet5")
    worst = 0.0
    for run_id in affine["run_id"].to_list():
        _, r = curve(client, run_id, "per_sample_r_aceht")
        worst = max([worst, *np.abs(1 - r).tolist()])
    print(f"affine: largest |1 − r(trace, ACEHT)| over every curve point of {affine.height} runs: {worst:.2e} "
          f"({'reproduced' if worst < 1e-3 else 'not reproduced'}: an identity, r = 1)")
    r_final = values(lenet, "per_sample_r_aceht")
    n_points = values(lenet, "per_sample_n_correct")
    lows = [math.tanh(math.atanh(r) - 1.96 / math.sqrt(n - 3)) for r, n in zip(r_final, n_points)]
    print("LeNet-5 final r(trace, ACEHT) per seed, 95 % Fisher-z CI lower bound over its correctly classified points: "
          + ", ".join(f"{r:.3f} (n = {n:.0f}, lower {lo:.3f})" for r, n, lo in zip(r_final, n_points, lows))
          + f"; the declared statistic (a), r in 0.8–1 for every seed: {'reproduced' if min(lows) > 0.8 else 'not shown'}")
    yield (f"LeNet-5: atanh r(trace, ACEHT) − atanh 0.8, final model (r = {', '.join(f'{x:.3f}' for x in r_final)})",
           f"{lenet.height} seeds", *one_group(np.arctanh(r_final), math.atanh(0.8)), None, +1, None)
    rises = []
    for run_id in lenet["run_id"].to_list():
        steps, r = curve(client, run_id, "per_sample_r_aceht")
        s_acc, acc = curve(client, run_id, "train_acc")
        acc_at = dict(zip(s_acc.tolist(), acc.tolist()))
        a = np.array([acc_at.get(s, math.nan) for s in steps.tolist()])
        ok = np.isfinite(a) & np.isfinite(r)
        rises.append(float(stats.pearsonr(a[ok], r[ok]).statistic))
        print(f"LeNet-5 run {run_id[:8]}: {ok.sum()} curve points, Pearson r(train acc, r(trace, ACEHT)) = {rises[-1]:+.3f}")
    yield (f"LeNet-5: r rises with training accuracy (mean over seeds of Pearson r(train acc, r(trace, ACEHT)) over "
           f"the curve points: {', '.join(f'{x:+.3f}' for x in rises)})", f"{lenet.height} seeds",
           *one_group(rises, 0.0), None, +1, None)


def flat_by_scaling(led: pl.DataFrame, client: object) -> Iterable[Row]:
    base = at(led, last_layer_scale=1.0)
    for alpha in (10.0, 100.0):
        scaled = at(led, last_layer_scale=alpha)
        yield (f"log10 Hessian trace, α = {alpha:g} − α = 1", f"{scaled.height} + {base.height}",
               *two_groups(np.log10(values(scaled, "hessian_trace")), np.log10(values(base, "hessian_trace"))),
               None, -1, None)


def volume(led: pl.DataFrame, client: object) -> Iterable[Row]:
    for opt in ("sgd", "adam", "entropy_sgd"):
        runs = at(led, optimizer=opt)
        kept = runs.filter(pl.col("train.converged") == 1) if "train.converged" in runs.columns else runs
        seeds = kept["seed"].n_unique()
        err = values(kept, "test_err")
        n = f"{kept.height} of {runs.height} at zero training error ({seeds} seeds)"
        tau, se, _, _ = kendall(values(kept, "log_volume"), err)
        yield (f"{opt}: τ(log volume, test error) (claimed −; our reading |τ| = 0.5)", n, tau, se, math.inf, -0.5, -1,
               None)
        tau, se, _, _ = kendall(values(kept, "sharpness"), err)
        if opt == "sgd":
            yield ("sgd: τ(sharpness, test error) (claimed +; our reading 0.5)", n, tau, se, math.inf, 0.5, +1, None)
        else:  # the paper: the correlation can break for this optimizer; "works" read as τ >= 0.5
            yield (f"{opt}: τ(sharpness, test error) stays below a working correlation (our reading 0.5)", n,
                   tau, se, math.inf, None, +1, (0.5, 1))


def alpha_scaling(led: pl.DataFrame, client: object) -> Iterable[Row]:
    spikes: dict[str, list[float]] = {}
    moved = 0.0
    for r in led.sort("hp.alpha_scale", "seed").iter_rows(named=True):
        at_epoch = float(r["hp.at_epoch"])
        s_sh, sh = curve(client, r["run_id"], "sharpness")
        s_lv, lv = curve(client, r["run_id"], "log_volume")
        s_ep, ep = curve(client, r["run_id"], "epoch")
        epoch_of = dict(zip(s_ep.tolist(), ep.tolist()))
        e_sh = np.array([epoch_of.get(s, math.nan) for s in s_sh.tolist()])
        e_lv = np.array([epoch_of.get(s, math.nan) for s in s_lv.tolist()])
        before, after = sh[e_sh < at_epoch][-1], sh[e_sh >= at_epoch][:2]
        key = "1" if abs(float(r["hp.alpha_scale"]) - 1) < 1e-9 else ("up" if float(r["hp.alpha_scale"]) > 1 else "down")
        spikes.setdefault(key, []).append(math.log(after.max() / before))
        moved = max(moved, abs(lv[e_lv >= at_epoch][0] - lv[e_lv < at_epoch][-1]))
    print(f"log volume, first point after the scaling minus last point before it: largest |change| over "
          f"{led.height} runs {moved:.3g} nats")
    for arm, name in (("up", "α > 1, eq. (1)'s direction"), ("down", "α < 1, the reverse direction")):
        yield (f"spike ln(max sharpness at the two points after / the last before), {name} − control",
               f"{len(spikes[arm])} + {len(spikes['1'])}", *two_groups(spikes[arm], spikes["1"]), math.log(2), +1, None)


def l2_sharper(led: pl.DataFrame, client: object) -> Iterable[Row]:
    wds = sorted({float(w) for w in led["hp.weight_decay"].cast(pl.Float64).to_list()})
    for arch in ("affine", "fcn", "lenet5"):
        none, strong = at(led, arch=arch, weight_decay=wds[0]), at(led, arch=arch, weight_decay=wds[-1])
        if none.height == 0 or strong.height == 0:
            continue
        n = f"{strong.height} + {none.height}"
        print(f"{arch}: train cross-entropy at the stop, wd {wds[-1]:g} / {wds[0]:g}: "
              f"{np.mean(values(strong, 'train_loss')):.4f} / {np.mean(values(none, 'train_loss')):.4f}")
        for key, label in (("hessian_trace", "ln Hessian trace"), ("lambda_max", "ln λ_max"),
                           ("hessian_frobenius", "ln Hessian Frobenius norm")):
            yield (f"{arch}: {label}, wd {wds[-1]:g} − 0 (sharper with L2)", n,
                   *two_groups(np.log(values(strong, key)), np.log(values(none, key))), None, +1, None)
        yield (f"{arch}: test acc, wd {wds[-1]:g} − 0 (generalises better with L2)", n,
               *two_groups(values(strong, "test_acc"), values(none, "test_acc"), n_test_of(led)), None, +1, None)


def lambda_max(led: pl.DataFrame, client: object) -> Iterable[Row]:
    def case(label: str) -> pl.DataFrame:
        runs = led.filter(pl.col("tag.intervention") == label).sort("seed")
        if runs.height == 0:
            raise ValueError(f"lambda-max: no finished run of case {label!r}")
        return runs

    n_test = n_test_of(led)

    def pair(a: str, b: str, key: str, log: bool = False, n: int | None = None) -> tuple[str, float, float, float]:
        ra, rb = case(a), case(b)
        ya, yb = values(ra, key), values(rb, key)
        return (f"{ra.height} + {rb.height}", *two_groups(np.log(ya) if log else ya, np.log(yb) if log else yb, n))

    small, large = "lr x batch: small batch, lr", "lr x batch: large batch, lr"
    yield ("(1) ln λ_max, lr 0.2 − 0.01, batch 32 (smaller)", *pair(f"{small} 0.2", f"{small} 0.01", "lambda_max", True), None, -1, None)
    yield ("(1) ln λ_max, lr 0.2 − 0.01, batch 500 (smaller)", *pair(f"{large} 0.2", f"{large} 0.01", "lambda_max", True), None, -1, None)
    yield ("(1) test acc, lr 0.2 − 0.01, batch 32 (better)", *pair(f"{small} 0.2", f"{small} 0.01", "test_acc", n=n_test), None, +1, None)
    yield ("(1) test acc, lr 0.2 − 0.01, batch 500 (the gain vanishes)", *pair(f"{large} 0.2", f"{large} 0.01", "test_acc", n=n_test), None, +1, (0.01, 1))
    yield ("(2) ln λ_max, batch 128 lr 0.2 − batch 32 lr 0.05 (smaller)", *pair("linear scaling: batch 128, lr 0.2", f"{small} 0.05", "lambda_max", True), None, -1, None)
    yield ("(2) test acc, batch 128 lr 0.2 − batch 32 lr 0.05 (unchanged)", *pair("linear scaling: batch 128, lr 0.2", f"{small} 0.05", "test_acc", n=n_test), None, 0, (0.01, 0))
    for size in ("small", "large"):
        yield (f"(3) ln λ_max, SAM ρ 0.2 − 0.05, {size} batch (smaller)", *pair(f"SAM: {size} batch, rho 0.2", f"SAM: {size} batch, rho 0.05", "lambda_max", True), None, -1, None)
    yield ("(3) test acc, SAM ρ 0.2 − 0.05, small batch (better)", *pair("SAM: small batch, rho 0.2", "SAM: small batch, rho 0.05", "test_acc", n=n_test), None, +1, None)
    yield ("(3) test acc, SAM ρ 0.2 − 0.05, large batch (the gain vanishes)", *pair("SAM: large batch, rho 0.2", "SAM: large batch, rho 0.05", "test_acc", n=n_test), None, +1, (0.01, 1))
    yield ("(4) ln λ_max, dropout 0.7 − 0.2 (smaller)", *pair("dropout: p 0.7", "dropout: p 0.2", "lambda_max", True), None, -1, None)
    yield ("(4) test acc, dropout 0.7 − 0.2 (worse)", *pair("dropout: p 0.7", "dropout: p 0.2", "test_acc", n=n_test), None, -1, None)
    for size, plain in (("small", f"{small} 0.05"), ("large", f"{large} 0.05")):
        yield (f"(5) ln λ_max, batch norm − none, {size} batch (not smaller)", *pair(f"batch norm: {size} batch", plain, "lambda_max", True), None, -1, (math.log(1.15), -1))
        yield (f"(5) test acc, batch norm − none, {size} batch (better)", *pair(f"batch norm: {size} batch", plain, "test_acc", n=n_test), None, +1, None)
    gd = led.filter(pl.col("hp.optimizer") == "gd")
    ratio = values(gd, "lambda_max") * gd["hp.lr"].cast(pl.Float64).to_numpy() / 2
    yield (f"(6) final λ_max·η/2 − 1, GD at η = 0.2, 0.3, 0.4 (at the edge of stability; ratios "
           f"{', '.join(f'{x:.3f}' for x in ratio)})", f"{gd.height}", *one_group(ratio, 1.0), None, 0, (0.15, 0))


SECTIONS: dict[str, Callable[[pl.DataFrame, object], Iterable[Row]]] = {
    "keskar-batch": keskar_batch,
    "margin-trace": margin_trace,
    "flat-by-scaling": flat_by_scaling,
    "volume": volume,
    "alpha-scaling": alpha_scaling,
    "l2-sharper": l2_sharper,
    "lambda-max": lambda_max,
}


def verdict_table(name: str, led: pl.DataFrame, client: object, uri: str) -> str:
    """The claims of sweep ``name`` as a markdown table (a section's own notes print while it is computed)."""
    rows = list(SECTIONS[name](led, client))
    return "\n" + HEADER + "\n" + "\n".join(line(row) for row in rows)


def main() -> None:
    for_each_sweep(__doc__.splitlines()[0], list(SECTIONS), verdict_table)

if __name__ == "__main__":
    main()
