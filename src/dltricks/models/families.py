"""Model families compared by the lab and ``dltricks compare``, built at matched parameter counts.

Every family gets the same width (d_model) and depth; the Transformer's feed-forward width
(``mlp_ratio``) is then solved so its parameter count equals the Mamba model's (within one
hidden unit), as the Mamba paper compares models at matched size (Gu & Dao 2023, sec. 4).
Keeping the width equal keeps the residual stream, the recurrent state and the KV cache
comparable.

Families:

* ``mamba`` — the published Mamba (``mamba_lm`` / ``mamba_classifier``).
* ``transformer`` — pre-LN Transformer with rotary positions (RoPE, Su et al. 2021).
* ``transformer_abs`` — the same with absolute sinusoidal positions (Vaswani et al. 2017).
* ``hybrid`` — Mamba layers with an attention layer every second layer (Jamba's interleaving,
  Lieber et al. 2024; no positional encoding, as in Jamba), its attention layers' FFN width
  solved to the Mamba model's parameter count.
* ``early_exit`` — the Mamba classifier with an exit head after every layer, leaving at the
  first exit whose softmax confidence reaches 0.9 (BranchyNet, Teerapittayanon et al. 2016);
  classifier only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["lm", "classifier"]


@dataclass(frozen=True)
class Family:
    """One model family: how to build its token model and its signal classifier.

    Args:
        name: short id used on the command line and in reports.
        label: readable name.
        lm: model name and kwargs (without the data-derived ones) for token tasks, or None.
        classifier: the same for 1-D signal classification, or None.
        matched: solve ``match_key`` (a feed-forward ratio) to the Mamba model's parameter
            count.
        match_key: the keyword that sets the feed-forward width.
        timing: include in the latency and memory sections (token models only).
    """

    name: str
    label: str
    lm: tuple[str, dict[str, Any]] | None
    classifier: tuple[str, dict[str, Any]] | None
    matched: bool = False
    match_key: str = "mlp_ratio"
    timing: bool = True


FAMILIES: dict[str, Family] = {
    "mamba": Family("mamba", "Mamba", ("mamba_lm", {}), ("mamba_classifier", {})),
    "transformer": Family("transformer", "Transformer (RoPE)",
                          ("transformer_lm", {"position": "rope"}),
                          ("transformer_classifier", {"position": "rope", "patch_size": 1,
                                                      "pool": "mean"}), matched=True),
    "transformer_abs": Family("transformer_abs", "Transformer (sinusoidal)",
                              ("transformer_lm", {"position": "sinusoidal"}),
                              ("transformer_classifier", {"position": "sinusoidal",
                                                          "patch_size": 1, "pool": "mean"}),
                              matched=True, timing=False),
    "hybrid": Family("hybrid", "Hybrid Mamba + attention",
                     ("mamba_lm", {"attn_every": 2}),
                     ("mamba_classifier", {"attn_every": 2}), matched=True,
                     match_key="attn_mlp_ratio"),
    "early_exit": Family("early_exit", "Mamba, early exit",
                         None, ("mamba_classifier", {"exit_every": 1, "exit_threshold": 0.9}),
                         timing=False),
}


def register_family(family: Family) -> Family:
    """Adds a family (e.g. a hybrid stack) to :data:`FAMILIES`."""
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"Unknown model family {name!r}; available: {', '.join(FAMILIES)}.")
    return FAMILIES[name]


def _size_kwargs(model_name: str, dim: int, depth: int) -> dict[str, Any]:
    depth_key = "n_layers" if model_name.startswith("mamba") else "depth"
    return {"dim": dim, depth_key: depth}


def _data_kwargs(kind: Kind, vocab_size: int, num_classes: int, in_channels: int
                 ) -> dict[str, Any]:
    if kind == "lm":
        return {"vocab_size": vocab_size}
    return {"num_classes": num_classes, "in_channels": in_channels}


def count_params(model_name: str, kwargs: dict[str, Any]) -> int:
    """Parameters of a registered model (built on the CPU: the compared models are small, and
    the meta device's initialisers import torch._dynamo, seconds on a 2-core machine)."""
    import json

    return _count(model_name, json.dumps(kwargs, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _count(model_name: str, kwargs_json: str) -> int:
    import json

    from dltricks.models.registry import create_model

    model = create_model(model_name, **json.loads(kwargs_json))
    return sum(p.numel() for p in model.parameters())


def _solve_ratio(count: Callable[[float], int], target: int) -> float:
    """The ``mlp_ratio`` whose count is closest to ``target`` (count is linear in the ratio)."""
    p1, p2 = count(1.0), count(2.0)
    ratio = 1.0 + (target - p1) / (p2 - p1)
    if ratio <= 0:
        raise ValueError(f"A Transformer of this width and depth has more parameters than the "
                         f"Mamba target ({target}) even with a minimal feed-forward layer.")
    return round(ratio, 4)


def model_spec(family: str | Family, kind: Kind, dim: int = 64, depth: int = 2, *,
               vocab_size: int = 16, num_classes: int = 10, in_channels: int = 1
               ) -> dict[str, Any]:
    """The recipe ``model`` entry of a family, at ``dim`` x ``depth``, matched to Mamba's size.

    Args:
        family: family name or object.
        kind: ``"lm"`` (token tasks) or ``"classifier"`` (signals).
        dim, depth: width and number of layers.
        vocab_size, num_classes, in_channels: the data's sizes (used to match parameters).

    Returns:
        ``{"name": model_name, "kwargs": {...}}`` (the data-derived kwargs left to the trainer).
    """
    fam = get_family(family) if isinstance(family, str) else family
    entry = fam.lm if kind == "lm" else fam.classifier
    if entry is None:
        raise ValueError(f"Family {fam.name!r} has no {kind} model.")
    name, extra = entry
    kwargs = {**extra, **_size_kwargs(name, dim, depth)}
    if fam.matched:
        data = _data_kwargs(kind, vocab_size, num_classes, in_channels)
        mamba_name, mamba_extra = FAMILIES["mamba"].lm if kind == "lm" else \
            FAMILIES["mamba"].classifier
        target = count_params(mamba_name, {**mamba_extra, **_size_kwargs(mamba_name, dim, depth),
                                           **data})
        key = fam.match_key
        kwargs[key] = _solve_ratio(
            lambda r: count_params(name, {**kwargs, key: r, **data}), target)
    return {"name": name, "kwargs": kwargs}


__all__ = ["FAMILIES", "Family", "count_params", "get_family", "model_spec", "register_family"]
