"""Paper 002 section 5.1 on the `boolean` sweep: log volume by EP against direct sampling, and against sharpness and
test error. Prints the per-run table and the statistics quoted in reports/reproductions.md, section 8.

    python reports/boolean_volume.py --tracking-uri sqlite:////tmp/boolean/mlflow.db --experiment boolean

Runs enter when FINISHED, ``train.learned = 1`` and ``train.converged = 1`` (zero training error on S, the sweep's
comparison point); the others are counted and named. Statistics:

- EP vs sampling, over the runs whose function was sampled at least once: Pearson r, the mean of
  d = log V_EP − log V_sampled, and the mean and RMS of z = d / SE_sampled (SE = √((1 − p̂)/count), delta method).
  z is the sampling noise only; |z| ≫ 1 is EP's approximation error.
- Kendall τ_b (scipy.stats.kendalltau) of log V_EP against log sharpness (fig. 2: larger volume, lower sharpness;
  over distinct networks, ``distinct_networks``, since volume and sharpness belong to the network) and against test
  error (larger volume, lower error; over runs, since one network has a test error per target), and of log sharpness
  against test error (+) and against the training cross-entropy at the stop (the confound; no verdict). Each claim is
  a sign of τ; the verdict is
  ``analyze.stats.power.claim_verdict(τ, se0, ∞, claimed)`` with se0 = √(2(2n + 5) / (9n(n − 1))), the standard
  deviation of τ under independence (Kendall 1938), and the claimed effect τ = −0.5 (the paper gives no number:
  "correlate relatively well"; −0.5 is our reading of fig. 2 and of Mingard et al. 2020).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyze.ledger import finished, load_ledger  # noqa: E402
from analyze.stats.power import claim_verdict  # noqa: E402

CLAIMED_TAU = -0.5
EP, SAMPLED, SE = "measure.log_volume", "measure.log_volume_sampled", "diag.log_volume_sampled_se"
SHARPNESS, TEST_ERR = "measure.sharpness", "gen.test_err"


def at_target(ledger: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """The FINISHED runs that learned and reached zero training error, and a line per run left out."""
    done = finished(ledger)
    ok = (pl.col("train.learned") == 1.0) & (pl.col("train.converged") == 1.0)
    left = done.filter(~ok)
    notes = [f"left out: {r['tag.intervention']} seed {r['seed']} (train acc {r['gen.train_acc']:.3f})"
             for r in left.iter_rows(named=True)]
    return done.filter(ok).sort(["tag.intervention", "seed"]), notes


def distinct_networks(runs: pl.DataFrame) -> pl.DataFrame:
    """One row per distinct trained network: runs of different targets with the same seed whose training labels on S
    agree (the target's 1s all fell in E) train the identical network and log identical values, so the first of
    each (seed, log V_EP, sharpness) is kept (the paper's fig. 2 plots distinct functions)."""
    return runs.unique(subset=["seed", EP, SHARPNESS], keep="first", maintain_order=True)


def col(frame: pl.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` as float64 (nulls become NaN)."""
    return frame[name].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def tau_claim(x: np.ndarray, y: np.ndarray, claimed: float = CLAIMED_TAU) -> tuple[float, float, int, str]:
    """(Kendall τ_b, its two-sided p, n, claim_verdict of τ against ``claimed``) over the finite pairs."""
    keep = np.isfinite(x) & np.isfinite(y)
    n = int(keep.sum())
    if n < 3:
        return math.nan, math.nan, n, "undecided (fewer than 3 runs)"
    res = stats.kendalltau(x[keep], y[keep])
    se0 = math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))
    return float(res.statistic), float(res.pvalue), n, claim_verdict(float(res.statistic), se0, math.inf, claimed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", default="boolean")
    args = parser.parse_args(argv)
    ledger = load_ledger(tracking_uri=args.tracking_uri, experiment=args.experiment)
    missing = [c for c in (EP, SAMPLED, SE, SHARPNESS) if c not in ledger.columns]
    if missing:
        sys.exit(f"experiment {args.experiment!r} has no column(s) {', '.join(missing)}: run the boolean sweep's cpu "
                 "or paper scale (log_volume with direct_samples > 0, and sharpness)")
    runs, notes = at_target(ledger)
    print(f"{runs.height} runs at zero training error; seeds {sorted(set(runs['seed'].to_list()))}")
    for line in notes:
        print(line)

    print("\n| target | seed | epochs | train CE | test err | log V (EP) | log V (sampled) ± SE | z = (EP − s)/SE | sharpness |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs.iter_rows(named=True):
        s, se = r[SAMPLED], r[SE]
        sampled = f"{s:.2f} ± {se:.2f}" if math.isfinite(s) else "not sampled"
        z = f"{(r[EP] - s) / se:+.1f}" if math.isfinite(s) else ""
        print(f"| {r['tag.intervention']} | {r['seed']} | {r['train.epochs']:.0f} | {r['gen.train_loss']:.3f} | {r[TEST_ERR]:.3f} | {r[EP]:.2f} | "
              f"{sampled} | {z} | {r[SHARPNESS]:.3g} |")

    ep, sampled, se = (col(runs, c) for c in (EP, SAMPLED, SE))
    both = np.isfinite(sampled)
    d = ep[both] - sampled[both]
    z = d / se[both]
    if not both.any():
        print("\nEP vs direct sampling: no run's function was sampled (raise log_volume's direct_samples)")
    else:
        print(f"\nEP vs direct sampling over the {int(both.sum())} runs whose function was sampled "
              f"(range of sampled log V {sampled[both].min():.2f} to {sampled[both].max():.2f}):")
    if both.sum() >= 3:
        print(f"  Pearson r = {stats.pearsonr(ep[both], sampled[both]).statistic:.3f}")
    if both.any():
        print(f"  mean d = EP − sampled = {d.mean():+.3f} nats (range {d.min():+.2f} to {d.max():+.2f}); "
              f"mean z = {z.mean():+.2f}, RMS z = {math.sqrt(np.mean(z**2)):.2f}, |z| > 2 in {int((abs(z) > 2).sum())} of {len(z)}")
    print(f"  {int((~both).sum())} runs not sampled (EP log V from {ep[~both].min():.1f} to {ep[~both].max():.1f}; "
          f"sampling floor ln(1/N) for the run's N samples)" if (~both).any() else "  every function was sampled")

    nets = distinct_networks(runs)
    print(f"\nKendall tau_b, claimed tau = {CLAIMED_TAU} (verdict: analyze.stats.power.claim_verdict). Volume and "
          f"sharpness are properties of the network: over the {nets.height} distinct networks; test error is one of "
          f"(network, target): over the {runs.height} runs.")
    rows = (("log V (EP) vs log sharpness (fig. 2), per network", col(nets, EP), np.log(col(nets, SHARPNESS)), CLAIMED_TAU),
            ("log V (EP) vs test error, per run", col(runs, EP), col(runs, TEST_ERR), CLAIMED_TAU),
            ("log sharpness vs test error, per run (claimed sign +)", np.log(col(runs, SHARPNESS)), col(runs, TEST_ERR),
             -CLAIMED_TAU),
            ("log sharpness vs train CE at the stop, per network (no claim: the confound)",
             np.log(col(nets, SHARPNESS)), col(nets, "gen.train_loss"), None))
    for name, x, y, claimed in rows:
        tau, p, n, verdict = tau_claim(x, y, -CLAIMED_TAU if claimed is None else claimed)
        print(f"  {name}: tau = {tau:+.3f}, p = {p:.2g}, n = {n}" + ("" if claimed is None else f": {verdict}"))

if __name__ == "__main__":
    main()
