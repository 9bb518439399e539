"""A trained model as a self-describing artifact: :func:`load_model` rebuilds it from a run
directory or a checkpoint alone (its spec and tensors), ready to predict on raw samples, with no
data set, stream or strategy in sight."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import CheckpointError
from .runs import latest_checkpoint, load_checkpoint


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """The model a run learnt: ``path`` is a run directory (its last checkpoint) or one
    checkpoint file. Returned in eval mode; ``model.predict(x, task_ids)`` gives data-set labels."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path} holds no checkpoint (checkpoints/expNNN.pt); give a run "
                                  f"directory that finished an experience, or a checkpoint file")
        path = found
    return model_from_checkpoint(load_checkpoint(path, map_location=device), path).to(device)


def model_from_checkpoint(ckpt: dict, path: Path):
    """The model a loaded checkpoint holds, in eval mode (its spec rebuilt, its tensors loaded)."""
    from .models import rebuild

    if "spec" not in ckpt:
        raise CheckpointError(f"checkpoint {path} has no model spec; it was written by an older "
                              f"edgelll and cannot be rebuilt without its run")
    try:
        model = rebuild(ckpt["spec"])
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not hold a model its spec describes "
                              f"({str(exc).splitlines()[0][:160]})") from None
    return model.eval()
