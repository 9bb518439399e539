"""EWC against its definition (Kirkpatrick et al. 2017) on tiny networks."""

import pytest
import torch
import torch.nn.functional as F

from edgelll.models import create_model
from edgelll.strategies.ewc import (_linear_fisher, _vmap_fisher, empirical_fisher,
                                    fold_quadratics, quadratic_penalty)


def _loop_fisher(model, x, y, t=None):
    """The empirical Fisher by its definition: one backward pass per sample."""
    out = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in range(x.shape[0]):
        model.zero_grad()
        logits = model(x[i:i + 1], None if t is None else t[i:i + 1])
        F.cross_entropy(logits, y[i:i + 1]).backward()
        for k, p in model.named_parameters():
            out[k] += p.grad.detach() ** 2
    return {k: v / x.shape[0] for k, v in out.items()}


def _pen(model, omega, anchor) -> float:
    return quadratic_penalty(model, omega, anchor).detach().item()


@pytest.mark.parametrize("path", [_linear_fisher, _vmap_fisher])
def test_fisher_equals_per_sample_loop(path):
    torch.manual_seed(0)
    model = create_model("mlp", (1, 3, 3), 4, hidden=(7, 5))
    x, y = torch.randn(23, 1, 3, 3), torch.randint(0, 4, (23,))
    fast = path(model, x, y, None, 5)  # chunk does not divide 23
    slow = _loop_fisher(model, x, y)
    assert fast.keys() == slow.keys()
    for k in fast:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-5, atol=1e-8)
    assert all(float(v.sum()) > 0 for v in fast.values())


def test_fisher_of_a_convnet_takes_the_general_path_and_is_exact():
    torch.manual_seed(5)
    model = create_model("convnet", (1, 4, 4), 3, channels=(2,), hidden=6)
    x, y = torch.randn(9, 1, 4, 4), torch.randint(0, 3, (9,))
    assert _linear_fisher(model, x, y, None, 4) is None  # conv weights are shared across pixels
    fast = empirical_fisher(model, x, y, None, chunk=4)
    for k, v in _loop_fisher(model, x, y).items():
        torch.testing.assert_close(fast[k], v, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("path", [_linear_fisher, _vmap_fisher])
def test_fisher_multi_head_uses_each_samples_head(path):
    torch.manual_seed(1)
    model = create_model("mlp", (1, 2, 2), 2, hidden=(6,), multi_head=True)
    model.head.add_head(3)
    x, t = torch.randn(10, 1, 2, 2), torch.tensor([0, 1] * 5)
    y = torch.where(t == 0, torch.randint(0, 2, (10,)), torch.randint(0, 3, (10,)))
    fast = path(model, x, y, t, 4)
    slow = _loop_fisher(model, x, y, t)
    for k in fast:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-5, atol=1e-8)


def test_penalty_is_zero_at_anchor_and_exactly_quadratic():
    torch.manual_seed(2)
    model = create_model("mlp", (1, 2, 2), 3, hidden=(4,))
    omega = {k: torch.rand_like(p) for k, p in model.named_parameters()}
    anchor = {k: p.detach().clone() for k, p in model.named_parameters()}
    assert _pen(model, omega, anchor) == 0.0
    delta = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    expected = sum(float((omega[k] * delta[k] ** 2).sum()) for k in omega)
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.add_(delta[k])
    p1 = _pen(model, omega, anchor)
    with torch.no_grad():  # twice the displacement: four times the penalty
        for k, p in model.named_parameters():
            p.add_(delta[k])
    p2 = _pen(model, omega, anchor)
    assert abs(p1 - expected) < 1e-4 * expected
    assert abs(p2 - 4 * p1) < 1e-4 * p2


def test_penalty_ignores_rows_added_after_the_anchor():
    torch.manual_seed(3)
    model = create_model("mlp", (1, 2, 2), 2, hidden=(4,))
    omega = {k: torch.ones_like(p) for k, p in model.named_parameters()}
    anchor = {k: p.detach().clone() for k, p in model.named_parameters()}
    model.head.grow(5)  # three new classes: their weights are free
    with torch.no_grad():
        model.head.linear.weight[2:] += 10.0
        model.head.linear.bias[2:] -= 3.0
    assert _pen(model, omega, anchor) == 0.0
    with torch.no_grad():
        model.head.linear.weight[0, 0] += 0.5
    assert abs(_pen(model, omega, anchor) - 0.25) < 1e-6


def test_folded_penalty_equals_the_papers_sum_of_terms_in_value_and_gradient():
    """EWC keeps one quadratic per past task; the fold must equal their sum for every theta,
    including when the head grew between tasks."""
    torch.manual_seed(4)
    model = create_model("mlp", (1, 2, 2), 2, hidden=(5,))
    terms, omega, anchor, offset = [], {}, {}, 0.0
    for task in range(3):
        if task:
            model.head.grow(2 + 2 * task)
        w = {k: torch.rand_like(p) * (k != "head.linear.bias") for k, p in model.named_parameters()}
        a = {k: torch.randn_like(p) for k, p in model.named_parameters()}
        terms.append((w, a))
        omega, anchor, offset = fold_quadratics(omega, anchor, offset, w, a)
    for trial in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
        model.zero_grad()
        reference = sum(quadratic_penalty(model, w, a) for w, a in terms)
        reference.backward()
        ref_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        folded = quadratic_penalty(model, omega, anchor) + offset
        folded.backward()
        assert abs(folded.item() - reference.item()) < 1e-4 * max(1.0, reference.item())
        for g_ref, p in zip(ref_grads, model.parameters()):
            torch.testing.assert_close(p.grad, g_ref, rtol=1e-4, atol=1e-5)
