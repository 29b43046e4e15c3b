"""flatlas analyze: load runs into a ledger, test which measures predict generalization, write the report."""

__version__ = "0.1.0"
