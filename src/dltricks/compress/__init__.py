"""On-device compression: magnitude pruning, int8 dynamic quantization, and the size and
latency measurements that tell what they buy.

Layers that a parent lists in its ``compress_skip`` attribute, and weights tied to another
module, are left alone (see :mod:`dltricks.compress.select`).
"""

from dltricks.compress.measure import compressed_state_dict_bytes, cpu_latency, state_dict_bytes
from dltricks.compress.prune import magnitude_prune, make_permanent, sparsity
from dltricks.compress.quantize import (
    quantization_engine,
    quantize_dynamic_int8,
    quantized_layer_count,
)
from dltricks.compress.select import compressible_modules

__all__ = [
    "compressed_state_dict_bytes",
    "compressible_modules",
    "cpu_latency",
    "magnitude_prune",
    "make_permanent",
    "quantization_engine",
    "quantize_dynamic_int8",
    "quantized_layer_count",
    "sparsity",
    "state_dict_bytes",
]
