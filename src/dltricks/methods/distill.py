"""Knowledge distillation: a small student learns from a larger, frozen teacher.

Logit distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network",
2015): the student matches the teacher's class distribution softened at temperature T,

    L = (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)),

where the T^2 factor keeps the soft term's gradients at the scale of the hard term's when T
changes (the gradient of the KL term scales as 1 / T^2).

Feature (hint) distillation (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015):
an intermediate student layer, mapped by a small trained regressor (a 1x1 convolution or a
linear layer), regresses the teacher's features at a "hint" layer with a squared error.

The teacher is a finished run folder (its ``recipe.yaml`` and checkpoint weights, read from
safetensors, never unpickled) or a registered model with a safetensors weights file; it is
frozen (``requires_grad=False``) and kept in eval mode, and it is not part of the student's
checkpoint (a resumed run reloads it from its source).

Recipe (``dltricks train``)::

    objectives:
      - name: distill
        kwargs: {teacher: runs/digits_teacher, temperature: 4.0, alpha: 0.9}

The engine adds ``weight * term`` to the task loss ``CE``; with ``weight: 1`` this term returns
``alpha * (T^2 KL - CE)``, so the total is exactly Hinton's mixture above.

Axis letters: B batch, K classes, C channels, F features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.train.terms import LossTerm, StepContext, TermContext

# --------------------------------------------------------------------------- losses


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor,
                     temperature: float = 4.0) -> Tensor:
    """Hinton et al.'s soft-target loss ``T^2 * KL(p_t^T || p_s^T)``, mean over the batch.

    Args:
        student_logits: (B, K) logits of the student (gradients flow into these).
        teacher_logits: (B, K) logits of the teacher (treated as constants).
        temperature: T > 0; higher T softens both distributions.

    Returns:
        Scalar loss.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: "
                         f"{tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}.")
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / t, dim=-1)
    kl = F.kl_div(log_p_s.reshape(-1, log_p_s.shape[-1]), log_p_t.reshape(-1, log_p_t.shape[-1]),
                  reduction="batchmean", log_target=True)
    return kl * (t * t)


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, target: Tensor,
                      temperature: float = 4.0, alpha: float = 0.9) -> Tensor:
    """``(1 - alpha) * CE(student, target) + alpha * soft_target_loss(student, teacher, T)``.

    Args:
        student_logits: (B, K).
        teacher_logits: (B, K).
        target: (B,) class indices.
        temperature: T of the soft targets.
        alpha: weight of the soft term in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    if alpha == 1.0:
        return soft
    return (1 - alpha) * F.cross_entropy(student_logits.float(), target) + alpha * soft


def hint_loss(student_features: Tensor, teacher_features: Tensor, regressor: nn.Module) -> Tensor:
    """FitNets' hint loss: mean squared error of ``regressor(student_features)`` against the
    (constant) teacher features. Spatial sizes that differ are matched by adaptive average
    pooling of the student's map to the teacher's size.

    Args:
        student_features: (B, C_s, *spatial_s) or (B, F_s).
        teacher_features: (B, C_t, *spatial_t) or (B, F_t).
        regressor: maps C_s (or F_s) to C_t (or F_t).
    """
    s = regressor(_match_spatial(student_features, teacher_features))
    return F.mse_loss(s.float(), teacher_features.detach().float())


def _match_spatial(s: Tensor, t: Tensor) -> Tensor:
    if s.ndim != t.ndim:
        raise ValueError(f"hint features differ in rank: student {tuple(s.shape)}, teacher "
                         f"{tuple(t.shape)}.")
    if s.ndim > 2 and s.shape[2:] != t.shape[2:]:
        pool = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}
        return pool[s.ndim](s, t.shape[2:])
    return s


def make_regressor(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    """The hint regressor for per-sample feature shapes (C, *spatial) or (F,): a 1x1
    convolution for maps, a linear layer for vectors."""
    cs, ct = student_shape[0], teacher_shape[0]
    if len(student_shape) == 1:
        return nn.Linear(cs, ct)
    conv = {2: nn.Conv1d, 3: nn.Conv2d, 4: nn.Conv3d}.get(len(student_shape))
    if conv is None:
        raise ValueError(f"Unsupported hint feature shape {student_shape}.")
    return conv(cs, ct, kernel_size=1)


# --------------------------------------------------------------------------- the teacher


def load_teacher(teacher: str | dict[str, Any], data: Any, device: torch.device,
                 which: Literal["best", "last"] = "best",
                 run_dir: str | Path | None = None) -> nn.Module:
    """A frozen teacher in eval mode.

    Args:
        teacher: a run folder (``str``), or ``{"run": folder}``, or ``{"model": name,
            "kwargs": {...}, "weights": file.safetensors}`` for a registered model (sized from
            ``data`` like a recipe's model), or ``{"recipe": name | path | dict, "overrides":
            [...]}``: a teacher trained first, into ``<run_dir>/teacher`` (reused on resume).
        data: the student's dataset splits (sizes a registered teacher).
        device: where the teacher runs.
        which: checkpoint of a run: ``"best"`` or ``"last"``.
        run_dir: the student's run folder (where a recipe teacher is trained; a temporary
            folder when None).
    """
    from dltricks.methods.transfer import load_run_model, train_once  # shared with transfer

    if isinstance(teacher, dict) and "recipe" in teacher:
        extra = sorted(set(teacher) - {"recipe", "overrides"})
        if extra:
            raise ValueError(f"teacher: unknown keys {extra}; with 'recipe' use overrides.")
        if run_dir is None:
            import tempfile

            run_dir = tempfile.mkdtemp(prefix="dltricks-teacher-")
        teacher = str(train_once(teacher["recipe"], Path(run_dir) / "teacher",
                                 teacher.get("overrides")))
    if isinstance(teacher, str | Path):
        model = load_run_model(teacher, device, which)
    elif isinstance(teacher, dict) and "run" in teacher:
        extra = sorted(set(teacher) - {"run"})
        if extra:
            raise ValueError(f"teacher: with 'run' give no other keys (got {extra}).")
        model = load_run_model(teacher["run"], device, which)
    elif isinstance(teacher, dict) and "model" in teacher:
        extra = sorted(set(teacher) - {"model", "kwargs", "weights"})
        if extra:
            raise ValueError(f"teacher: unknown keys {extra}; use model, kwargs, weights.")
        if "weights" not in teacher:
            raise ValueError("teacher: a registered model needs 'weights' (a .safetensors file "
                             "of trained weights); an untrained teacher teaches nothing.")
        from safetensors.torch import load_model

        from dltricks.models import create_model
        from dltricks.train.components import model_kwargs_for

        name = str(teacher["model"])
        model = create_model(name, **model_kwargs_for(name, data, dict(teacher.get("kwargs",
                                                                                   {}))))
        path = Path(teacher["weights"])
        if not path.is_file():
            raise ValueError(f"teacher weights file {str(path)!r} does not exist.")
        load_model(model, path, strict=True)
        model = model.to(device)
    else:
        raise ValueError("teacher must be a run folder, {run: folder}, {recipe: name, "
                         "overrides: [...]} or {model: name, kwargs: {...}, weights: "
                         f"file.safetensors}}; got {teacher!r}.")
    model.eval()
    model.requires_grad_(False)
    return model


def _check_teacher_spec(teacher: Any) -> None:
    """Refuses a teacher that cannot be found, before any training starts."""
    run = teacher if isinstance(teacher, str | Path) else (
        teacher.get("run") if isinstance(teacher, dict) else None)
    if run is not None and not (Path(run) / "recipe.yaml").is_file():
        raise ValueError(f"teacher {str(run)!r} is not a run folder (it has no recipe.yaml).")
    if isinstance(teacher, dict) and "weights" in teacher and not Path(
            teacher["weights"]).is_file():
        raise ValueError(f"teacher weights file {str(teacher['weights'])!r} does not exist.")


class _Capture:
    """Forward hook keeping the latest output of a module."""

    def __init__(self) -> None:
        self.value: Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self.value = output if isinstance(output, Tensor) else output[0]


def _module(model: nn.Module, name: str, who: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        some = ", ".join(n for n in list(modules)[1:40] if n)
        raise ValueError(f"{who} has no module {name!r}; its modules include: {some}.")
    return modules[name]


# --------------------------------------------------------------------------- the term


class Distillation(LossTerm):
    """Logit (Hinton et al. 2015) and optional hint (FitNets) distillation from a teacher.

    Args:
        teacher: a run folder, ``{run: folder}``, ``{recipe: name, overrides: [...]}`` (trained
            first into ``<run>/teacher``) or ``{model: name, kwargs: {...}, weights:
            file.safetensors}`` (see :func:`load_teacher`).
        temperature: T of the soft targets (> 0).
        alpha: share of the soft term in Hinton's mixture, in [0, 1] (with weight 1 the total
            is ``(1 - alpha) CE + alpha T^2 KL``).
        mix: True (default): return Hinton's mixture ``alpha (T^2 KL - CE)`` (with weight 1
            the total is the mixture). False: return the soft term ``T^2 KL`` alone (``alpha``
            is not used), to weight with the objective's ``weight`` while the built-in
            ``task_scale`` term scales the task loss, e.g. ``task_scale`` 0.1 and weight 0.9.
        hint_weight: weight of the FitNets hint loss (0: logits only).
        student_layer: module name of the student whose output gives the hint features.
        teacher_layer: module name of the teacher whose output is the hint target.
        checkpoint: which checkpoint of a teacher run: ``"best"`` or ``"last"``.

    Logs ``term/distill/soft`` (alpha T^2 KL; T^2 KL with ``mix`` false), ``term/distill/hard``
    (-alpha CE; not with ``mix`` false) and, with hints, ``term/distill/hint``.
    """

    def __init__(self, teacher: str | dict[str, Any], temperature: float = 4.0,
                 alpha: float = 0.9, hint_weight: float = 0.0, student_layer: str | None = None,
                 teacher_layer: str | None = None,
                 checkpoint: Literal["best", "last"] = "best", mix: bool = True) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
        if hint_weight < 0:
            raise ValueError(f"hint_weight must be non-negative, got {hint_weight}.")
        if hint_weight > 0 and not (student_layer and teacher_layer):
            raise ValueError("hint_weight > 0 needs student_layer and teacher_layer (module "
                             "names whose outputs are matched).")
        self.teacher_spec = teacher
        self.temperature, self.alpha, self.hint_weight = float(temperature), float(alpha), \
            float(hint_weight)
        self.student_layer, self.teacher_layer = student_layer, teacher_layer
        self.checkpoint = checkpoint
        self.mix = bool(mix)
        self.teacher: nn.Module | None = None
        self._ctx: TermContext | None = None
        self.regressor: nn.Module | None = None
        self._s_cap, self._t_cap = _Capture(), _Capture()

    def setup(self, ctx: TermContext) -> None:
        self._ctx = ctx
        _check_teacher_spec(self.teacher_spec)
        if self.hint_weight > 0:  # the regressor's size needs the teacher now
            self.load(ctx)
            assert self.teacher is not None
            probe = ctx.data.train.x[:2].to(ctx.device)
            assert self.student_layer and self.teacher_layer
            _module(ctx.model, self.student_layer, "The student").register_forward_hook(
                self._s_cap)
            _module(self.teacher, self.teacher_layer, "The teacher").register_forward_hook(
                self._t_cap)
            was = ctx.model.training
            ctx.model.eval()  # a dry run for the feature shapes; no BN statistics change
            with torch.no_grad():
                ctx.model(probe)
                self.teacher(probe)
            ctx.model.train(was)
            assert self._s_cap.value is not None and self._t_cap.value is not None
            self.regressor = make_regressor(tuple(self._s_cap.value.shape[1:]),
                                            tuple(self._t_cap.value.shape[1:])).to(ctx.device)

    def load(self, ctx: TermContext) -> None:
        """Loads (or first trains) the teacher and checks that it fits the data. Called on the
        first step, so that evaluating a finished student never needs the teacher."""
        self.teacher = load_teacher(self.teacher_spec, ctx.data, ctx.device, self.checkpoint,
                                    ctx.run_dir)
        with torch.no_grad():
            t_out = self.teacher(ctx.data.train.x[:2].to(ctx.device))
        t_logits = t_out if isinstance(t_out, Tensor) else t_out.logits
        if t_logits.shape[-1] != ctx.data.num_classes:
            raise ValueError(f"The teacher predicts {t_logits.shape[-1]} classes, the data "
                             f"have {ctx.data.num_classes}.")

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"regressor": self.regressor} if self.regressor is not None else {}

    def __call__(self, step: StepContext) -> dict[str, Tensor]:
        if self.teacher is None:
            if self._ctx is None:
                raise RuntimeError("Distillation.setup() was not called.")
            with torch.random.fork_rng(devices=[]):  # loading must not move the run's RNG
                self.load(self._ctx)
        assert self.teacher is not None
        with torch.no_grad(), step.autocast():
            t_out = self.teacher(step.x)
        t_logits = (t_out if isinstance(t_out, Tensor) else t_out.logits).float()
        soft = soft_target_loss(step.outputs.logits, t_logits, self.temperature)
        if self.mix:
            out = {"soft": self.alpha * soft, "hard": -self.alpha * step.loss}
        else:  # the soft term alone; the recipe weights it (and task_scale the task loss)
            out = {"soft": soft}
        if self.regressor is not None:
            assert self._s_cap.value is not None and self._t_cap.value is not None
            out["hint"] = self.hint_weight * hint_loss(self._s_cap.value, self._t_cap.value,
                                                       self.regressor)
        return out


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "Distillation",
    "count_parameters",
    "distillation_loss",
    "hint_loss",
    "load_teacher",
    "make_regressor",
    "soft_target_loss",
]
