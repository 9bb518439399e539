"""GEM (Lopez-Paz & Ranzato 2017) and A-GEM (Chaudhry et al. 2019) against their definitions."""

import itertools
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from edgelll import ConfigError, resolve
from edgelll.batch import Batch
from edgelll.learner import Learner
from edgelll.models import create_model
from edgelll.qp import kkt_residual, nonneg_qp
from edgelll.strategies._episodic import flat_grad
from edgelll.strategies.agem import AGEM, AGEMParams
from edgelll.strategies.agem import project as agem_project
from edgelll.strategies.gem import GEM, GEMParams
from edgelll.strategies.gem import project as gem_project

from _resume import assert_resume_is_exact

TINY = {"model_args": {"hidden": [16]}, "steps": 6, "tasks": 3}


# -- the QP solver -------------------------------------------------------------------------------
def _qp(Q, p, **kw):
    f64 = torch.float64
    return nonneg_qp(torch.tensor(Q, dtype=f64), torch.tensor(p, dtype=f64), **kw)


def test_qp_one_variable_by_hand():
    assert _qp([[2.0]], [-4.0]).tolist() == [2.0]  # interior: v = -p / q
    assert _qp([[2.0]], [3.0]).tolist() == [0.0]  # the bound is active
    assert _qp([[0.0]], [1.0]).tolist() == [0.0]  # singular Q, bounded problem


def test_qp_two_variables_by_hand():
    torch.testing.assert_close(_qp([[2.0, 1.0], [1.0, 2.0]], [-3.0, -3.0]),
                               torch.tensor([1.0, 1.0], dtype=torch.float64))
    # The unconstrained optimum (3, -2) is infeasible; with v2 = 0, v1 = 4 / 2 = 2 and the
    # gradient in v2 is 1 * 2 + 1 = 3 >= 0, so (2, 0) satisfies KKT.
    torch.testing.assert_close(_qp([[2.0, 1.0], [1.0, 2.0]], [-4.0, 1.0]),
                               torch.tensor([2.0, 0.0], dtype=torch.float64))
    # Two identical constraints (singular Q = G G^T): any split of 1 between them is optimal.
    v = _qp([[1.0, 1.0], [1.0, 1.0]], [-1.0, -1.0])
    assert abs(float(v.sum()) - 1.0) < 1e-12 and bool((v >= 0).all())


def test_qp_a_variable_that_entered_can_leave_again():
    # By hand: v1 enters first (v1 = 3 / 6); then v2 enters and the 2x2 solve wants v1 = -0.5,
    # so the step stops where v1 hits 0 and v1 leaves; alone, v2 = 2 / 1. The gradient at
    # (0, 2, 0) is Q v + p = (1, 0, 2) >= 0, zero where v > 0: the KKT point.
    Q = [[6.0, 2.0, -1.0], [2.0, 1.0, -1.0], [-1.0, -1.0, 2.0]]
    torch.testing.assert_close(_qp(Q, [-3.0, -2.0, 4.0]),
                               torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64))


def _brute_force(Q, p):
    """The minimum over every choice of free set (Q_SS z = -p_S, the rest 0) that is feasible."""
    n, best = p.shape[0], (float("inf"), None)
    for r in range(n + 1):
        for S in itertools.combinations(range(n), r):
            z = torch.zeros(n, dtype=torch.float64)
            if S:
                idx = torch.tensor(S)
                z[idx] = torch.linalg.lstsq(Q[idx][:, idx], -p[idx].unsqueeze(1),
                                            driver="gelsd").solution.flatten()
            if bool((z >= -1e-12).all()) and kkt_residual(Q, p, z.clamp_min(0)) < 1e-8:
                f = float(0.5 * z @ Q @ z + p @ z)
                best = min(best, (f, z), key=lambda b: b[0])
    return best


@pytest.mark.parametrize("seed", range(12))
def test_qp_agrees_with_a_brute_force_search_of_the_kkt_conditions(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 1 + seed % 6
    if seed % 2:  # GEM's form, rank-deficient when d < n: Q = G G^T, p = G g
        d = [2, 3, 8][seed % 3]
        G = torch.randn(n, d, generator=gen, dtype=torch.float64)
        Q, p = G @ G.T, G @ torch.randn(d, generator=gen, dtype=torch.float64)
    else:  # a general positive definite problem
        A = torch.randn(n, n, generator=gen, dtype=torch.float64)
        Q, p = A @ A.T + 0.1 * torch.eye(n, dtype=torch.float64), torch.randn(n, generator=gen,
                                                                               dtype=torch.float64)
    v = nonneg_qp(Q, p)
    scale = float(Q.abs().max() + p.abs().max())
    assert kkt_residual(Q, p, v) < 1e-9 * scale
    f_best, v_best = _brute_force(Q, p)
    assert abs(float(0.5 * v @ Q @ v + p @ v) - f_best) < 1e-9 * scale
    if seed % 2:  # the primal answer G^T v is unique even where v is not
        torch.testing.assert_close(G.T @ v, G.T @ v_best, rtol=1e-7, atol=1e-9)


def test_qp_iteration_cap_still_returns_a_feasible_point():
    v = _qp([[2.0, 1.0], [1.0, 2.0]], [-3.0, -3.0], max_iter=1)
    assert bool((v >= 0).all()) and v.tolist() != [1.0, 1.0]  # one step: not yet optimal


# -- GEM's projection ----------------------------------------------------------------------------
def _conflicting(seed=0, k=3, d=12):
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(k, d, generator=gen, dtype=torch.float64)
    g = -G.sum(0) + 0.3 * torch.randn(d, generator=gen, dtype=torch.float64)  # against them all
    assert bool((G @ g < 0).any())
    return g, G


@pytest.mark.parametrize("seed", range(4))
def test_projection_is_the_closest_gradient_meeting_every_constraint(seed):
    g, G = _conflicting(seed)
    gt = gem_project(g, G, margin=0.0)
    assert bool((G @ gt >= -1e-9).all())
    best = float((gt - g).norm())
    gen = torch.Generator().manual_seed(100 + seed)
    feasible = 0
    for _ in range(2000):  # random feasible gradients near the answer are all further from g
        h = gt + 0.5 * torch.rand((), generator=gen, dtype=torch.float64) * torch.randn(
            g.shape, generator=gen, dtype=torch.float64)
        if bool((G @ h >= 0).all()):
            feasible += 1
            assert float((h - g).norm()) >= best - 1e-12
    assert feasible > 20


def test_margin_is_a_lower_bound_on_the_dual_variables():
    g, G = _conflicting(7, k=3, d=12)
    for margin in (0.0, 0.5):
        gt = gem_project(g, G, margin)
        v = torch.linalg.lstsq(G.T, (gt - g).unsqueeze(1)).solution.flatten()  # G full row rank
        assert bool((v >= margin - 1e-9).all())
        # KKT of the shifted problem: u = v - margin >= 0 and G g~ >= 0 with (v - margin) G g~ = 0.
        slack = G @ gt
        assert bool((slack >= -1e-9).all())
        assert float(((v - margin) * slack).abs().max()) < 1e-8


# -- GEM on a network ----------------------------------------------------------------------------
def _ctx(model, task_ids=False):
    stream = SimpleNamespace(prepare=lambda x: x.to(torch.float32), uses_task_ids=task_ids)
    return SimpleNamespace(model=model, stream=stream, cfg=SimpleNamespace(amp=False, batch_size=8),
                           device=torch.device("cpu"), experience=1,
                           generator=torch.Generator().manual_seed(0))


def _with_memory(strategy, memories):
    for x, y, t in memories:
        x0 = strategy.x if strategy.x is not None else x[:0]
        strategy.x = torch.cat([x0, x])
        strategy.y = torch.cat([strategy.y if strategy.y is not None else y[:0].short(), y.short()])
        strategy.t = torch.cat([strategy.t if strategy.t is not None else t[:0].short(), t.short()])
        strategy.bounds.append(strategy.bounds[-1] + len(y))
    return strategy


def _backward(model, batch):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(batch.x, None), batch.y).backward()
    return flat_grad(list(model.parameters())).clone()


def _grad_on(model, x, y):
    loss = F.cross_entropy(model(x, None), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def _conflicting_tasks():
    """Past tasks taught 'x -> 0' and 'x' -> 1'; the new batch relabels the same inputs as 2."""
    torch.manual_seed(0)
    model = create_model("mlp", (1, 2, 2), 3, hidden=(5,))
    x = torch.randn(12, 1, 2, 2)
    mem = [(x[:6], torch.zeros(6, dtype=torch.long), torch.zeros(6, dtype=torch.long)),
           (x[6:], torch.ones(6, dtype=torch.long), torch.ones(6, dtype=torch.long))]
    batch = Batch(x, torch.full((12,), 2), torch.full((12,), 2))
    return model, mem, batch


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_gem_removes_a_real_conflict_with_every_past_experience(margin):
    model, mem, batch = _conflicting_tasks()
    gem = _with_memory(GEM(GEMParams(margin=margin)), mem)
    g = _backward(model, batch)
    gks = [_grad_on(model, x, y) for x, y, _ in mem]
    assert any(float(g @ gk) < 0 for gk in gks)  # the violation is real
    gem.after_backward(_ctx(model), batch)
    gt = flat_grad(list(model.parameters()))
    assert not torch.equal(gt, g)
    for gk in gks:
        assert float(gt @ gk) >= -1e-5 * float(gt.norm() * gk.norm())
    assert gem.projections == 1


def test_gem_leaves_a_harmless_gradient_bit_identical():
    model, mem, batch = _conflicting_tasks()
    agree = [(batch.x[:6], batch.y[:6], batch.t[:6]), (batch.x, batch.y, batch.t)]
    gem = _with_memory(GEM(), agree)
    _backward(model, batch)
    before = [p.grad for p in model.parameters()]
    copies = [b.clone() for b in before]
    gem.after_backward(_ctx(model), batch)
    assert gem.steps == 1 and gem.projections == 0
    for p, b, c in zip(model.parameters(), before, copies):
        assert p.grad is b and torch.equal(p.grad, c)


def test_gem_forwards_each_experience_memory_once_per_step():
    model, mem, batch = _conflicting_tasks()
    gem = _with_memory(GEM(), mem)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    _backward(model, batch)
    calls.clear()
    gem.after_backward(_ctx(model), batch)
    assert calls == [6, 6]  # one batch per past experience, not one per sample


def test_memory_gradients_use_task_ids_in_the_task_scenario():
    torch.manual_seed(1)
    model = create_model("mlp", (1, 2, 2), 2, hidden=(4,), multi_head=True)
    model.head.add_head(2)
    x = torch.randn(5, 1, 2, 2)
    ones, zeros = torch.ones(5, dtype=torch.long), torch.zeros(5, dtype=torch.long)
    gem = _with_memory(GEM(), [(x, ones, zeros)])
    params = list(model.parameters())
    gk = gem.memory_grad(_ctx(model, task_ids=True), params, gem.experience_memory(0))
    names = [n for n, _ in model.named_parameters()]
    parts = dict(zip(names, gk.split([p.numel() for p in params])))
    assert float(parts["head.heads.0.weight"].abs().sum()) > 0
    assert float(parts["head.heads.1.weight"].abs().sum()) == 0  # task 0's memory: head 0 only


# -- A-GEM ---------------------------------------------------------------------------------------
def test_agem_closed_form_on_hand_made_vectors():
    g, g_ref = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g . g_ref = -1, |g_ref|^2 = 2: g~ = g - (-1 / 2) g_ref = (0.5, 0.5)
    torch.testing.assert_close(agem_project(g, g_ref), torch.tensor([0.5, 0.5]))
    assert float(agem_project(g, g_ref) @ g_ref) == 0.0
    same = torch.tensor([0.3, 0.7])
    assert torch.equal(agem_project(same, g_ref), same)  # no conflict: untouched, bit for bit
    assert torch.equal(agem_project(same, torch.zeros(2)), same)  # an empty reference is harmless


def test_agem_on_a_network_makes_the_gradient_orthogonal_to_g_ref():
    model, mem, batch = _conflicting_tasks()
    agem = _with_memory(AGEM(AGEMParams(batch_size=5)), mem)
    ctx = _ctx(model)
    _backward(model, batch)
    g = flat_grad(list(model.parameters())).clone()
    replay = torch.Generator()
    replay.set_state(ctx.generator.get_state())
    ref = agem.reference_batch(SimpleNamespace(generator=replay), 8)
    assert len(ref) == 5 and len(set(ref.y.tolist())) >= 1
    g_ref = _grad_on(model, ref.x, ref.y.long())
    assert float(g @ g_ref) < 0  # a real conflict
    agem.after_backward(ctx, batch)
    gt = flat_grad(list(model.parameters()))
    assert abs(float(gt @ g_ref)) < 1e-5 * float(g.norm() * g_ref.norm())
    torch.testing.assert_close(gt, g - (g @ g_ref) / (g_ref @ g_ref) * g_ref)


# -- in the learner ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gem", "agem"])
def test_memory_is_a_uniform_subset_of_each_experience_in_its_source_dtype(name):
    cfg = resolve(TINY, {"strategies": [name], name: {"per_experience": 20}})
    learner = Learner(cfg)
    learner.run()
    s = learner.strategies[0]
    assert s.bounds == [0, 20, 40, 60]
    assert s.x.dtype == learner.stream.dtype and s.y.dtype == torch.int16
    for k, exp in enumerate(learner.stream.experiences):
        own = exp.train_data()
        m = s.experience_memory(k)
        flat = own.x.reshape(len(own), -1)
        for x, y in zip(m.x.reshape(len(m), -1), m.y.long()):  # each one a sample of experience k
            hits = (flat == x).all(1)
            assert bool(hits.any()) and bool((own.y[hits] == y).any())
        assert set(m.t.tolist()) == {exp.task_id}
    assert s.memory_bytes() == sum(t.nbytes for t in s.tensors()) > 0
    assert s.memory_bytes() <= learner.planned[f"strategy:{name}"]


@pytest.mark.parametrize("name", ["gem", "agem"])
def test_compute_flops_count_the_memory_gradients(name):
    # Each step costs the batch's forward and backward (3 forwards per row) plus the memory's:
    # GEM every stored row, A-GEM one reference batch (at most what is stored).
    free = Learner(resolve(TINY, {"strategies": [name], name: {"per_experience": 20}}))
    free.run()
    F_row, bs = free.probe.forward_flops, free.cfg.batch_size
    for k, e in enumerate(free.stats):
        stored = 20 * k if name == "gem" else min(bs, 20 * k)
        assert e["flops"] == e["steps"] * 3 * F_row * (bs + stored)
    limit = free.stats[2]["flops"] // 2  # half of what the last experience spent
    capped = Learner(resolve(TINY, {"strategies": [name], name: {"per_experience": 20},
                                    "compute_flops": limit}))
    capped.run()
    for k, e in enumerate(capped.stats):
        step = 3 * F_row * (bs + (20 * k if name == "gem" else min(bs, 20 * k)))
        assert e["flops"] <= limit
        assert e["steps"] == TINY["steps"] or limit < e["flops"] + step  # the last step that fits
    assert capped.stats[2]["steps"] < free.stats[2]["steps"]


@pytest.mark.parametrize("name", ["gem", "agem"])
def test_size_is_split_over_experiences_and_the_budget_sizes_the_memory(name):
    learner = Learner(resolve(TINY, {"strategies": [name], name: {"size": 31}}))
    s = learner.strategies[0]
    assert [s.per_experience(k) for k in (1, 2, 3)] == [31, 15, 10]
    planned = learner.planned[f"strategy:{name}"]
    history = []
    for exp in learner.stream.experiences:  # shared among the experiences seen so far
        learner.learn_experience(exp)
        history.append((list(s.bounds), s.x.clone()))
        assert s.memory_bytes() == sum(t.nbytes for t in s.tensors()) <= planned
    assert [b for b, _ in history] == [[0, 31], [0, 15, 30], [0, 10, 20, 30]]
    for (b0, x0), (b1, x1) in zip(history, history[1:]):  # each memory shrinks to a prefix
        for k in range(len(b0) - 1):
            assert torch.equal(x1[b1[k]:b1[k + 1]], x0[b0[k]:b0[k] + b1[k + 1] - b1[k]])
    assert planned == 31 * (learner.plan.sample_bytes + 4)  # the peak: after the first
    cfg = resolve(TINY, {"strategies": [name], "memory": "200KB"})
    learner = Learner(cfg)
    s, plan = learner.strategies[0], learner.plan
    fixed = sum(v for k, v in learner.planned.items() if k != f"strategy:{name}")
    per_sample = plan.sample_bytes + 4
    assert s.fitted == min((cfg.memory - fixed) // (3 * per_sample),
                           max(plan.train_bytes) // plan.sample_bytes)
    learner.run()
    assert s.memory_bytes() <= learner.planned[f"strategy:{name}"]
    assert sum(learner.planned.values()) <= cfg.memory


@pytest.mark.parametrize("kw", [
    {"strategies": ["gem"], "gem": {"per_experience": 16}},
    {"strategies": ["gem"], "gem": {"size": 30}},
    {"strategies": ["agem"], "scenario": "task", "agem": {"per_experience": 16, "batch_size": 8}},
    {"strategies": ["replay", "gem"], "gem": {"per_experience": 8, "margin": 0.0}},
])
def test_resume_equals_uninterrupted_run(tmp_path, kw):
    cfg = resolve(TINY, kw)
    assert_resume_is_exact(cfg, tmp_path)
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert a.get("strategies") == b.get("strategies")
    if "gem" in cfg.strategies:
        assert a["strategies"]["gem"]["projected_steps"] > 0  # the projection path ran


@pytest.mark.parametrize("bad", [
    {"gem": {"margin": -0.1}}, {"gem": {"per_experience": 0}}, {"gem": {"size": 0}},
    {"agem": {"per_experience": 0}}, {"agem": {"size": 0}}, {"agem": {"batch_size": 0}},
])
def test_bad_params_raise_config_error(bad):
    (name,) = bad
    with pytest.raises(ConfigError, match=name):
        resolve({"strategies": [name]}, bad)


def test_a_total_size_below_one_per_experience_is_refused():
    with pytest.raises(ConfigError, match="gem.size"):
        Learner(resolve(TINY, {"strategies": ["gem"], "gem": {"size": 2}}))
