"""The Mamba LM starts near the uniform prediction, as the authors' initialisation gives."""

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
