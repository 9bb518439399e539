"""Deep generative replay (Shin et al. 2017): the VAE, samples labelled by the frozen previous
solver, the distillation rows, resume and memory."""

import pytest
import torch
import torch.nn.functional as F

from edgelll import ConfigError, resolve
from edgelll.batch import Batch
from edgelll.learner import Learner
from edgelll.models.vae import VAE, vae_sizes
from edgelll.strategies import strategy_params

from _resume import assert_resume_is_exact

TINY = {"hidden": (32,)}
GEN = {"hidden": (32,), "latent": 4, "vae_steps": 1}  # small and quick, not the defaults


def _cfg(**kw):
    base = {"strategies": ["generative"], "generative": GEN, "epochs": 2, "tasks": 3,
            "model_args": TINY}
    base.update(kw)
    return resolve(base)


def _after_first(cfg):
    learner = Learner(cfg)
    learner.learn_experience(learner.stream.experiences[0])
    return learner, learner.strategies[0]


def test_vae_size_formula_and_it_learns_the_data():
    vae = VAE((1, 8, 8), hidden=(48, 24), latent=5)
    enc, dec, n = vae_sizes(64, (48, 24), 5)
    assert enc == sum(p.numel() for p in vae.encoder.parameters())
    assert dec == sum(p.numel() for p in vae.decoder.parameters())
    assert n == len(list(vae.parameters()))
    learner = Learner(_cfg())
    x01 = learner.stream.experiences[0].train_data().x.float() / 16
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    start = vae.loss(x01, gen).item()
    for _ in range(60):
        opt.zero_grad()
        vae.loss(x01, gen).backward()
        opt.step()
    assert vae.loss(x01, gen).item() < 0.8 * start
    s = vae.sample(7, gen)
    assert s.shape == (7, 1, 8, 8) and 0 <= s.min() and s.max() <= 1


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_replayed_samples_are_labelled_by_the_frozen_previous_solver(scenario):
    learner, s = _after_first(_cfg(scenario=scenario))
    learner.learn_experience(learner.stream.experiences[1])  # two past tasks to draw from
    ctx, own = learner.ctx, learner.stream.experiences[2].train_data()
    batch = Batch(own.x[:8], own.y[:8], own.t[:8])
    state = ctx.generator.get_state()
    mixed = s.mix_batch(ctx, batch)
    fake = Batch(mixed.x[8:], mixed.y[8:], mixed.t[8:])
    assert len(fake) == 8 and s.replayed[:2] == (8, 16)
    assert torch.equal(mixed.x[:8], batch.x)
    use_t = ctx.stream.uses_task_ids
    old = s.old_solver(fake.x, fake.t)
    assert torch.equal(fake.y, old.argmax(1))
    assert set(fake.t.tolist()) <= {0, 1}
    if use_t:  # each row labelled by its own task's head: a local label of that task
        sizes = torch.tensor([e.n_local_classes for e in learner.stream.experiences])  # 4, 3, 3
        assert bool((fake.y < sizes[fake.t]).all())
        many, _ = s.generate(ctx, 500, own.x.dtype)  # task 0's fourth local class is reachable
        assert bool((many.y < sizes[many.t]).all()) and bool((many.y == 3).any())
    # The live model changes beyond recognition: it would now call everything class 1 ...
    with torch.no_grad():
        for p in ctx.model.parameters():
            p.zero_()
        for layer in (ctx.model.head.heads if use_t else [ctx.model.head.linear]):
            layer.bias[1] = 9.0
    live = ctx.model(fake.x, fake.t).argmax(1)
    assert bool((live == 1).all()) and not torch.equal(live, fake.y)
    # ... yet the same draws get the same samples and the same labels as before.
    ctx.generator.set_state(state)
    again = s.mix_batch(ctx, batch)
    assert torch.equal(again.x, mixed.x) and torch.equal(again.y, mixed.y)


def test_generated_samples_are_in_stored_units_and_quantised():
    learner, s = _after_first(_cfg())
    assert (s.lo, s.hi) == (0.0, 16.0)  # the embedded digits are 0..16, not 0..255
    fake, _ = s.generate(learner.ctx, 500, torch.uint8)
    assert fake.x.dtype == torch.uint8 and int(fake.x.max()) <= 16
    assert int(fake.x.max()) > 8  # the range is used, not squeezed into the bottom
    as_float, _ = s.generate(learner.ctx, 5, torch.float32)
    assert as_float.x.dtype == torch.float32 and float(as_float.x.max()) <= 16


def test_distillation_acts_on_the_replayed_rows_only():
    learner, s = _after_first(_cfg(generative={**GEN, "distill": True, "T": 3.0}))
    ctx = learner.ctx
    own = learner.stream.experiences[1].train_data()
    ctx.model.adapt(learner.stream.experiences[1])  # grown head, old units untouched
    mixed = s.mix_batch(ctx, Batch(own.x[:10], own.y[:10], own.t[:10]))
    logits = ctx.model(mixed.x)
    y = mixed.y.long()

    assert s.replaces_loss()

    def total(z):  # what the learner minimises in place of its cross-entropy
        return s.task_loss(ctx, mixed, z)

    def expected(z):  # r = 1/2: hard labels on the new rows, soft targets on the replayed ones
        old = s.replayed[2]
        assert old.shape[1] < z.shape[1]  # the new classes' units: target probability 0
        p_t = F.softmax(old / 3.0, 1)
        log_p_s = F.log_softmax(z[10:] / 3.0, 1)
        kd = 9.0 * (p_t * (p_t.log() - log_p_s[:, : old.shape[1]])).sum(1).mean()
        return 0.5 * F.cross_entropy(z[:10], y[:10]) + 0.5 * kd

    assert len(mixed) == 20
    for z in (logits, logits + torch.randn_like(logits)):
        z = z.detach().requires_grad_()
        got, want = total(z), expected(z)
        torch.testing.assert_close(got, want)
        g_got, = torch.autograd.grad(got, z)
        g_want, = torch.autograd.grad(expected(z), z)
        torch.testing.assert_close(g_got, g_want)
    # Raising a replayed row's new-class unit is penalised (the soft target there is 0).
    def soft(z):
        return total(z).item() - 0.5 * F.cross_entropy(z[:10], y[:10]).item()

    shifted = logits.detach().clone()
    shifted[10:, -1] += 3.0
    assert soft(shifted) > soft(logits.detach()) + 1e-3


@pytest.mark.parametrize("kw", [{"generative": {**GEN, "distill": True}},
                                {"scenario": "task", "generative": {**GEN, "vae_steps": 2}}])
def test_resume_equals_uninterrupted_run(tmp_path, kw):
    full, resumed = assert_resume_is_exact(_cfg(**kw), tmp_path)
    sa, sb = full.strategies[0], resumed.strategies[0]
    for a, b in zip(sa.tensors(), sb.tensors()):
        assert torch.equal(a, b)


def test_memory_counts_the_vae_its_adam_and_both_frozen_copies():
    learner = Learner(_cfg())
    result = learner.run()
    s = result.strategies[0]
    vae = sum(p.nbytes for p in s.vae.parameters())
    dec = sum(p.nbytes for p in s.vae.decoder.parameters())
    # the frozen solver: a whole copy of the model, normalisation constants included
    solver = sum(t.nbytes for t in [*result.model.parameters(), *result.model.buffers()])
    n_tensors = len(list(s.vae.parameters()))
    assert s.memory_bytes() == sum(t.nbytes for t in s.tensors())
    assert s.memory_bytes() == 3 * vae + 4 * n_tensors + dec + solver
    planned = learner.planned["strategy:generative"]
    assert s.memory_bytes() == planned == s.planned_bytes(learner.plan)


def test_bad_settings_are_refused():
    for bad in ({"T": 0.0}, {"lr": -1.0}, {"latent": 0}, {"hidden": (0,)}, {"batch_size": 0},
                {"vae_steps": 0}):
        with pytest.raises(ConfigError):
            strategy_params("generative", bad)
