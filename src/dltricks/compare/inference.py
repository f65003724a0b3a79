"""Section 2 — generation: per-token latency and state memory against context length.

For each context length the model first consumes a random prompt of that length (Mamba:
``prefill``, one parallel pass that leaves the conv and SSM states; Transformer: one cached
forward that fills the KV cache), then single-token steps are timed in interleaved rounds over
all (model, context) pairs and the median per pair is reported. State memory is the bytes the
model carries between steps: Mamba's conv + SSM states (constant in the context), the
Transformer's KV cache (2 x layers x context x width values). The claim under test: Mamba's
per-token cost is flat in the context, attention's grows with it (each new token attends over
the whole cache). The prompt's time is recorded too (``prefill_ms``).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from dltricks.compare.complexity import VOCAB, build_lm
from dltricks.compare.measure import fit_exponent
from dltricks.models.families import get_family
from dltricks.utils.timing import interleaved_ms, timed_call


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, list | tuple):
        return sum(_tensor_bytes(o) for o in obj)
    if hasattr(obj, "__dict__"):
        return sum(_tensor_bytes(v) for v in vars(obj).values())
    return 0


def start_decoding(model: torch.nn.Module, prompt: torch.Tensor
                   ) -> tuple[Callable[[torch.Tensor], torch.Tensor], Any, torch.Tensor]:
    """Consumes ``prompt`` (B, L); returns ``(step, state, logits)``: ``step(token)`` decodes
    one more token per sequence ((B,) → next-token logits (B, V)), ``state`` is what the model
    carries between steps, ``logits`` (B, V) predict the token after the prompt.

    Works with any model that has ``prefill`` + ``step`` (Mamba and the hybrid: the prompt in
    one parallel pass, then the recurrent step) or ``new_caches`` and a ``caches`` argument
    (KV-cached attention: one cached forward fills the cache).
    """
    if hasattr(model, "prefill") and hasattr(model, "step"):
        logits, state = model.prefill(prompt)
        return (lambda tok: model.step(tok, state)), state, logits[:, -1]
    if hasattr(model, "new_caches"):
        caches = model.new_caches()
        logits = model(prompt, caches)
        return (lambda tok: model(tok[:, None], caches)[:, -1]), caches, logits[:, -1]
    raise ValueError(f"{type(model).__name__} has neither a recurrent step nor a KV cache.")


@torch.inference_mode()
def token_latency(model: torch.nn.Module, context: int, new_tokens: int = 16,
                  device: str = "cpu", seed: int = 0, warmup: int = 2) -> dict[str, float]:
    """Median per-token step time (ms) after a ``context``-token prompt, and the state bytes.

    The first ``warmup`` steps after the prompt are run but not timed.
    """
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, VOCAB, (1, context), generator=g).to(device)
    token = torch.randint(0, VOCAB, (1,), generator=g).to(device)
    step, state, _ = start_decoding(model, prompt)
    times = interleaved_ms({"step": partial(step, token)}, new_tokens, warmup, device)["step"]
    return {"token_ms": statistics.median(times), "state_bytes": float(_tensor_bytes(state))}


@torch.inference_mode()
def run_inference(families: Sequence[str], contexts: Sequence[int] = (128, 512, 2048),
                  *, dim: int = 64, depth: int = 2, new_tokens: int = 16, device: str = "cpu",
                  warmup: int = 2, progress: Callable[[str], None] | None = None
                  ) -> dict[str, Any]:
    """Per-token latency, state memory and prompt time of each family at each context length.

    Every (family, context) pair first consumes its prompt (timed once: ``prefill_ms``); then
    the pairs decode in interleaved rounds — one token each per round, the order rotated every
    round — so that a drift of the machine's speed hits all pairs alike, and ``token_ms`` is
    the median over ``new_tokens`` rounds (after ``warmup`` untimed ones).

    Returns:
        per family ``{label, params, contexts, token_ms, state_mib, prefill_ms}`` and the fitted
        growth exponents of ``token_ms``, ``state_mib`` and ``prefill_ms`` against the context.
    """
    if not families or not contexts:
        raise ValueError("run_inference needs families and context lengths.")
    out: dict[str, Any] = {"dim": dim, "depth": depth, "new_tokens": new_tokens,
                           "device": device, "contexts": list(contexts), "families": {},
                           "interleaved": True}
    models = {f: build_lm(f, dim, depth, device).eval() for f in families}
    g = torch.Generator().manual_seed(0)
    token = torch.randint(0, VOCAB, (1,), generator=g).to(device)
    steps: dict[tuple[str, int], Callable[[], torch.Tensor]] = {}
    for f, m in models.items():
        out["families"][f] = {"label": get_family(f).label,
                              "params": sum(p.numel() for p in m.parameters()),
                              "contexts": list(contexts), "token_ms": [], "state_mib": [],
                              "prefill_ms": []}
    warm = torch.randint(0, VOCAB, (1, 8), generator=g).to(device)
    for m in models.values():  # first calls (kernel compilation, allocator) are not timed
        start_decoding(m, warm)[0](token)
    for ctx in contexts:
        prompt = torch.randint(0, VOCAB, (1, ctx), generator=g).to(device)
        for f, m in models.items():
            ms, (step, state, _) = timed_call(partial(start_decoding, m, prompt), device)
            steps[f, ctx] = partial(step, token)
            rec = out["families"][f]
            rec["prefill_ms"].append(ms)
            rec["state_mib"].append(_tensor_bytes(state) / 2**20)
            if progress:
                progress(f"inference {f} prompt {ctx}: {ms / 1e3:.2f} s")
    times = interleaved_ms(steps, new_tokens, warmup, device)
    for f, rec in out["families"].items():
        rec["token_ms"] = [statistics.median(times[f, ctx]) for ctx in contexts]
        if progress:
            progress(f"inference {f}: " + ", ".join(
                f"{c}: {t:.2f}" for c, t in zip(contexts, rec["token_ms"], strict=True))
                + " ms/token")
    out["exponents"] = {f: {k: fit_exponent(r["contexts"], r[k])
                            for k in ("token_ms", "state_mib", "prefill_ms")}
                        for f, r in out["families"].items()}
    return out


__all__ = ["run_inference", "start_decoding", "token_latency"]
