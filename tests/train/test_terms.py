"""Loss terms: the extension point of the loop (distillation, semi-supervised, domain adaptation).

Two tiny working terms prove the contract: an L2 penalty (its gradient is closed form: the run
equals SGD with decoupled-free weight decay) and a stream-consuming term with a trainable module
and state of its own (deterministic draws, exact resume after an interruption).
"""

from importlib.metadata import EntryPoint

import pytest
import torch
from torch import nn

from dltricks.data import create_dataset
from dltricks.train import terms as T
from dltricks.train.recipe import RecipeError, recipe_from_dict
from dltricks.train.run import read_metrics
from dltricks.train.trainer import Trainer, TrainingInterrupted


class L2Term(T.LossTerm):
    """``0.5 * sum ||p||^2`` over the model's parameters (its gradient is ``p``)."""

    def __call__(self, step: T.StepContext) -> torch.Tensor:
        return 0.5 * sum((p**2).sum() for p in step.model.parameters())


class StreamTerm(T.LossTerm):
    """Draws a batch of an extra stream each micro-batch, scores it with a small trainable head on
    the model's logits (a stand-in for a domain discriminator), and counts its calls."""

    def __init__(self, batch_size: int = 16, scale: float = 1.0) -> None:
        self.batch_size, self.scale = batch_size, scale
        self.calls = 0
        self.seen: list[torch.Tensor] = []

    def setup(self, ctx: T.TermContext) -> None:
        k = ctx.data.num_classes
        self.head = nn.Linear(k, 1).to(ctx.device)
        ctx.add_stream("unlabelled", ctx.data.val.x, batch_size=self.batch_size)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"head": self.head}

    def __call__(self, step: T.StepContext) -> dict[str, torch.Tensor]:
        u, none = step.batch("unlabelled")
        assert none is None and u.device == step.device
        self.seen.append(u.flatten(1)[:, :4].clone())
        logits = step.forward(u).logits
        self.calls += 1
        return {"head": self.scale * self.head(logits.softmax(-1)).pow(2).mean(),
                "entropy": -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1).mean()}

    def on_step_end(self, step: T.StepContext) -> None:
        assert step.step >= 1

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = state["calls"]


@pytest.fixture(autouse=True)
def registered():
    T.register_term("l2_test", L2Term)
    T.register_term("stream_test", StreamTerm)
    yield
    T.unregister_term("l2_test")
    T.unregister_term("stream_test")


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits", seed=0)


def make(objectives=(), **sections):
    base = {
        "name": "t",
        "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
        "data": {"name": "digits", "batch_size": 32},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "train": {"steps": 6, "log_every_steps": 2},
        "objectives": list(objectives),
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return recipe_from_dict(base)


def test_l2_term_equals_sgd_weight_decay(tmp_path, digits):
    """The term's loss reaches the gradient with its recipe weight: an L2 term of weight λ gives
    exactly SGD with weight_decay=λ on every parameter (closed form: ∇ 0.5λ||p||² = λp)."""
    lam = 0.3
    with_term = Trainer(make([{"name": "l2_test", "weight": lam}]), tmp_path / "a", data=digits)
    with_term.fit()
    decay = Trainer(make(optimizer={"weight_decay": lam, "no_decay_bias_norm": False}),
                    tmp_path / "b", data=digits)
    decay.fit()
    plain = Trainer(make(), tmp_path / "c", data=digits)
    plain.fit()
    for (n, a), b, c in zip(with_term.model.state_dict().items(),
                            decay.model.state_dict().values(),
                            plain.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)
        assert not torch.allclose(a, c), n  # the term did change the training
    logged = [r for r in read_metrics(tmp_path / "a") if r["split"] == "train"]
    assert logged and all(r["term/l2_test"] > 0 for r in logged)
    assert all("term/l2_test" not in r for r in read_metrics(tmp_path / "c"))


def test_stream_batches_are_deterministic_full_passes():
    x = torch.arange(50.0)[:, None]
    s = T.Stream("u", x, None, batch_size=10, seed=3)
    first = torch.cat([s.next()[0] for _ in range(5)]).flatten()
    assert sorted(first.tolist()) == list(range(50))  # one pass: every sample once
    second = torch.cat([s.next()[0] for _ in range(5)]).flatten()
    assert sorted(second.tolist()) == list(range(50)) and not torch.equal(first, second)
    again = T.Stream("u", x, None, batch_size=10, seed=3)
    assert torch.equal(torch.cat([again.next()[0] for _ in range(5)]).flatten(), first)
    other = T.Stream("v", x, None, batch_size=10, seed=3)  # the name is part of the seed
    assert not torch.equal(torch.cat([other.next()[0] for _ in range(5)]).flatten(), first)
    # two processes take disjoint halves of the same global batch
    r0 = T.Stream("u", x, None, batch_size=10, seed=3, rank=0, world_size=2)
    r1 = T.Stream("u", x, None, batch_size=10, seed=3, rank=1, world_size=2)
    assert torch.equal(torch.cat([r0.next()[0], r1.next()[0]]).flatten(), first[:10])
    with pytest.raises(ValueError, match="batch_size 60"):
        T.Stream("u", x, None, batch_size=60, seed=0)


def test_stream_term_trains_its_module_and_resumes_exactly(tmp_path, digits):
    r = make([{"name": "stream_test", "weight": 0.5, "kwargs": {"batch_size": 16}}],
             model={"kwargs": {"hidden": [16], "dropout": 0.2}},
             train={"steps": 12, "checkpoint": {"every_steps": 4}})
    full = Trainer(r, tmp_path / "full", data=digits)
    head0 = full.terms[0].term.head.weight.detach().clone()
    s_full = full.fit()
    term = full.terms[0].term
    assert term.calls == 12 and not torch.equal(term.head.weight, head0)  # the optimizer has it
    assert "term/stream_test/head" in read_metrics(tmp_path / "full")[0]
    with pytest.raises(TrainingInterrupted):
        Trainer(r, tmp_path / "cut", data=digits, max_steps_this_call=5).fit()
    resumed = Trainer(r, tmp_path / "cut", data=digits, resume=True)
    rterm = resumed.terms[0].term
    assert rterm.calls == 5 and resumed.components.streams["unlabelled"].draws == 5
    s_cut = resumed.fit()
    assert s_cut["test"] == s_full["test"]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert torch.equal(term.head.weight, rterm.head.weight)
    assert rterm.calls == 12
    # the stream batches of steps 6..12 are those of the uninterrupted run
    assert all(torch.equal(a, b) for a, b in zip(term.seen[5:], rterm.seen, strict=True))


def test_unknown_objective_and_bad_kwargs_are_sentences(tmp_path, digits):
    with pytest.raises(ValueError, match=r"Unknown objective 'nope'; known objectives: .*l2_test"):
        Trainer(make([{"name": "nope"}]), tmp_path / "a", data=digits)
    with pytest.raises(ValueError, match=r"objectives\[0\] \(stream_test\) kwargs: unknown key "
                                         r"'batchsize'; allowed: batch_size, scale"):
        Trainer(make([{"name": "stream_test", "kwargs": {"batchsize": 8}}]), tmp_path / "b",
                data=digits)
    with pytest.raises(ValueError, match=r"scale='big' is not valid.*expected float"):
        Trainer(make([{"name": "stream_test", "kwargs": {"scale": "big"}}]), tmp_path / "c",
                data=digits)
    with pytest.raises(RecipeError, match=r"unknown key 'objectives\[0\]\.wieght'.*Allowed keys "
                                          r"here: name, weight, kwargs"):
        make([{"name": "l2_test", "wieght": 1.0}])


def test_a_term_must_return_scalars(tmp_path, digits):
    class Bad(T.LossTerm):
        def __call__(self, step):
            return step.outputs.logits  # (B, K), not a scalar

    T.register_term("bad_test", Bad)
    try:
        with pytest.raises(ValueError, match="must return a scalar tensor"):
            Trainer(make([{"name": "bad_test"}]), tmp_path / "a", data=digits).fit()
    finally:
        T.unregister_term("bad_test")


def test_terms_resolve_through_entry_points(monkeypatch):
    ep = EntryPoint(name="ep_l2", value=f"{__name__}:L2Term", group=T.ENTRY_POINT_GROUP)
    monkeypatch.setattr(T, "entry_points", lambda group: [ep] if group == ep.group else [])
    assert "ep_l2" in T.known_terms() and T.resolve_term("ep_l2") is L2Term
    broken = EntryPoint(name="broken", value="no_such_module_xyz:Term", group=ep.group)
    monkeypatch.setattr(T, "entry_points", lambda group: [broken])
    with pytest.raises(ValueError, match=r"'broken' .*failed to load"):
        T.resolve_term("broken")


def test_the_docs_example_term_runs(tmp_path, monkeypatch):
    """docs/training.md "Extending the loop" ends with a complete example: it must run as
    written, and its term must reach the log."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    section = doc[doc.index("## Extending the loop"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[: code.index("```")]
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, "docs/training.md", "exec"), {"__name__": "docs_example"})
    finally:
        T.unregister_term("consistency")
    records = [r for r in read_metrics(tmp_path / "runs" / "consistency")
               if r["split"] == "train"]
    assert [r["step"] for r in records] == [10, 20, 30]
    assert all(r["term/consistency"] > 0 for r in records)
