"""Primitives and blocks: pure ``nn.Module``s, no training code."""

from dltricks.nn.drop import DropPath, drop_path
from dltricks.nn.factory import (
    ACTS,
    NORMS,
    ConvNormAct,
    default_num_groups,
    get_act,
    get_conv,
    get_dropout,
    get_norm,
    get_pool,
    same_padding,
)

__all__ = [
    "ACTS",
    "NORMS",
    "ConvNormAct",
    "DropPath",
    "default_num_groups",
    "drop_path",
    "get_act",
    "get_conv",
    "get_dropout",
    "get_norm",
    "get_pool",
    "same_padding",
]
