"""Analysis tools: receptive fields (analytic and effective), parameters, MACs, latency, memory.

See ``receptive_field`` (Araujo et al. 2019 on the fx graph), ``erf`` (Luo et al. 2016),
``complexity`` (conventions: MACs, FLOPs = 2 x MACs) and ``report`` (the joined per-layer view
that ``dltricks analyze`` prints).
"""

from dltricks.analysis.complexity import (
    count_parameters,
    flop_counter_macs,
    layer_costs,
    measure_latency,
    measure_peak_memory,
    peak_memory_of,
)
from dltricks.analysis.erf import effective_receptive_field, erf_extent
from dltricks.analysis.receptive_field import FieldState, ReceptiveField, receptive_field
from dltricks.analysis.report import Analysis, analyze_model

__all__ = [
    "Analysis",
    "FieldState",
    "ReceptiveField",
    "analyze_model",
    "count_parameters",
    "effective_receptive_field",
    "erf_extent",
    "flop_counter_macs",
    "layer_costs",
    "measure_latency",
    "measure_peak_memory",
    "peak_memory_of",
    "receptive_field",
]
