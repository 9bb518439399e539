"""Tests for edgelll.models: the registry, growing and multi-task heads, the spec and rebuild,
preprocessing inside the model, columns (one model per task), and head variants."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from edgelll.errors import ConfigError
from edgelll.models import (BiasHead, BlockHead, EdgeModel, IncrementalClassifier,
                            MultiHeadClassifier, NearestMeanHead, create_model, list_models,
                            model_params, rebuild)

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
    assert model_params("mlp") == {"hidden": (400, 400), "pool": 1, "norm": False}


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
# spec / rebuild


def _same_after_rebuild(model, tids=None):
    spec = json.loads(json.dumps(model.spec()))  # what a checkpoint stores: plain values
    torch.manual_seed(123)  # other random weights: only load_state_dict can make them agree
    twin = rebuild(spec)
    x = _x(6, seed=4)
    tids = torch.zeros(6, dtype=torch.long) if tids is None else tids
    model.eval()
    twin.eval()
    assert not torch.equal(twin(x, tids), model(x, tids))
    twin.load_state_dict(model.state_dict())
    assert torch.equal(twin(x, tids), model(x, tids))
    assert json.loads(json.dumps(twin.spec())) == spec
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
    assert twin.routes_by_task and twin.head.spec()["sizes"] == [2, 3, 2]


def test_rebuild_convnet():
    torch.manual_seed(5)
    m = create_model("convnet", SHAPE, 3, channels=(4, 8), hidden=12)
    m.adapt(_exp(1, 6, 3))
    twin = _same_after_rebuild(m)
    assert twin.name == "convnet" and twin.args == {"channels": (4, 8), "hidden": 12}


def test_spec_is_plain_data_with_input_and_labels():
    m = create_model("mlp", SHAPE, 2, hidden=(8,),
                     input={"dtype": "uint8", "layout": "nchw", "mean": 4.5, "std": 2.0})
    m.labels = {"scenario": "class", "tasks": [[3, 1]], "units": [3, 1]}
    spec = m.spec()
    assert json.loads(json.dumps(spec)) == spec
    assert spec["input"] == {"shape": [1, 8, 8], "dtype": "uint8", "layout": "nchw", "mean": 4.5,
                             "std": 2.0}
    assert spec["labels"]["units"] == [3, 1] and spec["head"] == {"kind": "single", "sizes": [2]}
    with pytest.raises(ConfigError, match="format"):
        rebuild({**spec, "format": "something-else/9"})


def test_the_model_normalises_raw_samples_itself():
    torch.manual_seed(9)
    raw = torch.randint(0, 17, (5, *SHAPE), dtype=torch.uint8)
    m = create_model("mlp", SHAPE, 3, hidden=(8,),
                     input={"dtype": "uint8", "layout": "nchw", "mean": 4.5, "std": 2.0})
    by_hand = m.head(m.backbone((raw.float() - 4.5) / 2.0))
    assert torch.allclose(m(raw), by_hand, atol=1e-6)
    twin = rebuild(m.spec())  # the constants come back from the spec alone, not the state
    assert torch.equal(twin.preprocess(raw), m.preprocess(raw))


def test_predict_maps_units_to_data_set_labels():
    torch.manual_seed(10)
    m = create_model("mlp", SHAPE, 3, hidden=(8,))
    m.labels = {"scenario": "class", "tasks": [[7, 2, 9]], "units": [7, 2, 9]}
    x = _x(6)
    units = m(x).argmax(1)
    assert torch.equal(m.predict(x), torch.tensor([7, 2, 9])[units])
    assert torch.equal(m.predict(x.numpy().reshape(6, 8, 8)), m.predict(x))  # channel axis added
    t = create_model("mlp", SHAPE, 2, hidden=(8,), multi_head=True)
    t.adapt(_exp(1, 0, 2))
    t.labels = {"scenario": "task", "tasks": [[0, 1], [5, 8]]}
    tids = torch.tensor([0, 1, 1, 0, 1, 0])
    expect = torch.tensor([[0, 1], [5, 8]])[tids, t(x, tids).argmax(1)]
    assert torch.equal(t.predict(x, tids), expect)
    with pytest.raises(ValueError, match="task_ids"):
        t.predict(x)


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
# columns: one model per task


def _columns(route: str) -> EdgeModel:
    torch.manual_seed(8)
    m = create_model("mlp", SHAPE, 2, hidden=(8,))
    m.to_columns(route, 2)
    assert m.adapt(_exp(0, 2, 2)) is False
    assert m.adapt(_exp(1, 5, 3)) is True
    return m


def _column_net(m: EdgeModel, i: int, x: torch.Tensor) -> torch.Tensor:
    """Column i with its own head block, run on its own: one independent model."""
    return m.head.blocks[i](m.backbone.columns[i](m.preprocess(x)))


def test_columns_class_route_puts_the_models_side_by_side():
    m = _columns("class")
    x = _x(4)
    assert m(x).shape == (4, 5)
    assert torch.equal(m(x), torch.cat([_column_net(m, 0, x), _column_net(m, 1, x)], dim=1))
    a, b = m.backbone.columns  # the new column has its own random weights, the same shape
    assert not torch.equal(a[1].weight, b[1].weight) and a[1].weight.shape == b[1].weight.shape
    assert m.feat_dim == 16 and m.spec()["columns"] == 2


def test_columns_task_route_picks_by_task_id():
    m = _columns("task")
    x = _x(4)
    tids = torch.tensor([1, 0, 1, 3])
    out = m(x, tids)
    a, b = _column_net(m, 0, x), _column_net(m, 1, x)
    assert out.shape == (4, 3)
    assert torch.equal(out[0], b[0]) and torch.equal(out[2], b[2])
    assert torch.equal(out[1, :2], a[1]) and out[1, 2] == float("-inf")
    assert torch.equal(out[3], torch.full((3,), float("-inf")))
    with pytest.raises(ValueError):
        m(x)


def _frozen(module) -> bool:
    return all(not p.requires_grad for p in module.parameters())


def test_old_columns_and_blocks_are_frozen():
    m = _columns("class")
    cols, blocks = m.backbone.columns, m.head.blocks
    assert [_frozen(c) for c in cols] == [True, False] and [_frozen(b) for b in blocks] == [True, False]
    m.adapt(_exp(2, 7, 2))
    assert [_frozen(c) for c in cols] == [True, True, False]
    assert [_frozen(b) for b in blocks] == [True, True, False]


def test_columns_rebuild_round_trip():
    m = _columns("class")
    twin = _same_after_rebuild(m)
    assert [_frozen(c) for c in twin.backbone.columns] == [True, False]


# ---------------------------------------------------------------------------------------------
# head variants


def test_wrapped_heads_rebuild_and_find_each_other():
    torch.manual_seed(11)
    m = create_model("mlp", SHAPE, 2, hidden=(8,))
    m.wrap_head(lambda h: NearestMeanHead(h, m.feat_dim, cosine=True))
    # A bias correction goes below the nearest-mean head, which decides on its own in eval.
    m.wrap_head(lambda h: BiasHead(h, 1))
    assert [h.kind for h in m.head.chain()] == ["nearest-mean", "bias", "single"]
    m.adapt(_exp(1, 4, 2))
    assert m.head.find("nearest-mean").sums.shape == (4, 8) and m.head.n_classes == 4
    m.head.find("nearest-mean").set_stats(torch.randn(10, 8), torch.arange(10) % 3)
    with torch.no_grad():
        m.head.find("bias").alpha.fill_(1.5)
    m.train()
    twin = _same_after_rebuild(m)
    assert [h.kind for h in twin.head.chain()] == ["nearest-mean", "bias", "single"]


def test_bias_head_fold_is_the_same_function():
    torch.manual_seed(12)
    lin = IncrementalClassifier(6, 5)
    bias = BiasHead(lin, 2)
    with torch.no_grad():
        bias.alpha.fill_(0.7)
        bias.beta.fill_(-0.3)
    f = torch.randn(4, 6)
    before = bias(f)
    bias.repoint(4)
    assert float(bias.alpha) == 1.0 and float(bias.beta) == 0.0 and bias.new_from == 4
    assert torch.allclose(bias(f), before, atol=1e-6)


def test_block_head_needs_a_known_route():
    with pytest.raises(ValueError):
        BlockHead(4, [2], "sideways")
