"""Multi-head self-attention on ``scaled_dot_product_attention``, a plain reference and a KV cache.

Scaled dot-product attention, softmax(Q Kᵀ / sqrt(E)) V, and its multi-head form come from
Vaswani et al. 2017, "Attention Is All You Need". The fast path is
``torch.nn.functional.scaled_dot_product_attention`` (SDPA), which dispatches to a fused kernel:
the flash-attention CPU kernel, or FlashAttention (Dao et al. 2022) / memory-efficient attention
on CUDA. Beside it, :func:`reference_attention` writes the formula out with a materialised
(L, S) score matrix; tests compare the two (outputs and gradients) and the reference is the
automatic fallback (``backend="reference"``).

Masks: ``attn_mask`` is boolean with ``True`` where a query may attend a key (SDPA's
convention), broadcastable to (B, H, L, S). ``padding_mask`` is (B, S) boolean with ``True`` at
*padding* positions, which are never attended (the convention of ``nn.MultiheadAttention``'s
``key_padding_mask``). Causal masks are aligned bottom-right: with S keys and L queries (L < S
when a KV cache holds S - L earlier steps) query i sees keys j <= i + S - L. A query whose
every key is masked (a padding query under a causal mask, say) attends all keys instead of
producing NaN; its output is meaningless and should be ignored by the loss.

Axis letters: B batch, L query length, S key length, D model width (``dim``), H heads,
E head width (D / H).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BACKENDS = ("sdpa", "reference")


def causal_mask(query_len: int, key_len: int, device: torch.device | None = None) -> Tensor:
    """Boolean (L, S) mask, True where key j <= i + S - L (bottom-right aligned)."""
    if key_len < query_len:
        raise ValueError(
            f"A causal mask needs at least as many keys as queries, got {key_len} < {query_len}."
        )
    i = torch.arange(query_len, device=device)[:, None]
    j = torch.arange(key_len, device=device)[None, :]
    return j <= i + (key_len - query_len)


def combine_masks(
    query_len: int,
    key_len: int,
    causal: bool = False,
    padding_mask: Tensor | None = None,
    attn_mask: Tensor | None = None,
    device: torch.device | None = None,
) -> Tensor | None:
    """One boolean "may attend" mask (B or 1, 1 or H, L, S) from the three kinds, or None.

    Rows with no visible key are opened to all keys so that softmax stays finite.
    """
    mask: Tensor | None = None
    if causal:
        mask = causal_mask(query_len, key_len, device)[None, None]
    if padding_mask is not None:
        if padding_mask.dim() != 2 or padding_mask.shape[1] != key_len:
            raise ValueError(
                f"padding_mask must be (batch, {key_len}) booleans, got "
                f"{tuple(padding_mask.shape)}."
            )
        keep = ~padding_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
        mask = keep if mask is None else mask & keep
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool:
            raise ValueError("attn_mask must be boolean (True where a query may attend a key).")
        mask = attn_mask if mask is None else mask & attn_mask
    if mask is None:
        return None
    return mask | ~mask.any(-1, keepdim=True)


def reference_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """softmax(Q Kᵀ · scale + mask) V, written out; O(L·S) time and memory per head.

    Args:
        q: (B, H, L, E).
        k: (B, H, S, E).
        v: (B, H, S, Ev).
        attn_mask: boolean, True where allowed, broadcastable to (B, H, L, S).
        causal: add a bottom-right aligned causal mask.
        dropout_p: dropout on the attention probabilities.
        scale: score scale, 1 / sqrt(E) by default.

    Returns:
        (B, H, L, Ev), in the dtype of ``q``. The softmax runs in float32.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, L, S)
    mask = combine_masks(q.shape[-2], k.shape[-2], causal, None, attn_mask, q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.float().softmax(dim=-1).to(q.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, dropout_p, training=True)
    return probs @ v


def sdpa_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """The same contract as :func:`reference_attention`, on the fused SDPA kernel.

    A causal mask with L == S and no other mask uses SDPA's ``is_causal`` (so the kernel can skip
    masked tiles); otherwise an explicit bottom-right aligned mask is passed, because SDPA's own
    ``is_causal`` is aligned top-left when L != S.
    """
    if causal and attn_mask is None and q.shape[-2] == k.shape[-2]:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True,
                                              scale=scale)
    mask = combine_masks(q.shape[-2], k.shape[-2], causal, None, attn_mask, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                          scale=scale)


def attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
              causal: bool = False, dropout_p: float = 0.0, scale: float | None = None,
              backend: str = "sdpa") -> Tensor:
    """Dispatches to :func:`sdpa_attention` or :func:`reference_attention` by name."""
    if backend == "sdpa":
        return sdpa_attention(q, k, v, attn_mask, causal, dropout_p, scale)
    if backend == "reference":
        return reference_attention(q, k, v, attn_mask, causal, dropout_p, scale)
    raise ValueError(f"Unknown attention backend {backend!r}; allowed: {', '.join(BACKENDS)}.")


class KVCache:
    """Keys and values of the steps seen so far, for one attention layer.

    Generation feeds the prompt once, then one token per step; each layer appends the new
    step's keys and values here and attends over all of them, so a step costs O(S) instead of
    recomputing the O(S²) attention of the whole prefix.

    Attributes:
        k: (B, H, S, E) or None before the first update.
        v: (B, H, S, E) or None.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    @property
    def length(self) -> int:
        """S, the number of cached steps."""
        return 0 if self.k is None else self.k.shape[-2]

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Appends (B, H, L, E) keys and values; returns all cached ones (B, H, S + L, E)."""
        if self.k is None or self.v is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=-2)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def reset(self) -> None:
        self.k = self.v = None


class SelfAttentionBase(nn.Module):
    """Shared part of every self-attention variant: QKV projection, heads, rotary, output.

    A subclass implements ``_attend(q, k, v, padding_mask, **kwargs)`` on (B, H, L, E) heads.

    Args:
        dim: D, model width.
        num_heads: H; must divide ``dim``.
        dropout: dropout on the attention probabilities (training only).
        bias: biases in the QKV and output projections.
        causal: each position attends only itself and earlier positions.
        rotary: a :class:`~dltricks.nn.position.RotaryEmbedding` applied to queries and keys
            (RoPE), or None.

    Shapes:
        x (B, L, D) → (B, L, D)
    """

    supports_cache = False

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False, rotary: nn.Module | None = None) -> None:
        super().__init__()
        if dim < 1 or num_heads < 1:
            raise ValueError(f"dim and num_heads must be positive, got {dim} and {num_heads}.")
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide dim={dim}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"attention dropout must be in [0, 1), got {dropout}.")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.dropout = dropout
        self.causal = causal
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.rotary = rotary

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, padding_mask: Tensor | None,
                **kwargs) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, padding_mask: Tensor | None = None,
                cache: KVCache | None = None, **kwargs) -> Tensor:
        """Attends ``x`` (B, L, D) to itself (and to the cached steps).

        Args:
            x: (B, L, D).
            padding_mask: (B, S) booleans, True at padding keys (S = cached + L).
            cache: a :class:`KVCache` to read and extend (dense attention only).
            **kwargs: variant-specific, e.g. ``grid_size`` for axial attention.
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"Expected input (batch, length, {self.dim}), got {tuple(x.shape)}.")
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, E)
        offset = 0 if cache is None else cache.length
        if self.rotary is not None:
            q, k = self.rotary(q, offset), self.rotary(k, offset)
        if cache is not None:
            if not self.supports_cache:
                raise ValueError(f"{type(self).__name__} does not support a KV cache.")
            k, v = cache.update(k, v)
        out = self._attend(q, k, v, padding_mask, **kwargs)  # (B, H, L, E)
        return self.proj(out.transpose(1, 2).reshape(b, n, self.dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, causal={self.causal}"


class MultiHeadSelfAttention(SelfAttentionBase):
    """Dense multi-head self-attention (Vaswani et al. 2017); O(L·S) time per head.

    Args:
        dim: D.
        num_heads: H.
        dropout: attention-probability dropout.
        bias: projection biases.
        causal: causal masking.
        rotary: optional RoPE module.
        backend: ``"sdpa"`` (fused kernel; O(L) memory on the flash paths) or ``"reference"``
            (the written-out formula; O(L·S) memory).

    Shapes:
        x (B, L, D) → (B, L, D)
    """

    supports_cache = True

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False, rotary: nn.Module | None = None,
                 backend: str = "sdpa") -> None:
        super().__init__(dim, num_heads, dropout, bias, causal, rotary)
        if backend not in BACKENDS:
            raise ValueError(
                f"Unknown attention backend {backend!r}; allowed: {', '.join(BACKENDS)}."
            )
        self.backend = backend

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, padding_mask: Tensor | None,
                **kwargs) -> Tensor:
        if kwargs:
            raise ValueError(f"Dense attention takes no {', '.join(kwargs)} argument.")
        mask = None
        if padding_mask is not None:
            mask = combine_masks(q.shape[-2], k.shape[-2], self.causal, padding_mask,
                                 device=q.device)
        p = self.dropout if self.training else 0.0
        causal = self.causal and mask is None
        return attention(q, k, v, mask, causal, p, backend=self.backend)
