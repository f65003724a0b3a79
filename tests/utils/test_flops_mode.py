import pytest
import torch
from torch import nn

from dltricks.utils.flops import forward_macs, macs_of
from dltricks.utils.mode import eval_mode


def test_linear_and_conv_macs_closed_form():
    assert forward_macs(nn.Linear(8, 4), torch.zeros(3, 8)) == 3 * 8 * 4
    conv = nn.Conv2d(2, 5, kernel_size=3, padding=1, bias=False)
    assert forward_macs(conv, torch.zeros(1, 2, 6, 6)) == 6 * 6 * 5 * 2 * 9
    a, b = torch.zeros(4, 7), torch.zeros(7, 3)
    assert macs_of(lambda: a @ b) == 4 * 7 * 3


def test_meta_device_counts_without_compute():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(1000, 2000), nn.ReLU(), nn.Linear(2000, 10))
        x = torch.empty(2, 1000)
    assert forward_macs(model, x) == 2 * (1000 * 2000 + 2000 * 10)


def test_forward_macs_runs_in_eval_mode_and_restores_it():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    model = Probe().train()
    forward_macs(model, torch.zeros(1))
    assert seen == [False] and model.training


def test_eval_mode_restores_each_submodule_flag_even_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout(0.5)).train()
    model[1].eval()  # a deliberately frozen BatchNorm
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("boom")
    assert [m.training for m in model] == [True, False, True] and model.training


def test_eval_mode_turns_off_dropout():
    model = nn.Dropout(0.9).train()
    x = torch.ones(1000)
    with eval_mode(model):
        assert torch.equal(model(x), x)
    assert not torch.equal(model(x), x)


def test_eval_mode_rejects_non_modules():
    with pytest.raises(ValueError, match=r"nn\.Module"), eval_mode("model"):  # type: ignore[arg-type]
        pass
