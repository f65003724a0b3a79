"""Low-level helpers shared by every layer: atomic writes, machine info, timing, MACs, modes.

The bottom layer of the package: it imports only the standard library, numpy, torch, the
package root (for its version) and :mod:`dltricks.registry`, never another dltricks layer.
"""

from dltricks.utils.flops import forward_macs, macs_of
from dltricks.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from dltricks.utils.machine import machine_info
from dltricks.utils.mode import eval_mode
from dltricks.utils.timing import interleaved_ms, sample_ms, summarize_ms, time_ms, timed_call

__all__ = [
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "eval_mode", "forward_macs",
    "interleaved_ms", "machine_info", "macs_of", "sample_ms", "summarize_ms", "time_ms",
    "timed_call",
]
