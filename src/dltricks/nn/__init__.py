"""Primitives and blocks: pure ``nn.Module``s, no training code."""

from dltricks.nn.attention import (
    KVCache,
    MultiHeadSelfAttention,
    SelfAttentionBase,
    reference_attention,
    sdpa_attention,
)
from dltricks.nn.cnn_attention import (
    CBAM,
    ChannelAttention,
    SpatialAttention,
    SqueezeExcitation,
    get_cnn_attention,
)
from dltricks.nn.conv_blocks import (
    ConvStack,
    DepthwiseSeparableConv,
    DilatedConv,
    Downsample,
    stack_depth_for_kernel,
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
from dltricks.nn.multiscale import DualPathway
from dltricks.nn.pool import ASPP, SpatialPyramidPooling
from dltricks.nn.position import (
    POSITIONS,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    get_position,
)
from dltricks.nn.residual import (
    BasicBlock,
    Bottleneck,
    InvertedResidual,
    PreActBlock,
    PreActBottleneck,
)
from dltricks.nn.ssm import selective_scan, selective_scan_ref
from dltricks.nn.ssm.mamba_block import MambaBlock
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
    "ASPP",
    "ATTENTIONS",
    "CBAM",
    "NORMS",
    "POSITIONS",
    "AxialSelfAttention",
    "BasicBlock",
    "Bottleneck",
    "ChannelAttention",
    "ConvNormAct",
    "ConvStack",
    "DepthwiseSeparableConv",
    "DilatedConv",
    "Downsample",
    "DropPath",
    "DualPathway",
    "FeedForward",
    "InvertedResidual",
    "KVCache",
    "LearnedPositionalEmbedding",
    "LinformerSelfAttention",
    "LocalSelfAttention",
    "LongformerSelfAttention",
    "MambaBlock",
    "MultiHeadSelfAttention",
    "PreActBlock",
    "PreActBottleneck",
    "RotaryEmbedding",
    "SelfAttentionBase",
    "SinusoidalPositionalEncoding",
    "SpatialAttention",
    "SpatialPyramidPooling",
    "SqueezeExcitation",
    "TransformerBlock",
    "TransformerEncoder",
    "default_num_groups",
    "drop_path",
    "get_act",
    "get_attention",
    "get_cnn_attention",
    "get_conv",
    "get_dropout",
    "get_norm",
    "get_pool",
    "get_position",
    "get_token_norm",
    "reference_attention",
    "same_padding",
    "sdpa_attention",
    "selective_scan",
    "selective_scan_ref",
    "stack_depth_for_kernel",
]
