"""Registry-driven and model-specific tests for the built-in models."""

import pytest
import torch
from torch import nn

from dltricks.models import create_model, list_models
from dltricks.models.registry import MODELS

BUILTIN = {"mlp", "small_cnn", "cnn1d", "cnn3d", "seg_fcn", "gru_tagger", "lstm_tagger",
           "gru_classifier", "lstm_classifier"}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def example_input(example: dict) -> torch.Tensor:
    if example["dtype"] == "long":
        return torch.randint(0, example["high"], example["input"])
    return torch.randn(example["input"])


def test_builtin_models_registered():
    assert set(list_models()) >= BUILTIN


@pytest.mark.parametrize("name", list_models())
def test_registry_example_builds_runs_and_backprops(name):
    meta = MODELS.meta(name)
    assert meta["task"] in ("classification", "segmentation", "sequence")
    example = meta["example"]
    torch.manual_seed(0)
    model = create_model(name, **example["kwargs"]).train()
    x = example_input(example)
    out = model(x)
    assert tuple(out.shape) == tuple(example["output"])
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert tuple(model(x).shape) == tuple(example["output"])


def test_bad_kwarg_names_it_and_the_accepted_ones():
    with pytest.raises(ValueError) as err:
        create_model("mlp", in_features=4, num_classes=2, hiden=[3])
    assert "'hiden'" in str(err.value) and "hidden" in str(err.value)
    with pytest.raises(ValueError, match="spatial_dims"):
        create_model("cnn1d", in_channels=1, num_classes=2, spatial_dims=2)


# --- mlp ----------------------------------------------------------------------------------------


def test_mlp_param_count_hand_computed():
    model = create_model("mlp", in_features=64, num_classes=10, hidden=[32, 16])
    assert n_params(model) == (64 * 32 + 32) + (32 * 16 + 16) + (16 * 10 + 10)  # 2778
    # a norm after each Linear replaces its bias by the norm's weight and bias
    model = create_model("mlp", in_features=64, num_classes=10, hidden=[32, 16], norm="batch")
    assert n_params(model) == (64 * 32 + 2 * 32) + (32 * 16 + 2 * 16) + (16 * 10 + 10)


def test_mlp_depth_width_and_flatten():
    model = create_model("mlp", in_features=12, num_classes=3, depth=15, width=8, act="sigmoid")
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 16
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 15
    assert model(torch.randn(5, 3, 2, 2)).shape == (5, 3)
    with pytest.raises(ValueError, match="either hidden or depth"):
        create_model("mlp", in_features=12, num_classes=3, hidden=[4], depth=2)
    with pytest.raises(ValueError, match="Unknown norm"):
        create_model("mlp", in_features=12, num_classes=3, norm="batchy")


def test_mlp_layer_norm_normalises_hidden_features():
    model = create_model("mlp", in_features=10, num_classes=2, hidden=[16], norm="layer",
                         act="identity")
    h = model.features(torch.randn(7, 10) * 5 + 3)
    torch.testing.assert_close(h.mean(1), torch.zeros(7), atol=1e-5, rtol=0)


# --- cnn ----------------------------------------------------------------------------------------


def test_small_cnn_param_count_hand_computed():
    kw = dict(in_channels=1, num_classes=10, channels=[4, 8])
    conv = 1 * 4 * 9 + 4 * 8 * 9  # no conv bias: batch norm follows
    bn = 2 * 4 + 2 * 8
    head = 8 * 10 + 10
    assert n_params(create_model("small_cnn", **kw)) == conv + bn + head  # 438
    # residual: 1x1 projection shortcuts (conv + batch norm) where channels change
    proj = (1 * 4 + 2 * 4) + (4 * 8 + 2 * 8)
    assert n_params(create_model("small_cnn", residual=True, **kw)) == conv + bn + head + proj
    # act before norm: the conv keeps its bias
    assert n_params(create_model("small_cnn", norm_order="act_norm", **kw)) == 438 + 4 + 8


@pytest.mark.parametrize("downsample", ["maxpool", "stride", "none"])
@pytest.mark.parametrize("residual", [False, True])
def test_cnn_on_digits_and_mnist1d_shapes(downsample, residual):
    torch.manual_seed(0)
    kw = dict(num_classes=10, downsample=downsample, residual=residual, blocks_per_stage=2,
              dropout=0.1, drop_path=0.2 if residual else 0.0)
    digits = create_model("small_cnn", in_channels=1, **kw)
    assert digits(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    mnist1d = create_model("cnn1d", in_channels=1, channels=[8, 16, 32], **kw)
    assert mnist1d(torch.randn(3, 1, 40)).shape == (3, 10)
    feats = mnist1d.stages(torch.randn(3, 1, 40))
    assert feats.shape[-1] == {"maxpool": 10, "stride": 10, "none": 40}[downsample]
    for model, x in ((digits, torch.randn(3, 1, 8, 8)), (mnist1d, torch.randn(3, 1, 40))):
        # In train mode drop path may drop a whole residual branch for all 3 samples, leaving its
        # parameters without gradient by design; in eval mode (dropout and drop path off) every
        # parameter must be on the path to the logits.
        model.eval()
        model(x).square().sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        model.train()  # dropout (and drop path) sample a new mask on every call
        with torch.no_grad():
            assert not torch.equal(model(x), model(x))
        model.eval()  # dropout and drop path off: deterministic, and samples never mix
        with torch.no_grad():
            out = model(x)
            assert torch.equal(out, model(x))
            assert torch.allclose(out[:1], model(x[:1]), atol=1e-5)


def test_cnn_drop_path_rates_increase_linearly():
    from dltricks.nn import DropPath

    model = create_model("small_cnn", in_channels=1, num_classes=2, channels=[4, 8],
                         blocks_per_stage=2, residual=True, drop_path=0.3)
    rates = [m.p for m in model.modules() if isinstance(m, DropPath)]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="residual"):
        create_model("small_cnn", in_channels=1, num_classes=2, drop_path=0.1)
    with pytest.raises(ValueError, match="downsample"):
        create_model("small_cnn", in_channels=1, num_classes=2, downsample="avgpool")


def test_cnn_spatial_dims_and_norm_types():
    model = create_model("cnn3d", in_channels=2, num_classes=4, norm="instance")
    assert any(isinstance(m, nn.InstanceNorm3d) for m in model.modules())
    assert model(torch.randn(2, 2, 5, 6, 7)).shape == (2, 4)
    model = create_model("small_cnn", in_channels=1, num_classes=4, spatial_dims=1)
    assert any(isinstance(m, nn.Conv1d) for m in model.modules())


def test_small_cnn_stem_lifts_channels_without_widening_the_field():
    from dltricks.analysis.receptive_field import receptive_field

    kw = dict(in_channels=1, num_classes=10, channels=[8], blocks_per_stage=2)
    model = create_model("small_cnn", stem=1, **kw)
    # stem 1x1 (8 weights + 16 norm), two 3x3 8->8 convs (2 * (576 + 16)), head 8 * 10 + 10
    assert n_params(model) == 8 + 16 + 2 * (576 + 16) + 90
    assert receptive_field(model, (1, 1, 8, 8)).size == (5.0, 5.0)
    assert isinstance(create_model("small_cnn", **kw).stem, nn.Identity)
    with pytest.raises(ValueError, match="stem"):
        create_model("small_cnn", stem=2, **kw)


def test_small_cnn_separable_blocks_keep_the_first_conv_full():
    from dltricks.nn import DepthwiseSeparableConv

    kw = dict(in_channels=1, num_classes=10, channels=[8, 16], blocks_per_stage=2)
    model = create_model("small_cnn", separable=True, **kw)
    seps = [m for m in model.modules() if isinstance(m, DepthwiseSeparableConv)]
    assert len(seps) == 3  # four blocks, the first (on the 1-channel input) a full conv
    first = model.stages[0][0]
    assert first.conv.groups == 1 and first.conv.in_channels == 1
    # depthwise 3x3 + norm, pointwise 1x1 + norm per separable block
    sep = [(8, 8), (8, 16), (16, 16)]
    expected = (9 * 8 + 16) + sum(9 * i + 2 * i + i * o + 2 * o for i, o in sep) + 16 * 10 + 10
    assert n_params(model) == expected
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with_stem = create_model("small_cnn", separable=True, stem=3, **kw)
    assert sum(isinstance(m, DepthwiseSeparableConv) for m in with_stem.modules()) == 4
    res = create_model("small_cnn", separable=True, residual=True, **kw)
    assert sum(isinstance(m, DepthwiseSeparableConv) for m in res.modules()) == 3
    with pytest.raises(ValueError, match="norm_order"):
        create_model("small_cnn", separable=True, norm_order="act_norm", **kw)


def test_small_cnn_head_pooling_options():
    kw = dict(in_channels=1, num_classes=10, channels=[4, 8])
    spp = create_model("small_cnn", pool="spp", spp_levels=[1, 2], **kw)
    assert spp.num_features == 8 * (1 + 4) and spp.fixed_input_size is None
    for size in (5, 8, 16):
        assert spp(torch.randn(2, 1, size, size)).shape == (2, 10)
    flat = create_model("small_cnn", pool="flatten", input_size=7, **kw)
    assert flat.num_features == 8 * 4 * 4 and flat.fixed_input_size == 7  # 7 -> 4 (ceil)
    assert flat(torch.randn(2, 1, 7, 7)).shape == (2, 10)
    with pytest.raises(ValueError, match="inputs of size 7"):
        flat(torch.randn(2, 1, 8, 8))
    stride = create_model("small_cnn", pool="flatten", input_size=8, downsample="stride",
                          channels=[4, 8, 16], in_channels=1, num_classes=10)
    assert stride.num_features == 16 * 2 * 2
    with pytest.raises(ValueError, match="input_size"):
        create_model("small_cnn", pool="flatten", **kw)
    with pytest.raises(ValueError, match="pool"):
        create_model("small_cnn", pool="max", **kw)


# --- seg_fcn ------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [[8, 16], [4, 8, 16]])
@pytest.mark.parametrize("size", [(9, 7), (1, 1), (5, 16), (3, 5, 7), (4, 1, 9)])
def test_seg_fcn_output_matches_input_size(size, channels):
    torch.manual_seed(0)
    model = create_model("seg_fcn", in_channels=2, num_classes=3, spatial_dims=len(size),
                         channels=channels)
    x = torch.randn(2, 2, *size, requires_grad=True)
    model(x).square().sum().backward()  # training mode: gradients reach everything
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 3, *size)
        # eval mode: each image is segmented on its own, whatever else is in the batch
        assert torch.allclose(out[1:], model(x[1:]), atol=1e-5)


def test_seg_fcn_skip_false_removes_the_skip():
    kw = dict(in_channels=1, num_classes=2, channels=[16, 32])
    with_skip = create_model("seg_fcn", skip=True, **kw)
    without = create_model("seg_fcn", skip=False, **kw)
    # the decoder conv sees 2 * 16 channels with the skip and 16 without: 16 * 16 * 9 weights
    assert n_params(with_skip) - n_params(without) == 16 * 16 * 9
    assert without.decoders[0].conv.in_channels == 16
    with pytest.raises(ValueError, match="spatial_dims"):
        create_model("seg_fcn", spatial_dims=1, **kw)


@pytest.mark.parametrize("skip", [True, False])
def test_seg_fcn_skip_is_the_only_path_around_the_bottleneck(skip):
    # Silence the bottleneck: the output then depends on the input only through the skip.
    torch.manual_seed(0)
    model = create_model("seg_fcn", in_channels=1, num_classes=2, channels=[4, 8],
                         skip=skip).eval()
    model.encoders[-1].register_forward_hook(lambda m, i, out: torch.zeros_like(out))
    with torch.no_grad():
        a, b = model(torch.randn(1, 1, 8, 8)), model(torch.randn(1, 1, 8, 8))
    assert torch.allclose(a, b) is not skip


@pytest.mark.parametrize("downsample", ["maxpool", "stride", "dilation"])
@pytest.mark.parametrize("size", [(9, 7), (16, 16), (5, 6, 7)])
def test_seg_fcn_downsample_modes_keep_the_output_size(downsample, size):
    model = create_model("seg_fcn", in_channels=1, num_classes=2, spatial_dims=len(size),
                         channels=[4, 8, 16], downsample=downsample).eval()
    feats = []
    for enc in model.encoders:
        enc.register_forward_hook(lambda m, i, out: feats.append(tuple(out.shape[2:])))
    with torch.no_grad():
        assert model(torch.randn(1, 1, *size)).shape == (1, 2, *size)
    if downsample == "dilation":  # full resolution everywhere, dilation doubling per level
        assert feats == [size] * 3
        assert [enc[0].conv.dilation[0] for enc in model.encoders] == [1, 2, 4]
        assert all(isinstance(u, nn.Conv2d | nn.Conv3d) and u.kernel_size[0] == 1
                   for u in model.ups)
    else:
        assert feats[2] == tuple(-(-s // 4) for s in size)
    if downsample == "stride":
        assert [enc[0].conv.stride[0] for enc in model.encoders] == [1, 2, 2]


def test_seg_fcn_receptive_fields_of_the_downsample_modes():
    from dltricks.analysis.receptive_field import receptive_field

    rf = {d: receptive_field(create_model("seg_fcn", in_channels=1, num_classes=2,
                                          channels=[8, 16, 32], skip=False, downsample=d),
                             (1, 1, 32, 32)).size[0]
          for d in ("maxpool", "stride", "dilation")}
    # dilation: 5 + 2 * 4 + 4 * 4 at level 0-2, then the 3x3 decoder convs: 29 + 2 + 2
    assert rf == {"maxpool": 38.0, "stride": 29.0, "dilation": 33.0}
    with pytest.raises(ValueError, match="downsample"):
        create_model("seg_fcn", in_channels=1, num_classes=2, downsample="avgpool")


# --- recurrent models ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gru_tagger", "lstm_tagger"])
def test_unidirectional_tagger_is_causal(name):
    torch.manual_seed(0)
    model = create_model(name, vocab_size=11, num_classes=4, dim=16).eval()
    x = torch.randint(0, 11, (2, 10))
    y = x.clone()
    y[:, 6] = (x[:, 6] + 1) % 11
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=0)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_bidirectional_tagger_sees_the_future():
    torch.manual_seed(0)
    model = create_model("gru_tagger", vocab_size=11, num_classes=4, dim=16,
                         bidirectional=True).eval()
    x = torch.randint(0, 11, (2, 10))
    y = x.clone()
    y[:, 6] = (x[:, 6] + 1) % 11
    with torch.no_grad():
        assert not torch.allclose(model(x)[:, :6], model(y)[:, :6])
    assert model.head.in_features == 32


@pytest.mark.parametrize("name", ["gru_classifier", "lstm_classifier"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_uses_last_hidden_state(name, bidirectional):
    torch.manual_seed(0)
    model = create_model(name, in_channels=3, num_classes=5, dim=8, num_layers=2,
                         bidirectional=bidirectional).eval()
    x = torch.randn(4, 3, 40)  # (B, C, L)
    with torch.no_grad():
        seq, _ = model.rnn(x.transpose(1, 2))  # (B, L, D * directions)
        # the forward direction ends at step L - 1, the backward one at step 0
        last = torch.cat([seq[:, -1, :8], seq[:, 0, 8:]], 1) if bidirectional else seq[:, -1]
        torch.testing.assert_close(model(x), model.head(last))
    assert model(x).shape == (4, 5)


def test_rnn_bad_arguments():
    with pytest.raises(ValueError, match="dropout"):
        create_model("gru_tagger", vocab_size=5, num_classes=2, dropout=1.0)
    with pytest.raises(ValueError, match="positive"):
        create_model("gru_classifier", in_channels=1, num_classes=2, dim=0)
