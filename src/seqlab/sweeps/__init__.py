"""Sweeps on Optuna: the spec, the study and its workers, the report with its statistics (docs/sweeps.md)."""
