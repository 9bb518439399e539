"""The strategy interface: a small fixed set of hooks, each a no-op by default.

The learner calls every hook of every strategy in the order the strategies were given, so
several compose in one run (``--strategy replay --strategy ewc``). Hooks return values rather than
reach into the learner; what a strategy keeps is in its ``state_dict()`` (tensors and plain values
only, so checkpoints load with ``weights_only=True``) and counted by ``memory_bytes()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from ..batch import Batch  # noqa: F401  (re-exported for strategies)

if TYPE_CHECKING:
    from ..config import LearnConfig
    from ..streams import Experience, Stream


@dataclass
class Context:
    """What strategies may read: the run's config, stream, current model, device and RNG."""

    cfg: LearnConfig
    stream: Stream
    model: nn.Module
    device: torch.device
    generator: torch.Generator
    experience: int = 0
    say: object = field(default=None, compare=False, repr=False)  # the run's log, if it has one

    def report(self, text: str) -> None:
        """One line for the run's log (the console), as the learner's own messages go."""
        if self.say is not None:
            self.say(text)


@dataclass(frozen=True)
class NoParams:
    """For strategies without tunable parameters."""


@dataclass(frozen=True)
class Plan:
    """What the learner will look like at the end of the stream, for budget planning."""

    param_bytes: int  # all parameters of the final model
    buffer_bytes: int  # its buffers (normalisation constants, class means)
    trainable_bytes: int  # parameters that receive gradients
    sample_bytes: int  # one stored input sample, in its storage dtype
    n_experiences: int
    batch_size: int
    train_bytes: tuple[int, ...] = ()  # each experience's training data, in storage bytes
    activation_bytes: int = 0  # a training step's activations (every row of the batch)
    model: object = field(default=None, compare=False, repr=False)  # the initial model (probing)

    @property
    def model_bytes(self) -> int:
        """A whole copy of the final model (what a strategy keeping a frozen copy stores)."""
        return self.param_bytes + self.buffer_bytes


class Strategy:
    """Base class: override only the hooks a method needs."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams

    def __init__(self, params=None) -> None:
        self.params = params if params is not None else self.Params()

    # -- the hooks, in the order the learner calls them ---------------------------------------
    def setup(self, ctx: Context) -> None:
        """Called once, before the memory budget is planned and before anything trains (also on
        resume): refuse a run the strategy cannot serve (scenario, model, ``ctx.cfg.strategies``)
        with a ConfigError, and record what :meth:`planned_bytes` needs. The one hook that may
        look at the whole stream; :meth:`adapt_model` must not change the strategy's state,
        since planning runs it on a simulated model."""

    def before_experience(self, ctx: Context, exp: Experience) -> None:
        """Called when an experience starts, before the model is adapted to it."""

    def adapt_model(self, ctx: Context, model: nn.Module, exp: Experience) -> nn.Module:
        """Return the model to train on ``exp``, changed in place (a head variant wrapped, a
        column added, layers frozen) or new; a changed one rebuilds the optimizer."""
        return model

    def holdout(self, ctx: Context, exp: Experience, data: Batch) -> Batch:
        """Return the part of the experience's own data that is learned from; rows held out here
        (BiC's validation split) stay with the strategy, and never reach training, buffers or
        ``after_experience``."""
        return data

    def training_data(self, ctx: Context, exp: Experience, data: Batch) -> Batch:
        """Return the data set the experience trains on (joint training widens it)."""
        return data

    def step_flops(self, ctx: Context, batch: Batch, forward_flops: int) -> int:
        """FLOPs this strategy adds to a training step on ``batch`` beyond the model's forward and
        backward pass of it (``forward_flops``: one row's forward pass through the model). They
        count towards ``--compute-flops``."""
        return 0

    def mix_batch(self, ctx: Context, batch: Batch) -> Batch:
        """Return the batch to train on (replay adds stored samples)."""
        return batch

    def replaces_loss(self) -> bool:
        """True when :meth:`task_loss` stands in for the learner's cross-entropy."""
        return False

    def task_loss(self, ctx: Context, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        """The loss in place of the learner's cross-entropy on the labels, for a strategy whose
        :meth:`replaces_loss` is True (at most one per run)."""
        raise NotImplementedError

    def extra_loss(self, ctx: Context, batch: Batch, logits: torch.Tensor) -> torch.Tensor | None:
        """An extra term added to the loss; ``batch.x`` holds the samples as stored (every model
        normalises its own input)."""
        return None

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        """Called between backward and the optimiser step (gradient surgery goes here)."""

    def after_step(self, ctx: Context, batch: Batch) -> None:
        """Called after the optimiser step (path integrals over the parameter trajectory)."""

    def maybe_grow(self, ctx: Context, exp: Experience, data: Batch, steps: int, optimizer):
        """Called after every training step (``steps`` so far on ``exp``, whose training data is
        ``data``): a strategy that grows the network does it here, in place, carries
        ``optimizer``'s state through the growth, and returns what changed (a
        :class:`models.net2net.Growth`); the learner then tells every strategy
        (:meth:`after_growth`) and measures the model again. None: no growth."""
        return None

    def after_growth(self, ctx: Context, growth) -> None:
        """The network grew mid-experience (:meth:`maybe_grow`): parameter-shaped state (an
        importance, an anchor) follows it, e.g. by ``models.net2net.map_like``."""

    def growth_time(self, seconds: float) -> None:
        """How long training paused for the growth this strategy just made (its decision, the
        growth, every strategy's mapping and the learner's new measurements), for its log."""

    def after_experience(self, ctx: Context, exp: Experience, data: Batch) -> None:
        """Called when training on ``exp`` ends; ``data`` is what it trained on."""

    def report(self) -> dict:
        """Figures of the strategy's own for metrics.json (plain values), e.g. a teacher's matrix."""
        return {}

    # -- state and bytes ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the strategy holds between steps (what :meth:`memory_bytes` counts)."""
        return []

    def memory_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors())

    def planned_bytes(self, plan: Plan) -> int:
        """The most the strategy's fixed state will take during the run."""
        return 0

    def sized_by_budget(self) -> bool:
        """True when a knob (e.g. the buffer size) is left for :meth:`fit_budget` to choose."""
        return False

    def fit_budget(self, plan: Plan, bytes_left: int) -> None:
        """Size a knob (e.g. a buffer) to the bytes left once every fixed part is counted."""

    def extra_rows(self, batch_size: int) -> int:
        """How many rows the strategy adds to each training batch (for activations and FLOPs)."""
        return 0


def tensor_bytes(state) -> int:
    """Bytes of every tensor inside a nested structure of dicts, lists and tensors."""
    if isinstance(state, torch.Tensor):
        return state.nbytes
    if isinstance(state, dict):
        return sum(tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensor_bytes(v) for v in state)
    return 0
