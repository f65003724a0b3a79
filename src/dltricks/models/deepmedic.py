"""A DeepMedic-style multi-scale dual-pathway segmenter.

Kamnitsas et al. 2017, "Efficient Multi-Scale 3D CNN with Fully Connected CRF for Accurate Brain
Lesion Segmentation": a normal-resolution and a low-resolution pathway of eight 3x3x3 conv layers
each (30, 30, 40, 40, 40, 40, 50, 50 channels, PReLU), the low one on the input downsampled by 3
and upsampled back, concatenated, two fully connected layers of 150 (as 1x1x1 convs) and a
classification layer. See ``dltricks.nn.multiscale.DualPathway`` for how this same-padded,
single-input version differs from the original (valid convs, two input segments).
``low_pathway=False`` keeps only the normal-resolution pathway: the single-scale ablation.

Axis letters: B batch, C channels, K classes, *spatial the 2 or 3 spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dltricks.models.registry import register_model
from dltricks.nn.factory import ActSpec, ConvNormAct, NormSpec, get_conv
from dltricks.nn.multiscale import DualPathway, conv_pathway


class DeepMedic(nn.Module):
    """Dual pathway → 1x1 "fully connected" layers → 1x1 classifier.

    Args:
        in_channels: input channels (MRI sequences).
        num_classes: K.
        spatial_dims: 2 or 3.
        channels: conv widths of each pathway.
        fc_channels: widths of the 1x1 layers after fusion.
        factor: downsampling factor of the low-resolution pathway.
        norm: normalisation spec.
        act: activation spec.
        low_pathway: include the low-resolution pathway (False: a single normal-resolution
            pathway of the same convs, then the same 1x1 layers).

    Shapes:
        (B, in_channels, *spatial) → (B, K, *spatial) logits; sizes divisible by ``factor``
        (any size without the low pathway).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, spatial_dims: int = 3,
                 channels: Sequence[int] = (30, 30, 40, 40, 40, 40, 50, 50),
                 fc_channels: Sequence[int] = (150, 150), factor: int = 3,
                 norm: NormSpec = "batch", act: ActSpec = "prelu",
                 low_pathway: bool = True) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"DeepMedic supports spatial_dims 2 or 3, got {spatial_dims!r}.")
        if low_pathway:
            self.pathways: nn.Module = DualPathway(spatial_dims, in_channels, channels, factor,
                                                   norm=norm, act=act)
            width = self.pathways.out_channels
        else:
            self.pathways = conv_pathway(spatial_dims, in_channels, channels, 3, norm, act)
            width = channels[-1]
        layers: list[nn.Module] = []
        for c in fc_channels:
            layers.append(ConvNormAct(spatial_dims, width, c, 1, norm=norm, act=act))
            width = c
        self.fc = nn.Sequential(*layers)
        self.head = get_conv(spatial_dims)(width, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.fc(self.pathways(x)))


register_model("deepmedic", task="segmentation",
               description="DeepMedic-style dual-pathway (normal + 3x downsampled) segmenter.",
               example=dict(kwargs=dict(in_channels=1, num_classes=2, channels=[4, 4, 8],
                                        fc_channels=[8], spatial_dims=2),
                            input=(2, 1, 18, 12), dtype="float", output=(2, 2, 18, 12)))(DeepMedic)
