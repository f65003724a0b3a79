"""Early exit (dynamic depth) on the Mamba classifier and LM: threshold 1 equals the full model,
lower thresholds use fewer layers, exited inputs get their exit's prediction, the auxiliary loss
is the weighted sum of the exits' losses and reaches the optimiser through the Trainer."""

import pytest
import torch
import torch.nn.functional as F

from dltricks.models import create_model
from dltricks.models.early_exit import (
    confidence,
    exit_layer_indices,
    exit_loss,
    exit_loss_weights,
)


def test_exit_placement_and_weights():
    assert exit_layer_indices(4, exit_every=1) == (0, 1, 2)  # the last layer is the model head
    assert exit_layer_indices(6, exit_every=2) == (1, 3)
    assert exit_layer_indices(4) == ()
    assert exit_layer_indices(4, exit_layers=[0, -2, -1]) == (0, 2)
    with pytest.raises(ValueError, match="out of range"):
        exit_layer_indices(3, exit_layers=[5])
    assert exit_loss_weights((0, 2), 4, "linear") == (0.25, 0.75)  # CALM: ∝ depth
    assert exit_loss_weights((0, 2), 4) == (1.0, 1.0)
    assert exit_loss_weights((0, 2), 4, [0.3, 0.5]) == (0.3, 0.5)
    with pytest.raises(ValueError, match="one loss weight per"):
        exit_loss_weights((0, 2), 4, [0.3])
    with pytest.raises(ValueError, match="Unknown exit loss weighting"):
        exit_loss_weights((0,), 4, "cubic")


def _classifier(**kw):
    torch.manual_seed(0)
    base = dict(in_channels=2, num_classes=5, dim=16, n_layers=3, d_state=4)
    return create_model("mamba_classifier", **{**base, **kw}).eval()


@pytest.mark.parametrize("extra", [{}, {"attn_every": 1, "num_heads": 2}])
def test_threshold_one_equals_the_full_model(extra):
    ee = _classifier(exit_every=1, **extra)
    plain = _classifier(**extra)
    missing, unexpected = plain.load_state_dict(ee.state_dict(), strict=False)
    assert not missing and all(k.startswith("exit_heads.") for k in unexpected)
    x = torch.randn(6, 2, 20)
    with torch.no_grad():
        out, depth = ee(x, return_depth=True)
        assert torch.equal(out, plain(x))
    assert torch.equal(depth, torch.full((6,), 3)) and ee.average_depth == 3.0


def test_lower_thresholds_use_fewer_layers_and_exits_give_their_own_prediction():
    model = _classifier(exit_every=1)
    x = torch.randn(64, 2, 20)
    with torch.no_grad():
        h = model.embed(x.transpose(1, 2))
        hidden = []
        for layer in model.backbone.layers:
            h = layer(h)
            hidden.append(h)
        exit0, exit1 = model.exit_heads[0](hidden[0]), model.exit_heads[1](hidden[1])
        final = model.head(model.backbone.norm_f(hidden[2]).mean(1))
        c0, c1 = confidence(exit0), confidence(exit1)
        # thresholds from the confidences themselves, so that some but not all inputs exit
        thresholds = [1.0, float(torch.quantile(torch.cat([c0, c1]), 0.75)),
                      float(torch.quantile(torch.cat([c0, c1]), 0.25)), 0.0]
        depths = []
        for t in thresholds:
            model.set_exit_threshold(t)
            out, depth = model(x, return_depth=True)
            want_depth = torch.where(c0 >= t, 1, torch.where(c1 >= t, 2, 3))
            assert torch.equal(depth, want_depth) or t >= 1.0
            want = torch.where((depth == 1)[:, None], exit0,
                               torch.where((depth == 2)[:, None], exit1, final))
            torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
            depths.append(model.average_depth)
    assert depths[0] == 3.0 and depths[-1] == 1.0  # threshold 0: everyone leaves at layer 1
    assert 1.0 < depths[2] < depths[1] < 3.0  # fewer layers at every lower threshold


def test_auxiliary_loss_is_the_weighted_sum_of_the_exit_losses():
    model = _classifier(n_layers=4, exit_layers=[0, 2], exit_loss_weights="linear").train()
    x, y = torch.randn(8, 2, 12), torch.randint(0, 5, (8,))
    out = model(x, return_exits=True)
    h = model.embed(x.transpose(1, 2))
    hidden = []
    for layer in model.backbone.layers:
        h = layer(h)
        hidden.append(h)
    want = (0.25 * F.cross_entropy(model.exit_heads[0](hidden[0]), y)
            + 0.75 * F.cross_entropy(model.exit_heads[1](hidden[2]), y))
    torch.testing.assert_close(exit_loss(out, y, F.cross_entropy), want)
    assert isinstance(model(x), torch.Tensor)  # nothing returned (or kept) unless asked
    plain = _classifier().train()
    assert exit_loss(plain(x, return_exits=True), y, F.cross_entropy) is None


def test_lm_per_token_exit():
    torch.manual_seed(0)
    lm = create_model("mamba_lm", vocab_size=11, dim=16, n_layers=3, d_state=4,
                      exit_every=1).eval()
    plain = create_model("mamba_lm", vocab_size=11, dim=16, n_layers=3, d_state=4).eval()
    plain.load_state_dict(lm.state_dict())  # the LM's exits share its norm and head
    tokens = torch.randint(0, 11, (2, 7))
    with torch.no_grad():
        assert torch.equal(lm(tokens), plain(tokens))
        assert lm.last_depth.shape == (2, 7) and lm.average_depth == 3.0
        lm.set_exit_threshold(0.0)
        out, depth = lm(tokens, return_depth=True)
        h = lm.backbone.layers[0](lm.backbone.embeddings(tokens))
        torch.testing.assert_close(out, lm.lm_head(lm.backbone.norm_f(h)))
        assert torch.equal(depth, torch.ones(2, 7, dtype=torch.long))
        lm.set_exit_threshold(float(confidence(out).median()))
        lm(tokens)
        assert 1.0 < lm.average_depth < 3.0
    with pytest.raises(ValueError, match="exit_threshold"):
        lm.set_exit_threshold(-0.1)


def test_exit_heads_train_through_the_trainer(tmp_path, monkeypatch):
    from dltricks.data import create_dataset
    from dltricks.train.recipe import recipe_from_dict
    from dltricks.train.trainer import Trainer

    data = create_dataset("mnist1d", seed=0, num_samples=200)
    recipe = recipe_from_dict({
        "name": "ee", "data": {"name": "mnist1d", "batch_size": 32},
        "model": {"name": "mamba_classifier",
                  "kwargs": {"dim": 16, "n_layers": 2, "d_state": 4, "exit_every": 1}},
        "optimizer": {"name": "adamw", "lr": 1e-2}, "train": {"steps": 2},
    })

    def exit_head_change(run: str) -> float:
        t = Trainer(recipe, tmp_path / run, data=data, tensorboard=False)
        before = [p.detach().clone() for p in t.model.exit_heads.parameters()]
        t.fit()
        return sum(float((p.detach() - b).abs().sum())
                   for p, b in zip(t.model.exit_heads.parameters(), before, strict=True))

    assert exit_head_change("with_aux") > 0
    # without the engine's exit loss the exit heads get no gradient at all
    monkeypatch.setattr(Trainer, "_exit_loss", lambda self, out, target: None)
    assert exit_head_change("without_aux") == 0
