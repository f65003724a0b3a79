"""CNN experiments: their evaluators on hand-checkable inputs, the analyses, the experiments'
definitions and deterministic claims."""

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import dltricks.lab.analyses  # noqa: F401  (registers the analyses)
from dltricks.lab.analyses import NAMES, run_analyses
from dltricks.lab.catalog import ANALYSES, catalog_status, tip_ids
from dltricks.lab.evaluators import EVALUATORS
from dltricks.lab.experiment import Budget, get_experiment
from dltricks.lab.experiments.cnn import (
    accuracy_by_size,
    boundary_f1,
    dice_by_size,
    dilate,
    lesion_dice,
    mask_boundary,
    separable_cost,
)
from dltricks.lab.runner import run_experiment
from dltricks.models import create_model

CNN_EXPERIMENTS = ("small_kernels", "depthwise_separable", "dilated_segmentation", "unet_skips",
                   "dual_pathway", "spp", "residual_depth", "kernels_3d")


def square(size: int, top: int, left: int, side: int, n: int = 1) -> torch.Tensor:
    m = torch.zeros(n, size, size, dtype=torch.bool)
    m[:, top:top + side, left:left + side] = True
    return m


# --------------------------------------------------------------------------- boundary F1


def test_mask_boundary_is_the_inner_ring_and_ignores_the_image_border():
    b = mask_boundary(square(10, 2, 2, 4))
    assert b.sum() == 12 and not b[0, 3:5, 3:5].any()  # 4x4 square: 16 - 2x2 interior
    full = torch.ones(1, 5, 5, dtype=torch.bool)
    assert mask_boundary(full).sum() == 0  # touching the border only: no object boundary
    cube = torch.zeros(1, 5, 5, 5, dtype=torch.bool)
    cube[0, 1:4, 1:4, 1:4] = True
    assert mask_boundary(cube).sum() == 27 - 1


def test_dilate_by_one_pixel_is_the_cross():
    m = torch.zeros(1, 5, 5, dtype=torch.bool)
    m[0, 2, 2] = True
    d = dilate(m, 1.0)
    assert d.sum() == 5 and d[0, 1, 2] and d[0, 2, 3] and not d[0, 1, 1]
    assert dilate(m, 1.5).sum() == 9  # the diagonals are at sqrt(2)


def test_boundary_f1_perfect_empty_and_shifted():
    gt = square(12, 2, 2, 4)
    assert boundary_f1(gt, gt).item() == 1.0
    assert boundary_f1(torch.zeros_like(gt), gt).item() == 0.0
    empty = torch.zeros_like(gt)
    assert boundary_f1(empty, empty).item() == 1.0  # nothing to find, nothing found
    # shifted one pixel: every boundary pixel has a counterpart at distance 1
    assert boundary_f1(square(12, 2, 3, 4), gt, tolerance=1).item() == pytest.approx(1.0)
    # shifted two pixels: 8 of the 12 ring pixels on each side are within 1 pixel
    assert boundary_f1(square(12, 2, 4, 4), gt, tolerance=1).item() == pytest.approx(2 / 3)
    # tolerance 0: only exact matches; the 1-pixel shift keeps the top/bottom rows' overlap
    assert boundary_f1(square(12, 2, 3, 4), gt, tolerance=0).item() == pytest.approx(6 / 12)
    per_image = boundary_f1(torch.cat([gt, empty]), torch.cat([gt, gt]))
    assert per_image.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="same shape"):
        boundary_f1(gt, gt[:, :5])


# --------------------------------------------------------------------------- Dice by size


def _three_lesions():
    gt = torch.zeros(1, 20, 20, dtype=torch.bool)
    gt[0, 1:3, 1:3] = True      # 4 pixels
    gt[0, 1:4, 10:13] = True    # 9 pixels
    gt[0, 10:15, 10:15] = True  # 25 pixels
    pred = torch.zeros_like(gt)
    pred[0, 1:4, 10:12] = True    # 6 of the 9: Dice 2*6 / (9 + 6) = 0.8
    pred[0, 10:15, 10:15] = True  # the large one exactly
    pred[0, 18:20, 0:2] = True    # a false positive touching no lesion: not scored
    return pred, gt


def test_lesion_dice_per_connected_component():
    sizes, dice = lesion_dice(*_three_lesions())
    order = np.argsort(sizes)
    assert sizes[order].tolist() == [4, 9, 25]
    assert dice[order] == pytest.approx([0.0, 0.8, 1.0])


def test_dice_by_size_bins_by_tertiles_or_given_edges():
    pred, gt = _three_lesions()
    out = dice_by_size(pred, gt)
    assert (out["dice_size1"], out["dice_size2"], out["dice_size3"]) == pytest.approx(
        (0.0, 0.8, 1.0))
    assert out["lesions_per_bin"] == [1, 1, 1]
    assert out["size_edges"] == pytest.approx([4 + 5 * 2 / 3, 9 + 16 / 3])  # numpy's quantiles
    two = dice_by_size(pred, gt, edges=[10])
    assert two["dice_size1"] == pytest.approx(0.4) and two["dice_size2"] == 1.0
    assert dice_by_size(pred, gt, edges=[1, 2, 3])["dice_size2"] is None  # empty bin


def test_segmentation_evaluators_on_an_oracle_model():
    class Oracle(nn.Module):  # logits from the input itself, which is the mask
        def forward(self, x):
            return torch.cat([-x, x], dim=1) * 10

    _, gt = _three_lesions()
    trainer = SimpleNamespace(model=Oracle(), device=torch.device("cpu"), data=SimpleNamespace(
        test=SimpleNamespace(x=gt.float().unsqueeze(1), y=gt.long())))
    assert EVALUATORS.get("boundary_f1")(trainer) == {"boundary_f1": 1.0}
    out = EVALUATORS.get("dice_by_size")(trainer)
    assert [out[f"dice_size{i}"] for i in (1, 2, 3)] == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------- accuracy by size


class SizeReader(nn.Module):
    """Predicts class (input size mod 10): shows which size the model was given."""

    def forward(self, x):
        return nn.functional.one_hot(torch.full((x.shape[0],), x.shape[-1] % 10), 10).float()


def test_accuracy_by_size_resizes_and_fixed_size_models_get_their_size_back():
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([6, 8, 2, 6, 8, 8])  # 12 % 10 == 2
    free = accuracy_by_size(SizeReader(), x, y, [6, 8, 12])
    assert free == pytest.approx({"acc_size6": 2 / 6, "acc_size8": 3 / 6, "acc_size12": 1 / 6})
    fixed = accuracy_by_size(SizeReader(), x, y, [6, 8, 12], fixed_size=8)
    assert fixed == pytest.approx({"acc_size6": 3 / 6, "acc_size8": 3 / 6, "acc_size12": 3 / 6})


def test_acc_by_size_evaluator_runs_spp_and_fixed_networks_at_every_size():
    x, y = torch.rand(4, 1, 8, 8), torch.arange(4)
    data = SimpleNamespace(test=SimpleNamespace(x=x, y=y))
    for pool in ("spp", "flatten"):
        model = create_model("small_cnn", in_channels=1, num_classes=10, channels=[4, 8],
                             pool=pool, input_size=8)
        out = EVALUATORS.get("acc_by_size")(SimpleNamespace(model=model, data=data,
                                                            device=torch.device("cpu")))
        assert sorted(out) == ["acc_size12", "acc_size16", "acc_size6", "acc_size8"]


# --------------------------------------------------------------------------- cost and RF


def test_separable_cost_matches_the_formula_layer_by_layer():
    model = create_model("small_cnn", in_channels=1, num_classes=10, channels=[32, 64],
                         blocks_per_stage=2, separable=True)
    out = separable_cost(model, torch.rand(1, 1, 8, 8))
    # separable blocks: 32->32 on 8x8, then 32->64 and 64->64 on 4x4 (the first block is full)
    layers = [(32, 32, 64), (32, 64, 16), (64, 64, 16)]
    full = [h * cin * cout * 9 for cin, cout, h in layers]
    sep = [h * cin * 9 + h * cin * cout for cin, cout, h in layers]
    formula = sum(f * (1 / cout + 1 / 9) for f, (_, cout, _) in zip(full, layers, strict=True))
    assert out["sep_macs_ratio"] == pytest.approx(sum(sep) / sum(full))
    assert out["sep_formula"] == pytest.approx(formula / sum(full))
    assert out["sep_macs_ratio"] == pytest.approx(out["sep_formula"])
    weights = [cin * 9 + cin * cout for cin, cout, _ in layers]
    assert out["sep_params_ratio"] == pytest.approx(
        sum(weights) / sum(cin * cout * 9 for cin, cout, _ in layers))
    standard = create_model("small_cnn", in_channels=1, num_classes=10, channels=[32, 64])
    assert separable_cost(standard, torch.rand(1, 1, 8, 8))["sep_macs_ratio"] is None


@pytest.mark.parametrize(("blocks", "kernel", "rf"), [(2, 3, 5), (1, 5, 5), (3, 3, 7), (1, 7, 7)])
def test_rf_evaluator_on_the_small_kernel_arms(blocks, kernel, rf):
    model = create_model("small_cnn", in_channels=1, num_classes=10, stem=1, channels=[8],
                         blocks_per_stage=blocks, kernel_size=kernel)
    trainer = SimpleNamespace(model=model, data=SimpleNamespace(input_shape=(1, 8, 8)))
    assert EVALUATORS.get("rf")(trainer) == {"rf": rf}
    assert model.training  # the evaluator works on a copy


# --------------------------------------------------------------------------- analyses


def test_every_analysis_holds_and_names_catalog_tips():
    results = run_analyses()
    assert list(results) == NAMES and len(results) >= 12
    ids = set(tip_ids())
    for name, res in results.items():
        assert res["holds"] is True, (name, res)
        tips = ANALYSES.meta(name)["tips"]
        assert tips and set(tips) <= ids, name


def test_analyses_values():
    r = run_analyses(["rf_two_3x3", "rf_three_3x3", "stack_vs_large_cost", "kernel_costs_3d",
                      "stride_pool_cost", "dwsep_cost", "stride_pool_rf", "atrous_rf"])
    assert r["rf_two_3x3"]["rf_two_3x3"] == r["rf_two_3x3"]["rf_one_5x5"] == 5
    assert r["rf_three_3x3"]["rf_three_3x3"] == r["rf_three_3x3"]["rf_one_7x7"] == 7
    c = 64
    assert r["stack_vs_large_cost"]["weights_3x3x3"] == 27 * c * c
    assert r["stack_vs_large_cost"]["weights_7x7"] == 49 * c * c
    assert r["stack_vs_large_cost"]["macs_3x3x3"] == 27 * c * c * 56 * 56
    k3d = r["kernel_costs_3d"]
    assert [k3d[f"weights_3d_k{k}"] for k in (3, 5, 7)] == [k**3 * 32 * 32 for k in (3, 5, 7)]
    assert k3d["stack_saving_3d"] == pytest.approx(81 / 343)
    assert k3d["stack_saving_2d"] == pytest.approx(27 / 49)
    assert r["stride_pool_cost"]["ratio_2d"] == 0.25 and r["stride_pool_cost"]["ratio_3d"] == 0.125
    assert r["dwsep_cost"]["macs_ratio"] == pytest.approx(1 / 128 + 1 / 9)
    assert (r["stride_pool_rf"]["rf_plain"], r["stride_pool_rf"]["rf_maxpool"],
            r["stride_pool_rf"]["rf_stride"]) == (9, 14, 11)
    assert (r["atrous_rf"]["rf_dilated"], r["atrous_rf"]["stride_dilated"]) == (15, 1)


def test_catalog_status_counts_the_analyses():
    rows = {r["id"]: r for r in catalog_status()}
    assert "rf_two_3x3" in rows["rf-two-3x3"]["analyses"]
    # a tip only an analysis checks has the status "analysis"
    assert rows["stride-pool-rf"]["status"] == "analysis"
    assert rows["cnn-padding"]["status"] == "analysis"


# --------------------------------------------------------------------------- experiments


def test_cnn_experiments_are_registered_with_their_evaluators():
    for exp_id in CNN_EXPERIMENTS:
        exp = get_experiment(exp_id)
        assert set(exp.tips) <= set(tip_ids())
        assert all(e in EVALUATORS for e in exp.evaluators)
        assert len(exp.budget("quick").__dict__) and exp.budget("quick").seeds >= 3
    rows = {r["id"]: r for r in catalog_status()}
    for tip in ("cnn-stacked-3x3", "dwsep-cheaper", "atrous-rf-resolution", "skip-preserve-detail",
                "multiscale-local-global", "spp-multiscale", "skip-deeper-no-degradation",
                "small-kernels-fewer-params"):
        assert rows[tip]["status"] == "measured", tip


def test_small_kernels_deterministic_claims_are_decided(tmp_path):
    # two seeds of one step: parameters and receptive fields do not vary, so the parameter
    # claims are decided however short the training
    exp = get_experiment("small_kernels")
    tiny = Budget(seeds=2, steps=1)
    exp = dataclasses.replace(
        exp, budgets={"smoke": tiny, "quick": tiny, "full": tiny},
        arms=tuple(a for a in exp.arms if a.name in ("3x3x3", "7x7")),
        claims=tuple(c for c in exp.claims if c.treatment == "3x3x3"))
    res = run_experiment(exp, "smoke", tmp_path)
    arms = res["analysis"]["arms"]
    assert arms["3x3x3"]["metrics"]["rf"]["values"] == arms["7x7"]["metrics"]["rf"]["values"] == [
        7, 7]
    # conv weights 27 C² against 49 C² (C = 32); stem, head and all but two batch norms shared
    p = {a: arms[a]["metrics"]["params"]["mean"] for a in arms}
    assert p["7x7"] - p["3x3x3"] == (49 - 27) * 32 * 32 - 4 * 32
    verdicts = {c["metric"]: c["verdict"] for c in res["analysis"]["comparisons"]}
    assert verdicts["params"] == verdicts["macs"] == "supported"
    assert not math.isnan(arms["7x7"]["metrics"]["latency_ms"]["mean"])
