"""iCaRL (Rebuffi et al. 2017): herding (Algorithm 4), the herding buffer policy, the
nearest-mean-of-exemplars classifier and the sigmoid distillation term."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from edgelll import ConfigError, learn, resolve
from edgelll.batch import Batch
from edgelll.buffer import ExemplarBuffer, herding_select
from edgelll.learner import Learner
from edgelll.models import create_model, rebuild
from edgelll.runs import latest_checkpoint
from edgelll.strategies import create_strategy, strategy_params
from edgelll.models import NearestMeanHead
from edgelll.strategies.replay import embed

from _resume import assert_resume_is_exact

TINY = {"hidden": (32,)}


def _cfg(**kw):
    base = {"strategies": ["icarl"], "epochs": 2, "tasks": 3, "model_args": TINY}
    base.update(kw)
    return resolve(base)


# -- herding ----------------------------------------------------------------------------------

def test_herding_order_is_algorithm_4_computed_by_hand():
    # Normalised: a=(1,0), b=(0,1), c=(.6,.8), d=(-.6,.8); class mean mu = (.25, .65).
    feats = torch.tensor([[2.0, 0.0], [0.0, 3.0], [3.0, 4.0], [-3.0, 4.0]])
    # k=1, |mu - phi|^2: a .985, b .185, c .145, d .745                      -> c (2)
    # k=2, |mu - (phi + c)/2|^2: a .365, b .065, d .085                      -> b (1)
    # k=3, |mu - (phi + c + b)/3|^2: a (.533,.6) .0828, d (0,.867) .1094     -> a (0), then d
    # (ranking by distance to the mean alone would give c, b, d, a; raw, unnormalised
    # features would pick b first)
    assert herding_select(feats, 4).tolist() == [2, 1, 0, 3]
    assert herding_select(feats, 2).tolist() == [2, 1]
    assert herding_select(feats, 9).tolist() == [2, 1, 0, 3]  # m > n: every sample, once


def _reference_herding(feats, m):
    """Algorithm 4 one candidate at a time."""
    phi = [f / f.norm() for f in feats.double()]
    mu = sum(phi) / len(phi)
    chosen, total = [], torch.zeros_like(mu)
    for k in range(1, m + 1):
        best, best_d = None, math.inf
        for i, p in enumerate(phi):
            if i in chosen:
                continue
            d = float((mu - (p + total) / k).norm())
            if d < best_d:
                best, best_d = i, d
        chosen.append(best)
        total = total + phi[best]
    return chosen


def test_herding_equals_the_one_at_a_time_reference_and_never_repeats():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(40, 5, generator=gen)
    got = herding_select(feats, 25).tolist()
    assert got == _reference_herding(feats, 25)
    assert len(set(got)) == 25


def test_mean_of_the_first_k_herded_approaches_the_class_mean_faster_than_random():
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(300, 16, generator=gen) + 0.5
    phi = F.normalize(feats, dim=1)
    mu = phi.mean(0)
    order = herding_select(feats, 30)
    ks = torch.arange(1, 31)
    herd = torch.stack([(mu - phi[order[:k]].mean(0)).norm() for k in ks])
    def random_error(k):
        subsets = [torch.randperm(300, generator=gen)[:k] for _ in range(200)]
        return torch.stack([(mu - phi[s].mean(0)).norm() for s in subsets]).mean()

    rand = torch.stack([random_error(k) for k in ks])
    assert bool((herd < rand).all())
    # Herding's error falls like 1/k, a random subset's like 1/sqrt(k): far apart by k = 30.
    assert herd[-1] < 0.25 * rand[-1]


# -- the herding buffer policy ---------------------------------------------------------------

def _points(classes, per, gen):
    y = torch.tensor([c for c in classes for _ in range(per)])
    x = torch.randn(len(y), 3, generator=gen) + 3 * F.one_hot(y % 3, 3)
    return Batch(x, y, torch.zeros_like(y))


def test_herding_buffer_is_balanced_and_shrinks_to_the_herding_prefix():
    gen = torch.Generator().manual_seed(2)
    buf = ExemplarBuffer(12, (3,), torch.float32)
    first = _points([0, 1], 10, gen)
    buf.herding_update(first, lambda x: x)  # features = the samples themselves
    assert buf.size == 12
    for c in (0, 1):
        rows = first.x[first.y == c]
        assert torch.equal(buf.x[:12][buf.y[:12] == c], rows[herding_select(rows, 6)])
    before = {c: buf.x[:12][buf.y[:12] == c].clone() for c in (0, 1)}
    second = _points([2, 3], 10, gen)
    buf.herding_update(second, lambda x: x)
    y = buf.y[: buf.size].long()
    assert buf.size == 12 and torch.bincount(y).tolist() == [3, 3, 3, 3]
    for c in (0, 1):  # old classes keep the first 3 of their herding order (the reduce step)
        assert torch.equal(buf.x[:12][y == c], before[c][:3])
    for c in (2, 3):
        rows = second.x[second.y == c]
        assert torch.equal(buf.x[:12][y == c], rows[herding_select(rows, 3)])
    assert buf.seen == 40


def test_replay_herding_policy_selects_in_the_current_models_feature_space():
    cfg = resolve({"strategies": ["replay"], "replay": {"policy": "herding", "size": 20},
                   "epochs": 1, "tasks": 5, "model_args": TINY})
    learner = Learner(cfg)
    exp = learner.stream.experiences[0]
    learner.learn_experience(exp)
    buf, data = learner.strategies[0].buffer, exp.train_data()
    feats = embed(learner.model, data.x)
    for c in (0, 1):
        rows = torch.nonzero(data.y == c).flatten()
        want = data.x[rows[herding_select(feats[rows], 10)]]
        assert torch.equal(buf.x[: buf.size][buf.y[: buf.size] == c], want)
    with pytest.raises(ConfigError, match="herding"):
        strategy_params("replay", {"policy": "greedy"})


# -- nearest mean of exemplars ---------------------------------------------------------------

def _identity_features_model():
    model = create_model("mlp", (1, 1, 2), 3, hidden=(2,))
    linear = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():  # features = relu(x)
        linear.weight.copy_(torch.eye(2))
        linear.bias.zero_()
        model.head.linear.weight.zero_()
        model.head.linear.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))  # the head always says 2
    return model


def _nmc_model(n_classes: int):
    model = _identity_features_model()
    model.wrap_head(lambda h: NearestMeanHead(h, 2, n_classes, cosine=True))
    return model


def test_nmc_predicts_the_nearest_class_mean_by_hand():
    model = _nmc_model(4)
    # Exemplar features (relu(x) = x here). Class 0: (2,0), (0,5) -> normalised (1,0), (0,1),
    # mean (.5,.5), re-normalised (.7071, .7071). Class 1: (1,0). Class 2: (0,1), (0,7) -> (0,1).
    # Class 3 has no exemplars and can never be predicted.
    feats = torch.tensor([[2.0, 0.0], [0.0, 5.0], [1.0, 0.0], [0.0, 1.0], [0.0, 7.0]])
    head = model.head
    head.set_stats(feats, torch.tensor([0, 0, 1, 2, 2]))
    from edgelll.runtime.rules import ncm_means
    means, known = ncm_means(head.sums, head.counts, cosine=True)
    torch.testing.assert_close(means[:3], torch.tensor([[0.5 ** 0.5] * 2, [1.0, 0.0], [0.0, 1.0]]))
    assert known.tolist() == [True, True, True, False]
    # At 23.5 degrees: |phi - mu_0| = sqrt(2 - 1.4142 (cos + sin)) = .3730 and
    # |phi - mu_1| = sqrt(2 - 2 cos) = .4073: class 0. (Against the mean (.5,.5) left
    # unnormalised, sqrt(1.5 - cos - sin) = .4292, class 1 would win.)
    a = math.radians(23.5)
    x = torch.tensor([[3 * math.cos(a), 3 * math.sin(a)], [5.0, 0.1], [0.1, 2.0]]).view(3, 1, 1, 2)
    model.eval()
    logits = model(x)
    assert logits.argmax(1).tolist() == [0, 1, 2]
    assert torch.isinf(logits[:, 3]).all()
    assert abs(-logits[0, 0].item() - 0.3730) < 1e-3 and abs(-logits[0, 1].item() - 0.4073) < 1e-3
    model.train()  # training uses the network's logits, not the means
    assert torch.equal(model(x), model.logits(x)) and model(x).argmax(1).tolist() == [2, 2, 2]


def test_nmc_head_rebuilds_from_its_spec_with_its_means():
    model = _nmc_model(3)
    model.head.set_stats(torch.eye(2), torch.tensor([0, 1]))
    spec = model.spec()
    assert spec["head"]["kind"] == "nearest-mean" and spec["head"]["inner"]["kind"] == "single"
    twin = rebuild(spec)
    twin.load_state_dict(model.state_dict())
    assert torch.equal(twin.head.sums, model.head.sums)
    assert torch.equal(twin.head.counts, model.head.counts)


# -- the strategy -----------------------------------------------------------------------------

def test_distillation_is_the_bce_against_the_old_models_sigmoid_outputs():
    torch.manual_seed(3)
    model = create_model("mlp", (1, 2, 2), 3, hidden=(5,))
    strat = create_strategy("icarl", {"lam": 2.0, "bce": False})
    from edgelll.kd import frozen_copy
    strat.old = frozen_copy(model)
    model.head.grow(5)  # two new classes: not distilled
    x = torch.randn(6, 1, 2, 2)
    logits = model(x).detach().requires_grad_(True)
    loss = strat.extra_loss(None, SimpleNamespace(x=x), logits)
    q = torch.sigmoid(strat.old(x))
    entropy = -(q * q.log() + (1 - q) * (1 - q).log()).sum() / 6
    assert abs(loss.item() - 2.0 * entropy.item()) < 1e-5  # at the old logits: BCE = entropy
    loss.backward()
    assert logits.grad.abs().max() < 1e-6  # and its gradient sigmoid(z) - q vanishes
    shifted = logits.detach().clone()
    shifted[:, 3:] += 10.0  # new classes' units do not enter the term
    assert abs(strat.extra_loss(None, SimpleNamespace(x=x), shifted).item() - loss.item()) < 1e-6


@pytest.mark.parametrize("lam,T", [(1.0, 1.0), (0.5, 1.0), (1.0, 2.0)])
def test_paper_loss_is_the_bce_on_every_unit_in_place_of_the_softmax_ce(lam, T):
    # Algorithm 3: targets are the old model's sigmoid outputs on the old classes' units and the
    # one-hot label on the new ones; it stands in for the learner's softmax cross-entropy.
    torch.manual_seed(4)
    model = create_model("mlp", (1, 2, 2), 3, hidden=(5,))
    strat = create_strategy("icarl", {"lam": lam, "T": T})
    from edgelll.kd import frozen_copy
    x, y = torch.randn(7, 1, 2, 2), torch.tensor([3, 4, 0, 4, 2, 3, 1])
    batch = SimpleNamespace(x=x, y=y)
    first = model(x).detach().requires_grad_(True)  # no previous model: BCE on every unit
    assert strat.replaces_loss() and strat.extra_loss(None, batch, first) is None
    total = strat.task_loss(None, SimpleNamespace(x=x, y=y.clamp(max=2)), first)
    want = F.binary_cross_entropy_with_logits(first, F.one_hot(y.clamp(max=2), 3).float(),
                                              reduction="sum") / 7
    torch.testing.assert_close(total, want)
    strat.old = frozen_copy(model)
    model.head.grow(5)
    z = (model(x) + torch.randn(7, 5)).detach().requires_grad_(True)
    total = strat.task_loss(None, batch, z)
    q = torch.sigmoid(strat.old(x) / T)
    want = (lam * F.binary_cross_entropy_with_logits(z[:, :3], q, reduction="sum")
            + F.binary_cross_entropy_with_logits(z[:, 3:], F.one_hot(y, 5)[:, 3:].float(),
                                                 reduction="sum")) / 7
    torch.testing.assert_close(total, want)
    g, = torch.autograd.grad(total, z)
    g_want = torch.cat([lam * (torch.sigmoid(z[:, :3]) - q),
                        torch.sigmoid(z[:, 3:]) - F.one_hot(y, 5)[:, 3:]], 1) / 7
    torch.testing.assert_close(g, g_want.detach())


def test_icarl_beats_naive_on_the_embedded_digits():
    r = learn(resolve({"strategies": ["icarl"], "epochs": 2, "model_args": TINY}))
    naive = learn(resolve({"strategies": ["naive"], "epochs": 2, "model_args": TINY}))
    assert r.metrics["acc"] > 0.6 and r.metrics["acc"] - naive.metrics["acc"] > 0.35


@pytest.mark.parametrize("kw", [
    {"icarl": {"size": 30}},
    {"icarl": {"nmc": False, "size": 30}, "strategies": ["icarl", "replay"],
     "replay": {"policy": "herding", "size": 20}},
])
def test_resume_equals_uninterrupted_run(tmp_path, kw):
    assert_resume_is_exact(_cfg(**kw), tmp_path)
    raw = torch.load(latest_checkpoint(tmp_path / "cut"), weights_only=True)
    nmc = kw["icarl"].get("nmc", True)
    assert raw["spec"]["head"]["kind"] == ("nearest-mean" if nmc else "single")
    if nmc:  # the class means travel with the model
        assert raw["model"]["head.sums"].shape == (10, 32) and (raw["model"]["head.counts"] > 0).all()
    assert raw["strategies"]["icarl"]["old"]["spec"]["name"] == "mlp"


def test_memory_is_the_exemplars_plus_the_old_model_and_within_the_plan():
    learner = Learner(_cfg(icarl={"size": 30}))
    result = learner.run()
    s = result.strategies[0]
    held = s.buffer.tensors() + list(s.old.parameters()) + list(s.old.buffers())
    assert s.memory_bytes() == sum(t.nbytes for t in held) > 0
    assert s.memory_bytes() == 30 * (64 + 4) + sum(t.nbytes for t in [*s.old.parameters(), *s.old.buffers()])
    planned = learner.planned["strategy:icarl"]
    assert s.memory_bytes() <= planned == s.planned_bytes(learner.plan)
    assert result.memory["components"]["strategy:icarl"] == planned  # old model = final model
    # With a budget and no size, the exemplars take what the fixed parts leave.
    limit = 400_000
    budget = Learner(_cfg(memory=limit))
    assert sum(budget.planned.values()) <= limit < sum(budget.planned.values()) + 68
    assert budget.strategies[0].capacity > 30


def test_bad_settings_are_refused():
    for bad in ({"size": 0}, {"lam": -1.0}, {"batch_size": 0}, {"T": 0.0}):
        with pytest.raises(ConfigError):
            strategy_params("icarl", bad)
    with pytest.raises(ConfigError, match="class scenario"):
        Learner(_cfg(scenario="task"))


def test_two_strategies_replacing_the_loss_are_refused():
    with pytest.raises(ConfigError, match="each replace the cross-entropy"):
        Learner(resolve({"strategies": ["icarl", "generative"], "generative": {"distill": True}}))
    Learner(resolve({"strategies": ["icarl", "generative"]}))  # plain DGR keeps the CE: fine
