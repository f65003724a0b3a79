"""ONNX export: outputs in onnxruntime match PyTorch's, with a dynamic batch axis."""

import pytest
import torch

from dltricks.compress import OnnxRunner, channel_prune, check_onnx, export_onnx
from dltricks.models import create_model


@pytest.mark.parametrize("name,kw,shape", [
    ("small_cnn", {"channels": [8, 16], "residual": True}, (1, 8, 8)),
    ("cnn1d", {"channels": [8, 16]}, (1, 40)),
    ("mlp", {"in_features": 20, "hidden": [32]}, (20,)),
])
def test_onnx_outputs_match_pytorch(tmp_path, name, kw, shape):
    torch.manual_seed(0)
    kwargs = {"num_classes": 10, **kw}
    if name != "mlp":
        kwargs["in_channels"] = 1
    model = create_model(name, **kwargs)
    x = torch.randn(5, *shape)
    path = export_onnx(model, x, tmp_path / "m.onnx")
    check = check_onnx(path, model, torch.randn(17, *shape))  # another batch size
    assert check["ok"] and check["max_abs_err"] < 1e-4 and check["argmax_agreement"] == 1.0


def test_pruned_masks_are_exported_as_zeros(tmp_path):
    torch.manual_seed(0)
    model = create_model("small_cnn", in_channels=1, num_classes=10, channels=[8, 16])
    channel_prune(model, 0.5)
    x = torch.randn(3, 1, 8, 8)
    path = export_onnx(model, x, tmp_path / "p.onnx")
    model.eval()
    torch.testing.assert_close(OnnxRunner(path)(x), model(x), rtol=1e-4, atol=1e-5)


def test_check_detects_a_different_model(tmp_path):
    torch.manual_seed(0)
    a = create_model("mlp", in_features=6, num_classes=3, hidden=[8])
    b = create_model("mlp", in_features=6, num_classes=3, hidden=[8])
    path = export_onnx(a, torch.randn(2, 6), tmp_path / "a.onnx")
    assert not check_onnx(path, b, torch.randn(4, 6))["ok"]
