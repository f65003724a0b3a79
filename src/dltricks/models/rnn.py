"""Recurrent models: token taggers and a signal classifier (GRU and LSTM).

LSTM: Hochreiter & Schmidhuber 1997, "Long Short-Term Memory". GRU: Cho et al. 2014, "Learning
Phrase Representations using RNN Encoder-Decoder". They serve the guide's "RNNs/LSTMs/GRUs for
sequential data" tip and gradient-clipping experiments (Pascanu et al. 2013). A unidirectional
tagger is causal: the logits at step t depend on tokens up to t only.

Axis letters: B batch, L sequence length, C input channels, D hidden size (``dim``), K classes.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from dltricks.models.registry import register_variant

Cell = Literal["gru", "lstm"]
_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def _rnn(cell: Cell, input_size: int, dim: int, num_layers: int, dropout: float,
         bidirectional: bool) -> nn.RNNBase:
    if cell not in _CELLS:
        raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}.")
    if dim < 1 or num_layers < 1:
        raise ValueError(f"dim and num_layers must be positive, got {dim}, {num_layers}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    # torch applies RNN dropout between layers only; it warns for a single layer.
    return _CELLS[cell](input_size, dim, num_layers, batch_first=True,
                        dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)


class RecurrentTagger(nn.Module):
    """Embedding → GRU/LSTM → dropout → linear, one prediction per token.

    Args:
        vocab_size: number of token ids.
        num_classes: K.
        dim: D, embedding and hidden size.
        num_layers: stacked recurrent layers.
        dropout: dropout between recurrent layers and before the head.
        bidirectional: read the sequence both ways (no longer causal).
        cell: ``"gru"`` or ``"lstm"``.

    Shapes:
        long (B, L) in [0, vocab_size) → (B, L, K)
    """

    def __init__(self, vocab_size: int, num_classes: int, dim: int = 64, num_layers: int = 2,
                 dropout: float = 0.0, bidirectional: bool = False, cell: Cell = "gru") -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}.")
        self.embed = nn.Embedding(vocab_size, dim)
        self.rnn = _rnn(cell, dim, dim, num_layers, dropout, bidirectional)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(dim * (2 if bidirectional else 1), num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        h, _ = self.rnn(self.embed(tokens))  # (B, L, D * directions)
        return self.head(self.dropout(h))  # (B, L, K)


class RecurrentClassifier(nn.Module):
    """GRU/LSTM over a multichannel signal; the last layer's final hidden state → linear.

    Args:
        in_channels: C.
        num_classes: K.
        dim: D, hidden size.
        num_layers: stacked recurrent layers.
        dropout: dropout between recurrent layers and before the head.
        bidirectional: also read backwards; the head sees both final states.
        cell: ``"gru"`` or ``"lstm"``.

    Shapes:
        float (B, C, L) → (B, K)
    """

    def __init__(self, in_channels: int, num_classes: int, dim: int = 64, num_layers: int = 1,
                 dropout: float = 0.0, bidirectional: bool = False, cell: Cell = "gru") -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}.")
        self.rnn = _rnn(cell, in_channels, dim, num_layers, dropout, bidirectional)
        self.directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(dim * self.directions, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        _, state = self.rnn(x.transpose(1, 2))  # input (B, L, C)
        h = state[0] if isinstance(state, tuple) else state  # (layers * directions, B, D)
        last = h[-self.directions:].transpose(0, 1).flatten(1)  # (B, D * directions)
        return self.head(self.dropout(last))  # (B, K)


_TAGGER_EXAMPLE = dict(kwargs=dict(vocab_size=20, num_classes=5), input=(2, 12), dtype="long",
                       high=20, output=(2, 12, 5))
_CLASSIFIER_EXAMPLE = dict(kwargs=dict(in_channels=1, num_classes=10), input=(2, 1, 40),
                           dtype="float", output=(2, 10))


def _cell_variants(cls: type[nn.Module], task: str, kind: str, example: dict) -> None:
    """Registers ``gru_<kind>`` and ``lstm_<kind>``: ``cls`` with its recurrent cell fixed."""
    what = {"tagger": "token tagger (B, L) → (B, L, K)",
            "classifier": "classifier of 1-D signals (B, C, L)"}[kind]
    for cell, label in (("gru", "a GRU"), ("lstm", "an LSTM")):
        register_variant(f"{cell}_{kind}", cls, f"``{cls.__name__}`` with {label}.",
                         fixed={"cell": cell}, task=task,
                         description=f"{label.split()[1]} {what}.", example=example)


_cell_variants(RecurrentTagger, "sequence", "tagger", _TAGGER_EXAMPLE)
_cell_variants(RecurrentClassifier, "classification", "classifier", _CLASSIFIER_EXAMPLE)
