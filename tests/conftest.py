"""Imports dltricks before any test imports torch, so its OpenMP setting (see
``dltricks/__init__.py``) applies to the whole test session."""

import dltricks  # noqa: F401
