"""Links into the MLflow UI that open on the model-training views (runs table, run page), not the GenAI ones.

MLflow 3.17's UI has two workflows, "GenAI" (traces, evaluation) and "Model training" (runs, metrics). Which one a
page shows is a setting of the browser (local storage, GenAI unless the user switched), overridden by the URL query
``workflowType=machine_learning``; the experiment tag ``mlflow.experimentKind`` (``collect.tags``) records the
experiment's type but does not switch the view. So every link flatlas writes carries the query.
"""

from __future__ import annotations

from urllib.parse import quote

MODEL_TRAINING_QUERY = "workflowType=machine_learning"


def experiment_url(base: str, experiment_id: object) -> str:
    """The experiment's runs table: ``<base>/#/experiments/<id>/runs?workflowType=machine_learning``."""
    return f"{base.rstrip('/')}/#/experiments/{quote(str(experiment_id), safe='')}/runs?{MODEL_TRAINING_QUERY}"


def run_url(base: str, run_id: object) -> str:
    """A run's page: ``<base>/#/runs/<run id>?workflowType=machine_learning`` (MLflow redirects it to the run's
    experiment)."""
    return f"{base.rstrip('/')}/#/runs/{quote(str(run_id), safe='')}?{MODEL_TRAINING_QUERY}"
