"""Tests for edgelll.models: the registry, growing and multi-task heads, rebuild, per-task models."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from edgelll.errors import ConfigError
from edgelll.models import (EdgeModel, IncrementalClassifier, MultiHeadClassifier, create_model,
                            list_models, model_params, rebuild)
from edgelll.models.per_task import ModelPerTask

SHAPE = (1, 8, 8)


def _x(n: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(seed))


def _exp(task_id: int, head_size: int, n_local: int) -> SimpleNamespace:
    return SimpleNamespace(task_id=task_id, head_size=head_size, n_local_classes=n_local)


# ---------------------------------------------------------------------------------------------
# registry


def test_create_mlp_output_shape():
    torch.manual_seed(0)
    m = create_model("mlp", SHAPE, 4)
    assert isinstance(m, EdgeModel) and m.input_shape == SHAPE
    assert m(_x(5)).shape == (5, 4)
    assert m.forward_features(_x(5)).shape == (5, 400)


@pytest.mark.parametrize("name", ["mlp", "mlp-small", "convnet"])
def test_every_model_builds(name):
    torch.manual_seed(0)
    m = create_model(name, SHAPE, 3)
    assert m(_x(2)).shape == (2, 3)
    assert name in list_models()


def test_unknown_model_suggests_close_name():
    with pytest.raises(ConfigError) as err:
        create_model("mpl", SHAPE, 4)
    assert "'mlp'" in str(err.value) and "did you mean" in str(err.value)
    with pytest.raises(ConfigError):
        model_params("resnet-9000")


def test_unknown_model_kwarg_is_a_config_error():
    with pytest.raises(ConfigError, match="hiden"):
        create_model("mlp", SHAPE, 4, hiden=(8,))
    with pytest.raises(ConfigError):  # ValueError inside the builder becomes a ConfigError
        create_model("mlp", SHAPE, 4, hidden=(0,))
    with pytest.raises(ConfigError):
        create_model("convnet", (64,), 4)
    assert model_params("mlp") == {"hidden": (400, 400), "pool": 1}


# ---------------------------------------------------------------------------------------------
# growing head


def test_grow_keeps_old_rows_bit_for_bit():
    torch.manual_seed(1)
    head = IncrementalClassifier(6, 2)
    w, b = head.linear.weight.detach().clone(), head.linear.bias.detach().clone()
    feats = torch.randn(7, 6)
    before = head(feats).detach()
    assert head.grow(5) is True and head.n_classes == 5
    assert torch.equal(head.linear.weight[:2], w) and torch.equal(head.linear.bias[:2], b)
    after = head(feats).detach()
    assert after.shape == (7, 5)
    # Same weights, but a wider matmul may sum in another order (BLAS blocking): allow only
    # float32 rounding, far below any change of a weight.
    assert torch.allclose(after[:, :2], before, rtol=1e-6, atol=1e-6)
    assert head.spec() == {"kind": "single", "sizes": [5]}
    assert head.linear.weight.requires_grad


def test_grow_to_smaller_or_equal_is_a_noop():
    head = IncrementalClassifier(6, 4)
    lin = head.linear
    assert head.grow(3) is False and head.grow(4) is False
    assert head.linear is lin and head.n_classes == 4


# ---------------------------------------------------------------------------------------------
# multi-head


def test_multi_head_routes_each_sample_to_its_task_head():
    torch.manual_seed(2)
    mh = MultiHeadClassifier(6, [2, 3])
    mh.add_head(4)
    assert mh.n_classes == 4 and mh.spec() == {"kind": "multi", "sizes": [2, 3, 4]}
    feats = torch.randn(6, 6)
    tids = torch.tensor([0, 1, 2, 2, 1, 0])
    out = mh(feats, tids)
    assert out.shape == (6, 4)
    for i, t in enumerate(tids.tolist()):
        direct = mh.heads[t](feats[i:i + 1])[0]
        k = direct.numel()
        assert torch.allclose(out[i, :k], direct)
        assert torch.isinf(out[i, k:]).all() and (out[i, k:] < 0).all()
    with pytest.raises(ValueError):
        mh(feats, None)


def test_multi_head_task_without_head_is_all_minus_inf():
    mh = MultiHeadClassifier(3, [2, 2])
    out = mh(torch.randn(3, 3), torch.tensor([0, 2, 5]))
    assert torch.isfinite(out[0]).all()
    assert torch.equal(out[1:], torch.full((2, 2), float("-inf")))


# ---------------------------------------------------------------------------------------------
# arch / rebuild


def _same_after_rebuild(model, tids=None):
    arch = json.loads(json.dumps(model.arch()))  # what a checkpoint stores: plain values
    torch.manual_seed(123)  # other random weights: only load_state_dict can make them agree
    twin = rebuild(arch, SHAPE)
    x = _x(6, seed=4)
    model.eval()
    twin.eval()
    assert not torch.equal(twin(x, tids), model(x, tids))
    twin.load_state_dict(model.state_dict())
    assert torch.equal(twin(x, tids), model(x, tids))
    assert json.loads(json.dumps(twin.arch())) == arch
    return twin


def test_rebuild_after_the_head_grew():
    torch.manual_seed(3)
    m = create_model("mlp", SHAPE, 2, hidden=(16, 8))
    assert m.adapt(_exp(1, 5, 3)) is True
    twin = _same_after_rebuild(m)
    assert twin.head.n_classes == 5 and twin.args == {"hidden": (16, 8), "pool": 1}


def test_rebuild_multi_head():
    torch.manual_seed(4)
    m = create_model("mlp", SHAPE, 2, hidden=(16,), multi_head=True)
    m.adapt(_exp(1, 0, 3))
    m.adapt(_exp(2, 0, 2))
    twin = _same_after_rebuild(m, torch.tensor([0, 1, 2, 1, 0, 2]))
    assert twin.multi_head and twin.head.spec()["sizes"] == [2, 3, 2]


def test_rebuild_convnet():
    torch.manual_seed(5)
    m = create_model("convnet", SHAPE, 3, channels=(4, 8), hidden=12)
    m.adapt(_exp(1, 6, 3))
    twin = _same_after_rebuild(m)
    assert twin.name == "convnet" and twin.args == {"channels": (4, 8), "hidden": 12}


# ---------------------------------------------------------------------------------------------
# adapt


def test_adapt_single_head_grows_to_head_size():
    torch.manual_seed(6)
    m = create_model("mlp", SHAPE, 2, hidden=(8,))
    assert m.adapt(_exp(0, 2, 2)) is False
    assert m.adapt(_exp(1, 4, 2)) is True and m(_x(3)).shape == (3, 4)
    assert m.adapt(_exp(2, 4, 2)) is False  # domain-like: same width


def test_adapt_multi_head_adds_the_task_head():
    torch.manual_seed(7)
    m = create_model("mlp", SHAPE, 2, hidden=(8,), multi_head=True)
    assert m.adapt(_exp(0, 2, 2)) is False
    assert m.adapt(_exp(1, 2, 3)) is True
    assert m.head.spec()["sizes"] == [2, 3]
    assert m.adapt(_exp(1, 2, 3)) is False
    out = m(_x(2), torch.tensor([0, 1]))
    assert out.shape == (2, 3) and torch.isinf(out[0, 2]) and torch.isfinite(out[1]).all()


# ---------------------------------------------------------------------------------------------
# one model per task


def _per_task(route: str) -> ModelPerTask:
    torch.manual_seed(8)
    first = create_model("mlp", SHAPE, 2, hidden=(8,))
    pt = ModelPerTask([first], route)
    assert pt.adapt(_exp(0, 2, 2)) is False
    assert pt.adapt(_exp(1, 5, 3)) is True
    return pt


def test_per_task_class_route_concatenates_members():
    pt = _per_task("class")
    x = _x(4)
    out = pt(x)
    a, b = pt.members
    assert out.shape == (4, 5)
    assert torch.equal(out, torch.cat([a(x), b(x)], dim=1))
    # The new member has its own random weights, the same network shape.
    assert b.arch() == {"name": "mlp", "args": {"hidden": (8,), "pool": 1}, "head": {"kind": "single", "sizes": [3]}}
    assert not torch.equal(a.backbone[1].weight, b.backbone[1].weight)


def test_per_task_task_route_picks_by_task_id():
    pt = _per_task("task")
    x = _x(4)
    tids = torch.tensor([1, 0, 1, 3])
    out = pt(x, tids)
    a, b = pt.members
    assert out.shape == (4, 3)
    assert torch.equal(out[0], b(x)[0]) and torch.equal(out[2], b(x)[2])
    assert torch.equal(out[1, :2], a(x)[1]) and out[1, 2] == float("-inf")
    assert torch.equal(out[3], torch.full((3,), float("-inf")))
    with pytest.raises(ValueError):
        pt(x)


def test_per_task_old_members_are_frozen():
    pt = _per_task("class")
    old, new = pt.members
    assert all(not p.requires_grad for p in old.parameters())
    assert all(p.requires_grad for p in new.parameters())
    pt.adapt(_exp(2, 7, 2))
    assert [all(not p.requires_grad for p in m.parameters()) for m in pt.members] == [True, True, False]
    assert all(p.requires_grad for p in pt.members[2].parameters())


def test_per_task_rebuild_round_trip():
    pt = _per_task("class")
    arch = json.loads(json.dumps(pt.arch()))
    twin = rebuild(arch, SHAPE)
    twin.load_state_dict(pt.state_dict())
    x = _x(3)
    assert torch.equal(twin(x), pt(x))
    assert [all(not p.requires_grad for p in m.parameters()) for m in twin.members] == [True, False]
