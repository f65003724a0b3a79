"""Studies: each trial a run folder, a rerun resumes the study, two worker processes share one
journal, the best recipe trains, pruned trials stop."""

import json

import optuna
import pytest
import yaml

from dltricks.search.tune import TrialReporter, TuneConfig, best_so_far, open_storage, tune
from dltricks.train.recipe import load_recipe

BASE = {
    "name": "tiny", "device": "cpu",
    "model": {"name": "small_cnn", "kwargs": {"channels": [4, 8]}},
    "data": {"name": "digits", "batch_size": 128},
    "train": {"epochs": 1, "log_every_steps": 5},
}
SPACE = {"metric": "accuracy",
         "params": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
                    "model.kwargs.channels": {"type": "categorical",
                                              "choices": [[4, 8], [8, 8]]}}}


def _cfg(out, trials, **kw):
    return TuneConfig(base=BASE, space=SPACE, out=str(out), trials=trials, sampler="random", **kw)


def test_rerun_resumes_the_study_and_the_best_recipe_loads(tmp_path):
    first = tune(_cfg(tmp_path, 2))
    assert first["trials"] == {"COMPLETE": 2}
    before = [json.loads(json.dumps(r)) for r in
              (tmp_path / "trials.csv").read_text().splitlines()[1:3]]
    again = tune(_cfg(tmp_path, 3))  # one more trial, the two finished ones are kept
    assert again["trials"] == {"COMPLETE": 3}
    rows = (tmp_path / "trials.csv").read_text().splitlines()
    assert rows[1:3] == before and rows[3].startswith("2,COMPLETE")
    assert tune(_cfg(tmp_path, 3))["trials"] == {"COMPLETE": 3}  # nothing left to do
    for n in range(3):
        assert (tmp_path / "trials" / f"trial_{n:04d}" / "summary.json").is_file()
    recipe = load_recipe(tmp_path / "best_recipe.yaml")
    assert recipe.optimizer.lr == pytest.approx(again["best"]["params"]["optimizer.lr"])
    assert recipe.model.kwargs["channels"] == again["best"]["params"]["model.kwargs.channels"]
    assert recipe.train.monitor == "accuracy"
    for f in ("history.png", "importance.png", "trials.md", "summary.json"):
        assert (tmp_path / f).is_file()


def test_two_worker_processes_share_one_study(tmp_path):
    cfg = TuneConfig(base=BASE, space=SPACE, out=str(tmp_path), trials=4, sampler="tpe",
                     workers=2, startup_trials=2)
    summary = tune(cfg)
    study = optuna.load_study(study_name="tiny", storage=open_storage(cfg.storage_url))
    trials = study.get_trials()
    assert 4 <= summary["trials"]["COMPLETE"] <= 5  # each worker may start one as the 4th ends
    assert len({t.number for t in trials}) == len(trials)
    assert len({t.user_attrs["run_dir"] for t in trials}) == len(trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2


def test_reporter_prunes_when_the_pruner_says_so():
    class Trial:
        def __init__(self):
            self.reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= 2

    class T:
        epoch = 1

    rep = TrialReporter(Trial(), "accuracy")
    rep.on_epoch_end(T(), {"accuracy": 0.5})
    rep.on_epoch_end(T(), {})  # no evaluation this epoch: nothing reported
    with pytest.raises(optuna.TrialPruned):
        rep.on_epoch_end(T(), {"accuracy": 0.6})


def test_best_so_far():
    assert best_so_far([0.2, None, 0.1, 0.5], "maximize") == [0.2, 0.2, 0.2, 0.5]
    assert best_so_far([None, 3.0, 4.0, 1.0], "minimize") == [None, 3.0, 3.0, 1.0]


def test_space_file_is_saved(tmp_path):
    tune(_cfg(tmp_path, 1))
    assert yaml.safe_load((tmp_path / "space.yaml").read_text()) == SPACE
