"""Section 5 — edge: int8 dynamic quantization, size and CPU latency of both families.

Each family's matched-size language model is quantized with
:func:`dltricks.compress.quantize_dynamic_int8` (Linear layers in int8, activations quantized
on the fly; Jacob et al. 2018). Reported per family, float and int8: serialized size
(``torch.save`` of the state dict), per-token generation latency after a short context, the
latency of a whole-sequence forward, and how often the int8 model's next-token choice agrees
with the float one on random tokens (a fidelity check, not an accuracy claim).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from dltricks.compare.complexity import VOCAB, build_lm
from dltricks.compare.inference import token_latency
from dltricks.models.families import get_family
from dltricks.utils.timing import time_ms

_SIZES = {"smoke": (32, 64, 4), "quick": (256, 1024, 16), "full": (512, 4096, 32)}


def run_edge(families: Sequence[str], *, profile: str = "quick", dim: int = 64, depth: int = 2,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Float vs int8 size, generation and forward latency for each family (CPU)."""
    from dltricks.compress import quantize_dynamic_int8, state_dict_bytes
    from dltricks.compress.quantize import quantization_engine

    context, seq_len, new_tokens = _SIZES[profile]
    out: dict[str, Any] = {"context": context, "seq_len": seq_len, "engine":
                           quantization_engine(), "families": {}}
    x = torch.randint(0, VOCAB, (1, seq_len), generator=torch.Generator().manual_seed(0))
    for f in families:
        fp32 = build_lm(f, dim, depth).eval()
        int8 = quantize_dynamic_int8(fp32)
        rec: dict[str, Any] = {"label": get_family(f).label}
        for name, m in (("fp32", fp32), ("int8", int8)):
            def fwd(m=m) -> None:
                with torch.inference_mode():
                    m(x)

            rec[name] = {
                "bytes": state_dict_bytes(m),
                "token_ms": token_latency(m, context, new_tokens)["token_ms"],
                "forward_ms": time_ms(fwd, repeats=3),
            }
        with torch.inference_mode():
            agree = (fp32(x).argmax(-1) == int8(x).argmax(-1)).float().mean().item()
        rec["top1_agreement"] = agree
        for k in ("bytes", "token_ms", "forward_ms"):
            rec[f"{k}_ratio"] = rec["int8"][k] / rec["fp32"][k]
        out["families"][f] = rec
        if progress:
            progress(f"edge {f}: size {rec['fp32']['bytes'] / 1024:.0f} → "
                     f"{rec['int8']['bytes'] / 1024:.0f} KiB, token "
                     f"{rec['fp32']['token_ms']:.2f} → {rec['int8']['token_ms']:.2f} ms, "
                     f"top-1 agreement {agree:.3f}")
    return out


__all__ = ["run_edge"]
