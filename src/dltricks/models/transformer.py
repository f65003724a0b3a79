"""Transformer models: sequence classifier, token tagger, language model, ViT and a CNN hybrid.

* ``transformer_classifier``: an encoder (Vaswani et al. 2017) over 1-D signals (B, C, L) cut
  into patches by a linear (or small conv) embedding, or over tokens (B, L); a CLS token or
  mean pooling feeds the head.
* ``transformer_tagger``: tokens (B, L) → per-token logits (B, L, K); causal as an option.
* ``transformer_lm``: a decoder-only causal language model (GPT-style, Radford et al. 2018)
  with tied embeddings and ``generate`` (greedy, temperature, top-k) using a KV cache.
* ``vit_tiny``: Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words")
  sized for 8 × 8 digits: patches of 2 or 4 pixels, a CLS token and learned positions.
* ``hybrid_cnn_transformer``: a convolutional stem for local features followed by Transformer
  layers for global context, as in the hybrid ViT of Dosovitskiy et al. 2021 and CvT/CoAtNet.

Every model takes ``attention`` (see :data:`dltricks.nn.transformer.ATTENTIONS`) and
``position`` (``"sinusoidal" | "learned" | "rope" | "none"``) by name.

Axis letters: B batch, C channels, L length, D model width, K classes, V vocabulary,
P patch size, N tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.models.registry import register_model
from dltricks.nn.attention import KVCache
from dltricks.nn.factory import ActSpec, ConvNormAct, NormSpec, get_conv
from dltricks.nn.position import POSITIONS, LearnedPositionalEmbedding, get_position
from dltricks.nn.transformer import TransformerEncoder


class TransformerTrunk(nn.Module):
    """Additive positions (unless RoPE) → :class:`~dltricks.nn.transformer.TransformerEncoder`.

    Args:
        dim: D.
        depth: blocks.
        num_heads: H.
        position: ``"sinusoidal" | "learned" | "rope" | "none"``.
        max_len: longest sequence for learned positions.
        pos_init_std: standard deviation of the initial learned positions (default 0.02, as
            BERT and ViT; ``nn.Embedding`` token vectors start at std 1, so larger values put
            positions on the tokens' scale).
        **block_kwargs: :class:`~dltricks.nn.transformer.TransformerBlock` arguments.

    Shapes:
        (B, N, D) → (B, N, D)
    """

    def __init__(self, dim: int, depth: int, num_heads: int, position: str = "sinusoidal",
                 max_len: int | None = None, pos_init_std: float = 0.02,
                 **block_kwargs: Any) -> None:
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"Unknown position {position!r}; allowed: {', '.join(POSITIONS)}.")
        if pos_init_std <= 0:
            raise ValueError(f"pos_init_std must be positive, got {pos_init_std}.")
        self.position = position
        self.pos = (LearnedPositionalEmbedding(dim, max_len, pos_init_std)
                    if position == "learned" and max_len is not None
                    else get_position(position, dim, max_len))
        self.encoder = TransformerEncoder(dim, depth, num_heads, rotary=position == "rope",
                                          **block_kwargs)

    def forward(self, h: Tensor, padding_mask: Tensor | None = None,
                caches: Sequence[KVCache] | None = None, **attn_args: Any) -> Tensor:
        offset = 0 if caches is None else caches[0].length
        return self.encoder(self.pos(h, offset), padding_mask, caches, **attn_args)


def _check_pool(pool: str) -> None:
    if pool not in ("cls", "mean"):
        raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}.")


def _pool(h: Tensor, pool: str, padding_mask: Tensor | None) -> Tensor:
    """(B, N, D) → (B, D): the CLS token (position 0) or the mean over non-padding tokens."""
    if pool == "cls":
        return h[:, 0]
    if padding_mask is None:
        return h.mean(dim=1)
    keep = (~padding_mask).unsqueeze(-1).to(h.dtype)  # (B, N, 1)
    return (h * keep).sum(1) / keep.sum(1).clamp_min(1.0)


def _sample(logits: Tensor, temperature: float, top_k: int | None,
            generator: torch.Generator | None) -> Tensor:
    """Next tokens (B,) from logits (B, V): argmax at temperature 0, else sampling."""
    if temperature <= 0:
        return logits.argmax(-1)
    scores = logits.float() / temperature
    if top_k is not None:
        kth = scores.topk(min(top_k, scores.shape[-1]), dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]


class TransformerClassifier(nn.Module):
    """Encoder classifier for 1-D signals (B, C, L) and/or token sequences (B, L).

    Float input is cut into non-overlapping patches of ``patch_size`` steps by a linear
    projection (``embed="linear"``, a Conv1d with kernel = stride = P) or by a 3-tap conv + GELU
    before that projection (``embed="conv"``); the length is zero-padded to a multiple of P.
    Long input is embedded by a token table (``vocab_size``); ``pad_id`` tokens are masked out.

    Args:
        num_classes: K.
        in_channels: C of float inputs (None: tokens only).
        vocab_size: V of token inputs (None: signals only).
        dim, depth, num_heads, mlp_ratio: encoder size.
        patch_size: P, steps per patch of a signal.
        embed: ``"linear"`` or ``"conv"``.
        pool: ``"cls"`` (a learned CLS token, global under Longformer attention) or ``"mean"``.
        position: position encoding name.
        max_len: longest token sequence (CLS included) for learned positions.
        attention: attention type name; ``attn_kwargs`` its options.
        dropout, attn_dropout, drop_path, norm, act, norm_first: block options.
        pad_id: token id of padding (masked in attention and pooling), or None.

    Shapes:
        float (B, C, L) or long (B, L) → (B, K)
    """

    def __init__(self, num_classes: int, in_channels: int | None = None,
                 vocab_size: int | None = None, dim: int = 64, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, patch_size: int = 4,
                 embed: str = "linear", pool: str = "cls", position: str = "sinusoidal",
                 max_len: int = 512, attention: str = "sdpa",
                 attn_kwargs: dict[str, Any] | None = None, dropout: float = 0.0,
                 attn_dropout: float = 0.0, drop_path: float = 0.0, norm: NormSpec = "layer",
                 act: ActSpec = "gelu", norm_first: bool = True,
                 pad_id: int | None = None) -> None:
        super().__init__()
        if in_channels is None and vocab_size is None:
            raise ValueError("Give in_channels (signals), vocab_size (tokens) or both.")
        if patch_size < 1:
            raise ValueError(f"patch_size must be positive, got {patch_size}.")
        if embed not in ("linear", "conv"):
            raise ValueError(f"embed must be 'linear' or 'conv', got {embed!r}.")
        _check_pool(pool)
        self.patch_size, self.pool, self.pad_id = patch_size, pool, pad_id
        self.patch_embed: nn.Module | None = None
        if in_channels is not None:
            patchify = nn.Conv1d(in_channels if embed == "linear" else dim, dim, patch_size,
                                 stride=patch_size)
            self.patch_embed = patchify if embed == "linear" else nn.Sequential(
                nn.Conv1d(in_channels, dim, 3, padding=1), nn.GELU(), patchify)
        self.token_embed = nn.Embedding(vocab_size, dim) if vocab_size else None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.trunk = TransformerTrunk(
            dim, depth, num_heads, position, max_len, mlp_ratio=mlp_ratio, dropout=dropout,
            attn_dropout=attn_dropout, drop_path=drop_path, norm=norm, act=act,
            norm_first=norm_first, attention=attention, attn_kwargs=attn_kwargs)
        self.head = nn.Linear(dim, num_classes)

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Tokens (B, N, D) and a padding mask (B, N) or None."""
        if not x.is_floating_point():
            if self.token_embed is None:
                raise ValueError("Token input needs a model built with vocab_size.")
            pad = None if self.pad_id is None else x == self.pad_id
            return self.token_embed(x), pad
        if self.patch_embed is None:
            raise ValueError("Float signal input needs a model built with in_channels.")
        if x.dim() != 3:
            raise ValueError(f"Signals must be (batch, channels, length), got {tuple(x.shape)}.")
        x = F.pad(x, (0, -x.shape[-1] % self.patch_size))
        return self.patch_embed(x).transpose(1, 2), None  # (B, L / P, D)

    def forward(self, x: Tensor) -> Tensor:
        h, pad = self.embed(x)
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
            if pad is not None:
                pad = F.pad(pad, (1, 0), value=False)
        h = self.trunk(h, pad)
        return self.head(_pool(h, self.pool, pad))


class TransformerTagger(nn.Module):
    """Token tagger: embedding → encoder → per-token linear head.

    Args:
        vocab_size: V.
        num_classes: K.
        dim, depth, num_heads, mlp_ratio: encoder size.
        causal: logits at step t see tokens up to t only.
        position, max_len, attention, attn_kwargs, dropout, attn_dropout, drop_path, norm, act,
            norm_first: as in :class:`TransformerClassifier`.
        pad_id: padding token id masked out of attention, or None.
        pos_init_std: initial std of learned positions (see :class:`TransformerTrunk`).

    Shapes:
        long (B, L) → (B, L, K)
    """

    def __init__(self, vocab_size: int, num_classes: int, dim: int = 64, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, causal: bool = False,
                 position: str = "sinusoidal", max_len: int = 512, attention: str = "sdpa",
                 attn_kwargs: dict[str, Any] | None = None, dropout: float = 0.0,
                 attn_dropout: float = 0.0, drop_path: float = 0.0, norm: NormSpec = "layer",
                 act: ActSpec = "gelu", norm_first: bool = True,
                 pad_id: int | None = None, pos_init_std: float = 0.02) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, dim)
        self.trunk = TransformerTrunk(
            dim, depth, num_heads, position, max_len, pos_init_std, mlp_ratio=mlp_ratio,
            dropout=dropout,
            attn_dropout=attn_dropout, drop_path=drop_path, norm=norm, act=act,
            norm_first=norm_first, attention=attention, causal=causal, attn_kwargs=attn_kwargs)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        pad = None if self.pad_id is None else tokens == self.pad_id
        return self.head(self.trunk(self.embed(tokens), pad))  # (B, L, K)


class TransformerLM(nn.Module):
    """Decoder-only causal language model with tied embeddings and KV-cached generation.

    Args:
        vocab_size: V.
        dim, depth, num_heads, mlp_ratio: decoder size.
        position: position encoding name (RoPE by default).
        max_len: longest sequence for learned positions.
        attention: a causal-capable type (``"sdpa"``, ``"reference"``, ``"local"``,
            ``"longformer"``); the KV cache needs a dense one.
        attn_kwargs, dropout, attn_dropout, drop_path, norm, act, norm_first: block options.
        tie_embeddings: the output layer shares the input embedding's weights.

    Shapes:
        long (B, L) → (B, L, V)
    """

    def __init__(self, vocab_size: int, dim: int = 64, depth: int = 2, num_heads: int = 4,
                 mlp_ratio: float = 4.0, position: str = "rope", max_len: int = 1024,
                 attention: str = "sdpa", attn_kwargs: dict[str, Any] | None = None,
                 dropout: float = 0.0, attn_dropout: float = 0.0, drop_path: float = 0.0,
                 norm: NormSpec = "layer", act: ActSpec = "gelu", norm_first: bool = True,
                 tie_embeddings: bool = True) -> None:
        super().__init__()
        # std 0.02 as GPT-2 (and our Mamba LM): with the tied head, PyTorch's N(0, 1) starts
        # with logits of order D that predict the *input* token (loss ~7 on a 16-token task).
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.trunk = TransformerTrunk(
            dim, depth, num_heads, position, max_len, mlp_ratio=mlp_ratio, dropout=dropout,
            attn_dropout=attn_dropout, drop_path=drop_path, norm=norm, act=act,
            norm_first=norm_first, attention=attention, causal=True, attn_kwargs=attn_kwargs)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.embed.weight

    @property
    def supports_cache(self) -> bool:
        return all(b.attn.supports_cache for b in self.trunk.encoder.blocks)

    def new_caches(self) -> list[KVCache]:
        """One empty :class:`~dltricks.nn.attention.KVCache` per block."""
        return [KVCache() for _ in self.trunk.encoder.blocks]

    def forward(self, tokens: Tensor, caches: Sequence[KVCache] | None = None) -> Tensor:
        """Next-token logits (B, L, V); with ``caches`` the tokens continue the cached steps."""
        return self.lm_head(self.trunk(self.embed(tokens), caches=caches))

    @torch.no_grad()
    def generate(self, prompt: Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None,
                 use_cache: bool | None = None) -> Tensor:
        """Continues ``prompt`` (B, L0) by ``max_new_tokens`` tokens → (B, L0 + new).

        Greedy when ``temperature`` is 0, else sampling from softmax(logits / temperature),
        restricted to the ``top_k`` most likely tokens when given. With the KV cache (the
        default where the attention type allows it) the prompt is encoded once and each new
        token costs one step; without it the whole sequence is re-encoded every step. Both
        give the same tokens.
        """
        if prompt.dim() != 2 or prompt.shape[1] < 1:
            raise ValueError(f"prompt must be (batch, length >= 1), got {tuple(prompt.shape)}.")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}.")
        if use_cache is None:
            use_cache = self.supports_cache
        if use_cache and not self.supports_cache:
            raise ValueError("This attention type has no KV cache; use attention='sdpa' or "
                             "use_cache=False.")
        caches = self.new_caches() if use_cache else None
        seq = prompt
        logits = self(prompt, caches)[:, -1]  # (B, V)
        for i in range(max_new_tokens):
            nxt = _sample(logits, temperature, top_k, generator)[:, None]  # (B, 1)
            seq = torch.cat([seq, nxt], dim=1)
            if i + 1 < max_new_tokens:
                logits = (self(nxt, caches) if use_cache else self(seq))[:, -1]
        return seq


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    out = (value, value) if isinstance(value, int) else tuple(value)
    if len(out) != 2 or min(out) < 1:
        raise ValueError(f"{name} must be a positive int or a pair, got {value!r}.")
    return out  # type: ignore[return-value]


class VisionTransformer(nn.Module):
    """ViT (Dosovitskiy et al. 2021) for small images: patches → encoder → CLS/mean → head.

    Args:
        in_channels: C.
        num_classes: K.
        image_size: (H, W) or an int; inputs must have this size.
        patch_size: P; must divide the image size.
        dim, depth, num_heads, mlp_ratio: encoder size.
        pool: ``"cls"`` or ``"mean"`` (axial attention needs ``"mean"``: no CLS in the grid).
        position: position encoding name (learned by default, as in ViT).
        attention: attention type; axial attention gets the patch grid automatically.
        attn_kwargs, dropout, attn_dropout, drop_path, norm, act, norm_first: block options.

    Shapes:
        float (B, C, H, W) → (B, K)
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int | Sequence[int] = 8,
                 patch_size: int = 2, dim: int = 64, depth: int = 4, num_heads: int = 4,
                 mlp_ratio: float = 4.0, pool: str = "cls", position: str = "learned",
                 attention: str = "sdpa", attn_kwargs: dict[str, Any] | None = None,
                 dropout: float = 0.0, attn_dropout: float = 0.0, drop_path: float = 0.0,
                 norm: NormSpec = "layer", act: ActSpec = "gelu",
                 norm_first: bool = True) -> None:
        super().__init__()
        self.image_size = _pair(image_size, "image_size")
        if patch_size < 1 or any(s % patch_size for s in self.image_size):
            raise ValueError(f"patch_size={patch_size} must divide image_size {self.image_size}.")
        _check_pool(pool)
        if attention == "axial" and pool == "cls":
            raise ValueError("Axial attention needs the tokens on a grid: use pool='mean'.")
        self.grid = (self.image_size[0] // patch_size, self.image_size[1] // patch_size)
        num_tokens = self.grid[0] * self.grid[1] + (pool == "cls")
        attn_kwargs = dict(attn_kwargs or {})
        if attention == "axial":
            attn_kwargs.setdefault("grid_size", self.grid)
        if attention == "linformer":
            attn_kwargs.setdefault("seq_len", num_tokens)
        self.pool = pool
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.trunk = TransformerTrunk(
            dim, depth, num_heads, position, num_tokens, mlp_ratio=mlp_ratio, dropout=dropout,
            attn_dropout=attn_dropout, drop_path=drop_path, norm=norm, act=act,
            norm_first=norm_first, attention=attention, attn_kwargs=attn_kwargs)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"Expected images (batch, channels, {self.image_size[0]}, "
                             f"{self.image_size[1]}), got {tuple(x.shape)}.")
        h = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D), row-major patches
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
        return self.head(_pool(self.trunk(h), self.pool, None))


class HybridCNNTransformer(nn.Module):
    """CNN stem (local features) → Transformer layers (global context) → mean pool → head.

    The stem has one stage per entry of ``channels``: a 3-tap ConvNormAct, stride 2 in every
    stage but the first, so an 8 × 8 digit becomes a 4 × 4 map with two stages. A 1×1 conv maps
    the last stage to ``dim`` and each spatial position becomes a token.

    Args:
        in_channels: C.
        num_classes: K.
        spatial_dims: 1 (signals), 2 (images) or 3 (volumes).
        channels: stem widths.
        dim, depth, num_heads, mlp_ratio: Transformer size.
        cnn_norm: stem normalisation (``get_norm`` spec); cnn_act: stem activation.
        position: position encoding of the flattened map (sinusoidal: any input size).
        attention: attention type; axial attention gets the 2-D map size per call.
        attn_kwargs, dropout, attn_dropout, drop_path, norm, act, norm_first: block options.
        max_len: tokens covered by learned positions.

    Shapes:
        float (B, C, *spatial) → (B, K)
    """

    def __init__(self, in_channels: int, num_classes: int, spatial_dims: int = 2,
                 channels: Sequence[int] = (32, 64), dim: int = 64, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, cnn_norm: NormSpec = "batch",
                 cnn_act: ActSpec = "relu", position: str = "sinusoidal",
                 attention: str = "sdpa", attn_kwargs: dict[str, Any] | None = None,
                 dropout: float = 0.0, attn_dropout: float = 0.0, drop_path: float = 0.0,
                 norm: NormSpec = "layer", act: ActSpec = "gelu", norm_first: bool = True,
                 max_len: int = 1024) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels must list at least one stem width.")
        if attention == "axial" and spatial_dims != 2:
            raise ValueError("Axial attention here needs 2-D feature maps (spatial_dims=2).")
        stages, prev = [], in_channels
        for i, ch in enumerate(channels):
            stages.append(ConvNormAct(spatial_dims, prev, ch, 3, stride=1 if i == 0 else 2,
                                      norm=cnn_norm, act=cnn_act))
            prev = ch
        self.stem = nn.Sequential(*stages)
        self.to_tokens = get_conv(spatial_dims)(prev, dim, 1)
        self.attention = attention
        self.trunk = TransformerTrunk(
            dim, depth, num_heads, position, max_len, mlp_ratio=mlp_ratio, dropout=dropout,
            attn_dropout=attn_dropout, drop_path=drop_path, norm=norm, act=act,
            norm_first=norm_first, attention=attention, attn_kwargs=attn_kwargs)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        fmap = self.to_tokens(self.stem(x))  # (B, D, *spatial')
        attn_args = {"grid_size": tuple(fmap.shape[2:])} if self.attention == "axial" else {}
        h = self.trunk(fmap.flatten(2).transpose(1, 2), **attn_args)  # (B, N, D)
        return self.head(h.mean(dim=1))


# --- registry -----------------------------------------------------------------------------------

_SMALL = dict(dim=16, depth=1, num_heads=2)


@register_model(
    task="classification",
    description="Transformer encoder classifier of 1-D signals (B, C, L) or tokens (B, L).",
    example=dict(kwargs=dict(in_channels=1, num_classes=10, patch_size=4, **_SMALL),
                 input=(2, 1, 40), dtype="float", output=(2, 10)))
def transformer_classifier(num_classes: int, in_channels: int | None = None,
                           vocab_size: int | None = None, dim: int = 64, depth: int = 2,
                           num_heads: int = 4, patch_size: int = 4, embed: str = "linear",
                           pool: str = "cls", position: str = "sinusoidal", max_len: int = 512,
                           attention: str = "sdpa", attn_kwargs: dict[str, Any] | None = None,
                           dropout: float = 0.0, attn_dropout: float = 0.0,
                           drop_path: float = 0.0, norm: str = "layer", act: str = "gelu",
                           norm_first: bool = True, pad_id: int | None = None,
                           mlp_ratio: float = 4.0) -> TransformerClassifier:
    """:class:`TransformerClassifier`."""
    return TransformerClassifier(
        num_classes, in_channels, vocab_size, dim, depth, num_heads, mlp_ratio, patch_size,
        embed, pool, position, max_len, attention, attn_kwargs, dropout, attn_dropout,
        drop_path, norm, act, norm_first, pad_id)


@register_model(
    task="sequence", description="Transformer token tagger (B, L) → (B, L, K); causal option.",
    example=dict(kwargs=dict(vocab_size=20, num_classes=5, **_SMALL), input=(2, 12),
                 dtype="long", high=20, output=(2, 12, 5)))
def transformer_tagger(vocab_size: int, num_classes: int, dim: int = 64, depth: int = 2,
                       num_heads: int = 4, causal: bool = False, position: str = "sinusoidal",
                       max_len: int = 512, attention: str = "sdpa",
                       attn_kwargs: dict[str, Any] | None = None, dropout: float = 0.0,
                       attn_dropout: float = 0.0, drop_path: float = 0.0, norm: str = "layer",
                       act: str = "gelu", norm_first: bool = True, pad_id: int | None = None,
                       mlp_ratio: float = 4.0, pos_init_std: float = 0.02) -> TransformerTagger:
    """:class:`TransformerTagger`."""
    return TransformerTagger(vocab_size, num_classes, dim, depth, num_heads, mlp_ratio, causal,
                             position, max_len, attention, attn_kwargs, dropout, attn_dropout,
                             drop_path, norm, act, norm_first, pad_id, pos_init_std)


@register_model(
    task="sequence", description="Decoder-only Transformer LM with KV-cached generate().",
    example=dict(kwargs=dict(vocab_size=11, **_SMALL), input=(2, 9), dtype="long", high=11,
                 output=(2, 9, 11)))
def transformer_lm(vocab_size: int, dim: int = 64, depth: int = 2, num_heads: int = 4,
                   position: str = "rope", max_len: int = 1024, attention: str = "sdpa",
                   attn_kwargs: dict[str, Any] | None = None, dropout: float = 0.0,
                   attn_dropout: float = 0.0, drop_path: float = 0.0, norm: str = "layer",
                   act: str = "gelu", norm_first: bool = True, tie_embeddings: bool = True,
                   mlp_ratio: float = 4.0) -> TransformerLM:
    """:class:`TransformerLM`; with a sequence dataset it predicts at every position."""
    return TransformerLM(vocab_size, dim, depth, num_heads, mlp_ratio, position, max_len,
                         attention, attn_kwargs, dropout, attn_dropout, drop_path, norm, act,
                         norm_first, tie_embeddings)


@register_model(
    task="classification", description="Vision Transformer for 8x8 digits (patch 2 or 4).",
    example=dict(kwargs=dict(in_channels=1, num_classes=10, patch_size=2, **_SMALL),
                 input=(2, 1, 8, 8), dtype="float", output=(2, 10)))
def vit_tiny(in_channels: int, num_classes: int, image_size: int = 8, patch_size: int = 2,
             dim: int = 64, depth: int = 4, num_heads: int = 4, pool: str = "cls",
             position: str = "learned", attention: str = "sdpa",
             attn_kwargs: dict[str, Any] | None = None, dropout: float = 0.0,
             attn_dropout: float = 0.0, drop_path: float = 0.0, norm: str = "layer",
             act: str = "gelu", norm_first: bool = True,
             mlp_ratio: float = 4.0) -> VisionTransformer:
    """:class:`VisionTransformer` with small defaults (64 wide, 4 blocks, 4 heads)."""
    return VisionTransformer(in_channels, num_classes, image_size, patch_size, dim, depth,
                             num_heads, mlp_ratio, pool, position, attention, attn_kwargs,
                             dropout, attn_dropout, drop_path, norm, act, norm_first)


@register_model(
    task="classification",
    description="CNN stem for local features + Transformer layers for global context.",
    example=dict(kwargs=dict(in_channels=1, num_classes=10, channels=[8, 16], **_SMALL),
                 input=(2, 1, 8, 8), dtype="float", output=(2, 10)))
def hybrid_cnn_transformer(in_channels: int, num_classes: int, spatial_dims: int = 2,
                           channels: Sequence[int] = (32, 64), dim: int = 64, depth: int = 2,
                           num_heads: int = 4, cnn_norm: str = "batch", cnn_act: str = "relu",
                           position: str = "sinusoidal", attention: str = "sdpa",
                           attn_kwargs: dict[str, Any] | None = None, dropout: float = 0.0,
                           attn_dropout: float = 0.0, drop_path: float = 0.0,
                           norm: str = "layer", act: str = "gelu", norm_first: bool = True,
                           max_len: int = 1024,
                           mlp_ratio: float = 4.0) -> HybridCNNTransformer:
    """:class:`HybridCNNTransformer`."""
    return HybridCNNTransformer(in_channels, num_classes, spatial_dims, channels, dim, depth,
                                num_heads, mlp_ratio, cnn_norm, cnn_act, position, attention,
                                attn_kwargs, dropout, attn_dropout, drop_path, norm, act,
                                norm_first, max_len)


__all__ = [
    "HybridCNNTransformer",
    "TransformerClassifier",
    "TransformerLM",
    "TransformerTagger",
    "TransformerTrunk",
    "VisionTransformer",
    "hybrid_cnn_transformer",
    "transformer_classifier",
    "transformer_lm",
    "transformer_tagger",
    "vit_tiny",
]
