"""Which layers compression touches: modules of the given types, less the children that a parent
lists in ``compress_skip`` (it reads their parameters directly, outside their own forward, so
replacing the module or re-parametrising its weight would break the parent) and less layers whose
weight is tied to another module's (a language model's head tied to its embedding)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from fnmatch import fnmatchcase

from torch import nn

DEFAULT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear,)


def skipped_modules(model: nn.Module) -> set[str]:
    """Qualified names of the children that their parents list in ``compress_skip``."""
    out = set()
    for name, module in model.named_modules():
        for child in getattr(module, "compress_skip", ()):
            out.add(f"{name}.{child}" if name else child)
    return out


def tied_parameters(model: nn.Module) -> set[int]:
    """``id`` of every parameter held by more than one module."""
    counts = Counter(id(p) for m in model.modules() for p in m._parameters.values()
                     if p is not None)
    return {pid for pid, n in counts.items() if n > 1}


def excluded(name: str, exclude: Sequence[str]) -> bool:
    """Whether a qualified module name matches one of the wildcard patterns."""
    return any(fnmatchcase(name, pattern) for pattern in exclude)


def compressible_modules(model: nn.Module,
                         module_types: Sequence[type[nn.Module]] = DEFAULT_TYPES,
                         exclude: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
    """(name, module) of the layers with a ``weight`` that compression may change.

    Args:
        model: any module.
        module_types: layer types considered.
        exclude: wildcard patterns of qualified names to leave alone (``"*.out_proj"``).
    """
    skip, tied = skipped_modules(model), tied_parameters(model)
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, tuple(module_types)) or name in skip or excluded(name, exclude):
            continue
        weight = module._parameters.get("weight", module._parameters.get("weight_orig"))
        if weight is None or id(weight) in tied:
            continue
        out.append((name, module))
    return out
