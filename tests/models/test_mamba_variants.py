"""The Mamba variants come from one factory: the class's signature with other defaults."""

import inspect

import pytest
import torch

from dltricks.models import create_model
from dltricks.models.mamba import MambaClassifier, MambaLM
from dltricks.models.registry import model_signature


@pytest.mark.parametrize(("name", "cls"), [
    ("mamba_lm", MambaLM), ("mamba_hybrid_lm", MambaLM),
    ("mamba_classifier", MambaClassifier), ("mamba_hybrid_classifier", MambaClassifier)])
def test_variant_signature_is_the_class_signature(name, cls):
    sig, base = model_signature(name), inspect.signature(cls)
    assert list(sig.parameters) == list(base.parameters)
    hybrid = "hybrid" in name
    for p in sig.parameters.values():
        expected = {"n_layers": 4, "attn_every": 3}.get(p.name, base.parameters[p.name].default) \
            if hybrid else base.parameters[p.name].default
        assert p.default == expected, p.name


def test_variant_builds_the_same_network_as_the_class():
    kw = dict(vocab_size=11, dim=16, d_state=4, attn_layers=[1], num_heads=2, scan_backend="ref")
    torch.manual_seed(0)
    a = create_model("mamba_hybrid_lm", **kw)  # explicit layers replace attn_every=3
    torch.manual_seed(0)
    b = MambaLM(n_layers=4, **kw)
    x = torch.randint(0, 11, (2, 7))
    assert [type(layer).__name__ for layer in a.backbone.layers] == \
        [type(layer).__name__ for layer in b.backbone.layers]
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_hybrid_default_layout_and_by_name_errors():
    clf = create_model("mamba_hybrid_classifier", in_channels=1, num_classes=3, dim=16,
                       num_heads=2, d_state=4)
    kinds = [type(layer).__name__ for layer in clf.backbone.layers]
    assert kinds == ["MambaLayer", "MambaLayer", "AttentionLayer", "MambaLayer"]  # M M A M
    with pytest.raises(ValueError, match="does not accept 'width'"):
        create_model("mamba_lm", vocab_size=5, width=3)
    with pytest.raises(ValueError, match="not both"):
        create_model("mamba_hybrid_lm", vocab_size=5, attn_every=1, attn_layers=[0])


@pytest.mark.parametrize(("name", "cell"), [("gru_tagger", torch.nn.GRU),
                                            ("lstm_tagger", torch.nn.LSTM),
                                            ("gru_classifier", torch.nn.GRU),
                                            ("lstm_classifier", torch.nn.LSTM)])
def test_recurrent_variants_fix_their_cell_through_the_same_factory(name, cell):
    """The GRU/LSTM models are variants with the cell fixed: their signature is the class's
    without ``cell``, and a caller cannot switch the cell of a named variant."""
    from dltricks.models.rnn import RecurrentClassifier, RecurrentTagger

    cls = RecurrentTagger if "tagger" in name else RecurrentClassifier
    base = inspect.signature(cls)
    assert list(model_signature(name).parameters) == [p for p in base.parameters if p != "cell"]
    kw = dict(vocab_size=7, num_classes=3) if "tagger" in name else dict(in_channels=2,
                                                                          num_classes=3)
    assert isinstance(create_model(name, dim=8, **kw).rnn, cell)
    with pytest.raises(ValueError, match="does not accept 'cell'"):
        create_model(name, cell="gru", **kw)


def test_register_variant_rejects_arguments_the_class_lacks():
    from dltricks.models.registry import register_variant

    with pytest.raises(ValueError, match=r"has no arguments \['width'\]"):
        register_variant("never_registered", MambaLM, "doc", fixed={"width": 3})
