"""Tests for the norm/act/conv factories and ConvNormAct."""

import pytest
import torch
from torch import nn

from dltricks.nn import ConvNormAct, get_act, get_conv, get_dropout, get_norm, get_pool

BATCH = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
INSTANCE = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_get_norm_types(spatial_dims):
    assert type(get_norm("batch", 8, spatial_dims)) is BATCH[spatial_dims]
    inst = get_norm("instance", 8, spatial_dims)
    assert type(inst) is INSTANCE[spatial_dims] and inst.affine
    layer = get_norm("layer", 8, spatial_dims)
    assert isinstance(layer, nn.GroupNorm) and layer.num_groups == 1
    group = get_norm("group", 8, spatial_dims)
    assert isinstance(group, nn.GroupNorm) and group.num_groups == 8
    assert isinstance(get_norm("none", 8, spatial_dims), nn.Identity)
    assert isinstance(get_norm(None, 8, spatial_dims), nn.Identity)


def test_get_norm_group_defaults_and_tuple():
    assert get_norm("group", 64, 2).num_groups == 32
    assert get_norm("group", 48, 2).num_groups == 24  # largest divisor of 48 that is <= 32
    assert get_norm("group", 7, 2).num_groups == 7
    assert get_norm(("group", {"num_groups": 4}), 64, 2).num_groups == 4
    with pytest.raises(ValueError, match="does not divide"):
        get_norm(("group", {"num_groups": 5}), 64, 2)


def test_get_norm_class_callable_and_kwargs():
    assert isinstance(get_norm(nn.BatchNorm2d, 4, 2), nn.BatchNorm2d)
    assert get_norm(lambda c: nn.GroupNorm(2, c), 4, 2).num_groups == 2
    assert get_norm(("batch", {"momentum": 0.01}), 4, 2).momentum == 0.01
    with pytest.raises(ValueError, match="instance"):
        get_norm(nn.BatchNorm2d(4), 4, 2)


def test_get_norm_unknown_lists_allowed():
    with pytest.raises(ValueError) as err:
        get_norm("batchnorm", 4, 2)
    for name in ("batch", "layer", "instance", "group", "none"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="spatial_dims"):
        get_norm("batch", 4, 4)


@pytest.mark.parametrize("shape", [(4, 6, 10), (4, 6, 5, 7), (4, 6, 3, 4, 5)])
def test_layer_norm_normalises_per_sample_over_channels_and_space(shape):
    x = torch.randn(shape) * 3 + 2
    y = get_norm("layer", shape[1], len(shape) - 2)(x).flatten(1)
    torch.testing.assert_close(y.mean(1), torch.zeros(shape[0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(shape[0]), atol=1e-3, rtol=0)


def test_get_act():
    expected = {
        "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU,
        "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU, "identity": nn.Identity,
        "none": nn.Identity,
    }
    for name, cls in expected.items():
        assert type(get_act(name)) is cls
    assert isinstance(get_act(None), nn.Identity)
    assert isinstance(get_act(nn.Hardswish), nn.Hardswish)
    assert get_act(("leaky_relu", {"negative_slope": 0.2})).negative_slope == 0.2
    with pytest.raises(ValueError) as err:
        get_act("relu7")
    assert "leaky_relu" in str(err.value) and "sigmoid" in str(err.value)


def test_conv_dropout_pool_helpers():
    assert [get_conv(d) for d in (1, 2, 3)] == [nn.Conv1d, nn.Conv2d, nn.Conv3d]
    assert get_conv(3, transpose=True) is nn.ConvTranspose3d
    assert [get_dropout(d) for d in (1, 2, 3)] == [nn.Dropout1d, nn.Dropout2d, nn.Dropout3d]
    assert get_pool("adaptive_avg", 1) is nn.AdaptiveAvgPool1d
    with pytest.raises(ValueError, match="spatial_dims"):
        get_conv(0)
    with pytest.raises(ValueError, match="max"):
        get_pool("median", 2)


def test_conv_norm_act_order():
    block = ConvNormAct(2, 3, 8, norm="batch", act="relu", order="norm_act")
    assert [n for n, _ in block.named_children()] == ["conv", "norm", "act"]
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    block = ConvNormAct(2, 3, 8, norm="batch", act="relu", order="act_norm")
    assert [type(m) for m in block] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    with pytest.raises(ValueError, match="order"):
        ConvNormAct(2, 3, 8, order="norm_first")


def test_conv_norm_act_bias_default():
    assert ConvNormAct(2, 3, 8, norm="batch").conv.bias is None
    assert ConvNormAct(2, 3, 8, norm="none").conv.bias is not None
    # act between conv and norm: the norm does not follow directly, keep the bias
    assert ConvNormAct(2, 3, 8, norm="batch", order="act_norm").conv.bias is not None
    assert ConvNormAct(2, 3, 8, norm="batch", bias=True).conv.bias is not None


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize(("kernel_size", "dilation"), [(1, 1), (3, 1), (5, 1), (3, 2), (3, 3),
                                                       (4, 1)])
def test_same_padding_keeps_size(spatial_dims, kernel_size, dilation):
    size = (7, 6, 5)[:spatial_dims]
    block = ConvNormAct(spatial_dims, 2, 4, kernel_size, dilation=dilation).eval()
    assert block(torch.randn(1, 2, *size)).shape == (1, 4, *size)
    # and the padding is placed as PyTorch's "same" does (left = total // 2): an impulse at
    # position c reaches exactly the outputs c + left - j * dilation, j = 0 .. k - 1
    torch.nn.init.constant_(block.conv.weight, 1.0)  # positive taps: no response cancels
    centre = tuple(n // 2 for n in size)
    impulse = torch.zeros(1, 2, *size)
    impulse[(0, 0, *centre)] = 1.0
    with torch.no_grad():
        response = (block(impulse) - block(torch.zeros_like(impulse))).abs()
    reached = response.sum(dim=[0, 1, *range(3, 2 + spatial_dims)]).nonzero().flatten()
    left = dilation * (kernel_size - 1) // 2
    expected = sorted(centre[0] + left - j * dilation for j in range(kernel_size))
    assert reached.tolist() == expected


def test_padding_valid_stride_and_int():
    x = torch.randn(1, 2, 9, 9)
    assert ConvNormAct(2, 2, 4, 3, padding="valid")(x).shape[-2:] == (7, 7)
    assert ConvNormAct(2, 2, 4, 3, padding=2)(x).shape[-2:] == (11, 11)
    for stride in (2, 3):  # "same" with stride s gives ceil(n / s)
        assert ConvNormAct(2, 2, 4, 3, stride=stride)(x).shape[-2:] == (-(-9 // stride),) * 2
    with pytest.raises(ValueError, match="odd effective kernel"):
        ConvNormAct(2, 2, 4, 4, stride=2)
    with pytest.raises(ValueError, match="padding"):
        ConvNormAct(2, 2, 4, 3, padding="full")
