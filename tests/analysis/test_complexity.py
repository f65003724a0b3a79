"""Parameters and MACs (hand-computed and published), latency, peak memory, ERF, CLI."""

import json
import time

import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from dltricks.analysis.complexity import (
    flop_counter_macs,
    layer_costs,
    measure_latency,
    measure_peak_memory,
    separable_cost,
)
from dltricks.analysis.erf import effective_receptive_field, erf_extent
from dltricks.analysis.report import analyze_model
from dltricks.cli.analyze import analyze, parse_kwargs, parse_shape
from dltricks.models import reference  # noqa: F401  (registers the models)
from dltricks.models.registry import create_model


def test_macs_hand_computed_and_equal_to_flop_counter():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4),
                        nn.ConvTranspose2d(8, 2, 2, stride=2), nn.Flatten(),
                        nn.Linear(2 * 10 * 10, 5))
    costs = layer_costs(net, (2, 3, 10, 10))
    macs = [c.macs for c in costs if c.macs]
    assert macs == [2 * 8 * 100 * 3 * 9, 2 * 8 * 25 * 2 * 9, 2 * 8 * 25 * 2 * 4, 2 * 5 * 200]
    assert sum(macs) == flop_counter_macs(net, (2, 3, 10, 10))
    assert costs[0].params == 8 * 27 + 8


# MobileNet papers: 569 M (v1) and 300 M (v2) mult-adds at 224x224
@pytest.mark.parametrize("name, published", [("mobilenet_v1", 569e6), ("mobilenet_v2", 300e6)])
def test_published_mult_adds(name, published):
    with torch.device("meta"):  # shapes and FLOP counting without compute
        model = create_model(name)
    a = analyze_model(model, (1, 3, 224, 224), name)
    assert abs(a.macs - published) / published < 0.005
    assert a.macs == a.flop_counter_macs and a.flops == 2 * a.macs


def test_stack_of_3x3_versus_7x7_costs():
    kw = dict(in_channels=16, channels=16, num_classes=2)
    stack = analyze_model(create_model("stack3x3_n3", **kw), (1, 16, 20, 20))
    big = analyze_model(create_model("conv7x7", **kw), (1, 16, 20, 20))
    assert stack.receptive_field == big.receptive_field == (7, 7)
    conv_macs = lambda a: sum(r.macs for r in a.layers if r.op == "Conv2d")  # noqa: E731
    assert conv_macs(stack) * 49 == conv_macs(big) * 27


class _SleepsInEval(nn.Module):
    """Sleeps 5 ms per forward in eval mode, 50 ms in training mode; records its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_inference_mode_enabled()))
        time.sleep(0.005 if not self.training else 0.05)
        return x


def test_latency_times_inference_forwards_in_eval_mode():
    net = _SleepsInEval().train()
    ms = measure_latency(net, (1, 3), repeats=3, warmup=1)
    assert 5.0 <= ms < 45.0  # eval-mode sleeps, not training-mode ones
    assert net.calls == [(False, True)] * 4 and net.training  # warm-up + 3, mode restored
    assert measure_latency(net, (1, 3), repeats=2, warmup=0, statistic="min") >= 5.0


def test_latency_and_peak_memory_are_measured():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
    peak = measure_peak_memory(net, (1, 3, 32, 32))
    # at least the conv output (16 x 32 x 32 float32) is allocated
    assert peak >= 16 * 32 * 32 * 4
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(net, (1, 3, 8, 8), repeats=0)


def test_erf_is_inside_the_theoretical_field_and_centred():
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Sequential(nn.Conv2d(2 if i else 1, 2, 3, padding=1), nn.ReLU())
                          for i in range(3)])
    heat = effective_receptive_field(net, (2, 1, 21, 21), layer="2.0", samples=2)
    assert heat.shape == (21, 21) and heat.max() == 1
    inside = torch.zeros(21, 21, dtype=torch.bool)
    inside[7:14, 7:14] = True  # theoretical field 7 around the centre 10
    assert heat[~inside].abs().max() == 0 and heat[10, 10] > 0
    assert erf_extent(heat, 1.0) <= 7
    with pytest.raises(ValueError, match="Unknown layer"):
        effective_receptive_field(net, (1, 1, 9, 9), layer="nope")


def _app():
    app = typer.Typer()
    app.command()(analyze)
    return app


def test_cli_json_compare_and_plots(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_app(), ["stack3x3_n3", "--compare", "conv7x7", "--input", "1x8x16x16",
                                 "--kw", "in_channels=8", "--kw", "channels=8", "--json"],
                        catch_exceptions=False)
    assert res.exit_code == 0
    a, b = json.loads(res.output)
    assert a["receptive_field"] == b["receptive_field"] == 7
    assert a["params"] < b["params"] and a["flops"] == 2 * a["macs"]
    convs = [r for r in a["layers"] if r["op"] == "Conv2d"]
    assert [r["receptive_field"] for r in convs] == [3, 5, 7]
    res = runner.invoke(_app(), ["resnet18", "--input", "1x3x32x32", "--kw", "width_mult=0.125",
                                 "--plots", str(tmp_path), "--erf"], catch_exceptions=False)
    assert res.exit_code == 0 and "435" in res.output and "features.0.conv" in res.output
    assert (tmp_path / "rf_growth.png").stat().st_size > 0
    assert (tmp_path / "macs_by_layer.png").stat().st_size > 0
    assert (tmp_path / "erf_resnet18.png").stat().st_size > 0


def test_cli_errors():
    runner = CliRunner()
    res = runner.invoke(_app(), ["resnet18", "--input", "1x3"])
    assert res.exit_code == 2 and "--input" in res.output
    res = runner.invoke(_app(), ["resnet19"])
    assert res.exit_code == 2 and "resnet18" in res.output
    with pytest.raises(ValueError, match="key=value"):
        parse_kwargs(["channels"])
    assert parse_shape("1x3x8") == (1, 3, 8) and parse_kwargs(["d=[1, 2]"]) == {"d": [1, 2]}


def test_separable_cost_matches_the_formula_layer_by_layer():
    model = create_model("small_cnn", in_channels=1, num_classes=10, channels=[32, 64],
                         blocks_per_stage=2, separable=True)
    out = separable_cost(model, torch.rand(1, 1, 8, 8))
    # separable blocks: 32->32 on 8x8, then 32->64 and 64->64 on 4x4 (the first block is full)
    layers = [(32, 32, 64), (32, 64, 16), (64, 64, 16)]
    full = [h * cin * cout * 9 for cin, cout, h in layers]
    sep = [h * cin * 9 + h * cin * cout for cin, cout, h in layers]
    formula = sum(f * (1 / cout + 1 / 9) for f, (_, cout, _) in zip(full, layers, strict=True))
    assert out["sep_macs_ratio"] == pytest.approx(sum(sep) / sum(full))
    assert out["sep_formula"] == pytest.approx(formula / sum(full))
    assert out["sep_macs_ratio"] == pytest.approx(out["sep_formula"])
    weights = [cin * 9 + cin * cout for cin, cout, _ in layers]
    assert out["sep_params_ratio"] == pytest.approx(
        sum(weights) / sum(cin * cout * 9 for cin, cout, _ in layers))
    standard = create_model("small_cnn", in_channels=1, num_classes=10, channels=[32, 64])
    assert separable_cost(standard, torch.rand(1, 1, 8, 8))["sep_macs_ratio"] is None
