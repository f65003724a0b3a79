"""Hugging Face and ``mamba_ssm`` checkpoint interop for :class:`~dltricks.models.mamba.MambaLM`.

Mamba (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces") is
published in two checkpoint layouts, both read here without the libraries that wrote them:

* **Hugging Face** ``MambaForCausalLM`` folders: ``config.json`` with ``hidden_size``,
  ``num_hidden_layers``, ``state_size``, ... and ``model.safetensors`` (or shards, or
  ``pytorch_model.bin``); parameter names ``backbone.embeddings``, ``backbone.layers.{i}.norm``,
  ``backbone.layers.{i}.mixer.*``, ``backbone.norm_f``, ``lm_head``, the names
  :class:`~dltricks.models.mamba.MambaLM` uses.
* **state-spaces** (``mamba_ssm``) folders, e.g. ``state-spaces/mamba-130m``: ``config.json``
  with ``d_model``, ``n_layer``, ``vocab_size``, ``ssm_cfg``, ``pad_vocab_size_multiple``, and
  ``pytorch_model.bin`` with ``backbone.embedding.weight``. As transformers does, the vocabulary
  is padded up to a multiple of ``pad_vocab_size_multiple`` (the weights are stored padded) and
  ``embedding`` is renamed to ``embeddings``; the pickle is read with ``weights_only=True``.

:func:`export_hf_mamba` writes the Hugging Face layout (``config.json`` + ``model.safetensors``),
which ``transformers.MambaForCausalLM.from_pretrained`` loads with the same logits.

Configurations whose forward this implementation does not compute (another ``hidden_act``,
LayerNorm instead of RMSNorm, Mamba-2 layers, attention layers of a ``mamba_ssm`` hybrid) are
refused with a ValueError rather than loaded into a model that would give wrong logits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dltricks.models.mamba import MambaLM
from dltricks.utils.io import read_mapping_file

__all__ = ["export_hf_mamba", "hf_mamba_config", "load_hf_mamba"]

_HF_KNOWN_ACT = "silu"


def load_hf_mamba(folder: str | Path, scan_backend: str = "auto") -> MambaLM:
    """Builds a :class:`MambaLM` from a local Mamba checkpoint folder: a Hugging Face
    ``MambaForCausalLM`` folder (config.json + model.safetensors, sharded safetensors, or
    pytorch_model.bin) or an original state-spaces / ``mamba_ssm`` folder (config.json with
    ``d_model``/``n_layer`` + pytorch_model.bin).

    Args:
        folder: the checkpoint folder.
        scan_backend: selective-scan implementation of the built model.

    Raises:
        FileNotFoundError: no config or weights in ``folder``.
        ValueError: a configuration this implementation does not cover, or weights that do not
            match the configuration.
    """
    folder = Path(folder)
    cfg_path = folder / "config.json"
    cfg = read_mapping_file(cfg_path, "Model config", ValueError, missing=FileNotFoundError)
    kwargs = _ssm_kwargs(cfg, cfg_path) if "d_model" in cfg else _hf_kwargs(cfg, cfg_path)
    model = MambaLM(**kwargs, scan_backend=scan_backend)
    state = _read_weights(folder)
    if "backbone.embedding.weight" in state and "backbone.embeddings.weight" not in state:
        state["backbone.embeddings.weight"] = state.pop("backbone.embedding.weight")
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


def _need(cfg: dict[str, Any], key: str, cfg_path: Path) -> Any:
    if key not in cfg:
        raise ValueError(f"{cfg_path} has no {key!r}; is this a Mamba checkpoint?")
    return cfg[key]


def _hf_kwargs(cfg: dict[str, Any], cfg_path: Path) -> dict[str, Any]:
    """MambaLM arguments from a Hugging Face ``MambaConfig`` dict."""
    model_type = cfg.get("model_type", "mamba")
    if model_type != "mamba":
        raise ValueError(f"{cfg_path}: model_type {model_type!r} is not supported; only "
                         "'mamba' (Mamba-1) checkpoints load into MambaLM.")
    act = cfg.get("hidden_act", _HF_KNOWN_ACT)
    if act != _HF_KNOWN_ACT:
        raise ValueError(f"{cfg_path}: hidden_act {act!r} is not supported; MambaLM's blocks use "
                         f"'{_HF_KNOWN_ACT}' only, so this checkpoint would give wrong logits.")
    dim, expand = int(_need(cfg, "hidden_size", cfg_path)), cfg.get("expand", 2)
    if cfg.get("intermediate_size", expand * dim) != expand * dim:
        raise ValueError(f"{cfg_path}: intermediate_size must equal expand * hidden_size.")
    return dict(
        vocab_size=int(_need(cfg, "vocab_size", cfg_path)), dim=dim,
        n_layers=int(_need(cfg, "num_hidden_layers", cfg_path)),
        d_state=cfg.get("state_size", 16), d_conv=cfg.get("conv_kernel", 4), expand=expand,
        dt_rank=cfg.get("time_step_rank", "auto"),
        tie_embeddings=cfg.get("tie_word_embeddings", True),
        eps=cfg.get("layer_norm_epsilon", 1e-5),
        bias=cfg.get("use_bias", False), conv_bias=cfg.get("use_conv_bias", True),
    )


def _ssm_kwargs(cfg: dict[str, Any], cfg_path: Path) -> dict[str, Any]:
    """MambaLM arguments from an original ``mamba_ssm`` ``MambaConfig`` dict (defaults as in
    mamba_ssm: RMSNorm, tied embeddings, vocabulary padded to a multiple of 8)."""
    ssm = dict(cfg.get("ssm_cfg") or {})
    layer = ssm.pop("layer", "Mamba1")
    if layer != "Mamba1":
        raise ValueError(f"{cfg_path}: ssm_cfg.layer {layer!r} is not supported; only Mamba1 "
                         "layers load into MambaLM.")
    if cfg.get("attn_layer_idx"):
        raise ValueError(f"{cfg_path}: attention layers (attn_layer_idx) of a mamba_ssm hybrid "
                         "are not supported.")
    if not cfg.get("rms_norm", True):
        raise ValueError(f"{cfg_path}: rms_norm false (LayerNorm) is not supported; MambaLM "
                         "uses RMSNorm.")
    unknown = set(ssm) - {"d_state", "d_conv", "expand", "dt_rank", "conv_bias", "bias",
                          "dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor"}
    if unknown:
        raise ValueError(f"{cfg_path}: ssm_cfg keys {sorted(unknown)} are not supported.")
    vocab = int(_need(cfg, "vocab_size", cfg_path))
    multiple = int(cfg.get("pad_vocab_size_multiple", 8))
    if multiple > 1 and vocab % multiple:
        vocab += multiple - vocab % multiple
    return dict(
        vocab_size=vocab, dim=int(_need(cfg, "d_model", cfg_path)),
        n_layers=int(_need(cfg, "n_layer", cfg_path)),
        d_state=ssm.get("d_state", 16), d_conv=ssm.get("d_conv", 4),
        expand=ssm.get("expand", 2), dt_rank=ssm.get("dt_rank", "auto"),
        tie_embeddings=cfg.get("tie_embeddings", True), eps=cfg.get("norm_epsilon", 1e-5),
        bias=ssm.get("bias", False), conv_bias=ssm.get("conv_bias", True),
    )


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
        try:
            return torch.load(folder / "pytorch_model.bin", map_location="cpu",
                              weights_only=True)
        except Exception as exc:  # an unsafe or corrupted pickle: refuse, never unpickle it
            raise ValueError(f"{folder / 'pytorch_model.bin'} cannot be read as plain tensors "
                             f"(weights_only=True): {str(exc).splitlines()[0]}") from None
    raise FileNotFoundError(f"No model.safetensors, sharded safetensors or pytorch_model.bin "
                            f"in {folder}.")


def hf_mamba_config(model: MambaLM) -> dict[str, Any]:
    """The Hugging Face ``MambaConfig`` dict describing ``model``.

    Raises:
        ValueError: the model has attention layers (a hybrid stack) or a layout a
            ``MambaForCausalLM`` cannot express.
    """
    if not isinstance(model, MambaLM):
        raise ValueError(f"Only a MambaLM exports to MambaForCausalLM, got {type(model).__name__}.")
    bb = model.backbone
    if bb.attn_layers:
        raise ValueError(f"The model has attention layers {list(bb.attn_layers)}; a hybrid stack "
                         "has no MambaForCausalLM equivalent.")
    mixer = bb.layers[0].mixer
    dim = bb.embeddings.embedding_dim
    if mixer.d_inner % dim:
        raise ValueError(f"d_inner {mixer.d_inner} is not a multiple of dim {dim}.")
    eps = bb.norm_f.eps if bb.norm_f.eps is not None else torch.finfo(torch.float32).eps
    dtype = bb.embeddings.weight.dtype
    return {
        "architectures": ["MambaForCausalLM"],
        "model_type": "mamba",
        "vocab_size": bb.embeddings.num_embeddings,
        "hidden_size": dim,
        "num_hidden_layers": len(bb.layers),
        "state_size": mixer.d_state,
        "conv_kernel": mixer.d_conv,
        "expand": mixer.d_inner // dim,
        "intermediate_size": mixer.d_inner,
        "time_step_rank": mixer.dt_rank,
        "use_bias": mixer.in_proj.bias is not None,
        "use_conv_bias": mixer.conv1d.bias is not None,
        "hidden_act": _HF_KNOWN_ACT,
        "layer_norm_epsilon": float(eps),
        "residual_in_fp32": True,
        "tie_word_embeddings": model.lm_head.weight is bb.embeddings.weight,
        "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0,
        "dtype": str(dtype).removeprefix("torch."),
        "use_cache": True,
    }


def export_hf_mamba(model: MambaLM, folder: str | Path) -> Path:
    """Writes ``model`` as a Hugging Face ``MambaForCausalLM`` folder: ``config.json`` and
    ``model.safetensors`` (the tied LM head stored once, as transformers stores it).
    ``MambaForCausalLM.from_pretrained(folder)`` then computes the same logits, and
    :func:`load_hf_mamba` reads it back.

    Early-exit settings are not part of the format: the exported model is the full-depth model
    (``exit_threshold >= 1``).

    Args:
        model: a pure-Mamba :class:`MambaLM` (no attention layers).
        folder: output folder; created if needed, existing files of the same names replaced.

    Returns:
        The folder.

    Raises:
        ValueError: the model cannot be expressed as a ``MambaForCausalLM``, or ``folder`` is a
            file.
    """
    from safetensors.torch import save_file

    config = hf_mamba_config(model)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; give a folder to write the checkpoint into.")
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    extra = sorted(k for k in state if not k.startswith(("backbone.", "lm_head.")))
    if extra:
        raise ValueError(f"The model has parameters outside a MambaForCausalLM: {extra[:5]}.")
    if config["tie_word_embeddings"]:
        state.pop("lm_head.weight")
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"Parameter {name} holds NaN or Inf; refusing to export it.")
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
