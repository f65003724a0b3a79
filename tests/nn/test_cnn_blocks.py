"""CNN blocks: shapes in 1-D/2-D/3-D, gradients, hand-computed parameter counts, errors."""

import pytest
import torch
from torch import nn

from dltricks.nn.cnn_attention import CBAM, SqueezeExcitation, get_cnn_attention
from dltricks.nn.conv_blocks import (
    ConvStack,
    DepthwiseSeparableConv,
    DilatedConv,
    Downsample,
    stack_depth_for_kernel,
)
from dltricks.nn.multiscale import DualPathway
from dltricks.nn.pool import ASPP, SpatialPyramidPooling
from dltricks.nn.residual import (
    BasicBlock,
    Bottleneck,
    InvertedResidual,
    PreActBlock,
    PreActBottleneck,
)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def size(dims: int, n: int = 8) -> tuple[int, ...]:
    return (n, n - 2, n + 2)[:dims] if dims > 1 else (n,)


BLOCKS = {
    "stack": lambda d: (ConvStack(d, 3, 8, 3, 3), 8, 1),
    "stack_stride": lambda d: (ConvStack(d, 3, 8, 3, 2, stride=2), 8, 2),
    "dilated": lambda d: (DilatedConv(d, 3, 8, dilation=2), 8, 1),
    "dwsep": lambda d: (DepthwiseSeparableConv(d, 3, 8, stride=2), 8, 2),
    "down_max": lambda d: (Downsample(d, 3, 3, "maxpool"), 3, 2),
    "down_stride": lambda d: (Downsample(d, 3, 8, "stride"), 8, 2),
    "down_dilation": lambda d: (Downsample(d, 3, 8, "dilation"), 8, 1),
    "aspp": lambda d: (ASPP(d, 3, 8, rates=(1, 2)), 8, 1),
    "basic": lambda d: (BasicBlock(d, 3, 8, stride=2, attention="se"), 8, 2),
    "bottleneck_v1": lambda d: (Bottleneck(d, 3, 16, stride=2, stride_in_1x1=True), 16, 2),
    "bottleneck": lambda d: (Bottleneck(d, 16, 16, attention="cbam", drop_path=0.1), 16, 1),
    "preact": lambda d: (PreActBlock(d, 3, 8, stride=2), 8, 2),
    "preact_bottleneck": lambda d: (PreActBottleneck(d, 3, 16), 16, 1),
    "inverted": lambda d: (InvertedResidual(d, 8, 8), 8, 1),
    "se": lambda d: (SqueezeExcitation(d, 8, reduction=4), 8, 1),
    "cbam": lambda d: (CBAM(d, 8, reduction=4, kernel_size=3), 8, 1),
    "dual": lambda d: (DualPathway(d, 3, (4, 6), factor=2), 12, 1),
}


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_shapes_and_gradients(name, dims):
    torch.manual_seed(0)
    block, out_c, stride = BLOCKS[name](dims)
    in_c = 8 if name in ("se", "cbam", "inverted") else (16 if name == "bottleneck" else 3)
    sp = size(dims)
    x = torch.randn(2, in_c, *sp, requires_grad=True)
    y = block(x)
    assert y.shape == (2, out_c, *[-(-s // stride) for s in sp])
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in block.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all()
    # a dead ReLU in a tiny SE bottleneck may zero a few gradients, never most of them
    nonzero = [bool(p.grad.abs().sum() > 0) for p in block.parameters()]
    assert sum(nonzero) >= 0.75 * len(nonzero)


def test_three_3x3_versus_one_7x7_parameters():
    c = 16
    stack = ConvStack(2, c, c, 3, 3, norm=None, act="relu")
    big = ConvStack(2, c, c, 7, 1, norm=None, act="relu")
    assert n_params(stack) == 3 * (9 * c * c + c)  # 27 C² weights + biases
    assert n_params(big) == 49 * c * c + c
    assert stack_depth_for_kernel(7) == 3 and stack_depth_for_kernel(11, 3) == 5
    with pytest.raises(ValueError, match="whole number"):
        stack_depth_for_kernel(6)


def test_depthwise_separable_parameter_count():
    block = DepthwiseSeparableConv(2, 32, 64, norm=None)
    assert n_params(block) == (32 * 9 + 32) + (32 * 64 + 64)
    assert block.depthwise.conv.groups == 32


def test_spp_gives_a_fixed_length_for_any_size():
    spp = SpatialPyramidPooling(2, levels=(1, 2, 4))
    lengths = {spp(torch.randn(2, 5, h, w)).shape for h, w in [(3, 3), (13, 7), (64, 40)]}
    assert lengths == {(2, 5 * (1 + 4 + 16))} and spp.output_features(5) == 105
    spp3 = SpatialPyramidPooling(3, levels=(1, 2))
    assert spp3(torch.randn(1, 2, 5, 6, 7)).shape == (1, 2 * 9)
    # level 1 is the global max
    x = torch.randn(1, 3, 9, 9)
    torch.testing.assert_close(spp(x)[:, :3], x.amax(dim=(2, 3)))


def test_se_gates_channels_by_global_context():
    torch.manual_seed(0)
    se = SqueezeExcitation(2, 8, reduction=2).eval()
    x = torch.randn(1, 8, 5, 5)
    ratio = se(x) / x  # one gate per channel, in (0, 1)
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-5)
    assert (ratio > 0).all() and (ratio < 1).all()


def test_dilation_downsample_keeps_resolution_and_sets_multiplier():
    down = Downsample(2, 8, 8, "dilation")
    assert isinstance(down.op, nn.Identity) and down.dilation_multiplier == 2
    assert Downsample(2, 8, 8, "stride").dilation_multiplier == 1


def test_dual_pathway_needs_divisible_sizes():
    with pytest.raises(ValueError, match="divisible"):
        DualPathway(2, 1, (4,), factor=3)(torch.randn(1, 1, 10, 9))


@pytest.mark.parametrize("make, match", [
    (lambda: ConvStack(4, 3, 8), "spatial_dims"),
    (lambda: ConvStack(2, 3, 8, num_layers=0), "num_layers"),
    (lambda: ConvStack(2, 3, 8, num_layers=2, dilation=[1, 2, 4]), "one value per layer"),
    (lambda: DilatedConv(2, 3, 8, kernel_size=4), "odd"),
    (lambda: Downsample(2, 3, 8, "maxpool"), "keeps the channels"),
    (lambda: Downsample(2, 3, 3, "avgpool"), "mode"),
    (lambda: SpatialPyramidPooling(2, levels=()), "levels"),
    (lambda: ASPP(2, 3, 8, rates=(0,)), "rates"),
    (lambda: BasicBlock(2, 3, 8, stride=0), "stride"),
    (lambda: Bottleneck(2, 8, 16, width=6, groups=4), "groups"),
    (lambda: get_cnn_attention("eca", 2, 8), "Unknown attention"),
    (lambda: SqueezeExcitation(2, 8, reduction=0), "reduction"),
    (lambda: DualPathway(2, 1, (4,), factor=1), "factor"),
    (lambda: InvertedResidual(2, 8, 8, expand_ratio=0), "expand_ratio"),
])
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()
