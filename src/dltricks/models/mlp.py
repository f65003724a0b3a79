"""Multilayer perceptron classifier (Rumelhart, Hinton & Williams 1986).

A plain stack of Linear → norm → act → dropout layers on flattened inputs. Besides being the
simplest baseline, it is the network of the guide's "deep plain network" experiments: set
``depth`` (10–20) and ``act`` ("sigmoid", "tanh", "relu") to see vanishing gradients.
Normalisation "layer" is Ba et al. 2016's LayerNorm over the features, "batch" is Ioffe & Szegedy
2015's BatchNorm1d.

Axis letters: B batch, F flattened input features, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dltricks.models.registry import register_model
from dltricks.nn.factory import ActSpec, NormSpec, get_act, get_norm


class MLP(nn.Module):
    """Flatten → [Linear → norm → act → dropout] * len(hidden) → Linear head.

    Args:
        in_features: F, the number of input values per sample after flattening.
        num_classes: K.
        hidden: widths of the hidden layers.
        act: activation spec (see ``dltricks.nn.get_act``).
        norm: normalisation spec for (B, width) features (``"none" | "batch" | "layer"``...).
        dropout: dropout probability after each hidden activation.

    Shapes:
        (B, *) with prod(*) = F → (B, K)
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (128, 128),
        act: ActSpec = "relu",
        norm: NormSpec = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(
                f"in_features and num_classes must be positive, got {in_features}, {num_classes}."
            )
        if any(w < 1 for w in hidden):
            raise ValueError(f"hidden widths must be positive, got {list(hidden)}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        layers: list[nn.Module] = [nn.Flatten(1)]
        width = in_features
        for out in hidden:
            norm_layer = get_norm(norm, out, spatial_dims=1)
            layers += [nn.Linear(width, out, bias=isinstance(norm_layer, nn.Identity)), norm_layer]
            layers += [get_act(act), nn.Dropout(dropout) if dropout else nn.Identity()]
            width = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, K)


@register_model(
    task="classification",
    description="MLP on flattened inputs; depth/width for deep plain-network experiments.",
    example=dict(kwargs=dict(in_features=64, num_classes=10), input=(2, 1, 8, 8), dtype="float",
                 output=(2, 10)),
)
def mlp(
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] | None = None,
    depth: int | None = None,
    width: int = 128,
    act: ActSpec = "relu",
    norm: NormSpec = "none",
    dropout: float = 0.0,
) -> MLP:
    """MLP classifier; give either ``hidden`` (widths, default [128, 128]) or ``depth`` hidden
    layers of ``width`` each."""
    if hidden is not None and depth is not None:
        raise ValueError("Give either hidden or depth (with width), not both.")
    if depth is not None:
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}.")
        hidden = [width] * depth
    return MLP(in_features, num_classes, hidden=(128, 128) if hidden is None else hidden,
               act=act, norm=norm, dropout=dropout)
