"""Naive fine-tuning: train on each experience in turn with nothing to stop forgetting.

The lower bound every continual-learning paper reports (e.g. "None" in van de Ven & Tolias 2019,
arXiv:1904.07734, Table 4).
"""

from __future__ import annotations

from .base import Strategy


class Naive(Strategy):
    name = "naive"
    description = "fine-tune on each experience in turn (lower bound)"
