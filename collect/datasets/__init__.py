"""Raw data sources behind ``collect.data.load_dataset``: each returns a ``Pool`` of unscaled examples.

``collect.data`` turns a pool into a ``Dataset`` (relabelling, the S/A/E draw, the attack labels, standardisation);
the modules here only read or generate the examples.
"""

from collect.datasets.dispatch import load_labels, load_pool
from collect.datasets.pool import Pool

__all__ = ["Pool", "load_labels", "load_pool"]
