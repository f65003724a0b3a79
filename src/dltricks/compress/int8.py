"""Static int8 quantization after training (PTQ) and quantization-aware training (QAT).

The affine int8 scheme is Jacob et al. 2018 ("Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference"): weights per output channel, activations per
tensor with a scale and zero point. **Static** PTQ measures the activation ranges once, on a few
calibration batches (histogram / min-max observers), so inference runs int8 from layer to layer
with no range measured at run time, unlike :func:`~dltricks.compress.quantize_dynamic_int8`.
**QAT** inserts fake-quantization (quantize then dequantize, with a straight-through gradient;
Bengio et al. 2013) into the training graph, BatchNorm folded into the convolution, so the
weights adapt to the rounding before the model is converted.

Implementation: ``torch.ao.quantization``'s FX graph mode (``prepare_fx`` / ``prepare_qat_fx`` /
``convert_fx``) on the ``x86`` (fbgemm) engine. It traces the model, so residual additions and
functional ops are quantized without hand-placed ``QuantStub``s, and ``convert_fx`` lowers to
the real int8 CPU kernels (``quantized::conv2d``, ``quantized::linear``, ``quantized::add``) in
eager PyTorch. torchao (the successor that torch.ao.quantization's deprecation notice points
to; 0.18.0 installs beside torch 2.13 without pulling another torch, but is not installed here)
was not used: its static int8 CPU path is PT2E with ``X86InductorQuantizer``, whose converted
graph runs quantize/dequantize reference ops in eager mode and only gets int8 kernels under
``torch.compile`` (Inductor), which would put a C++ compile inside every latency measurement;
its eager int8 tensor subclasses target dynamic activation quantization on CUDA. The deprecated
torch.ao path still works in torch 2.13 and is what measures real int8 CPU latency here.

Convolutions with ``padding="same"`` (this package's default) get the equivalent explicit
padding first, because the quantized convolution takes numbers only.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from dltricks.compress.prune import make_permanent
from dltricks.compress.quantize import quantization_engine

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@contextlib.contextmanager
def _ao_quiet(engine: str) -> Iterator[None]:
    """Selects the quantized engine and silences torch.ao's deprecation notices."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
            warnings.filterwarnings("ignore", message=".*erase_node.*")
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            warnings.filterwarnings("ignore", message=".*reduce_range.*")
            warnings.filterwarnings("ignore", message=".*TypedStorage.*")
            yield
    finally:
        torch.backends.quantized.engine = previous


def explicit_padding(model: nn.Module) -> int:
    """Replaces ``padding="same"`` in every convolution with the equivalent numbers, in place.

    Returns:
        Number of convolutions changed.

    Raises:
        ValueError: a "same" convolution needs asymmetric padding (an even effective kernel).
    """
    n = 0
    for name, m in model.named_modules():
        if isinstance(m, _CONVS) and m.padding == "same":
            total = [d * (k - 1) for k, d in zip(m.kernel_size, m.dilation, strict=True)]
            if any(t % 2 for t in total):
                raise ValueError(f"Convolution {name!r} has padding='same' with an even "
                                 f"effective kernel; int8 conversion needs symmetric padding.")
            m.padding = tuple(t // 2 for t in total)
            m._reversed_padding_repeated_twice = [p for t in reversed(total)
                                                  for p in (t // 2, t // 2)]
            n += 1
    return n


def _float_copy(model: nn.Module) -> nn.Module:
    """A deep copy with pruning masks folded in and explicit padding."""
    computed = {id(t): t.detach().clone() for m in model.modules()
                for t in vars(m).values() if isinstance(t, torch.Tensor) and not t.is_leaf}
    out = copy.deepcopy(model, memo=computed)
    make_permanent(out)
    explicit_padding(out)
    return out


def quantize_static_int8(model: nn.Module, calibration: Iterable[torch.Tensor],
                         example: torch.Tensor | None = None) -> nn.Module:
    """An int8 copy of ``model`` for CPU inference, with activation ranges from calibration data.

    Args:
        model: an fx-traceable float model (pruning masks are folded into the copy).
        calibration: input batches that the observers see (a few hundred samples suffice).
        example: one input for tracing (default: the first calibration batch).

    Returns:
        The converted ``torch.fx.GraphModule``; it takes and returns float tensors.

    Raises:
        ValueError: no calibration batch.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise ValueError("Static quantization needs at least one calibration batch.")
    engine = quantization_engine()
    float_model = _float_copy(model).eval()
    with _ao_quiet(engine), torch.no_grad():
        prepared = prepare_fx(float_model, get_default_qconfig_mapping(engine),
                              (example if example is not None else first,))
        prepared(first)
        for x in batches:
            prepared(x)
        return convert_fx(prepared)


def prepare_qat(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` with fake quantization for quantization-aware training.

    Train the returned module like the float one (it is in train mode; BatchNorm is folded into
    the preceding convolution and keeps updating its statistics), then call
    :func:`convert_qat`.

    Args:
        model: an fx-traceable float model.
        example: one input batch for tracing.
    """
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    engine = quantization_engine()
    float_model = _float_copy(model).train()
    with _ao_quiet(engine):
        prepared = prepare_qat_fx(float_model, get_default_qat_qconfig_mapping(engine),
                                  (example,))
    prepared.qat_engine = engine  # type: ignore[attr-defined]
    return prepared


def convert_qat(prepared: nn.Module) -> nn.Module:
    """The int8 model of a module from :func:`prepare_qat` after training (eval mode)."""
    from torch.ao.quantization.quantize_fx import convert_fx

    engine = getattr(prepared, "qat_engine", None) or quantization_engine()
    out = copy.deepcopy(prepared).eval()
    with _ao_quiet(engine):
        return convert_fx(out)


def run_quantized(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` with the quantized engine selected (a converted model needs it)."""
    with _ao_quiet(quantization_engine()):
        return model(x)


def int8_layer_count(model: nn.Module) -> int:
    """Number of statically quantized convolution and Linear modules in ``model``."""
    import torch.ao.nn.quantized as nnq

    kinds = (nnq.Conv1d, nnq.Conv2d, nnq.Conv3d, nnq.Linear)
    return sum(isinstance(m, kinds) for m in model.modules())


__all__ = [
    "convert_qat",
    "explicit_padding",
    "int8_layer_count",
    "prepare_qat",
    "quantize_static_int8",
    "run_quantized",
]
