"""Where the time of a collected sweep went, per run: training, each measure, and the rest (set-up and logging).

    python reports/study_time.py --tracking-uri sqlite:////path/to/mlflow.db --experiment study

A run's wall time is its MLflow child run's end_time − start_time; ``train.seconds`` and each ``time.<measure>``
come from the ledger. One run at a time, the child run spans training and measuring:

    process = wall,  rest = wall − train.seconds − Σ measures   (data loading, model set-up, evaluation curves, MLflow writes)

With ``--stacked`` (the sweep ran with ``collect --stack``), a child run is created after its stack trained and its
wall time covers measuring and logging only, while ``train.seconds`` is the stack's training time divided among its
runs:

    process = wall + train.seconds,  rest = wall − Σ measures

Prints medians, totals and shares of Σ process (process seconds summed over runs: with 2 workers the sweep's wall
time is about half the total, less where a worker waited) and the store's size on disk.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyze.ledger import load_ledger  # noqa: E402
from collect.tracking import sqlite_path  # noqa: E402


def run_seconds(uri: str, experiment: str) -> pl.DataFrame:
    """run_id and wall seconds (end − start) of every finished child run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    rows, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                                  max_results=5000, page_token=token)
        rows += [(r.info.run_id, (r.info.end_time - r.info.start_time) / 1000) for r in page if r.info.end_time]
        token = page.token
        if not token:
            break
    return pl.DataFrame(rows, schema=["run_id", "wall"], orient="row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", default="study")
    parser.add_argument("--stacked", action="store_true",
                        help="the sweep ran with --stack: child runs were created after training (see above)")
    args = parser.parse_args()
    ledger = load_ledger(tracking_uri=args.tracking_uri, experiment=args.experiment).filter(pl.col("status") == "FINISHED")
    frame = ledger.join(run_seconds(args.tracking_uri, args.experiment), on="run_id")
    measures = sorted(c for c in frame.columns if c.startswith("time."))
    frame = frame.with_columns(pl.sum_horizontal(measures).alias("measures"))
    if args.stacked:
        frame = frame.with_columns(process=pl.col("wall") + pl.col("train.seconds"),
                                   rest=pl.col("wall") - pl.col("measures"))
    else:
        frame = frame.with_columns(process=pl.col("wall"),
                                   rest=pl.col("wall") - pl.col("train.seconds") - pl.col("measures"))
    parts = ["process", "train.seconds", "measures", *measures, "rest"]
    print(f"{len(frame)} finished runs of '{args.experiment}'" + (" (stacked)" if args.stacked else ""))
    print(f"{'part':28s} {'median s/run':>12s} {'total s':>10s} {'share':>7s}")
    total = frame["process"].sum()
    for part in parts:
        col = frame[part]
        print(f"{part:28s} {col.median():12.3f} {col.sum():10.0f} {col.sum() / total:7.1%}")
    db = sqlite_path(args.tracking_uri)
    if db is not None:
        artifacts = db.parent / f"{db.stem}_artifacts"
        art = sum(p.stat().st_size for p in artifacts.rglob("*") if p.is_file()) if artifacts.exists() else 0
        print(f"store: {db} {db.stat().st_size / 1e6:.0f} MB, artifacts {art / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
