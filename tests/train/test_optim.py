"""Parameter groups and one-parameter optimizer steps checked against hand-written updates."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dltricks.train.optim import build_optimizer, param_groups
from dltricks.train.recipe import OptimizerConfig


class ScaleNorm(nn.Module):
    """A custom norm with a 2-D parameter: excluded by its class name only."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, dim))

    def forward(self, x):
        return self.g * x / x.norm(dim=-1, keepdim=True)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)  # weight decay, bias no
        self.bn = nn.BatchNorm2d(4)  # weight, bias: no
        self.fc = nn.Linear(4, 5)  # weight decay, bias no
        self.ln = nn.LayerNorm(5)  # no, no
        self.sn = ScaleNorm(5)  # g (1, 5): no
        self.emb = nn.Embedding(7, 5)  # weight decay
        self.tied = self.emb  # shared: counted once
        self.frozen = nn.Linear(5, 5)  # skipped
        self.frozen.requires_grad_(False)
        self.gain = nn.Parameter(torch.ones(5))  # 1-D: no


def _ids(ps):
    return {id(p) for p in ps}


def test_param_groups_split_by_hand():
    m = Net()
    groups = param_groups(m, 0.05)
    by_name = {g["name"]: g for g in groups}
    assert by_name["decay"]["weight_decay"] == 0.05
    assert by_name["no_decay"]["weight_decay"] == 0.0
    assert _ids(by_name["decay"]["params"]) == _ids([m.conv.weight, m.fc.weight, m.emb.weight])
    no = [m.conv.bias, m.bn.weight, m.bn.bias, m.fc.bias, m.ln.weight, m.ln.bias, m.sn.g, m.gain]
    assert _ids(by_name["no_decay"]["params"]) == _ids(no)
    assert len(by_name["decay"]["params"]) == 3 and len(by_name["no_decay"]["params"]) == 8


def test_param_groups_all_decayed_and_empty_dropped():
    m = Net()
    (g,) = param_groups(m, 0.1, no_decay_bias_norm=False)
    assert len(g["params"]) == 11 and g["weight_decay"] == 0.1
    (g,) = param_groups(nn.LayerNorm(3), 0.1)  # only no-decay params: decay group dropped
    assert g["name"] == "no_decay" and len(g["params"]) == 2


def test_rmsnorm_by_class():
    m = nn.Sequential(nn.Linear(4, 4, bias=False), nn.RMSNorm(4))
    g = {g["name"]: g for g in param_groups(m, 0.1)}
    assert _ids(g["no_decay"]["params"]) == {id(m[1].weight)}


def test_no_trainable_params_raises():
    m = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters"):
        build_optimizer(m, OptimizerConfig())


# --------------------------------------------------------------------------- single-param steps

W0, G1, G2, LR, WD = 2.0, 0.5, -1.5, 0.1, 0.01


def _run(cfg: OptimizerConfig) -> list[float]:
    """Two steps on a (1, 1) weight (decayed) with gradients G1 then G2; returns weights."""
    m = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        m.weight.fill_(W0)
    opt = build_optimizer(m, cfg)
    out = []
    for g in (G1, G2):
        m.weight.grad = torch.full_like(m.weight, g)
        opt.step()
        out.append(m.weight.item())
    return out


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum(nesterov):
    mu = 0.9
    got = _run(OptimizerConfig(name="sgd", lr=LR, momentum=mu, nesterov=nesterov, weight_decay=WD))
    w, buf, exp = W0, None, []
    for g in (G1, G2):
        g = g + WD * w
        buf = g if buf is None else mu * buf + g
        w -= LR * (g + mu * buf if nesterov else buf)
        exp.append(w)
    assert got == pytest.approx(exp, abs=1e-12)
    # first step by hand: g = 0.5 + 0.02 = 0.52; plain: 2 - 0.052; nesterov: 2 - 0.1 * 1.9 * 0.52
    assert got[0] == pytest.approx(1.9012 if nesterov else 1.948, abs=1e-12)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_and_adamw(decoupled):
    b1, b2, eps = 0.9, 0.999, 1e-8
    cfg = OptimizerConfig(name="adamw" if decoupled else "adam", lr=LR, weight_decay=WD)
    got = _run(cfg)
    w, m, v, exp = W0, 0.0, 0.0, []
    for t, g in enumerate((G1, G2), start=1):
        if decoupled:
            w *= 1 - LR * WD
        else:
            g = g + WD * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
        w -= LR * mhat / (math.sqrt(vhat) + eps)
        exp.append(w)
    assert got == pytest.approx(exp, abs=1e-12)
    # Adam's first step moves by ~lr whatever the gradient's size
    step = W0 * (1 - LR * WD) - got[0] if decoupled else W0 - got[0]
    assert step == pytest.approx(LR, rel=1e-6)


@pytest.mark.parametrize("mu", [0.0, 0.9])
def test_rmsprop(mu):
    alpha, eps = 0.99, 1e-8
    got = _run(OptimizerConfig(name="rmsprop", lr=LR, alpha=alpha, momentum=mu, weight_decay=WD))
    w, v, buf, exp = W0, 0.0, 0.0, []
    for g in (G1, G2):
        g = g + WD * w
        v = alpha * v + (1 - alpha) * g * g
        d = g / (math.sqrt(v) + eps)
        if mu:
            buf = mu * buf + d
            d = buf
        w -= LR * d
        exp.append(w)
    assert got == pytest.approx(exp, abs=1e-12)


def test_bias_not_decayed_in_adamw():
    m = nn.Linear(1, 1).double()
    with torch.no_grad():
        m.bias.fill_(3.0)
    opt = build_optimizer(m, OptimizerConfig(name="adamw", lr=0.1, weight_decay=0.5))
    m.weight.grad = torch.zeros_like(m.weight)
    m.bias.grad = torch.zeros_like(m.bias)
    w0 = m.weight.item()
    opt.step()
    assert m.bias.item() == 3.0  # zero gradient, no decay: unchanged
    assert m.weight.item() == pytest.approx(w0 * (1 - 0.1 * 0.5))
