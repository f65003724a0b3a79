"""Meta-learning: MAML, first-order MAML and Reptile with torch.func, sinusoid and episode tasks.

* **MAML** (Finn, Abbeel & Levine 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of
  Deep Networks"): find initial parameters θ such that a few SGD steps on a new task's support
  set give low loss on its query set. Inner loop ``θ'_i = θ - α ∇θ L_support_i(θ)`` (k steps);
  outer loss ``Σ_i L_query_i(θ'_i)``, differentiated through the inner steps (second order).
* **First-order MAML** (same paper, §5.2): the inner gradients are treated as constants, so the
  meta-gradient is ``Σ_i ∇L_query_i`` evaluated at θ'_i (no Hessian-vector products).
* **Reptile** (Nichol, Achiam & Schulman 2018): adapt with k SGD steps to each task and move θ
  toward the adapted weights, ``θ ← θ + ε (mean_i θ'_i − θ)``.

Written with ``torch.func`` (``functional_call`` for running a module on a parameter dict,
``grad`` for the inner and outer gradients, ``vmap`` over the tasks of a meta-batch) since
learn2learn and higher are unmaintained. Modules with BatchNorm running statistics are refused:
their in-place buffer updates have no meaning per task under ``vmap``
(use ``track_running_stats=False`` or another norm).

Tasks: :class:`SinusoidTasks` (Finn et al. 2017, §5.1: amplitude in [0.1, 5], phase in [0, π],
inputs uniform in [-5, 5]) and :func:`episode_tasks` (N-way K-shot classification episodes from
:class:`dltricks.methods.metric.EpisodeSampler`).

Axis letters: T tasks in a meta-batch, K support samples, Q query samples per task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, vmap

from dltricks.methods.metric import EpisodeSampler

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class TaskBatch:
    """A meta-batch of T tasks with equal support and query sizes.

    Attributes:
        xs: (T, K, ...) support inputs; ys: (T, K, ...) support targets.
        xq: (T, Q, ...) query inputs; yq: (T, Q, ...) query targets.
    """

    xs: Tensor
    ys: Tensor
    xq: Tensor
    yq: Tensor

    def __len__(self) -> int:
        return self.xs.shape[0]

    def task(self, i: int) -> TaskBatch:
        """Task ``i`` as a batch of one."""
        return TaskBatch(self.xs[i : i + 1], self.ys[i : i + 1], self.xq[i : i + 1],
                         self.yq[i : i + 1])


class SinusoidTasks:
    """Sinusoid regression tasks ``y = A sin(x - φ)`` (Finn et al. 2017, §5.1).

    Args:
        amplitude: range of A (uniform).
        phase: range of φ (uniform).
        x_range: range of the inputs (uniform).
    """

    def __init__(self, amplitude: tuple[float, float] = (0.1, 5.0),
                 phase: tuple[float, float] = (0.0, math.pi),
                 x_range: tuple[float, float] = (-5.0, 5.0)) -> None:
        for name, (lo, hi) in (("amplitude", amplitude), ("phase", phase), ("x_range", x_range)):
            if not lo <= hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got "
                                 f"{(lo, hi)}.")
        self.amplitude, self.phase, self.x_range = amplitude, phase, x_range

    def sample(self, n_tasks: int, n_support: int = 10, n_query: int = 10,
               generator: torch.Generator | None = None) -> TaskBatch:
        """T random tasks with K support and Q query points each, shapes (T, K, 1)/(T, Q, 1)."""
        if n_tasks < 1 or n_support < 1 or n_query < 1:
            raise ValueError(f"n_tasks, n_support and n_query must be >= 1, got {n_tasks}, "
                             f"{n_support}, {n_query}.")

        def u(lo: float, hi: float, *shape: int) -> Tensor:
            return lo + (hi - lo) * torch.rand(*shape, generator=generator)

        amp = u(*self.amplitude, n_tasks, 1, 1)
        phase = u(*self.phase, n_tasks, 1, 1)
        x = u(*self.x_range, n_tasks, n_support + n_query, 1)
        y = amp * torch.sin(x - phase)
        return TaskBatch(x[:, :n_support], y[:, :n_support], x[:, n_support:],
                         y[:, n_support:])


def sinusoid_mlp(hidden: int = 40) -> nn.Sequential:
    """The network of Finn et al. 2017 for sinusoids: 1 → 40 → 40 → 1 with ReLUs."""
    return nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1))


def episode_tasks(sampler: EpisodeSampler, n_tasks: int) -> TaskBatch:
    """T classification episodes stacked into a TaskBatch (labels 0..N-1 per episode)."""
    eps = [sampler.sample() for _ in range(n_tasks)]
    return TaskBatch(torch.stack([e.support_x for e in eps]),
                     torch.stack([e.support_y for e in eps]),
                     torch.stack([e.query_x for e in eps]),
                     torch.stack([e.query_y for e in eps]))


def _check_model(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            raise ValueError("Meta-learning needs a model without BatchNorm running statistics "
                             "(they would be updated in place across tasks); use "
                             "track_running_stats=False or another norm.")


def params_of(model: nn.Module) -> Params:
    """The model's parameters as a dict of detached tensors that require grad."""
    return {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}


def adapt(model: nn.Module, params: Params, x: Tensor, y: Tensor, loss_fn: LossFn,
          lr: float, steps: int, first_order: bool = False) -> Params:
    """``steps`` plain SGD steps from ``params`` on (x, y), functionally (MAML's inner loop).

    Args:
        model: the module whose structure is used (its own weights are not read).
        params: parameter dict to start from.
        x, y: the task's support data.
        loss_fn: ``loss_fn(prediction, target)``.
        lr: inner learning rate α.
        steps: number of inner steps (0 returns ``params``).
        first_order: treat the inner gradients as constants (first-order MAML / Reptile).

    Returns:
        The adapted parameter dict; differentiable w.r.t. ``params`` unless ``first_order``.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")

    def support_loss(p: Params) -> Tensor:
        return loss_fn(functional_call(model, p, (x,)), y)

    for _ in range(steps):
        g = grad(support_loss)(params)
        if first_order:
            g = {k: v.detach() for k, v in g.items()}
        params = {k: params[k] - lr * g[k] for k in params}
    return params


class MAML:
    """MAML / first-order MAML with torch.func, vmapped over the tasks of a meta-batch.

    Args:
        model: the network; its parameters are the meta-parameters θ (updated by :meth:`step`).
        loss_fn: ``loss_fn(prediction, target)`` (default: MSE).
        inner_lr: α.
        inner_steps: inner SGD steps during meta-training.
        first_order: first-order MAML.

    Example::

        net = sinusoid_mlp(); maml = MAML(net, inner_lr=0.01)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        for _ in range(1000):
            maml.step(SinusoidTasks().sample(25), opt)
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn = F.mse_loss, inner_lr: float = 0.01,
                 inner_steps: int = 1, first_order: bool = False) -> None:
        _check_model(model)
        if inner_lr <= 0 or inner_steps < 1:
            raise ValueError(f"inner_lr must be > 0 and inner_steps >= 1, got {inner_lr} and "
                             f"{inner_steps}.")
        self.model, self.loss_fn = model, loss_fn
        self.inner_lr, self.inner_steps, self.first_order = inner_lr, inner_steps, first_order

    def _task_loss(self, params: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor
                   ) -> Tensor:
        adapted = adapt(self.model, params, xs, ys, self.loss_fn, self.inner_lr,
                        self.inner_steps, self.first_order)
        return self.loss_fn(functional_call(self.model, adapted, (xq,)), yq)

    def meta_loss(self, params: Params, tasks: TaskBatch) -> Tensor:
        """Mean post-adaptation query loss over the tasks (vmapped)."""
        losses = vmap(self._task_loss, in_dims=(None, 0, 0, 0, 0), randomness="different")(
            params, tasks.xs, tasks.ys, tasks.xq, tasks.yq)
        return losses.mean()

    def meta_gradients(self, tasks: TaskBatch, params: Params | None = None
                       ) -> tuple[Params, Tensor]:
        """(∇θ meta-loss as a dict, meta-loss) at ``params`` (default: the model's)."""
        params = params_of(self.model) if params is None else params
        grads, loss = grad_and_value(self.meta_loss)(params, tasks)
        return grads, loss.detach()

    def step(self, tasks: TaskBatch, optimizer: torch.optim.Optimizer) -> float:
        """One meta-update of the model's parameters; returns the meta-loss before it."""
        params = dict(self.model.named_parameters())
        grads, loss = self.meta_gradients(tasks, {k: v.detach() for k, v in params.items()})
        for k, p in params.items():
            p.grad = grads[k].detach()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)


class Reptile:
    """Reptile (Nichol et al. 2018): move θ toward task-adapted weights.

    Args:
        model: the network (updated in place by :meth:`step`).
        loss_fn: ``loss_fn(prediction, target)`` (default: MSE).
        inner_lr: SGD learning rate of the task adaptation.
        inner_steps: SGD steps per task.
        outer_lr: ε, the interpolation step toward the mean adapted weights.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn = F.mse_loss, inner_lr: float = 0.01,
                 inner_steps: int = 5, outer_lr: float = 0.1) -> None:
        _check_model(model)
        if inner_lr <= 0 or inner_steps < 1 or not 0 < outer_lr <= 1:
            raise ValueError(f"need inner_lr > 0, inner_steps >= 1 and 0 < outer_lr <= 1, got "
                             f"{inner_lr}, {inner_steps}, {outer_lr}.")
        self.model, self.loss_fn = model, loss_fn
        self.inner_lr, self.inner_steps, self.outer_lr = inner_lr, inner_steps, outer_lr

    def _adapted(self, params: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor
                 ) -> Params:
        x, y = torch.cat([xs, xq]), torch.cat([ys, yq])
        return adapt(self.model, params, x, y, self.loss_fn, self.inner_lr, self.inner_steps,
                     first_order=True)

    def step(self, tasks: TaskBatch) -> float:
        """One Reptile update; returns the mean query loss before adaptation."""
        params = {k: v.detach() for k, v in self.model.named_parameters()}
        adapted = vmap(self._adapted, in_dims=(None, 0, 0, 0, 0))(
            params, tasks.xs, tasks.ys, tasks.xq, tasks.yq)
        with torch.no_grad():
            pred = vmap(lambda x: functional_call(self.model, params, (x,)))(tasks.xq)
            loss = float(self.loss_fn(pred, tasks.yq))
            for k, p in self.model.named_parameters():
                p.add_(self.outer_lr * (adapted[k].mean(0) - p))
        return loss


def pretrain_joint(model: nn.Module, tasks: SinusoidTasks, steps: int, lr: float = 1e-3,
                   n_tasks: int = 25, n_points: int = 20, seed: int = 0,
                   loss_fn: LossFn = F.mse_loss) -> list[float]:
    """The non-meta baseline: ordinary training on samples pooled over random tasks.

    Each step draws ``n_tasks`` tasks with ``n_points`` points and fits them all with one
    model (Adam), which for sinusoids learns the mean function over tasks.

    Returns:
        The loss of every step.
    """
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        b = tasks.sample(n_tasks, n_points, 1, generator=g)
        loss = loss_fn(model(b.xs.reshape(-1, b.xs.shape[-1])), b.ys.reshape(-1, b.ys.shape[-1]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def _query_loss(model: nn.Module, params: Params, tasks: TaskBatch, loss_fn: LossFn) -> float:
    pred = vmap(lambda p, x: functional_call(model, p, (x,)), in_dims=(0, 0))(params, tasks.xq)
    return float(vmap(loss_fn)(pred, tasks.yq).mean())


def finetune_losses(model: nn.Module, tasks: TaskBatch, lr: float, steps: int,
                    loss_fn: LossFn = F.mse_loss) -> list[float]:
    """Mean query loss over the tasks after 0, 1, ..., ``steps`` SGD steps on each support set.

    Every task starts from the model's current weights; the model is not changed.

    Returns:
        ``steps + 1`` losses.
    """
    _check_model(model)
    start = {k: v.detach() for k, v in model.named_parameters()}
    t = len(tasks)
    params = {k: v.unsqueeze(0).expand(t, *v.shape).clone() for k, v in start.items()}

    def one_step(p: Params, x: Tensor, y: Tensor) -> Params:
        return adapt(model, p, x, y, loss_fn, lr, 1, first_order=True)

    step = vmap(one_step)
    out = [_query_loss(model, params, tasks, loss_fn)]
    for _ in range(steps):
        params = {k: v.detach() for k, v in step(params, tasks.xs, tasks.ys).items()}
        out.append(_query_loss(model, params, tasks, loss_fn))
    return out


__all__ = [
    "MAML",
    "Reptile",
    "SinusoidTasks",
    "TaskBatch",
    "adapt",
    "episode_tasks",
    "finetune_losses",
    "params_of",
    "pretrain_joint",
    "sinusoid_mlp",
]
