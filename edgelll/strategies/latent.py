"""Latent replay (Pellegrini et al. 2020, arXiv:1912.01100): exemplars stored as activations.

A sample is stored as the activations after the first ``layer`` modules of the backbone, quantised
per sample to ``bits`` (4 or 8) with its own range (see ``edgelll.quant``), instead of as an input.
Activations after a pooling layer or a narrow hidden layer take fewer bytes than the image, and
replaying them runs only the layers above. The layers below are frozen from the second experience on
(``freeze_below``), as in the paper's frozen/slowed lower layers, so stored activations stay valid.
Selection is a reservoir over the stream (Vitter's Algorithm R, as in ``replay``). The replay loss is
``weight * CE`` on one replay batch per step, through the layers above ``layer`` and the head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..buffer import ExemplarBuffer
from ..errors import BudgetError, ConfigError
from ..quant import dequantize, quantize, row_bytes
from .base import Batch, Plan, Strategy


@dataclass(frozen=True)
class LatentParams:
    layer: int = field(default=0, metadata={
        "help": "backbone modules below the stored activations (0: the normalised input)"})
    bits: int = field(default=8, metadata={"help": "8 or 4 bits per stored value"})
    size: int | None = field(default=None, metadata={
        "help": "exemplars; None: fill the memory budget (200 without one)",
        "resolved": "capacity"})
    batch_size: int | None = field(default=None, metadata={
        "help": "replayed rows per step; None: the training batch size",
        "resolved": "cfg.batch_size"})
    weight: float = field(default=1.0, metadata={"help": "weight of the replay loss"})
    freeze_below: bool = field(default=True, metadata={
        "help": "freeze the layers below `layer` after the first experience"})

    def __post_init__(self) -> None:
        if self.layer < 0:
            raise ConfigError(f"latent.layer must be >= 0, got {self.layer}")
        if self.bits not in (4, 8):
            raise ConfigError(f"latent.bits must be 4 or 8, got {self.bits}")
        if self.size is not None and self.size < 1:
            raise ConfigError(f"latent.size must be at least 1, got {self.size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"latent.batch_size must be at least 1, got {self.batch_size}")
        if not self.weight >= 0:
            raise ConfigError(f"latent.weight must be >= 0, got {self.weight}")


class LatentReplay(Strategy):
    name = "latent"
    description = "replay quantised activations stored at a chosen layer (lower layers frozen)"
    Params = LatentParams

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.capacity = self.params.size or 200
        self.buffer: ExemplarBuffer | None = None
        self.shape: tuple[int, ...] = ()

    # -- where the latents live -----------------------------------------------------------------
    def _split(self, model) -> tuple[torch.nn.Module, torch.nn.Module]:
        backbone = model.backbone
        return backbone[: self.params.layer], backbone[self.params.layer:]

    def setup(self, ctx) -> None:
        for other in ("independent", "progressive"):
            if other in ctx.cfg.strategies:
                raise ConfigError(f"latent replay stores activations of one shared backbone, and "
                                  f"{other} gives every task a backbone of its own; drop one")
        backbone = ctx.model.backbone
        if not isinstance(backbone, torch.nn.Sequential) or self.params.layer > len(backbone):
            n = len(backbone) if isinstance(backbone, torch.nn.Sequential) else 0
            raise ConfigError(f"latent.layer={self.params.layer}, but model {ctx.cfg.model!r} has "
                              f"a sequential backbone of {n} modules; lower latent.layer")
        self.shape = self._latent_shape(ctx.model, ctx.model.input_shape)

    def _latent_shape(self, model, sample_shape) -> tuple[int, ...]:
        below, _ = self._split(model)
        ref = next(model.parameters())
        with torch.no_grad():
            out = below(torch.zeros((1, *sample_shape), device=ref.device, dtype=ref.dtype))
        return tuple(out.shape[1:])

    def _row(self) -> int:
        return row_bytes(math.prod(self.shape), self.params.bits) + ExemplarBuffer.LABEL_BYTES

    # -- budget ---------------------------------------------------------------------------------
    def sized_by_budget(self) -> bool:
        return self.params.size is None

    def planned_bytes(self, plan: Plan) -> int:
        return self.capacity * self._row()

    def fit_budget(self, plan: Plan, bytes_left: int) -> None:
        self.capacity = bytes_left // self._row()
        if self.capacity < 1:
            raise BudgetError(f"the memory budget leaves {bytes_left} B for latent replay, less than "
                              f"one exemplar ({self._row()} B); raise --memory or lower latent.bits")

    def extra_rows(self, batch_size: int) -> int:
        return self.params.batch_size or batch_size

    # -- hooks ----------------------------------------------------------------------------------
    def before_experience(self, ctx, exp) -> None:
        if self.buffer is None:
            width = row_bytes(math.prod(self.shape), self.params.bits)
            self.buffer = ExemplarBuffer(self.capacity, (width,), torch.uint8, ctx.device)

    def adapt_model(self, ctx, model, exp):
        if self.params.freeze_below and exp.index > 0:
            self._split(model)[0].requires_grad_(False)
        return model

    def extra_loss(self, ctx, batch, logits):
        buf = self.buffer
        if buf is None or buf.size == 0 or self.params.weight == 0:
            return None
        rows = buf.sample(self.params.batch_size or len(batch), ctx.generator)
        h = dequantize(rows.x, self.shape, self.params.bits)
        _, above = self._split(ctx.model)
        out = ctx.model.forward_head(above(h), rows.t)
        return self.params.weight * F.cross_entropy(out.float(), rows.y)

    @torch.no_grad()
    def after_experience(self, ctx, exp, data: Batch) -> None:
        below, _ = self._split(ctx.model)
        order = torch.randperm(len(data), generator=ctx.generator).to(data.y.device)
        codes = []
        for chunk in order.split(4096):  # bounded temporary floats
            codes.append(quantize(below(ctx.model.preprocess(data.x[chunk])), self.params.bits))
        self.buffer.reservoir_update(Batch(torch.cat(codes), data.y[order], data.t[order]),
                                     ctx.generator)

    # -- state ----------------------------------------------------------------------------------
    def tensors(self) -> list[torch.Tensor]:
        return self.buffer.tensors() if self.buffer is not None else []

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "shape": list(self.shape),
                "buffer": self.buffer.state_dict() if self.buffer is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.capacity, self.shape = int(state["capacity"]), tuple(state["shape"])
        if state["buffer"] is not None:
            ref = state["buffer"]["x"]
            self.buffer = ExemplarBuffer(self.capacity, tuple(ref.shape[1:]), torch.uint8, ref.device)
            self.buffer.load_state_dict(state["buffer"])
