"""Schedules against hand-computed closed forms, PyTorch's OneCycleLR, and a resume round-trip."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from dltricks.train.recipe import ScheduleConfig
from dltricks.train.schedules import build_scheduler, lr_curve, lr_factor


def _f(step, total=100, **kw):
    return lr_factor(ScheduleConfig(**kw), step, total)


def test_warmup_is_linear():
    kw = dict(name="constant", warmup_steps=10, warmup_start_factor=0.1)
    assert [_f(s, **kw) for s in (0, 5, 9, 10, 50)] == pytest.approx([0.1, 0.55, 0.91, 1, 1])
    # default start factor 0: step k of 4 warmup steps -> k/4
    assert [_f(s, warmup_steps=4) for s in range(5)] == pytest.approx([0, 0.25, 0.5, 0.75, 1])


def test_step_decay_boundaries():
    kw = dict(name="step", step_size=10, gamma=0.5)
    assert [_f(s, **kw) for s in (0, 9, 10, 19, 20, 99)] == pytest.approx(
        [1, 1, 0.5, 0.5, 0.25, 0.5**9]
    )


def test_multistep_counts_after_warmup():
    kw = dict(name="multistep", milestones=[10, 30], gamma=0.1, warmup_steps=5)
    assert [_f(s, **kw) for s in (5, 14, 15, 34, 35, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )


def test_cosine_values():
    kw = dict(name="cosine", min_factor=0.2)
    assert _f(0, **kw) == pytest.approx(1.0)
    assert _f(50, **kw) == pytest.approx(0.6)  # halfway: (1 + min) / 2
    assert _f(25, **kw) == pytest.approx(0.2 + 0.4 * (1 + math.sqrt(0.5)))
    assert _f(100, **kw) == pytest.approx(0.2)
    assert _f(500, **kw) == pytest.approx(0.2)  # clamped past the end
    # with warmup the cosine starts after it: halfway of the remaining 80 steps is step 60
    assert _f(60, warmup_steps=20, **kw) == pytest.approx(0.6)
    assert _f(20, warmup_steps=20, **kw) == pytest.approx(1.0)


def test_onecycle_start_peak_end():
    kw = dict(name="onecycle", pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
    assert _f(0, **kw) == pytest.approx(1 / 25)
    assert _f(29, **kw) == pytest.approx(1.0)  # peak at pct_start * T - 1
    assert _f(99, **kw) == pytest.approx(1 / 25 / 1e4)  # minimum on the last step
    assert _f(120, **kw) == pytest.approx(1 / 25 / 1e4)
    # halfway through the fall, s = 29 + (99 - 29) / 2 = 64: the mean of peak and end
    assert _f(64, **kw) == pytest.approx((1 + 4e-6) / 2)


@pytest.mark.parametrize("total,pct", [(100, 0.3), (37, 0.25), (10, 0.5)])
def test_onecycle_matches_torch(total, pct):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.5)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=0.5,
        total_steps=total,
        pct_start=pct,
        div_factor=10.0,
        final_div_factor=100.0,
        anneal_strategy="cos",
        three_phase=False,
        cycle_momentum=False,
    )
    torch_lrs = []
    for _ in range(total):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    cfg = ScheduleConfig(name="onecycle", pct_start=pct, div_factor=10.0, final_div_factor=100.0)
    assert lr_curve(cfg, total, 0.5) == pytest.approx(torch_lrs, rel=1e-9, abs=1e-15)


def test_validation_errors():
    with pytest.raises(ValueError, match="total_steps must be positive"):
        _f(0, total=0)
    with pytest.raises(ValueError, match=r"schedule\.warmup_steps \(10\) must be smaller"):
        _f(0, total=10, warmup_steps=10)
    with pytest.raises(ValueError, match="step must be"):
        _f(-1)


def test_lr_curve_scales_factor():
    cfg = ScheduleConfig(name="cosine", warmup_steps=3)
    curve = lr_curve(cfg, 12, 0.2)
    assert len(curve) == 12
    assert curve == pytest.approx([0.2 * lr_factor(cfg, s, 12) for s in range(12)])
    assert max(curve) == pytest.approx(0.2)


def test_scheduler_state_roundtrip_weights_only():
    cfg = ScheduleConfig(name="cosine", warmup_steps=5, warmup_start_factor=0.1, min_factor=0.05)
    total, base = 40, 0.3

    def make():
        p = nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([p], lr=base)
        return p, opt, build_scheduler(opt, cfg, total)

    p, opt, sched = make()
    assert opt.param_groups[0]["lr"] == pytest.approx(base * 0.1)
    for _ in range(17):
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["sched"]["lr_lambdas"][0]["total_steps"] == total

    p2, opt2, sched2 = make()
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(base * lr_factor(cfg, 17, total))
    for step in range(18, total):
        for q, o, s in ((p, opt, sched), (p2, opt2, sched2)):
            q.grad = torch.ones_like(q)
            o.step()
            s.step()
        assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())
        assert opt2.param_groups[0]["lr"] == pytest.approx(base * lr_factor(cfg, step, total))
