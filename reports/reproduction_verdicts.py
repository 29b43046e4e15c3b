"""The verdicts of reports/reproductions.md, computed from the numbers its tables report.

    python reports/reproduction_verdicts.py

Every input below is copied from a table of reproductions.md (sections 1–7; section 8's verdicts are printed by
reports/boolean_volume.py). Each claim is judged with ``analyze.stats.power.claim_verdict`` (reproduced / not
reproduced / undecided (design too weak: detectable effect X vs paper's Y)) or, when the paper states a direction
but no size, with the same rule on the sign alone:

- two groups of runs a, b (seeds): d̂ = ȳ_a − ȳ_b, se = σ √(1/n_a + 1/n_b), σ² = max(s²_seeds, p(1 − p)/n_test) as in
  ``analyze.stats.power`` (s²_seeds pooled within groups, df = n_a + n_b − 2; the binomial term for test accuracies
  only; without two runs of a group σ² is the binomial term alone, df = ∞, a lower bound of the noise);
- a Kendall τ over n runs: se = √(2(2n + 5) / (9n(n − 1))), τ's standard deviation under independence, df = ∞;
- a Pearson r over n points: Fisher z = atanh r, se = 1/√(n − 3), df = ∞.

Where the paper gives no number, "our reading" is the size used for the undecided/not-reproduced test (|τ| = 0.5,
|r| = 0.5, as in section 8; a sharpness spike of at least ×2, ln 2 = 0.69), and a sign-only claim is reproduced when the 95 % CI excludes 0 on the claimed side.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

from analyze.stats.power import claim_verdict, detectable_difference, difference_interval


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


def line(name: str, diff: float, se: float, df: float, claimed: float | None, sign: int, n: str) -> str:
    lo, hi, p = difference_interval(diff, se, df)
    mde = detectable_difference(se, df)
    df_text = "∞" if math.isinf(df) else f"{df:g}"
    paper = "no size" if claimed is None else f"{claimed:+.3g}"
    return (f"| {name} | {n} | {diff:+.4g} | [{lo:+.3g}, {hi:+.3g}] | {p:.2g} | {se:.3g} ({df_text} df) | {mde:.3g} | "
            f"{paper} | {verdict(diff, se, df, claimed, sign)} |")


def main() -> None:
    print("| claim | runs | estimate | 95 % CI | p | se (df) | detectable effect | paper's effect | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")

    # 1. keskar-batch: batch 16 vs 256, 3 seeds each, |E| = 1,250
    small_acc, large_acc = [0.9344, 0.94, 0.9472], [0.924, 0.9288, 0.9296]
    print(line("keskar: test acc small − large batch", *two_groups(small_acc, large_acc, 1250), 0.9834 - 0.9794, +1, "3 + 3"))
    small_tr, large_tr = [1.70, 35.46, 3.40], [3.61, 3.58, 3.65]
    print(line("keskar: ln trace small − large batch", *two_groups(np.log(small_tr), np.log(large_tr)),
               math.log(1.01 / 6.62), -1, "3 + 3"))
    small_sk, large_sk = [0.499, -0.2669, 0.6281], [0.8854, 0.7152, 0.8068]
    print(line("keskar: margin skewness small − large batch", *two_groups(small_sk, large_sk), None, -1, "3 + 3"))

    # 2. margin-trace: Pearson r(training accuracy, r(trace, ACEHT)) over the 12 curve points of one LeNet-5 run
    r, n = -0.152, 12
    print(line("margin-trace: atanh r(train acc, r(trace, ACEHT)) (our reading r = 0.5)", math.atanh(r),
               1 / math.sqrt(n - 3), math.inf, math.atanh(0.5), +1, "1 seed, 12 points"))
    r, n = 0.904, 1000
    print(line("margin-trace: atanh r(trace, ACEHT) − atanh 0.8, final LeNet-5", math.atanh(r) - math.atanh(0.8),
               1 / math.sqrt(n - 3), math.inf, None, +1, "1 seed, 1,000 points"))

    # 3. flat-by-scaling: log10 Hessian trace at alpha vs alpha = 1, seeds 0 and 1
    base = np.log10([30.83, 25.28])
    for alpha, tr in ((10, [0.1215, 0.03141]), (100, [3.181e-26, 7.8e-32])):
        print(line(f"flat-by-scaling: log10 trace α = {alpha} − α = 1", *two_groups(np.log10(tr), base), None, -1,
                   "2 + 2"))

    # 4. volume: per-run table (optimizer, |A|, seed, test error, train acc, log volume, sharpness)
    for opt, rows in VOLUME.items():
        for subset, keep in SUBSETS:
            kept = [row for row in rows if keep(row[1])]
            if subset != "all 12 runs" and len(kept) == len(rows):
                continue
            err = [row[0] for row in kept]
            for measure, col, claimed in (("log volume", 2, -0.5), ("sharpness", 3, +0.5 if opt == "sgd" else None)):
                if claimed is None:
                    continue
                tau, se, p, n = kendall([row[col] for row in kept], err)
                print(line(f"volume {opt}: τ({measure}, test error), {subset} (our reading |τ| = 0.5)", tau, se,
                           math.inf, claimed, int(np.sign(claimed)), f"{n} (2 seeds)"))
        for subset, keep in SUBSETS:
            kept = [row for row in rows if keep(row[1])]
            if opt == "sgd" or (subset != "all 12 runs" and len(kept) == len(rows)):
                continue
            tau, se, p, n = kendall([row[3] for row in kept], [row[0] for row in kept])
            print(f"| volume {opt}: τ(sharpness, test error), {subset} (paper: the correlation breaks; no size) | "
                  f"{n} (2 seeds) | {tau:+.3f} | — | {p:.2g} | {se:.3g} (∞ df) | {detectable_difference(se, math.inf):.3g} "
                  "| — | descriptive |")

    # 5. alpha-scaling: spike = ln(max sharpness at epochs 40, 44 / sharpness at epoch 36), scaled arm − control,
    # seeds 0-2 (statistic declared after seed 0 and before seeds 1 and 2 were run)
    spike = {a: [math.log(max(s40, s44) / s36) for s36, s40, s44 in rows] for a, rows in ALPHA.items()}
    for arm, name in (("5.9", "α = 5.9, eq. (1)'s direction"), ("1/5.9", "α = 1/5.9, the reverse direction")):
        print(line(f"alpha-scaling: spike ln(max sharpness after / before), {name} − control",
                   *two_groups(spike[arm], spike["1"]), math.log(2), +1, "3 + 3"))  # "markedly": our reading ×2

    # 6. l2-sharper: test accuracy, weight decay 5e-3 vs 0, means of 2 seeds (binomial noise only: a lower bound)
    for arch, wd0, wd5 in (("affine", 0.885, 0.8855), ("fcn", 0.9015, 0.902), ("lenet5", 0.92, 0.9125)):
        p = (wd0 + wd5) / 2
        se = math.sqrt(p * (1 - p) / 1000 * (1 / 2 + 1 / 2))
        print(line(f"l2-sharper {arch}: test acc wd 5e-3 − 0 (binomial noise only)", wd5 - wd0, se, math.inf, None,
                   +1, "2 + 2"))

    # 7. lambda-max: test-accuracy differences of single runs, |E| = 1,000 (binomial noise only: a lower bound)
    for name, a, b, sign in (
        ("lr 0.2 − 0.01, batch 32", 0.889, 0.895, +1),
        ("SAM ρ 0.2 − 0.05, batch 32", 0.899, 0.895, +1),
        ("dropout 0.7 − 0.2", 0.879, 0.892, -1),
        ("batch norm − none, batch 32", 0.885, 0.896, -1),
        ("batch norm − none, batch 500", 0.873, 0.893, -1),
    ):
        print(line(f"lambda-max: test acc {name} (binomial noise only)", *two_groups([a], [b], 1000), None, sign, "1 + 1"))
    ratios = np.array([0.998, 1.003, 1.002])  # final λ_max / (2/η) for η = 0.2, 0.3, 0.4
    d, se = float(ratios.mean() - 1), float(ratios.std(ddof=1) / math.sqrt(ratios.size))
    lo, hi = d - stats.t.ppf(0.95, ratios.size - 1) * se, d + stats.t.ppf(0.95, ratios.size - 1) * se
    print(f"| lambda-max: final λ_max·η/2 − 1 over η = 0.2, 0.3, 0.4 (TOST, margin ±0.15) | 3 (1 seed each) | {d:+.4f} "
          f"| 90 % CI [{lo:+.4f}, {hi:+.4f}] | — | {se:.3g} (2 df) | — | ±0.15 | "
          f"{'reproduced' if -0.15 < lo and hi < 0.15 else 'undecided'} |")


# sharpness at epochs 36 (last point before the scaling), 40 (right after it) and 44 per seed 0, 1, 2 (section 5)
ALPHA = {
    "1": [(0.01055, 0.009557, 0.008131), (0.01046, 0.009415, 0.008179), (0.009829, 0.008522, 0.007443)],
    "5.9": [(0.01055, 0.008754, 0.003766), (0.01046, 0.009335, 0.004133), (0.009829, 0.008588, 0.003703)],
    "1/5.9": [(0.01055, 0.1277, 0.2358), (0.01046, 0.1082, 0.1731), (0.009829, 0.1031, 0.1419)],
}
SUBSETS = (("all 12 runs", lambda acc: True), ("runs at zero training error", lambda acc: acc >= 1.0))
# (test error, train acc, log volume, sharpness) per run of the volume sweep, section 4's per-run table
VOLUME = {
    "adam": [(0.118, 1, -354.3, 0.07228), (0.104, 1, -355.1, 0.01752), (0.209, 1, -535.2, 0.123),
             (0.199, 1, -512.9, 0.09197), (0.334, 1, -677.9, 0.08366), (0.305, 1, -644.9, 0.1732),
             (0.408, 1, -782.4, 0.1149), (0.403, 1, -741.1, 0.2501), (0.438, 1, -808.6, 0.08715),
             (0.438, 1, -814, 0.1147), (0.512, 1, -892.3, 0.03881), (0.491, 1, -867.3, 0.1147)],
    "entropy_sgd": [(0.127, 1, -362.2, 0.1165), (0.119, 1, -361.4, 0.09475), (0.221, 1, -527.9, 0.06008),
                    (0.228, 1, -534.9, 0.09367), (0.313, 1, -656, 0.04992), (0.319, 1, -673.1, 0.1423),
                    (0.417, 1, -786.9, 0.08987), (0.389, 1, -763, 0.04738), (0.463, 1, -832.6, 0.09007),
                    (0.444, 1, -818.4, 0.06582), (0.497, 0.999, -867.2, 0.0006413), (0.52, 0.998, -895, 0.0005788)],
    "sgd": [(0.119, 1, -358.9, 0.06415), (0.12, 1, -361.5, 0.08603), (0.216, 1, -526.4, 0.03704),
            (0.226, 1, -546.5, 0.06492), (0.337, 1, -680, 0.1589), (0.321, 1, -686, 0.1035),
            (0.419, 1, -764.2, 0.08197), (0.393, 1, -754.5, 0.08418), (0.465, 1, -823.5, 0.08901),
            (0.457, 1, -803.2, 0.04586), (0.521, 0.998, -866.4, 0.004523), (0.508, 0.998, -888.8, 0.002817)],
}


if __name__ == "__main__":
    main()
