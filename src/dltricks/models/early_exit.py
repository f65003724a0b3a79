"""Early exit (dynamic depth): prediction heads inside a stack, trained jointly, and a confidence
threshold at inference so that easy inputs stop at a shallow exit.

* Teerapittayanon, McDanel & Kung 2016, "BranchyNet: Fast Inference via Early Exiting from Deep
  Neural Networks": side branches trained with a weighted sum of their losses; at inference a
  sample leaves at the first branch whose prediction is confident enough.
* Kaya, Hong & Dumitras 2019, "Shallow-Deep Networks": internal classifiers on a pre-trained or
  jointly trained network, exit on the maximum softmax probability.
* Schuster et al. 2022, "Confident Adaptive Language Modeling" (CALM): per-token exits in a
  decoder, sharing the output layer (final norm + unembedding) among all exits, trained with a
  weighted average of the per-layer losses with weights proportional to the layer index, and
  the softmax response (maximum probability) as one of its confidence measures.

Here the confidence of a prediction is its maximum softmax probability, and an input exits at
the first exit whose confidence is ``>= threshold``. A threshold of 1.0 or more never exits
early (a float32 softmax can round to exactly 1.0, so "never" is decided by the threshold, not
by comparing with it).

Training. The model returns its final logits as usual. A training forward called with
``return_exits=True`` returns an :class:`ExitOutput` instead: the final logits together with
the intermediate exits' logits and their loss weights, so the training engine can add
``sum_i w_i L_i`` to the task loss (``total = L_final + sum_i w_i L_i``, :func:`exit_loss`).
Nothing is kept on the module between calls.

Axis letters: B batch, L length, K classes (or vocabulary), X exits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

#: Named loss weightings of the intermediate exits, relative to the final exit's weight 1.
EXIT_WEIGHTINGS = ("uniform", "linear")


def exit_layer_indices(n_layers: int, exit_every: int = 0,
                       exit_layers: Sequence[int] | None = None) -> tuple[int, ...]:
    """Indices (0-based) of the layers followed by an intermediate exit; the last layer's exit
    is the model's own head and is never listed.

    Args:
        n_layers: depth of the stack.
        exit_every: an exit after every ``exit_every`` layers (0: none).
        exit_layers: explicit layer indices instead (negative ones count from the end).

    Raises:
        ValueError: negative ``exit_every``, both options given, or an index out of range.
    """
    if exit_every < 0:
        raise ValueError(f"exit_every must be >= 0, got {exit_every}.")
    if exit_layers is not None:
        if exit_every:
            raise ValueError("Give exit_every or exit_layers, not both.")
        out = set()
        for i in exit_layers:
            j = i + n_layers if i < 0 else i
            if not 0 <= j < n_layers:
                raise ValueError(f"exit layer {i} is out of range for {n_layers} layers.")
            out.add(j)
        return tuple(sorted(j for j in out if j != n_layers - 1))
    if not exit_every:
        return ()
    return tuple(i for i in range(exit_every - 1, n_layers - 1, exit_every))


def exit_loss_weights(exit_layers: Sequence[int], n_layers: int,
                      weighting: str | Sequence[float] = "uniform") -> tuple[float, ...]:
    """Loss weight of each intermediate exit, relative to the final exit's weight of 1.

    Args:
        exit_layers: layer indices of the intermediate exits.
        n_layers: depth (the final exit is after layer ``n_layers - 1``).
        weighting: ``"uniform"`` (every exit weighs 1: BranchyNet's plain sum),
            ``"linear"`` (weight proportional to depth, (i + 1) / n_layers, as in CALM), or one
            float per intermediate exit.
    """
    if isinstance(weighting, str):
        if weighting == "uniform":
            return tuple(1.0 for _ in exit_layers)
        if weighting == "linear":
            return tuple((i + 1) / n_layers for i in exit_layers)
        raise ValueError(f"Unknown exit loss weighting {weighting!r}; allowed: "
                         f"{', '.join(EXIT_WEIGHTINGS)} or one float per exit.")
    weights = tuple(float(w) for w in weighting)
    if len(weights) != len(exit_layers):
        raise ValueError(f"Need one loss weight per intermediate exit ({len(exit_layers)}), "
                         f"got {len(weights)}.")
    if any(w < 0 for w in weights):
        raise ValueError(f"Exit loss weights must be >= 0, got {weights}.")
    return weights


def confidence(logits: Tensor) -> Tensor:
    """Maximum softmax probability over the last axis: (..., K) → (...), in float32."""
    return logits.float().softmax(dim=-1).amax(dim=-1)


@dataclass
class ExitOutput:
    """What a training forward with ``return_exits=True`` returns.

    Attributes:
        logits: the final head's logits, (B, K) or (B, L, V).
        exit_logits: the intermediate exits' logits, shallowest first (same shapes).
        exit_weights: the loss weight of each intermediate exit (relative to the final one).
    """

    logits: Tensor
    exit_logits: tuple[Tensor, ...] = ()
    exit_weights: tuple[float, ...] = ()


def exit_loss(out: ExitOutput, target: Tensor,
              loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor | None:
    """``sum_i w_i · loss_fn(exit_i logits, target)`` over the intermediate exits of ``out``
    (exits of weight 0 are skipped), or None when there are none."""
    total = None
    for w, lg in zip(out.exit_weights, out.exit_logits, strict=True):
        if w == 0:
            continue
        term = w * loss_fn(lg.float(), target)
        total = term if total is None else total + term
    return total


class EarlyExitMixin:
    """Bookkeeping shared by models with intermediate exits.

    A subclass sets ``exit_layers`` (tuple of layer indices), ``exit_weights`` (same length),
    ``exit_threshold``; its training forward takes ``return_exits`` and then returns
    :meth:`_exit_output`. After each inference forward it sets ``last_depth`` (layers used per
    input, or per token) so that :attr:`average_depth` reports the mean.

    Attributes:
        exit_threshold: confidence needed to leave at an intermediate exit (>= 1: never).
        last_depth: LongTensor of the layers each input (B,) or token (B, L) used in the last
            inference forward, or None.
    """

    exit_layers: tuple[int, ...] = ()
    exit_weights: tuple[float, ...] = ()
    exit_threshold: float = 1.0
    last_depth: Tensor | None = None

    def _exit_output(self, logits: Tensor, exit_logits: Sequence[Tensor]) -> ExitOutput:
        """The final logits with the intermediate exits' logits and weights."""
        return ExitOutput(logits, tuple(exit_logits), tuple(self.exit_weights))

    @property
    def average_depth(self) -> float | None:
        """Mean number of layers used per input (or token) in the last inference forward."""
        return None if self.last_depth is None else float(self.last_depth.float().mean())

    @property
    def early_exit_active(self) -> bool:
        return bool(self.exit_layers) and self.exit_threshold < 1.0


class ExitHead(nn.Module):
    """Intermediate classifier of a sequence classifier: RMSNorm → mean over time → Linear.

    Shapes:
        (B, L, M) → (B, K)
    """

    def __init__(self, dim: int, num_classes: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(dim, eps=eps)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, h: Tensor) -> Tensor:
        return self.fc(self.norm(h).mean(dim=1))
