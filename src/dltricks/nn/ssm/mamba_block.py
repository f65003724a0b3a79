"""The Mamba block (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", Section 3.4 and Figure 3), with a recurrent one-token step for generation.

    x, z  = split(in_proj(h))                          (B, L, 2·E) → two (B, E, L)
    x     = SiLU(causal depthwise conv1d(x))           kernel d_conv = 4
    Δ, B, C = split(x_proj(x))                         Δ of rank R = ceil(d_model / 16)
    y     = selective_scan(x, dt_proj(Δ), A = −exp(A_log), B, C, D, z, softplus)
    out   = out_proj(y)

Initialisations as published: A = −(1, 2, …, N) per channel (S4D-real), D = 1, dt_proj's bias
set so that softplus(bias) is log-uniform in [dt_min, dt_max], its weight uniform in
±dt_scale·R^−1/2. Parameter names follow Hugging Face's ``MambaMixer`` (in_proj, conv1d,
x_proj, dt_proj, A_log, D, out_proj), so published checkpoints load without renaming.

Axis letters: B batch, L length, M d_model, E d_inner = expand·M, N d_state, R dt_rank,
K d_conv.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.nn.ssm.selective_scan import selective_scan


@dataclass
class MambaState:
    """Recurrent state of one Mamba block: the last K−1 conv inputs and the SSM state."""

    conv: Tensor  # (B, E, K)
    ssm: Tensor  # (B, E, N), float32


class MambaBlock(nn.Module):
    """Selective SSM mixer.

    Args:
        dim: d_model (M).
        d_state: N.
        d_conv: K, causal depthwise convolution width.
        expand: E = expand · M.
        dt_rank: R, or "auto" for ceil(M / 16).
        dt_min, dt_max, dt_init_floor, dt_scale: Δ initialisation (paper defaults).
        conv_bias, bias: biases of conv1d and of the in/out projections.
        scan_backend: passed to :func:`dltricks.nn.ssm.selective_scan`.
    """

    #: children whose parameters :meth:`forward` reads directly (``dt_proj.weight`` / ``.bias``
    #: go to the scan separately), so module-replacing or hook-based compression
    #: (:mod:`dltricks.compress`) must leave them alone; dt_proj is R × E, a small share.
    compress_skip = ("dt_proj",)

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        conv_bias: bool = True,
        bias: bool = False,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        if dim < 1 or d_state < 1 or d_conv < 1 or expand < 1:
            raise ValueError("dim, d_state, d_conv and expand must be positive.")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Need 0 < dt_min <= dt_max, got {dt_min} and {dt_max}.")
        self.dim, self.d_state, self.d_conv = dim, d_state, d_conv
        self.d_inner = expand * dim
        self.dt_rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend = scan_backend
        e, n, r = self.d_inner, d_state, self.dt_rank
        self.in_proj = nn.Linear(dim, 2 * e, bias=bias)
        self.conv1d = nn.Conv1d(e, e, d_conv, groups=e, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(e, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, e, bias=True)
        self.out_proj = nn.Linear(e, dim, bias=bias)
        # S4D-real: A = -(1..N) for every channel, stored as log for positivity
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1).float()).repeat(e, 1))
        self.D = nn.Parameter(torch.ones(e))
        with torch.no_grad():
            std = r**-0.5 * dt_scale
            nn.init.uniform_(self.dt_proj.weight, -std, std)
            dt = torch.exp(torch.rand(e) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)

    def _split_ssm_params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (..., E) → Δ before bias (..., E), B (..., N), C (..., N)."""
        dt, b, c = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return dt @ self.dt_proj.weight.T, b, c

    def _conv_silu(self, x_in: Tensor) -> Tensor:
        """SiLU(causal depthwise conv1d(x_in)) for x_in (B, L, E), returned as (B, L, E).

        A plain ``nn.Conv1d`` child runs as K shifted multiply-adds in the (B, L, E) layout of
        the projections: on the CPU that skips two transposed copies and the depthwise conv's
        slow backward (about 2x faster for the lab's small models), and the result is
        contiguous for ``x_proj`` and the scan. A replaced or hooked conv1d (quantised, pruned)
        is called as a module, the reference path (:meth:`_conv_silu_module`)."""
        conv = self.conv1d
        if type(conv) is not nn.Conv1d or conv._forward_pre_hooks or conv._forward_hooks:
            return self._conv_silu_module(x_in)
        k, length = self.d_conv, x_in.shape[1]
        w = conv.weight[:, 0, :]  # (E, K)
        xp = F.pad(x_in, (0, 0, k - 1, 0))  # (B, K-1+L, E): zeros before the first token
        last = xp[:, k - 1:]
        x = last * w[:, k - 1] if conv.bias is None else torch.addcmul(conv.bias, last,
                                                                       w[:, k - 1])
        for j in range(k - 1):
            x = torch.addcmul(x, xp[:, j:j + length], w[:, j])
        return F.silu(x)

    def _conv_silu_module(self, x_in: Tensor) -> Tensor:
        """:meth:`_conv_silu` through ``self.conv1d(...)`` on (B, E, L): the reference."""
        length = x_in.shape[1]
        x = self.conv1d(x_in.transpose(1, 2))[..., :length]  # causal: drop the right padding
        return F.silu(x).transpose(1, 2)

    def _mix(self, h: Tensor, keep_state: bool) -> tuple[Tensor, MambaState | None]:
        length = h.shape[1]
        x_in, z = self.in_proj(h).chunk(2, dim=-1)  # (B, L, E) each
        x = self._conv_silu(x_in)  # (B, L, E)
        dt, b, c = self._split_ssm_params(x)  # (B, L, E), (B, L, N), (B, L, N)
        # the scan takes (B, E, L) and (B, N, L): transposed views of the (B, L, ·) tensors,
        # which are the layout its CPU kernel reads, so no copies
        out = selective_scan(
            x.transpose(1, 2), dt.transpose(1, 2), -torch.exp(self.A_log.float()),
            b.transpose(1, 2), c.transpose(1, 2), self.D.float(), z.transpose(1, 2),
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
            return_last_state=keep_state, backend=self.scan_backend,
        )  # (B, E, L) [, (B, E, N)]
        if not keep_state:
            return self.out_proj(out.transpose(1, 2)), None
        y, last = out
        # the step's conv state is the last K conv inputs (zeros before the first token)
        conv = F.pad(x_in.transpose(1, 2), (max(0, self.d_conv - length), 0))[..., -self.d_conv:]
        return self.out_proj(y.transpose(1, 2)), MambaState(conv.contiguous(), last.float())

    def forward(self, h: Tensor) -> Tensor:
        """(B, L, M) → (B, L, M)."""
        return self._mix(h, keep_state=False)[0]

    def prefill(self, h: Tensor) -> tuple[Tensor, MambaState]:
        """:meth:`forward` on a prompt (B, L, M) from the zero state, and the state after its
        last token — what L calls of :meth:`step` would leave, in one parallel pass (the scan's
        ``return_last_state``), as mamba-ssm does for the prompt before decoding."""
        out, state = self._mix(h, keep_state=True)
        assert state is not None
        return out, state

    def init_state(self, batch: int, device=None, dtype=None) -> MambaState:
        return MambaState(
            conv=torch.zeros(batch, self.d_inner, self.d_conv, device=device, dtype=dtype),
            ssm=torch.zeros(batch, self.d_inner, self.d_state, device=device,
                            dtype=torch.float32),
        )

    def step(self, h: Tensor, state: MambaState) -> Tensor:
        """One token: (B, M) → (B, M); updates ``state`` in place. Equal to :meth:`forward`
        on the sequence so far, at O(E·N) cost per token."""
        x, z = self.in_proj(h).chunk(2, dim=-1)  # (B, E)
        state.conv.copy_(torch.roll(state.conv, shifts=-1, dims=-1))
        state.conv[..., -1] = x
        x = (state.conv * self.conv1d.weight[:, 0, :]).sum(-1)  # depthwise conv at the last tap
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)
        dt, b, c = self._split_ssm_params(x)
        dt = F.softplus(dt + self.dt_proj.bias).float()  # (B, E)
        a = -torch.exp(self.A_log.float())  # (E, N)
        state.ssm.mul_(torch.exp(dt[..., None] * a)).add_(
            dt[..., None] * b.float()[:, None, :] * x.float()[..., None])
        y = (state.ssm * c.float()[:, None, :]).sum(-1) + self.D.float() * x.float()
        y = y * F.silu(z.float())
        return self.out_proj(y.to(h.dtype))
