"""Sub-quadratic self-attention: sliding window, Longformer (window + global), axial, Linformer.

Dense attention costs O(L²) time and memory per head. The variants here restrict or compress
what a query sees:

* **Sliding-window (local) attention**: query i sees keys with |i - j| <= ``window`` (and
  j <= i when causal). Computed in chunks of c = ``window`` queries, each against the 3c keys
  around it, so time and memory are O(L·w). Used by the Longformer and by Sparse Transformers
  (Child et al. 2019, "Generating Long Sequences with Sparse Transformers").
* **Longformer attention** (Beltagy et al. 2020, "Longformer: The Long-Document Transformer"):
  the sliding window plus G global tokens that attend everything and are attended by
  everything: O(L·(w + G)).
* **Axial attention** (Ho et al. 2019, "Axial Attention in Multidimensional Transformers"):
  for an h × w grid of L = h·w tokens, attention along rows (w keys per query) or columns
  (h keys); O(L·(h + w)), O(L^1.5) for a square grid. Stacking a row and a column layer gives
  every token a path to every other. ``axis="both"`` splits the heads between the two axes in
  one layer (half the heads along rows, half along columns).
* **Linformer** (Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity"): keys
  and values are projected along the sequence axis by learned (k, n) matrices E and F to k
  rows, so attention costs O(L·k). With E = F = identity and k = n it is dense attention.

Each function has a dense reference (:func:`window_mask`, :func:`axial_mask` with
:func:`~dltricks.nn.attention.reference_attention`) against which the tests check equality.
Dropout, when set, acts on the attention probabilities through SDPA.

Axis letters: B batch, H heads, L length, E head width, D model width, G global tokens,
n chunks, c chunk length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.nn.attention import SelfAttentionBase

AXES = ("row", "col", "both")


def _check_window(window: int) -> None:
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be an int >= 0 (keys on each side), got {window!r}.")


def window_mask(length: int, window: int, causal: bool = False,
                global_idx: Tensor | None = None, device: torch.device | None = None) -> Tensor:
    """Dense (L, L) "may attend" mask of sliding-window (+ global) attention, for reference."""
    _check_window(window)
    i = torch.arange(length, device=device)[:, None]
    j = torch.arange(length, device=device)[None, :]
    mask = (i - j).abs() <= window
    if global_idx is not None and global_idx.numel():
        is_global = torch.zeros(length, dtype=torch.bool, device=device)
        is_global[global_idx] = True
        mask = mask | is_global[:, None] | is_global[None, :]
    if causal:
        mask = mask & (j <= i)
    return mask


def local_attention(q: Tensor, k: Tensor, v: Tensor, window: int, causal: bool = False,
                    padding_mask: Tensor | None = None, global_idx: Tensor | None = None,
                    dropout_p: float = 0.0) -> Tensor:
    """Sliding-window attention, optionally with Longformer global tokens.

    Time and memory O(L·(w + G)·E) per head (3c keys per chunk of c = w queries, plus the G
    global keys; global queries add a dense O(G·L) pass).

    Args:
        q, k, v: (B, H, L, E).
        window: w, keys visible on each side (w >= L - 1 gives dense attention).
        causal: only keys j <= i.
        padding_mask: (B, L) booleans, True at padding keys.
        global_idx: (G,) long positions of global tokens, or None.
        dropout_p: attention dropout.

    Returns:
        (B, H, L, E).
    """
    _check_window(window)
    b, h, n_tok, e = q.shape
    dev = q.device
    c = max(1, min(window, n_tok))
    n = math.ceil(n_tok / c)
    extra = n * c - n_tok
    qc = F.pad(q, (0, 0, 0, extra)).view(b, h, n, c, e)  # (B, H, n, c, E)

    def windows(t: Tensor) -> Tensor:  # (B, H, L, E) -> (B, H, n, 3c, E)
        return F.pad(t, (0, 0, c, c + extra)).unfold(2, 3 * c, c).transpose(-1, -2)

    kw, vw = windows(k), windows(v)
    qpos = torch.arange(n * c, device=dev).view(n, c)
    kpos = torch.arange(-c, (n + 1) * c, device=dev).unfold(0, 3 * c, c)  # (n, 3c)
    diff = qpos[:, :, None] - kpos[:, None, :]  # (n, c, 3c)
    allowed = ((kpos >= 0) & (kpos < n_tok))[:, None, :] & (diff.abs() <= window)
    if causal:
        allowed = allowed & (diff >= 0)
    if padding_mask is not None:
        if padding_mask.shape != (b, n_tok):
            raise ValueError(f"padding_mask must be ({b}, {n_tok}), got "
                             f"{tuple(padding_mask.shape)}.")
        keep = ~F.pad(padding_mask.bool(), (c, c + extra), value=True).unfold(1, 3 * c, c)
        allowed = allowed[None] & keep[:, :, None, :]  # (B, n, c, 3c)
    else:
        allowed = allowed[None]  # (1, n, c, 3c)
    allowed = allowed[:, None]  # (B or 1, 1, n, c, 3c)
    if global_idx is not None and global_idx.numel():
        g = global_idx.numel()
        is_global = torch.zeros(n_tok + 2 * c + extra, dtype=torch.bool, device=dev)
        is_global[global_idx + c] = True
        allowed = allowed & ~is_global.unfold(0, 3 * c, c)[:, None, :]  # globals counted once
        kg = k[:, :, global_idx][:, :, None].expand(b, h, n, g, e)  # (B, H, n, G, E)
        vg = v[:, :, global_idx][:, :, None].expand(b, h, n, g, e)
        kw, vw = torch.cat([kw, kg], dim=3), torch.cat([vw, vg], dim=3)
        g_allowed = torch.ones(n, c, g, dtype=torch.bool, device=dev)
        if causal:
            g_allowed = qpos[:, :, None] >= global_idx[None, None, :]
        g_allowed = g_allowed[None, None]
        if padding_mask is not None:
            g_allowed = g_allowed & ~padding_mask.bool()[:, global_idx][:, None, None, None, :]
        bsz = max(allowed.shape[0], g_allowed.shape[0])
        allowed = torch.cat([allowed.expand(bsz, 1, n, c, 3 * c),
                             g_allowed.expand(bsz, 1, n, c, g)], dim=-1)
    allowed = allowed | ~allowed.any(-1, keepdim=True)  # rows with no key stay finite
    # SDPA's fused CPU kernel takes 4-D inputs and an additive float mask (5-D inputs or a
    # boolean mask fall back to the unfused math path, 2-4x slower here): fold chunks into heads.
    n_keys = kw.shape[3]
    bias = torch.zeros(allowed.shape, dtype=q.dtype, device=dev).masked_fill_(~allowed,
                                                                              float("-inf"))
    bias = bias.expand(bias.shape[0], h, n, c, n_keys).reshape(-1, h * n, c, n_keys)
    out = F.scaled_dot_product_attention(
        qc.reshape(b, h * n, c, e), kw.reshape(b, h * n, n_keys, e),
        vw.reshape(b, h * n, n_keys, e), attn_mask=bias, dropout_p=dropout_p)
    out = out.reshape(b, h, n * c, e)[:, :, :n_tok]
    if global_idx is not None and global_idx.numel():
        gmask = torch.ones(global_idx.numel(), n_tok, dtype=torch.bool, device=dev)
        if causal:
            gmask = torch.arange(n_tok, device=dev)[None, :] <= global_idx[:, None]
        gmask = gmask[None, None]
        if padding_mask is not None:
            gmask = gmask & ~padding_mask.bool()[:, None, None, :]
        gmask = gmask | ~gmask.any(-1, keepdim=True)
        out_g = F.scaled_dot_product_attention(q[:, :, global_idx], k, v, attn_mask=gmask,
                                               dropout_p=dropout_p)  # (B, H, G, E)
        out = out.index_copy(2, global_idx, out_g)
    return out


def axial_mask(grid_size: tuple[int, int], axis: str, device: torch.device | None = None
               ) -> Tensor:
    """Dense (L, L) "may attend" mask of row (``"row"``) or column (``"col"``) attention."""
    gh, gw = grid_size
    idx = torch.arange(gh * gw, device=device)
    if axis == "row":
        return (idx[:, None] // gw) == (idx[None, :] // gw)
    if axis == "col":
        return (idx[:, None] % gw) == (idx[None, :] % gw)
    raise ValueError(f"axis must be 'row' or 'col' here, got {axis!r}.")


def axial_attention(q: Tensor, k: Tensor, v: Tensor, grid_size: tuple[int, int],
                    axis: str = "row", dropout_p: float = 0.0) -> Tensor:
    """Attention along one axis of an h × w grid of tokens (row-major, L = h·w).

    Time O(L·w·E) for rows and O(L·h·E) for columns; memory O(L·max(h, w)) on the reference
    path and O(L) on fused kernels.

    Args:
        q, k, v: (B, H, L, E).
        grid_size: (h, w).
        axis: ``"row"`` (keys in the same row) or ``"col"`` (same column).
        dropout_p: attention dropout.
    """
    b, h, n_tok, e = q.shape
    gh, gw = grid_size
    if gh * gw != n_tok:
        raise ValueError(f"grid_size {tuple(grid_size)} has {gh * gw} cells, but the sequence "
                         f"has {n_tok} tokens.")
    if axis not in ("row", "col"):
        raise ValueError(f"axis must be 'row' or 'col' here, got {axis!r}.")
    q, k, v = (t.reshape(b, h, gh, gw, e) for t in (q, k, v))  # (B, H, h, w, E)
    if axis == "col":
        q, k, v = (t.transpose(2, 3) for t in (q, k, v))  # (B, H, w, h, E)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    if axis == "col":
        out = out.transpose(2, 3)
    return out.reshape(b, h, n_tok, e)


def linformer_attention(q: Tensor, k: Tensor, v: Tensor, proj_k: Tensor, proj_v: Tensor,
                        dropout_p: float = 0.0) -> Tensor:
    """Attention over keys and values projected along the sequence: O(L·k) time and memory.

    Args:
        q, k, v: (B, H, L, E).
        proj_k, proj_v: (k, n) projections with n >= L; the first L columns are used.
        dropout_p: attention dropout.
    """
    n_tok = k.shape[-2]
    if proj_k.shape[-1] < n_tok:
        raise ValueError(f"Linformer projections cover {proj_k.shape[-1]} positions, the input "
                         f"has {n_tok}; raise seq_len.")
    kp = proj_k[:, :n_tok].to(k.dtype) @ k  # (B, H, k, E)
    vp = proj_v[:, :n_tok].to(v.dtype) @ v
    return F.scaled_dot_product_attention(q, kp, vp, dropout_p=dropout_p)


class LocalSelfAttention(SelfAttentionBase):
    """Multi-head sliding-window self-attention: O(L·w) time and memory.

    Args:
        dim: D.
        num_heads: H.
        window: w, keys visible on each side of a query.
        dropout, bias, causal, rotary: as in :class:`~dltricks.nn.attention.SelfAttentionBase`.

    Shapes:
        x (B, L, D) → (B, L, D)
    """

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False, rotary: nn.Module | None = None, window: int = 16) -> None:
        super().__init__(dim, num_heads, dropout, bias, causal, rotary)
        _check_window(window)
        self.window = window

    def _global_idx(self, length: int, device: torch.device) -> Tensor | None:
        return None

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, padding_mask: Tensor | None,
                **kwargs) -> Tensor:
        if kwargs:
            raise ValueError(f"{type(self).__name__} takes no {', '.join(kwargs)} argument.")
        p = self.dropout if self.training else 0.0
        return local_attention(q, k, v, self.window, self.causal, padding_mask,
                               self._global_idx(q.shape[-2], q.device), p)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", window={self.window}"


class LongformerSelfAttention(LocalSelfAttention):
    """Sliding window plus global tokens (Beltagy et al. 2020): O(L·(w + G)).

    Args:
        dim, num_heads, dropout, bias, causal, rotary, window: as in
            :class:`LocalSelfAttention`.
        global_tokens: an int G (the first G positions are global, e.g. a CLS token) or explicit
            positions. Positions beyond the input length are ignored.

    Shapes:
        x (B, L, D) → (B, L, D)
    """

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False, rotary: nn.Module | None = None, window: int = 16,
                 global_tokens: int | Sequence[int] = 1) -> None:
        super().__init__(dim, num_heads, dropout, bias, causal, rotary, window)
        idx = list(range(global_tokens)) if isinstance(global_tokens, int) else list(
            global_tokens)
        if any(i < 0 for i in idx) or len(set(idx)) != len(idx):
            raise ValueError(f"global_tokens must be distinct non-negative positions, got {idx}.")
        self.register_buffer("global_positions", torch.tensor(sorted(idx), dtype=torch.long),
                             persistent=False)

    def _global_idx(self, length: int, device: torch.device) -> Tensor | None:
        idx = self.global_positions
        return idx[idx < length].to(device)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", global_tokens={self.global_positions.tolist()}"


class AxialSelfAttention(SelfAttentionBase):
    """Axial self-attention over a 2-D grid of tokens (Ho et al. 2019): O(L·(h + w)).

    Args:
        dim, num_heads, dropout, bias, rotary: as in
            :class:`~dltricks.nn.attention.SelfAttentionBase` (not causal).
        grid_size: (h, w) of the token grid; can also be given per call as ``grid_size=``.
            When neither is set, the sequence must be a square number of tokens.
        axis: ``"row"``, ``"col"`` or ``"both"`` (the first half of the heads along rows, the
            rest along columns; needs an even number of heads).

    Shapes:
        x (B, L = h·w, D) → (B, L, D)
    """

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False, rotary: nn.Module | None = None,
                 grid_size: tuple[int, int] | None = None, axis: str = "both") -> None:
        super().__init__(dim, num_heads, dropout, bias, causal, rotary)
        if causal:
            raise ValueError("Axial attention is not causal; use causal=False or another type.")
        if axis not in AXES:
            raise ValueError(f"Unknown axis {axis!r}; allowed: {', '.join(AXES)}.")
        if axis == "both" and num_heads % 2:
            raise ValueError(f"axis='both' splits the heads in two; num_heads={num_heads} is odd.")
        self.grid_size = None if grid_size is None else tuple(grid_size)
        self.axis = axis

    def _grid(self, length: int, grid_size: tuple[int, int] | None) -> tuple[int, int]:
        grid = grid_size or self.grid_size
        if grid is None:
            side = math.isqrt(length)
            if side * side != length:
                raise ValueError(f"Axial attention needs grid_size for {length} tokens (not a "
                                 "square number).")
            grid = (side, side)
        return tuple(grid)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, padding_mask: Tensor | None,
                grid_size: tuple[int, int] | None = None) -> Tensor:
        if padding_mask is not None:
            raise ValueError("Axial attention does not support padding masks.")
        grid = self._grid(q.shape[-2], grid_size)
        p = self.dropout if self.training else 0.0
        if self.axis != "both":
            return axial_attention(q, k, v, grid, self.axis, p)
        half = self.num_heads // 2
        rows = axial_attention(q[:, :half], k[:, :half], v[:, :half], grid, "row", p)
        cols = axial_attention(q[:, half:], k[:, half:], v[:, half:], grid, "col", p)
        return torch.cat([rows, cols], dim=1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", grid_size={self.grid_size}, axis={self.axis!r}"


class LinformerSelfAttention(SelfAttentionBase):
    """Linformer self-attention (Wang et al. 2020): keys/values projected to k rows, O(L·k).

    E and F (k, n) are initialised from N(0, 1/k), as in the paper's analysis, and shared by
    all heads and (with ``share_kv``) between keys and values.

    Args:
        dim, num_heads, dropout, bias, rotary: as in
            :class:`~dltricks.nn.attention.SelfAttentionBase` (not causal, no padding masks).
        seq_len: n, the longest input; shorter inputs use the first L columns.
        k: projected length.
        share_kv: one projection for keys and values.

    Shapes:
        x (B, L <= n, D) → (B, L, D)
    """

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False, rotary: nn.Module | None = None, seq_len: int = 256,
                 k: int = 64, share_kv: bool = False) -> None:
        super().__init__(dim, num_heads, dropout, bias, causal, rotary)
        if causal:
            raise ValueError("Linformer mixes all positions in its projection, so it cannot be "
                             "causal; use another attention type.")
        if seq_len < 1 or k < 1:
            raise ValueError(f"seq_len and k must be positive, got {seq_len} and {k}.")
        self.seq_len, self.k = seq_len, k
        self.proj_k = nn.Parameter(torch.randn(k, seq_len) / math.sqrt(k))
        self.proj_v = None if share_kv else nn.Parameter(torch.randn(k, seq_len) / math.sqrt(k))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, padding_mask: Tensor | None,
                **kwargs) -> Tensor:
        if kwargs:
            raise ValueError(f"Linformer takes no {', '.join(kwargs)} argument.")
        if padding_mask is not None:
            raise ValueError("Linformer does not support padding masks.")
        proj_v = self.proj_k if self.proj_v is None else self.proj_v
        p = self.dropout if self.training else 0.0
        return linformer_attention(q, k, v, self.proj_k, proj_v, p)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", seq_len={self.seq_len}, k={self.k}"
