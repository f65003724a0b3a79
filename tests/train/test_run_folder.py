"""Run folders never mix runs, and every bad input is exit 2 and a sentence (issue 15).

An existing run folder is refused unless resumed or overwritten; a lock held for the run's
lifetime stops a second process at once; resuming a finished run changes nothing; resuming
from an older checkpoint leaves no duplicate log or TensorBoard step; `resume` can extend a run
but not change its model or data.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from dltricks.cli.main import app
from dltricks.data import create_dataset
from dltricks.train import checkpoint as ckpt
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.run import RunFolderError, RunLock, read_metrics
from dltricks.train.trainer import Trainer, TrainingInterrupted

runner = CliRunner()
FAST = ["train.steps=8", "train.log_every_steps=2", "--no-progress"]


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def flat(res) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(res.output.split())


def make(**train):
    return recipe_from_dict({
        "name": "t", "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
        "data": {"name": "digits", "batch_size": 32},
        "optimizer": {"name": "adam", "lr": 3e-3},
        "train": {"steps": 8, "log_every_steps": 2, **train},
    })


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits", seed=0)


def files(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# --------------------------------------------------------------------------- folders and locks


def test_existing_run_is_refused_unless_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    assert cli("train", "digits_mlp", *FAST, "train.steps=12", "--run-dir", run_dir).exit_code == 0
    before = files(run_dir)
    res = cli("train", "digits_mlp", *FAST, "--run-dir", run_dir)
    assert res.exit_code == 2
    assert "already holds a run" in flat(res) and "dltricks resume" in flat(res)
    assert "--overwrite" in flat(res)
    assert files(run_dir) == before  # nothing touched
    res = cli("train", "digits_mlp", *FAST, "seed=1", "--run-dir", run_dir, "--overwrite")
    assert res.exit_code == 0, res.output
    steps = [c.step for c in map(ckpt.verify, ckpt.list_checkpoints(run_dir / "checkpoints"))]
    assert max(steps) == 8  # the old run's step-12 checkpoints are gone
    assert max(r["step"] for r in read_metrics(run_dir)) == 8
    assert [r["split"] for r in read_metrics(run_dir)].count("test") == 1
    assert "seed: 1" in (run_dir / "recipe.yaml").read_text()


def test_an_empty_existing_folder_is_fine_and_resume_with_overwrite_is_refused(tmp_path, digits):
    (tmp_path / "empty").mkdir()
    assert Trainer(make(), tmp_path / "empty", data=digits).fit()["steps"] == 8
    with pytest.raises(ValueError, match="exclude each other"):
        Trainer(make(), tmp_path / "empty", data=digits, resume=True, overwrite=True)


def test_a_locked_folder_fails_at_once_naming_the_holder(tmp_path, digits):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with RunLock(run_dir):
        t = Trainer(make(), run_dir, data=digits)
        with pytest.raises(RunFolderError, match=f"in use by another process \\(pid {os.getpid()}"):
            t.fit()
        res = cli("train", "digits_mlp", *FAST, "--run-dir", run_dir)
        assert res.exit_code == 2 and f"pid {os.getpid()}" in flat(res)
    assert not (run_dir / "recipe.yaml").exists()
    assert Trainer(make(), run_dir, data=digits).fit()["steps"] == 8  # released


def test_the_lock_is_held_during_fit_and_released_after(tmp_path, digits):
    from dltricks.train.trainer import Callback

    class Probe(Callback):
        def on_step_end(self, trainer):
            if trainer.step == 2:
                with pytest.raises(RunFolderError, match="in use"):
                    RunLock(trainer.run_dir).acquire()

    Trainer(make(), tmp_path / "run", data=digits, callbacks=[Probe()]).fit()
    with RunLock(tmp_path / "run"):  # free again
        pass


def test_two_concurrent_trainings_on_one_folder(tmp_path):
    """One process is refused; the survivor's recipe.yaml is the one its weights were trained
    with (eval of the folder reproduces the survivor's summary)."""
    run_dir = tmp_path / "run"
    args = ["digits_mlp", "train.steps=12", "train.log_every_steps=4", "--run-dir", run_dir,
            "--json", "--no-progress"]
    procs = {seed: subprocess.Popen([sys.executable, "-m", "dltricks", "train", *map(str, args),
                                     f"seed={seed}"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for seed in (0, 1)}
    out = {seed: (*p.communicate(timeout=300), p.returncode) for seed, p in procs.items()}
    codes = sorted(rc for _, _, rc in out.values())
    assert codes == [0, 2], out
    winner = next(s for s, (_, _, rc) in out.items() if rc == 0)
    loser_err = " ".join(next(err for _, err, rc in out.values() if rc == 2).split())
    assert "in use by another process" in loser_err or "already holds a run" in loser_err
    summary = json.loads(out[winner][0])
    assert f"seed: {winner}" in (run_dir / "recipe.yaml").read_text()
    res = cli("eval", run_dir, "--split", "test", "--checkpoint", "best")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout[res.stdout.index("{"):])
    assert metrics == pytest.approx(summary["test"], rel=1e-6)
    assert not list(run_dir.glob(".tmp-*")) and not list((run_dir / "checkpoints").glob(".tmp-*"))


# --------------------------------------------------------------------------- resume


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    res = cli("train", "digits_mlp", *FAST, "--run-dir", run_dir, "--json")
    assert res.exit_code == 0, res.output
    before = files(run_dir)
    res = cli("resume", run_dir, "--json", "--no-progress")
    assert res.exit_code == 0, res.output
    assert files(run_dir) == before  # no duplicate test record, no new checkpoint or event
    assert [r["split"] for r in read_metrics(run_dir)].count("test") == 1


def test_resume_extends_a_run_but_refuses_model_or_data_changes(tmp_path):
    run_dir = tmp_path / "run"
    assert cli("train", "digits_mlp", *FAST, "--run-dir", run_dir).exit_code == 0
    res = cli("resume", run_dir, "model.kwargs.dropout=0.5", "--no-progress")
    assert res.exit_code == 2
    assert "cannot change 'model.kwargs.dropout'" in flat(res) and "train.epochs" in flat(res)
    res = cli("resume", run_dir, "train.steps=14", "--json", "--no-progress")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == 14
    assert "steps: 14" in (run_dir / "recipe.yaml").read_text()
    splits = [(r["split"], r["step"]) for r in read_metrics(run_dir)]
    assert splits.count(("test", 14)) == 1 and ("test", 8) not in splits
    assert len(splits) == len(set(splits))


def test_resume_from_an_older_checkpoint_leaves_no_duplicate_step(tmp_path, digits):
    """kill -9 after step 6 with checkpoints every 4 steps: the resume starts at step 4 and the
    log and the TensorBoard events hold every step once, as an uninterrupted run's do."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = make(steps=12, checkpoint={"every_steps": 4, "keep_last": 5})
    Trainer(r, tmp_path / "full", data=digits).fit()
    with pytest.raises(TrainingInterrupted):
        Trainer(r, tmp_path / "cut", data=digits, max_steps_this_call=6).fit()
    newest = ckpt.list_checkpoints(tmp_path / "cut" / "checkpoints")[-1]
    assert newest.name == ckpt.checkpoint_name(6)
    import shutil

    shutil.rmtree(newest)  # as if killed before the step-6 checkpoint
    Trainer(r, tmp_path / "cut", data=digits, resume=True).fit()

    def tb_steps(run):
        acc = EventAccumulator(str(run / "tb"))
        acc.Reload()
        return [e.step for e in acc.Scalars("train/loss")]

    assert tb_steps(tmp_path / "cut") == tb_steps(tmp_path / "full") == [2, 4, 6, 8, 10, 12]
    key = lambda run: [(r["split"], r["step"]) for r in read_metrics(run)]  # noqa: E731
    assert key(tmp_path / "cut") == key(tmp_path / "full")


def test_resume_after_the_recipe_changed_is_a_sentence(tmp_path):
    run_dir = tmp_path / "run"
    assert cli("train", "digits_mlp", *FAST, "--run-dir", run_dir).exit_code == 0
    import yaml

    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe["model"]["kwargs"]["hidden"] = [64]  # edited by hand after training
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    res = cli("resume", run_dir, "train.steps=10", "--no-progress")
    assert res.exit_code == 2, res.output
    assert "no longer fits the checkpoint" in flat(res) and "Traceback" not in flat(res)


def test_a_tampered_state_falls_back_to_the_previous_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    res = cli("train", "digits_mlp", *FAST, "train.checkpoint.every_steps=4",
              "train.checkpoint.keep_last=3", "--run-dir", run_dir, "--json")
    assert res.exit_code == 0
    reference = json.loads(res.stdout)
    newest = ckpt.list_checkpoints(run_dir / "checkpoints")[-1]

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"payload": Evil()}, newest / "state.pt")  # and a matching hash: looks valid
    meta = json.loads((newest / "meta.json").read_text())
    meta["files"]["state.pt"] = ckpt._sha256(newest / "state.pt")
    (newest / "meta.json").write_text(json.dumps(meta))
    (run_dir / "summary.json").unlink()
    res = cli("resume", run_dir, "--json", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "pwned" not in flat(res)
    assert json.loads(res.stdout[res.stdout.index("{"):])["test"] == reference["test"]


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("args, needles", [
    (["digits_mlp", "data.kwargs.fractoins=[0.6,0.2,0.2]"],
     ["data.kwargs of dataset 'digits'", "unknown key 'fractoins'", "allowed: fractions"]),
    (["digits_cnn", "model.kwargs.channels=bad"],
     ["model.kwargs of model 'small_cnn'", "channels='bad' is not valid", "expected"]),
    (["digits_mlp", "data.kwargs.fractions=[0.8,0.0,0.2]"],
     ["val split of 'digits' has 0 samples", "larger fraction"]),
    (["digits_cnn", "train.epochs=1"], ["schedule.warmup_steps (30)", "16 optimizer steps"]),
])
def test_bad_trainer_inputs_exit_2_with_a_sentence(tmp_path, args, needles):
    res = cli("train", *args, "--out", tmp_path, "--no-progress")
    assert res.exit_code == 2, res.output
    text = flat(res)  # the console wraps long lines
    for needle in needles:
        assert needle in text
    assert "train.monitor" not in text and "Traceback" not in text


def test_out_that_is_a_file_or_not_writable(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    res = cli("train", "digits_mlp", *FAST, "--out", f)
    assert res.exit_code == 2 and "a file is in the way" in flat(res)
    res = cli("train", "digits_mlp", *FAST, "--out", f / "sub")
    assert res.exit_code == 2 and "is a file" in flat(res)
    res = cli("train", "digits_mlp", *FAST, "--run-dir", f)
    assert res.exit_code == 2 and "is a file, not a folder" in flat(res)
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere: the permission case needs another user")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    res = cli("train", "digits_mlp", *FAST, "--out", ro / "runs")
    assert res.exit_code == 2 and "permission denied" in flat(res)


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 1234 bytes"),
])
def test_out_of_memory_suggests_a_smaller_batch(tmp_path, monkeypatch, error):
    def boom(self):
        raise error

    monkeypatch.setattr(Trainer, "_train_micro_batch", boom)
    res = cli("train", "digits_mlp", *FAST, "--out", tmp_path)
    assert res.exit_code == 2, res.output
    text = flat(res)
    assert "Out of memory" in text and "data.batch_size=64" in text and "Traceback" not in text


def test_other_runtime_errors_are_not_called_out_of_memory(tmp_path, monkeypatch, digits):
    def boom(self):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(Trainer, "_train_micro_batch", boom)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        Trainer(make(), tmp_path / "r", data=digits).fit()
