"""Mamba networks (Gu & Dao 2023): a residual stack of RMSNorm → Mamba block, as a language
model with tied embeddings and recurrent generation, and as a sequence classifier; with two
options that realise the guide's extra claims on top of the published model.

* **Hybrid stack** (``attn_every`` / ``attn_layers``): attention layers interleaved with the Mamba
  layers, as in Jamba (Lieber et al. 2024, "Jamba: A Hybrid Transformer-Mamba Language Model").
  With ``attn_every=k`` every block of k + 1 layers holds k Mamba layers and one attention layer
  at position (k + 1) // 2 of the block: Jamba's own layout for k = 7 (period 8, offset 4).
  An attention layer is pre-norm residual, ``h + Attn(RMSNorm(h))``, with multi-head
  self-attention on ``scaled_dot_product_attention``, no position encoding by default (Jamba
  found none needed: the Mamba layers carry order) or RoPE, and an optional feed-forward
  sub-layer (``attn_mlp_ratio``; Jamba follows every mixer with an MLP, the published Mamba has
  none). Generation keeps a conv + SSM state per Mamba layer and a KV cache per attention layer.
* **Early exit** (``exit_every`` / ``exit_layers``, ``exit_threshold``): intermediate prediction
  heads trained with a weighted sum of their losses, and a confidence threshold at inference
  (BranchyNet, Teerapittayanon et al. 2016; CALM, Schuster et al. 2022; see
  :mod:`dltricks.models.early_exit`). The classifier stops computing for a sequence once an exit
  is confident; the LM reports per-token exit depths of its full forward (see
  :class:`MambaLM`).

Module and parameter names follow Hugging Face's ``MambaForCausalLM`` (``backbone.embeddings``,
``backbone.layers.{i}.norm``, ``backbone.layers.{i}.mixer.*``, ``backbone.norm_f``,
``lm_head``), so :mod:`dltricks.models.hf_mamba` reads and writes Hugging Face checkpoint
folders without renaming.

Axis letters: B batch, L length, M d_model, V vocabulary, K classes, C input channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dltricks.models.early_exit import (
    EarlyExitMixin,
    ExitHead,
    ExitOutput,
    confidence,
    exit_layer_indices,
    exit_loss_weights,
)
from dltricks.models.registry import register_variant
from dltricks.nn.attention import KVCache, MultiHeadSelfAttention
from dltricks.nn.position import RotaryEmbedding
from dltricks.nn.ssm.mamba_block import MambaBlock, MambaState
from dltricks.nn.transformer import FeedForward

ATTN_POSITIONS = ("none", "rope")
LayerState = MambaState | KVCache


def hybrid_attention_layers(n_layers: int, attn_every: int = 0,
                            attn_layers: Sequence[int] | None = None) -> tuple[int, ...]:
    """Indices of the attention layers of a hybrid stack.

    Args:
        n_layers: total depth (Mamba and attention layers).
        attn_every: k Mamba layers per attention layer; the attention layer sits at position
            (k + 1) // 2 of each block of k + 1 layers (Jamba: k = 7, offset 4). 0: none.
        attn_layers: explicit indices instead (negative ones count from the end).

    Raises:
        ValueError: negative ``attn_every``, both options, an index out of range, or an
            ``attn_every`` that leaves no attention layer in ``n_layers``.
    """
    if attn_every < 0:
        raise ValueError(f"attn_every must be >= 0, got {attn_every}.")
    if attn_layers is not None:
        if attn_every:
            raise ValueError("Give attn_every or attn_layers, not both.")
        out = set()
        for i in attn_layers:
            j = i + n_layers if i < 0 else i
            if not 0 <= j < n_layers:
                raise ValueError(f"attention layer {i} is out of range for {n_layers} layers.")
            out.add(j)
        return tuple(sorted(out))
    if not attn_every:
        return ()
    period = attn_every + 1
    out = tuple(i for i in range(n_layers) if i % period == period // 2)
    if not out:
        raise ValueError(f"attn_every={attn_every} places no attention layer in {n_layers} "
                         f"layers (the first is layer {period // 2}); add layers or use "
                         f"attn_layers.")
    return out


class MambaLayer(nn.Module):
    """Pre-norm residual layer: h + mixer(RMSNorm(h))."""

    def __init__(self, dim: int, eps: float = 1e-5, **block_kwargs) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(dim, eps=eps)
        self.mixer = MambaBlock(dim, **block_kwargs)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.mixer(self.norm(h))

    def init_state(self, batch: int, device=None, dtype=None) -> MambaState:
        return self.mixer.init_state(batch, device, dtype)

    def step(self, h: Tensor, state: MambaState) -> Tensor:
        return h + self.mixer.step(self.norm(h), state)

    def prefill(self, h: Tensor) -> tuple[Tensor, MambaState]:
        out, state = self.mixer.prefill(self.norm(h))
        return h + out, state


class AttentionLayer(nn.Module):
    """Pre-norm residual self-attention layer of a hybrid stack (Jamba's attention layer):
    ``h + Attn(RMSNorm(h))``, then ``h + FFN(RMSNorm(h))`` when ``mlp_ratio > 0``.

    Args:
        dim: M.
        num_heads: heads; must divide ``dim``.
        causal: causal attention (required for language modelling and generation).
        position: ``"none"`` (Jamba's choice) or ``"rope"``.
        mlp_ratio: feed-forward width / M; 0 for no feed-forward sub-layer.
        eps: RMSNorm epsilon.

    Shapes:
        (B, L, M) → (B, L, M); ``step``: (B, M) → (B, M)
    """

    def __init__(self, dim: int, num_heads: int = 4, causal: bool = True, position: str = "none",
                 mlp_ratio: float = 0.0, eps: float = 1e-5) -> None:
        super().__init__()
        if position not in ATTN_POSITIONS:
            raise ValueError(f"Unknown attention position {position!r} in a hybrid stack; "
                             f"allowed: {', '.join(ATTN_POSITIONS)}.")
        if mlp_ratio < 0:
            raise ValueError(f"attn_mlp_ratio must be >= 0, got {mlp_ratio}.")
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must be positive and divide dim={dim}.")
        self.norm = nn.RMSNorm(dim, eps=eps)
        rotary = RotaryEmbedding(dim // num_heads) if position == "rope" else None
        self.mixer = MultiHeadSelfAttention(dim, num_heads, bias=False, causal=causal,
                                            rotary=rotary)
        self.mlp_norm = nn.RMSNorm(dim, eps=eps) if mlp_ratio > 0 else None
        self.mlp = FeedForward(dim, max(1, round(dim * mlp_ratio))) if mlp_ratio > 0 else None

    def forward(self, h: Tensor, cache: KVCache | None = None) -> Tensor:
        h = h + self.mixer(self.norm(h), cache=cache)
        if self.mlp is not None:
            h = h + self.mlp(self.mlp_norm(h))
        return h

    def init_state(self, batch: int, device=None, dtype=None) -> KVCache:
        return KVCache()

    def step(self, h: Tensor, cache: KVCache) -> Tensor:
        return self.forward(h[:, None], cache)[:, 0]

    def prefill(self, h: Tensor) -> tuple[Tensor, KVCache]:
        cache = KVCache()
        return self.forward(h, cache), cache


class MambaBackbone(nn.Module):
    """Embedding (optional) → n_layers layers (Mamba, or attention at ``attn_layers``) → final
    RMSNorm.

    Args:
        dim: M.
        n_layers: total depth.
        vocab_size: V for a token embedding, or None for feature input.
        eps: RMSNorm epsilon.
        attn_layers: indices of attention layers (see :func:`hybrid_attention_layers`).
        num_heads, attn_causal, attn_position, attn_mlp_ratio: :class:`AttentionLayer` options.
        **block_kwargs: :class:`~dltricks.nn.ssm.mamba_block.MambaBlock` options.
    """

    def __init__(self, dim: int, n_layers: int, vocab_size: int | None = None,
                 eps: float = 1e-5, *, attn_layers: Sequence[int] = (), num_heads: int = 4,
                 attn_causal: bool = True, attn_position: str = "none",
                 attn_mlp_ratio: float = 0.0, **block_kwargs) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}.")
        self.embeddings = nn.Embedding(vocab_size, dim) if vocab_size else None
        if self.embeddings is not None:
            # std 0.02 as in the authors' initialisation (initializer_range); PyTorch's N(0, 1)
            # with a tied LM head gives initial logits of size ~dim and a loss near 70.
            nn.init.normal_(self.embeddings.weight, std=0.02)
        attn = set(attn_layers)
        self.attn_layers = tuple(sorted(attn))
        self.layers = nn.ModuleList(
            AttentionLayer(dim, num_heads, attn_causal, attn_position, attn_mlp_ratio, eps)
            if i in attn else MambaLayer(dim, eps, **block_kwargs) for i in range(n_layers))
        self.norm_f = nn.RMSNorm(dim, eps=eps)

    def forward(self, h: Tensor) -> Tensor:
        """(B, L) tokens or (B, L, M) features → (B, L, M)."""
        if self.embeddings is not None:
            h = self.embeddings(h)
        for layer in self.layers:
            h = layer(h)
        return self.norm_f(h)


def _check_threshold(threshold: float) -> float:
    if threshold < 0:
        raise ValueError(f"exit_threshold must be >= 0 (>= 1: never exit), got {threshold}.")
    return float(threshold)


class _ExitOptions(EarlyExitMixin):
    """Sets up the early-exit attributes shared by :class:`MambaLM` and
    :class:`MambaClassifier`."""

    def _init_exits(self, n_layers: int, exit_every: int, exit_layers: Sequence[int] | None,
                    exit_threshold: float, weighting: str | Sequence[float]) -> None:
        self.n_layers = n_layers
        self.exit_layers = exit_layer_indices(n_layers, exit_every, exit_layers)
        self.exit_weights = exit_loss_weights(self.exit_layers, n_layers, weighting)
        self.exit_threshold = _check_threshold(exit_threshold)
        self.last_depth = None

    def set_exit_threshold(self, threshold: float) -> None:
        """Confidence needed to leave at an intermediate exit (>= 1: never exit early)."""
        self.exit_threshold = _check_threshold(threshold)


class MambaLM(_ExitOptions, nn.Module):
    """Mamba language model / token tagger: tokens (B, L) → logits (B, L, V), optionally a
    hybrid Mamba + attention stack and with early exits.

    Early exit in the LM follows CALM: every exit shares the final RMSNorm and the LM head. In
    training, ``forward(tokens, return_exits=True)`` also returns the exits' logits. In eval
    mode with ``exit_threshold < 1`` each token takes the logits of its first confident exit and
    ``last_depth`` (B, L) records the layers it needed. The full forward still runs every layer
    for every token (the deeper layers' states of a token feed later tokens), so the reported
    depth is what a per-token decoder would need, not a saving of this call; recurrent
    :meth:`step` / :meth:`generate` always run the full depth (a skipped Mamba layer would still
    have to update its state, which is most of its cost).

    Args:
        vocab_size: V.
        dim: d_model.
        n_layers: number of layers (Mamba and attention).
        d_state, d_conv, expand, dt_rank: Mamba block settings (paper defaults).
        tie_embeddings: share the LM head with the input embedding.
        eps: RMSNorm epsilon.
        scan_backend: selective-scan implementation ("auto", "cpu", "ref", "cuda").
        bias, conv_bias: Mamba block biases.
        attn_every, attn_layers: hybrid layout (see :func:`hybrid_attention_layers`).
        num_heads, attn_position, attn_mlp_ratio: attention layer options (always causal here).
        exit_every, exit_layers: intermediate exits (see
            :func:`~dltricks.models.early_exit.exit_layer_indices`).
        exit_threshold: confidence to exit at inference (>= 1: never, the full model).
        exit_loss_weights: ``"uniform"``, ``"linear"`` or one weight per intermediate exit.
    """

    def __init__(self, vocab_size: int, dim: int = 64, n_layers: int = 2, d_state: int = 16,
                 d_conv: int = 4, expand: int = 2, dt_rank: int | str = "auto",
                 tie_embeddings: bool = True, eps: float = 1e-5, scan_backend: str = "auto",
                 bias: bool = False, conv_bias: bool = True, *, attn_every: int = 0,
                 attn_layers: Sequence[int] | None = None, num_heads: int = 4,
                 attn_position: str = "none", attn_mlp_ratio: float = 0.0,
                 exit_every: int = 0, exit_layers: Sequence[int] | None = None,
                 exit_threshold: float = 1.0,
                 exit_loss_weights: str | Sequence[float] = "uniform") -> None:
        super().__init__()
        self.backbone = MambaBackbone(
            dim, n_layers, vocab_size, eps,
            attn_layers=hybrid_attention_layers(n_layers, attn_every, attn_layers),
            num_heads=num_heads, attn_causal=True, attn_position=attn_position,
            attn_mlp_ratio=attn_mlp_ratio, d_state=d_state, d_conv=d_conv, expand=expand,
            dt_rank=dt_rank, scan_backend=scan_backend, bias=bias, conv_bias=conv_bias)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight
        self._init_exits(n_layers, exit_every, exit_layers, exit_threshold, exit_loss_weights)

    def _logits(self, h: Tensor) -> Tensor:
        return self.lm_head(self.backbone.norm_f(h))

    def forward(self, tokens: Tensor, return_depth: bool = False, return_exits: bool = False
                ) -> Tensor | tuple[Tensor, Tensor] | ExitOutput:
        """Logits (B, L, V); with ``return_depth`` also the layers used per token (B, L); in
        training with ``return_exits`` an :class:`ExitOutput` with the exits' logits."""
        bb = self.backbone
        use_exits = bool(self.exit_layers) and (self.training or self.early_exit_active)
        h = bb.embeddings(tokens)
        exit_logits: list[Tensor] = []
        for i, layer in enumerate(bb.layers):
            h = layer(h)
            if use_exits and i in self.exit_layers:
                exit_logits.append(self._logits(h))
        logits = self._logits(h)  # (B, L, V)
        depth = torch.full(tokens.shape, self.n_layers, dtype=torch.long, device=tokens.device)
        if self.training:
            if return_exits:
                return self._exit_output(logits, exit_logits)
        else:
            if use_exits:
                logits, depth = _first_confident(exit_logits, logits, self.exit_layers,
                                                 self.exit_threshold, depth)
            self.last_depth = depth
        return (logits, depth) if return_depth else logits

    def init_state(self, batch: int) -> list[LayerState]:
        """Per layer: a :class:`MambaState` (Mamba) or an empty :class:`KVCache` (attention)."""
        p = self.backbone.embeddings.weight  # not lm_head: quantization replaces that module
        return [layer.init_state(batch, p.device, p.dtype) for layer in self.backbone.layers]

    def step(self, token: Tensor, states: list[LayerState]) -> Tensor:
        """One token per sequence: (B,) → next-token logits (B, V); updates ``states``."""
        h = self.backbone.embeddings(token)
        for layer, state in zip(self.backbone.layers, states, strict=True):
            h = layer.step(h, state)
        return self._logits(h)

    def prefill(self, tokens: Tensor) -> tuple[Tensor, list[LayerState]]:
        """The prompt (B, L) in one parallel pass: logits (B, L, V) at full depth, and the
        per-layer states that L calls of :meth:`step` from :meth:`init_state` would leave
        (Mamba layers: the scan's last state and the last conv inputs; attention layers: the
        filled KV cache)."""
        if tokens.dim() != 2 or tokens.shape[1] < 1:
            raise ValueError(f"tokens must be (batch, length >= 1), got {tuple(tokens.shape)}.")
        h = self.backbone.embeddings(tokens)
        states: list[LayerState] = []
        for layer in self.backbone.layers:
            h, state = layer.prefill(h)
            states.append(state)
        return self._logits(h), states

    @torch.no_grad()
    def generate(self, prompt: Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Continues ``prompt`` (B, L0) by ``max_new_tokens`` tokens: the prompt in one parallel
        pass (:meth:`prefill`), then the recurrent step per new token; greedy when
        ``temperature`` is 0, else sampling (optionally from the top k)."""
        if prompt.dim() != 2 or prompt.shape[1] < 1:
            raise ValueError(f"prompt must be (batch, length >= 1), got {tuple(prompt.shape)}.")
        logits, states = self.prefill(prompt)
        logits = logits[:, -1]
        out = [prompt]
        for _ in range(max_new_tokens):
            if temperature <= 0:
                nxt = logits.argmax(-1)
            else:
                scores = logits.float() / temperature
                if top_k is not None:
                    kth = scores.topk(min(top_k, scores.shape[-1]), dim=-1).values[..., -1:]
                    scores = scores.masked_fill(scores < kth, float("-inf"))
                nxt = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
            out.append(nxt[:, None])
            logits = self.step(nxt, states)
        return torch.cat(out, dim=1)


def _first_confident(exit_logits: list[Tensor], final: Tensor, exit_layers: Sequence[int],
                     threshold: float, depth: Tensor) -> tuple[Tensor, Tensor]:
    """Per input (or token), the logits of the first exit with confidence >= ``threshold`` and
    the depth (layer index + 1) of that exit; the final logits and depth where none is."""
    out, done = final, torch.zeros_like(depth, dtype=torch.bool)
    for layer, lg in zip(exit_layers, exit_logits, strict=True):
        take = ~done & (confidence(lg) >= threshold)
        out = torch.where(take[..., None], lg.to(out.dtype), out)
        depth = torch.where(take, torch.full_like(depth, layer + 1), depth)
        done = done | take
    return out, depth


class MambaClassifier(_ExitOptions, nn.Module):
    """Sequence classifier: signals (B, C, L) → logits (B, K), by a linear input projection,
    layers (Mamba, or a hybrid stack), mean pooling over time and a linear head; optionally
    with early exits.

    An intermediate exit is an :class:`~dltricks.models.early_exit.ExitHead` of its own
    (RMSNorm → mean → Linear, as BranchyNet's side branches). In eval mode with
    ``exit_threshold < 1`` the layers run on the sequences still in flight only: a sequence whose
    exit is confident stops there, and ``last_depth`` (B,) records the layers each one used.

    Args:
        in_channels: C.
        num_classes: K.
        dim, n_layers, d_state, d_conv, expand, scan_backend: as in :class:`MambaLM`.
        attn_every, attn_layers, num_heads, attn_position, attn_mlp_ratio: hybrid stack.
        attn_causal: causal attention layers (default False: the whole signal is seen before
            the label, so attention may look both ways).
        exit_every, exit_layers, exit_threshold, exit_loss_weights: early exits.
    """

    def __init__(self, in_channels: int, num_classes: int, dim: int = 64, n_layers: int = 2,
                 d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 scan_backend: str = "auto", *, attn_every: int = 0,
                 attn_layers: Sequence[int] | None = None, num_heads: int = 4,
                 attn_position: str = "none", attn_mlp_ratio: float = 0.0,
                 attn_causal: bool = False, exit_every: int = 0,
                 exit_layers: Sequence[int] | None = None, exit_threshold: float = 1.0,
                 exit_loss_weights: str | Sequence[float] = "uniform") -> None:
        super().__init__()
        self.embed = nn.Linear(in_channels, dim)
        self.backbone = MambaBackbone(
            dim, n_layers, None,
            attn_layers=hybrid_attention_layers(n_layers, attn_every, attn_layers),
            num_heads=num_heads, attn_causal=attn_causal, attn_position=attn_position,
            attn_mlp_ratio=attn_mlp_ratio, d_state=d_state, d_conv=d_conv, expand=expand,
            scan_backend=scan_backend)
        self.head = nn.Linear(dim, num_classes)
        self._init_exits(n_layers, exit_every, exit_layers, exit_threshold, exit_loss_weights)
        self.exit_heads = nn.ModuleList(ExitHead(dim, num_classes) for _ in self.exit_layers)

    def _final(self, h: Tensor) -> Tensor:
        return self.head(self.backbone.norm_f(h).mean(dim=1))

    def forward(self, x: Tensor, return_depth: bool = False, return_exits: bool = False
                ) -> Tensor | tuple[Tensor, Tensor] | ExitOutput:
        """Logits (B, K); with ``return_depth`` also the layers used per sequence (B,); in
        training with ``return_exits`` an :class:`ExitOutput` with the exits' logits."""
        h = self.embed(x.transpose(1, 2))  # (B, L, M)
        depth = torch.full((x.shape[0],), self.n_layers, dtype=torch.long, device=x.device)
        heads = dict(zip(self.exit_layers, self.exit_heads, strict=True))
        if self.training or not self.early_exit_active:
            exit_logits = []
            for i, layer in enumerate(self.backbone.layers):
                h = layer(h)
                if self.training and i in heads:
                    exit_logits.append(heads[i](h))
            logits = self._final(h)
            if self.training:
                if return_exits:
                    return self._exit_output(logits, exit_logits)
            else:
                self.last_depth = depth
            return (logits, depth) if return_depth else logits
        # inference with early exit: only the sequences still in flight go deeper
        logits = None
        live = torch.arange(x.shape[0], device=x.device)
        for i, layer in enumerate(self.backbone.layers):
            h = layer(h)
            if i in heads:
                lg = heads[i](h)  # (b, K) for the b live sequences
                if logits is None:
                    logits = lg.new_zeros(x.shape[0], lg.shape[-1])
                take = confidence(lg) >= self.exit_threshold
                logits[live[take]] = lg[take]
                depth[live[take]] = i + 1
                live, h = live[~take], h[~take]
                if live.numel() == 0:
                    break
        if live.numel():
            lg = self._final(h)
            if logits is None:
                logits = lg.new_zeros(x.shape[0], lg.shape[-1])
            logits[live] = lg
        self.last_depth = depth
        return (logits, depth) if return_depth else logits


# --------------------------------------------------------------------------- registered variants


def _explicit_attention_layers(given: dict[str, Any], arguments: dict[str, Any]
                               ) -> dict[str, Any]:
    """Explicit ``attn_layers`` replace the variant's default ``attn_every``."""
    if given.get("attn_layers") is not None and "attn_every" not in given:
        arguments["attn_every"] = 0
    return arguments


mamba_lm = register_variant(
    "mamba_lm", MambaLM,
    "Mamba language model; with a sequence dataset it tags every position. Published Mamba by "
    "default; :class:`MambaLM` documents the hybrid and early-exit options.",
    task="sequence", description="Mamba LM / token tagger (Gu & Dao 2023); options: hybrid "
    "attention layers, early exits.",
    example=dict(kwargs=dict(vocab_size=11, dim=16, n_layers=2), input=(2, 9), dtype="long",
                 high=11, output=(2, 9, 11)))

mamba_classifier = register_variant(
    "mamba_classifier", MambaClassifier,
    "Mamba layers over a signal, mean-pooled; :class:`MambaClassifier` documents the hybrid "
    "and early-exit options.",
    task="classification", description="Mamba classifier for 1-D signals; options: hybrid "
    "attention layers, early exits.",
    example=dict(kwargs=dict(in_channels=1, num_classes=10, dim=16), input=(2, 1, 40),
                 dtype="float", output=(2, 10)))

mamba_hybrid_lm = register_variant(
    "mamba_hybrid_lm", MambaLM,
    ":func:`mamba_lm` with hybrid defaults: 4 layers, attention at layer 2 (M M A M).",
    defaults={"n_layers": 4, "attn_every": 3}, resolve=_explicit_attention_layers,
    task="sequence", description="Hybrid Mamba + attention LM (Jamba layout, Lieber et al. "
    "2024): mamba_lm with attn_every=3 by default.",
    example=dict(kwargs=dict(vocab_size=11, dim=16, n_layers=2, attn_every=1, num_heads=2),
                 input=(2, 9), dtype="long", high=11, output=(2, 9, 11)))

mamba_hybrid_classifier = register_variant(
    "mamba_hybrid_classifier", MambaClassifier,
    ":func:`mamba_classifier` with hybrid defaults: 4 layers, attention at layer 2.",
    defaults={"n_layers": 4, "attn_every": 3}, resolve=_explicit_attention_layers,
    task="classification", description="Hybrid Mamba + attention classifier for 1-D signals "
    "(Jamba layout): mamba_classifier with attn_every=3 by default.",
    example=dict(kwargs=dict(in_channels=1, num_classes=10, dim=16, n_layers=2, attn_every=1,
                             num_heads=2), input=(2, 1, 40), dtype="float", output=(2, 10)))

