"""train.checkpoint.every_epochs and train.checkpoint.trainable_only: what is written, and that
resume stays exact and refuses a model whose frozen weights changed."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from dltricks.data import create_dataset
from dltricks.train import checkpoint as ckpt
from dltricks.train import terms as T
from dltricks.train.run import read_metrics
from dltricks.train.trainer import Callback, ResumeError, Trainer, TrainingInterrupted
from tests.train.test_trainer import make as trainer_recipe

FROZEN_SENTENCE = ("frozen weights of this model differ from those the checkpoint was trained "
                   "against")


class Freeze(T.LossTerm):
    """Freezes the parameters under ``prefix`` (as a linear probe or LoRA freezes a body);
    ``shift`` moves the frozen weights, standing in for other pretrained weights. The first
    frozen value is set to -0.0, which pretrained weights hold and EMA averaging turns into
    +0.0."""

    def __init__(self, prefix: str = "stages", shift: float = 0.0) -> None:
        self.prefix, self.shift = prefix, shift

    def setup(self, ctx: T.TermContext) -> None:
        with torch.no_grad():
            for name, p in ctx.model.named_parameters():
                if name.startswith(self.prefix):
                    p.requires_grad_(False)
                    p.add_(self.shift)
            first = next(p for n, p in ctx.model.named_parameters() if n.startswith(self.prefix))
            first.view(-1)[0] = -0.0

    def __call__(self, step: T.StepContext) -> torch.Tensor:
        return step.loss.detach() * 0.0  # weight 0: logged only


@pytest.fixture(autouse=True)
def registered():
    T.register_term("freeze_test", Freeze)
    yield
    T.unregister_term("freeze_test")


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits", seed=0)


def make(**sections):
    """test_trainer's recipe, its MLP with dropout (whose RNG stream must resume exactly too)."""
    sections.setdefault("model", {"name": "mlp", "kwargs": {"hidden": [32], "dropout": 0.2}})
    return trainer_recipe(**sections)


def frozen_cnn(trainable_only=True, shift=0.0, **train):
    """A small CNN with batch norm whose conv stages are frozen: only the head trains, the
    BatchNorm statistics (buffers) still change."""
    return make(model={"name": "small_cnn", "kwargs": {"channels": [8, 16], "norm": "batch"}},
                objectives=[{"name": "freeze_test", "weight": 0.0, "kwargs": {"shift": shift}}],
                train={"checkpoint": {"trainable_only": trainable_only, "keep_last": 10},
                       **train})


def ckpt_steps(run_dir):
    return [int(p.name[len(ckpt.PREFIX):]) for p in ckpt.list_checkpoints(run_dir / "checkpoints")]


def full_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_run(a_dir, b_dir, a_model, b_model):
    """Bit-identical weights (frozen ones included) and identical logs."""
    a, b = full_state(a_model), full_state(b_model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    timeless = lambda d: [{k: v for k, v in rec.items() if k != "samples_per_s"}  # noqa: E731
                          for rec in read_metrics(d)]
    assert timeless(a_dir) == timeless(b_dir)


# --------------------------------------------------------------------------- every_epochs


def _improving_steps(run_dir, min_delta):
    """Steps of the validation records that improved the monitor (accuracy, max mode)."""
    best, out = None, set()
    for rec in read_metrics(run_dir):
        if rec["split"] == "val" and (best is None or rec["accuracy"] > best + min_delta):
            best = rec["accuracy"]
            out.add(rec["step"])
    return out


# min_delta 1.0: only epoch 1 improves; 0.1: epochs 1 and 2 do (val accuracy ~0.61, 0.82, 0.88)
@pytest.mark.parametrize("every, min_delta", [(2, 1.0), (3, 0.1)])
def test_every_epochs_writes_every_nth_the_last_and_each_improving_epoch(
        tmp_path, digits, every, min_delta):
    """Epoch-end checkpoints exist exactly at the multiples of every_epochs, at the last epoch
    and at every epoch that improved the monitor (so the best checkpoint always exists): a
    writer that forgets the last or the improving epochs, or writes every epoch, fails."""
    r = make(train={"epochs": 5, "early_stopping": {"min_delta": min_delta},
                    "checkpoint": {"every_epochs": every, "keep_last": 10}})
    s = Trainer(r, tmp_path / "r", data=digits).fit()
    spe = s["steps"] // 5
    ends = {spe * e for e in range(1, 6)}
    expected = {spe * e for e in range(every, 6, every)} | {s["steps"]}
    expected |= _improving_steps(tmp_path / "r", min_delta)
    assert set(ckpt_steps(tmp_path / "r")) == expected
    assert expected < ends  # some epoch end was skipped: the option did something
    assert s["best_step"] in expected
    # an improving epoch that is neither a multiple of every_epochs nor the last was written
    assert any(st % (every * spe) and st != s["steps"]
               for st in _improving_steps(tmp_path / "r", min_delta))


class CrashAfterEpoch(Callback):
    """Dies (like kill -9: no checkpoint) right after the end of epoch ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, metrics):
        if trainer.epoch == self.epoch:
            raise SystemError("simulated crash")


def test_every_epochs_crash_after_an_unsaved_epoch_resumes_exactly(tmp_path, digits):
    """every_epochs=2, a crash after epoch 3 (not checkpointed): resume starts from epoch 2's
    checkpoint, replays epoch 3 and ends bit-identical to an uninterrupted run (weights, EMA,
    logs, summary)."""
    # min_delta=1.0: only the first evaluation counts as an improvement, so epoch 3 is not saved
    r = make(data={"augment": {"noise_std": 0.1}},
             train={"epochs": 5, "early_stopping": {"min_delta": 1.0},
                    "ema": {"enabled": True, "decay": 0.9},
                    "checkpoint": {"every_epochs": 2, "keep_last": 10}})
    full_t = Trainer(r, tmp_path / "full", data=digits)
    full = full_t.fit()
    spe = full["steps"] // 5
    with pytest.raises(SystemError):
        Trainer(r, tmp_path / "cut", data=digits, callbacks=[CrashAfterEpoch(3)]).fit()
    assert ckpt_steps(tmp_path / "cut") == [spe, 2 * spe]  # epoch 3 must be replayed
    assert any(rec["split"] == "val" and rec["step"] == 3 * spe
               for rec in read_metrics(tmp_path / "cut"))
    t = Trainer(r, tmp_path / "cut", data=digits, resume=True)
    assert t.step == 2 * spe
    resumed = t.fit()
    assert resumed == {**full, "run_dir": resumed["run_dir"]}
    assert_same_run(tmp_path / "full", tmp_path / "cut", full_t.model, t.model)
    assert_same_run(tmp_path / "full", tmp_path / "cut", full_t.ema.module, t.ema.module)


# --------------------------------------------------------------------------- trainable_only


def test_trainable_only_checkpoint_holds_trained_parameters_and_buffers(tmp_path, digits):
    """The weights file holds exactly the parameters with requires_grad and all buffers (the
    frozen conv stages' BatchNorm statistics included), is smaller than the full file, and
    meta.json names the frozen parameters; the default (False) still writes every tensor."""
    only = Trainer(frozen_cnn(True, steps=4), tmp_path / "only", data=digits)
    only.fit()
    Trainer(frozen_cnn(False, steps=4), tmp_path / "full", data=digits).fit()
    model = only.model
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    assert trained == {"head.weight", "head.bias"} and frozen and buffers
    a = ckpt.latest_valid(tmp_path / "only" / "checkpoints")
    b = ckpt.latest_valid(tmp_path / "full" / "checkpoints")
    assert set(load_file(a.path / "model.safetensors")) == trained | buffers
    assert set(load_file(b.path / "model.safetensors")) == trained | buffers | frozen
    assert (a.path / "model.safetensors").stat().st_size < (
        b.path / "model.safetensors").stat().st_size
    assert a.meta["frozen"]["names"] == sorted(frozen) and "frozen" not in b.meta


@pytest.mark.parametrize("at_epoch_end", [False, True])
def test_trainable_only_resume_equals_uninterrupted(tmp_path, digits, at_epoch_end):
    """A trainable-only run interrupted and resumed ends bit-identical (every weight, frozen or
    not, BatchNorm statistics and EMA included) to an uninterrupted run, whose weights are also
    those of a run that saved full checkpoints: a loader that drops the buffers or the EMA
    subset, or a checkpoint that lost a trained tensor, fails. The best checkpoint is the
    first epoch's (min_delta 1.0), so the summary loads an EMA file into a copy of the model."""
    r = frozen_cnn(True, epochs=2, ema={"enabled": True, "decay": 0.9},
                   early_stopping={"min_delta": 1.0})
    full_t = Trainer(r, tmp_path / "full", data=digits)
    full = full_t.fit()
    stop_after = full_t.steps_per_epoch if at_epoch_end else 5
    with pytest.raises(TrainingInterrupted):
        Trainer(r, tmp_path / "cut", data=digits, max_steps_this_call=stop_after).fit()
    t = Trainer(r, tmp_path / "cut", data=digits, resume=True)
    assert t.step == stop_after
    resumed = t.fit()
    assert resumed == {**full, "run_dir": resumed["run_dir"]}
    assert full["best_step"] == full_t.steps_per_epoch < full["steps"]
    assert_same_run(tmp_path / "full", tmp_path / "cut", full_t.model, t.model)
    assert_same_run(tmp_path / "full", tmp_path / "cut", full_t.ema.module, t.ema.module)
    plain = frozen_cnn(False, epochs=2, ema={"enabled": True, "decay": 0.9},
                       early_stopping={"min_delta": 1.0})
    plain_t = Trainer(plain, tmp_path / "plain", data=digits)
    plain_t.fit()
    for k, v in full_state(plain_t.model).items():
        assert torch.equal(v, t.model.state_dict()[k]), k


def _frozen_mlp(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    m[0].requires_grad_(False)
    return m


def test_changed_frozen_weights_are_refused_and_nothing_is_loaded(tmp_path):
    """Loading a trainable-only checkpoint (model and EMA files) into a model whose frozen
    weights differ by one value refuses with the sentence and leaves the model untouched; the
    same model with the right frozen weights loads every trained tensor."""
    src = _frozen_mlp(1)
    src[1].running_mean.fill_(0.5)
    path = ckpt.save_checkpoint(tmp_path, 3, src, {}, ema=src, trainable_only=True)
    found = ckpt.verify(path)
    for file in ("model.safetensors", "ema.safetensors"):
        good = _frozen_mlp(2)
        good[0].load_state_dict(src[0].state_dict())  # the same "pretrained" body
        found.load_model(good, file)
        for k, v in src.state_dict().items():
            assert torch.equal(good.state_dict()[k], v), k
        bad = _frozen_mlp(2)
        bad[0].load_state_dict(src[0].state_dict())
        with torch.no_grad():
            bad[0].weight[0, 0] += 1e-6
        before = full_state(bad)
        with pytest.raises(ckpt.FrozenWeightsError, match=FROZEN_SENTENCE) as err:
            found.load_model(bad, file)
        assert isinstance(err.value, ValueError)  # bad input: exit code 2 in the CLI
        for k, v in before.items():
            assert torch.equal(bad.state_dict()[k], v), k


def test_ema_file_with_averaged_signed_zeros_loads_into_a_fresh_model(tmp_path):
    """EMA averaging turns a frozen -0.0 into +0.0 (same weight, other bytes): the EMA file of a
    trainable-only checkpoint still loads into a freshly built model, and its fingerprint is the
    model file's. A fingerprint of the raw bytes refuses it."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    src = _frozen_mlp(0)
    with torch.no_grad():
        src[0].weight[0, 0] = -0.0
    ema = AveragedModel(src, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema.update_parameters(src)
    ema.update_parameters(src)
    flipped = ema.module[0].weight[0, 0]
    assert flipped == 0 and not torch.signbit(flipped)  # the premise: averaging flipped it
    found = ckpt.verify(ckpt.save_checkpoint(tmp_path, 1, src, {}, ema=ema.module,
                                             trainable_only=True))
    sha = found.meta["frozen"]["sha256"]
    assert sha["ema.safetensors"] == sha["model.safetensors"]
    fresh = _frozen_mlp(0)
    with torch.no_grad():
        fresh[0].weight[0, 0] = -0.0
    found.load_model(fresh, "ema.safetensors")
    assert torch.equal(fresh[2].weight, ema.module[2].weight)


def test_trainable_only_keys_are_checked_strictly(tmp_path):
    """A trainable-only file must fit the model exactly on its subset: a model with an extra
    trained tensor (missing from the file) or without one of the file's tensors is refused."""
    src = _frozen_mlp()
    found = ckpt.verify(ckpt.save_checkpoint(tmp_path, 1, src, {}, trainable_only=True))
    extra = _frozen_mlp()
    extra.add_module("3", nn.Linear(2, 2))
    with pytest.raises(ckpt.CheckpointError, match=r"missing \['3.bias', '3.weight'\]"):
        found.load_model(extra, "model.safetensors")
    fewer = nn.Sequential(*list(_frozen_mlp())[:2])
    with pytest.raises(ckpt.CheckpointError, match=r"unexpected \['2.bias', '2.weight'\]"):
        found.load_model(fewer, "model.safetensors")
    other = _frozen_mlp()
    other[2] = nn.Linear(8, 3)
    with pytest.raises(ckpt.CheckpointError, match="has shape"):
        found.load_model(other, "model.safetensors")


def test_trainable_only_saves_tied_weights_once(tmp_path):
    """Tied trained weights (one tensor under two names) are written once and load into both
    names; a frozen tied pair is left out and fingerprinted once."""
    def tied(seed):
        torch.manual_seed(seed)
        emb, head = nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)
        head.weight = emb.weight
        m = nn.ModuleDict({"emb": emb, "head": head, "frozen": nn.Linear(3, 3)})
        m.frozen.requires_grad_(False)
        return m

    src = tied(0)
    found = ckpt.verify(ckpt.save_checkpoint(tmp_path, 1, src, {}, trainable_only=True))
    assert set(load_file(found.path / "model.safetensors")) == {"emb.weight"}
    fresh = tied(1)
    fresh.frozen.load_state_dict(src.frozen.state_dict())
    found.load_model(fresh)
    assert torch.equal(fresh.head.weight, src.emb.weight) and fresh.head.weight is fresh.emb.weight


def test_resume_and_eval_refuse_other_frozen_weights(tmp_path, digits):
    """A trainable-only run whose recipe now builds other frozen weights: resume raises the
    recipe-does-not-fit error with the frozen-weights sentence (no fallback to an older
    checkpoint), and `dltricks eval` exits with code 2 and the sentence, no traceback."""
    from dltricks.cli.main import app

    r = frozen_cnn(True, steps=6)
    Trainer(r, tmp_path / "r", data=digits).fit()
    changed = frozen_cnn(True, shift=0.01, steps=6)
    with pytest.raises(ResumeError, match=FROZEN_SENTENCE):
        Trainer(changed, tmp_path / "r", data=digits, resume=True)
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output  # the recipe as trained: loads and evaluates
    (tmp_path / "r" / "recipe.yaml").write_text(changed.to_yaml())
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert FROZEN_SENTENCE in " ".join(res.output.split())
    assert "Traceback" not in res.output
    # meta.json records the fingerprint of the frozen weights the run was trained against
    meta = json.loads((ckpt.list_checkpoints(tmp_path / "r" / "checkpoints")[-1]
                       / "meta.json").read_text())
    assert len(meta["frozen"]["sha256"]["model.safetensors"]) == 64


def test_eval_of_a_recipe_with_another_architecture_exits_2(tmp_path, digits):
    """A checkpoint that does not fit the model the recipe builds is bad input (exit 2 and the
    sentence), not a failed run (exit 1, kept for corrupted checkpoints)."""
    from dltricks.cli.main import app

    r = frozen_cnn(False, steps=4)
    Trainer(r, tmp_path / "r", data=digits).fit()
    wider = make(model={"name": "small_cnn", "kwargs": {"channels": [8, 24], "norm": "batch"}},
                 train={"steps": 4})
    (tmp_path / "r" / "recipe.yaml").write_text(wider.to_yaml())
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert "does not fit the model" in " ".join(res.output.split())
    assert "Traceback" not in res.output


def test_a_trainable_only_run_is_refused_as_an_init(tmp_path, digits):
    """Fine-tuning from a trainable-only run would copy the adapters and head alone and keep a
    fresh body where the names match: `pretrained_state` refuses it with a sentence, and reads
    the same run saved with full checkpoints."""
    from dltricks.methods.transfer import pretrained_state

    Trainer(frozen_cnn(True, steps=4), tmp_path / "only", data=digits).fit()
    with pytest.raises(ValueError, match="trainable_only"):
        pretrained_state(tmp_path / "only")
    Trainer(frozen_cnn(False, steps=4), tmp_path / "full", data=digits).fit()
    assert any(k.startswith("stages") for k in pretrained_state(tmp_path / "full"))
