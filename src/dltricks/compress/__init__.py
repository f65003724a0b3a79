"""On-device compression: magnitude and structured (channel) pruning, dynamic and static int8
quantization, quantization-aware training, ONNX export, and the size and latency measurements
that tell what they buy (:mod:`~dltricks.compress.pipeline` does all of it to a trained run).

Layers that a parent lists in its ``compress_skip`` attribute, and weights tied to another
module, are left alone (see :mod:`dltricks.compress.select`).
"""

from dltricks.compress.export import OnnxRunner, check_onnx, export_onnx
from dltricks.compress.int8 import (
    convert_qat,
    int8_layer_count,
    prepare_qat,
    quantize_static_int8,
    run_quantized,
)
from dltricks.compress.measure import (
    compressed_state_dict_bytes,
    cpu_latency,
    interleaved_latency,
    state_dict_bytes,
)
from dltricks.compress.prune import magnitude_prune, make_permanent, sparsity
from dltricks.compress.quantize import (
    quantization_engine,
    quantize_dynamic_int8,
    quantized_layer_count,
)
from dltricks.compress.select import compressible_modules
from dltricks.compress.structured import (
    channel_prune,
    cubic_schedule,
    find_channel_groups,
    iterative_channel_prune,
    remove_channels,
)

__all__ = [
    "OnnxRunner",
    "channel_prune",
    "check_onnx",
    "compressed_state_dict_bytes",
    "compressible_modules",
    "convert_qat",
    "cpu_latency",
    "cubic_schedule",
    "export_onnx",
    "find_channel_groups",
    "int8_layer_count",
    "interleaved_latency",
    "iterative_channel_prune",
    "magnitude_prune",
    "make_permanent",
    "prepare_qat",
    "quantization_engine",
    "quantize_dynamic_int8",
    "quantize_static_int8",
    "quantized_layer_count",
    "remove_channels",
    "run_quantized",
    "sparsity",
    "state_dict_bytes",
]
