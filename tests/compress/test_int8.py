"""Static int8 (PTQ) and quantization-aware training: real int8 modules, accuracy close to float,
QAT's loss falls and its int8 model keeps the fake-quantized model's accuracy."""

import pytest
import torch

from dltricks.compress import (
    convert_qat,
    int8_layer_count,
    prepare_qat,
    quantize_static_int8,
    state_dict_bytes,
)
from dltricks.compress.int8 import explicit_padding
from dltricks.compress.pipeline import accuracy, finetune
from dltricks.data import create_dataset
from dltricks.models import create_model


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits", seed=0)


def _cnn(**kw):
    torch.manual_seed(0)
    return create_model("small_cnn", in_channels=1, num_classes=10, channels=[16, 32], **kw)


@pytest.fixture(scope="module")
def trained(digits):
    model = _cnn(residual=True)
    finetune(model, digits.train.x, digits.train.y, steps=150, lr=3e-3)
    return model.eval()


def test_static_int8_is_close_to_float(trained, digits):
    calib = [digits.train.x[i:i + 64] for i in range(0, 256, 64)]
    q = quantize_static_int8(trained, calib)
    assert int8_layer_count(q) >= 4  # convs, shortcut convs and the head run in int8
    assert state_dict_bytes(q) < 0.7 * state_dict_bytes(trained)  # pickle overhead of tiny nets
    acc_f = accuracy(trained, digits.test.x, digits.test.y)
    acc_q = accuracy(q, digits.test.x, digits.test.y)
    assert acc_f > 0.85
    assert abs(acc_q - acc_f) < 0.03
    with torch.no_grad():
        ref, got = trained(digits.test.x), q(digits.test.x)
    assert float((got - ref).abs().max() / ref.abs().max()) < 0.1
    with pytest.raises(ValueError, match="calibration"):
        quantize_static_int8(trained, [])


def test_qat_trains_and_converts_without_losing_accuracy(digits):
    qat = prepare_qat(_cnn(), digits.train.x[:64])
    assert any("FakeQuantize" in type(m).__name__ for m in qat.modules())
    losses = finetune(qat, digits.train.x, digits.train.y, steps=150, lr=3e-3)
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20
    acc_fake = accuracy(qat, digits.test.x, digits.test.y)
    q = convert_qat(qat)
    assert int8_layer_count(q) >= 3
    acc_q = accuracy(q, digits.test.x, digits.test.y)
    assert acc_fake > 0.8 and abs(acc_q - acc_fake) < 0.02


def test_explicit_padding_keeps_the_output():
    model = _cnn(kernel_size=5).eval()
    x = torch.randn(2, 1, 8, 8)
    before = model(x)
    assert explicit_padding(model) > 0
    torch.testing.assert_close(model(x), before)
