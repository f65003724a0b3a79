"""Analysis tools: receptive fields (analytic and effective), parameters, MACs, latency, memory.

See ``receptive_field`` (Araujo et al. 2019 on the fx graph), ``erf`` (Luo et al. 2016),
``complexity`` (conventions: MACs, FLOPs = 2 x MACs), ``report`` (the joined per-layer view
that ``dltricks analyze`` prints), and the task metrics ``segmentation`` (boundary F1, lesion-wise
Dice by size) and ``resolution`` (accuracy at other input sizes); ``stability`` (loss spikes of a
training curve) and ``scaling`` (latency and peak memory by sequence length).
"""

from dltricks.analysis.complexity import (
    count_parameters,
    flop_counter_macs,
    layer_costs,
    measure_latency,
    measure_peak_memory,
    peak_memory_of,
    separable_cost,
)
from dltricks.analysis.erf import effective_receptive_field, erf_extent
from dltricks.analysis.receptive_field import FieldState, ReceptiveField, receptive_field
from dltricks.analysis.report import Analysis, analyze_model
from dltricks.analysis.resolution import accuracy_by_size, predict, resize
from dltricks.analysis.scaling import scaling_costs
from dltricks.analysis.segmentation import boundary_f1, dice_by_size, lesion_dice
from dltricks.analysis.stability import spike_stats

__all__ = [
    "Analysis",
    "FieldState",
    "ReceptiveField",
    "accuracy_by_size",
    "analyze_model",
    "boundary_f1",
    "count_parameters",
    "dice_by_size",
    "effective_receptive_field",
    "erf_extent",
    "flop_counter_macs",
    "layer_costs",
    "lesion_dice",
    "measure_latency",
    "measure_peak_memory",
    "peak_memory_of",
    "predict",
    "receptive_field",
    "resize",
    "scaling_costs",
    "separable_cost",
    "spike_stats",
]
