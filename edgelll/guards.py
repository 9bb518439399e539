"""Checks that a run can be built and fits the machine, made before anything large is allocated.

An impossible model argument (pooling wider than the image, a layer of zero units) or a model
whose training state exceeds the machine's memory fails deep inside torch with a shape error or an
allocator message, or worse, Linux overcommits the allocation and kills the process when the
weights are initialised. Building the model on PyTorch's ``meta`` device and running one sample
through it costs nothing and turns each of these into one line that names the settings.
"""

from __future__ import annotations

import os
import warnings

import torch

from .config import LearnConfig, format_bytes
from .errors import BudgetError, ConfigError

# Parameters, their gradients, and the optimizer's per-parameter state (Adam: two moments).
_OPT_COPIES = {"adam": 2, "sgd": 1}


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes that can still be allocated on ``device`` (None when the system does not say)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:
            return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _settings(cfg: LearnConfig) -> str:
    args = " ".join(f"model.{k}={_show(v)}" for k, v in cfg.model_args.items())
    return f"--model {cfg.model}" + (f" with {args}" if args else "")


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


# What a model raises when its arguments do not fit the samples (checked by its first forward
# pass, the learner's probe: a forward pass on the meta device would import torch._dynamo).
SHAPE_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, ZeroDivisionError)


def shape_error(cfg: LearnConfig, input_shape: tuple[int, ...], exc: BaseException) -> ConfigError:
    reason = " ".join(str(exc).split())[:160] or type(exc).__name__
    return ConfigError(f"{_settings(cfg)} cannot take samples of shape {tuple(input_shape)} "
                       f"({reason}); change those settings")


def check_model(cfg: LearnConfig, input_shape: tuple[int, ...], n_classes: int,
                multi_head: bool, device: torch.device | str = "cpu") -> None:
    """Refuse a model that cannot be built for ``input_shape`` samples, has an empty layer, or whose
    parameters, gradients and optimizer state exceed the memory available on ``device``."""
    from .models import create_model

    input_shape = tuple(int(d) for d in input_shape)
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "zero-element tensors": refused below instead
            model = create_model(cfg.model, input_shape, n_classes, multi_head=multi_head,
                                 **cfg.model_args)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (input shape {input_shape})") from None
    except SHAPE_ERRORS as exc:
        raise shape_error(cfg, input_shape, exc) from None
    params = list(model.parameters())
    empty = [name for name, p in model.named_parameters() if p.numel() == 0]
    if empty:
        raise ConfigError(f"{_settings(cfg)} has a layer with no units ({empty[0]}) for samples "
                          f"of shape {input_shape}; every width and channel count must be >= 1")
    n_bytes = sum(p.numel() * p.element_size() for p in params)
    copies = 2 + (_OPT_COPIES["adam"] if cfg.optimizer == "adam" else int(cfg.momentum > 0))
    free = available_memory(device)
    if free is not None and n_bytes * copies > free:
        raise BudgetError(f"{_settings(cfg)} needs {format_bytes(n_bytes * copies)} for its "
                          f"parameters, gradients and {cfg.optimizer} state, more than the "
                          f"{format_bytes(free)} free on {torch.device(device).type}; use a "
                          f"smaller model")


def check_plan(planned: dict[str, int], device: torch.device | str = "cpu") -> None:
    """Refuse a run whose planned peak state (``plan_memory``'s components) exceeds the memory
    available, before the buffers it sizes are allocated."""
    total = sum(planned.values())
    free = available_memory(device)
    if free is None or total <= free:
        return
    biggest = max(planned, key=planned.get)
    raise BudgetError(f"the run plans {format_bytes(total)} of state, more than the "
                      f"{format_bytes(free)} free on {torch.device(device).type}; the largest part "
                      f"is {biggest} ({format_bytes(planned[biggest])}): lower its size, "
                      f"--batch-size, or set --memory")
