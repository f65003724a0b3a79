"""Positional encodings: sinusoidal, learned, rotary (RoPE) and none, selectable by name.

* ``"sinusoidal"``: fixed sines and cosines of geometrically spaced frequencies added to the
  token embeddings (Vaswani et al. 2017, "Attention Is All You Need", section 3.5). Any length.
* ``"learned"``: a trained vector per position added to the embeddings (as in BERT and ViT);
  lengths up to ``max_len``.
* ``"rope"``: rotary position embedding (Su et al. 2021, "RoFormer: Enhanced Transformer with
  Rotary Position Embedding"). Nothing is added to the embeddings; each pair of query/key
  features (2i, 2i + 1) at position m is rotated by the angle m·θᵢ, θᵢ = base^(-2i/E), so the
  score between positions m and n depends on m - n only. Applied inside attention.
* ``"none"``: no position information (attention alone is permutation-equivariant).

Axis letters: B batch, L length, D model width, H heads, E head width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

POSITIONS = ("sinusoidal", "learned", "rope", "none")


def sinusoidal_table(length: int, dim: int, offset: int = 0, base: float = 10000.0,
                     device: torch.device | None = None) -> Tensor:
    """(L, D) table: PE[p, 2i] = sin(p / base^(2i/D)), PE[p, 2i+1] = cos(p / base^(2i/D))."""
    pos = torch.arange(offset, offset + length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float32,
                                                    device=device) / dim)  # (ceil(D/2),)
    angles = pos * freq  # (L, ceil(D/2))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = angles.sin()
    table[:, 1::2] = angles.cos()[:, : dim // 2]
    return table


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table (Vaswani et al. 2017); no parameters, any length.

    Args:
        dim: D.
        base: wavelength base (10000 in the paper).

    Shapes:
        x (B, L, D) → (B, L, D)
    """

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}.")
        self.dim, self.base = dim, base

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        table = sinusoidal_table(x.shape[-2], self.dim, offset, self.base, x.device)
        return x + table.to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trained vector per position, for lengths up to ``max_len``.

    Args:
        dim: D.
        max_len: the longest sequence (offset + L) it can encode.
        init_std: standard deviation of the normal initialisation.

    Shapes:
        x (B, L, D) → (B, L, D)
    """

    def __init__(self, dim: int, max_len: int, init_std: float = 0.02) -> None:
        super().__init__()
        if dim < 1 or max_len < 1:
            raise ValueError(f"dim and max_len must be positive, got {dim} and {max_len}.")
        self.max_len = max_len
        self.weight = nn.Parameter(torch.randn(max_len, dim) * init_std)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        end = offset + x.shape[-2]
        if end > self.max_len:
            raise ValueError(
                f"Learned positions cover {self.max_len} steps, but positions up to {end} were "
                f"asked for; raise max_len or use 'sinusoidal' or 'rope'."
            )
        return x + self.weight[offset:end]


class NoPositionalEncoding(nn.Module):
    """Identity: no position information."""

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        return x


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021) for (B, H, L, E) queries or keys.

    Feature pairs (2i, 2i + 1) at position m are rotated by m·θᵢ with θᵢ = base^(-2i/E)
    (the paper's interleaved layout, eq. 34). Rotations preserve norms and make
    <R(m) q, R(n) k> a function of q, k and m - n.

    Args:
        head_dim: E, even.
        base: frequency base (10000 in the paper).

    Shapes:
        x (B, H, L, E) → (B, H, L, E)
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim < 2 or head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}.")
        self.head_dim, self.base = head_dim, base
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (E/2,)

    def angles(self, length: int, offset: int = 0) -> Tensor:
        """(L, E/2) rotation angles m·θᵢ for positions offset .. offset + L - 1."""
        pos = torch.arange(offset, offset + length, dtype=torch.float32,
                           device=self.inv_freq.device)
        return pos[:, None] * self.inv_freq[None, :]

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"Expected head dimension {self.head_dim}, got {x.shape[-1]}.")
        theta = self.angles(x.shape[-2], offset)
        cos, sin = theta.cos(), theta.sin()  # (L, E/2)
        pairs = x.float().unflatten(-1, (-1, 2))  # (..., L, E/2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
        return rotated.flatten(-2).to(x.dtype)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}"


def get_position(position: str | None, dim: int, max_len: int | None = None) -> nn.Module:
    """The additive encoding for ``position`` (RoPE and "none" add nothing: identity).

    Args:
        position: ``"sinusoidal" | "learned" | "rope" | "none"`` or None.
        dim: D.
        max_len: needed by ``"learned"``.

    Raises:
        ValueError: unknown name (the message lists the allowed ones), or ``"learned"`` without
            ``max_len``.
    """
    name = "none" if position is None else position
    if name not in POSITIONS:
        raise ValueError(f"Unknown position {position!r}; allowed: {', '.join(POSITIONS)}.")
    if name == "sinusoidal":
        return SinusoidalPositionalEncoding(dim)
    if name == "learned":
        if max_len is None:
            raise ValueError("position='learned' needs max_len (the longest sequence).")
        return LearnedPositionalEmbedding(dim, max_len)
    return NoPositionalEncoding()
