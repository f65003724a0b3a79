"""Reference CNNs, U-Net and DeepMedic: registry examples, published parameter counts, options."""

import pytest
import torch
from torch import nn

from dltricks.models import deepmedic, reference, unet  # noqa: F401  (registers the models)
from dltricks.models.registry import MODELS, create_model

OURS = ["alexnet", "vgg16", "resnet18", "resnet50_v1", "resnet50", "mobilenet_v1",
        "mobilenet_v2", "conv_stack", "stack3x3_n3", "conv7x7", "unet", "unet3d", "deepmedic"]

# Published / torchvision parameter counts at 1000 classes (AlexNet: torchvision's variant;
# MobileNet v1: the Keras model's trainable parameters, which are PyTorch's parameters).
PUBLISHED = {"alexnet": 61_100_840, "vgg16": 138_357_544, "resnet18": 11_689_512,
             "resnet50_v1": 25_557_032, "resnet50": 25_557_032, "mobilenet_v1": 4_231_976,
             "mobilenet_v2": 3_504_872}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", OURS)
def test_registry_example_builds_runs_and_backprops(name):
    meta = MODELS.meta(name)
    assert meta["task"] in ("classification", "segmentation") and meta["description"]
    ex = meta["example"]
    torch.manual_seed(0)
    model = create_model(name, **ex["kwargs"]).train()
    out = model(torch.randn(ex["input"]))
    assert tuple(out.shape) == tuple(ex["output"])
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts(name):
    with torch.device("meta"):  # no memory, no init cost
        model = create_model(name)
    assert n_params(model) == PUBLISHED[name]


def test_resnet50_v1_and_v15_differ_only_in_where_the_stride_is():
    with torch.device("meta"):
        v1, v15 = create_model("resnet50_v1"), create_model("resnet50")
    b1, b15 = v1.features[5][0].branch, v15.features[5][0].branch
    assert (b1[0].conv.stride, b1[1].conv.stride) == ((2, 2), (1, 1))
    assert (b15[0].conv.stride, b15[1].conv.stride) == ((1, 1), (2, 2))


@pytest.mark.parametrize("downsample, size", [("stride", 2), ("maxpool", 2), ("dilation", 16)])
def test_resnet_downsampling_options(downsample, size):
    model = create_model("resnet18", num_classes=3, width_mult=0.125, downsample=downsample)
    feats = model.forward_features(torch.randn(1, 3, 64, 64))
    assert feats.shape[-1] == size  # 64 / 32 with downsampling, 64 / 16 (stem only) without
    dil = [m.dilation for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert ((8, 8) in dil) is (downsample == "dilation")


@pytest.mark.parametrize("dims", [1, 3])
def test_reference_nets_in_other_dimensions(dims):
    model = create_model("resnet18", num_classes=4, in_channels=2, spatial_dims=dims,
                         width_mult=0.125)
    assert model(torch.randn(2, 2, *(16,) * dims)).shape == (2, 4)
    model = create_model("mobilenet_v2", num_classes=4, spatial_dims=dims, width_mult=0.25)
    assert model(torch.randn(2, 3, *(16,) * dims)).shape == (2, 4)


@pytest.mark.parametrize("dims", [2, 3])
def test_unet_skips_switch(dims):
    kw = dict(in_channels=1, num_classes=2, spatial_dims=dims, channels=(4, 8, 16))
    with_skip, without = create_model("unet", **kw), create_model("unet", skip=False, **kw)
    # a decoder's first conv sees 2c channels with the skip, c without: c * c * 3^d extra weights
    extra = sum(c * c * 3**dims for c in (4, 8))
    assert n_params(with_skip) - n_params(without) == extra
    x = torch.randn(1, 1, *(8,) * dims)
    assert with_skip(x).shape == without(x).shape == (1, 2, *(8,) * dims)
    with pytest.raises(ValueError, match="divisible"):
        with_skip(torch.randn(1, 1, *(6,) * dims))


def test_unet_paper_widths():
    with torch.device("meta"):
        model = create_model("unet", channels=(64, 128, 256, 512, 1024), norm=None)
    # 23 convolutional layers in the paper: 18 3x3, 4 up-convs, one 1x1
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert len(convs) == 23


def test_deepmedic_low_pathway_sees_downsampled_input():
    model = create_model("deepmedic", in_channels=1, num_classes=2, spatial_dims=2,
                         channels=[4, 4], fc_channels=[8])
    assert model(torch.randn(2, 1, 9, 12)).shape == (2, 2, 9, 12)
    seen = []
    model.pathways.low.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    model(torch.randn(1, 1, 9, 12))
    assert seen == [(1, 1, 3, 4)]
    with pytest.raises(ValueError, match="spatial_dims"):
        create_model("deepmedic", spatial_dims=1)


def test_deepmedic_single_pathway_ablation():
    kw = dict(in_channels=1, num_classes=2, spatial_dims=2, channels=[4, 4], fc_channels=[8])
    dual = create_model("deepmedic", **kw)
    single = create_model("deepmedic", low_pathway=False, **kw)
    # one pathway fewer (two 3x3 convs + norm + PReLU), the fused 1x1 layer sees 4 channels
    # instead of 8
    pathway = (9 * 4 + 8 + 1) + (9 * 16 + 8 + 1)
    assert n_params(dual) - n_params(single) == pathway + 4 * 8
    assert single(torch.randn(2, 1, 10, 7)).shape == (2, 2, 10, 7)  # no divisibility needed


def test_reference_bad_arguments():
    with pytest.raises(ValueError, match="width_mult"):
        create_model("mobilenet_v1", width_mult=0)
    with pytest.raises(ValueError, match="downsample"):
        create_model("resnet18", downsample="avgpool")
    with pytest.raises(ValueError, match="spatial_dims"):
        create_model("unet", spatial_dims=1)
