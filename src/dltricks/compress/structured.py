"""Structured (channel) pruning: whole convolution filters removed, with fine-tuning in between
and an iterative schedule, then cut out of the network for real.

Method: channels of smallest BatchNorm scale go first where a BatchNorm follows the convolution
(Liu et al. 2017, "network slimming"), else filters of smallest L1 norm (Li et al. 2017,
"Pruning Filters for Efficient ConvNets"); pruning in several rounds with fine-tuning after
each (Han et al. 2015; the gradual schedule of Zhu & Gupta 2017, "To prune, or not to prune",
whose cubic ramp :func:`cubic_schedule` implements) loses less accuracy than one cut of the
same size. After a cut, the BatchNorm statistics downstream are stale; :func:`recalibrate_bn`
re-estimates them on a few training batches (the "adaptive BN" of Li et al. 2020, EagleEye), so
that a pruned model is judged by its channels, not by its stale statistics.

How a channel is removed safely. The network is traced with ``torch.fx``; a convolution's
output channels form a **group** with every module they pass through channel by channel
(BatchNorm, activations, dropout, pooling, a depthwise convolution and its BatchNorm) up to the
layers that consume them (a full convolution's input channels, or a Linear after global pooling
and flatten). A group whose channels reach anything else (a residual addition, a concatenation,
the output) is left alone: its channels are tied to another tensor's. Pruning a channel masks it
in *every* module of its group (``torch.nn.utils.prune.custom_from_mask`` on conv weights and
biases and on BatchNorm's scale and shift), so the channel is exactly zero after the norm in
training and evaluation, and fine-tuning through the masks keeps it zero. :func:`remove_channels`
then rebuilds each module with the kept channels only: the parameter count drops, and the output
equals the masked network's (tested).

Why hand-written: ``torch.nn.utils.prune.ln_structured`` zeros filters but cannot shrink a layer
or its consumers, and torch-pruning (Fang et al. 2023, DepGraph) is not a dependency here; the
dependency rule above covers the plain and depthwise-separable CNNs of this package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.nn.utils import prune

from dltricks.compress.prune import make_permanent

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Hardswish,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
)
_GLOBAL_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                 nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_PASS_FUNCTIONS = (torch.relu, torch.nn.functional.relu, torch.nn.functional.gelu,
                   torch.nn.functional.silu, torch.sigmoid, torch.tanh)


@dataclass
class ChannelGroup:
    """One prunable set of channels: a convolution's filters and everything they feed.

    Attributes:
        producer: name of the convolution whose output channels are pruned.
        followers: channel-wise modules on the way (BatchNorm, depthwise convolutions), by name.
        consumers: layers that read the channels as inputs: ``(name, features_per_channel)``;
            ``features_per_channel`` is 1 for a convolution and for a Linear after global
            pooling and flatten.
        channels: the producer's output channels.
    """

    producer: str
    followers: list[str] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)
    channels: int = 0


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, _CONVS) and m.groups == m.in_channels == m.out_channels and m.groups > 1


def _is_flatten(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], nn.Flatten)
    if node.op == "call_function":
        return node.target is torch.flatten
    return node.op == "call_method" and node.target == "flatten"


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds of errors for untraceable code
        raise ValueError(f"Channel pruning needs a torch.fx-traceable model; tracing "
                         f"{type(model).__name__} failed: {exc}") from None


def find_channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The convolutions whose output channels can be pruned, with their followers and consumers.

    Args:
        model: an fx-traceable network of convolutions, norms, activations, pools and Linear.

    Returns:
        One :class:`ChannelGroup` per prunable (non-depthwise) convolution, in graph order.
    """
    gm = _trace(model)
    modules = dict(gm.named_modules())
    groups: list[ChannelGroup] = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        conv = modules[str(node.target)]
        if not isinstance(conv, _CONVS) or conv.groups != 1:
            continue
        group = ChannelGroup(str(node.target), channels=conv.out_channels)
        if _follow(node, modules, group, pooled=False):
            groups.append(group)
    return groups


def _follow(node: fx.Node, modules: dict[str, nn.Module], group: ChannelGroup,
            pooled: bool) -> bool:
    """Walks the users of ``node``; False when the channels reach an op that ties them."""
    if not node.users:
        return False
    for user in node.users:
        if user.op == "call_module":
            m = modules[str(user.target)]
            name = str(user.target)
            if isinstance(m, _CONVS) and m.groups == 1 and not pooled:
                group.consumers.append((name, 1))
                continue
            if isinstance(m, nn.Linear) and pooled:
                group.consumers.append((name, 1))
                continue
            if isinstance(m, _NORMS) or _is_depthwise(m):
                if name in group.followers:  # a module called twice shares its channels
                    return False
                group.followers.append(name)
            elif isinstance(m, _GLOBAL_POOLS):
                size = m.output_size
                if any(s != 1 for s in (size if isinstance(size, tuple) else (size,))):
                    return False
                if not _follow(user, modules, group, pooled=True):
                    return False
                continue
            elif _is_flatten(user, modules):
                if not pooled:
                    return False
            elif not isinstance(m, _PASS_MODULES):
                return False
        elif not (
            (user.op == "call_function" and user.target in _PASS_FUNCTIONS)
            or (user.op == "call_method" and user.target in ("relu", "sigmoid", "tanh"))
            or (pooled and _is_flatten(user, modules))
        ):
            return False
        if not _follow(user, modules, group, pooled):
            return False
    return True


def _current(module: nn.Module, name: str) -> torch.Tensor | None:
    """A parameter as the forward sees it (masked while pruned)."""
    return getattr(module, name, None)


def _mask(module: nn.Module, name: str, keep: torch.Tensor) -> None:
    """Masks the channels not in ``keep`` of ``module.<name>`` along dim 0."""
    tensor = _current(module, name)
    if tensor is None:
        return
    shape = (-1,) + (1,) * (tensor.dim() - 1)
    mask = keep.to(tensor.dtype).view(shape).expand_as(tensor).clone()
    prune.custom_from_mask(module, name, mask)


def filter_importance(conv: nn.Module) -> torch.Tensor:
    """L1 norm of each output filter (Li et al. 2017); masked filters score 0."""
    w = conv.weight.detach()
    return w.abs().flatten(1).sum(1)


IMPORTANCE = ("auto", "bn", "l1", "random")


def bn_importance(norm: nn.Module) -> torch.Tensor:
    """|gamma| of a BatchNorm (Liu et al. 2017, "Learning Efficient Convolutional Networks
    through Network Slimming"): a channel's output scale after normalisation; masked channels
    score 0."""
    return norm.weight.detach().abs()


def _scores(modules: dict[str, nn.Module], group: ChannelGroup, importance: str) -> torch.Tensor:
    conv = modules[group.producer]
    first = modules[group.followers[0]] if group.followers else None
    has_bn = isinstance(first, _NORMS) and first.weight is not None
    if importance == "bn" and not has_bn:
        raise ValueError(f"importance 'bn' needs a BatchNorm after {group.producer!r}.")
    if importance == "bn" or (importance == "auto" and has_bn):
        return bn_importance(first) * (filter_importance(conv) > 0)
    return filter_importance(conv)


def channel_prune(model: nn.Module, amount: float,
                  groups: Sequence[ChannelGroup] | None = None, importance: str = "auto",
                  generator: torch.Generator | None = None) -> dict[str, int]:
    """Masks the fraction ``amount`` of each prunable convolution's channels, in place.

    The channels of smallest filter L1 norm are masked in the convolution and in every module of
    its group (see the module docstring). On a model pruned before, ``amount`` is the fraction
    of *all* channels to have masked after this call (at least one channel stays), so a schedule
    passes its cumulative targets.

    Args:
        model: an fx-traceable CNN.
        amount: target fraction of channels masked in each group, in [0, 1).
        groups: groups from :func:`find_channel_groups` (found again when None).
        importance: ``"bn"`` (smallest BatchNorm scale first, Liu et al. 2017), ``"l1"``
            (smallest filter L1 norm first, Li et al. 2017), ``"auto"`` (``"bn"`` where a
            BatchNorm follows the convolution, else ``"l1"``: a filter's norm says little when
            a BatchNorm rescales its output) or ``"random"`` (a random choice among the
            unmasked channels: the control that tells whether a criterion finds the *less
            important* channels).
        generator: random source for ``importance="random"``.

    Returns:
        Kept channels per producer convolution.

    Raises:
        ValueError: ``amount`` outside [0, 1), an unknown importance, or no prunable
            convolution.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be a fraction in [0, 1), got {amount}.")
    if importance not in IMPORTANCE:
        raise ValueError(f"Unknown importance {importance!r}; use one of "
                         f"{', '.join(IMPORTANCE)}.")
    groups = list(groups) if groups is not None else find_channel_groups(model)
    if not groups:
        if not any(isinstance(m, _CONVS) for m in model.modules()):
            raise ValueError("No convolution to prune: channel pruning removes convolution "
                             "filters; for Linear layers use magnitude pruning "
                             "(dltricks.compress.magnitude_prune).")
        raise ValueError("No prunable convolution: every conv output feeds a residual "
                         "addition, a concatenation or the output.")
    modules = dict(model.named_modules())
    kept: dict[str, int] = {}
    for g in groups:
        score = _scores(modules, g, "l1" if importance == "random" else importance)
        if importance == "random":  # masked channels (score 0) stay masked, the rest shuffled
            score = (score > 0).float() + torch.rand(len(score), generator=generator)
        n_keep = max(1, round(g.channels * (1.0 - amount)))
        keep = torch.zeros(g.channels, dtype=torch.bool, device=score.device)
        keep[torch.argsort(score, descending=True, stable=True)[:n_keep]] = True
        for name in [g.producer, *g.followers]:
            m = modules[name]
            for pname in ("weight", "bias"):
                _mask(m, pname, keep)
        kept[g.producer] = n_keep
    return kept


def channel_mask(model: nn.Module, producer: str) -> torch.Tensor:
    """Boolean (C,) of the channels of ``producer`` that are not masked."""
    conv = dict(model.named_modules())[producer]
    return conv.weight.detach().flatten(1).abs().sum(1) != 0


@torch.no_grad()
def remove_channels(model: nn.Module, groups: Sequence[ChannelGroup] | None = None) -> int:
    """Cuts masked channels out of the network for real, in place; returns channels removed.

    Masks are folded in first (:func:`~dltricks.compress.make_permanent`); a channel whose
    filter is all zeros is dropped from its convolution, from every follower and from the
    consumers' inputs. The output is unchanged (a masked channel is zero after its norm).
    """
    groups = list(groups) if groups is not None else find_channel_groups(model)
    make_permanent(model)
    modules = dict(model.named_modules())
    removed = 0
    for g in groups:
        conv = modules[g.producer]
        keep = conv.weight.flatten(1).abs().sum(1) != 0
        if conv.bias is not None:
            keep |= conv.bias != 0
        if keep.all():
            continue
        if not keep.any():
            keep[0] = True
        idx = keep.nonzero().flatten()
        removed += int((~keep).sum())
        _shrink_out(conv, idx)
        for name in g.followers:
            m = modules[name]
            if isinstance(m, _NORMS):
                _shrink_norm(m, idx)
            else:
                _shrink_depthwise(m, idx)
        for name, per in g.consumers:
            _shrink_in(modules[name], idx, per)
    return removed


def _shrink_out(conv: nn.Module, idx: torch.Tensor) -> None:
    conv.weight = nn.Parameter(conv.weight[idx].clone())
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias[idx].clone())
    conv.out_channels = len(idx)


def _shrink_depthwise(conv: nn.Module, idx: torch.Tensor) -> None:
    _shrink_out(conv, idx)
    conv.in_channels = conv.groups = len(idx)


def _shrink_norm(bn: nn.Module, idx: torch.Tensor) -> None:
    if bn.weight is not None:
        bn.weight = nn.Parameter(bn.weight[idx].clone())
        bn.bias = nn.Parameter(bn.bias[idx].clone())
    if bn.running_mean is not None:
        bn.running_mean = bn.running_mean[idx].clone()
        bn.running_var = bn.running_var[idx].clone()
    bn.num_features = len(idx)


def _shrink_in(layer: nn.Module, idx: torch.Tensor, per: int) -> None:
    if per != 1:
        cols = (idx[:, None] * per + torch.arange(per, device=idx.device)).flatten()
    else:
        cols = idx
    layer.weight = nn.Parameter(layer.weight[:, cols].clone())
    if isinstance(layer, nn.Linear):
        layer.in_features = len(cols)
    else:
        layer.in_channels = len(cols)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Re-estimates every BatchNorm's running mean and variance from ``batches`` (no gradient
    step; cumulative average over the batches), then leaves the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, _NORMS)]
    if not batches:
        raise ValueError("recalibrate_bn needs at least one batch.")
    saved = [(m.momentum, m.track_running_stats) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches
    model.train()
    for x in batches:
        model(x)
    for m, (momentum, _) in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()


def cubic_schedule(target: float, steps: int) -> list[float]:
    """Cumulative pruning fractions of Zhu & Gupta 2017: ``s_t = s (1 - (1 - t/n)^3)``.

    Args:
        target: final fraction in [0, 1).
        steps: number of pruning rounds, >= 1.

    Returns:
        ``steps`` increasing fractions ending at ``target``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target must be a fraction in [0, 1), got {target}.")
    return [target * (1.0 - (1.0 - t / steps) ** 3) for t in range(1, steps + 1)]


def iterative_channel_prune(model: nn.Module, target: float, rounds: int,
                            finetune: Callable[[nn.Module, int], None] | None = None,
                            remove: bool = True, importance: str = "auto",
                            generator: torch.Generator | None = None) -> list[dict[str, float]]:
    """Prunes to ``target`` in ``rounds`` steps of :func:`cubic_schedule`, fine-tuning between.

    Args:
        model: an fx-traceable CNN; changed in place.
        target: final fraction of channels removed from each prunable convolution.
        rounds: pruning rounds (1: one-shot, then one fine-tuning).
        finetune: ``finetune(model, round)`` trains the masked model (masks stay applied).
        remove: cut the masked channels out at the end (:func:`remove_channels`).
        importance: ``"auto"``, ``"bn"``, ``"l1"`` or ``"random"`` (see
            :func:`channel_prune`).
        generator: random source for ``importance="random"``.

    Returns:
        Per round: ``{"round", "amount", "params_nonzero_channels"}``.
    """
    groups = find_channel_groups(model)
    history = []
    for r, amount in enumerate(cubic_schedule(target, rounds)):
        kept = channel_prune(model, amount, groups, importance, generator)
        if finetune is not None:
            finetune(model, r)
        history.append({"round": float(r), "amount": amount,
                        "kept_channels": float(sum(kept.values()))})
    if remove:
        remove_channels(model, groups)
    return history


__all__ = [
    "IMPORTANCE",
    "ChannelGroup",
    "bn_importance",
    "channel_mask",
    "channel_prune",
    "cubic_schedule",
    "filter_importance",
    "find_channel_groups",
    "iterative_channel_prune",
    "recalibrate_bn",
    "remove_channels",
]
