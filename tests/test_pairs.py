"""Strategies compose: every pair of strategies that ``edgelll list strategies`` offers either
learns on the embedded digits or is refused before anything trains, with one line that says why.
"""

from __future__ import annotations

import itertools
import math

import pytest

from edgelll import resolve
from edgelll.data import load_dataset
from edgelll.errors import ConfigError
from edgelll.learner import Learner
from edgelll.strategies import STRATEGIES

# Small settings so that 120-odd pairs run in well under a minute.
SMALL = {"bic": {"epochs": 1, "val_per_class": 2}, "distill": {"teacher_hidden": (16,)},
         "generative": {"hidden": (16,), "latent": 4}, "gem": {"size": 20},
         "agem": {"size": 20}, "replay": {"size": 20}, "icarl": {"size": 20},
         "latent": {"size": 20}, "ewc": {"fisher_samples": 20}, "mas": {"samples": 20}}

# The pairs that cannot run together, and a word their refusal must contain.
REFUSED = {
    frozenset({"independent", "bic"}): "head of its own",
    frozenset({"independent", "icarl"}): "shared feature space",
    frozenset({"independent", "latent"}): "backbone of its own",
    frozenset({"independent", "ncm"}): "shared feature space",
    frozenset({"icarl", "ncm"}): "class means",
}
# the gradient-free heads: one head that decides predictions per run, in one shared feature space
_FREE = ("hebbian", "competitive", "neural-gas", "slda")
REFUSED.update({frozenset({"independent", g}): "shared feature space" for g in _FREE})
# progressive runs in the task scenario only, where these do not
REFUSED.update({frozenset({"progressive", s}): "scenario"
                for s in ("bic", "icarl", "ncm", *_FREE)})
# net2net grows the network: strategies whose state cannot follow, or that read the width
REFUSED.update({frozenset({"net2net", s}): "drop one" for s in (
    "independent", "progressive", "gem", "agem", "ncm", "icarl", *_FREE)})
REFUSED.update({frozenset({"progressive", "independent"}): "its own network",
                frozenset({"progressive", "latent"}): "backbone of its own"})
REFUSED.update({frozenset({g, other}): "decide predictions" for g in _FREE
                for other in (*_FREE, "ncm", "icarl") if other != g})

PAIRS = list(itertools.combinations(STRATEGIES, 2))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _cfg(a: str, b: str):
    task = "progressive" in (a, b)  # columns picked by task id: the task scenario only
    return resolve({"strategies": [a, b], "tasks": 2, "steps": 2, "batch_size": 8,
                    **({"scenario": "task"} if task else {}),
                    "model_args": {"hidden": (8,)}, "device": "cpu",
                    **{k: v for k, v in SMALL.items() if k in (a, b)}})


def test_the_matrix_covers_every_listed_strategy():
    assert {s for pair in PAIRS for s in pair} == set(STRATEGIES) and len(STRATEGIES) >= 17
    assert all(pair <= set(STRATEGIES) for pair in REFUSED)


@pytest.mark.parametrize("a,b", PAIRS, ids=["+".join(p) for p in PAIRS])
def test_every_pair_runs_or_is_refused_up_front(a, b, digits):
    why = REFUSED.get(frozenset({a, b}))
    if why is not None:
        with pytest.raises(ConfigError, match=why) as err:
            Learner(_cfg(a, b), data=digits)  # refused while setting up: nothing trained
        assert "\n" not in str(err.value)
        return
    result = Learner(_cfg(a, b), data=digits).run()
    assert len(result.acc_matrix) == 2
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for row in result.acc_matrix for v in row)
    assert all(e["steps"] > 0 for e in result.experiences)
