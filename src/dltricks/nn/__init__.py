"""Primitives and blocks: pure ``nn.Module``s, no training code."""

from dltricks.nn.attention import (
    KVCache,
    MultiHeadSelfAttention,
    SelfAttentionBase,
    reference_attention,
    sdpa_attention,
)
from dltricks.nn.drop import DropPath, drop_path
from dltricks.nn.efficient_attention import (
    AxialSelfAttention,
    LinformerSelfAttention,
    LocalSelfAttention,
    LongformerSelfAttention,
)
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
from dltricks.nn.position import (
    POSITIONS,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    get_position,
)
from dltricks.nn.transformer import (
    ATTENTIONS,
    FeedForward,
    TransformerBlock,
    TransformerEncoder,
    get_attention,
    get_token_norm,
)

__all__ = [
    "ACTS",
    "ATTENTIONS",
    "NORMS",
    "POSITIONS",
    "AxialSelfAttention",
    "ConvNormAct",
    "DropPath",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEmbedding",
    "LinformerSelfAttention",
    "LocalSelfAttention",
    "LongformerSelfAttention",
    "MultiHeadSelfAttention",
    "RotaryEmbedding",
    "SelfAttentionBase",
    "SinusoidalPositionalEncoding",
    "TransformerBlock",
    "TransformerEncoder",
    "default_num_groups",
    "drop_path",
    "get_act",
    "get_attention",
    "get_conv",
    "get_dropout",
    "get_norm",
    "get_pool",
    "get_position",
    "get_token_norm",
    "reference_attention",
    "same_padding",
    "sdpa_attention",
]
