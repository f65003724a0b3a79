"""Accuracy at other input sizes: resizing, and fixed-size networks getting their size back."""

import pytest
import torch
from torch import nn

from dltricks.analysis.resolution import accuracy_by_size, predict, resize


class SizeReader(nn.Module):
    """Predicts class (input size mod 10): shows which size the model was given."""

    def forward(self, x):
        return nn.functional.one_hot(torch.full((x.shape[0],), x.shape[-1] % 10), 10).float()


def test_accuracy_by_size_resizes_and_fixed_size_models_get_their_size_back():
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([6, 8, 2, 6, 8, 8])  # 12 % 10 == 2
    free = accuracy_by_size(SizeReader(), x, y, [6, 8, 12])
    assert free == pytest.approx({"acc_size6": 2 / 6, "acc_size8": 3 / 6, "acc_size12": 1 / 6})
    fixed = accuracy_by_size(SizeReader(), x, y, [6, 8, 12], fixed_size=8)
    assert fixed == pytest.approx({"acc_size6": 3 / 6, "acc_size8": 3 / 6, "acc_size12": 3 / 6})


def test_predict_batches_like_one_forward_and_restores_each_module_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    model[1].eval()  # frozen statistics
    x = torch.randn(10, 3)
    out = predict(model, x, batch_size=3)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(out, model(x))  # dropout off, 4 batches concatenated in order
    model.train()
    model[1].eval()
    predict(model, x)
    assert [m.training for m in model] == [True, False, True, True]
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, x, batch_size=0)


def test_resize_keeps_constants_and_means_and_checks_the_rank():
    x = torch.full((2, 3, 8, 8), 0.25)
    assert resize(x, 8) is x
    assert torch.allclose(resize(x, 5), torch.full((2, 3, 5, 5), 0.25))
    ramp = torch.arange(8.0).view(1, 1, 8)  # 1-D linear interpolation keeps a ramp's mean
    assert resize(ramp, 16).mean().item() == pytest.approx(ramp.mean().item())
    assert resize(torch.rand(1, 1, 4, 4, 4), 6).shape == (1, 1, 6, 6, 6)
    with pytest.raises(ValueError, match="spatial axes"):
        resize(torch.rand(4, 4), 2)
