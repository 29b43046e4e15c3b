"""Log the written report as an artifact of the experiment's most recent parent (sweep) run, for ``mlflow ui``."""

from __future__ import annotations

from pathlib import Path

SWEEP_KIND = "sweep"  # tag flatlas.kind of a sweep invocation's parent run (collect.tracking.start_parent)
ARTIFACT_DIR = "report"


def log_report_to_mlflow(path: Path | str, tracking_uri: str | None, experiment: str | None) -> str | None:
    """Attach ``path`` under ``report/`` to the most recent parent run of ``experiment``; return that run's id.

    Returns None (logging nothing) when the experiment does not exist or has no parent run, e.g. a ledger imported
    from another study. ``tracking_uri`` None means ``$MLFLOW_TRACKING_URI`` or the default store.
    """
    from mlflow import MlflowClient

    from collect.tracking import TAG_KIND, resolve_tracking_uri, sqlite_path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report {path} does not exist; write it first (write_report)")
    if experiment is None:
        return None
    uri = resolve_tracking_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return None
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{TAG_KIND}` = '{SWEEP_KIND}'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        return None
    run_id = runs[0].info.run_id
    client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    return run_id
