"""Mamba: published initialisation, causality, recurrent step = full forward, generation,
training through the engine, and loading a Hugging Face checkpoint."""

import math

import pytest
import torch

from dltricks.models.mamba import MambaLM
from dltricks.nn.ssm.mamba_block import MambaBlock


def test_block_defaults_and_published_initialisation():
    blk = MambaBlock(dim=40)
    assert blk.d_inner == 80 and blk.d_state == 16 and blk.d_conv == 4
    assert blk.dt_rank == math.ceil(40 / 16)
    # S4D-real: A = -(1..N) in every channel
    torch.testing.assert_close(-torch.exp(blk.A_log), -torch.arange(1, 17.0).repeat(80, 1))
    assert torch.equal(blk.D, torch.ones(80))
    dt = torch.nn.functional.softplus(blk.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6  # log-uniform in [dt_min, dt_max]
    assert blk.dt_proj.weight.abs().max() <= blk.dt_rank**-0.5
    with pytest.raises(ValueError, match="dt_min"):
        MambaBlock(dim=8, dt_min=0.5, dt_max=0.1)


def test_block_is_causal():
    torch.manual_seed(0)
    blk = MambaBlock(dim=8, d_state=4)
    h = torch.randn(1, 12, 8)
    h2 = h.clone()
    h2[:, 7:] += torch.randn(1, 5, 8)
    a, b = blk(h), blk(h2)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


@pytest.mark.parametrize("backend", ["cpu", "ref"])
def test_recurrent_step_equals_full_forward(backend):
    torch.manual_seed(0)
    lm = MambaLM(vocab_size=13, dim=16, n_layers=2, d_state=4, scan_backend=backend).eval()
    tokens = torch.randint(0, 13, (2, 10))
    full = lm(tokens)
    states = lm.init_state(2)
    steps = torch.stack([lm.step(tokens[:, t], states) for t in range(10)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "ref"])
@pytest.mark.parametrize("prompt_len", [1, 3, 9])  # shorter than, and longer than, d_conv = 4
def test_prefill_leaves_the_states_of_stepping_and_decoding_continues_the_forward(
        backend, prompt_len):
    torch.manual_seed(0)
    lm = MambaLM(vocab_size=13, dim=16, n_layers=2, d_state=4, scan_backend=backend).eval()
    tokens = torch.randint(0, 13, (2, prompt_len + 4))
    full = lm(tokens)
    with torch.no_grad():
        logits, states = lm.prefill(tokens[:, :prompt_len])
        stepped = lm.init_state(2)
        for t in range(prompt_len):
            lm.step(tokens[:, t], stepped)
        for got, want in zip(states, stepped, strict=True):
            torch.testing.assert_close(got.conv, want.conv, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got.ssm, want.ssm, rtol=1e-4, atol=1e-5)
        rest = [lm.step(tokens[:, t], states) for t in range(prompt_len, tokens.shape[1])]
    torch.testing.assert_close(logits, full[:, :prompt_len], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.stack(rest, 1), full[:, prompt_len:], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="batch, length"):
        lm.prefill(tokens[0])


def test_greedy_generation_continues_the_full_forward_argmax():
    torch.manual_seed(1)
    lm = MambaLM(vocab_size=9, dim=16, n_layers=1, d_state=4).eval()
    prompt = torch.randint(0, 9, (2, 5))
    out = lm.generate(prompt, max_new_tokens=6)
    assert out.shape == (2, 11) and torch.equal(out[:, :5], prompt)
    for t in range(5, 11):  # each generated token is the argmax of the full forward before it
        assert torch.equal(out[:, t], lm(out[:, :t])[:, -1].argmax(-1))
    g = torch.Generator().manual_seed(0)
    sampled = lm.generate(prompt, 4, temperature=1.0, top_k=3, generator=g)
    assert sampled.shape == (2, 9) and int(sampled.max()) < 9


def test_tied_embeddings():
    lm = MambaLM(vocab_size=7, dim=8, n_layers=1)
    assert lm.lm_head.weight is lm.backbone.embeddings.weight


def test_mamba_learns_selective_copying_through_the_engine(tmp_path):
    from dltricks.data import create_dataset
    from dltricks.train.recipe import recipe_from_dict
    from dltricks.train.trainer import Trainer

    data = create_dataset("selective_copying", seed=0, n_samples=1000, seq_len=24,
                          n_memorize=4, vocab_size=8)
    r = recipe_from_dict({
        "name": "mamba_copy", "model": {"name": "mamba_lm", "kwargs": {"dim": 32, "n_layers": 2}},
        "data": {"name": "selective_copying", "batch_size": 32},
        "optimizer": {"name": "adamw", "lr": 1e-2}, "train": {"epochs": 12},
    })
    s = Trainer(r, tmp_path / "r", data=data, tensorboard=False).fit()
    chance = 1 / 6  # six data tokens
    assert s["test"]["token_accuracy"] > 3 * chance  # measured 0.72 at 15 epochs
