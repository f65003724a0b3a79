"""Receptive field, parameters and MACs of the reference CNNs against published figures.

For each registered reference network at 1000 classes and a 1x3x224x224 input: parameters,
MACs (conv + linear multiply-accumulates, FLOPs = 2 x MACs; the per-layer sum and
``FlopCounterMode``'s count, which must agree), receptive field, effective stride and padding
from the traced graph (``dltricks.analysis``), and, with ``--timing``, the median latency of a
batch-1 forward (the minimum over ``--repeats``: noise on a shared machine only adds time)
and the peak extra memory of one forward on this machine. The published values
beside them are from the papers, torchvision and Araujo, Norris & Sim (Distill 2019).

Shapes, parameters and MACs are computed on the meta device (no compute); timing builds the real
networks.

Output: a Markdown table on stdout and JSON in benchmarks/results/analysis_table.json.

Usage:
    python benchmarks/analysis_table.py [--timing] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from dltricks.analysis.complexity import measure_latency, measure_peak_memory
from dltricks.analysis.report import analyze_model, summary_dict
from dltricks.models import reference  # noqa: F401  (registers the models)
from dltricks.models.registry import create_model

# name: (published parameters, published receptive field or None, source)
PUBLISHED = {
    "alexnet": (61_100_840, 195, "torchvision variant; RF: Araujo et al. (alexnet_v2 pool5)"),
    "vgg16": (138_357_544, 212, "torchvision; RF: Araujo et al."),
    "resnet18": (11_689_512, None, "torchvision"),
    "resnet50_v1": (25_557_032, 483, "torchvision count; RF: Araujo et al. (resnet_v1_50)"),
    "resnet50": (25_557_032, None, "torchvision (v1.5)"),
    "mobilenet_v1": (4_231_976, 315, "Keras trainable count; RF: Araujo et al."),
    "mobilenet_v2": (3_504_872, None, "torchvision"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="1x3x224x224")
    parser.add_argument("--timing", action="store_true", help="latency and peak memory")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.input.split("x"))
    rows = []
    for name, (params, rf, source) in PUBLISHED.items():
        with torch.device("meta"):
            model = create_model(name)
        s = summary_dict(analyze_model(model, shape, name))
        assert s["macs"] == s["flop_counter_macs"], name
        if args.timing:
            real = create_model(name)
            s["latency_ms"] = measure_latency(real, shape, repeats=args.repeats, statistic="min")
            s["peak_memory_bytes"] = measure_peak_memory(real, shape)
        s.update(published_params=params, published_rf=rf, source=source)
        rows.append(s)
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    out = Path(__file__).parent / "results" / "analysis_table.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"input": args.input, "machine": machine, "rows": rows}, indent=1))
    cols = "| model | params | published params | GMACs | RF | published RF | stride | padding |"
    if args.timing:
        cols += " min latency ms | peak MiB |"
    print(cols)
    print("|" + "---|" * (cols.count("|") - 1))
    for s in rows:
        line = (f"| {s['model']} | {s['params']:,} | {s['published_params']:,} | "
                f"{s['macs'] / 1e9:.3f} | {s['receptive_field']} | {s['published_rf'] or '-'} | "
                f"{s['effective_stride']} | {s['effective_padding']} |")
        if args.timing:
            line += f" {s['latency_ms']:.1f} | {s['peak_memory_bytes'] / 2**20:.1f} |"
        print(line)
    print(f"\ninput {args.input}; {machine['torch']}, {machine['threads']} threads; "
          f"JSON: {out}")


if __name__ == "__main__":
    main()
