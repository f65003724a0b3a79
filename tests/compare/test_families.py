"""Model families are built at matched parameter counts."""

import pytest

from dltricks.models.families import FAMILIES, count_params, model_spec


@pytest.mark.parametrize("kind,data", [("lm", {"vocab_size": 16}),
                                       ("classifier", {"num_classes": 10, "in_channels": 1})])
@pytest.mark.parametrize("dim,depth", [(32, 2), (64, 4)])
def test_transformers_match_mamba_parameters(kind, data, dim, depth):
    mamba = model_spec("mamba", kind, dim, depth, **data)
    target = count_params(mamba["name"], {**mamba["kwargs"], **data})
    for fam in ("transformer", "transformer_abs"):
        spec = model_spec(fam, kind, dim, depth, **data)
        n = count_params(spec["name"], {**spec["kwargs"], **data})
        assert abs(n - target) / target < 0.01, (fam, n, target)
        assert spec["kwargs"]["dim"] == dim


def test_unknown_family_and_missing_kind_are_errors():
    with pytest.raises(ValueError, match="Unknown model family 'gpt'"):
        model_spec("gpt", "lm")
    assert set(FAMILIES) >= {"mamba", "transformer", "transformer_abs"}
