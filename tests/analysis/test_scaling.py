"""Latency and peak memory by sequence length: refused lengths, the baseline ratio, and the
score matrix of materialised attention."""

import time

import pytest
import torch
from torch import nn

from dltricks.analysis.scaling import scaling_costs
from dltricks.models import create_model


class RefusesLong(nn.Module):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        if x.shape[-1] > self.limit:
            raise ValueError("too long")
        return self.lin(x.transpose(1, 2))


def test_scaling_costs_reports_none_where_the_model_refuses_a_length():
    out = scaling_costs(RefusesLong(100), (50, 200), lambda n: (1, 1, n), repeats=1,
                        baseline=RefusesLong(1000))
    # a 1x1 linear layer on 50 numbers: well under a second, and the same work as the baseline
    assert 0 < out["latency_ms_len50"] < 1e3 and out["peak_mb_len50"] is not None
    assert 0.05 < out["latency_ratio_len50"] < 20
    assert out["latency_ms_len200"] is None and out["peak_mb_len200"] is None
    assert out["latency_ratio_len200"] is None


class Sleeps(nn.Module):
    def __init__(self, ms: float) -> None:
        super().__init__()
        self.ms = ms
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        time.sleep(self.ms / 1e3)
        return x


def test_latency_ratio_against_a_baseline():
    out = scaling_costs(Sleeps(20), (8,), lambda n: (1, n), repeats=4, budget_ms=200,
                        memory=False, baseline=Sleeps(10))
    assert set(out) == {"latency_ms_len8", "latency_ratio_len8"}
    assert out["latency_ms_len8"] >= 20
    assert 1.6 < out["latency_ratio_len8"] < 2.2  # 20 ms vs 10 ms (sleep overshoots a little)


def test_materialised_attention_holds_the_score_matrix_and_sdpa_does_not():
    torch.manual_seed(0)
    n, heads = 512, 2
    kw = dict(in_channels=1, num_classes=3, dim=16, depth=1, num_heads=heads, patch_size=1,
              pool="mean")
    ref = scaling_costs(create_model("transformer_classifier", attention="reference", **kw),
                        (n,), lambda m: (1, 1, m), repeats=1)
    fused = scaling_costs(create_model("transformer_classifier", attention="sdpa", **kw),
                          (n,), lambda m: (1, 1, m), repeats=1)
    scores_mb = heads * n * n * 4 / 2**20  # (B=1, H, L, L) fp32
    assert ref["peak_mb_len512"] >= scores_mb
    assert fused["peak_mb_len512"] < scores_mb


@pytest.mark.parametrize("kwargs,match", [({"repeats": 0}, "repeats"),
                                          ({"budget_ms": -1.0}, "budget_ms")])
def test_scaling_costs_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scaling_costs(nn.Identity(), (4,), lambda n: (1, n), **kwargs)


def test_scaling_costs_leaves_the_model_untouched():
    model = nn.Linear(4, 4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scaling_costs(model, (4,), lambda n: (1, n), repeats=1, memory=False)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
