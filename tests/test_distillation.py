"""The distillation family against its definitions: the KD loss (Hinton et al. 2015), LwF (Li &
Hoiem 2016), distillation into a smaller student, and BiC's bias correction (Wu et al. 2019)."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from edgelll import ConfigError, resolve
from edgelll.batch import Batch
from edgelll.kd import kd_loss
from edgelll.learner import Learner
from edgelll.models import create_model, rebuild
from edgelll.models import BiasHead
from edgelll.strategies import create_strategy

from _resume import assert_resume_is_exact

SHAPE = (1, 2, 2)


def _cfg(**kw):
    base = {"strategies": ["naive"], "epochs": 1, "steps": 6, "tasks": 3,
            "model_args": {"hidden": (16,)}}
    base.update(kw)
    return resolve(base)


def _ctx(model, scenario="class"):
    stream = SimpleNamespace(scenario=scenario, uses_task_ids=scenario == "task", input_shape=SHAPE)
    return SimpleNamespace(model=model, stream=stream)


def _strategy(learner, name):
    return next(s for s in learner.strategies if s.name == name)


def _run(cfg, n=None, run_dir=None):
    learner = Learner(cfg, run_dir=run_dir)
    for exp in learner.stream.experiences[:n]:
        learner.learn_experience(exp)
    return learner


# -- the distillation loss ------------------------------------------------------------------------
@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 5.0])
def test_kd_is_zero_when_student_equals_teacher_and_positive_otherwise(T):
    torch.manual_seed(0)
    s = torch.randn(6, 4)
    assert abs(kd_loss(s, s.clone(), T).item()) < 1e-6
    assert kd_loss(s, s + torch.randn(6, 4), T).item() > 1e-3
    assert abs(kd_loss(s, s + 3.0, T).item()) < 1e-6  # a shift of every logit is the same softmax


@pytest.mark.parametrize("T", [0.7, 2.0, 4.0])
def test_kd_is_T_squared_times_the_kl_of_the_softened_distributions(T):
    torch.manual_seed(1)
    s, t = torch.randn(5, 3).double(), torch.randn(5, 3).double()
    p = torch.exp(t / T) / torch.exp(t / T).sum(1, keepdim=True)
    q = torch.exp(s / T) / torch.exp(s / T).sum(1, keepdim=True)
    by_hand = (p * (p / q).log()).sum(1).mean().item()  # batch mean of KL(p || q)
    assert kd_loss(s, t, T).item() == pytest.approx(T * T * by_hand, rel=1e-5)


def test_kd_gradient_is_the_logit_difference_over_classes_and_rows_for_any_high_T():
    """Hinton et al. eq. (4): dC/ds_i ~= (s_i - t_i) / (C T^2) at high T; the T^2 factor makes the
    gradient the same for every T. Batch mean adds 1/B."""
    torch.manual_seed(2)
    B, C = 4, 5
    t = torch.randn(B, C).double()
    t -= t.mean(1, keepdim=True)
    d = 0.01 * torch.randn(B, C).double()
    d -= d.mean(1, keepdim=True)  # zero-mean logits, as in the paper's approximation
    grads = []
    for T in (10.0, 30.0, 100.0):
        s = (t + d).requires_grad_(True)
        kd_loss(s, t, T).backward()
        grads.append(s.grad)
    expected = d / (C * B)
    for g in grads:  # within 15% at T = 10, closer as T grows
        assert ((g - expected).norm() / expected.norm()).item() < 0.15
    errors = [((g - expected).norm() / expected.norm()).item() for g in grads]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.02
    # Without the T^2 factor the gradients at T = 10 and T = 100 would differ a hundredfold.
    assert 0.85 < (grads[0].norm() / grads[2].norm()).item() < 1.15


def test_kd_ignores_units_the_teacher_does_not_have():
    s, t = torch.randn(3, 2), torch.randn(3, 2)
    pad = torch.full((3, 1), float("-inf"))
    s_pad = torch.cat([s, pad], 1).requires_grad_(True)
    loss = kd_loss(s_pad, torch.cat([t, pad], 1), 2.0)
    loss.backward()
    assert loss.item() == pytest.approx(kd_loss(s, t, 2.0).item(), rel=1e-6)
    assert torch.isfinite(s_pad.grad).all()


@pytest.mark.parametrize("T", [0.0, -1.0])
def test_kd_rejects_a_non_positive_temperature(T):
    with pytest.raises(ConfigError, match="T"):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), T)


@pytest.mark.parametrize("kw", [
    {"strategies": ["lwf"], "lwf": {"T": 0.0}},
    {"strategies": ["lwf"], "lwf": {"alpha": -0.1}},
    {"strategies": ["distill"], "distill": {"T": -2.0}},
    {"strategies": ["distill"], "distill": {"alpha": 1.5}},
    {"strategies": ["distill"], "distill": {"alpha": -0.5}},
    {"strategies": ["distill"], "distill": {"student_params": 0}},
    {"strategies": ["distill"], "distill": {"teacher_model": "mpl"}},
    {"strategies": ["bic"], "bic": {"val_per_class": 0}},
    {"strategies": ["bic"], "bic": {"epochs": 0}},
    {"strategies": ["bic"], "bic": {"optimizer": "rmsprop"}},
])
def test_bad_params_are_config_errors(kw):
    with pytest.raises(ConfigError):
        _cfg(**kw)


# -- LwF ------------------------------------------------------------------------------------------
def test_lwf_class_scenario_distills_only_the_old_units():
    torch.manual_seed(3)
    model = create_model("mlp", SHAPE, 2, hidden=(5,))
    lwf = create_strategy("lwf", {"alpha": 0.7, "T": 2.0})
    ctx = _ctx(model)
    lwf.after_experience(ctx, SimpleNamespace(task_id=0), None)
    model.head.grow(4)
    x = torch.randn(8, *SHAPE)
    batch = Batch(x, torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long))
    assert lwf.extra_loss(ctx, batch, model(x)).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.head.linear.weight[2:] += 5.0  # the new classes' units: no distillation on them
    assert lwf.extra_loss(ctx, batch, model(x)).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.backbone[1].weight.add_(0.3 * torch.randn_like(model.backbone[1].weight))
    logits = model(x)
    expected = 0.7 * kd_loss(logits[:, :2], lwf.old(x), 2.0)
    got = lwf.extra_loss(ctx, batch, logits)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6) and got.item() > 1e-4
    assert not any(p.requires_grad for p in lwf.old.parameters())
    # pad: the softmax spans every unit, the new classes' targets are 0
    padded = create_strategy("lwf", {"alpha": 0.7, "T": 2.0, "pad": True})
    padded.old, padded.old_tasks = lwf.old, lwf.old_tasks
    p_t, log_p_s = F.softmax(lwf.old(x) / 2.0, 1), F.log_softmax(logits / 2.0, 1)
    want = 0.7 * 4.0 * (p_t * (p_t.log() - log_p_s[:, :2])).sum(1).mean()
    got = padded.extra_loss(ctx, batch, logits)
    assert got.item() == pytest.approx(want.item(), rel=1e-5) and got.item() > expected.item()
    # balance: (1/t) CE + (1 - 1/t) alpha KD, as CE + (t - 1) alpha KD, t the experiences seen
    balanced = create_strategy("lwf", {"alpha": 0.7, "T": 2.0, "balance": True})
    balanced.old, balanced.old_tasks = lwf.old, lwf.old_tasks
    for seen in (2, 3, 5):
        ctx.experience = seen - 1
        got = balanced.extra_loss(ctx, batch, logits)
        assert got.item() == pytest.approx((seen - 1) * expected.item(), rel=1e-6)


def test_lwf_task_scenario_distills_every_old_head_on_every_input():
    torch.manual_seed(4)
    model = create_model("mlp", SHAPE, 2, hidden=(5,), multi_head=True)
    model.head.add_head(3)
    lwf = create_strategy("lwf", {"alpha": 1.0, "T": 2.0})
    ctx = _ctx(model, "task")
    lwf.after_experience(ctx, SimpleNamespace(task_id=1), None)  # knows tasks 0 and 1
    model.head.add_head(2)
    x = torch.randn(6, *SHAPE)
    t = torch.full((6,), 2)  # a batch of the new task only: the old heads are still distilled
    batch = Batch(x, torch.zeros(6, dtype=torch.long), t)
    with torch.no_grad():
        model.head.heads[2].weight += 1.0  # the new head is free
    assert lwf.extra_loss(ctx, batch, model(x, t)).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.head.heads[0].weight += 0.5
        model.head.heads[1].bias -= 0.5
    f_new, f_old = model.forward_features(x), lwf.old.forward_features(x)
    expected = sum(kd_loss(model.head.heads[j](f_new), lwf.old.head.heads[j](f_old), 2.0)
                   for j in range(2))
    assert lwf.extra_loss(ctx, batch, model(x, t)).item() == pytest.approx(expected.item(),
                                                                               rel=1e-6)


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_lwf_counts_the_previous_models_forward_pass_in_the_flops(scenario):
    learner = _run(_cfg(strategies=["lwf"], scenario=scenario))
    F_row, bs = learner.probe.forward_flops, learner.cfg.batch_size
    first, *later = learner.stats
    assert first["flops"] == first["steps"] * 3 * F_row * bs  # no previous model yet
    for e in later:  # the multi-head MLP shares its backbone: one old pass per row either way
        assert e["flops"] == e["steps"] * 4 * F_row * bs


def test_lwf_memory_is_the_old_model_and_within_the_plan():
    learner = _run(_cfg(strategies=["lwf"]), n=2)
    lwf = _strategy(learner, "lwf")
    model = learner.model  # the copy after experience 1, normalisation constants included
    held = sum(t.nbytes for t in [*model.parameters(), *model.buffers()])
    assert lwf.memory_bytes() == held == sum(t.nbytes for t in lwf.tensors())
    assert lwf.memory_bytes() <= learner.planned["strategy:lwf"]
    for a, b in zip(lwf.old.parameters(), learner.model.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()  # a copy, not an alias


# -- resume ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    {"strategies": ["lwf"], "scenario": "task"},
    {"strategies": ["distill"], "model_args": {"hidden": (8,)}, "distill": {"teacher_hidden": (16,)}},
    {"strategies": ["replay", "bic"], "replay": {"size": 60}, "bic": {"val_per_class": 3,
                                                                      "epochs": 3}},
])
def test_resume_equals_uninterrupted_run(tmp_path, kw):
    assert_resume_is_exact(_cfg(**kw), tmp_path)
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert a.get("strategies") == b.get("strategies")


# -- distillation into a student ------------------------------------------------------------------
def test_student_loss_is_the_weighted_sum_and_the_teacher_step_does_not_leak():
    torch.manual_seed(5)
    alpha, T = 0.3, 3.0
    student = create_model("mlp", SHAPE, 3, hidden=(4,))
    dist = create_strategy("distill", {"alpha": alpha, "T": T, "teacher_hidden": (8,)})
    dist.teacher = create_model("mlp", SHAPE, 3, hidden=(8,))
    dist.opt = torch.optim.Adam(dist.teacher.parameters(), lr=0.01)
    before = copy.deepcopy(dist.teacher)
    x, y = torch.randn(7, *SHAPE), torch.randint(0, 3, (7,))
    batch = Batch(x, y, torch.zeros(7, dtype=torch.long))
    logits = student(x)
    extra = dist.extra_loss(_ctx(student), batch, logits)
    total = F.cross_entropy(logits, y) + extra  # what the learner minimises
    with torch.no_grad():
        target = before(x)  # the teacher's logits before its own step
    by_hand = (1 - alpha) * F.cross_entropy(logits, y) + alpha * kd_loss(logits, target, T)
    assert total.item() == pytest.approx(by_hand.item(), rel=1e-6)
    g_total = torch.autograd.grad(total, list(student.parameters()), retain_graph=True)
    g_hand = torch.autograd.grad(by_hand, list(student.parameters()), retain_graph=True)
    for a, b in zip(g_total, g_hand):
        torch.testing.assert_close(a, b)
    leak = torch.autograd.grad(extra, list(dist.teacher.parameters()), allow_unused=True)
    assert all(g is None for g in leak)  # the student's loss has no path into the teacher
    assert all(p.grad is None for p in dist.teacher.parameters())  # nor keeps its own gradients
    moved = [not torch.equal(a, b) for a, b in zip(dist.teacher.parameters(), before.parameters())]
    assert all(moved)  # the teacher took its own step on the batch


@pytest.mark.parametrize("teacher", ["alongside", "run"])
def test_alpha_zero_leaves_the_student_bit_for_bit_as_without_distill(tmp_path, teacher):
    args = {"alpha": 0.0, "teacher_hidden": (16,)}
    if teacher == "run":
        Learner(_cfg(strategies=["naive"], tasks=2), run_dir=tmp_path / "t").run()
        args["teacher"] = str(tmp_path / "t")
    ref = Learner(_cfg(strategies=["replay"], tasks=2, model_args={"hidden": (8,)})).run()
    got = Learner(_cfg(strategies=["replay", "distill"], tasks=2, model_args={"hidden": (8,)},
                       distill=args)).run()
    assert got.acc_matrix == ref.acc_matrix
    for a, b in zip(got.model.parameters(), ref.model.parameters()):
        assert torch.equal(a, b)


def test_student_larger_than_its_teacher_or_the_limit_is_refused_before_training():
    with pytest.raises(ConfigError, match="larger than its teacher"):
        Learner(_cfg(strategies=["distill"], model_args={"hidden": (32,)},
                     distill={"teacher_hidden": (8,)}))
    # 8x8 digits -> 8 -> 10 classes at the end: (64*8 + 8) + (8*10 + 10) = 610 parameters
    cfg = _cfg(strategies=["distill"], model_args={"hidden": (8,)},
               distill={"teacher_hidden": (16,), "student_params": 609})
    with pytest.raises(ConfigError, match="student_params"):
        Learner(cfg)


def test_alongside_teacher_memory_report_and_matrices():
    cfg = _cfg(strategies=["distill"], model_args={"hidden": (8,)},
               distill={"teacher_hidden": (16,)})
    learner = _run(cfg, n=2)
    dist = _strategy(learner, "distill")
    params = list(dist.teacher.parameters())
    p_bytes = sum(p.nbytes for p in params)
    consts = sum(b.nbytes for b in dist.teacher.buffers())  # its normalisation constants
    assert dist.memory_bytes() == 3 * p_bytes + 4 * len(params) + consts  # + Adam moments, steps
    assert dist.memory_bytes() == sum(t.nbytes for t in dist.tensors())
    assert dist.memory_bytes() <= learner.planned["strategy:distill"]
    rep = learner.metrics()["strategies"]["distill"]
    assert rep["teacher"]["params"] > rep["student"]["params"] == sum(
        p.numel() for p in learner.model.parameters())
    assert rep["student"]["acc_matrix"] == learner.acc  # the student is the learner's model
    assert len(rep["teacher"]["acc_matrix"]) == 2 and rep["teacher"]["acc_matrix"] != learner.acc


def test_teacher_from_a_finished_run(tmp_path):
    base = dict(strategies=["naive"], model_args={"hidden": (16,)}, class_order="random", seed=3)
    teacher_run = Learner(_cfg(**base), run_dir=tmp_path / "teacher").run()
    cfg = _cfg(**{**base, "strategies": ["distill"], "model_args": {"hidden": (8,)},
                  "distill": {"teacher": str(tmp_path / "teacher")}})
    learner = Learner(cfg)
    result = learner.run()
    rep = learner.metrics()["strategies"]["distill"]
    # Experience i distills from the teacher as it was after learning experience i.
    assert rep["teacher"]["acc_matrix"] == teacher_run.acc_matrix
    dist = _strategy(learner, "distill")
    teacher = teacher_run.model
    assert dist.memory_bytes() == sum(t.nbytes for t in [*teacher.parameters(), *teacher.buffers()])
    assert dist.memory_bytes() <= learner.planned["strategy:distill"]
    assert result.acc_matrix == rep["student"]["acc_matrix"]
    for other in ({"seed": 4}, {"tasks": 2}):  # another class order; another split
        with pytest.raises(ConfigError, match="another stream"):
            Learner(_cfg(**{**base, **other, "strategies": ["distill"],
                            "model_args": {"hidden": (8,)},
                            "distill": {"teacher": str(tmp_path / "teacher")}}))
    with pytest.raises(ConfigError, match="no checkpoint"):
        Learner(_cfg(strategies=["distill"], distill={"teacher": str(tmp_path / "nowhere")}))


# -- BiC ------------------------------------------------------------------------------------------
def _bic_learner(n=2, **bic):
    cfg = _cfg(strategies=["replay", "bic"], tasks=3, steps=15, replay={"size": 60},
               bic={"val_per_class": 4, "epochs": 20, "lr": 0.05, **bic})
    return _run(cfg, n=n)


def test_bias_correction_changes_only_the_new_class_logits():
    learner = _bic_learner()
    model, exp1 = learner.model, learner.stream.experiences[1]
    bias = model.head.find("bias")
    assert bias is model.head and bias.new_from == exp1.label_offset
    assert (bias.alpha.item(), bias.beta.item()) != (1.0, 0.0)  # stage 2 moved the pair
    with torch.no_grad():
        feats = model.forward_features(exp1.x_test)
        inner, wrapped = bias.inner(feats), model(exp1.x_test)
    k = bias.new_from
    assert torch.equal(wrapped[:, :k], inner[:, :k])  # old classes: bit-identical
    torch.testing.assert_close(wrapped[:, k:], bias.alpha * inner[:, k:] + bias.beta)
    assert not torch.equal(wrapped[:, k:], inner[:, k:])
    assert not bias.alpha.requires_grad and not bias.beta.requires_grad
    bic = _strategy(learner, "bic")
    assert bic.report()["alpha_beta"] == [[bias.alpha.item(), bias.beta.item()]]


def test_bias_correction_survives_a_checkpoint_round_trip(tmp_path):
    model = _bic_learner().model
    torch.save({"spec": model.spec(), "model": model.state_dict()}, tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["spec"]["head"]["kind"] == "bias" and raw["spec"]["head"]["inner"]["kind"] == "single"
    again = rebuild(raw["spec"])  # no input shape or data needed: the spec holds them
    again.load_state_dict(raw["model"])
    assert again.head.new_from == model.head.new_from
    assert torch.equal(again.head.alpha, model.head.alpha)
    x = torch.randint(0, 17, (5, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_repoint_folds_the_old_pair_into_the_head_exactly():
    torch.manual_seed(6)
    model = create_model("mlp", SHAPE, 4, hidden=(5,))
    bias = model.wrap_head(lambda h: BiasHead(h, 2))
    with torch.no_grad():
        bias.alpha.fill_(0.8)
        bias.beta.fill_(-0.4)
    x = torch.randn(9, *SHAPE)
    with torch.no_grad():
        before = model(x)
        bias.repoint(4)
        bias.inner.grow(6)
        after = model(x)
    assert (bias.alpha.item(), bias.beta.item(), bias.new_from) == (1.0, 0.0, 4)
    torch.testing.assert_close(after[:, :4], before, rtol=1e-5, atol=1e-6)


def test_validation_split_is_held_out_per_new_class_and_stored():
    learner = _bic_learner(n=2, val_per_class=4)
    bic = _strategy(learner, "bic")
    counts = torch.bincount(bic.val.y.long(), minlength=7)
    classes = learner.stream.experiences[1].head_size
    assert counts[:classes].tolist() == [4] * classes and counts[classes:].sum() == 0
    assert bic.memory_bytes() == sum(t.nbytes for t in bic.tensors())
    assert bic.memory_bytes() == len(bic.val) * (64 + 4)  # uint8 8x8 images + int16 y and t
    assert bic.memory_bytes() <= learner.planned["strategy:bic"]
    exp = learner.stream.experiences[2]
    data = exp.train_data()
    kept = bic.holdout(learner.ctx, exp, data)
    assert len(kept) == len(data) - 4 * exp.n_local_classes
    stored = bic.val.x[-4 * exp.n_local_classes:].reshape(-1, 64)
    hits = (kept.x.reshape(len(kept), 1, 64) == stored.unsqueeze(0)).all(-1).any(0)
    own = (data.x.reshape(len(data), 1, 64) == stored.unsqueeze(0)).all(-1).any(0)
    assert own.all() and not hits.any()  # the held-out samples left the training data


@pytest.mark.parametrize("scenario", ["task", "domain"])
def test_bic_is_refused_outside_the_class_scenario(scenario):
    with pytest.raises(ConfigError, match="class scenario"):
        Learner(_cfg(strategies=["bic"], scenario=scenario))  # refused before training


def test_replay_never_stores_the_samples_bic_holds_out():
    # A buffer larger than the stream keeps every sample it is offered, so it holds exactly the
    # rows learned from: each experience's data less BiC's validation rows.
    cfg = _cfg(strategies=["replay", "bic"], tasks=3, steps=3, replay={"size": 5000},
               bic={"val_per_class": 4, "epochs": 1})
    learner = _run(cfg)
    replay, bic = _strategy(learner, "replay"), _strategy(learner, "bic")
    offered = sum(len(e.train_data()) for e in learner.stream.experiences)
    assert len(bic.val) == 4 * sum(e.n_local_classes for e in learner.stream.experiences)
    assert replay.buffer.size == offered - len(bic.val)
    assert torch.bincount(replay.buffer.y[: replay.buffer.size].long(), minlength=10).tolist() == [
        int((torch.cat([e.train_data().y for e in learner.stream.experiences]) == c).sum()) - 4
        for c in range(10)]
