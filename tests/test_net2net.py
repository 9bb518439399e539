"""Tests for edgelll.models.net2net: Net2WiderNet and Net2DeeperNet keep the function on every
layer type (with BatchNorm too), the grown spec rebuilds the network, and optimizer state and
importances follow the mapping to what the grown network itself computes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from edgelll.errors import ConfigError
from edgelll.models import HebbianHead, NearestMeanHead, create_model, rebuild
from edgelll.models.net2net import grow_deeper, grow_wider, map_like, map_optimizer_state
from edgelll.optim import SGD, Adam
from edgelll.strategies.ewc import empirical_fisher
from edgelll.strategies.mas import mas_importance

SHAPE = (1, 8, 8)
MODELS = {  # name, arguments, hidden layers (the last one feeds the head)
    "mlp": ("mlp", {"hidden": (6, 5)}, 2),
    "mlp-norm": ("mlp", {"hidden": (6, 5), "norm": True}, 2),
    "mlp-small": ("mlp-small", {}, 2),
    "convnet": ("convnet", {"channels": (3, 4), "hidden": 6}, 3),  # layer 1: conv -> flatten
    "convnet-norm": ("convnet", {"channels": (3, 4), "hidden": 6, "norm": True}, 3),
}
CASES = [(key, layer) for key, (_, _, n) in MODELS.items() for layer in range(n)]


def _x(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(seed))


def _model(key: str, n_classes: int = 3, multi_head: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    name, args, _ = MODELS[key]
    model = create_model(name, SHAPE, n_classes, multi_head=multi_head, **args)
    with torch.no_grad():  # BatchNorm away from its identity start: non-trivial statistics
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        model.train()
        for s in range(3):
            _out(model, _x(32, seed=10 + s) * 2 + 0.5)
    return model.eval()


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _out(model, x, t=None):
    return model(x, torch.zeros(len(x), dtype=torch.long) if t is None else t)


# ---------------------------------------------------------------------------------------------
# function preservation


@pytest.mark.parametrize("key,layer", CASES)
def test_wider_keeps_the_function(key, layer):
    model, x = _model(key), _x()
    before = _out(model, x)
    n = sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.backbone)
    layers = [m for m in model.backbone if isinstance(m, (nn.Linear, nn.Conv2d))]
    old = layers[layer].weight.shape[0]
    growth = grow_wider(model, layer, old + 5, generator=_gen(layer))
    assert torch.allclose(_out(model, x), before, atol=1e-5)
    assert (growth.old_width, growth.new_width) == (old, old + 5)
    assert sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.backbone) == n
    assert int(growth.counts.sum()) == old + 5
    assert torch.equal(growth.index[:old], torch.arange(old))
    if layer == n - 1:  # the head reads the wider features
        assert model.feat_dim == old + 5 and model.head.linear.in_features == old + 5


@pytest.mark.parametrize("key,layer", CASES)
def test_deeper_keeps_the_function(key, layer):
    model, x = _model(key), _x()
    before = _out(model, x)
    growth = grow_deeper(model, layer)
    assert torch.allclose(_out(model, x), before, atol=1e-5)
    assert growth.added and all(n.startswith("backbone.") for n in growth.added)
    assert sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.backbone) == MODELS[key][2] + 1


def test_last_layer_into_a_multi_head_and_a_bias_head():
    from edgelll.models import BiasHead
    model, x = _model("convnet", multi_head=True), _x()
    model.head.add_head(4)
    t = torch.arange(len(x)) % 2
    before = _out(model, x, t)
    grow_wider(model, 2, 9, generator=_gen())
    assert torch.allclose(_out(model, x, t), before, atol=1e-5)
    assert all(h.in_features == 9 for h in model.head.heads) and model.head.in_features == 9
    model = _model("mlp")
    model.head = BiasHead(model.head, 1)
    with torch.no_grad():
        model.head.alpha.fill_(0.7)
    before = _out(model, x)
    grow_wider(model, 1, 8, generator=_gen())
    assert torch.allclose(_out(model, x), before, atol=1e-5)


def test_deeper_batchnorm_from_data_is_the_identity_in_training_mode_too():
    model, x = _model("mlp-norm"), _x(64)
    growth = grow_deeper(model, 0, data=x)
    at = int(growth.added[0].split(".")[1])
    below = model.backbone[:at](model.preprocess(x))
    block = model.backbone[at:at + 3]  # identity Linear, BatchNorm, ReLU
    assert torch.allclose(block(below), below, atol=1e-5)  # eval: the running statistics
    block.train()  # (a training step then moves the running statistics: eval checked first)
    assert torch.allclose(block(below), below, atol=1e-5)  # batch statistics = the data's


def test_successive_growths_keep_the_function_and_rebuild():
    model, x = _model("convnet-norm"), _x()
    before = _out(model, x)
    grow_wider(model, 0, 5, generator=_gen(1))
    grow_deeper(model, 1, data=x)
    grow_wider(model, 2, 7, generator=_gen(2))  # the inserted conv, into the flatten
    grow_wider(model, 0, 8, generator=_gen(3))
    grow_deeper(model, 3)
    grow_wider(model, 4, 9, generator=_gen(4))  # the inserted linear, into the head
    assert torch.allclose(_out(model, x), before, atol=1e-5)
    assert model.spec()["args"] == {"channels": [8, 4, 7], "hidden": [6, 9], "norm": True,
                                    "pools": [True, True, False]}
    twin = rebuild(json.loads(json.dumps(model.spec())))
    twin.load_state_dict(model.state_dict())
    assert torch.equal(_out(twin.eval(), x), _out(model, x))


@pytest.mark.parametrize("key", list(MODELS))
def test_grown_spec_rebuilds_and_loads_the_checkpoint(key):
    model, x = _model(key), _x()
    grow_wider(model, 0, 120, generator=_gen())
    grow_deeper(model, MODELS[key][2] - 1)  # after the last (was the head's input)
    twin = rebuild(json.loads(json.dumps(model.spec())))
    twin.load_state_dict(model.state_dict())  # strict: every name and shape matches
    assert torch.equal(_out(twin.eval(), x), _out(model, x))


def test_old_specs_are_unchanged():
    assert create_model("convnet", SHAPE, 2).args == {"channels": (16, 32), "hidden": 128}
    assert create_model("mlp", SHAPE, 2).args == {"hidden": (400, 400), "pool": 1}
    plain = create_model("convnet", SHAPE, 2, channels=(3, 4), hidden=6)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    explicit = create_model("convnet", SHAPE, 2, channels=(3, 4), hidden=6, pools=(True, True))
    assert str(explicit.backbone) == str(plain.backbone)


def test_noise_breaks_symmetry_only_in_the_new_units():
    plain, noisy, x = _model("mlp"), _model("mlp"), _x()
    original = noisy.backbone[1].weight.detach().clone()
    grow_wider(plain, 0, 10, generator=_gen(5))
    g = grow_wider(noisy, 0, 10, noise=0.1, generator=_gen(5))
    a, b = dict(plain.named_parameters()), dict(noisy.named_parameters())
    w = "backbone.1.weight"
    assert torch.equal(a[w][:6], b[w][:6]) and not torch.allclose(a[w][6:], b[w][6:])
    assert torch.equal(b[w][:6], original) and not torch.allclose(b[w][6:], original[g.index[6:]])
    assert all(torch.equal(a[n], b[n]) for n in a if n != w)  # bias, next layer, head untouched
    assert not torch.allclose(_out(plain, x), _out(noisy, x), atol=1e-5)


def test_the_mapping_is_seeded():
    a, b = _model("mlp"), _model("mlp")
    ga, gb = grow_wider(a, 0, 20, generator=_gen(3)), grow_wider(b, 0, 20, generator=_gen(3))
    assert torch.equal(ga.index, gb.index) and torch.equal(ga.counts, torch.bincount(ga.index))
    assert ga.rows == ("backbone.1.weight", "backbone.1.bias") and ga.cols == ("backbone.3.weight",)


# ---------------------------------------------------------------------------------------------
# optimizer state and importances


def _train(model, opt, steps: int, seed: int = 0) -> None:
    for s in range(steps):
        x = _x(8, seed=100 + seed + s)
        y = torch.arange(8) % 3
        opt.zero_grad()
        nn.functional.cross_entropy(_out(model, x), y).backward()
        opt.step()


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _moments(model, opt, key: str) -> dict[str, torch.Tensor]:
    return {n: opt.state[p][key].clone() for n, p in model.named_parameters() if p in opt.state}


@pytest.mark.parametrize("make", [Adam, torch.optim.Adam], ids=["edgelll", "torch"])
@pytest.mark.parametrize("key,layer", [("mlp", 0), ("mlp", 1), ("convnet", 1)])
def test_adam_step_on_the_grown_net_is_the_hand_computed_step(make, key, layer):
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    small = _model(key)
    opt = make(small.parameters(), lr=lr)
    _train(small, opt, 3)
    grown = _model(key)
    grown.load_state_dict(small.state_dict())
    gopt = make(grown.parameters(), lr=lr)
    gopt.load_state_dict(opt.state_dict())
    before = dict(grown.named_parameters())
    growth = grow_wider(grown, layer, 9, generator=_gen(7))
    map_optimizer_state(gopt, before, grown, growth)
    start = map_like(_params(small), growth, "value")
    _train(small, opt, 1, seed=50)  # the same batch on the small net ...
    _train(grown, gopt, 1, seed=50)  # ... and on the grown one
    m = map_like(_moments(small, opt, "exp_avg"), growth, "grad")
    v = map_like(_moments(small, opt, "exp_avg_sq"), growth, "grad2")
    assert any(growth.counts > 1)
    for n, p in grown.named_parameters():
        state = gopt.state[p]
        assert torch.allclose(state["exp_avg"], m[n], atol=1e-7, rtol=1e-5), n
        assert torch.allclose(state["exp_avg_sq"], v[n], atol=1e-10, rtol=1e-4), n
        t = float(state["step"])
        step = (lr / (1 - b1 ** t)) * m[n] / (v[n].sqrt() / (1 - b2 ** t) ** 0.5 + eps)
        assert torch.allclose(p.detach(), start[n] - step, atol=1e-6), n


def test_sgd_momentum_step_on_the_grown_net_is_the_hand_computed_step():
    lr = 0.05
    small = _model("convnet")
    opt = SGD(small.parameters(), lr=lr, momentum=0.9)
    _train(small, opt, 3)
    grown = _model("convnet")
    grown.load_state_dict(small.state_dict())
    gopt = SGD(grown.parameters(), lr=lr, momentum=0.9)
    gopt.load_state_dict(opt.state_dict())
    before = dict(grown.named_parameters())
    growth = grow_wider(grown, 2, 10, generator=_gen(2))  # the hidden linear, into the head
    map_optimizer_state(gopt, before, grown, growth)
    start = map_like(_params(small), growth, "value")
    _train(small, opt, 1, seed=50)
    _train(grown, gopt, 1, seed=50)
    buf = map_like(_moments(small, opt, "momentum_buffer"), growth, "grad")
    for n, p in grown.named_parameters():
        assert torch.allclose(gopt.state[p]["momentum_buffer"], buf[n], atol=1e-6), n
        assert torch.allclose(p.detach(), start[n] - lr * buf[n], atol=1e-6), n


def test_deeper_carries_optimizer_state_and_adds_the_new_layer_fresh():
    model = _model("mlp")
    opt = Adam(model.parameters(), lr=0.01)
    _train(model, opt, 2)
    before = dict(model.named_parameters())
    held = {n: opt.state[p]["exp_avg"].clone() for n, p in before.items()}
    growth = grow_deeper(model, 0)
    map_optimizer_state(opt, before, model, growth)
    now = dict(model.named_parameters())
    assert growth.renamed["backbone.3.weight"] == "backbone.5.weight"
    for n, m in held.items():
        assert torch.equal(opt.state[now[growth.renamed.get(n, n)]]["exp_avg"], m)
    new = [now[n] for n in growth.added]
    assert len(new) == 2 and all(p not in opt.state for p in new)
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in now.values()}
    _train(model, opt, 1)
    assert all(p in opt.state for p in new)


@pytest.mark.parametrize("key,layer", [("mlp", 0), ("mlp", 1), ("convnet", 0), ("convnet", 1)])
def test_fisher_and_mas_importances_follow_to_what_the_grown_net_computes(key, layer):
    small, x = _model(key), _x(12)
    y, t = torch.arange(12) % 3, torch.zeros(12, dtype=torch.long)
    fisher, mas = empirical_fisher(small, x, y, t), mas_importance(small, x, t)
    growth = grow_wider(small, layer, 7, generator=_gen(4))
    assert any(growth.counts > 1)
    grown_fisher, grown_mas = empirical_fisher(small, x, y, t), mas_importance(small, x, t)
    mapped_f, mapped_m = map_like(fisher, growth, "grad2"), map_like(mas, growth, "grad")
    for n in grown_fisher:
        assert torch.allclose(mapped_f[n], grown_fisher[n], atol=1e-9, rtol=1e-4), n
        assert torch.allclose(mapped_m[n], grown_mas[n], atol=1e-8, rtol=1e-4), n


def test_anchors_map_like_the_weights_and_si_omega_is_copied():
    model = _model("convnet")
    anchor = _params(model)
    growth = grow_wider(model, 1, 6, generator=_gen(1))
    mapped = map_like(anchor, growth, "value")
    assert all(torch.equal(mapped[n], p) for n, p in model.named_parameters())
    omega = map_like({n: torch.ones_like(p) for n, p in anchor.items()}, growth, "copy")
    assert all(torch.equal(omega[n], torch.ones_like(p)) for n, p in model.named_parameters())


# ---------------------------------------------------------------------------------------------
# refusals: one line each


def _refused(match: str, fn, *args, **kw) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        fn(*args, **kw)
    assert "\n" not in str(info.value)


def test_refusals():
    model = _model("mlp")
    _refused("has 2 hidden layers, numbered 0 to 1", grow_wider, model, 2, 10)
    _refused("has 2 hidden layers", grow_deeper, model, -1)
    _refused("has 6 units: new_width must be an integer larger than 6", grow_wider, model, 0, 6)
    _refused("larger than 6", grow_wider, model, 0, 3)
    _refused("grows the mlp, mlp-small, convnet models, not 'Linear'", grow_wider, nn.Linear(2, 2),
             0, 4)
    model.head = NearestMeanHead(model.head, 5, 3)
    _refused("'nearest-mean' head: its feature distances", grow_wider, model, 1, 8)
    grow_wider(model, 0, 8)  # an earlier layer is fine
    model.head = HebbianHead(None, 5, 3)
    _refused("'hebbian' head", grow_wider, model, 1, 8)
    cols = _model("mlp")
    cols.to_columns("task", 3)
    _refused("task columns", grow_wider, cols, 0, 8)
    _refused("unknown kind 'fisher'", map_like, {}, grow_wider(_model("mlp"), 0, 7), "fisher")


def test_refusal_leaves_the_model_untouched():
    model, x = _model("mlp"), _x()
    before = {n: p.clone() for n, p in model.state_dict().items()}
    model.head = HebbianHead(None, 5, 3)
    with pytest.raises(ConfigError):
        grow_wider(model, 1, 8)
    kept = model.backbone.state_dict()
    assert all(torch.equal(before[f"backbone.{n}"], p) for n, p in kept.items())
    assert model.feat_dim == 5 and model.args == {"hidden": (6, 5), "pool": 1}


@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_a_growth_leaves_torchs_random_stream_where_it_was(name):
    """A growth draws only from its own generator: the run's later samples and inits are those
    it would have had (new layers are built without a random init)."""
    model = create_model(name, (1, 8, 8), 4, hidden=(6, 6) if name == "mlp" else 6)
    state = torch.random.get_rng_state()
    width = next(m for m in model.backbone if hasattr(m, "weight")).weight.shape[0]
    grow_wider(model, 0, width + 3, noise=0.1, generator=torch.Generator().manual_seed(0))
    grow_deeper(model, 0)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_measure_trained_reads_the_last_batches_training_saw_not_the_experience():
    # the class scenario with replay: the experience's own classes may be learned while the
    # replayed old ones are not; measure="trained" reads the mixed batches (after_step's)
    from edgelll.batch import Batch
    from edgelll.strategies.net2net import Net2Net, Net2NetParams

    class Zero(nn.Module):  # predicts class 0 for everything
        def forward(self, x, t):
            return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 3).float()

    def batch(labels):
        y = torch.tensor(labels)
        return Batch(torch.zeros(len(y), 2), y, torch.zeros(len(y), dtype=torch.long))

    experience = batch([0] * 6)  # all right on the experience alone
    for measure, want in (("experience", 1.0), ("trained", 2 / 5)):
        s = Net2Net(Net2NetParams(samples=5, measure=measure))
        s.before_experience(None, None)
        for labels in ([0, 0, 0], [1, 1, 0], [0, 2, 2]):  # the last 5 rows: 1, 0, 0, 2, 2
            s.after_step(None, batch(labels))
        assert len(s._recent) == (2 if measure == "trained" else 0)
        got = s._train_acc(type("Ctx", (), {"generator": torch.Generator().manual_seed(0)})(),
                           Zero(), experience)
        assert got == pytest.approx(want)
        s.before_experience(None, None)
        assert s._recent == []  # a new experience starts its own window
    with pytest.raises(ConfigError, match="measure"):
        Net2NetParams(measure="loss")
