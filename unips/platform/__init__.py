"""Experiment platform: Ray Train / Ray Tune / MLflow glue."""
