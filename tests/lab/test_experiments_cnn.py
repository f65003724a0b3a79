"""CNN experiments: their evaluators on hand-checkable inputs, the analyses, the experiments'
definitions and deterministic claims."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dltricks.lab.analyses import ANALYSES, NAMES, coverage, run_analyses
from dltricks.lab.catalog import catalog_status, tip_ids
from dltricks.lab.evaluators import EVALUATORS
from dltricks.lab.experiment import Budget, get_experiment
from dltricks.lab.runner import run_experiment
from dltricks.models import create_model
from tests.analysis.test_resolution import SizeReader
from tests.analysis.test_segmentation import three_lesions

CNN_EXPERIMENTS = ("small_kernels", "depthwise_separable", "dilated_segmentation", "unet_skips",
                   "dual_pathway", "spp", "residual_depth", "kernels_3d")


# --------------------------------------------------------------------------- evaluators


def test_segmentation_evaluators_on_an_oracle_model():
    class Oracle(nn.Module):  # logits from the input itself, which is the mask
        def forward(self, x):
            return torch.cat([-x, x], dim=1) * 10

    _, gt = three_lesions()
    trainer = SimpleNamespace(model=Oracle(), device=torch.device("cpu"), data=SimpleNamespace(
        test=SimpleNamespace(x=gt.float().unsqueeze(1), y=gt.long())))
    assert EVALUATORS.get("boundary_f1")(trainer) == {"boundary_f1": 1.0}
    out = EVALUATORS.get("dice_by_size")(trainer)
    assert [out[f"dice_size{i}"] for i in (1, 2, 3)] == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------- accuracy by size


def test_acc_by_size_evaluator_runs_spp_and_fixed_networks_at_every_size():
    x, y = torch.rand(4, 1, 8, 8), torch.arange(4)
    data = SimpleNamespace(test=SimpleNamespace(x=x, y=y))
    for pool in ("spp", "flatten"):
        model = create_model("small_cnn", in_channels=1, num_classes=10, channels=[4, 8],
                             pool=pool, input_size=8)
        out = EVALUATORS.get("acc_by_size")(SimpleNamespace(model=model, data=data,
                                                            device=torch.device("cpu")))
        assert sorted(out) == ["acc_size12", "acc_size16", "acc_size6", "acc_size8"]
        assert all(0.0 <= v <= 1.0 for v in out.values())
    # a model that reports the size it sees: free models see 6, 8, 12, 16; fixed ones always 8
    y = torch.tensor([6, 8, 2, 6])  # 12 % 10 == 2, 16 % 10 == 6
    reader = SizeReader()
    out = EVALUATORS.get("acc_by_size")(SimpleNamespace(
        model=reader, data=SimpleNamespace(test=SimpleNamespace(x=x, y=y)),
        device=torch.device("cpu")))
    assert out == pytest.approx({"acc_size6": 0.5, "acc_size8": 0.25, "acc_size12": 0.25,
                                 "acc_size16": 0.5})
    reader.fixed_input_size = 8
    out = EVALUATORS.get("acc_by_size")(SimpleNamespace(
        model=reader, data=SimpleNamespace(test=SimpleNamespace(x=x, y=y)),
        device=torch.device("cpu")))
    assert set(out.values()) == {0.25}


# --------------------------------------------------------------------------- cost and RF


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
        assert coverage()[name] == tuple(tips)


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
    # claims are decided (as computed facts) however short the training
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
    # arithmetic on the model, not a sample: decided exactly ("computed"), never "supported"
    assert verdicts["params"] == verdicts["macs"] == "computed"
    assert not math.isnan(arms["7x7"]["metrics"]["latency_ms"]["mean"])
