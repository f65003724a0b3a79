"""Per-token generation latency against context length: Mamba's recurrent step against a
Transformer decoder with a KV cache.

Two language models of the same width and depth (d_model 256, 4 layers, vocabulary 256,
float32, batch 1, random weights — latency does not depend on training):

* ``MambaLM`` (``dltricks.models.mamba``): d_state 16, expand 2, d_conv 4. Its state per layer
  is fixed (a (E, K) conv window and an (E, N) SSM state), so a new token should cost the same
  at any context length.
* ``TransformerLM`` (``dltricks.models.transformer``): 4 heads of 64, MLP ratio 4, RoPE, dense
  SDPA attention, with the repository's ``KVCache`` (keys and values of every past step, grown
  by concatenation). A new token attends over the whole cache, so its cost should grow with
  the context.

The script first fills both models with a random context of each length — MambaLM by its
``prefill`` (one parallel pass that leaves the recurrent states, what ``MambaLM.generate``
does), TransformerLM by one cached forward pass, on one thread (the prefill is not timed in the
per-token numbers; its time is stored as ``prefill_s``) — so that all (model, context) sessions are
alive at once. Then it generates
``--new-tokens`` tokens greedily in each session, one token per session per round, the order of
the sessions rotated every round, so that every model and context length sees the same machine
load (the machine is shared and its speed drifts). A token's latency is the wall time of one
step: embedding → layers → logits → argmax. The contexts grow by ``--new-tokens`` while
timing. The table reports the median over the new tokens and the quartiles.

Growth exponents are least-squares slopes on log-log axes: of the median latency against the
context length, and of the context-dependent part — the latency minus the latency at the
shortest context — against the context length, over the longer contexts (about 1 when a token
costs O(context), as attention over a KV cache does; undefined when that part is not positive).

Usage:
    python benchmarks/generation_latency.py [--contexts 128 512 2048 8192] [--new-tokens 32]
        [--threads 1] [--tag _t2]

One torch thread by default: a token step is a few hundred small ops, and on a shared,
oversubscribed 2-vCPU machine two threads wait at every op's barrier (measured there: about
120 ms instead of 7 ms per Mamba token). ``--threads 2`` measures the two-thread case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

from dltricks.compare.inference import start_decoding
from dltricks.compare.measure import fit_exponent, interleaved_ms, timed_call
from dltricks.models.mamba import MambaLM
from dltricks.models.transformer import TransformerLM
from dltricks.nn import KVCache

VOCAB, DIM, LAYERS, HEADS = 256, 256, 4, 4


def build() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    mamba = MambaLM(VOCAB, dim=DIM, n_layers=LAYERS, d_state=16, d_conv=4, expand=2)
    transformer = TransformerLM(VOCAB, dim=DIM, depth=LAYERS, num_heads=HEADS, mlp_ratio=4.0,
                                position="rope", attention="sdpa")
    return {"mamba": mamba.eval(), "transformer": transformer.eval()}


class Session:
    """One model's greedy generation: prefill once, then one token per :meth:`step`."""

    def __init__(self, model: torch.nn.Module, context: torch.Tensor) -> None:
        self._step, self.state, logits = start_decoding(model, context)
        self.next = logits.argmax(-1)  # (B,)

    def step(self) -> None:
        self.next = self._step(self.next).argmax(-1)

    @property
    def cached(self) -> int:
        """Tokens in the KV cache (-1 for a recurrent state)."""
        return self.state[0].length if isinstance(self.state[0], KVCache) else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[128, 512, 2048, 8192])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=4, help="untimed tokens after the prefill")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name, e.g. _t2")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = build()
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    print("parameters: " + ", ".join(f"{n} {p:,}" for n, p in params.items()))
    rows = []
    with torch.inference_mode():
        sessions: dict[tuple[str, int], Session] = {}
        prefill_s: dict[tuple[str, int], float] = {}
        torch.set_num_threads(1)  # prefill is not timed; one thread is quickest when loaded
        for ctx in args.contexts:
            gen = torch.Generator().manual_seed(ctx)
            context = torch.randint(0, VOCAB, (1, ctx), generator=gen)
            for name, model in models.items():
                ms, sessions[name, ctx] = timed_call(partial(Session, model, context))
                prefill_s[name, ctx] = ms / 1e3
                print(f"prefilled {name} with {ctx} tokens in {prefill_s[name, ctx]:.1f} s",
                      flush=True)
        torch.set_num_threads(args.threads)
        load = [os.getloadavg()[0]]
        times = interleaved_ms({k: s.step for k, s in sessions.items()}, args.new_tokens,
                               warmup=args.warmup)
        load.append(os.getloadavg()[0])
        for ctx in args.contexts:
            row = {"context": ctx,
                   "transformer_cache_at_end": sessions["transformer", ctx].cached}
            for name in models:
                q1, med, q3 = statistics.quantiles(times[name, ctx], n=4)
                row[name] = {"median_ms": med, "q1_ms": q1, "q3_ms": q3,
                             "min_ms": min(times[name, ctx]),
                             "prefill_s": prefill_s[name, ctx]}
            rows.append(row)
        del sessions
    ctxs = [r["context"] for r in rows]
    fits = {}
    for name in models:
        med = [r[name]["median_ms"] for r in rows]
        extra = [m - med[0] for m in med[1:]]
        fits[name] = {
            "exponent": fit_exponent(ctxs, med, tail=len(ctxs)),
            "exponent_context_part": (fit_exponent(ctxs[1:], extra, tail=len(extra))
                                      if len(rows) > 2 and min(extra) > 0 else None),
            "ratio_last_over_first": med[-1] / med[0]}
    print(f"\n| context | {' | '.join(f'{n} ms/token (median [q1–q3])' for n in models)} |")
    for r in rows:
        print(f"| {r['context']} | " + " | ".join(
            f"{r[n]['median_ms']:.2f} [{r[n]['q1_ms']:.2f}–{r[n]['q3_ms']:.2f}]" for n in models)
            + " |")

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    for n, f in fits.items():
        print(f"{n}: growth exponent {fmt(f['exponent'])}; of the part above the shortest "
              f"context {fmt(f['exponent_context_part'])}; last/first = "
              f"{f['ratio_last_over_first']:.2f}")
    print(f"load average (1 min) before/after timing: {load[0]:.1f} / {load[1]:.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"generation_latency{args.tag}.json"
    path.write_text(json.dumps({
        "command": "python " + " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": args.threads, "torch": torch.__version__},
        "config": {"vocab": VOCAB, "d_model": DIM, "layers": LAYERS, "heads": HEADS,
                   "mamba": {"d_state": 16, "expand": 2, "d_conv": 4},
                   "transformer": {"mlp_ratio": 4.0, "position": "rope", "attention": "sdpa"},
                   "batch": 1, "dtype": "float32", "new_tokens": args.new_tokens,
                   "warmup": args.warmup},
        "parameters": params, "rows": rows, "fits": fits, "load_1min": load,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
