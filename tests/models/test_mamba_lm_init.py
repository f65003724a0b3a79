"""Language models with tied embeddings start near the uniform prediction."""

import math

import torch
import torch.nn.functional as F

from dltricks.models import create_model


def test_initial_loss_is_near_log_vocab():
    torch.manual_seed(0)
    lm = create_model("mamba_lm", vocab_size=16, dim=32, n_layers=2, scan_backend="ref")
    tokens = torch.randint(0, 16, (4, 12))
    loss = F.cross_entropy(lm(tokens).flatten(0, 1), tokens.flatten())
    # tied N(0, 1) embeddings gave ~dim-sized logits and a loss of tens
    assert abs(loss.item() - math.log(16)) < 0.5


def test_transformer_lm_starts_near_log_vocab_on_unrelated_targets():
    torch.manual_seed(0)
    lm = create_model("transformer_lm", vocab_size=16, dim=32, depth=2)
    tokens, targets = torch.randint(0, 16, (4, 12)), torch.randint(0, 16, (4, 12))
    loss = F.cross_entropy(lm(tokens).flatten(0, 1), targets.flatten())
    # N(0, 1) tied embeddings predicted the input token and started near 7 here
    assert abs(loss.item() - math.log(16)) < 0.5
