"""Experiments on the guide's Transformer tips: warmup, pre-LN, positions, efficient attention,
dropout, hybrids.

Sequence experiments run a :func:`~dltricks.models.transformer.transformer_tagger` on selective
copying (Gu & Dao 2023, sec. 4.1) at length 16 with 4 tokens to copy: the answer at marker j is
the j-th non-noise token, so the task needs to know where tokens are; a small Transformer learns
it in a few hundred steps on the CPU. Image experiments run on scikit-learn's digits, the
efficient-attention experiment on MNIST-1D (Greydanus & Kobak 2024). References for the claims
tested:

* warmup: Vaswani et al. 2017 (linear warmup then decay); Goyal et al. 2017; Liu et al. 2020
  (RAdam: Adam's early steps have high variance); cosine decay: Loshchilov & Hutter 2017;
* pre-LN vs post-LN: Xiong et al. 2020, "On Layer Normalization in the Transformer
  Architecture" (post-LN needs warmup and its gradients near the output are large at init);
  Nguyen & Salazar 2019;
* positional encodings: Vaswani et al. 2017 (sinusoidal), Devlin et al. 2019 (learned),
  Su et al. 2021 (RoPE); length extrapolation: Press, Smith & Lewis 2022 (ALiBi: sinusoidal and
  rotary encodings extrapolate poorly past the training length);
* efficient attention: Beltagy et al. 2020 (Longformer), Wang et al. 2020 (Linformer),
  Dao et al. 2022 (FlashAttention: exact attention without the L x L score matrix);
* dropout in attention and feed-forward layers: Vaswani et al. 2017 (P_drop = 0.1);
* hybrid CNN + Transformer: Dosovitskiy et al. 2021 (hybrid ViT), Xiao et al. 2021 (early
  convolutions help ViTs optimise), Dai et al. 2021 (CoAtNet).

The experiments use two evaluators of :mod:`dltricks.lab.evaluators`: ``loss_spikes`` (stability
of the training curve, from the run's per-step losses; :mod:`dltricks.analysis.stability`) and
``attention_scaling`` (latency and peak memory of the trained model's forward at growing lengths;
:mod:`dltricks.analysis.scaling`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from dltricks.lab.evaluators import SCALING_LENGTHS
from dltricks.lab.experiment import (
    Arm,
    Budget,
    Claim,
    Experiment,
    budgets,
    register_experiment,
)

# --------------------------------------------------------------------------- recipes

COPY_LEN = 16
COPY_DATA = {"seq_len": COPY_LEN, "n_memorize": 4, "vocab_size": 8, "n_samples": 3000}


def copy_budgets(steps: int) -> dict[str, Budget]:
    """:func:`~dltricks.lab.experiment.budgets` with 120 sequences in smoke."""
    return {**budgets(steps), "smoke": Budget(seeds=1, steps=3, data_kwargs={"n_samples": 120})}


def copy_tagger(lr: float = 3e-3, optimizer: str = "adamw", **model: Any) -> dict[str, Any]:
    """A non-causal transformer_tagger (32 wide, 4 heads) on selective copying at length 16."""
    kwargs = {"vocab_size": 8, "num_classes": 8, "dim": 32, "depth": 2, "num_heads": 4,
              **model}
    opt: dict[str, Any] = {"name": optimizer, "lr": lr}
    if optimizer == "adamw":
        opt["weight_decay"] = 0.0
    return {
        "model": {"name": "transformer_tagger", "kwargs": kwargs},
        "data": {"name": "selective_copying", "batch_size": 32, "eval_batch_size": 600,
                 "kwargs": dict(COPY_DATA)},
        "optimizer": opt,
    }


def _arm(name: str, overrides: Mapping[str, Any], label: str = "",
         warmup: float | None = None) -> Arm:
    """An arm; with ``warmup`` it also gets cosine decay after a linear warmup over that
    fraction of the steps (at least one step, so that the 3-step smoke profile works)."""
    if warmup is None:
        return Arm(name, dict(overrides), label)

    def fn(steps: int) -> dict[str, Any]:
        sched = {"name": "cosine", "warmup_steps": max(1, int(steps * warmup))}
        return {**copy.deepcopy(dict(overrides)), "schedule": sched}

    return Arm(name, fn, label)


def _model(**kwargs: Any) -> dict[str, Any]:
    return {"model": {"kwargs": kwargs}}


# Each step's loss is logged, so that loss_spikes sees single-step spikes.
_STEP_LOG = {"train": {"log_every_steps": 1, "nonfinite": "skip"}}

# --------------------------------------------------------------------------- warmup

register_experiment(Experiment(
    id="tf_warmup",
    tips=("tf-warmup-decay", "vs-tf-stable-training"),
    title="Transformer: warmup + cosine decay vs no warmup at a high learning rate",
    claim="At the same high peak learning rate, a linear warmup followed by cosine decay trains "
          "a Transformer further (a lower loss on held-out sequences of the task) than cosine "
          "decay or a constant rate without warmup, with fewer loss spikes.",
    setup="transformer_tagger (pre-LN, 4 layers, width 32, 4 heads) on selective copying "
          "(length 16, 4 tokens to copy, vocabulary 8), Adam at peak lr 0.03 (ten times the "
          "rate of the other Transformer experiments), batch 32; warmup over the first fifth of "
          "the steps. Every step's loss is logged; a spike is a step whose loss exceeds 1.25x the "
          "median of the 10 steps before it. The test loss (600 fresh sequences) measures how "
          "far training got; the final training loss is one batch's.",
    base={**copy_tagger(lr=3e-2, optimizer="adam", depth=4), **_STEP_LOG},
    arms=(Arm("constant", {"schedule": {"name": "constant"}}, "constant, no warmup"),
          Arm("cosine", {"schedule": {"name": "cosine"}}, "cosine, no warmup"),
          _arm("warmup", {}, "warmup + cosine", warmup=0.2)),
    claims=(Claim("warmup", "cosine", "test_loss", "lower"),
            Claim("warmup", "constant", "test_loss", "lower"),
            Claim("warmup", "cosine", "final_train_loss", "lower", primary=False),
            Claim("warmup", "constant", "final_train_loss", "lower", primary=False),
            Claim("warmup", "cosine", "test_token_accuracy", "higher", primary=False),
            Claim("warmup", "constant", "test_token_accuracy", "higher", primary=False),
            Claim("warmup", "constant", "loss_spikes", "lower", primary=False),
            Claim("warmup", "cosine", "max_loss_rise", "lower", primary=False),
            Claim("warmup", "constant", "max_loss_rise", "lower", primary=False)),
    budgets=copy_budgets(150),
    lr_grid=(1e-2, 3e-2),
    lr_select="val_token_accuracy",
    evaluators=("loss_spikes",),
    plots=("curves", "bars", "bars:loss_spikes"),
    divergence_ok=True,
    notes="The training-suite experiment 'warmup' tests the same tip on an MLP; this one on the "
          "architecture the guide names. A NaN/Inf step would be skipped and counted in "
          "'diverged'. Fair arms: each schedule runs at peak lr 0.01 and 0.03 and keeps the "
          "one with the better validation token accuracy (earlier versions compared all arms "
          "at 0.03 only).",
))

# --------------------------------------------------------------------------- pre-LN vs post-LN

_DEPTHS = (2, 6, 12)


def _ln_arm(depth: int, pre: bool) -> Arm:
    name = f"{'pre' if pre else 'post'}{depth}"
    return Arm(name, _model(depth=depth, norm_first=pre),
               f"{'pre' if pre else 'post'}-LN, {depth} layers")


register_experiment(Experiment(
    id="tf_prenorm",
    tips=("tf-regularization-prenorm", "vs-tf-stable-training"),
    title="Transformer: pre-LN vs post-LN at growing depth, no warmup",
    claim="Without warmup, a pre-LN Transformer (LayerNorm inside the residual branch) trains "
          "further in the same steps (a lower loss on held-out sequences) than a post-LN one "
          "(LayerNorm after the residual sum), and the gap grows with depth.",
    setup="transformer_tagger (width 32, 4 heads) on selective copying (length 16, 4 tokens), "
          "2, 6 and 12 layers, Adam lr 3e-3 constant (no warmup, no clipping), batch 32; arms "
          "differ only in norm_first. Every step's loss is logged for the spike count; the test "
          "loss (600 fresh sequences) measures how far training got.",
    base={**copy_tagger(lr=3e-3, optimizer="adam"), **_STEP_LOG,
          "schedule": {"name": "constant"}},
    arms=tuple(_ln_arm(d, pre) for d in _DEPTHS for pre in (False, True)),
    claims=(Claim("pre12", "post12", "test_loss", "lower"),
            Claim("pre6", "post6", "test_loss", "lower"),
            Claim("pre2", "post2", "test_loss", "lower", primary=False),
            Claim("pre12", "post12", "final_train_loss", "lower", primary=False),
            Claim("pre12", "post12", "test_token_accuracy", "higher", primary=False),
            Claim("pre12", "post12", "max_loss_rise", "lower", primary=False)),
    budgets=copy_budgets(60),
    lr_grid=(1e-3, 3e-3),
    lr_select="val_token_accuracy",
    evaluators=("loss_spikes",),
    plots=("curves", "bars", "bars:max_loss_rise"),
    divergence_ok=True,
    notes="Xiong et al. 2020 show post-LN's gradients near the output are large at "
          "initialisation, so it needs warmup; the 12-layer runs cost most of this experiment. "
          "Fair arms: each arm runs at lr 1e-3 and 3e-3 and keeps the better one on validation "
          "token accuracy.",
))

# --------------------------------------------------------------------------- positions

_POSITIONS = (
    ("none", {"position": "none"}, "none"),
    ("sinusoidal", {"position": "sinusoidal"}, "sinusoidal"),
    ("learned", {"position": "learned", "max_len": COPY_LEN, "pos_init_std": 1.0},
     "learned (std 1)"),
    ("learned_small", {"position": "learned", "max_len": COPY_LEN}, "learned (std 0.02)"),
    ("rope", {"position": "rope"}, "RoPE"),
)

register_experiment(Experiment(
    id="tf_positions",
    tips=("tf-positional-encoding", "vs-tf-fixed"),
    title="Positional encodings on an order-sensitive task, and length extrapolation",
    claim="Sinusoidal, learned and rotary positional encodings each raise token accuracy on "
          "selective copying over no encoding (attention alone sees a bag of tokens). "
          "Secondary: trained at length 16, rotary positions keep more accuracy than sinusoidal "
          "ones at 2x and 4x the length (relative positions extrapolate better).",
    setup="Non-causal transformer_tagger (2 layers, width 32, 4 heads) on selective copying "
          "(length 16, 4 tokens to copy, vocabulary 8), AdamW lr 3e-3, warmup 10% + cosine, "
          "batch 32. Length evaluator: token accuracy on fresh sequences of 16, 32, 64 and 128 "
          "steps (same generator, same 4 tokens to copy, a longer noise body). Learned tables "
          "hold 16 positions: longer inputs are refused and reported as missing.",
    base=copy_tagger(lr=3e-3),
    arms=tuple(_arm(n, _model(**kw), label, warmup=0.1) for n, kw, label in _POSITIONS),
    claims=(Claim("sinusoidal", "none", "test_token_accuracy", "higher"),
            Claim("learned", "none", "test_token_accuracy", "higher"),
            Claim("rope", "none", "test_token_accuracy", "higher"),
            Claim("learned_small", "none", "test_token_accuracy", "higher", primary=False),
            Claim("rope", "sinusoidal", "acc_len32", "higher", primary=False),
            Claim("rope", "sinusoidal", "acc_len64", "higher", primary=False),
            Claim("rope", "none", "acc_len64", "higher", primary=False)),
    budgets=copy_budgets(150),
    evaluators=("length_x8",),
    plots=("curves", "bars", "by:acc_len"),
    notes="Without positions a non-causal Transformer is permutation-equivariant: every marker "
          "gets the same prediction, so its ceiling is the share of the most frequent of the 4 "
          "data tokens (drawn from 6: 0.456 in expectation). Learned positions start at std "
          "0.02 by default (BERT, ViT) while nn.Embedding token vectors start at std 1; "
          "'learned (std 1)' puts them on the tokens' scale (pos_init_std=1.0).",
))

# --------------------------------------------------------------------------- efficient attention

_SIG_TOKENS = 20  # MNIST-1D's 40 steps in patches of 2
_EFF = (
    ("sdpa", {"attention": "sdpa"}, "dense (SDPA)"),
    ("reference", {"attention": "reference"}, "dense, materialised"),
    ("local", {"attention": "local", "attn_kwargs": {"window": 2}}, "local (w=2)"),
    ("longformer", {"attention": "longformer", "attn_kwargs": {"window": 2,
                                                              "global_tokens": 1}},
     "local + 1 global"),
    ("linformer", {"attention": "linformer",
                   "attn_kwargs": {"seq_len": max(SCALING_LENGTHS), "k": 8}},
     "Linformer (k=8)"),
)

register_experiment(Experiment(
    id="tf_efficient_attention",
    tips=("tf-efficient-attention", "vs-tf-mitigations", "tf-sequence-length"),
    title="Efficient attention vs dense: accuracy and cost as the sequence grows",
    claim="Sliding-window, Longformer (window + global) and Linformer attention run a forward "
          "at 2048 tokens faster than dense attention; a fused dense kernel (SDPA) needs less "
          "memory than materialised softmax(QK^T)V. Dense attention is the most accurate.",
    setup="transformer_classifier on MNIST-1D (40 steps in patches of 2: 20 tokens, mean "
          "pooled), 2 layers, width 32, 4 heads, AdamW lr 3e-3, warmup 10% + cosine, batch 32; "
          "arms differ only in attention. After training, the model's forward on one random "
          "signal of 128, 512 and 2048 tokens is timed (fastest of up to 5 forwards, as many as "
          "fit in about 1 s, after a warm-up), alternately with the same network built with "
          "dense SDPA attention (latency_ratio = model time / dense time, steady under load), "
          "and its peak extra CPU-allocator memory is measured.",
    base={"model": {"name": "transformer_classifier",
                    "kwargs": {"in_channels": 1, "dim": 32, "depth": 2, "num_heads": 4,
                               "patch_size": 2, "pool": "mean"}},
          "data": {"name": "mnist1d", "batch_size": 32, "eval_batch_size": 400},
          "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0}},
    arms=tuple(_arm(n, _model(**kw), label, warmup=0.1) for n, kw, label in _EFF),
    claims=(Claim("local", "sdpa", "latency_ratio_len2048", "lower",
                  tips=("tf-efficient-attention", "vs-tf-mitigations")),
            Claim("longformer", "sdpa", "latency_ratio_len2048", "lower",
                  tips=("tf-efficient-attention", "vs-tf-mitigations")),
            Claim("linformer", "sdpa", "latency_ratio_len2048", "lower",
                  tips=("tf-efficient-attention", "vs-tf-mitigations")),
            Claim("sdpa", "reference", "peak_mb_len2048", "lower",
                  tips=("vs-tf-mitigations", "tf-sequence-length")),
            Claim("sdpa", "reference", "latency_ratio_len2048", "lower", primary=False),
            Claim("local", "sdpa", "latency_ms_len2048", "lower", primary=False),
            Claim("local", "sdpa", "peak_mb_len2048", "lower", primary=False),
            Claim("linformer", "sdpa", "peak_mb_len2048", "lower", primary=False),
            Claim("sdpa", "local", "test_accuracy", "higher", primary=False),
            Claim("sdpa", "longformer", "test_accuracy", "higher", primary=False),
            Claim("sdpa", "linformer", "test_accuracy", "higher", primary=False)),
    budgets={**budgets(100), "smoke": Budget(seeds=1, steps=3,
                                               data_kwargs={"num_samples": 400})},
    evaluators=("attention_scaling",),
    plots=("bars", "bars:test_accuracy", "by:latency_ms_len", "by:latency_ratio_len",
           "by:peak_mb_len"),
    notes=f"Trained at {_SIG_TOKENS} tokens; the cost is measured at lengths the model never "
          "trained on (the weights do not change the cost). Linformer's projections are sized "
          f"for {max(SCALING_LENGTHS)} positions, so its parameter count grows with the longest "
          "length it must accept. Axial attention needs a 2-D grid and is not in this 1-D "
          "test. Timings are on this machine's CPU and noisy when it is shared.",
))

# --------------------------------------------------------------------------- dropout

register_experiment(Experiment(
    id="tf_dropout",
    tips=("tf-regularization-prenorm",),
    title="Transformer: dropout in attention and feed-forward layers with little data",
    claim="Dropout 0.1 on the attention probabilities, the attention output and inside the "
          "feed-forward network lowers the test loss and raises the test accuracy of a ViT "
          "trained on about 180 images.",
    setup="vit_tiny (patches of 4, 2 layers, width 32, 4 heads, CLS token) on 10% of digits, "
          "AdamW lr 3e-3, warmup 10% + cosine, batch 32, trained far past fitting the training "
          "set; arms: dropout = attn_dropout = 0, 0.1 or 0.3.",
    base={"model": {"name": "vit_tiny",
                    "kwargs": {"in_channels": 1, "dim": 32, "depth": 2, "num_heads": 4,
                               "patch_size": 4}},
          "data": {"name": "digits", "batch_size": 32, "eval_batch_size": 600,
                   "kwargs": {"fractions": (0.1, 0.2, 0.7)}},
          "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0},
          "train": {"eval_every_epochs": 1000}},
    arms=(_arm("none", _model(dropout=0.0, attn_dropout=0.0), "p=0", warmup=0.1),
          _arm("p0.1", _model(dropout=0.1, attn_dropout=0.1), "p=0.1", warmup=0.1),
          _arm("p0.3", _model(dropout=0.3, attn_dropout=0.3), "p=0.3", warmup=0.1)),
    claims=(Claim("p0.1", "none", "test_loss", "lower"),
            Claim("p0.1", "none", "test_accuracy", "higher"),
            Claim("p0.3", "none", "test_loss", "lower", primary=False),
            Claim("p0.3", "none", "test_accuracy", "higher", primary=False)),
    budgets=budgets(200),
    lr_grid=(1e-3, 3e-3),
    notes="Validation is scored only at the end (eval_every_epochs=1000): with 180 images an "
          "epoch is 5 steps and per-epoch evaluation would cost more than training. Fair arms: "
          "each dropout rate runs at lr 1e-3 and 3e-3 and keeps the better one on validation "
          "accuracy.",
))

# --------------------------------------------------------------------------- hybrid

register_experiment(Experiment(
    id="tf_hybrid",
    tips=("tf-hybrid-cnn", "attention-improves"),
    title="Hybrid CNN + Transformer vs pure ViT vs pure CNN on digits",
    claim="A CNN stem followed by Transformer layers classifies digits more accurately than a "
          "pure ViT and than a pure CNN of similar size.",
    setup="digits (8x8), AdamW lr 3e-3, warmup 10% + cosine, batch 32. ViT: vit_tiny, patches "
          "of 2 (16 tokens + CLS), 2 layers, width 32, MLP ratio 2.25. Hybrid: "
          "hybrid_cnn_transformer, stem 16-32 channels (4x4 map = 16 tokens), 1 Transformer "
          "layer of width 32. CNN: small_cnn 32-64 channels. About 19k parameters each "
          "(measured by the 'cost' evaluator, with MACs and latency).",
    base={"model": {"name": "small_cnn", "kwargs": {}},
          "data": {"name": "digits", "batch_size": 32, "eval_batch_size": 400},
          "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0}},
    arms=(_arm("cnn", {"model": {"name": "small_cnn", "kwargs": {"channels": [32, 64]}}},
               "CNN", warmup=0.1),
          _arm("vit", {"model": {"name": "vit_tiny",
                                 "kwargs": {"dim": 32, "depth": 2, "num_heads": 4,
                                            "patch_size": 2, "mlp_ratio": 2.25}}}, "ViT",
               warmup=0.1),
          _arm("hybrid", {"model": {"name": "hybrid_cnn_transformer",
                                    "kwargs": {"channels": [16, 32], "dim": 32, "depth": 1,
                                               "num_heads": 4}}},
               "CNN stem + Transformer", warmup=0.1)),
    claims=(Claim("hybrid", "vit", "test_accuracy", "higher", tips=("tf-hybrid-cnn",)),
            Claim("hybrid", "cnn", "test_accuracy", "higher",
                  tips=("tf-hybrid-cnn", "attention-improves")),
            Claim("hybrid", "vit", "test_loss", "lower", primary=False),
            Claim("hybrid", "cnn", "test_loss", "lower", primary=False),
            Claim("hybrid", "vit", "mean_train_loss", "lower", primary=False),
            Claim("hybrid", "cnn", "mean_train_loss", "lower", primary=False)),
    budgets=budgets(200),
    evaluators=("cost",),
    plots=("curves", "bars", "bars:params"),
    user_data=None,
))
