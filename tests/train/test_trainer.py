"""The training engine: learning, tricks wiring, NaN handling, interruption and exact resume."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from dltricks.data import ArrayDataset, DatasetSplits, create_dataset
from dltricks.train import checkpoint as ckpt
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.run import read_metrics
from dltricks.train.trainer import NonFiniteError, Trainer, TrainingInterrupted, epoch_batches


def make(**sections):
    base = {
        "name": "t",
        "model": {"name": "mlp", "kwargs": {"hidden": [32]}},
        "data": {"name": "digits", "batch_size": 32},
        "optimizer": {"name": "adam", "lr": 3e-3},
        "train": {"epochs": 2, "log_every_steps": 5},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return recipe_from_dict(base)


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits", seed=0)


def weights(run_dir, step=None):
    found = ckpt.latest_valid(run_dir / "checkpoints") if step is None else ckpt.verify(
        run_dir / "checkpoints" / ckpt.checkpoint_name(step))
    return load_file(found.path / "model.safetensors")


def test_mlp_learns_digits_and_writes_run_folder(tmp_path, digits):
    s = Trainer(make(train={"epochs": 4}), tmp_path / "run", data=digits).fit()
    assert s["test"]["accuracy"] > 0.85  # chance is 0.1
    run = tmp_path / "run"
    assert (run / "recipe.yaml").is_file() and (run / "summary.json").is_file()
    recs = read_metrics(run)
    splits = {r["split"] for r in recs}
    assert {"train", "val", "test", "train_epoch"} <= splits
    assert all(math.isfinite(r["loss"]) for r in recs if r["split"] == "train")
    assert json.loads((run / "summary.json").read_text())["steps"] == s["steps"]
    assert any((run / "tb").iterdir())  # TensorBoard events


def test_epoch_batches_are_a_fixed_permutation():
    a, b = epoch_batches(100, 32, seed=1, epoch=3), epoch_batches(100, 32, seed=1, epoch=3)
    assert torch.equal(a, b) and a.shape == (3, 32)
    assert len(set(a.flatten().tolist())) == 96  # no index twice
    assert not torch.equal(a, epoch_batches(100, 32, seed=1, epoch=4))


def test_step_count_follows_epochs_accum_and_steps(tmp_path, digits):
    n = len(digits.train)
    t = Trainer(make(train={"epochs": 2, "grad_accum": 2}), tmp_path / "a", data=digits)
    assert t.total_steps == 2 * ((n // 32) // 2)
    t = Trainer(make(train={"steps": 7}), tmp_path / "b", data=digits)
    assert t.fit()["steps"] == 7


def test_grad_accumulation_equals_large_batch(tmp_path, digits):
    """2 micro-batches of 32 with accumulation = one batch of 64 (same data, same update)."""
    big = Trainer(make(data={"batch_size": 64}, train={"steps": 6}), tmp_path / "big",
                  data=digits)
    big.fit()
    acc = Trainer(make(data={"batch_size": 32}, train={"steps": 6, "grad_accum": 2}),
                  tmp_path / "acc", data=digits)
    # same data per step: batch b of size 64 = micro-batches 2b, 2b+1 of size 32
    assert torch.equal(epoch_batches(len(digits.train), 64, 0, 0)[0],
                       epoch_batches(len(digits.train), 32, 0, 0)[:2].flatten())
    acc.fit()
    for k, v in big.model.state_dict().items():
        torch.testing.assert_close(acc.model.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_nan_loss_stops_with_the_step_named(tmp_path, digits):
    x = digits.train.x.clone()
    x[:] = float("nan")
    bad = DatasetSplits(**{**digits.__dict__, "train": ArrayDataset(x, digits.train.y)})
    with pytest.raises(NonFiniteError, match=r"step 1 \(epoch 0"):
        Trainer(make(), tmp_path / "r", data=bad).fit()


def test_nan_steps_can_be_skipped(tmp_path, digits):
    # poison one sample: every batch holding it produces NaN gradients and is skipped
    x = digits.train.x.clone()
    x[5] = float("nan")
    bad = DatasetSplits(**{**digits.__dict__, "train": ArrayDataset(x, digits.train.y)})
    s = Trainer(make(train={"epochs": 3, "nonfinite": "skip"}), tmp_path / "r", data=bad).fit()
    assert 1 <= s["skipped_steps"] <= 3  # at most once per epoch
    assert s["test"]["accuracy"] > 0.5
    w = weights(tmp_path / "r")
    assert all(torch.isfinite(t).all() for t in w.values())


def test_clipping_statistics_in_summary(tmp_path, digits):
    s = Trainer(make(train={"steps": 10, "clip": {"mode": "norm", "max": 1e-3}}),
                tmp_path / "r", data=digits).fit()
    assert s["grad_norm"]["fraction_clipped"] == 1.0  # every norm exceeds 1e-3
    assert s["grad_norm"]["p50"] > 1e-3


def test_early_stopping_and_best_checkpoint_kept(tmp_path, digits):
    # a vanishing learning rate never improves after the first evaluation
    r = make(optimizer={"lr": 1e-9}, train={
        "epochs": 20, "early_stopping": {"patience": 2, "min_delta": 0.5},
        "checkpoint": {"keep_last": 1}})
    s = Trainer(r, tmp_path / "r", data=digits).fit()
    assert s["stopped_early"] and s["epochs"] == 3
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "r" / "checkpoints")]
    assert ckpt.checkpoint_name(s["best_step"]) in names  # protected from pruning
    assert len(names) == 2


def test_ema_weights_are_evaluated_and_saved(tmp_path, digits):
    t = Trainer(make(train={"steps": 20, "ema": {"enabled": True, "decay": 0.9}}),
                tmp_path / "r", data=digits)
    t.fit()
    found = ckpt.latest_valid(tmp_path / "r" / "checkpoints")
    ema = load_file(found.path / "ema.safetensors")
    model = load_file(found.path / "model.safetensors")
    assert any(not torch.equal(ema[k], model[k]) for k in model)
    assert t.evaluate("val") == t.evaluate("val", t.ema.module)


def test_bf16_autocast_trains_on_cpu(tmp_path, digits):
    """The training forward really runs in bf16 (a no-op autocast fails: float32 logits and
    exactly the fp32 run's weights), and the run still learns."""
    t = Trainer(make(train={"epochs": 3, "precision": "bf16"}), tmp_path / "r", data=digits)
    dtypes = set()
    t.model.register_forward_hook(lambda m, i, o: dtypes.add((m.training, o.dtype)))
    s = t.fit()
    assert (True, torch.bfloat16) in dtypes and (True, torch.float32) not in dtypes
    assert (False, torch.bfloat16) in dtypes  # evaluation runs at the run's precision too
    assert s["test"]["accuracy"] > 0.8
    fp32 = Trainer(make(train={"epochs": 3}), tmp_path / "f", data=digits)
    fp32.fit()
    diffs = [float((a - b).abs().max()) for a, b in zip(t.model.state_dict().values(),
                                                        fp32.model.state_dict().values(),
                                                        strict=True)]
    assert max(diffs) > 1e-4


def test_fp16_on_cpu_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    with pytest.raises(ValueError, match="bf16"):
        Trainer(make(train={"precision": "fp16"}), tmp_path / "r")


def test_unknown_model_kwarg_names_it(tmp_path, digits):
    with pytest.raises(ValueError, match="'widht'"):
        Trainer(make(model={"name": "mlp", "kwargs": {"widht": 3}}), tmp_path / "r", data=digits)


def test_bad_monitor_is_refused_before_training(tmp_path, digits):
    with pytest.raises(ValueError, match=r"'f1' is not a validation metric.*accuracy, nll, ece"):
        Trainer(make(train={"steps": 3, "monitor": "f1"}), tmp_path / "r", data=digits)


def test_determinism_switch_is_scoped_to_fit(tmp_path, digits):
    before = torch.are_deterministic_algorithms_enabled()
    Trainer(make(train={"steps": 2, "deterministic": True}), tmp_path / "r", data=digits).fit()
    assert torch.are_deterministic_algorithms_enabled() == before


def test_batch_larger_than_data_is_refused(tmp_path, digits):
    with pytest.raises(ValueError, match="exceeds"):
        Trainer(make(data={"batch_size": 100000}), tmp_path / "r", data=digits)


def _final(run_dir):
    return read_metrics(run_dir)[-1], weights(run_dir)


@pytest.mark.parametrize(
    "stop_after, ema, augment",
    [(5, False, {}), (33, False, {}),  # mid-epoch, and exactly at an epoch's last step
     (7, True, {"noise_std": 0.1, "mixup_alpha": 0.2})],  # EMA count, augmentation RNG
)
def test_interrupt_and_resume_equals_uninterrupted(tmp_path, digits, stop_after, ema, augment):
    """Dropout, data order, augmentation, EMA and RNG state: resume is bit-exact on CPU."""
    r = make(model={"name": "mlp", "kwargs": {"hidden": [32], "dropout": 0.2}},
             data={"augment": augment},
             train={"epochs": 3, "checkpoint": {"every_steps": 4},
                    "ema": {"enabled": ema, "decay": 0.9}})
    full = Trainer(r, tmp_path / "full", data=digits).fit()
    with pytest.raises(TrainingInterrupted):
        Trainer(r, tmp_path / "cut", data=digits, max_steps_this_call=stop_after).fit()
    resumed = Trainer(r, tmp_path / "cut", data=digits, resume=True).fit()
    assert resumed["test"] == full["test"]
    assert resumed["best_val"] == full["best_val"]
    a, b = _final(tmp_path / "full"), _final(tmp_path / "cut")
    assert a[0] == b[0]
    for k in a[1]:
        assert torch.equal(a[1][k], b[1][k]), k
    # the log holds each step once, as an uninterrupted run's does
    steps = lambda d: [(r["split"], r["step"]) for r in read_metrics(d)]  # noqa: E731
    assert steps(tmp_path / "cut") == steps(tmp_path / "full")


def test_resume_skips_a_corrupted_newest_checkpoint(tmp_path, digits):
    r = make(train={"epochs": 2, "checkpoint": {"every_steps": 3, "keep_last": 3}})
    with pytest.raises(TrainingInterrupted):
        Trainer(r, tmp_path / "run", data=digits, max_steps_this_call=9).fit()
    newest = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    (newest / "state.pt").write_bytes(b"\x00" * 10)
    with pytest.warns(UserWarning, match="state.pt"):
        t = Trainer(r, tmp_path / "run", data=digits, resume=True)
    assert t.step == 6
    assert t.fit()["steps"] == t.total_steps


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, digits):
    with pytest.raises(ckpt.CheckpointError, match="No valid checkpoint"):
        Trainer(make(), tmp_path / "empty", data=digits, resume=True)


@pytest.mark.parametrize("name", sorted(__import__("dltricks.train.recipe", fromlist=["x"])
                                        .list_builtin_recipes()))
def test_every_builtin_recipe_trains_a_few_steps(tmp_path, name):
    """Each built-in recipe runs end to end (its model, data, augmentation and objective fit
    together) and produces finite losses."""
    from dltricks.train.recipe import load_builtin_recipe

    r = load_builtin_recipe(name, ["train.steps=4", "train.log_every_steps=2",
                                   "schedule.warmup_steps=1"])
    kwargs = {"digits": {}, "mnist1d": {"num_samples": 400}, "seg2d": {"n_samples": 60},
              "selective_copying": {"n_samples": 200}}
    data = create_dataset(r.data.name, seed=0, **{**r.data.kwargs, **kwargs.get(r.data.name, {})})
    s = Trainer(r, tmp_path / "r", data=data, tensorboard=False).fit()
    assert s["steps"] == 4
    losses = [rec["loss"] for rec in read_metrics(tmp_path / "r") if rec["split"] == "train"]
    assert losses and all(math.isfinite(v) for v in losses)


def test_mixup_and_flips_train_through_the_engine(tmp_path, digits):
    r = make(model={"name": "small_cnn", "kwargs": {"channels": [16, 32]}},
             data={"augment": {"hflip": 0.5, "rotation": 10, "mixup_alpha": 0.4}},
             train={"epochs": 3})
    s = Trainer(r, tmp_path / "r", data=digits).fit()
    assert s["test"]["accuracy"] > 0.6  # soft targets reach the loss and it still learns


def test_building_a_trainer_has_no_side_effect(tmp_path, digits):
    """Seeding and the recipe write happen in fit(): building a Trainer leaves the global RNG
    and the run folder alone, and the same recipe always starts from the same weights."""
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    a = Trainer(make(), tmp_path / "a", data=digits)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not (tmp_path / "a").exists()
    b = Trainer(make(), tmp_path / "b", data=digits)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    a.fit()
    assert (tmp_path / "a" / "recipe.yaml").is_file()


def test_eval_builds_no_optimizer(tmp_path, digits, monkeypatch):
    from dltricks.train import components
    from dltricks.train.evaluate import evaluate_run

    s = Trainer(make(train={"steps": 6}), tmp_path / "r").fit()

    def refuse(*a, **k):
        raise AssertionError("eval must not build an optimizer")

    monkeypatch.setattr(components, "build_optimizer", refuse)
    monkeypatch.setattr(components, "build_components", refuse)
    metrics, used = evaluate_run(tmp_path / "r", "test", "best")
    assert metrics == pytest.approx(s["test"], rel=1e-9) and used.endswith("model.safetensors")


def test_checkpoint_state_round_trips(tmp_path, digits):
    """TrainState is the one list of what a checkpoint holds: loading a saved state and saving
    it again gives the same values."""
    r = make(train={"steps": 6, "ema": {"enabled": True}})
    with pytest.raises(TrainingInterrupted):
        Trainer(r, tmp_path / "r", data=digits, max_steps_this_call=3).fit()
    saved = ckpt.latest_valid(tmp_path / "r" / "checkpoints").load_state()
    torch.manual_seed(999)  # the global RNG is not the checkpoint's until fit() applies it
    again = Trainer(r, tmp_path / "r", data=digits, resume=True).state_dict()
    assert set(again) == set(saved)
    assert again["loop"] == saved["loop"] and again["loop"]["step"] == 3
    assert torch.equal(again["rng_cpu"], saved["rng_cpu"])
    assert torch.equal(again["ema_n_averaged"], saved["ema_n_averaged"])
    assert again["optimizer"]["state"].keys() == saved["optimizer"]["state"].keys()


def test_evaluate_restores_each_submodule_mode_a_frozen_batchnorm_stays_frozen(digits):
    """evaluate() switches to eval mode and back per submodule: a BatchNorm deliberately kept
    in eval mode while the rest trains (a frozen backbone's statistics) is still in eval mode
    after a validation pass, and its running statistics are untouched."""
    from dltricks.train.evaluate import evaluate
    from dltricks.train.objectives import make_objective

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16),
                                torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 10))
    model.train()
    model[2].eval()  # frozen statistics
    stats = model[2].running_mean.clone()
    out = evaluate(model, digits.val, make_objective("classification"))
    assert 0.0 <= out["accuracy"] <= 1.0
    assert model.training and model[1].training and not model[2].training
    assert torch.equal(model[2].running_mean, stats)
