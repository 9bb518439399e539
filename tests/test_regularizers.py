"""Online EWC, SI and MAS against their definitions, on problems small enough to solve by hand."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from edgelll import resolve
from edgelll.batch import Batch
from edgelll.errors import ConfigError
from edgelll.learner import Learner
from edgelll.models import create_model
from edgelll.strategies.base import tensor_bytes
from edgelll.strategies.ewc import empirical_fisher, quadratic_penalty
from edgelll.strategies.mas import (MAS, MASParams, _linear_importance, _vmap_importance,
                                    mas_importance)
from edgelll.strategies.online_ewc import OnlineEWC, OnlineEWCParams
from edgelll.strategies.si import SI, SIParams

from _resume import assert_resume_is_exact


def _ctx(model, task_ids=False, seed=0):
    stream = SimpleNamespace(prepare=lambda x: x, uses_task_ids=task_ids)
    return SimpleNamespace(model=model, stream=stream,
                           generator=torch.Generator().manual_seed(seed))


def _penalty(strategy, ctx) -> torch.Tensor:
    return strategy.extra_loss(ctx, None, None)


def _params(model):
    return {k: p.detach().clone() for k, p in model.named_parameters()}


def _shift(model, delta):
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.add_(delta[k])


# -- online EWC -------------------------------------------------------------------------------
def test_online_ewc_penalty_is_zero_at_the_anchor_and_exactly_quadratic():
    torch.manual_seed(0)
    model = create_model("mlp", (1, 2, 2), 3, hidden=(4,))
    ctx = _ctx(model)
    s = OnlineEWC(OnlineEWCParams(lam=3.0, fisher_samples=0))
    x, y = torch.randn(20, 1, 2, 2), torch.randint(0, 3, (20,))
    s.after_experience(ctx, None, Batch(x, y, torch.zeros_like(y)))
    assert _penalty(s, ctx).item() == 0.0
    delta = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    expected = 0.5 * 3.0 * sum(float((s.stored_fisher()[k] * delta[k] ** 2).sum()) for k in delta)
    _shift(model, delta)
    p1 = _penalty(s, ctx).item()
    _shift(model, delta)
    p2 = _penalty(s, ctx).item()
    assert expected > 0 and abs(p1 - expected) < 1e-5 * expected
    assert abs(p2 - 4 * p1) < 1e-5 * p2


def test_online_ewc_keeps_a_decayed_running_fisher_and_only_the_latest_anchor():
    torch.manual_seed(1)
    model = create_model("mlp", (1, 2, 2), 2, hidden=(5,))
    ctx = _ctx(model)
    s = OnlineEWC(OnlineEWCParams(lam=2.0, gamma=0.5, fisher_samples=0))
    x1, y1 = torch.randn(17, 1, 2, 2), torch.randint(0, 2, (17,))
    f1 = empirical_fisher(model, x1, y1, None)
    theta1 = _params(model)
    s.after_experience(ctx, None, Batch(x1, y1, torch.zeros_like(y1)))
    # "Training": the parameters move and the head grows by two classes (new rows are free).
    _shift(model, {k: 0.3 * torch.randn_like(p) for k, p in model.named_parameters()})
    model.head.grow(4)
    x2, y2 = torch.randn(13, 1, 2, 2), torch.randint(0, 4, (13,))
    f2 = empirical_fisher(model, x2, y2, None)
    theta2 = _params(model)
    s.after_experience(ctx, None, Batch(x2, y2, torch.zeros_like(y2)))
    stored = s.stored_fisher()
    assert stored.keys() == f2.keys()
    for k, v in f2.items():
        expected = v.clone()
        part = tuple(slice(0, n) for n in f1[k].shape)
        expected[part] += 0.5 * f1[k]  # rows 2-3 of the head: F_2 only
        torch.testing.assert_close(stored[k], expected, rtol=1e-5, atol=1e-9)
        assert torch.equal(s.anchor[k], theta2[k])
    assert _penalty(s, ctx).item() == 0.0  # at theta_2 no pull back towards theta_1
    with torch.no_grad():
        for k, p in model.named_parameters():
            part = tuple(slice(0, n) for n in theta1[k].shape)
            p[part] = theta1[k]
    expected = sum(float((stored[k] * (_params(model)[k] - theta2[k]) ** 2).sum()) for k in stored)
    assert abs(_penalty(s, ctx).item() - expected) < 1e-5 * expected


# -- SI ---------------------------------------------------------------------------------------
class _Quad(nn.Module):
    def __init__(self, theta):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta, dtype=torch.float64))


def _descend(si, model, a, b, lr, steps, optimizer=torch.optim.SGD):
    """Train on L = 0.5 * sum a (theta - b)^2 plus the strategy's penalty, driving its hooks."""
    ctx, opt, path = SimpleNamespace(model=model), optimizer(model.parameters(), lr=lr), 0.0
    for _ in range(steps):
        loss = 0.5 * (a * (model.theta - b) ** 2).sum()
        before, g = model.theta.detach().clone(), (a * (model.theta - b)).detach()
        extra = si.extra_loss(ctx, None, None)
        opt.zero_grad()
        (loss if extra is None else loss + extra).backward()
        si.after_backward(ctx, None)
        opt.step()
        si.after_step(ctx, None)
        path = path + g * (before - model.theta.detach())
    return ctx, path


def _vec(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_si_importance_equals_the_path_integral_solved_by_hand():
    a, b = _vec(2.0, 0.5), _vec(1.0, 2.0)
    lr, steps, c, xi = 0.1, 15, 0.7, 0.1
    theta0 = _vec(0.3, -1.0)
    model, si = _Quad(theta0.tolist()), SI(SIParams(c=c, xi=xi))
    ctx, _ = _descend(si, model, a, b, lr, steps)
    # Plain SGD on a quadratic: theta_t - b = r^t d0, g_t = a r^t d0, theta_t - theta_t+1 = lr g_t,
    # so omega = sum_t lr g_t^2 = lr a^2 d0^2 (1 - r^2T) / (1 - r^2).
    r, d0 = 1 - lr * a, theta0 - b
    omega = lr * a ** 2 * d0 ** 2 * (1 - r ** (2 * steps)) / (1 - r ** 2)
    torch.testing.assert_close(si.omega["theta"], omega, rtol=1e-10, atol=0)
    assert si.memory_bytes() == 4 * 16  # omega, theta(start), theta(t), g(t): 2 float64 each
    si.after_experience(ctx, None, None)
    big1 = omega / ((d0 * (r ** steps - 1)) ** 2 + xi)
    anchor = b + d0 * r ** steps
    torch.testing.assert_close(si.big_omega["theta"], big1, rtol=1e-10, atol=0)
    torch.testing.assert_close(si.anchor["theta"], anchor, rtol=1e-12, atol=1e-15)
    assert si.omega == {} and si.memory_bytes() == 2 * 16

    # Second experience: the loss now includes c Omega (theta - theta*)^2, so the total loss is
    # 0.5 A (theta - m)^2 + const with A = a + 2 c Omega. SI must integrate the task gradient
    # g_t = a (theta_t - b2) along the steps lr A (theta_t - m), not the total gradient.
    b2 = _vec(-1.0, 0.5)
    ctx, _ = _descend(si, model, a, b2, lr, 12)
    big_a = a + 2 * c * big1
    m = (a * b2 + 2 * c * big1 * anchor) / big_a
    e0, rr = anchor - m, 1 - lr * big_a
    s1, s2 = (1 - rr ** 12) / (1 - rr), (1 - rr ** 24) / (1 - rr ** 2)
    omega2 = lr * a * big_a * (e0 ** 2 * s2 + (m - b2) * e0 * s1)
    torch.testing.assert_close(model.theta.detach(), m + e0 * rr ** 12, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(si.omega["theta"], omega2, rtol=1e-9, atol=1e-12)
    si.after_experience(ctx, None, None)
    big2 = big1 + omega2 / ((e0 * (rr ** 12 - 1)) ** 2 + xi)
    torch.testing.assert_close(si.big_omega["theta"], big2, rtol=1e-9, atol=1e-12)


def test_si_path_integral_is_exact_under_adam():
    a, b = _vec(3.0, 0.2), _vec(0.5, -2.0)
    model, si = _Quad([0.0, 1.0]), SI(SIParams(c=0.5))
    _descend(si, model, a, b, 0.05, 10, torch.optim.Adam)
    si.after_experience(SimpleNamespace(model=model), None, None)
    ctx, path = _descend(si, model, a, -b, 0.05, 10, torch.optim.Adam)  # penalty active
    torch.testing.assert_close(si.omega["theta"], path, rtol=1e-12, atol=1e-15)


# -- MAS --------------------------------------------------------------------------------------
def _loop_mas(model, x, t=None):
    """The seed's formula by its definition: one backward pass per input, |grad| averaged."""
    out = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in range(x.shape[0]):
        model.zero_grad()
        f = model(x[i:i + 1], None if t is None else t[i:i + 1])
        f[torch.isfinite(f)].pow(2).sum().backward()  # ||F(x)||_2^2 over the existing units
        for k, p in model.named_parameters():
            out[k] += p.grad.detach().abs()
    return {k: v / x.shape[0] for k, v in out.items()}


@pytest.mark.parametrize("path", [_linear_importance, _vmap_importance])
def test_mas_importance_equals_per_sample_loop(path):
    torch.manual_seed(2)
    model = create_model("mlp", (1, 3, 3), 4, hidden=(7, 5))
    x = torch.randn(23, 1, 3, 3)
    fast = path(model, x, None, 5)  # chunk does not divide 23
    slow = _loop_mas(model, x)
    assert fast.keys() == slow.keys()
    for k in fast:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-5, atol=1e-8)
        assert float(fast[k].sum()) > 0


@pytest.mark.parametrize("path", [_linear_importance, _vmap_importance])
def test_mas_multi_head_uses_each_inputs_head_and_ignores_padding(path):
    torch.manual_seed(3)
    model = create_model("mlp", (1, 2, 2), 2, hidden=(6,), multi_head=True)
    model.head.add_head(3)  # head 0 is padded with -inf up to 3 units
    x, t = torch.randn(10, 1, 2, 2), torch.tensor([0, 1] * 5)
    fast = path(model, x, t, 4)
    slow = _loop_mas(model, x, t)
    for k in fast:
        assert torch.isfinite(fast[k]).all()
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-5, atol=1e-8)


def test_mas_of_a_convnet_takes_the_general_path_and_is_exact():
    torch.manual_seed(4)
    model = create_model("convnet", (1, 4, 4), 3, channels=(2,), hidden=6)
    x = torch.randn(9, 1, 4, 4)
    assert _linear_importance(model, x, None, 4) is None
    fast = mas_importance(model, x, None, chunk=4)
    for k, v in _loop_mas(model, x).items():
        torch.testing.assert_close(fast[k], v, rtol=1e-5, atol=1e-8)


def test_mas_never_reads_labels():
    torch.manual_seed(5)
    model = create_model("mlp", (1, 2, 2), 3, hidden=(5,))
    x, y = torch.randn(30, 1, 2, 2), torch.randint(0, 3, (30,))
    runs = []
    for labels in (y, torch.full_like(y, -12345)):  # garbage labels, even out of range
        s = MAS(MASParams(samples=20))
        s.after_experience(_ctx(model), None, Batch(x, labels, torch.zeros_like(y)))
        runs.append(s.omega)
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k])


def test_mas_penalty_is_lambda_times_the_sum_of_per_experience_terms():
    torch.manual_seed(6)
    model = create_model("mlp", (1, 2, 2), 2, hidden=(5,))
    ctx, s, terms = _ctx(model), MAS(MASParams(lam=2.5)), []
    for k in range(3):
        if k:
            _shift(model, {n: 0.4 * torch.randn_like(p) for n, p in model.named_parameters()})
            model.head.grow(2 + 2 * k)
        x = torch.randn(15, 1, 2, 2)
        terms.append((_loop_mas(model, x), _params(model)))
        s.after_experience(ctx, None, Batch(x, torch.zeros(15, dtype=torch.long),
                                            torch.zeros(15, dtype=torch.long)))
    assert s.memory_bytes() == 2 * sum(p.nbytes for p in model.parameters())
    for trial in range(2):
        _shift(model, {n: 0.2 * torch.randn_like(p) for n, p in model.named_parameters()})
        model.zero_grad()
        reference = 2.5 * sum(quadratic_penalty(model, w, a) for w, a in terms)  # no 1/2
        reference.backward()
        ref_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        value = _penalty(s, ctx)
        value.backward()
        assert abs(value.item() - reference.item()) < 1e-4 * reference.item()
        for g, p in zip(ref_grads, model.parameters()):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


# -- all three through the learner -----------------------------------------------------------
_RUNS = [
    {"strategies": ["online-ewc"],
     "online-ewc": {"lam": 100.0, "gamma": 0.7, "fisher_samples": 64}},
    {"strategies": ["si"], "si": {"c": 1.0}},
    {"strategies": ["mas"], "mas": {"samples": 100}},
    {"strategies": ["replay", "si"], "scenario": "task", "optimizer": "sgd", "momentum": 0.9,
     "lr": 0.01},
]


def _cfg(**kw):
    return resolve({"epochs": 2, "tasks": 3, **kw})


@pytest.mark.parametrize("kw", _RUNS, ids=["online-ewc", "si", "mas", "replay+si-task"])
def test_resume_equals_uninterrupted_run(tmp_path, kw):
    full, resumed = assert_resume_is_exact(_cfg(**kw), tmp_path)
    for a, b in zip(full.strategies, resumed.strategies):
        sa, sb = a.state_dict(), b.state_dict()
        assert tensor_bytes(sa) == tensor_bytes(sb) > 0
        for key, value in sa.items():
            if isinstance(value, dict):
                for n, v in value.items():
                    assert torch.equal(v, sb[key][n]) if torch.is_tensor(v) else v == sb[key][n]


@pytest.mark.parametrize("name", ["online-ewc", "si", "mas"])
def test_memory_is_counted_and_planned(name):
    cfg = _cfg(strategies=[name], steps=4)
    learner = Learner(cfg)
    result = learner.run()
    s = result.strategies[0]
    params = sum(p.nbytes for p in result.model.parameters())
    assert s.memory_bytes() == sum(t.nbytes for t in s.tensors()) == tensor_bytes(s.state_dict())
    assert s.memory_bytes() == 2 * params  # importance + anchor for every (final) parameter
    assert result.memory["components"][f"strategy:{name}"] == s.memory_bytes()
    assert s.memory_bytes() <= s.planned_bytes(learner.plan)
    assert learner.planned[f"strategy:{name}"] == s.planned_bytes(learner.plan)


@pytest.mark.parametrize("make", [
    lambda: OnlineEWCParams(lam=-1.0), lambda: OnlineEWCParams(gamma=0.0),
    lambda: OnlineEWCParams(gamma=1.5), lambda: OnlineEWCParams(fisher_samples=-1),
    lambda: SIParams(c=-0.1), lambda: SIParams(xi=0.0), lambda: SIParams(xi=-1.0),
    lambda: SIParams(c=float("nan")), lambda: MASParams(lam=-2.0), lambda: MASParams(chunk=0),
    lambda: MASParams(samples=-5),
])
def test_bad_params_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


def test_bad_params_are_refused_by_the_config():
    with pytest.raises(ConfigError, match="online-ewc.gamma"):
        resolve({"strategies": ["online-ewc"], "online-ewc": {"gamma": 2}})
    with pytest.raises(ConfigError, match="si.xi"):
        resolve({"strategies": ["si"], "si": {"xi": 0}})
