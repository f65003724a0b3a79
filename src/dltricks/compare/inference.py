"""Section 2 — generation: per-token latency and state memory against context length.

For each context length the model first consumes a random prompt of that length (Mamba: its
recurrent ``step`` token by token, which leaves the conv and SSM states; Transformer: one
cached forward that fills the KV cache), then ``new_tokens`` single-token steps are timed one
by one and the median is reported. State memory is the bytes the model carries between steps:
Mamba's conv + SSM states (constant in the context), the Transformer's KV cache (2 x layers x
context x width values). The claim under test: Mamba's per-token cost is flat in the context,
attention's grows with it (each new token attends over the whole cache).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dltricks.compare.complexity import VOCAB, build_lm
from dltricks.compare.families import get_family
from dltricks.compare.measure import fit_exponent


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, list | tuple):
        return sum(_tensor_bytes(o) for o in obj)
    if hasattr(obj, "__dict__"):
        return sum(_tensor_bytes(v) for v in vars(obj).values())
    return 0


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def token_latency(model: torch.nn.Module, context: int, new_tokens: int = 16,
                  device: str = "cpu", seed: int = 0, warmup: int = 2) -> dict[str, float]:
    """Median per-token step time (ms) after a ``context``-token prompt, and the state bytes.

    The first ``warmup`` steps after the prompt are run but not timed.

    Works with any model that has either ``init_state``/``step`` (recurrent) or
    ``new_caches`` and a ``caches`` argument (KV-cached attention).
    """
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, VOCAB, (1, context), generator=g).to(device)
    nxt = torch.randint(0, VOCAB, (warmup + new_tokens,), generator=g).to(device)
    times = []
    if hasattr(model, "init_state"):
        state = model.init_state(1)
        for t in range(context):
            model.step(prompt[:, t], state)
        for i in range(warmup + new_tokens):
            _sync(device)
            t0 = time.perf_counter()
            model.step(nxt[i : i + 1], state)
            _sync(device)
            times.append((time.perf_counter() - t0) * 1e3)
    elif hasattr(model, "new_caches"):
        state = model.new_caches()
        model(prompt, state)
        for i in range(warmup + new_tokens):
            _sync(device)
            t0 = time.perf_counter()
            model(nxt[i : i + 1][None], state)
            _sync(device)
            times.append((time.perf_counter() - t0) * 1e3)
    else:
        raise ValueError(f"{type(model).__name__} has neither a recurrent step nor a KV cache.")
    return {"token_ms": statistics.median(times[warmup:]),
            "state_bytes": float(_tensor_bytes(state))}


def run_inference(families: Sequence[str], contexts: Sequence[int] = (128, 512, 2048),
                  *, dim: int = 64, depth: int = 2, new_tokens: int = 16, device: str = "cpu",
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per-token latency and state memory of each family at each context length.

    Returns:
        per family ``{label, params, contexts, token_ms, state_mib}`` and the fitted growth
        exponent of ``token_ms`` and ``state_mib`` against the context.
    """
    if not families or not contexts:
        raise ValueError("run_inference needs families and context lengths.")
    out: dict[str, Any] = {"dim": dim, "depth": depth, "new_tokens": new_tokens,
                           "device": device, "contexts": list(contexts), "families": {}}
    models = {f: build_lm(f, dim, depth, device).eval() for f in families}
    for f, m in models.items():
        out["families"][f] = {"label": get_family(f).label,
                              "params": sum(p.numel() for p in m.parameters()),
                              "contexts": [], "token_ms": [], "state_mib": []}
    for ctx in contexts:  # families interleaved at each length
        for f, m in models.items():
            r = token_latency(m, ctx, new_tokens, device)
            rec = out["families"][f]
            rec["contexts"].append(ctx)
            rec["token_ms"].append(r["token_ms"])
            rec["state_mib"].append(r["state_bytes"] / 2**20)
            if progress:
                progress(f"inference {f} context {ctx}: {r['token_ms']:.2f} ms/token, state "
                         f"{r['state_bytes'] / 2**10:.1f} KiB")
    out["exponents"] = {f: {k: fit_exponent(r["contexts"], r[k]) for k in ("token_ms",
                                                                           "state_mib")}
                        for f, r in out["families"].items()}
    return out


__all__ = ["run_inference", "token_latency"]
