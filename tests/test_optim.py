"""edgelll.optim against torch.optim: bitwise equal parameters and state over many steps, state
dicts that load both ways, and no torch._dynamo import."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest
import torch

from edgelll.optim import SGD, Adam

SHAPES = [(7,), (5, 3), (4, 2, 3, 3), ()]


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]


def _clone(params):
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def _grads(step: int, params, sparse_every: int = 0):
    """The same gradients for both optimizers; with ``sparse_every`` some tensors have none."""
    g = torch.Generator().manual_seed(1000 + step)
    out = []
    for i, p in enumerate(params):
        grad = torch.randn(p.shape, generator=g) * 10 ** (i - 2)  # several magnitudes
        out.append(None if sparse_every and (step + i) % sparse_every == 0 else grad)
    return out


def _run(opt_a, opt_b, pa, pb, steps: int, start: int = 0, sparse_every: int = 0) -> None:
    for k in range(start, start + steps):
        for ps, opt in ((pa, opt_a), (pb, opt_b)):
            opt.zero_grad(set_to_none=True)
            for p, grad in zip(ps, _grads(k, ps, sparse_every)):
                p.grad = None if grad is None else grad.clone()
            opt.step()


def _assert_same(pa, pb, opt_a, opt_b) -> None:
    for a, b in zip(pa, pb):
        assert torch.equal(a, b), (a - b).abs().max()
        sa, sb = opt_a.state.get(a, {}), opt_b.state.get(b, {})
        assert sa.keys() == sb.keys()
        for key in sa:
            assert sa[key].dtype == sb[key].dtype and sa[key].shape == sb[key].shape, key
            assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("lr", [1e-3, 0.05])
@pytest.mark.parametrize("sparse_every", [0, 3])
def test_adam_matches_torch_bitwise(lr, sparse_every):
    pa = _params(0)
    pb = _clone(pa)
    ours, theirs = Adam(pa, lr=lr), torch.optim.Adam(pb, lr=lr)
    _run(ours, theirs, pa, pb, 60, sparse_every=sparse_every)
    _assert_same(pa, pb, ours, theirs)
    assert not torch.equal(pa[0], _params(0)[0])  # the steps did move the parameters


@pytest.mark.parametrize("lr,momentum", [(0.01, 0.0), (0.05, 0.9), (0.1, 0.5)])
@pytest.mark.parametrize("sparse_every", [0, 4])
def test_sgd_matches_torch_bitwise(lr, momentum, sparse_every):
    pa = _params(1)
    pb = _clone(pa)
    ours, theirs = SGD(pa, lr=lr, momentum=momentum), torch.optim.SGD(pb, lr=lr, momentum=momentum)
    _run(ours, theirs, pa, pb, 60, sparse_every=sparse_every)
    _assert_same(pa, pb, ours, theirs)
    assert bool(ours.state) == (momentum > 0)  # plain SGD keeps nothing, like torch's


def _through_file(state: dict) -> dict:
    """What a checkpoint gives back (torch's load_state_dict would otherwise alias live state)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _make(cls, params):
    if cls in (Adam, torch.optim.Adam):
        return cls(params, lr=0.01)
    return cls(params, lr=0.05, momentum=0.9)


@pytest.mark.parametrize("ours_cls,torch_cls", [(Adam, torch.optim.Adam), (SGD, torch.optim.SGD)])
def test_state_dicts_load_both_ways_and_continue_bitwise(ours_cls, torch_cls):
    pa = _params(2)
    pb = _clone(pa)
    a, b = _make(ours_cls, pa), _make(torch_cls, pb)
    _run(a, b, pa, pb, 20, sparse_every=3)
    # Swap: each side continues from the other's saved state in a fresh optimizer.
    pa2, pb2 = _clone(pa), _clone(pb)
    a2, b2 = _make(ours_cls, pa2), _make(torch_cls, pb2)
    a2.load_state_dict(_through_file(b.state_dict()))
    b2.load_state_dict(_through_file(a.state_dict()))
    _assert_same(pa2, pb2, a2, b2)
    _run(a2, b2, pa2, pb2, 20, start=20, sparse_every=3)
    _run(a, b, pa, pb, 20, start=20, sparse_every=3)
    _assert_same(pa2, pb2, a2, b2)
    _assert_same(pa, pa2, a, a2)  # a save/load round trip changes nothing
    assert a.state_dict()["param_groups"][0].keys() == b.state_dict()["param_groups"][0].keys()


def test_load_state_dict_refuses_what_it_cannot_continue():
    ps = _params(3)
    saved = torch.optim.Adam(_clone(ps), lr=0.01, amsgrad=True).state_dict()
    with pytest.raises(ValueError, match="amsgrad"):
        Adam(ps).load_state_dict(saved)
    with pytest.raises(ValueError, match="different set of parameters"):
        Adam(ps[:2]).load_state_dict(Adam(ps).state_dict())
    donor = _clone(ps)
    opt = Adam(donor)
    for p in donor:
        p.grad = torch.ones_like(p)
    opt.step()
    wrong = [torch.nn.Parameter(torch.zeros(9)) for _ in ps]
    with pytest.raises(ValueError, match="shape"):
        Adam(wrong).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([])


def test_zero_grad_clears_or_zeroes():
    p = torch.nn.Parameter(torch.ones(3))
    opt = SGD([p], lr=0.1)
    p.grad = torch.full((3,), 2.0)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(3))
    opt.zero_grad()
    assert p.grad is None


def test_training_never_imports_the_compiler():
    # A fresh interpreter: a whole (tiny) edgelll run with each optimizer, and steps of ours.
    code = textwrap.dedent("""
        import sys
        import torch
        from edgelll import learn
        from edgelll.config import resolve
        from edgelll.optim import SGD, Adam
        for opt in ("adam", "sgd"):
            learn(resolve({"data": "digits", "strategies": ["naive"], "steps": 3,
                           "optimizer": opt, "momentum": 0.9, "tasks": 2}))
        p = torch.nn.Parameter(torch.ones(4))
        for opt in (Adam([p]), SGD([p], lr=0.1, momentum=0.9)):
            for _ in range(3):
                p.grad = torch.ones(4)
                opt.step()
        print("dynamo" if "torch._dynamo" in sys.modules else "clean")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "clean"
