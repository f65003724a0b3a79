"""Post-training dynamic int8 quantization of Linear layers.

Dynamic quantization (Jacob et al. 2018, "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", for the affine int8 scheme; PyTorch's
``quantize_dynamic``) stores each Linear weight as int8 with a per-tensor scale and zero point,
and at run time quantizes the activations batch by batch with a scale measured on the fly, so no
calibration data is needed. Weights shrink 4×; whether the int8 matmul is faster depends on the
layer size and the kernel (fbgemm / x86 on x86-64, qnnpack on ARM).

Implementation: ``torch.ao.quantization.quantize_dynamic``. In torch 2.13 it still works (with a
deprecation notice pointing to torchao, which is not installed here) and runs on the ``x86``
engine of this CPU. Layers a parent lists in ``compress_skip`` (Mamba's ``dt_proj``, whose weight
the block reads directly) and weights tied to an embedding are left in float; the tied LM head
*is* quantized as its own copy, while the embedding stays float.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from dltricks.compress.prune import make_permanent
from dltricks.compress.select import excluded, skipped_modules


def quantization_engine() -> str:
    """The quantized engine in use (``x86``, ``fbgemm``, ``qnnpack``, ``onednn``).

    Raises:
        RuntimeError: this PyTorch build has no quantized CPU engine.
    """
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        raise RuntimeError("This PyTorch build has no quantized CPU engine (fbgemm, x86, "
                           "qnnpack): int8 dynamic quantization is unavailable.")
    engine = torch.backends.quantized.engine
    return engine if engine in engines else engines[0]


def quantize_dynamic_int8(model: nn.Module,
                          module_types: Sequence[type[nn.Module]] = (nn.Linear,),
                          exclude: Sequence[str] = (), inplace: bool = False) -> nn.Module:
    """An eval-mode copy of ``model`` whose Linear layers compute in int8 (dynamic
    quantization), for CPU inference.

    Pruning masks are folded into the copy first (:func:`~dltricks.compress.make_permanent`),
    so a pruned model can be quantized directly.

    Args:
        model: any module.
        module_types: layer types to quantize (``nn.Linear``; ``nn.LSTM``/``nn.GRU`` also work).
        exclude: wildcard patterns of layer names to keep in float, e.g. ``"*.out_proj"`` for
            Mamba, whose scan output has outliers that per-tensor int8 activations resolve
            poorly (Quamba, Chiang et al. 2024).
        inplace: quantize ``model`` itself instead of a copy.

    Returns:
        The quantized model, in eval mode (quantized layers do not train).
    """
    engine = quantization_engine()
    if not inplace:
        # a pruned layer's ``weight`` is computed (weight_orig * mask), which deepcopy refuses;
        # copy it as a plain tensor, make_permanent then recomputes it from the copied parts
        computed = {id(t): t.detach().clone() for m in model.modules()
                    for t in vars(m).values() if isinstance(t, torch.Tensor) and not t.is_leaf}
        model = copy.deepcopy(model, memo=computed)
    make_permanent(model)
    model.eval()
    skip = skipped_modules(model)
    names = {name for name, m in model.named_modules()
             if isinstance(m, tuple(module_types)) and name not in skip
             and not excluded(name, exclude)}
    if not names:
        return model
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():
            # torch.ao.quantization warns that it is deprecated in favour of torchao
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(model, qconfig_spec=names, dtype=torch.qint8, inplace=True)
    finally:
        torch.backends.quantized.engine = previous


def quantized_layer_count(model: nn.Module) -> int:
    """Number of dynamically quantized Linear layers in ``model``."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    return sum(isinstance(m, DynamicQuantizedLinear) for m in model.modules())
