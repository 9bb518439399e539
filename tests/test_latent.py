"""Quantised latent replay: exact byte layout, bounded error, frozen lower layers, budget."""

import pytest
import torch

from edgelll import ConfigError, learn, resolve
from edgelll.buffer import ExemplarBuffer
from edgelll.learner import Learner
from edgelll.quant import dequantize, quantize, row_bytes

from _resume import assert_resume_is_exact


@pytest.mark.parametrize("bits", [8, 4])
def test_quantisation_error_is_within_half_a_step(bits):
    torch.manual_seed(0)
    h = torch.randn(7, 3, 5) * torch.arange(1, 8).view(7, 1, 1)  # a different range per sample
    rows = quantize(h, bits)
    assert rows.dtype == torch.uint8 and rows.shape == (7, row_bytes(15, bits))
    back = dequantize(rows, (3, 5), bits)
    step = (h.reshape(7, -1).amax(1) - h.reshape(7, -1).amin(1)) / ((1 << bits) - 1)
    err = (back - h).reshape(7, -1).abs().amax(1)
    # Half a quantisation step, plus float16 rounding of each sample's range ends.
    assert torch.all(err <= 0.5 * step + 2e-3 * h.reshape(7, -1).abs().amax(1))


def test_four_bit_rows_take_half_the_bytes():
    assert row_bytes(196, 4) == 98 + 4 and row_bytes(196, 8) == 196 + 4
    assert row_bytes(5, 4) == 3 + 4  # an odd count rounds up to whole bytes


def _cfg(**kw):
    base = {"strategies": ["latent"], "epochs": 3}
    base.update(kw)
    return resolve(base)


def test_latent_replay_remembers_and_freezes_below():
    naive = learn(_cfg(strategies=["naive"]))
    cfg = _cfg(model_args={"hidden": (64, 64)}, latent={"layer": 3, "size": 300})
    learner = Learner(cfg)
    first = learner.stream.experiences[0]
    learner.learn_experience(first)
    below = [p.detach().clone() for p in learner.model.backbone[:3].parameters()]
    for exp in learner.stream.experiences[1:]:
        learner.learn_experience(exp)
    after = list(learner.model.backbone[:3].parameters())
    assert all(torch.equal(a, b) and not a.requires_grad for a, b in zip(after, below))
    latent = learner.strategies[0]
    assert latent.shape == (64,) and latent.buffer.x.shape == (300, 64 + 4)
    # Input-layer latents at 4 bits: a quarter of the bytes of uint8 images' float copies.
    compact = learn(_cfg(latent={"layer": 0, "bits": 4, "size": 300}))
    assert compact.metrics["acc"] > naive.metrics["acc"] + 0.5


def test_budget_sizes_the_buffer_from_the_latent_row():
    limit = 2 * 2**20
    result = learn(_cfg(memory=limit, epochs=1, latent={"bits": 4}, model_args={"hidden": (32,)}))
    planned = result.memory["planned"]
    per = row_bytes(64, 4) + ExemplarBuffer.LABEL_BYTES  # 8x8 digits at 4 bits + scale + labels
    strat = result.strategies[0]
    assert planned["strategy:latent"] == strat.capacity * per == strat.memory_bytes()
    assert planned["total"] <= limit < planned["total"] + per


def test_resume_is_exact(tmp_path):
    assert_resume_is_exact(_cfg(epochs=2, latent={"bits": 4, "size": 100}), tmp_path)


@pytest.mark.parametrize("bad", [{"bits": 3}, {"layer": -1}, {"size": 0}, {"weight": -1.0}])
def test_bad_params(bad):
    with pytest.raises(ConfigError):
        _cfg(latent=bad)


def test_layer_beyond_the_backbone_is_refused():
    with pytest.raises(ConfigError, match="latent.layer"):
        learn(_cfg(latent={"layer": 40}, epochs=1))
