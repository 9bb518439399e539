"""The resume property every strategy's tests check: a run "killed" after some experiences and
resumed from its checkpoints ends bit-identical to the same run left alone."""

from __future__ import annotations

import torch

from edgelll.learner import Learner


def run_interrupted(cfg, run_dir, n: int) -> Learner:
    """Learn the first ``n`` experiences of ``cfg`` into ``run_dir``, then stop as if killed."""
    learner = Learner(cfg, run_dir=run_dir)
    for exp in learner.stream.experiences[:n]:
        learner.learn_experience(exp)
    return learner


def assert_resume_is_exact(cfg, tmp_path, n: int = 2):
    """Run ``cfg`` whole into tmp_path/full and, interrupted after ``n`` experiences and resumed,
    into tmp_path/cut; assert equal accuracy matrices and weights. Returns (full, resumed)."""
    full = Learner(cfg, run_dir=tmp_path / "full").run()
    run_interrupted(cfg, tmp_path / "cut", n)
    resumed = Learner(cfg, run_dir=tmp_path / "cut", resume=True).run()
    assert resumed.acc_matrix == full.acc_matrix  # exact, not approximate
    for x, y in zip(full.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(x, y)
    return full, resumed
