"""Compress a trained run: structured pruning with fine-tuning, int8 quantization, ONNX export,
and a report of size, CPU latency and accuracy against the float model.

What :func:`compress_run` does with a run folder of ``dltricks train`` (classification):

1. loads the recipe, rebuilds the dataset (same seed, same split) and the best checkpoint;
2. ``prune > 0``: :func:`~dltricks.compress.structured.iterative_channel_prune` to that fraction
   of channels in ``prune_rounds`` rounds (cubic schedule), fine-tuning ``finetune_steps`` steps
   after each round on the training split with the masks applied, then removes the channels;
3. ``quantize="int8"``: static post-training int8 (calibrated on ``calib_batches`` training
   batches); ``"qat"``: quantization-aware fine-tuning for ``finetune_steps`` steps, then int8;
   ``"dynamic"``: dynamic int8 of the Linear layers;
4. ``export="onnx"``: the (pruned) float model to ONNX, its outputs checked in onnxruntime;
5. measures every variant: parameters, ``torch.save`` size, CPU latency of a batch (all variants
   timed interleaved, round by round, with the one timing helper), test accuracy; writes
   ``report.json``, ``report.md`` and the models (TorchScript ``*.ts``; ``model.onnx``).

Accuracy numbers are on the run's own test split (never used to choose anything here).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dltricks.compress.export import OnnxRunner, check_onnx, export_onnx
from dltricks.compress.int8 import convert_qat, prepare_qat, quantize_static_int8, run_quantized
from dltricks.compress.measure import interleaved_latency, state_dict_bytes
from dltricks.compress.quantize import quantize_dynamic_int8
from dltricks.compress.structured import iterative_channel_prune
from dltricks.utils.mode import eval_mode

QUANTIZE = ("int8", "qat", "dynamic")
EXPORTS = ("onnx",)


@dataclass
class CompressOptions:
    """What to do to the model (see the module docstring).

    Args:
        quantize: ``"int8"`` (static PTQ), ``"qat"``, ``"dynamic"`` or None.
        prune: fraction of each prunable convolution's channels to remove, in [0, 1).
        prune_rounds: pruning rounds of the iterative schedule.
        finetune_steps: optimizer steps of fine-tuning after each pruning round, and of QAT.
        finetune_lr: learning rate of fine-tuning (default: the recipe's lr / 10).
        export: ``"onnx"`` or None.
        calib_batches: training batches that calibrate static int8.
        latency_batch: batch size of the latency measurement.
        latency_rounds: interleaved timing rounds.
        seed: seed of the fine-tuning data order.
    """

    quantize: str | None = None
    prune: float = 0.0
    prune_rounds: int = 3
    finetune_steps: int = 100
    finetune_lr: float | None = None
    export: str | None = None
    calib_batches: int = 8
    latency_batch: int = 32
    latency_rounds: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise ValueError(f"Unknown quantization {self.quantize!r}; use one of "
                             f"{', '.join(QUANTIZE)}.")
        if self.export is not None and self.export not in EXPORTS:
            raise ValueError(f"Unknown export format {self.export!r}; use one of "
                             f"{', '.join(EXPORTS)}.")
        if not 0.0 <= self.prune < 1.0:
            raise ValueError(f"--prune must be a fraction in [0, 1), got {self.prune}.")
        for name in ("prune_rounds", "calib_batches", "latency_batch", "latency_rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.finetune_steps < 0:
            raise ValueError(f"finetune_steps must be >= 0, got {self.finetune_steps}.")


def load_trained(run_dir: str | Path, which: str = "best") -> tuple[Any, Any, nn.Module]:
    """(recipe, dataset splits, model with the run's weights) of a finished run folder.

    Raises:
        ValueError: the folder has no recipe.yaml or the run is not a classification run.
    """
    from dltricks.data import create_dataset
    from dltricks.models import create_model
    from dltricks.train.recipe import load_recipe
    from dltricks.train.trainer import checkpoint_weights_file, model_kwargs_for

    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise ValueError(f"{str(run_dir)!r} is not a run folder (no recipe.yaml in it).")
    recipe = load_recipe(run_dir / "recipe.yaml")
    data = create_dataset(recipe.data.name, seed=recipe.seed, **recipe.data.kwargs)
    if data.task != "classification":
        raise ValueError(f"compress measures accuracy of classification runs; {str(run_dir)!r} "
                         f"is a {data.task} run.")
    model = create_model(recipe.model.name,
                         **model_kwargs_for(recipe.model.name, data, recipe.model.kwargs))
    found, file = checkpoint_weights_file(run_dir, which)
    found.load_model(model, file)
    return recipe, data, model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy of ``model`` (eval mode; a quantized model runs on its engine)."""
    correct = 0
    with eval_mode(model):
        for i in range(0, len(x), batch):
            correct += int((run_quantized(model, x[i:i + batch]).argmax(-1)
                            == y[i:i + batch]).sum())
    return correct / max(len(x), 1)


def finetune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float,
             batch_size: int = 64, seed: int = 0, weight_decay: float = 0.0) -> list[float]:
    """AdamW on cross-entropy for ``steps`` steps of shuffled mini-batches; returns the losses.

    Pruning masks and fake quantization stay in the forward, so what they zero stays zero.
    """
    if steps == 0:
        return []
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    batch_size = min(batch_size, len(x))
    perm = torch.randperm(len(x), generator=g)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > len(x):
            perm, pos = torch.randperm(len(x), generator=g), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def parameter_count(model: nn.Module) -> int:
    """Parameters of a float model, or of the packed int8 weights and biases of a quantized one."""
    n = sum(p.numel() for p in model.parameters())
    if n == 0:  # quantized modules keep packed weights, not parameters
        for m in model.modules():
            w = getattr(m, "weight", None)
            if callable(w):
                with torch.no_grad():
                    n += w().numel()
                b = m.bias() if callable(getattr(m, "bias", None)) else None
                n += b.numel() if b is not None else 0
    return n


def _save_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> str | None:
    """Saves a TorchScript trace (loadable without unpickling code); None when tracing fails."""
    import warnings

    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.filterwarnings("ignore")
            traced = torch.jit.trace(model.eval(), example, check_trace=False)
            torch.jit.save(traced, str(path))
        return path.name
    except Exception:  # TorchScript rejects some graphs; the ONNX file still carries the model
        return None


def compress_model(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor,
                   options: CompressOptions, lr: float) -> dict[str, Any]:
    """Applies pruning and quantization to a copy of ``model``.

    Returns:
        ``{"variants": {name: module}, "history": [...], "qat_losses": [...]}``; variant names
        are ``float``, ``pruned`` (when pruning) and ``int8`` (when quantizing).
    """
    import copy

    opts = options
    variants: dict[str, nn.Module] = {"float": model.eval()}
    out: dict[str, Any] = {"variants": variants, "history": [], "qat_losses": []}
    base = model
    if opts.prune > 0:
        pruned = copy.deepcopy(model)

        def tune(m: nn.Module, r: int) -> None:
            finetune(m, train_x, train_y, opts.finetune_steps, lr, seed=opts.seed + r)

        out["history"] = iterative_channel_prune(pruned, opts.prune, opts.prune_rounds, tune)
        variants["pruned"] = base = pruned.eval()
    if opts.quantize == "int8":
        batches = [train_x[i * 64:(i + 1) * 64] for i in range(opts.calib_batches)
                   if i * 64 < len(train_x)]
        variants["int8"] = quantize_static_int8(base, batches)
    elif opts.quantize == "qat":
        qat = prepare_qat(base, train_x[:64])
        out["qat_losses"] = finetune(qat, train_x, train_y, opts.finetune_steps, lr,
                                     seed=opts.seed + 1000)
        variants["int8"] = convert_qat(qat)
    elif opts.quantize == "dynamic":
        variants["int8"] = quantize_dynamic_int8(base)
    return out


def compress_run(run_dir: str | Path, out: str | Path,
                 options: CompressOptions | None = None) -> dict[str, Any]:
    """Compresses a run's model, measures every variant and writes the report into ``out``.

    Returns:
        The report (also ``out/report.json``): per variant ``params``, ``size_bytes``,
        ``latency_ms`` (median), ``latency_ratio`` (to float), ``test_accuracy`` and
        ``accuracy_change``; the ONNX check; the options; the machine's thread count.
    """
    options = options or CompressOptions()
    recipe, data, model = load_trained(run_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(options.seed)
    lr = options.finetune_lr or recipe.optimizer.lr / 10
    done = compress_model(model, data.train.x, data.train.y, options, lr)
    variants: dict[str, nn.Module] = done["variants"]
    example = data.test.x[:options.latency_batch]
    if len(example) < options.latency_batch:
        example = data.train.x[:options.latency_batch]
    runners: dict[str, Any] = {name: (lambda x, m=m: run_quantized(m, x))
                               for name, m in variants.items()}
    onnx_check = None
    if options.export == "onnx":
        exported = variants.get("pruned", variants["float"])
        path = export_onnx(exported, example, out / "model.onnx")
        onnx_check = check_onnx(path, exported, data.test.x[:256])
        onnx_check["file"] = path.name
        onnx_check["size_bytes"] = path.stat().st_size
        runners["onnx"] = OnnxRunner(path)
    latency = interleaved_latency(runners, example, rounds=options.latency_rounds,
                                  reference="float")
    float_acc = accuracy(variants["float"], data.test.x, data.test.y)
    rows: dict[str, dict[str, Any]] = {}
    for name, runner in runners.items():
        if name == "onnx":
            with torch.no_grad():
                preds = torch.cat([runner(data.test.x[i:i + 512]).argmax(-1)
                                   for i in range(0, len(data.test.x), 512)])
            acc = float((preds == data.test.y).float().mean())
            size = onnx_check["size_bytes"] if onnx_check else None
            params = parameter_count(variants.get("pruned", variants["float"]))
            saved = onnx_check["file"] if onnx_check else None
        else:
            m = variants[name]
            acc = accuracy(m, data.test.x, data.test.y)
            size = state_dict_bytes(m)
            params = parameter_count(m)
            saved = _save_torchscript(m, example, out / f"model_{name}.ts")
        rows[name] = {"params": params, "size_bytes": size,
                      "latency_ms": latency[name]["median_ms"],
                      "latency_q1_ms": latency[name]["q1_ms"],
                      "latency_q3_ms": latency[name]["q3_ms"],
                      "latency_ratio": latency[name]["ratio"],
                      "test_accuracy": acc, "accuracy_change": round(acc - float_acc, 10),
                      "file": saved}
    report = {
        "run_dir": str(run_dir), "recipe": recipe.name, "options": asdict(options),
        "finetune_lr": lr, "variants": rows, "onnx": onnx_check,
        "prune_history": done["history"],
        "qat_loss_first_last": ([done["qat_losses"][0], done["qat_losses"][-1]]
                                if done["qat_losses"] else None),
        "latency_batch": int(example.shape[0]), "torch_threads": torch.get_num_threads(),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(report_markdown(report))
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table (one row per variant)."""
    lines = [f"# Compression of {report['recipe']} ({report['run_dir']})", "",
             f"CPU latency of a batch of {report['latency_batch']}, median of interleaved "
             f"rounds, {report['torch_threads']} torch thread(s).", "",
             "| variant | params | size (bytes) | latency ms | vs float | test acc | change |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["variants"].items():
        size = "-" if r["size_bytes"] is None else f"{r['size_bytes']:,}"
        lines.append(f"| {name} | {r['params']:,} | {size} | {r['latency_ms']:.3f} | "
                     f"{r['latency_ratio']:.2f}x | {r['test_accuracy']:.4f} | "
                     f"{r['accuracy_change']:+.4f} |")
    if report.get("onnx"):
        o = report["onnx"]
        lines += ["", f"ONNX check in onnxruntime: max |diff| {o['max_abs_err']:.2e}, argmax "
                      f"agreement {o['argmax_agreement']:.4f}, allclose: {o['ok']}."]
    return "\n".join(lines) + "\n"


__all__ = ["CompressOptions", "accuracy", "compress_model", "compress_run", "finetune",
           "load_trained", "parameter_count", "report_markdown"]
