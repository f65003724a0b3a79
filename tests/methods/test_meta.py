"""MAML / first-order MAML / Reptile with torch.func against plain autograd references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dltricks.methods.meta import (
    MAML,
    Reptile,
    SinusoidTasks,
    adapt,
    episode_tasks,
    finetune_losses,
    params_of,
    sinusoid_mlp,
)
from dltricks.methods.metric import EpisodeSampler


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))


def _tasks(n: int = 3, seed: int = 0):
    return SinusoidTasks().sample(n, 5, 6, generator=torch.Generator().manual_seed(seed))


def _manual_sgd(net, x, y, lr, create_graph):
    """Reference inner step with torch.autograd.grad on the module's own parameters."""
    names, ps = zip(*net.named_parameters(), strict=True)
    loss = F.mse_loss(net(x), y)
    gs = torch.autograd.grad(loss, ps, create_graph=create_graph)
    return {n: p - lr * g for n, p, g in zip(names, ps, gs, strict=True)}


def test_inner_step_equals_manual_sgd_step():
    net, t = _net(), _tasks()
    params = params_of(net)
    got = adapt(net, params, t.xs[0], t.ys[0], F.mse_loss, lr=0.1, steps=1)
    ref = _manual_sgd(net, t.xs[0], t.ys[0], 0.1, create_graph=False)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k])
    assert adapt(net, params, t.xs[0], t.ys[0], F.mse_loss, 0.1, 0) is params


def _reference_meta_grads(net, tasks, lr, first_order):
    """Per-task loop, plain autograd, second order through create_graph=True."""
    names = [n for n, _ in net.named_parameters()]
    total = 0.0
    for i in range(len(tasks)):
        adapted = _manual_sgd(net, tasks.xs[i], tasks.ys[i], lr, create_graph=not first_order)
        if first_order:
            adapted = {k: v.detach().requires_grad_(True) for k, v in adapted.items()}
            q = F.mse_loss(functional_call(net, adapted, (tasks.xq[i],)), tasks.yq[i])
            g = torch.autograd.grad(q, [adapted[n] for n in names])
        else:
            q = F.mse_loss(functional_call(net, adapted, (tasks.xq[i],)), tasks.yq[i])
            g = torch.autograd.grad(q, list(net.parameters()))
        scaled = [gi / len(tasks) for gi in g]
        total = scaled if i == 0 else [a + b for a, b in zip(total, scaled, strict=True)]
    return dict(zip(names, total, strict=True))


@pytest.mark.parametrize("first_order", [False, True])
def test_vmapped_meta_gradient_equals_loop_reference(first_order):
    net, t = _net(1), _tasks(4, seed=1)
    maml = MAML(net, inner_lr=0.05, first_order=first_order)
    got, loss = maml.meta_gradients(t)
    ref = _reference_meta_grads(net, t, 0.05, first_order)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5)
    assert loss.ndim == 0 and math.isfinite(float(loss))


def test_first_order_differs_from_full_maml_when_curvature_matters():
    # large inner lr on a curved (tanh) network: the Hessian term is not negligible
    net, t = _net(2), _tasks(2, seed=2)
    full, _ = MAML(net, inner_lr=0.5).meta_gradients(t)
    fo, _ = MAML(net, inner_lr=0.5, first_order=True).meta_gradients(t)
    diff = sum((full[k] - fo[k]).norm() ** 2 for k in full).sqrt()
    norm = sum(full[k].norm() ** 2 for k in full).sqrt()
    assert diff > 0.05 * norm
    # and first-order MAML is exactly the query gradient taken at the adapted weights θ'
    ref = _reference_meta_grads(net, t, 0.5, first_order=True)
    for k in ref:
        torch.testing.assert_close(fo[k], ref[k], rtol=1e-4, atol=1e-5)


def test_maml_step_updates_parameters_and_lowers_post_adaptation_loss():
    torch.manual_seed(0)
    net = sinusoid_mlp(20)
    maml = MAML(net, inner_lr=0.01)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    tasks = SinusoidTasks()
    test = tasks.sample(20, 10, 20, generator=torch.Generator().manual_seed(99))
    before = finetune_losses(net, test, 0.01, 1)[1]
    for _ in range(60):
        maml.step(tasks.sample(5, 10, 10, generator=g), opt)
    assert finetune_losses(net, test, 0.01, 1)[1] < before


def test_reptile_step_equals_manual_interpolation():
    net, t = _net(3), _tasks(2, seed=3)
    start = {k: v.detach().clone() for k, v in net.named_parameters()}
    rep = Reptile(net, inner_lr=0.1, inner_steps=2, outer_lr=0.5)
    ref_nets = []
    for i in range(2):
        m = _net(3)
        x, y = torch.cat([t.xs[i], t.xq[i]]), torch.cat([t.ys[i], t.yq[i]])
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            F.mse_loss(m(x), y).backward()
            opt.step()
        ref_nets.append(dict(m.named_parameters()))
    rep.step(t)
    for k, p in net.named_parameters():
        mean = (ref_nets[0][k] + ref_nets[1][k]) / 2
        torch.testing.assert_close(p.detach(), start[k] + 0.5 * (mean - start[k]))


def test_sinusoid_tasks_share_amplitude_and_phase_between_support_and_query():
    t = SinusoidTasks(amplitude=(2.0, 2.0), phase=(0.5, 0.5)).sample(3, 4, 5)
    assert t.xs.shape == (3, 4, 1) and t.yq.shape == (3, 5, 1)
    torch.testing.assert_close(t.ys, 2.0 * torch.sin(t.xs - 0.5))
    torch.testing.assert_close(t.yq, 2.0 * torch.sin(t.xq - 0.5))
    big = SinusoidTasks().sample(200, 10, 1)
    assert big.ys.abs().max() <= 5.0 and big.xs.min() >= -5 and big.xs.max() <= 5
    with pytest.raises(ValueError, match="amplitude"):
        SinusoidTasks(amplitude=(5.0, 1.0))


def test_finetune_losses_start_at_the_model_and_leave_it_unchanged():
    net, t = _net(4), _tasks(3, seed=4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    curve = finetune_losses(net, t, lr=0.05, steps=3)
    with torch.no_grad():
        ref0 = torch.stack([F.mse_loss(net(t.xq[i]), t.yq[i]) for i in range(3)]).mean()
    assert len(curve) == 4 and abs(curve[0] - float(ref0)) < 1e-5
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    # one fine-tuning step per task equals the manual SGD step
    adapted = _manual_sgd(net, t.xs[0], t.ys[0], 0.05, create_graph=False)
    manual = F.mse_loss(functional_call(net, adapted, (t.xq[0],)), t.yq[0])
    one = finetune_losses(net, t.task(0), lr=0.05, steps=1)[1]
    assert abs(one - float(manual.detach())) < 1e-5


def test_batchnorm_models_are_refused():
    with pytest.raises(ValueError, match="BatchNorm"):
        MAML(nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4)))


def test_maml_on_classification_episodes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 4, generator=g)[torch.arange(6).repeat_interleave(10)]
    x = x + 0.05 * torch.randn(x.shape, generator=g)
    y = torch.arange(6).repeat_interleave(10)
    tasks = episode_tasks(EpisodeSampler((x, y), 3, 2, 4, seed=0), 5)
    assert tasks.xs.shape == (5, 6, 1, 4) and tasks.yq.shape == (5, 12)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(1), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    maml = MAML(net, loss_fn=F.cross_entropy, inner_lr=0.5, inner_steps=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = maml.step(tasks, opt)
    for _ in range(30):
        last = maml.step(tasks, opt)
    assert last < first
