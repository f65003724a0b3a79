"""Experiments on training tips: normalization, schedules, clipping, regularization, optimizers.

All run on embedded data (scikit-learn digits, 8x8 images) so the quick profile stays within a
few minutes on two CPU cores. References for the claims tested:

* batch normalization: Ioffe & Szegedy 2015; layer/instance/group normalization: Ba et al.
  2016, Ulyanov et al. 2016, Wu & He 2018 (group norm's motivation is small batches);
* learning-rate schedules: step decay (He et al. 2016), SGDR/cosine (Loshchilov & Hutter 2017),
  one-cycle (Smith & Topin 2019); warmup (Goyal et al. 2017);
* gradient clipping: Pascanu, Mikolov & Bengio 2013;
* label smoothing: Szegedy et al. 2016, and on calibration Müller, Kornblith & Hinton 2019
  (label smoothing may *worsen* calibration when the model is already under-confident);
* dropout: Srivastava et al. 2014; weight decay / L2: Krogh & Hertz 1992;
* optimizers: momentum (Polyak 1964; Sutskever et al. 2013), RMSprop (Tieleman & Hinton 2012),
  Adam (Kingma & Ba 2015);
* activations and vanishing gradients: Glorot & Bengio 2010, Glorot, Bordes & Bengio 2011 (ReLU),
  Maas et al. 2013 (Leaky ReLU).
"""

from __future__ import annotations

from typing import Any

from dltricks.lab.experiment import Arm, Budget, Claim, Experiment, register_experiment


def budgets(steps: int, seeds: int = 3, smoke_steps: int = 3) -> dict[str, Budget]:
    """Smoke: one seed, a few steps; quick: ``seeds`` x ``steps``; full: 8 seeds, 4x steps."""
    return {"smoke": Budget(seeds=1, steps=smoke_steps),
            "quick": Budget(seeds=seeds, steps=steps),
            "full": Budget(seeds=8, steps=steps * 4)}


def digits_cnn(lr: float = 0.05, norm: str = "batch", **data: Any) -> dict[str, Any]:
    """small_cnn (16, 32 channels) on digits with SGD + momentum."""
    return {
        "model": {"name": "small_cnn", "kwargs": {"channels": [16, 32], "norm": norm}},
        "data": {"name": "digits", "batch_size": 64, "kwargs": dict(data)},
        "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.9},
    }


def digits_mlp(depth: int = 2, width: int = 128, optimizer: dict[str, Any] | None = None,
               act: str = "relu", **data: Any) -> dict[str, Any]:
    """An MLP on flattened digits."""
    return {
        "model": {"name": "mlp", "kwargs": {"depth": depth, "width": width, "act": act}},
        "data": {"name": "digits", "batch_size": 64, "kwargs": dict(data)},
        "optimizer": optimizer or {"name": "adam", "lr": 1e-3},
    }


def _model(**kwargs: Any) -> dict[str, Any]:
    return {"model": {"kwargs": kwargs}}


# --------------------------------------------------------------------------- normalization

register_experiment(Experiment(
    id="batchnorm",
    tips=("bn-stabilizes", "norm-stabilize-generalize"),
    title="Batch normalization vs none",
    claim="A CNN with batch normalization converges faster (lower mean training loss) and "
          "reaches a higher test accuracy than the same CNN without normalization.",
    setup="small_cnn (16-32 channels) on digits, SGD momentum 0.9, lr 0.05, batch 64; "
          "arms differ only in norm=batch|none.",
    base=digits_cnn(),
    arms=(Arm("none", _model(norm="none"), "no norm"), Arm("batch", _model(norm="batch"),
                                                            "batch norm")),
    claims=(Claim("batch", "none", "test_accuracy", "higher"),
            Claim("batch", "none", "mean_train_loss", "lower")),
    budgets=budgets(200),
    user_data="image",
))

register_experiment(Experiment(
    id="norm_placement",
    tips=("bn-before-activation",),
    title="Batch norm before vs after the activation",
    claim="conv → BN → ReLU (norm before the activation) gives a higher test accuracy than "
          "conv → ReLU → BN.",
    setup="small_cnn with batch norm on digits, SGD momentum; norm_order=norm_act|act_norm.",
    base=digits_cnn(),
    arms=(Arm("act_norm", _model(norm_order="act_norm"), "ReLU → BN"),
          Arm("norm_act", _model(norm_order="norm_act"), "BN → ReLU")),
    claims=(Claim("norm_act", "act_norm", "test_accuracy", "higher"),
            Claim("norm_act", "act_norm", "mean_train_loss", "lower", primary=False)),
    budgets=budgets(200),
    user_data="image",
    notes="The original BN paper puts BN before the nonlinearity; later practice found either "
          "order works; this is an empirical check on one small model.",
))


def _norm_arm(norm: str, batch: int) -> Arm:
    def overrides(steps: int) -> dict[str, Any]:
        # the same number of training samples for both batch sizes would starve batch 8;
        # the same number of steps gives the large batch more data: we use equal steps.
        return {"model": {"kwargs": {"norm": norm}}, "data": {"batch_size": batch}}

    return Arm(f"{norm}_b{batch}", overrides, f"{norm} (batch {batch})")


_NORMS = ("none", "batch", "layer", "instance", "group")
register_experiment(Experiment(
    id="norm_variants",
    tips=("norm-variants", "norm-stabilize-generalize"),
    title="Batch, layer, instance and group norm at small and large batch",
    claim="Each normalization (batch, layer, instance, group) improves test accuracy over no "
          "normalization, at batch size 8 and at batch size 128.",
    setup="small_cnn on digits, SGD momentum 0.9, lr 0.02, equal steps for both batch sizes; "
          "arms differ in norm and batch size.",
    base=digits_cnn(lr=0.02),
    arms=tuple(_norm_arm(n, b) for b in (8, 128) for n in _NORMS),
    claims=tuple(Claim(f"{n}_b{b}", f"none_b{b}", "test_accuracy", "higher")
                 for b in (8, 128) for n in _NORMS[1:]),
    budgets=budgets(120),
    user_data="image",
))

# --------------------------------------------------------------------------- schedules


def _schedule(name: str) -> Arm:
    def overrides(steps: int) -> dict[str, Any]:
        sched: dict[str, Any] = {"name": name}
        if name == "step":
            sched.update(step_size=max(1, steps // 3), gamma=0.2)
        return {"schedule": sched}

    return Arm(name, overrides)


register_experiment(Experiment(
    id="lr_schedules",
    tips=("lr-anneal", "lr-anneal-techniques", "lr-schedule-explore"),
    title="Learning-rate annealing: constant vs step vs cosine vs one-cycle",
    claim="Step decay, cosine annealing and one-cycle each give a higher test accuracy than a "
          "constant learning rate with the same peak.",
    setup="small_cnn with batch norm on digits, SGD momentum 0.9, peak lr 0.1; step decays by "
          "0.2 every third of the run.",
    base=digits_cnn(lr=0.1),
    arms=tuple(_schedule(n) for n in ("constant", "step", "cosine", "onecycle")),
    claims=tuple(Claim(n, "constant", "test_accuracy", "higher")
                 for n in ("step", "cosine", "onecycle"))
    + tuple(Claim(n, "constant", "final_train_loss", "lower", primary=False)
            for n in ("step", "cosine", "onecycle")),
    budgets=budgets(200),
    user_data="image",
))


def _warmup(on: bool) -> Arm:
    def overrides(steps: int) -> dict[str, Any]:
        return {"schedule": {"name": "cosine", "warmup_steps": max(1, steps // 8) if on else 0}}

    return Arm("warmup" if on else "no_warmup", overrides,
               "warmup + cosine" if on else "cosine, no warmup")


register_experiment(Experiment(
    id="warmup",
    tips=("tf-warmup-decay",),
    title="Warmup vs none at a high learning rate",
    claim="At a high learning rate, a linear warmup before cosine decay gives a higher test "
          "accuracy than cosine decay from the first step.",
    setup="MLP (4 x 256) on digits, Adam at lr 0.01 (high for Adam); warmup over the first "
          "eighth of the steps.",
    base=digits_mlp(depth=4, width=256, optimizer={"name": "adam", "lr": 0.01}),
    arms=(_warmup(False), _warmup(True)),
    claims=(Claim("warmup", "no_warmup", "test_accuracy", "higher"),
            Claim("warmup", "no_warmup", "mean_train_loss", "lower", primary=False)),
    budgets=budgets(200),
    divergence_ok=True,
    user_data="any",
))

# --------------------------------------------------------------------------- clipping

register_experiment(Experiment(
    id="grad_clipping",
    tips=("clip-exploding",),
    title="Gradient clipping in a setup that explodes without it",
    claim="Clipping the gradient norm prevents divergence (NaN/Inf) of a deep plain network "
          "trained at a learning rate too high for it, and gives a lower final training loss.",
    setup="Deep linear network (MLP, 8 hidden layers of 128, no activation, no norm) on digits, "
          "SGD momentum 0.9 at lr 0.3; arms: no clipping vs clip total norm at 1.0. A NaN/Inf "
          "stops a run and counts as diverged. (With ReLU or tanh the same depth and learning "
          "rate do not overflow: the units die or saturate and the loss stalls at chance "
          "instead, with or without clipping.)",
    base={**digits_mlp(depth=8, width=128, act="identity",
                       optimizer={"name": "sgd", "lr": 0.3, "momentum": 0.9}),
          "train": {"nonfinite": "error"}},
    arms=(Arm("none", {}, "no clipping"),
          Arm("clip", {"train": {"clip": {"mode": "norm", "max": 1.0}}}, "clip norm 1.0")),
    claims=(Claim("clip", "none", "diverged", "lower"),
            Claim("clip", "none", "final_train_loss", "lower", primary=False)),
    budgets=budgets(150),
    divergence_ok=True,
))

# --------------------------------------------------------------------------- label smoothing

register_experiment(Experiment(
    id="label_smoothing",
    tips=("ls-overconfidence", "ls-generalize-calibrate"),
    title="Label smoothing: accuracy and calibration",
    claim="Label smoothing 0.1 lowers the expected calibration error and raises test accuracy.",
    setup="MLP (2 x 256) on digits, Adam lr 1e-3 trained well past fitting the training set "
          "(where a plain model becomes over-confident); arms: smoothing 0 vs 0.1.",
    base=digits_mlp(depth=2, width=256),
    arms=(Arm("none", {}, "no smoothing"),
          Arm("ls0.1", {"train": {"label_smoothing": 0.1}}, "smoothing 0.1")),
    claims=(Claim("ls0.1", "none", "test_ece", "lower"),
            Claim("ls0.1", "none", "test_accuracy", "higher")),
    budgets=budgets(400),
    probes=("reliability",),
    plots=("curves", "bars", "reliability"),
    user_data="any",
    notes="Müller et al. 2019 report that label smoothing improves calibration of over-confident "
          "networks; it can make an already under-confident model worse.",
))

# --------------------------------------------------------------------------- regularization

_SMALL = {"fractions": (0.3, 0.2, 0.5)}

register_experiment(Experiment(
    id="dropout",
    tips=("dropout-moderation", "reg-l2-dropout-bn"),
    title="Dropout in moderation vs heavy dropout vs none",
    claim="Moderate dropout (0.2) gives a higher test accuracy than heavy dropout (0.8, "
          "underfitting) and than no dropout (overfitting).",
    setup="MLP (2 x 512) on 30% of digits (about 540 training images), Adam lr 1e-3.",
    base=digits_mlp(depth=2, width=512, **_SMALL),
    arms=(Arm("none", _model(dropout=0.0), "p=0"),
          Arm("moderate", _model(dropout=0.2), "p=0.2"),
          Arm("heavy", _model(dropout=0.8), "p=0.8")),
    claims=(Claim("moderate", "heavy", "test_accuracy", "higher"),
            Claim("moderate", "none", "test_accuracy", "higher")),
    budgets=budgets(300),
    user_data="any",
))

register_experiment(Experiment(
    id="weight_decay",
    tips=("reg-l2-dropout-bn",),
    title="L2 regularization (weight decay) vs none",
    claim="L2 regularization raises test accuracy of an over-parameterized MLP on little data.",
    setup="MLP (2 x 512) on 30% of digits, SGD momentum 0.9 lr 0.05; L2 coefficient 5e-3 "
          "(coupled weight decay, as SGD's weight_decay) vs 0.",
    base=digits_mlp(depth=2, width=512, optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9},
                    **_SMALL),
    arms=(Arm("none", {}, "no L2"),
          Arm("l2", {"optimizer": {"weight_decay": 5e-3}}, "L2 5e-3")),
    claims=(Claim("l2", "none", "test_accuracy", "higher"),),
    budgets=budgets(300),
    user_data="any",
))

# --------------------------------------------------------------------------- optimizers

_OPTS = {
    "sgd": ({"name": "sgd", "lr": 0.05}, "SGD"),
    "momentum": ({"name": "sgd", "lr": 0.05, "momentum": 0.9}, "SGD + momentum"),
    "adam": ({"name": "adam", "lr": 1e-3}, "Adam"),
    "rmsprop": ({"name": "rmsprop", "lr": 1e-3}, "RMSprop"),
}

register_experiment(Experiment(
    id="optimizers",
    tips=("optimizers-faster",),
    title="Optimizers: SGD vs momentum, Adam, RMSprop",
    claim="SGD with momentum, Adam and RMSprop converge faster (lower mean training loss over "
          "the run) than plain SGD.",
    setup="MLP (3 x 128) on digits; each optimizer at its common default learning rate "
          "(SGD 0.05, Adam/RMSprop 1e-3), not tuned per optimizer.",
    base=digits_mlp(depth=3, width=128),
    arms=tuple(Arm(k, {"optimizer": o}, label) for k, (o, label) in _OPTS.items()),
    claims=tuple(Claim(k, "sgd", "mean_train_loss", "lower") for k in ("momentum", "adam",
                                                                         "rmsprop"))
    + tuple(Claim(k, "sgd", "test_accuracy", "higher", primary=False)
            for k in ("momentum", "adam", "rmsprop")),
    budgets=budgets(150),
    user_data="any",
))

# --------------------------------------------------------------------------- augmentation

register_experiment(Experiment(
    id="augmentation",
    tips=("aug-diversity", "aug-generalization"),
    title="Data augmentation with little data",
    claim="Random rotation and resized crops raise test accuracy when only 10% of digits "
          "(about 180 images) is available for training.",
    setup="small_cnn with batch norm, Adam lr 3e-3, batch 32, train fraction 0.1; augmentation: "
          "rotation up to 15 degrees and random resized crop (scale 0.8-1). No flips: digits are "
          "not mirror-symmetric.",
    base={**digits_cnn(fractions=(0.1, 0.2, 0.7)),
          "optimizer": {"name": "adam", "lr": 3e-3}},
    arms=(Arm("none", {"data": {"batch_size": 32}}, "no augmentation"),
          Arm("augment", {"data": {"batch_size": 32,
                                   "augment": {"rotation": 15.0, "crop_scale": (0.8, 1.0)}}},
              "rotation + crop")),
    claims=(Claim("augment", "none", "test_accuracy", "higher"),),
    budgets=budgets(300),
    user_data="image",
))

# --------------------------------------------------------------------------- activations

_ACTS = {"relu": "ReLU", "leaky_relu": "Leaky ReLU", "tanh": "tanh", "sigmoid": "sigmoid"}

register_experiment(Experiment(
    id="activations",
    tips=("relu-vanishing",),
    title="ReLU / Leaky ReLU vs sigmoid / tanh in a deep plain network",
    claim="In an 8-layer MLP, ReLU and Leaky ReLU keep gradients from vanishing towards the "
          "input and reach a higher test accuracy than sigmoid and tanh.",
    setup="MLP with 8 hidden layers of 64, no normalization, PyTorch default init, Adam lr "
          "1e-3; per-layer gradient norms recorded at every step.",
    base=digits_mlp(depth=8, width=64),
    arms=tuple(Arm(k, _model(act=k), v) for k, v in _ACTS.items()),
    claims=tuple(Claim(a, b, "test_accuracy", "higher")
                 for a in ("relu", "leaky_relu") for b in ("sigmoid", "tanh"))
    + tuple(Claim(a, "sigmoid", "grad_first_last_log10", "higher", primary=False)
            for a in ("relu", "leaky_relu")),
    budgets=budgets(300),
    probes=("grad_by_depth",),
    plots=("curves", "bars", "grad_by_depth"),
    user_data="any",
    notes="With SGD (momentum 0.9, lr 0.02) and 10 layers no activation trained in 200 steps "
          "under PyTorch's default init; Adam was used so that the comparison is not between "
          "four failures.",
))
