"""Knowledge distillation, shared by the ``lwf``, ``distill`` and ``bic`` strategies.

The distillation loss of Hinton, Vinyals & Dean (2015, arXiv:1503.02531), section 2:

    L_kd(s, t; T) = T^2 * KL( softmax(t / T) || softmax(s / T) ),  averaged over the batch,

where ``s`` are the student's logits and ``t`` the teacher's. The factor T^2 keeps the gradient's
size independent of T: for a high T, dL/ds_i ~= (s_i - t_i) / (C * B) for zero-mean logits (C
classes, B rows), the paper's equation (4) times T^2.

Also here: a frozen copy of a model, rebuilt from plain values (``arch`` + tensors) on the meta
device and then given the tensors, so taking a copy neither draws from torch's RNG nor allocates a
throw-away initialisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over classes, mean over rows.

    Units the teacher gives -inf (a multi-head model's padding, probability 0) add nothing, as
    0 * log 0 = 0. The teacher is not differentiated through: pass detached logits.
    """
    if not T > 0:
        raise ConfigError(f"the distillation temperature T must be > 0, got {T}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    log_p_s = F.log_softmax(student_logits.float() / T, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / T, dim=1)
    p_t = log_p_t.exp()
    terms = torch.where(p_t > 0, p_t * (log_p_t - log_p_s), torch.zeros_like(p_t))
    return (T * T) * terms.sum(1).mean()


def widen_teacher(teacher_logits: torch.Tensor, width: int) -> torch.Tensor:
    """The teacher's logits padded with -inf to ``width`` units: the classes the teacher never
    knew get target probability 0 in :func:`kd_loss` (class-incremental soft targets)."""
    return F.pad(teacher_logits, (0, width - teacher_logits.shape[1]), value=float("-inf"))


def frozen(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with no parameter asking for gradients."""
    model.requires_grad_(False)
    return model.eval()


def rebuild_from(spec: dict, state: dict) -> nn.Module:
    """The model ``spec`` describes, holding exactly the tensors of ``state`` (no copy)."""
    from .models import rebuild

    with torch.device("meta"):
        model = rebuild(spec)
    model.load_state_dict(state, assign=True)
    return model


def rebuild_frozen(spec: dict, state: dict) -> nn.Module:
    return frozen(rebuild_from(spec, state))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` (its own tensors: later training does not move it)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return rebuild_frozen(model.spec(), state)


def model_state(model: nn.Module | None) -> dict | None:
    """The plain-value form a strategy stores a model in: ``{"spec", "state"}``."""
    if model is None:
        return None
    return {"spec": model.spec(), "state": model.state_dict()}


def load_model_state(stored: dict | None) -> nn.Module | None:
    """A frozen model from :func:`model_state`'s form (None stays None)."""
    return None if stored is None else rebuild_frozen(stored["spec"], dict(stored["state"]))


def model_tensors(model: nn.Module | None) -> list[torch.Tensor]:
    if model is None:
        return []
    return [*model.parameters(), *model.buffers()]
