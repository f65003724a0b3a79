"""Neural architecture search over this package's convolution blocks.

**Search space** (:class:`NASSpace`): a CNN of ``n_stages`` stages (2x max pooling between
stages, global average pooling and a linear head at the end); every stage chooses its kernel
size, dilation, width, depth (blocks), whether its convolutions are depthwise separable
(:class:`~dltricks.nn.conv_blocks.DepthwiseSeparableConv`), whether each block ends in
squeeze-excitation (:class:`~dltricks.nn.cnn_attention.SqueezeExcitation`) and whether each block
has a skip connection (identity, or a 1x1 projection when the width changes). An architecture is
a list of decision indices, one per (stage, choice), which every strategy below shares.

**Cost** of every candidate is computed by the existing analysis: parameters
(:func:`dltricks.analysis.count_parameters`), MACs of one sample's forward (the shared counter,
:func:`dltricks.utils.flops.forward_macs`) and the receptive field
(:func:`dltricks.analysis.receptive_field`).

**Strategies**, all spending the same budget of candidate evaluations (a short proxy training
and the validation accuracy; repeated candidates count against the budget, the cache only saves
time):

* :func:`random_search`: uniform samples; the baseline NAS methods must beat (Li & Talwalkar
  2019, "Random Search and Reproducibility for NAS"; Yu et al. 2020).
* :func:`regularized_evolution`: aging evolution of Real et al. 2019 ("Regularized Evolution
  for Image Classifier Architecture Search"): a population of P, tournaments of S, the winner's
  child differs in one decision, the *oldest* member dies.
* :func:`reinforce_search`: the policy-gradient controller of Zoph & Le 2017 ("Neural
  Architecture Search with Reinforcement Learning"): an LSTM emits one decision per step (the
  previous decision's embedding is the next input), trained with REINFORCE on the validation
  accuracy minus an exponential moving-average baseline.
* :func:`nsga2_search`: multi-objective search, accuracy against MACs, with Optuna's NSGA-II
  sampler (Deb et al. 2002); :func:`pareto_front` and :func:`plot_pareto` show the trade-off.

Hand-written because NNI (which has these strategies) is not installable here; the strategies
are short and follow the papers' pseudo-code.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.nn.cnn_attention import SqueezeExcitation
from dltricks.nn.conv_blocks import DepthwiseSeparableConv
from dltricks.nn.factory import ConvNormAct, get_conv, get_norm, get_pool

STRATEGIES = ("random", "evolution", "reinforce", "nsga2")


@dataclass(frozen=True)
class NASSpace:
    """The choices of every stage (all tuples of allowed values).

    Args:
        n_stages: stages of the network.
        kernel_sizes, dilations, widths, depths: per-stage choices.
        separable, se, skip: per-stage switches (``(False, True)`` to search them, ``(False,)``
            to fix them off).
    """

    n_stages: int = 2
    kernel_sizes: tuple[int, ...] = (3, 5)
    dilations: tuple[int, ...] = (1, 2)
    widths: tuple[int, ...] = (8, 16, 32)
    depths: tuple[int, ...] = (1, 2)
    separable: tuple[bool, ...] = (False, True)
    se: tuple[bool, ...] = (False, True)
    skip: tuple[bool, ...] = (False, True)

    def __post_init__(self) -> None:
        if self.n_stages < 1:
            raise ValueError(f"n_stages must be >= 1, got {self.n_stages}.")
        for name in ("kernel_sizes", "dilations", "widths", "depths", "separable", "se",
                     "skip"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"NASSpace.{name} needs at least one value.")
        if any(k % 2 == 0 or k < 1 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd and positive, got {self.kernel_sizes}.")

    KEYS = ("kernel_size", "dilation", "width", "depth", "separable", "se", "skip")

    def _choices(self) -> list[tuple[Any, ...]]:
        return [self.kernel_sizes, self.dilations, self.widths, self.depths, self.separable,
                self.se, self.skip]

    def decisions(self) -> list[tuple[str, tuple[Any, ...]]]:
        """(name, choices) of every decision, stage by stage."""
        return [(f"s{s}.{k}", c) for s in range(self.n_stages)
                for k, c in zip(self.KEYS, self._choices(), strict=True)]

    def size(self) -> int:
        """Number of distinct architectures."""
        return math.prod(len(c) for _, c in self.decisions())

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        """Uniformly random decision indices."""
        return tuple(rng.randrange(len(c)) for _, c in self.decisions())

    def mutate(self, arch: Sequence[int], rng: random.Random) -> tuple[int, ...]:
        """A copy with one decision (that has alternatives) changed to another value."""
        ds = self.decisions()
        open_ = [i for i, (_, c) in enumerate(ds) if len(c) > 1]
        if not open_:
            return tuple(arch)
        i = rng.choice(open_)
        out = list(arch)
        out[i] = rng.choice([j for j in range(len(ds[i][1])) if j != arch[i]])
        return tuple(out)

    def decode(self, arch: Sequence[int]) -> list[dict[str, Any]]:
        """Per stage, the chosen value of every key."""
        ds = self.decisions()
        if len(arch) != len(ds):
            raise ValueError(f"An architecture of this space has {len(ds)} decisions, "
                             f"got {len(arch)}.")
        values = [c[i] for i, (_, c) in zip(arch, ds, strict=True)]
        n = len(self.KEYS)
        return [dict(zip(self.KEYS, values[s * n:(s + 1) * n], strict=True))
                for s in range(self.n_stages)]

    def describe(self, arch: Sequence[int]) -> str:
        """A short readable name: ``k5d2w16x2+sep+se+skip | ...``."""
        parts = []
        for st in self.decode(arch):
            s = f"k{st['kernel_size']}d{st['dilation']}w{st['width']}x{st['depth']}"
            s += "".join(f"+{k}" for k in ("separable", "se", "skip") if st[k])
            parts.append(s.replace("+separable", "+sep"))
        return " | ".join(parts)


class CandidateBlock(nn.Module):
    """One searched block: conv (full or depthwise separable) → optional SE, with an optional
    skip connection around it."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: int, dilation: int, separable: bool, se: bool,
                 skip: bool) -> None:
        super().__init__()
        if separable:
            self.conv: nn.Module = DepthwiseSeparableConv(
                spatial_dims, in_channels, out_channels, kernel_size, dilation=dilation)
        else:
            self.conv = ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size,
                                    dilation=dilation)
        self.se: nn.Module = (SqueezeExcitation(spatial_dims, out_channels, reduction=4)
                              if se else nn.Identity())
        self.skip = skip
        self.shortcut: nn.Module = nn.Identity()
        if skip and in_channels != out_channels:
            self.shortcut = nn.Sequential(
                get_conv(spatial_dims)(in_channels, out_channels, 1, bias=False),
                get_norm("batch", out_channels, spatial_dims))

    def forward(self, x: Tensor) -> Tensor:
        y = self.se(self.conv(x))
        return y + self.shortcut(x) if self.skip else y


class CandidateNet(nn.Module):
    """The network of one architecture of a :class:`NASSpace`.

    Shapes:
        (B, in_channels, *spatial) → (B, num_classes)
    """

    def __init__(self, space: NASSpace, arch: Sequence[int], in_channels: int, num_classes: int,
                 spatial_dims: int = 2) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        width = in_channels
        for s, st in enumerate(space.decode(arch)):
            blocks: list[nn.Module] = []
            if s > 0:
                blocks.append(get_pool("max", spatial_dims)(2, ceil_mode=True))
            for _ in range(st["depth"]):
                blocks.append(CandidateBlock(spatial_dims, width, st["width"],
                                             st["kernel_size"], st["dilation"],
                                             st["separable"] and width > 1, st["se"],
                                             st["skip"]))
                width = st["width"]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(get_pool("adaptive_avg", spatial_dims)(1), nn.Flatten(1))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.stages(x)))


def architecture_cost(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """Parameters, MACs of one sample and receptive field (first axis) of a network."""
    from dltricks.analysis import count_parameters, receptive_field
    from dltricks.utils.flops import forward_macs

    one = (1, *input_shape[1:])
    macs = forward_macs(model, torch.zeros(one))
    try:
        rf = float(receptive_field(model, one).size[0])
    except ValueError:
        rf = float("nan")
    return {"params": float(count_parameters(model)), "macs": float(macs),
            "receptive_field": rf}


@dataclass
class Evaluator:
    """Trains candidates briefly and scores them on the validation split (cached by arch).

    Args:
        space: the search space.
        data: dataset splits (``train``, ``val``, ``test`` with ``x``, ``y``).
        steps: AdamW steps of the proxy training.
        lr: learning rate.
        batch_size: batch size.
        seed: initialisation and data-order seed (the same for every candidate).
    """

    space: NASSpace
    data: Any
    steps: int = 100
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0
    cache: dict[tuple[int, ...], dict[str, float]] = field(default_factory=dict)

    def build(self, arch: Sequence[int]) -> CandidateNet:
        d = self.data
        return CandidateNet(self.space, arch, d.in_channels, d.num_classes, d.spatial_dims)

    def __call__(self, arch: Sequence[int]) -> dict[str, float]:
        arch = tuple(arch)
        if arch not in self.cache:
            self.cache[arch] = self._evaluate(arch)
        return dict(self.cache[arch])

    def _evaluate(self, arch: tuple[int, ...]) -> dict[str, float]:
        t0 = time.perf_counter()
        torch.manual_seed(self.seed)
        model = self.build(arch)
        cost = architecture_cost(model, (1, *self.data.input_shape))
        x, y = self.data.train.x, self.data.train.y
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.01)
        g = torch.Generator().manual_seed(self.seed)
        bs = min(self.batch_size, len(x))
        model.train()
        for _ in range(self.steps):
            idx = torch.randint(0, len(x), (bs,), generator=g)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float((model(self.data.val.x).argmax(-1) == self.data.val.y).float().mean())
            test = float((model(self.data.test.x).argmax(-1) == self.data.test.y)
                         .float().mean())
        return {"val_accuracy": val, "test_accuracy": test, **cost,
                "seconds": time.perf_counter() - t0}


@dataclass
class SearchResult:
    """The candidates a strategy evaluated, in order, and the best by validation accuracy."""

    strategy: str
    history: list[dict[str, Any]]

    @property
    def best(self) -> dict[str, Any]:
        return max(self.history, key=lambda r: r["val_accuracy"])

    def best_so_far(self) -> list[float]:
        out, best = [], -math.inf
        for r in self.history:
            best = max(best, r["val_accuracy"])
            out.append(best)
        return out


def _record(space: NASSpace, evaluate: Callable[[Sequence[int]], dict[str, float]],
            arch: Sequence[int], history: list[dict[str, Any]]) -> dict[str, Any]:
    row = {"index": len(history), "arch": list(arch), "name": space.describe(arch),
           **evaluate(arch)}
    history.append(row)
    return row


def random_search(space: NASSpace, evaluate: Callable[[Sequence[int]], dict[str, float]],
                  budget: int, seed: int = 0) -> SearchResult:
    """``budget`` uniformly random architectures."""
    _check_budget(budget)
    rng = random.Random(seed)
    history: list[dict[str, Any]] = []
    for _ in range(budget):
        _record(space, evaluate, space.sample(rng), history)
    return SearchResult("random", history)


def regularized_evolution(space: NASSpace, evaluate: Callable[[Sequence[int]], dict[str, float]],
                          budget: int, population: int = 8, sample: int = 3,
                          seed: int = 0) -> SearchResult:
    """Aging evolution (Real et al. 2019, Algorithm 1).

    Args:
        population: P, the population size (the first P evaluations are random).
        sample: S, the tournament size.
    """
    _check_budget(budget)
    if population < 2 or not 1 <= sample <= population:
        raise ValueError(f"Need population >= 2 and 1 <= sample <= population, got "
                         f"{population} and {sample}.")
    rng = random.Random(seed)
    history: list[dict[str, Any]] = []
    pop: deque[dict[str, Any]] = deque()
    while len(history) < min(population, budget):
        pop.append(_record(space, evaluate, space.sample(rng), history))
    while len(history) < budget:
        contenders = rng.sample(list(pop), sample)
        parent = max(contenders, key=lambda r: r["val_accuracy"])
        child = _record(space, evaluate, space.mutate(parent["arch"], rng), history)
        pop.append(child)
        pop.popleft()  # the oldest dies, not the worst: the regularisation of the paper
    return SearchResult("evolution", history)


class Controller(nn.Module):
    """Zoph & Le's controller: an LSTM that emits one categorical decision per step.

    Args:
        choices: number of choices of every decision.
        hidden: LSTM width.
    """

    def __init__(self, choices: Sequence[int], hidden: int = 32) -> None:
        super().__init__()
        self.choices = list(choices)
        self.hidden = hidden
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.cell = nn.LSTMCell(hidden, hidden)
        self.embed = nn.ModuleList(nn.Embedding(n, hidden) for n in self.choices)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.choices)

    def sample(self, generator: torch.Generator) -> tuple[tuple[int, ...], Tensor]:
        """One architecture and the sum of its decisions' log-probabilities."""
        h = c = torch.zeros(1, self.hidden)
        inp = self.start
        out, logp = [], torch.zeros(())
        for emb, head in zip(self.embed, self.heads, strict=True):
            h, c = self.cell(inp, (h, c))
            probs = F.softmax(head(h), -1)[0]
            i = int(torch.multinomial(probs, 1, generator=generator))
            logp = logp + torch.log(probs[i])
            out.append(i)
            inp = emb(torch.tensor([i]))
        return tuple(out), logp


def reinforce_search(space: NASSpace, evaluate: Callable[[Sequence[int]], dict[str, float]],
                     budget: int, lr: float = 0.05, baseline_decay: float = 0.8,
                     entropy_weight: float = 0.0, seed: int = 0) -> SearchResult:
    """REINFORCE with an LSTM controller (Zoph & Le 2017), one architecture per update.

    The reward is the validation accuracy; the baseline is its exponential moving average
    (decay ``baseline_decay``), as in the paper.
    """
    _check_budget(budget)
    if not 0 <= baseline_decay < 1:
        raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}.")
    torch.manual_seed(seed)
    ctrl = Controller([len(c) for _, c in space.decisions()])
    opt = torch.optim.Adam(ctrl.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    history: list[dict[str, Any]] = []
    baseline: float | None = None
    for _ in range(budget):
        arch, logp = ctrl.sample(g)
        reward = _record(space, evaluate, arch, history)["val_accuracy"]
        baseline = reward if baseline is None else (
            baseline_decay * baseline + (1 - baseline_decay) * reward)
        loss = -(reward - baseline) * logp
        if entropy_weight:
            loss = loss - entropy_weight * (-logp)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return SearchResult("reinforce", history)


def nsga2_search(space: NASSpace, evaluate: Callable[[Sequence[int]], dict[str, float]],
                 budget: int, population: int = 8, seed: int = 0,
                 cost: str = "macs") -> SearchResult:
    """Multi-objective search with Optuna's NSGA-II: maximise validation accuracy, minimise
    ``cost`` (``"macs"`` or ``"params"``)."""
    import warnings

    import optuna

    _check_budget(budget)
    if cost not in ("macs", "params"):
        raise ValueError(f"cost must be 'macs' or 'params', got {cost!r}.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.NSGAIISampler(
                                    population_size=max(2, population), seed=seed))
    history: list[dict[str, Any]] = []
    ds = space.decisions()
    for _ in range(budget):
        trial = study.ask()
        arch = tuple(trial.suggest_categorical(name, list(range(len(c)))) for name, c in ds)
        row = _record(space, evaluate, arch, history)
        study.tell(trial, [row["val_accuracy"], row[cost]])
    return SearchResult("nsga2", history)


def pareto_front(rows: Sequence[dict[str, Any]], cost: str = "macs") -> list[dict[str, Any]]:
    """Rows not dominated in (higher ``val_accuracy``, lower ``cost``), by increasing cost."""
    front = []
    for r in rows:
        dominated = any(
            o["val_accuracy"] >= r["val_accuracy"] and o[cost] <= r[cost]
            and (o["val_accuracy"] > r["val_accuracy"] or o[cost] < r[cost]) for o in rows)
        if not dominated and not any(f["arch"] == r["arch"] for f in front):
            front.append(r)
    return sorted(front, key=lambda r: r[cost])


def plot_pareto(results: Sequence[SearchResult], path: str | Path, cost: str = "macs") -> None:
    """Validation accuracy against cost of every candidate, and each strategy's Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, res in enumerate(results):
        xs = [r[cost] for r in res.history]
        ax.scatter(xs, [r["val_accuracy"] for r in res.history], s=12, alpha=0.5,
                   color=f"C{i}", label=f"{res.strategy} candidates")
        front = pareto_front(res.history, cost)
        ax.step([r[cost] for r in front], [r["val_accuracy"] for r in front], where="post",
                color=f"C{i}", label=f"{res.strategy} Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("MACs per sample" if cost == "macs" else "parameters")
    ax.set_ylabel("validation accuracy (proxy training)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_search(strategy: str, space: NASSpace, evaluate: Evaluator, budget: int,
               seed: int = 0, **kwargs: Any) -> SearchResult:
    """Runs one of :data:`STRATEGIES` with ``budget`` evaluations."""
    fns: dict[str, Callable[..., SearchResult]] = {
        "random": random_search, "evolution": regularized_evolution,
        "reinforce": reinforce_search, "nsga2": nsga2_search}
    if strategy not in fns:
        raise ValueError(f"Unknown NAS strategy {strategy!r}; use one of "
                         f"{', '.join(STRATEGIES)}.")
    return fns[strategy](space, evaluate, budget, seed=seed, **kwargs)


def write_result(result: SearchResult, space: NASSpace, out: str | Path) -> dict[str, Any]:
    """Writes ``candidates.csv``, ``pareto.png`` and ``summary.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = ["index", "name", "val_accuracy", "test_accuracy", "params", "macs",
            "receptive_field", "seconds", "arch"]
    with open(out / "candidates.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in result.history:
            w.writerow({**r, "arch": json.dumps(r["arch"])})
    plot_pareto([result], out / "pareto.png")
    best = result.best
    summary = {"strategy": result.strategy, "space": asdict(space),
               "space_size": space.size(), "evaluations": len(result.history),
               "distinct": len({tuple(r["arch"]) for r in result.history}),
               "best": {**best, "stages": space.decode(best["arch"])},
               "best_so_far": result.best_so_far(),
               "pareto_front": [{k: r[k] for k in ("name", "val_accuracy", "macs", "params")}
                                for r in pareto_front(result.history)]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _check_budget(budget: int) -> None:
    if budget < 1:
        raise ValueError(f"budget must be >= 1 evaluation, got {budget}.")


__all__ = [
    "STRATEGIES",
    "CandidateNet",
    "Controller",
    "Evaluator",
    "NASSpace",
    "SearchResult",
    "architecture_cost",
    "nsga2_search",
    "pareto_front",
    "plot_pareto",
    "random_search",
    "regularized_evolution",
    "reinforce_search",
    "run_search",
    "write_result",
]
