"""The generation section: every family decodes what its full forward predicts, timed fairly."""

import pytest
import torch

from dltricks.compare.complexity import VOCAB, build_lm
from dltricks.compare.inference import run_inference, start_decoding


@pytest.mark.parametrize("family", ["mamba", "transformer", "hybrid"])
def test_decoding_after_the_prompt_equals_the_full_forward(family):
    """Prefill (Mamba, hybrid) or a cached forward (Transformer), then one step: the step's
    logits are the full forward's at that position, so the timed work is real decoding."""
    torch.manual_seed(0)
    model = build_lm(family, 16, 2).eval()
    tokens = torch.randint(0, VOCAB, (1, 9))
    with torch.inference_mode():
        full = model(tokens)
        step, _, after_prompt = start_decoding(model, tokens[:, :8])
        nxt = step(tokens[0, 8:9])
    assert nxt.shape == after_prompt.shape == (1, VOCAB)
    torch.testing.assert_close(after_prompt[0], full[0, 7], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(nxt.reshape(-1), full[0, 8], rtol=1e-4, atol=1e-5)


def test_start_decoding_rejects_a_model_that_cannot_decode():
    with pytest.raises(ValueError, match="neither a recurrent step nor a KV cache"):
        start_decoding(torch.nn.Linear(2, 2), torch.zeros(1, 3, dtype=torch.long))


def test_run_inference_reports_every_pair_with_prompt_times():
    res = run_inference(["mamba", "transformer"], (8, 32), dim=16, depth=1, new_tokens=3)
    assert res["interleaved"]
    for f in ("mamba", "transformer"):
        r = res["families"][f]
        assert r["contexts"] == [8, 32]
        assert len(r["token_ms"]) == len(r["prefill_ms"]) == 2
        assert all(t > 0 for t in r["token_ms"] + r["prefill_ms"])
    m, t = res["families"]["mamba"], res["families"]["transformer"]
    assert m["state_mib"][0] == m["state_mib"][1]  # recurrent state: constant
    assert t["state_mib"][1] == pytest.approx(4 * t["state_mib"][0], rel=0.2)  # KV cache ~ context
    with pytest.raises(ValueError, match="needs families"):
        run_inference([], (8,))
