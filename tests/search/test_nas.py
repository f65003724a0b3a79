"""Architecture search: the space and its networks, costs by closed form, each strategy's
mechanics, and that evolution and REINFORCE learn on a synthetic objective where random cannot."""

import random
import statistics

import pytest
import torch
from typer.testing import CliRunner

from dltricks.cli.main import app
from dltricks.search.nas import (
    CandidateNet,
    Controller,
    Evaluator,
    NASSpace,
    architecture_cost,
    nsga2_search,
    pareto_front,
    random_search,
    regularized_evolution,
    reinforce_search,
)

SPACE = NASSpace()


def _target_score(arch):
    """Synthetic objective: the share of decisions equal to a hidden target (no training)."""
    target = [(3 * i + 1) % len(c) for i, (_, c) in enumerate(SPACE.decisions())]
    hits = sum(a == t for a, t in zip(arch, target, strict=True))
    return {"val_accuracy": hits / len(target), "test_accuracy": 0.0, "macs": float(sum(arch)),
            "params": 1.0, "receptive_field": 1.0}


def test_space_decodes_mutates_and_counts():
    assert SPACE.size() == (2 * 2 * 3 * 2 * 2 * 2 * 2) ** 2
    rng = random.Random(0)
    arch = SPACE.sample(rng)
    for _ in range(20):
        child = SPACE.mutate(arch, rng)
        assert sum(a != b for a, b in zip(arch, child, strict=True)) == 1
    stages = SPACE.decode(arch)
    assert len(stages) == 2 and set(stages[0]) == set(NASSpace.KEYS)
    with pytest.raises(ValueError, match="decisions"):
        SPACE.decode(arch[:-1])
    with pytest.raises(ValueError, match="odd"):
        NASSpace(kernel_sizes=(2,))


def test_cost_matches_closed_form():
    space = NASSpace(n_stages=1, kernel_sizes=(3,), dilations=(2,), widths=(8,), depths=(1,),
                     separable=(False,), se=(False,), skip=(False,))
    net = CandidateNet(space, (0,) * 7, in_channels=1, num_classes=10)
    cost = architecture_cost(net, (1, 1, 8, 8))
    assert cost["macs"] == 8 * 8 * 8 * 9 + 8 * 10  # conv on 8x8 + head
    assert cost["params"] == 8 * 9 + 2 * 8 + 8 * 10 + 10  # conv (no bias), BN, head
    assert cost["receptive_field"] == 5  # 3x3 taps dilated by 2


@pytest.mark.parametrize("dims,shape", [(2, (3, 1, 8, 8)), (1, (3, 1, 40))])
def test_every_block_option_builds_and_runs(dims, shape):
    space = NASSpace(separable=(True,), se=(True,), skip=(True,))
    arch = space.sample(random.Random(1))
    net = CandidateNet(space, arch, in_channels=1, num_classes=10, spatial_dims=dims)
    assert net(torch.randn(*shape)).shape == (3, 10)
    assert any(type(m).__name__ == "SqueezeExcitation" for m in net.modules())


def test_regularized_evolution_ages_out_and_beats_random():
    res = regularized_evolution(SPACE, _target_score, 10, population=4, sample=2, seed=0)
    assert len(res.history) == 10
    archs = [tuple(r["arch"]) for r in res.history]
    for i in range(4, 10):  # every child is one mutation away from a recent member
        assert any(sum(a != b for a, b in zip(archs[i], archs[j], strict=True)) == 1
                   for j in range(i - 4, i))
    evo = [regularized_evolution(SPACE, _target_score, 150, population=20, sample=5, seed=s)
           .best["val_accuracy"] for s in range(4)]
    rnd = [random_search(SPACE, _target_score, 150, seed=s).best["val_accuracy"]
           for s in range(4)]
    assert statistics.mean(evo) > statistics.mean(rnd) + 0.15


def test_reinforce_controller_learns_the_target():
    res = reinforce_search(SPACE, _target_score, 200, lr=0.05, seed=0)
    rewards = [r["val_accuracy"] for r in res.history]
    uniform = [r["val_accuracy"] for r in random_search(SPACE, _target_score, 200).history]
    assert statistics.mean(uniform) == pytest.approx(0.476, abs=0.05)  # 1/choices per decision
    assert statistics.mean(rewards[-40:]) > statistics.mean(uniform) + 0.2
    ctrl = Controller([2, 3])
    arch, logp = ctrl.sample(torch.Generator().manual_seed(0))
    assert len(arch) == 2 and logp.requires_grad and float(logp) < 0


def test_pareto_front_and_nsga2():
    rows = [{"arch": [0], "val_accuracy": 0.9, "macs": 10.0},
            {"arch": [1], "val_accuracy": 0.8, "macs": 5.0},
            {"arch": [2], "val_accuracy": 0.7, "macs": 8.0},  # dominated by [1]
            {"arch": [3], "val_accuracy": 0.95, "macs": 20.0}]
    assert [r["arch"] for r in pareto_front(rows)] == [[1], [0], [3]]
    res = nsga2_search(SPACE, _target_score, 12, population=4, seed=0)
    assert len(res.history) == 12
    front = pareto_front(res.history)
    assert all(not (o["val_accuracy"] > f["val_accuracy"] and o["macs"] < f["macs"])
               for f in front for o in res.history)


def test_evaluator_trains_and_caches(tmp_path):
    from dltricks.data import create_dataset

    data = create_dataset("digits", seed=0)
    space = NASSpace(widths=(8,), depths=(1,))
    ev = Evaluator(space, data, steps=3)
    arch = space.sample(random.Random(0))
    first = ev(arch)
    assert 0 <= first["val_accuracy"] <= 1 and first["macs"] > 0 and first["params"] > 0
    assert ev(arch) == first and len(ev.cache) == 1


def test_nas_cli_writes_candidates_and_pareto(tmp_path):
    res = CliRunner().invoke(app, ["nas", "--strategy", "random", "--budget", "2", "--steps",
                                   "2", "--widths", "4", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "pareto.png").is_file()
    assert len((tmp_path / "candidates.csv").read_text().splitlines()) == 3
    bad = CliRunner().invoke(app, ["nas", "--strategy", "bogus"])
    assert bad.exit_code == 2 and "Unknown NAS strategy" in bad.output
