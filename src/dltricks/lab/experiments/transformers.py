"""Experiments on the guide's Transformer tips."""
