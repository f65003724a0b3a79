"""Mamba networks (Gu & Dao 2023): a residual stack of RMSNorm → Mamba block, as a language
model with tied embeddings and recurrent generation, and as a sequence classifier.

Module and parameter names follow Hugging Face's ``MambaForCausalLM`` (``backbone.embeddings``,
``backbone.layers.{i}.norm``, ``backbone.layers.{i}.mixer.*``, ``backbone.norm_f``,
``lm_head``), so :func:`load_hf_mamba` reads a published checkpoint folder (config.json +
safetensors) without renaming.

Axis letters: B batch, L length, M d_model, V vocabulary, K classes, C input channels.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from dltricks.models.registry import register_model
from dltricks.nn.ssm.mamba_block import MambaBlock, MambaState


class MambaLayer(nn.Module):
    """Pre-norm residual layer: h + mixer(RMSNorm(h))."""

    def __init__(self, dim: int, eps: float = 1e-5, **block_kwargs) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(dim, eps=eps)
        self.mixer = MambaBlock(dim, **block_kwargs)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.mixer(self.norm(h))

    def step(self, h: Tensor, state: MambaState) -> Tensor:
        return h + self.mixer.step(self.norm(h), state)


class MambaBackbone(nn.Module):
    """Embedding (optional) → n_layers Mamba layers → final RMSNorm."""

    def __init__(self, dim: int, n_layers: int, vocab_size: int | None = None,
                 eps: float = 1e-5, **block_kwargs) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}.")
        self.embeddings = nn.Embedding(vocab_size, dim) if vocab_size else None
        if self.embeddings is not None:
            # std 0.02 as in the authors' initialisation (initializer_range); PyTorch's N(0, 1)
            # with a tied LM head gives initial logits of size ~dim and a loss near 70.
            nn.init.normal_(self.embeddings.weight, std=0.02)
        self.layers = nn.ModuleList(MambaLayer(dim, eps, **block_kwargs) for _ in range(n_layers))
        self.norm_f = nn.RMSNorm(dim, eps=eps)

    def forward(self, h: Tensor) -> Tensor:
        """(B, L) tokens or (B, L, M) features → (B, L, M)."""
        if self.embeddings is not None:
            h = self.embeddings(h)
        for layer in self.layers:
            h = layer(h)
        return self.norm_f(h)


class MambaLM(nn.Module):
    """Mamba language model / token tagger: tokens (B, L) → logits (B, L, V).

    Args:
        vocab_size: V.
        dim: d_model.
        n_layers: number of Mamba layers.
        d_state, d_conv, expand, dt_rank: Mamba block settings (paper defaults).
        tie_embeddings: share the LM head with the input embedding.
        eps: RMSNorm epsilon.
        scan_backend: selective-scan implementation ("auto", "cpu", "ref", "cuda").
    """

    def __init__(self, vocab_size: int, dim: int = 64, n_layers: int = 2, d_state: int = 16,
                 d_conv: int = 4, expand: int = 2, dt_rank: int | str = "auto",
                 tie_embeddings: bool = True, eps: float = 1e-5, scan_backend: str = "auto",
                 bias: bool = False, conv_bias: bool = True) -> None:
        super().__init__()
        self.backbone = MambaBackbone(
            dim, n_layers, vocab_size, eps, d_state=d_state, d_conv=d_conv, expand=expand,
            dt_rank=dt_rank, scan_backend=scan_backend, bias=bias, conv_bias=conv_bias)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight

    def forward(self, tokens: Tensor) -> Tensor:
        return self.lm_head(self.backbone(tokens))  # (B, L, V)

    def init_state(self, batch: int) -> list[MambaState]:
        p = self.lm_head.weight
        return [layer.mixer.init_state(batch, p.device, p.dtype)
                for layer in self.backbone.layers]

    def step(self, token: Tensor, states: list[MambaState]) -> Tensor:
        """One token per sequence: (B,) → next-token logits (B, V); updates ``states``."""
        h = self.backbone.embeddings(token)
        for layer, state in zip(self.backbone.layers, states, strict=True):
            h = layer.step(h, state)
        return self.lm_head(self.backbone.norm_f(h))

    @torch.no_grad()
    def generate(self, prompt: Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Continues ``prompt`` (B, L0) by ``max_new_tokens`` tokens with the recurrent step:
        greedy when ``temperature`` is 0, else sampling (optionally from the top k)."""
        if prompt.dim() != 2 or prompt.shape[1] < 1:
            raise ValueError(f"prompt must be (batch, length >= 1), got {tuple(prompt.shape)}.")
        states = self.init_state(prompt.shape[0])
        for t in range(prompt.shape[1]):
            logits = self.step(prompt[:, t], states)
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


class MambaClassifier(nn.Module):
    """Sequence classifier: signals (B, C, L) → logits (B, K), by a linear input projection,
    Mamba layers, mean pooling over time and a linear head."""

    def __init__(self, in_channels: int, num_classes: int, dim: int = 64, n_layers: int = 2,
                 d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 scan_backend: str = "auto") -> None:
        super().__init__()
        self.embed = nn.Linear(in_channels, dim)
        self.backbone = MambaBackbone(dim, n_layers, None, d_state=d_state, d_conv=d_conv,
                                      expand=expand, scan_backend=scan_backend)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.backbone(self.embed(x.transpose(1, 2)))  # (B, L, M)
        return self.head(h.mean(dim=1))


@register_model(task="sequence", description="Mamba LM / token tagger (Gu & Dao 2023).",
                example=dict(kwargs=dict(vocab_size=11, dim=16, n_layers=2), input=(2, 9),
                             dtype="long", high=11, output=(2, 9, 11)))
def mamba_lm(vocab_size: int, dim: int = 64, n_layers: int = 2, d_state: int = 16,
             d_conv: int = 4, expand: int = 2, tie_embeddings: bool = True,
             scan_backend: str = "auto") -> MambaLM:
    """Mamba language model; with a sequence dataset it tags every position."""
    return MambaLM(vocab_size, dim, n_layers, d_state, d_conv, expand,
                   tie_embeddings=tie_embeddings, scan_backend=scan_backend)


@register_model(task="classification", description="Mamba classifier for 1-D signals.",
                example=dict(kwargs=dict(in_channels=1, num_classes=10, dim=16), input=(2, 1, 40),
                             dtype="float", output=(2, 10)))
def mamba_classifier(in_channels: int, num_classes: int, dim: int = 64, n_layers: int = 2,
                     d_state: int = 16, d_conv: int = 4, expand: int = 2,
                     scan_backend: str = "auto") -> MambaClassifier:
    """Mamba layers over a signal, mean-pooled."""
    return MambaClassifier(in_channels, num_classes, dim, n_layers, d_state, d_conv, expand,
                           scan_backend)


def load_hf_mamba(folder: str | Path, scan_backend: str = "auto") -> MambaLM:
    """Builds a :class:`MambaLM` from a Hugging Face ``MambaForCausalLM`` folder
    (config.json + model.safetensors, sharded safetensors, or pytorch_model.bin), locally.

    Raises:
        FileNotFoundError: no config or weights in ``folder``.
        ValueError: a configuration this implementation does not cover, or weights that do not
            match the configuration.
    """
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} does not exist.")
    cfg = json.loads(cfg_path.read_text())
    dim, expand = cfg["hidden_size"], cfg.get("expand", 2)
    if cfg.get("intermediate_size", expand * dim) != expand * dim:
        raise ValueError(f"{cfg_path}: intermediate_size must equal expand * hidden_size.")
    rank = cfg.get("time_step_rank", "auto")
    model = MambaLM(
        cfg["vocab_size"], dim, cfg["num_hidden_layers"], cfg.get("state_size", 16),
        cfg.get("conv_kernel", 4), expand, rank,
        tie_embeddings=cfg.get("tie_word_embeddings", True),
        eps=cfg.get("layer_norm_epsilon", 1e-5), scan_backend=scan_backend,
        bias=cfg.get("use_bias", False), conv_bias=cfg.get("use_conv_bias", True),
    )
    state = _read_weights(folder)
    if model.lm_head.weight is model.backbone.embeddings.weight:
        state.pop("lm_head.weight", None)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != "lm_head.weight"]
    else:
        missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"Weights in {folder} do not match the config: missing "
                         f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}.")
    return model


def _read_weights(folder: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        state: dict[str, Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(folder / shard))
        return state
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"No model.safetensors, sharded safetensors or pytorch_model.bin "
                            f"in {folder}.")
