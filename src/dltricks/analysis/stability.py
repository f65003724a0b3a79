"""Stability of a training curve: loss spikes and the largest rise of the loss.

A *loss spike* is a step whose training loss jumps well above its recent level: the instability
that Chowdhery et al. 2022 (PaLM, sec. 5.1) report in large Transformer runs, and that
Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training instabilities",
reproduce in small models trained with a high learning rate, no warmup or post-LN. Xiong et al.
2020 ("On Layer Normalization in the Transformer Architecture") tie early instability to post-LN
without warmup. Those papers judge it from the curve; this module counts it, with a rule that
ignores the slow decrease of a healthy curve and its small noise: a step is a spike when its
loss exceeds ``factor`` x the median of the ``window`` steps before it (the median, not the
mean, so that one spike does not raise the bar for the next), or is not finite.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

#: trailing steps a step's loss is compared with
SPIKE_WINDOW = 10
#: a step whose loss exceeds this multiple of the trailing median is a spike
SPIKE_FACTOR = 1.25


def spike_stats(losses: Sequence[float | str | None], window: int = SPIKE_WINDOW,
                factor: float = SPIKE_FACTOR) -> dict[str, float]:
    """Stability of a per-step training-loss curve.

    Args:
        losses: the training loss of every step, in order; a step whose loss was not finite
            holds None, NaN/Inf, or the string ``"nan"``/``"inf"`` that ``metrics.jsonl``
            stores for them.
        window: steps of the trailing median a step is compared with.
        factor: a step is a spike when its loss exceeds ``factor`` x that median.

    Returns:
        ``loss_spikes``: steps (after the first ``window``) whose loss is non-finite or above
        ``factor`` x the median of the finite losses of the ``window`` steps before it;
        ``max_loss_rise``: the largest excess of a finite step loss over the lowest loss seen
        before it (nats; non-finite steps count as spikes, not here).

    Raises:
        ValueError: for ``window < 1`` or ``factor <= 0``.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 step, got {window}.")
    if not factor > 0:
        raise ValueError(f"factor must be positive, got {factor}.")
    vals = [math.nan if v is None else float(v) for v in losses]
    spikes = 0
    for t in range(window, len(vals)):
        prev = [v for v in vals[t - window:t] if math.isfinite(v)]
        if not math.isfinite(vals[t]) or (prev and vals[t] > factor * statistics.median(prev)):
            spikes += 1
    rise, best = 0.0, math.inf
    for v in filter(math.isfinite, vals):
        rise, best = max(rise, v - best), min(best, v)
    return {"loss_spikes": float(spikes), "max_loss_rise": rise}


__all__ = ["SPIKE_FACTOR", "SPIKE_WINDOW", "spike_stats"]
