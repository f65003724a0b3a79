"""Transformer blocks: attention and feed-forward sub-layers with pre- or post-LN residuals.

The block of Vaswani et al. 2017 ("Attention Is All You Need") normalises after each residual
addition (post-LN). Xiong et al. 2020 ("On Layer Normalization in the Transformer
Architecture") show that moving the norm in front of each sub-layer (pre-LN) keeps gradients
well-scaled at initialisation and trains without a learning-rate warm-up; pre-LN is the default
here, post-LN an option (``norm_first=False``). Residual branches can be dropped per sample
(stochastic depth, Huang et al. 2016) with :class:`~dltricks.nn.drop.DropPath`.

Sub-layers by name: ``attention`` (see :data:`ATTENTIONS`), ``norm`` (``"layer"``, ``"rms"``,
``"none"``, a class or a factory), ``act`` (any :func:`~dltricks.nn.factory.get_act` name).
Token features are (B, L, D) with the features last, so ``norm="layer"`` here is
``nn.LayerNorm(D)`` (statistics over D per token), not the channels-first ``GroupNorm(1, C)`` that
:func:`~dltricks.nn.factory.get_norm` builds for conv maps; classes, factories and
``(name_or_class, kwargs)`` specs go through ``get_norm``.

Axis letters: B batch, L length, D model width, H heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from dltricks.nn.attention import KVCache, MultiHeadSelfAttention, SelfAttentionBase
from dltricks.nn.drop import DropPath
from dltricks.nn.efficient_attention import (
    AxialSelfAttention,
    LinformerSelfAttention,
    LocalSelfAttention,
    LongformerSelfAttention,
)
from dltricks.nn.factory import ActSpec, NormSpec, get_act, get_norm
from dltricks.nn.position import RotaryEmbedding

#: Attention types by name, with their cost per layer and head (L tokens).
ATTENTIONS: dict[str, str] = {
    "sdpa": "dense, fused scaled_dot_product_attention kernel: O(L²) time, O(L) memory on "
            "flash paths",
    "dense": "alias of 'sdpa'",
    "reference": "dense, written out: O(L²) time and memory",
    "local": "sliding window of w keys each side: O(L·w)",
    "longformer": "sliding window + G global tokens: O(L·(w + G))",
    "axial": "rows and/or columns of an h × w grid: O(L·(h + w))",
    "linformer": "keys/values projected to k rows: O(L·k)",
}
TOKEN_NORMS = ("layer", "rms", "none")


def get_token_norm(norm: NormSpec, dim: int) -> nn.Module:
    """Normalisation over the last axis of (B, L, D) tokens.

    Args:
        norm: ``"layer"`` (``nn.LayerNorm``, Ba et al. 2016), ``"rms"`` (``nn.RMSNorm``, Zhang &
            Sennrich 2019), ``"none"``/None, or a class/factory/``(spec, kwargs)`` passed to
            :func:`~dltricks.nn.factory.get_norm` as ``spec(dim, **kwargs)``.
        dim: D.
    """
    if isinstance(norm, str):
        name = norm.lower()
        if name == "layer":
            return nn.LayerNorm(dim)
        if name == "rms":
            return nn.RMSNorm(dim)
        if name == "none":
            return nn.Identity()
        raise ValueError(f"Unknown token norm {norm!r}; allowed: {', '.join(TOKEN_NORMS)}, a "
                         "class or a callable (batch/instance/group norms are for conv maps).")
    return get_norm(norm, dim, spatial_dims=1)


def get_attention(attention: str | type[SelfAttentionBase], dim: int, num_heads: int,
                  dropout: float = 0.0, causal: bool = False, rotary: nn.Module | None = None,
                  bias: bool = True, **kwargs: Any) -> SelfAttentionBase:
    """Builds a self-attention layer by name (see :data:`ATTENTIONS`) or class.

    Args:
        attention: a name or a :class:`~dltricks.nn.attention.SelfAttentionBase` subclass.
        dim, num_heads, dropout, causal, rotary, bias: common attention arguments.
        **kwargs: type-specific: ``window`` (local, longformer), ``global_tokens``
            (longformer), ``grid_size`` and ``axis`` (axial), ``seq_len``, ``k``, ``share_kv``
            (linformer).

    Raises:
        ValueError: unknown name (listing the allowed ones) or an argument the type rejects.
    """
    common = dict(dropout=dropout, bias=bias, causal=causal, rotary=rotary)
    if isinstance(attention, type) and issubclass(attention, SelfAttentionBase):
        return attention(dim, num_heads, **common, **kwargs)
    table: dict[str, Any] = {
        "sdpa": lambda **kw: MultiHeadSelfAttention(dim, num_heads, backend="sdpa", **kw),
        "dense": lambda **kw: MultiHeadSelfAttention(dim, num_heads, backend="sdpa", **kw),
        "reference": lambda **kw: MultiHeadSelfAttention(dim, num_heads, backend="reference",
                                                         **kw),
        "local": lambda **kw: LocalSelfAttention(dim, num_heads, **kw),
        "longformer": lambda **kw: LongformerSelfAttention(dim, num_heads, **kw),
        "axial": lambda **kw: AxialSelfAttention(dim, num_heads, **kw),
        "linformer": lambda **kw: LinformerSelfAttention(dim, num_heads, **kw),
    }
    if attention not in table:
        raise ValueError(f"Unknown attention {attention!r}; allowed: {', '.join(table)} or a "
                         "SelfAttentionBase subclass.")
    try:
        return table[attention](**common, **kwargs)
    except TypeError as err:  # an option another attention type takes
        raise ValueError(f"attention={attention!r} does not accept {sorted(kwargs)}: {err}.") \
            from err


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear → act → dropout → Linear → dropout.

    Args:
        dim: D.
        hidden_dim: inner width (4·D in the original Transformer).
        act: activation spec for :func:`~dltricks.nn.factory.get_act`.
        dropout: dropout after the activation and after the output projection.

    Shapes:
        (B, L, D) → (B, L, D)
    """

    def __init__(self, dim: int, hidden_dim: int, act: ActSpec = "gelu",
                 dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be positive, got {hidden_dim}.")
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = get_act(act)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Self-attention and feed-forward sub-layers with residuals, pre-LN or post-LN.

    Pre-LN (default, Xiong et al. 2020)::

        x = x + DropPath(Dropout(Attn(Norm1(x))))
        x = x + DropPath(FFN(Norm2(x)))

    Post-LN (``norm_first=False``, Vaswani et al. 2017)::

        x = Norm1(x + DropPath(Dropout(Attn(x))))
        x = Norm2(x + DropPath(FFN(x)))

    Args:
        dim: D.
        num_heads: H.
        mlp_ratio: FFN hidden width / D.
        dropout: dropout on the attention output and inside the FFN.
        attn_dropout: dropout on the attention probabilities.
        drop_path: stochastic-depth probability of each residual branch.
        norm: token norm spec (see :func:`get_token_norm`).
        act: FFN activation spec.
        norm_first: pre-LN when True, post-LN when False.
        attention: attention type name or class (see :data:`ATTENTIONS`).
        causal: causal self-attention.
        rotary: a shared :class:`~dltricks.nn.position.RotaryEmbedding`, or None.
        attn_kwargs: type-specific attention options (``window``, ``grid_size``, ...).

    Shapes:
        (B, L, D) → (B, L, D)
    """

    def __init__(self, dim: int, num_heads: int = 4, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, attn_dropout: float = 0.0, drop_path: float = 0.0,
                 norm: NormSpec = "layer", act: ActSpec = "gelu", norm_first: bool = True,
                 attention: str | type[SelfAttentionBase] = "sdpa", causal: bool = False,
                 rotary: RotaryEmbedding | None = None,
                 attn_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio}.")
        self.norm_first = norm_first
        self.norm1 = get_token_norm(norm, dim)
        self.attn = get_attention(attention, dim, num_heads, attn_dropout, causal, rotary,
                                  **(attn_kwargs or {}))
        self.attn_drop = nn.Dropout(dropout)
        self.norm2 = get_token_norm(norm, dim)
        self.ffn = FeedForward(dim, max(1, round(dim * mlp_ratio)), act, dropout)
        self.drop_path = DropPath(drop_path)

    def _attention(self, x: Tensor, padding_mask: Tensor | None, cache: KVCache | None,
                   attn_args: dict[str, Any]) -> Tensor:
        return self.drop_path(self.attn_drop(self.attn(x, padding_mask, cache, **attn_args)))

    def forward(self, x: Tensor, padding_mask: Tensor | None = None,
                cache: KVCache | None = None, **attn_args: Any) -> Tensor:
        """Args: x (B, L, D); padding_mask (B, S), True at padding; cache for generation;
        ``attn_args`` such as ``grid_size`` go to the attention layer."""
        if self.norm_first:
            x = x + self._attention(self.norm1(x), padding_mask, cache, attn_args)
            return x + self.drop_path(self.ffn(self.norm2(x)))
        x = self.norm1(x + self._attention(x, padding_mask, cache, attn_args))
        return self.norm2(x + self.drop_path(self.ffn(x)))


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerBlock` s, with a final norm after pre-LN stacks.

    Stochastic-depth rates grow linearly from 0 at the first block to ``drop_path`` at the
    last (Huang et al. 2016). With ``position="rope"`` set by the caller, one
    :class:`~dltricks.nn.position.RotaryEmbedding` is shared by all blocks.

    Args:
        dim: D.
        depth: number of blocks.
        num_heads: H.
        drop_path: stochastic-depth rate of the last block.
        rotary: True to give every attention layer RoPE.
        **block_kwargs: the other :class:`TransformerBlock` arguments.

    Shapes:
        (B, L, D) → (B, L, D)
    """

    def __init__(self, dim: int, depth: int = 2, num_heads: int = 4, drop_path: float = 0.0,
                 rotary: bool = False, **block_kwargs: Any) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}.")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}.")
        self.rotary = RotaryEmbedding(dim // num_heads) if rotary else None
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, drop_path=r, rotary=self.rotary, **block_kwargs)
            for r in rates)
        norm_first = block_kwargs.get("norm_first", True)
        self.norm = get_token_norm(block_kwargs.get("norm", "layer"), dim) if norm_first \
            else nn.Identity()

    def forward(self, x: Tensor, padding_mask: Tensor | None = None,
                caches: Sequence[KVCache] | None = None, **attn_args: Any) -> Tensor:
        """Args: x (B, L, D); padding_mask (B, S); one KV cache per block, or None."""
        if caches is not None and len(caches) != len(self.blocks):
            raise ValueError(f"Need one KV cache per block ({len(self.blocks)}), got "
                             f"{len(caches)}.")
        for i, block in enumerate(self.blocks):
            x = block(x, padding_mask, None if caches is None else caches[i], **attn_args)
        return self.norm(x)
