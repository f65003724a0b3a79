"""On-device compression of a small Mamba LM and a Transformer LM of matched size: float vs int8
dynamic quantization vs magnitude pruning, by serialized size and per-token decode latency.

Models: ``mamba_lm`` (``--dim``, ``--layers``) and ``transformer_lm`` with half as many blocks
(one Transformer block, attention + 4× FFN, holds about twice the weights of one Mamba layer)
and the width, in steps of 8, whose total parameter count is closest to the Mamba's. Both are
first trained for ``--train-steps`` AdamW steps on next-token prediction over a random Markov
chain generated here (every token has two successors, taken with probability 0.8 and 0.2, so
the best possible next-token accuracy is 0.8), so that the quality columns measure what
compression does to a model that has learnt something; size and speed do not depend on it.

Variants: ``float`` (fp32), ``int8`` (:func:`dltricks.compress.quantize_dynamic_int8`, all
Linear layers but Mamba's ``dt_proj``), ``pruned`` (global magnitude pruning of ``--prune`` of
the Linear weights, made permanent: dense tensors with zeros), ``pruned_int8`` (both).

Measures, per variant: ``bytes`` (``torch.save`` of the state dict), ``zlib_bytes`` (the same,
deflated: where pruning's zeros pay), ``decode_ms_per_token`` (median over ``--repeats`` of the
mean time per token of ``--new-tokens`` greedy steps after a ``--prompt``-token prefill: Mamba's
recurrent step with conv + SSM state, the Transformer's KV-cached forward), ``logit_rel_err``
(‖Δ logits‖ / ‖logits‖ of the full forward against the float model on held-out chain
sequences), ``top1_agree`` (fraction of positions with the same argmax) and ``accuracy``
(next-token accuracy on those sequences; pruning is not followed by fine-tuning). Every ratio
is against the float model of the same family, measured in the same process; the variants are
timed round-robin so that drifting load hits them alike.

Usage:
    python benchmarks/mamba_edge.py [--dim 128] [--layers 4] [--vocab 256] [--prompt 16]
        [--new-tokens 64] [--repeats 7] [--threads 1] [--prune 0.5] [--train-steps 200]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dltricks.compress import (
    compressed_state_dict_bytes,
    magnitude_prune,
    quantization_engine,
    quantize_dynamic_int8,
    state_dict_bytes,
)
from dltricks.models import create_model

VARIANTS = ("float", "int8", "pruned", "pruned_int8")


def set_threads(n: int) -> None:
    """``n`` threads for torch and for numba's scan kernel. Numba's OpenMP layer sets the
    OpenMP thread count it shares with torch to its own (all cores by default) on every
    parallel call, so torch's count alone does not hold once a Mamba forward has run."""
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_pair(vocab: int, dim: int, layers: int, heads: int) -> dict[str, nn.Module]:
    """The Mamba LM and the Transformer LM of closest total parameter count."""
    torch.manual_seed(0)
    mamba = create_model("mamba_lm", vocab_size=vocab, dim=dim, n_layers=layers).eval()
    target, depth = n_params(mamba), max(1, layers // 2)
    best = None
    for tdim in range(8 * heads, 8 * dim + 1, 8):
        if tdim % heads or (tdim // heads) % 2:
            continue
        size = n_params(create_model("transformer_lm", vocab_size=vocab, dim=tdim, depth=depth,
                                     num_heads=heads))
        if best is None or abs(size - target) < abs(best[1] - target):
            best = (tdim, size)
    torch.manual_seed(0)
    transformer = create_model("transformer_lm", vocab_size=vocab, dim=best[0], depth=depth,
                               num_heads=heads).eval()
    return {"mamba": mamba, "transformer": transformer}


def markov_chain(vocab: int, n: int, length: int, g: torch.Generator,
                 succ: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences (n, length) of a chain where token v is followed by ``succ[v, 0]`` with
    probability 0.8, else by ``succ[v, 1]``; returns them and ``succ``."""
    if succ is None:
        succ = torch.randint(0, vocab, (vocab, 2), generator=g)
    seq = [torch.randint(0, vocab, (n,), generator=g)]
    for _ in range(length - 1):
        pick = (torch.rand(n, generator=g) >= 0.8).long()
        seq.append(succ[seq[-1], pick])
    return torch.stack(seq, dim=1), succ


def train(model: nn.Module, data: torch.Tensor, steps: int, batch: int = 32,
          lr: float = 3e-3) -> float:
    """AdamW with a cosine schedule on next-token cross-entropy; returns the last loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    g = torch.Generator().manual_seed(2)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        x = data[torch.randint(0, data.shape[0], (batch,), generator=g)]
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return float(loss.detach())


def variants(model: nn.Module, amount: float) -> dict[str, nn.Module]:
    pruned = copy.deepcopy(model)
    magnitude_prune(pruned, amount, scope="global", permanent=True)
    return {"float": model, "int8": quantize_dynamic_int8(model), "pruned": pruned.eval(),
            "pruned_int8": quantize_dynamic_int8(pruned)}


@torch.inference_mode()
def decode_seconds_per_token(family: str, model: nn.Module, prompt: torch.Tensor,
                             new_tokens: int) -> float:
    """Mean seconds per greedy token after a prefill (not timed)."""
    if family == "mamba":
        states = model.init_state(prompt.shape[0])
        for t in range(prompt.shape[1]):
            logits = model.step(prompt[:, t], states)
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            logits = model.step(logits.argmax(-1), states)
        return (time.perf_counter() - t0) / new_tokens
    caches = model.new_caches()
    logits = model(prompt, caches)[:, -1]
    t0 = time.perf_counter()
    for _ in range(new_tokens):
        logits = model(logits.argmax(-1)[:, None], caches)[:, -1]
    return (time.perf_counter() - t0) / new_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prune", type=float, default=0.5)
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mamba_edge.json"))
    args = ap.parse_args()
    set_threads(args.threads)

    models = build_pair(args.vocab, args.dim, args.layers, args.heads)
    g = torch.Generator().manual_seed(1)
    train_data, succ = markov_chain(args.vocab, 2048, 65, g)
    test_data, _ = markov_chain(args.vocab, 64, 65, g, succ)
    prompt = test_data[:1, : args.prompt]
    results: dict[str, dict] = {}
    for family, model in models.items():
        t0 = time.perf_counter()
        final_loss = train(model, train_data, args.train_steps)
        train_s = time.perf_counter() - t0
        model.eval()
        vs = variants(model, args.prune)
        x, y = test_data[:, :-1], test_data[:, 1:]
        with torch.inference_mode():
            ref = model(x)
            quality = {}
            for name, m in vs.items():
                out = m(x)
                quality[name] = (float((out - ref).norm() / ref.norm()),
                                 float((out.argmax(-1) == ref.argmax(-1)).float().mean()),
                                 float((out.argmax(-1) == y).float().mean()))
        times: dict[str, list[float]] = {name: [] for name in vs}
        for m in vs.values():  # warm-up
            decode_seconds_per_token(family, m, prompt, 4)
        for _ in range(args.repeats):
            for name, m in vs.items():
                times[name].append(decode_seconds_per_token(family, m, prompt, args.new_tokens))
        rows = {}
        for name, m in vs.items():
            rows[name] = {
                "bytes": state_dict_bytes(m), "zlib_bytes": compressed_state_dict_bytes(m),
                "decode_ms_per_token": 1e3 * statistics.median(times[name]),
                "decode_ms_min": 1e3 * min(times[name]),
                "logit_rel_err": quality[name][0], "top1_agree": quality[name][1],
                "accuracy": quality[name][2],
            }
        base = rows["float"]
        for row in rows.values():
            row["bytes_ratio"] = row["bytes"] / base["bytes"]
            row["zlib_ratio"] = row["zlib_bytes"] / base["zlib_bytes"]
            row["latency_ratio"] = row["decode_ms_per_token"] / base["decode_ms_per_token"]
        results[family] = {"params": n_params(model), "train_loss": final_loss,
                           "train_seconds": train_s, "variants": rows}
    tf = models["transformer"]
    results["mamba"]["config"] = {"dim": args.dim, "n_layers": args.layers}
    results["transformer"]["config"] = {"dim": tf.embed.embedding_dim, "num_heads": args.heads,
                                        "depth": len(tf.trunk.encoder.blocks)}

    report = {
        "benchmark": "mamba_edge",
        "command": "python benchmarks/mamba_edge.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "quantized_engine": quantization_engine()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    print("| model | variant | params | bytes (×float) | zlib bytes (×float) | "
          "decode ms/token (×float) | accuracy | logit rel. err | top-1 agree |")
    print("|---|---|---|---|---|---|---|---|---|")
    for family, res in results.items():
        for name, r in res["variants"].items():
            print(f"| {family} | {name} | {res['params']:,} | {r['bytes']:,} "
                  f"({r['bytes_ratio']:.2f}) | {r['zlib_bytes']:,} ({r['zlib_ratio']:.2f}) | "
                  f"{r['decode_ms_per_token']:.2f} ({r['latency_ratio']:.2f}) | "
                  f"{r['accuracy']:.3f} | {r['logit_rel_err']:.3f} | {r['top1_agree']:.3f} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
