"""``dltricks compress RUN_DIR``: prune, quantize and export a trained run, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from dltricks.cli.common import EXIT_USAGE, console, err_console, friendly_errors


def compress(
    run_dir: Path = typer.Argument(..., help="run folder of `dltricks train` (classification)"),
    quantize: str = typer.Option(None, help="int8 (static, calibrated), qat (quantization-aware "
                                 "fine-tuning, then int8) or dynamic (int8 Linear layers)"),
    prune: float = typer.Option(0.0, help="fraction of each prunable conv's channels to remove"),
    prune_rounds: int = typer.Option(3, help="rounds of the iterative (cubic) pruning schedule"),
    finetune_steps: int = typer.Option(100, help="fine-tuning steps after each pruning round, "
                                       "and QAT steps"),
    finetune_lr: float = typer.Option(None, help="fine-tuning lr (default: the recipe's / 10)"),
    export: str = typer.Option(None, help="onnx: export and check in onnxruntime"),
    out: Path = typer.Option(None, help="output folder (default: RUN_DIR/compressed)"),
    latency_batch: int = typer.Option(32, help="batch size of the latency measurement"),
    latency_rounds: int = typer.Option(30, help="interleaved timing rounds"),
) -> None:
    """Compress a trained run: structured pruning with fine-tuning, int8, ONNX; writes the
    models and a report of size, CPU latency and test accuracy against the float model.

    Example: dltricks compress runs/digits_cnn --quantize int8 --prune 0.5 --export onnx
    """
    from dltricks.compress.pipeline import CompressOptions, compress_run, report_markdown

    if not run_dir.is_dir():
        err_console.print(f"[bold red]error:[/] run folder {str(run_dir)!r} does not exist.",
                          highlight=False)
        raise typer.Exit(EXIT_USAGE)
    if quantize is None and prune == 0 and export is None:
        err_console.print("[bold red]error:[/] nothing to do: give --quantize, --prune or "
                          "--export.", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    with friendly_errors():
        options = CompressOptions(quantize=quantize, prune=prune, prune_rounds=prune_rounds,
                                  finetune_steps=finetune_steps, finetune_lr=finetune_lr,
                                  export=export, latency_batch=latency_batch,
                                  latency_rounds=latency_rounds)
        target = out or run_dir / "compressed"
        report = compress_run(run_dir, target, options)
    console.print(report_markdown(report), markup=False, highlight=False)
    console.print(f"report and models: {target}")
