"""Experiments on the guide's CNN, receptive-field, pooling, segmentation and skip tips.

Classification runs on scikit-learn's digits (8x8), segmentation on the synthetic lesion data
(``seg2d``, ``seg3d``). References for the claims tested:

* small kernels: Simonyan & Zisserman 2015 (VGG, section 2.3: three 3x3 layers see a 7x7 field
  with 27 C² instead of 49 C² weights and add non-linearities); receptive fields computed as in
  Araujo, Norris & Sim 2019;
* depthwise separable convolutions: Howard et al. 2017 (MobileNets; cost ratio 1/N + 1/k²);
* dilated convolutions for dense prediction: Yu & Koltun 2016; Chen et al. 2017 (DeepLab);
* skip connections in segmentation: Ronneberger et al. 2015 (U-Net); Long et al. 2015 (FCN);
* multi-scale dual pathway: Kamnitsas et al. 2017 (DeepMedic);
* spatial pyramid pooling: He et al. 2014/2015 (SPP-net);
* residual learning and the degradation problem: He et al. 2016;
* boundary F1 (BF score): Csurka, Larlus & Perronnin 2013, "What is a good evaluation measure
  for semantic segmentation?" (BMVC).

The module also registers the evaluators these experiments need (``rf``, ``boundary_f1``,
``dice_by_size``, ``acc_by_size``, ``separable_cost``); their computations are plain functions
here so that tests can check them on hand-made inputs.

Axis letters: N samples, B batch, C channels, *spatial the 1-3 spatial axes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.lab.evaluators import register_evaluator
from dltricks.lab.experiment import Arm, Claim, Experiment, deep_merge, register_experiment
from dltricks.lab.experiments.training import budgets

if TYPE_CHECKING:
    from dltricks.train.trainer import Trainer

# --------------------------------------------------------------------------- measurements


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 64) -> Tensor:
    """Logits of ``model`` on ``x`` in eval mode (the model's mode is restored)."""
    was = model.training
    model.eval()
    try:
        return torch.cat([model(xb).float() for xb in x.split(batch_size)])
    finally:
        model.train(was)


def mask_boundary(mask: Tensor) -> Tensor:
    """Inner boundary of binary masks: foreground pixels with a background face-neighbour
    (4-neighbourhood in 2-D, 6 in 3-D). Outside the image counts as neither, so the image border
    is no boundary.

    Args:
        mask: (N, *spatial) bool or {0, 1}.

    Returns:
        (N, *spatial) bool.
    """
    m = mask.bool()
    bg = ~m
    touches = torch.zeros_like(m)
    for ax in range(1, m.dim()):
        n = m.shape[ax]
        if n < 2:
            continue
        touches.narrow(ax, 0, n - 1).logical_or_(bg.narrow(ax, 1, n - 1))
        touches.narrow(ax, 1, n - 1).logical_or_(bg.narrow(ax, 0, n - 1))
    return m & touches


def dilate(mask: Tensor, radius: float) -> Tensor:
    """Pixels within Euclidean distance ``radius`` of a pixel of ``mask`` (N, *spatial)."""
    m = mask.bool()
    r = math.floor(radius)
    if r < 1:
        return m
    dims = m.dim() - 1
    grid = torch.stack(torch.meshgrid(*[torch.arange(-r, r + 1)] * dims, indexing="ij"))
    ball = ((grid.float() ** 2).sum(0) <= radius**2 + 1e-9).float()  # (2r+1,) * dims
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    out = conv(m.float().unsqueeze(1), ball[None, None], padding=r)
    return out.squeeze(1) > 0.5


def boundary_f1(pred: Tensor, target: Tensor, tolerance: float = 1.0) -> Tensor:
    """Per-image boundary F1 score (BF score, Csurka et al. 2013) of binary masks.

    A predicted boundary pixel is correct when a true boundary pixel lies within Euclidean
    distance ``tolerance`` (precision), a true boundary pixel is found when a predicted one does
    (recall); BF = 2PR / (P + R). An image where neither mask has a boundary scores 1, one where
    exactly one has a boundary scores 0.

    Args:
        pred: (N, *spatial) predicted foreground.
        target: (N, *spatial) true foreground.
        tolerance: distance in pixels.

    Returns:
        (N,) float64.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}.")
    pb, tb = mask_boundary(pred), mask_boundary(target)
    n_p = pb.flatten(1).sum(1).double()
    n_t = tb.flatten(1).sum(1).double()
    hit_p = (pb & dilate(tb, tolerance)).flatten(1).sum(1).double()
    hit_t = (tb & dilate(pb, tolerance)).flatten(1).sum(1).double()
    precision = hit_p / n_p.clamp_min(1)
    recall = hit_t / n_t.clamp_min(1)
    f1 = torch.where(precision + recall > 0,
                     2 * precision * recall / (precision + recall).clamp_min(1e-12),
                     torch.zeros_like(precision))
    f1 = torch.where((n_p == 0) & (n_t == 0), torch.ones_like(f1), f1)
    return torch.where((n_p == 0) ^ (n_t == 0), torch.zeros_like(f1), f1)


def lesion_dice(pred: Tensor, target: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Dice of every true lesion (connected component of the target, face connectivity).

    A lesion L is scored against the predicted components that touch it, P_L:
    Dice = 2 |L ∩ P_L| / (|L| + |P_L|); a missed lesion scores 0. Unlike the BraTS 2023
    lesion-wise Dice, which also scores every false-positive component as 0 and dilates the true
    lesions before matching, predicted components touching no lesion are not scored here: they
    have no true lesion size to be binned by (the overall Dice counts them).

    Args:
        pred: (N, *spatial) predicted foreground.
        target: (N, *spatial) true foreground.

    Returns:
        (sizes, dice): per lesion, its size in pixels and its Dice, over all images.
    """
    from scipy import ndimage

    sizes: list[int] = []
    dices: list[float] = []
    for p, t in zip(pred.bool().cpu().numpy(), target.bool().cpu().numpy(), strict=True):
        t_lab, n_t = ndimage.label(t)
        if n_t == 0:
            continue
        p_lab, _ = ndimage.label(p)
        for k in range(1, n_t + 1):
            lesion = t_lab == k
            touching = np.unique(p_lab[lesion])
            touching = touching[touching > 0]
            matched = np.isin(p_lab, touching) if touching.size else np.zeros_like(lesion)
            inter = np.logical_and(lesion, matched).sum()
            size = int(lesion.sum())
            sizes.append(size)
            dices.append(2.0 * inter / (size + matched.sum()))
    return np.asarray(sizes, dtype=np.int64), np.asarray(dices, dtype=np.float64)


def dice_by_size(pred: Tensor, target: Tensor, n_bins: int = 3,
                 edges: Sequence[float] | None = None) -> dict[str, Any]:
    """Mean lesion-wise Dice (:func:`lesion_dice`) per lesion-size bin.

    Args:
        pred: (N, *spatial) predicted foreground.
        target: (N, *spatial) true foreground.
        n_bins: number of bins when ``edges`` is None: the size quantiles of the true lesions
            (tertiles for 3), so the bins hold about equal numbers of lesions.
        edges: inner bin edges in pixels; a lesion of size s is in the first bin whose upper
            edge is >= s.

    Returns:
        ``dice_size1`` .. ``dice_size{n}`` (None for an empty bin), and lists ``size_edges``
        and ``lesions_per_bin``.
    """
    sizes, dices = lesion_dice(pred, target)
    if edges is None:
        qs = np.linspace(0, 1, n_bins + 1)[1:-1]
        edges = [float(v) for v in np.quantile(sizes, qs)] if sizes.size else [math.nan] * len(qs)
    edges = list(edges)
    bins = np.searchsorted(np.asarray(edges), sizes, side="left")  # 0 .. len(edges)
    out: dict[str, Any] = {}
    counts = []
    for b in range(len(edges) + 1):
        sel = dices[bins == b]
        counts.append(int(sel.size))
        out[f"dice_size{b + 1}"] = float(sel.mean()) if sel.size else None
    out["size_edges"] = edges
    out["lesions_per_bin"] = counts
    return out


def resize(x: Tensor, size: int) -> Tensor:
    """Resizes (N, C, *spatial) to ``size`` on every spatial axis ((bi/tri)linear,
    anti-aliased when shrinking 2-D images)."""
    dims = x.dim() - 2
    if all(s == size for s in x.shape[2:]):
        return x
    mode = ("linear", "bilinear", "trilinear")[dims - 1]
    shrink = any(s > size for s in x.shape[2:])
    return F.interpolate(x, size=(size,) * dims, mode=mode, align_corners=False,
                         antialias=shrink and dims == 2)


def accuracy_by_size(model: nn.Module, x: Tensor, y: Tensor, sizes: Sequence[int],
                     fixed_size: int | None = None) -> dict[str, float]:
    """Test accuracy with the images resized to each size in ``sizes``.

    A network that takes any size sees the resized image as it is; one built for a single size
    (``fixed_size``, e.g. a flattening head) gets it resized back to that size, the only way it
    can classify it.

    Returns:
        ``acc_size<S>`` for each S.
    """
    out = {}
    for s in sizes:
        xs = resize(x, s)
        if fixed_size is not None:
            xs = resize(xs, fixed_size)
        out[f"acc_size{s}"] = (predict(model, xs).argmax(1) == y).double().mean().item()
    return out


def separable_cost(model: nn.Module, x: Tensor) -> dict[str, float | None]:
    """Measured cost of a network's depthwise separable convs against full convolutions.

    For every ``DepthwiseSeparableConv`` in ``model`` (hooked during a forward of ``x``), the
    MACs of depthwise + pointwise conv (``FlopCounterMode``) and their weights are compared with
    those of one full ``nn.ConvNd`` of the same input, output channels, kernel, stride, padding
    and dilation, run on the same input. The formula of Howard et al. 2017, 1/N + 1/k^d
    (N output channels, k^d kernel positions), is averaged with the full convs' MACs as weights.

    Returns:
        ``sep_macs_ratio``, ``sep_params_ratio``, ``sep_formula`` (None without such convs).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from dltricks.nn.conv_blocks import DepthwiseSeparableConv

    inputs: dict[nn.Module, Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args: inputs.setdefault(mod, args[0]))
             for m in model.modules() if isinstance(m, DepthwiseSeparableConv)]
    try:
        predict(model, x[:1])
    finally:
        for h in hooks:
            h.remove()
    if not inputs:
        return {"sep_macs_ratio": None, "sep_params_ratio": None, "sep_formula": None}

    def macs(fn, arg: Tensor) -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn(arg)
        return counter.get_total_flops() // 2

    sep_macs = full_macs = sep_w = full_w = 0
    formula = 0.0
    for mod, inp in inputs.items():
        dw, pw = mod.depthwise.conv, mod.pointwise.conv
        full = type(dw)(dw.in_channels, pw.out_channels, dw.kernel_size, stride=dw.stride,
                        padding=dw.padding, dilation=dw.dilation, bias=False)
        m_sep = macs(lambda t, dw=dw, pw=pw: pw(dw(t)), inp)
        m_full = macs(full, inp)
        sep_macs, full_macs = sep_macs + m_sep, full_macs + m_full
        sep_w += dw.weight.numel() + pw.weight.numel()
        full_w += full.weight.numel()
        formula += m_full * (1 / pw.out_channels + 1 / math.prod(dw.kernel_size))
    return {"sep_macs_ratio": sep_macs / full_macs, "sep_params_ratio": sep_w / full_w,
            "sep_formula": formula / full_macs}


# --------------------------------------------------------------------------- evaluators


def _test_masks(trainer: Trainer) -> tuple[Tensor, Tensor]:
    test = trainer.data.test
    pred = predict(trainer.model, test.x.to(trainer.device)).argmax(1).cpu()
    return pred > 0, test.y > 0


@register_evaluator("rf")
def rf_evaluator(trainer: Trainer) -> dict[str, float]:
    """``rf``: the receptive field (first spatial axis) of the trained model on one test input
    shape, by :func:`dltricks.analysis.receptive_field` (the local field before any global
    pooling)."""
    from dltricks.analysis.receptive_field import receptive_field

    model = copy.deepcopy(trainer.model).cpu().eval()
    rf = receptive_field(model, (1, *trainer.data.input_shape))
    return {"rf": float(rf.size[0])}


@register_evaluator("boundary_f1")
def boundary_f1_evaluator(trainer: Trainer) -> dict[str, float]:
    """``boundary_f1``: mean per-image BF score of the foreground on the test split, tolerance
    1 pixel (Csurka et al. 2013)."""
    pred, target = _test_masks(trainer)
    return {"boundary_f1": boundary_f1(pred, target, 1.0).mean().item()}


@register_evaluator("dice_by_size")
def dice_by_size_evaluator(trainer: Trainer) -> dict[str, Any]:
    """``dice_size1..3``: mean lesion-wise Dice of the test lesions in the small, medium and
    large thirds of lesion sizes (bin edges and counts go to the probes)."""
    pred, target = _test_masks(trainer)
    return dice_by_size(pred, target, n_bins=3)


#: image sizes of ``acc_by_size`` as multiples of the training size (8 → 6, 8, 12, 16 on digits)
SIZE_SCALES = (0.75, 1.0, 1.5, 2.0)


@register_evaluator("acc_by_size")
def acc_by_size_evaluator(trainer: Trainer) -> dict[str, float]:
    """``acc_size<S>``: test accuracy with the test images resized to S = 0.75, 1, 1.5 and 2
    times the training size; fixed-size networks get them resized back (see
    :func:`accuracy_by_size`)."""
    test = trainer.data.test
    base = test.x.shape[-1]
    sizes = sorted({max(2, round(base * s)) for s in SIZE_SCALES})
    model = trainer.model
    return accuracy_by_size(model, test.x.to(trainer.device), test.y.to(trainer.device), sizes,
                            getattr(model, "fixed_input_size", None))


@register_evaluator("separable_cost")
def separable_cost_evaluator(trainer: Trainer) -> dict[str, float | None]:
    """``sep_macs_ratio``, ``sep_params_ratio``, ``sep_formula``: see :func:`separable_cost`."""
    model = copy.deepcopy(trainer.model).cpu()
    return separable_cost(model, trainer.data.test.x[:1])


# --------------------------------------------------------------------------- shared recipes


# Every run decays its learning rate to 0 with a cosine schedule: the metrics are taken after
# the last step, and a decayed learning rate makes that last iterate (and its batch-norm
# statistics) far less noisy from seed to seed than a constant one.
_COSINE = {"name": "cosine"}


def _digits(model: dict[str, Any], lr: float = 0.05) -> dict[str, Any]:
    return {"model": model, "data": {"name": "digits", "batch_size": 64},
            "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.9}, "schedule": _COSINE}


def _seg(model: dict[str, Any], data: str = "seg2d", batch_size: int = 16, lr: float = 1e-2,
         **data_kwargs: Any) -> dict[str, Any]:
    return {"model": model, "data": {"name": data, "batch_size": batch_size,
                                     "kwargs": dict(data_kwargs)},
            "optimizer": {"name": "adam", "lr": lr}, "schedule": _COSINE}


def _kw(**kwargs: Any) -> dict[str, Any]:
    return {"model": {"kwargs": kwargs}}


# --------------------------------------------------------------------------- small kernels

register_experiment(Experiment(
    id="small_kernels",
    tips=("cnn-stacked-3x3", "rf-two-3x3", "rf-three-3x3", "small-kernels-advantages",
          "small-kernels-more-nonlinearity", "cnn-large-kernels-costly", "kernel-rf-growth"),
    title="Stacked 3x3 convolutions vs one 5x5 / 7x7",
    claim="Two (three) stacked 3x3 convolutions see the same receptive field as one 5x5 (7x7) with "
          "fewer parameters and MACs, and their extra non-linearities give a higher test accuracy.",
    setup="small_cnn on digits: a 1x1 stem (1 → 32 channels, no spatial extent), then the compared "
          "32 → 32 block, global average pooling and a linear head; SGD momentum 0.9, lr 0.05 "
          "cosine-decayed, batch 64. Arms: 2 x 3x3 vs 1 x 5x5 (field 5), 3 x 3x3 vs 1 x 7x7 (field "
          "7). The receptive field is measured on the trained model (evaluator rf).",
    base=_digits({"name": "small_cnn", "kwargs": {"stem": 1, "channels": [32], "norm": "batch"}}),
    arms=(Arm("3x3x2", _kw(kernel_size=3, blocks_per_stage=2), "2 x 3x3"),
          Arm("5x5", _kw(kernel_size=5, blocks_per_stage=1), "1 x 5x5"),
          Arm("3x3x3", _kw(kernel_size=3, blocks_per_stage=3), "3 x 3x3"),
          Arm("7x7", _kw(kernel_size=7, blocks_per_stage=1), "1 x 7x7")),
    claims=(Claim("3x3x2", "5x5", "params", "lower"),
            Claim("3x3x3", "7x7", "params", "lower"),
            Claim("3x3x2", "5x5", "test_accuracy", "higher"),
            Claim("3x3x3", "7x7", "test_accuracy", "higher"),
            Claim("3x3x2", "5x5", "macs", "lower", primary=False),
            Claim("3x3x3", "7x7", "macs", "lower", primary=False),
            Claim("3x3x3", "7x7", "latency_ms", "lower", primary=False)),
    budgets=budgets(100),
    evaluators=("cost", "rf"),
    plots=("curves", "bars:test_accuracy", "bars:params", "bars:rf"),
    notes="The receptive fields are equal by construction (5 and 5, 7 and 7; the evaluator reports "
          "them per arm). The input is 8x8, so a 7x7 field covers nearly the whole digit. The "
          "parameter counts include the stem, batch norms and head, which all arms share.",
))

# --------------------------------------------------------------------------- depthwise separable

register_experiment(Experiment(
    id="depthwise_separable",
    tips=("dwsep-cheaper", "dwsep-low-resource"),
    title="Depthwise separable vs standard convolutions",
    claim="Replacing the 3x3 convolutions by depthwise separable ones (depthwise 3x3 + pointwise "
          "1x1) cuts parameters and MACs by about 1/N + 1/9 and lowers CPU latency.",
    setup="small_cnn on digits, stages of 32 and 64 channels with two 3x3 blocks each (max pool "
          "between), SGD momentum 0.9, lr 0.05 cosine-decayed; separable=True makes every block "
          "but the first (a 1-channel input) depthwise separable, as in MobileNet v1. Evaluators: "
          "cost (params, MACs, latency of a 32-image batch) and separable_cost (the separable "
          "layers' measured MACs and weights against full convs of the same shapes, and the "
          "formula 1/N + 1/k²).",
    base=_digits({"name": "small_cnn", "kwargs": {"channels": [32, 64],
                                                  "blocks_per_stage": 2}}),
    arms=(Arm("standard", _kw(separable=False), "standard 3x3"),
          Arm("separable", _kw(separable=True), "depthwise separable")),
    claims=(Claim("separable", "standard", "macs", "lower"),
            Claim("separable", "standard", "params", "lower"),
            Claim("separable", "standard", "latency_ms", "lower"),
            Claim("separable", "standard", "test_accuracy", "lower", primary=False)),
    budgets=budgets(150),
    evaluators=("cost", "separable_cost"),
    plots=("curves", "bars:macs", "bars:latency_ms", "bars:test_accuracy"),
    user_data="image",
    notes="The secondary accuracy claim is the trade-off MobileNets report (about 1% lower "
          "ImageNet accuracy for MobileNet than for a full-convolution version), not a claim of "
          "the guide. Latency is one CPU batch on a shared machine; depthwise convolutions have a "
          "low arithmetic intensity and are often no faster than their MAC count suggests.",
))

# --------------------------------------------------------------------------- dilation vs pooling

_FCN3 = {"name": "seg_fcn", "kwargs": {"channels": [8, 16, 16], "skip": False}}

register_experiment(Experiment(
    id="dilated_segmentation",
    tips=("atrous-rf-resolution", "pooling-invariance-segmentation", "invariance-not-always",
          "stride-pool-cost"),
    title="Dilated convolutions vs pooling / striding for segmentation",
    claim="For lesion segmentation, growing the receptive field with dilated convolutions at full "
          "resolution gives a higher Dice and a higher boundary F1 than growing it by max pooling "
          "or strided convolutions, at the price of more MACs.",
    setup="seg_fcn without skip connections (channels 8-16-16, three levels) on seg2d (24x24, 600 "
          "images), Dice + cross-entropy, Adam lr 1e-2 cosine-decayed, batch 16. Arms: 2x max "
          "pooling between levels, stride-2 convs, or no downsampling with dilations 1, 2, 4 "
          "(receptive fields 38, 29 and 33 pixels). Boundary F1: mean per-image BF score, 1-pixel "
          "tolerance.",
    base=_seg(_FCN3, image_size=24),
    arms=(Arm("maxpool", _kw(downsample="maxpool"), "max pooling"),
          Arm("stride", _kw(downsample="stride"), "strided conv"),
          Arm("dilation", _kw(downsample="dilation"), "dilated convs")),
    claims=(Claim("dilation", "maxpool", "test_dice", "higher"),
            Claim("dilation", "maxpool", "boundary_f1", "higher"),
            Claim("dilation", "stride", "test_dice", "higher"),
            Claim("dilation", "stride", "boundary_f1", "higher"),
            Claim("maxpool", "dilation", "macs", "lower", primary=False)),
    budgets=budgets(100),
    evaluators=("cost", "boundary_f1"),
    plots=("curves", "bars:test_dice", "bars:boundary_f1", "bars:macs"),
    notes="No skip connections in any arm: the decoder must recover the detail the encoder kept. "
          "The secondary MAC claim is the guide's 'downsampling shrinks feature maps and so the "
          "compute of later layers'.",
))

# --------------------------------------------------------------------------- U-Net skips

register_experiment(Experiment(
    id="unet_skips",
    tips=("skip-preserve-detail", "downsample-skip-segmentation"),
    title="U-Net with vs without skip connections",
    claim="Skip connections from the encoder restore the detail lost by pooling: a U-Net with "
          "skips reaches a higher Dice and a higher boundary F1 than the same network without.",
    setup="unet (channels 8-16-32-64, three 2x poolings: 24 → 3 pixels) on seg2d (24x24), Dice + "
          "cross-entropy, Adam lr 1e-2 cosine-decayed, batch 16; skip=True vs skip=False (the "
          "decoder then sees only the upsampled bottleneck features).",
    base=_seg({"name": "unet", "kwargs": {"channels": [8, 16, 32, 64]}}, image_size=24),
    arms=(Arm("no_skip", _kw(skip=False), "no skips"), Arm("skip", _kw(skip=True), "skips")),
    claims=(Claim("skip", "no_skip", "test_dice", "higher"),
            Claim("skip", "no_skip", "boundary_f1", "higher")),
    budgets=budgets(100),
    evaluators=("boundary_f1",),
    plots=("curves", "bars:test_dice", "bars:boundary_f1"),
))

# --------------------------------------------------------------------------- dual pathway

register_experiment(Experiment(
    id="dual_pathway",
    tips=("multiscale-two-views", "multiscale-parallel-paths", "multiscale-local-global",
          "multiscale-reference"),
    title="DeepMedic-style dual pathway vs a single pathway",
    claim="Adding a low-resolution pathway (input average-pooled 3x, context) to a full-resolution "
          "one (detail) raises the Dice, above all on large lesions.",
    setup="deepmedic 2-D on seg2d (24x24 images, lesion semi-axes 1.5-8 pixels): four 3x3 convs "
          "(12-12-16-16 channels) per pathway, one 1x1 layer of 24, PReLU, batch norm; Dice + "
          "cross-entropy, Adam lr 1e-2 cosine-decayed, batch 16. Arms: both pathways (receptive "
          "field 27) vs the normal pathway alone (field 9). Dice by lesion size: lesion-wise Dice "
          "(each true connected component against the predicted components touching it) averaged "
          "in the small, medium and large thirds of the test lesions' sizes.",
    base=_seg({"name": "deepmedic", "kwargs": {"channels": [12, 12, 16, 16],
                                               "fc_channels": [24]}},
              image_size=24, radius_range=(1.5, 8.0)),
    arms=(Arm("single", _kw(low_pathway=False), "single pathway"),
          Arm("dual", _kw(low_pathway=True), "dual pathway")),
    claims=(Claim("dual", "single", "test_dice", "higher"),
            Claim("dual", "single", "dice_size3", "higher"),
            Claim("dual", "single", "dice_size1", "higher", primary=False),
            Claim("dual", "single", "dice_size2", "higher", primary=False)),
    budgets=budgets(100),
    evaluators=("cost", "dice_by_size"),
    plots=("curves", "bars:test_dice", "by:dice_size"),
    notes="The dual network has about twice the weights of the single one (a second pathway of the "
          "same widths) but few more MACs (the second pathway runs on a 9x smaller map; the cost "
          "evaluator reports both); the single pathway is DeepMedic's single-scale ablation, not a "
          "capacity-matched baseline. Unlike DeepMedic, both pathways take the same image with "
          "'same' padding (see dltricks.nn.multiscale).",
))

# --------------------------------------------------------------------------- SPP

register_experiment(Experiment(
    id="spp",
    tips=("spp-multiscale",),
    title="Spatial pyramid pooling and input size",
    claim="A network with spatial pyramid pooling classifies inputs of sizes it was not trained on "
          "better than a fixed-size network that must resize them, and its pyramid (1x1, 2x2, 4x4 "
          "bins) beats a single global average.",
    setup="small_cnn on digits (channels 16-32, one max pool), trained on 8x8 images only, SGD "
          "momentum 0.9, lr 0.05 cosine-decayed. Arms differ in the head: 'fixed' flattens the 4x4 "
          "map into the linear layer (input size 8 only), 'avg' global average pooling, 'spp' "
          "spatial pyramid max pooling (1, 2, 4). Evaluator acc_by_size: the test images resized "
          "(bilinear, anti-aliased when shrinking) to 6, 8, 12 and 16 pixels; 'avg' and 'spp' "
          "classify them at that size, 'fixed' gets them resized back to 8x8.",
    base=_digits({"name": "small_cnn", "kwargs": {"channels": [16, 32], "input_size": 8}}),
    arms=(Arm("fixed", _kw(pool="flatten"), "flatten (8x8 only)"),
          Arm("avg", _kw(pool="avg"), "global average"),
          Arm("spp", _kw(pool="spp"), "SPP 1-2-4")),
    claims=(Claim("spp", "fixed", "acc_size6", "higher"),
            Claim("spp", "fixed", "acc_size12", "higher"),
            Claim("spp", "fixed", "acc_size16", "higher"),
            Claim("spp", "avg", "test_accuracy", "higher", primary=False)),
    budgets=budgets(150),
    evaluators=("acc_by_size",),
    plots=("curves", "by:acc_size", "bars:test_accuracy"),
    notes="All arms are trained at one size. He et al. train SPP-net at several sizes (multi-size "
          "training) to make it robust to scale; this experiment tests only what the layer itself "
          "gives: a fixed-length vector for any input size. Resizing a test image changes the "
          "digit's scale in pixels, which the convolutions were not trained on, while resizing it "
          "back to 8x8 undoes most of the change.",
))

# --------------------------------------------------------------------------- residual depth

_DEPTHS = (2, 8)


def _depth_arm(residual: bool, blocks: int) -> Arm:
    kind = "res" if residual else "plain"
    return Arm(f"{kind}_{2 * blocks}", _kw(residual=residual, blocks_per_stage=blocks),
               f"{kind} {2 * blocks} convs")


register_experiment(Experiment(
    id="residual_depth",
    tips=("residual-gradient-flow", "skip-deeper-no-degradation"),
    title="Residual vs plain CNNs at increasing depth",
    claim="A deep plain CNN trains worse than a shallower one (the degradation problem); with "
          "residual connections the deep network trains to a lower loss and a higher test accuracy "
          "than the plain one, and gradients reach its first layers.",
    setup="small_cnn on digits, two stages of 16 channels (max pool between), 2 or 8 conv blocks "
          "per stage (4 or 16 conv layers), batch norm, Adam lr 3e-3 cosine-decayed, batch 32; "
          "residual=True wraps every block as x + F(x) (1x1 projection where the width changes). "
          "Per-layer gradient norms recorded at every step.",
    base=deep_merge(_digits({"name": "small_cnn", "kwargs": {"channels": [16, 16]}}),
                    {"data": {"batch_size": 32}, "optimizer": {"name": "adam", "lr": 3e-3,
                                                               "momentum": 0.0}}),
    arms=tuple(_depth_arm(r, b) for b in _DEPTHS for r in (False, True)),
    claims=(Claim("res_16", "plain_16", "final_train_loss", "lower"),
            Claim("res_16", "plain_16", "test_accuracy", "higher"),
            Claim("plain_16", "plain_4", "final_train_loss", "higher", primary=False),
            Claim("res_16", "res_4", "final_train_loss", "lower", primary=False),
            Claim("res_16", "plain_16", "grad_first_last_log10", "higher", primary=False)),
    budgets=budgets(100),
    probes=("grad_by_depth",),
    plots=("curves", "bars:final_train_loss", "bars:test_accuracy", "grad_by_depth"),
    user_data="image",
    notes="He et al. 2016 observed degradation at 20 vs 56 layers on CIFAR-10 with batch norm; "
          "this is a small, short-run version on 8x8 digits. final_train_loss is the mean training "
          "loss of the last logging window. Adam rather than SGD: small_cnn's residual block adds "
          "a ReLU output to its input with no normalisation after the sum, so the activations grow "
          "with every block; in a trial with SGD (momentum 0.9, constant lr 0.05) the 16-block "
          "residual network started with a very high loss, and that trial was not kept.",
))

# --------------------------------------------------------------------------- 3-D kernels

register_experiment(Experiment(
    id="kernels_3d",
    tips=("small-kernels-fewer-params", "cnn-large-kernels-costly"),
    title="3x3x3 vs 5x5x5 kernels in a 3-D segmenter",
    claim="In 3-D, 3x3x3 kernels cost far fewer parameters and MACs than 5x5x5 ones (27 vs 125 "
          "weights per channel pair) and segment as well or better.",
    setup="seg_fcn 3-D (channels 4-8, one pooling, skip) on seg3d (12^3 volumes, 120 volumes, "
          "lesion semi-axes 1.5-3.5 voxels), Dice + cross-entropy, Adam lr 1e-2 cosine-decayed, "
          "batch 4; kernel_size 3 vs 5 in every conv.",
    base=_seg({"name": "seg_fcn", "kwargs": {"channels": [4, 8]}}, data="seg3d", batch_size=4,
              image_size=12, radius_range=(1.5, 3.5)),
    arms=(Arm("k3", _kw(kernel_size=3), "3x3x3"), Arm("k5", _kw(kernel_size=5), "5x5x5")),
    claims=(Claim("k3", "k5", "params", "lower"),
            Claim("k3", "k5", "macs", "lower"),
            Claim("k3", "k5", "test_dice", "higher", primary=False),
            Claim("k3", "k5", "latency_ms", "lower", primary=False)),
    budgets=budgets(150),
    evaluators=("cost",),
    plots=("curves", "bars:params", "bars:macs", "bars:test_dice"),
    notes="Same depth, so the 5x5x5 network also has the larger receptive field; the Dice "
          "comparison is secondary and says whether the extra cost buys anything here.",
))
