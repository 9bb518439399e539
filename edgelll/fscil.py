"""Few-shot class-incremental (FSCIL) streams, the protocol of TOPIC (Tao et al., "Few-Shot
Class-Incremental Learning", CVPR 2020, arXiv:2004.10956, section 4).

Session 0, the base session, holds ``base_classes`` classes with all their training samples;
sessions 1..S each add ``ways`` new classes with ``shots`` training samples per class, chosen by
a seeded generator without replacement. A data set with a base pool (Omniglot's background
characters, :func:`edgelll.data.load_omniglot`) draws the base classes from the pool and the new
classes from outside it, so new classes come from alphabets the base session never saw.

How sessions map onto the learner: session s is experience s, with one growing head (class
scenario, global labels in session order). Experience s's test set holds the test samples of
session s's own classes, so ``acc_matrix[i][j]`` keeps its meaning (accuracy on session j's classes
after learning session i), and the test set of session i, covering every class seen so far, is the
union of experiences 0..i: its accuracy is the test-count-weighted mean of row i
(:func:`edgelll.metrics.session_accuracies`). Every class used must have test samples, or a
session's test set would lack a seen class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError, DataError


@dataclass(frozen=True)
class FscilSpec:
    base_classes: int | None = None  # None: the classes the sessions leave (or the whole pool)
    ways: int = 1  # the defaults are LearnConfig's
    shots: int = 5
    sessions: int = 5


def fscil_spec(cfg) -> FscilSpec:
    """The sessions a :class:`~edgelll.config.LearnConfig` asks for."""
    return FscilSpec(cfg.base_classes, cfg.ways, cfg.shots, cfg.sessions)


def session_classes(order: list[int], spec: FscilSpec,
                    base_pool: tuple[int, ...] | None = None) -> list[list[int]]:
    """The classes of every session, in ``order``: base first, then ``ways`` per session."""
    pool = set(base_pool) if base_pool is not None else None
    need = spec.ways * spec.sessions
    if pool is None:
        base_n = len(order) - need if spec.base_classes is None else spec.base_classes
        base_from, new_from = order[:max(0, base_n)], order[max(0, base_n):]
        avail = len(order)
    else:
        base_from = [c for c in order if c in pool]
        new_from = [c for c in order if c not in pool]
        base_n = len(base_from) if spec.base_classes is None else spec.base_classes
        avail = len(base_from)
    if base_n < 1:
        raise ConfigError(f"{spec.sessions} sessions of {spec.ways} ways need {need} of the "
                          f"{len(order)} classes, leaving none for the base session; lower "
                          f"--sessions or --ways")
    if base_n > avail:
        where = "base-pool (background) classes" if pool is not None else "classes"
        raise ConfigError(f"--base-classes {base_n} is more than the {avail} {where} of this data; "
                          f"lower --base-classes")
    left = list(new_from)
    if len(left) < need:  # more ways than classes left
        raise ConfigError(f"{spec.sessions} sessions of {spec.ways} ways (--sessions, --ways) need "
                          f"{need} new classes, but only {len(left)} are left after the {base_n} "
                          f"base classes; lower --ways, --sessions or --base-classes")
    groups = [list(base_from[:base_n])]
    groups += [left[s * spec.ways:(s + 1) * spec.ways] for s in range(spec.sessions)]
    return groups


def _check_counts(groups, counts_tr, counts_te, shots) -> None:
    for s, group in enumerate(groups):
        for c in group:
            if counts_te[c] == 0:
                raise DataError(f"session {s}'s test set lacks class {c}, seen from session {s} "
                                f"on (no test samples of it); add test samples of class {c} or "
                                f"give a --class-order without it")
            need = 1 if s == 0 else shots
            if counts_tr[c] < need:
                raise DataError(f"class {c} of session {s} has {int(counts_tr[c])} training "
                                f"samples, fewer than the {need} it needs (--shots); lower "
                                f"--shots or use other data")


def fscil_experiences(x_tr, y_tr, x_te, y_te, order: list[int], spec: FscilSpec, seed: int,
                      base_pool: tuple[int, ...] | None = None):
    """The sessions as :class:`~edgelll.streams.Experience` objects, and the classes used (in
    session order: the stream's class order)."""
    from .streams import Experience, _subset

    groups = session_classes(order, spec, base_pool)
    used = [c for g in groups for c in g]
    n = max(order) + 1
    y_np = y_tr.cpu().numpy()
    counts_tr = np.bincount(y_np, minlength=n)
    counts_te = np.bincount(y_te.cpu().numpy(), minlength=n)
    _check_counts(groups, counts_tr, counts_te, spec.shots)
    lut = torch.full((n,), -1, dtype=torch.long, device=y_tr.device)
    lut[torch.tensor(used, device=y_tr.device)] = torch.arange(len(used), device=y_tr.device)
    by_class = np.argsort(y_np, kind="stable")  # training rows grouped by class, in data order
    starts = np.concatenate([[0], np.cumsum(counts_tr)])
    rng = np.random.default_rng([seed, 0xF5C1])  # its own stream: independent of --class-order
    exps, seen = [], 0
    for s, group in enumerate(groups):
        if s == 0:
            idx = np.concatenate([by_class[starts[c]:starts[c + 1]] for c in group])
        else:  # a per-class draw: classes, not samples, are looped over
            idx = np.concatenate([
                by_class[starts[c] + np.sort(rng.choice(counts_tr[c], spec.shots, replace=False))]
                for c in group])
        idx_t = torch.from_numpy(np.sort(idx)).to(y_tr.device)
        te = torch.isin(y_te, torch.tensor(group, device=y_te.device))
        exps.append(Experience(
            index=s, task_id=s, classes=tuple(int(c) for c in group),
            head_size=seen + len(group), label_offset=seen, x_test=x_te[te],
            y_test=lut[y_te[te]], _train=_subset(x_tr, y_tr, idx_t, lut, s),
            train_bytes=int(idx_t.numel()) * (x_tr[0].nbytes + 16)))
        seen += len(group)
    return exps, used

