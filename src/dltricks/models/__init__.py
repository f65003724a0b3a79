"""Assembled networks and the model registry.

Importing this package registers the built-in models (``list_models()`` shows them). Each is
registered with metadata ``task`` ("classification" | "segmentation" | "sequence") and
``example``: ``dict(kwargs=..., input=shape, dtype="float" | "long", output=shape)`` (plus
``high``, the exclusive token-id bound, for ``dtype="long"``), from which registry-driven tests
build and run every model.
"""

from dltricks.models import (  # noqa: F401  (registers the models)
    cnn,
    deepmedic,
    mamba,
    minilm,
    mlp,
    reference,
    rnn,
    seg,
    transformer,
    unet,
)
from dltricks.models.hf_mamba import export_hf_mamba, load_hf_mamba
from dltricks.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "export_hf_mamba", "list_models", "load_hf_mamba", "register_model"]
