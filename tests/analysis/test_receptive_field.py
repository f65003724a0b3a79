"""Analytic receptive fields on hand-computable nets and the published reference networks."""

import pytest
import torch
from torch import nn

from dltricks.analysis.receptive_field import FieldState, merge, receptive_field
from dltricks.models import deepmedic, reference, unet  # noqa: F401  (registers the models)
from dltricks.models.registry import create_model
from dltricks.nn.conv_blocks import ConvStack
from dltricks.nn.pool import ASPP
from dltricks.nn.residual import BasicBlock


def convs(*layers):
    """(kernel, stride, dilation) triples → a Sequential of 1-channel convs with same padding."""
    return nn.Sequential(*[nn.Conv2d(1, 1, k, s, padding=d * (k - 1) // 2, dilation=d)
                           for k, s, d in layers])


@pytest.mark.parametrize("layers, size, stride, padding", [
    ([(3, 1, 1)] * 2, 5, 1, 2),
    ([(3, 1, 1)] * 3, 7, 1, 3),
    ([(3, 1, 1), (3, 1, 2), (3, 1, 4)], 15, 1, 7),  # dilations 1, 2, 4
    ([(3, 2, 1), (3, 2, 1)], 7, 4, 3),  # 3 + 2 * 2 with stride 2 then 4
    ([(7, 1, 1)], 7, 1, 3),
])
def test_sequential_closed_forms(layers, size, stride, padding):
    rf = receptive_field(convs(*layers), (1, 1, 32, 32))
    assert rf.size == (size, size) and rf.stride == (stride, stride)
    assert rf.padding == (padding, padding) and rf.center == (0, 0) and rf.aligned


def test_axes_are_independent_and_1d_3d_work():
    net = nn.Conv2d(1, 1, (3, 5), stride=(1, 2))
    rf = receptive_field(nn.Sequential(net, nn.Conv2d(1, 1, 3)), (1, 1, 20, 20))
    assert rf.size == (5, 9) and rf.stride == (1, 2) and rf.padding == (0, 0)
    assert receptive_field(ConvStack(1, 1, 2, 3, 4), (1, 1, 30)).size == (9,)
    assert receptive_field(ConvStack(3, 1, 2, 3, 2), (1, 1, 8, 8, 8)).size == (5, 5, 5)


def test_residual_block_takes_the_larger_path():
    # branch: two 3x3 (field 5); shortcut: identity (field 1): aligned, field 5
    rf = receptive_field(BasicBlock(2, 4, 4), (1, 4, 16, 16))
    assert rf.size == (5, 5) and rf.aligned
    # two stacked blocks with a stride-2 first block: 3 + 2 * 2 (stride) = 7, then + 2 * 2 * 2
    net = nn.Sequential(BasicBlock(2, 4, 8, stride=2), BasicBlock(2, 8, 8))
    rf = receptive_field(net, (1, 4, 16, 16))
    assert rf.size == (15, 15) and rf.stride == (2, 2) and rf.aligned


class TwoBranch(nn.Module):
    """A 3x3 and a k x k branch ("same" padding) concatenated, then a 3x3."""

    def __init__(self, k: int = 5):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 2, k, padding="same")
        self.c = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.c(torch.cat([self.a(x), self.b(x)], dim=1))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_two_branch_union_and_alignment():
    rf = receptive_field(TwoBranch(), (1, 1, 16, 16))
    assert rf.size == (7, 7) and rf.padding == (3, 3) and rf.aligned  # 5 + 2
    cat = next(lf for lf in rf.layers if lf.kind == "merge")
    assert cat.size == (5, 5)
    # an even 4x4 kernel with "same" padding (1 left, 2 right): unit 0 sees [-1, 2], centred
    # at 0.5 against the 3x3's 0; the union [-1, 2] has size 4, then the 3x3 adds 2
    bad = receptive_field(TwoBranch(k=4), (1, 1, 16, 16))
    assert not bad.aligned and bad.misaligned == ["cat"] and bad.size == (6, 6)
    assert merge([FieldState((3.0,), (1.0,), (1.0,)), FieldState((5.0,), (1.0,), (0.0,))]).size \
        == (6.0,)


def test_global_gates_and_global_nodes():
    class SEish(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y * torch.sigmoid(y.mean(dim=(2, 3), keepdim=True))

    rf = receptive_field(SEish(), (1, 2, 8, 8))
    assert rf.size == (3, 3) and rf.global_context
    # ASPP: dilations 6, 12 → field 25 at stride 1; the image pooling adds global context
    rf = receptive_field(ASPP(2, 3, 4, rates=(6, 12)), (1, 3, 32, 32))
    assert rf.size == (25, 25) and rf.global_context and rf.aligned
    # a classifier's output is global; its field is that of the pooled features
    rf = receptive_field(create_model("stack3x3_n3", channels=4), (1, 3, 16, 16))
    assert rf.size == (7, 7) and rf.layers[-1].size is None and not rf.global_context


# Araujo, Norris & Sim, Distill 2019, table of receptive fields (size, effective stride); the
# effective paddings of VGG-16 (90) and MobileNet v1 (157) too. ResNet-18's 435 is computed by
# hand from the paper's architecture (no published table entry).
PUBLISHED_RF = {"alexnet": (195, 32, 66), "vgg16": (212, 32, 90), "resnet50_v1": (483, 32, 241),
                "mobilenet_v1": (315, 32, 157), "resnet18": (435, 32, 217),
                "resnet50": (427, 32, 213)}


@pytest.mark.parametrize("name", sorted(PUBLISHED_RF))
def test_reference_receptive_fields(name):
    size, stride, padding = PUBLISHED_RF[name]
    with torch.device("meta"):  # shapes without compute
        model = create_model(name)
    rf = receptive_field(model, (1, 3, 224, 224))
    assert rf.size == (size, size) and rf.stride == (stride, stride)
    assert rf.padding == (padding, padding) and rf.aligned


# SE gates are global (no change of the local field); CBAM's 7x7 spatial-attention conv adds
# 6 j per block: 435 + 6 * 2 * (4 + 8 + 16 + 32) = 1155
@pytest.mark.parametrize("attention, size", [("se", 435), ("cbam", 1155)])
def test_attention_resnet_fields_and_global_context(attention, size):
    with torch.device("meta"):
        model = create_model("resnet18", attention=attention)
    rf = receptive_field(model, (1, 3, 224, 224))
    assert rf.size == (size, size) and rf.global_context and rf.aligned


def test_dilation_instead_of_downsampling_keeps_the_stride_at_the_stem():
    with torch.device("meta"):
        model = create_model("resnet18", downsample="dilation")
    rf = receptive_field(model, (1, 3, 224, 224))
    # stages 2-4 dilate by 2, 4, 8 at stride 4: 43 + 4 * (2 * 2 * 4 + 2 * 4 * 4 + 2 * 8 * 4)
    assert rf.stride == (4, 4) and rf.size == (43 + 4 * (16 + 32 + 64), ) * 2


def test_multi_path_networks_report_misalignment():
    # DeepMedic: the low pathway (3x avg pool, 2 convs at stride 3) sees 3 + 2 * 2 * 3 = 15;
    # nearest upsampling centres its units on the middle pixel of each 3-block (1 px off)
    model = create_model("deepmedic", spatial_dims=2, channels=[2, 2], fc_channels=[2])
    rf = receptive_field(model, (1, 1, 18, 18))
    assert rf.size[0] >= 15 and not rf.aligned and "cat" in rf.misaligned[0]
    # U-Net: 2x2 pooling and 2x2 up-convolutions shift by half a pixel between skip and decoder
    rf = receptive_field(create_model("unet", channels=[2, 4]), (1, 1, 16, 16))
    assert not rf.aligned and rf.size[0] > 5 + 5 * 2
    no_skip = receptive_field(create_model("unet", channels=[2, 4], skip=False), (1, 1, 16, 16))
    assert no_skip.aligned


def test_errors():
    with pytest.raises(ValueError, match="B, C"):
        receptive_field(nn.Conv2d(1, 1, 3), (1, 1))

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ValueError, match="cannot be traced"):
        receptive_field(Branchy(), (1, 1, 4, 4))
