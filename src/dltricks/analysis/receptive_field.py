"""Analytic receptive fields of any fx-traceable network.

Araujo, Norris & Sim 2019, "Computing Receptive Fields of Convolutional Neural Networks"
(Distill). For a chain of layers with kernel k_l, stride s_l, padding p_l and dilation d_l
(effective kernel k'_l = d_l (k_l - 1) + 1), per spatial axis:

* receptive field size  r_L = r_{L-1} + (k'_L - 1) j_{L-1},  r_0 = 1
* effective stride      j_L = j_{L-1} s_L,                    j_0 = 1
* effective padding     P_L = P_{L-1} + p_L j_{L-1},          P_0 = 0
* centre of output unit u:  c(u) = u j_L + (r_L - 1) / 2 - P_L  (input coordinates)

Output unit u sees the input interval [u j_L - P_L, u j_L - P_L + r_L - 1].

Non-sequential networks are handled on the graph traced by ``torch.fx.symbolic_trace``: every
tensor node carries (r, j, P) per axis; where paths merge (residual additions, concatenation,
multiplication) the field is the *union* of the paths' intervals — the largest field over the
paths — and the merge is *aligned* when all paths have the same stride and centre (Araujo et
al.'s alignment condition; a misaligned merge is reported, not hidden). Ops that mix all
positions (global pooling, flatten, linear on a flattened map, adaptive pooling with unequal
bins) make a node *global*; a node that merges local features with a global gate (squeeze-
excitation, CBAM, ASPP's image pooling) keeps its local field and is flagged
``global_context``. Upsampling (``nn.Upsample``, transposed convolutions) is modelled as a layer
of fractional stride 1 / f; the centres it gives are those of output units u = 0 (mod f) and
such nodes are flagged ``approximate``.

Axis letters: B batch, C channels, *spatial the 1, 2 or 3 spatial axes.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import fx, nn

from dltricks.utils.mode import eval_mode

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
             nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_CONSTANT_FUNCS = {torch.ones_like, torch.zeros_like, torch.empty_like, torch.full_like}
_CONSTANT_METHODS = {"new_ones", "new_zeros", "new_empty", "new_full", "size", "dim"}
_MERGE_FUNCS = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add,
                torch.sub, torch.mul, torch.cat, torch.stack, torch.concat}
_MERGE_METHODS = {"add", "sub", "mul", "div", "add_", "mul_"}

EPS = 1e-9


@dataclass(frozen=True)
class FieldState:
    """Receptive-field state of one tensor, one value per spatial axis.

    Attributes:
        size: receptive field r (``None``: the tensor is global, no local field).
        stride: effective stride j.
        padding: effective padding P.
        global_context: the tensor also depends on the whole input through a global op.
        aligned: every merge on the way had paths of equal stride and centre.
        approximate: an upsampling on the way (see the module docstring).
    """

    size: tuple[float, ...] | None
    stride: tuple[float, ...] | None
    padding: tuple[float, ...] | None
    global_context: bool = False
    aligned: bool = True
    approximate: bool = False

    @property
    def is_global(self) -> bool:
        return self.size is None

    @property
    def center(self) -> tuple[float, ...] | None:
        """Centre of output unit 0 in input coordinates: (r - 1) / 2 - P."""
        if self.size is None or self.padding is None:
            return None
        return tuple((r - 1) / 2 - p for r, p in zip(self.size, self.padding, strict=True))

    def layer(self, kernel: Sequence[float], stride: Sequence[float],
              padding: Sequence[float], dilation: Sequence[float]) -> FieldState:
        """State after a conv/pool layer (the Araujo et al. recurrences)."""
        if self.size is None:
            return self
        assert self.stride is not None and self.padding is not None
        r = tuple(r + (d * (k - 1)) * j for r, k, d, j in
                  zip(self.size, kernel, dilation, self.stride, strict=True))
        p = tuple(p0 + p1 * j for p0, p1, j in zip(self.padding, padding, self.stride,
                                                   strict=True))
        j = tuple(j0 * s for j0, s in zip(self.stride, stride, strict=True))
        return FieldState(r, j, p, self.global_context, self.aligned, self.approximate)

    def upsample(self, factor: Sequence[float], extra: Sequence[float]) -> FieldState:
        """State after an f-times upsampling whose output unit reads ``extra + 1`` input units.

        Output unit 0 reads input units 0..extra, so its field is the union of theirs; the
        stride becomes j / f.
        """
        if self.size is None:
            return self
        assert self.stride is not None and self.padding is not None
        r = tuple(r + e * j for r, e, j in zip(self.size, extra, self.stride, strict=True))
        j = tuple(j0 / f for j0, f in zip(self.stride, factor, strict=True))
        return FieldState(r, j, self.padding, self.global_context, self.aligned, True)

    def as_global(self) -> FieldState:
        return FieldState(None, None, None, True, self.aligned, self.approximate)


def merge(states: Sequence[FieldState]) -> FieldState:
    """Union of the fields of tensors combined elementwise or by concatenation."""
    local = [s for s in states if s.size is not None]
    gctx = any(s.global_context or s.is_global for s in states)
    aligned = all(s.aligned for s in states)
    approx = any(s.approximate for s in states)
    if not local:
        return FieldState(None, None, None, True, aligned, approx)
    if len(local) == 1:
        s = local[0]
        return FieldState(s.size, s.stride, s.padding, gctx, aligned, approx)
    n = len(local[0].size or ())
    size, stride, padding = [], [], []
    for a in range(n):
        starts = [-s.padding[a] for s in local]  # type: ignore[index]
        ends = [-s.padding[a] + s.size[a] - 1 for s in local]  # type: ignore[index]
        strides = [s.stride[a] for s in local]  # type: ignore[index]
        centres = [(st + en) / 2 for st, en in zip(starts, ends, strict=True)]
        if max(strides) - min(strides) > EPS or max(centres) - min(centres) > EPS:
            aligned = False
        start, end = min(starts), max(ends)
        size.append(end - start + 1)
        padding.append(-start)
        stride.append(max(strides))
    return FieldState(tuple(size), tuple(stride), tuple(padding), gctx, aligned, approx)


@dataclass
class LayerField:
    """Receptive field after one node of the traced graph.

    Attributes:
        name: node name (``features.0.conv`` style for modules).
        op: the module class or function name.
        kind: ``"conv" | "pool" | "upsample" | "merge" | "global" | "other" | "input"``.
        size, stride, padding, center: per spatial axis (``None`` for global nodes).
        global_context, aligned, approximate: see ``FieldState``.
        shape: output shape.
    """

    name: str
    op: str
    kind: str
    size: tuple[float, ...] | None
    stride: tuple[float, ...] | None
    padding: tuple[float, ...] | None
    center: tuple[float, ...] | None
    global_context: bool
    aligned: bool
    approximate: bool
    shape: tuple[int, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReceptiveField:
    """Result of ``receptive_field``: per-node fields and the network's field.

    Attributes:
        layers: one entry per tensor node, in execution order.
        size: the network's receptive field per axis: that of the output when it is local,
            otherwise the largest local field of any node (the input of the global pooling).
        stride, padding, center: of the same node.
        aligned: every merge in the network was aligned.
        global_context: the field's node also depends on the whole input through a global op
            (a squeeze-excitation gate, an image-pooling branch).
        node: the node giving ``size``.
    """

    layers: list[LayerField]
    size: tuple[float, ...]
    stride: tuple[float, ...]
    padding: tuple[float, ...]
    center: tuple[float, ...]
    aligned: bool
    global_context: bool
    node: str
    misaligned: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ntuple(v: Any, n: int) -> tuple[float, ...]:
    return tuple(float(x) for x in v) if isinstance(v, tuple | list) else (float(v),) * n


def _module_padding(m: nn.Module, n: int, kernel: tuple[float, ...],
                    dilation: tuple[float, ...]) -> tuple[float, ...]:
    pad = m.padding
    if pad == "valid":
        return (0.0,) * n
    if pad == "same":  # torch puts the smaller half on the left
        return tuple(float((d * (k - 1)) // 2) for k, d in zip(kernel, dilation, strict=True))
    return _ntuple(pad, n)


def _spatial(shape: Sequence[int] | None, n: int) -> tuple[int, ...] | None:
    if shape is None or len(shape) < n + 2:
        return None
    return tuple(shape[-n:])


def _tensor_shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(meta.shape)


def _op_name(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` with a readable error for untraceable models."""
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...)
        raise ValueError(
            f"{type(model).__name__} cannot be traced by torch.fx ({type(exc).__name__}: "
            f"{exc}); receptive-field analysis needs a graph without data-dependent control "
            "flow."
        ) from exc


def zeros_for(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """Zeros of ``input_shape`` on the device of the model's parameters.

    A model built under ``torch.device("meta")`` is analysed without memory or compute.
    """
    p = next(model.parameters(), None)
    return torch.zeros(tuple(input_shape), device=p.device if p is not None else "cpu")


@dataclass(frozen=True)
class TensorMeta:
    """Output shape of a node, stored as ``node.meta["tensor_meta"]``."""

    shape: tuple[int, ...]


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph and records every tensor node's output shape (like fx's ShapeProp, but an
    error in the model's own forward — a bad input size — surfaces unchanged)."""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["tensor_meta"] = TensorMeta(tuple(result.shape))
        return result


def propagate_shapes(gm: fx.GraphModule, input_shape: Sequence[int]) -> None:
    """Stores each node's output shape in ``node.meta["tensor_meta"]`` (one eval forward, free
    for a model on the meta device).

    Raises:
        ValueError: the model rejects the input (its own message), or the forward fails.
    """
    runner = _ShapeRecorder(gm)
    runner.extra_traceback = False
    try:
        with eval_mode(gm), torch.no_grad():
            runner.run(zeros_for(gm, input_shape))
    except ValueError:
        raise
    except RuntimeError as exc:
        raise ValueError(
            f"The model's forward fails for input shape {tuple(input_shape)}: {exc}"
        ) from exc


def _node_inputs(node: fx.Node, states: dict[fx.Node, FieldState]) -> list[FieldState]:
    found: list[FieldState] = []

    def visit(a: Any) -> None:
        if isinstance(a, fx.Node) and a in states:
            found.append(states[a])

    fx.node.map_arg((node.args, node.kwargs), visit)
    return found


def _is_constant(node: fx.Node) -> bool:
    """Ops whose output does not depend on their input's values (``ones_like``, ``size``)."""
    return ((node.op == "call_function" and node.target in _CONSTANT_FUNCS)
            or (node.op == "call_method" and node.target in _CONSTANT_METHODS))


def _first_tensor_input(node: fx.Node) -> fx.Node | None:
    nodes: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), nodes.append)
    return next((a for a in nodes if _tensor_shape(a) is not None), None)


def _module_state(m: nn.Module, s: FieldState, n: int, in_sp: tuple[int, ...] | None,
                  out_sp: tuple[int, ...] | None) -> tuple[FieldState, str]:
    if isinstance(m, _CONVS):
        k = _ntuple(m.kernel_size, n)
        d = _ntuple(m.dilation, n)
        return s.layer(k, _ntuple(m.stride, n), _module_padding(m, n, k, d), d), "conv"
    if isinstance(m, _POOLS):
        k = _ntuple(m.kernel_size, n)
        st = _ntuple(m.stride if m.stride else m.kernel_size, n)
        d = _ntuple(getattr(m, "dilation", 1), n)
        return s.layer(k, st, _ntuple(m.padding, n), d), "pool"
    if isinstance(m, _ADAPTIVE):
        if in_sp is None or out_sp is None:
            return s.as_global(), "global"
        if in_sp == out_sp:
            return s, "other"
        if all(o > 1 and i % o == 0 for i, o in zip(in_sp, out_sp, strict=True)):
            k = tuple(float(i // o) for i, o in zip(in_sp, out_sp, strict=True))
            return s.layer(k, k, (0.0,) * n, (1.0,) * n), "pool"
        return s.as_global(), "global"
    if isinstance(m, _TRANSPOSED):
        k = _ntuple(m.kernel_size, n)
        f = _ntuple(m.stride, n)
        d = _ntuple(m.dilation, n)
        # output unit 0 reads input units 0 .. ceil(k' / f) - 1
        extra = tuple(math.ceil((di * (ki - 1) + 1) / fi) - 1
                      for ki, fi, di in zip(k, f, d, strict=True))
        return s.upsample(f, extra), "upsample"
    if isinstance(m, nn.Upsample):
        if in_sp is None or out_sp is None:
            return s.as_global(), "global"
        f = tuple(o / i for i, o in zip(in_sp, out_sp, strict=True))
        extra = (0.0,) * n if m.mode == "nearest" else (1.0,) * n
        return s.upsample(f, extra), "upsample"
    if isinstance(m, nn.Linear | nn.Flatten | nn.Unflatten):
        if in_sp is not None and in_sp == out_sp and not isinstance(m, nn.Linear):
            return s, "other"
        return s.as_global(), "global"
    if in_sp is not None and in_sp == out_sp:
        return s, "other"
    return s.as_global(), "global"


def receptive_field(model: nn.Module, input_shape: Sequence[int]) -> ReceptiveField:
    """Per-node receptive field, effective stride, padding and centre of a traced network.

    Args:
        model: any ``nn.Module`` that ``torch.fx.symbolic_trace`` can trace (or a traced
            ``GraphModule``).
        input_shape: (B, C, *spatial) of one input; its spatial rank sets the axes. Shapes are
            propagated once (an eval forward on zeros) to resolve adaptive pooling and
            upsampling.

    Returns:
        A ``ReceptiveField``; see its attributes.

    Raises:
        ValueError: an untraceable model, an input without spatial axes, or a network in which
            no node has a local field.
    """
    if len(input_shape) < 3:
        raise ValueError(
            f"input_shape must be (B, C, *spatial) with 1-3 spatial axes, got {input_shape!r}."
        )
    n = len(input_shape) - 2
    gm = trace(model)
    propagate_shapes(gm, input_shape)
    states: dict[fx.Node, FieldState] = {}
    layers: list[LayerField] = []
    for node in gm.graph.nodes:
        shape = _tensor_shape(node)
        if node.op == "placeholder":
            if shape is None:
                continue
            st = FieldState((1.0,) * n, (1.0,) * n, (0.0,) * n)
            kind = "input"
        elif node.op == "output":
            ins = _node_inputs(node, states)
            if not ins:
                continue
            st, kind = merge(ins), "output"
        elif node.op == "get_attr" or shape is None or _is_constant(node):
            continue
        else:
            ins = _node_inputs(node, states)
            if not ins:
                continue
            first = _first_tensor_input(node)
            in_sp = _spatial(_tensor_shape(first), n) if first is not None else None
            out_sp = _spatial(shape, n)
            if node.op == "call_module":
                st, kind = _module_state(gm.get_submodule(str(node.target)), ins[0], n, in_sp,
                                         out_sp)
            elif node.op == "call_method" and node.target in ("expand", "expand_as"):
                st, kind = ins[0], "other"
            else:
                is_merge = node.target in _MERGE_FUNCS or node.target in _MERGE_METHODS
                same = out_sp is not None and all(
                    _spatial(_tensor_shape(a), n) in (out_sp, None, (1,) * n)
                    for a in node.all_input_nodes if _tensor_shape(a) is not None)
                if same:
                    st = merge(ins)
                    kind = "merge" if is_merge and len(ins) > 1 else "other"
                else:
                    st, kind = merge(ins).as_global(), "global"
        states[node] = st
        layers.append(LayerField(
            name=str(node.target) if node.op == "call_module" else node.name,
            op=_op_name(node, gm) if node.op != "placeholder" else "input", kind=kind,
            size=st.size, stride=st.stride, padding=st.padding, center=st.center,
            global_context=st.global_context, aligned=st.aligned, approximate=st.approximate,
            shape=shape,
        ))
    local = [lf for lf in layers if lf.size is not None]
    if not local:
        raise ValueError("No node of the network has a local receptive field.")
    out = layers[-1]
    best = out if out.size is not None else max(
        reversed(local), key=lambda lf: math.prod(lf.size or ()))
    misaligned = [lf.name for lf in layers if lf.kind == "merge" and not lf.aligned]
    return ReceptiveField(
        layers=layers, size=best.size or (), stride=best.stride or (),
        padding=best.padding or (), center=best.center or (), aligned=not misaligned,
        global_context=best.global_context, node=best.name,
        misaligned=misaligned,
    )
