"""MLflow tag names shared by the modules that write runs (``collect.tracking``) and claim them (``collect.claims``).

A module of constants only, so that both can import it and neither has to import the other for a name.
"""

TAG_SWEEP = "sweep"  # the sweep a run belongs to
TAG_HASH = "config_hash"  # hash of the resolved configuration: one FINISHED run per hash
TAG_INTERVENTION = "intervention"  # the swept axes that differ from the base configuration
TAG_KIND = "flatlas.kind"  # "sweep" for a parent run, "config" for a child run
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag linking a child run to its parent
# MLflow 3.x UI: an experiment's type. "custom_model_development" opens the experiment on its runs table (model
# training); without the tag the UI may infer a GenAI experiment and open on traces.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
