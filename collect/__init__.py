"""flatlas collect: train families of models from sweep specs, measure them, log everything to MLflow."""

__version__ = "0.1.0"
