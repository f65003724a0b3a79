"""Mamba vs Transformers, measured: ``dltricks compare`` and its report."""

from dltricks.models.families import FAMILIES, Family, count_params, model_spec

__all__ = ["FAMILIES", "Family", "count_params", "model_spec"]
