"""ONNX export, checked against PyTorch in onnxruntime.

:func:`export_onnx` writes a model with ``torch.onnx.export`` and a dynamic batch axis;
:func:`check_onnx` runs the file in onnxruntime (CPU) and compares its outputs with the PyTorch
model's on the same inputs; :class:`OnnxRunner` is a callable for timing the ONNX model beside
the PyTorch one.

Exporter: the TorchScript-based exporter (``dynamo=False``). The newer ``torch.export``-based
one (``dynamo=True``, the default in torch 2.13) needs the ``onnxscript`` package, which is not
a dependency here; for the CNNs and MLPs this package builds both give the same graph of
standard operators (Conv, BatchNormalization folded, Relu, MaxPool, Gemm). Models are exported
in float: the int8 modules of ``torch.ao`` have no ONNX export (onnxruntime quantizes ONNX
graphs with its own tools).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dltricks.compress.prune import make_permanent
from dltricks.utils.mode import eval_mode

DEFAULT_OPSET = 17


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path,
                opset: int = DEFAULT_OPSET) -> Path:
    """Writes ``model`` (eval mode, pruning masks folded in) to an ONNX file.

    Args:
        model: the float model; it is switched to eval mode for the export.
        example: one input batch; axis 0 is exported as a dynamic batch axis.
        path: the ``.onnx`` file to write.
        opset: ONNX opset version.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_permanent(model)
    with eval_mode(model), warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path


class OnnxRunner:
    """An onnxruntime CPU session that is called like a model: ``runner(x) -> Tensor``.

    Args:
        path: the ONNX file.
        threads: intra-op threads (default: ``torch.get_num_threads()``, so that latencies
            compare with PyTorch's at the same thread count).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(np.asarray(out))


@torch.no_grad()
def check_onnx(path: str | Path, model: nn.Module, inputs: torch.Tensor,
               rtol: float = 1e-4, atol: float = 1e-5) -> dict[str, Any]:
    """Runs ``path`` in onnxruntime and compares with ``model(inputs)`` in eval mode.

    Returns:
        ``max_abs_err``, ``max_rel_err`` (relative to the largest PyTorch output magnitude),
        ``argmax_agreement`` (fraction of rows whose largest output agrees) and ``ok``
        (``torch.allclose`` at ``rtol``/``atol``).
    """
    with eval_mode(model):
        ref = model(inputs).float()
    got = OnnxRunner(path)(inputs).float()
    if got.shape != ref.shape:
        raise ValueError(f"ONNX output shape {tuple(got.shape)} differs from PyTorch's "
                         f"{tuple(ref.shape)}.")
    err = (got - ref).abs()
    agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean()) if ref.dim() > 1 else 1.0
    return {"max_abs_err": float(err.max()),
            "max_rel_err": float(err.max() / ref.abs().max().clamp_min(1e-12)),
            "argmax_agreement": agree,
            "ok": bool(torch.allclose(got, ref, rtol=rtol, atol=atol))}


__all__ = ["DEFAULT_OPSET", "OnnxRunner", "check_onnx", "export_onnx"]
