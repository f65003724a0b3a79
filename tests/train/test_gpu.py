"""CUDA paths: fp16 with a grad scaler, bf16 autocast, checkpoints that move between devices.
Skipped without a GPU (CI has none); run on a GPU machine with `pytest -m gpu`."""

import pytest
import torch

from dltricks.data import create_dataset
from dltricks.train import checkpoint as ckpt
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.trainer import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def make(**train):
    return recipe_from_dict({
        "name": "gpu", "device": "cuda",
        "model": {"name": "small_cnn", "kwargs": {"channels": [32, 64]}},
        "data": {"name": "digits", "batch_size": 64},
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "train": {"epochs": 6, "deterministic": False, **train},
    })


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits", seed=0)


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_mixed_precision_trains_on_cuda(tmp_path, digits, precision):
    t = Trainer(make(precision=precision), tmp_path / "r", data=digits)
    assert next(t.model.parameters()).is_cuda
    assert t.scaler.is_enabled() == (precision == "fp16")
    dtypes = set()  # a no-op autocast would give float32 logits for every precision
    t.model.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    s = t.fit()
    want = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    assert dtypes == {want}
    assert s["test"]["accuracy"] > 0.85
    assert s["skipped_steps"] == 0


def test_fp16_overflow_is_skipped_by_the_scaler_not_an_error(tmp_path, digits):
    # an initial scale of 2**40 overflows fp16 gradients: the scaler skips and lowers it
    t = Trainer(make(precision="fp16", steps=30), tmp_path / "r", data=digits)
    t.scaler = torch.amp.GradScaler("cuda", init_scale=2.0**40)
    s = t.fit()
    assert t.scaler.get_scale() < 2.0**40
    assert s["fp16_overflow_steps"] >= 1  # counted, not raised
    assert s["test"]["accuracy"] > 0.3


def test_cuda_checkpoint_resumes_and_loads_on_cpu(tmp_path, digits):
    r = make(precision="fp16", steps=40, checkpoint={"every_steps": 10})
    from dltricks.train.trainer import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        Trainer(r, tmp_path / "r", data=digits, max_steps_this_call=20).fit()
    resumed = Trainer(r, tmp_path / "r", data=digits, resume=True)
    assert resumed.step == 20
    s = resumed.fit()
    assert s["steps"] == 40
    cpu = Trainer(recipe_from_dict({**r.to_dict(), "device": "cpu", "train": {
        **r.to_dict()["train"], "precision": "fp32"}}), tmp_path / "cpu", data=digits)
    ckpt.latest_valid(tmp_path / "r" / "checkpoints").load_model(cpu.model)
    # the last weights score on CPU (fp32) what they scored on the GPU (fp16 autocast)
    assert abs(cpu.evaluate("test", cpu.model)["accuracy"] - s["test_last"]["accuracy"]) < 0.02
