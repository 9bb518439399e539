"""A small fully connected variational autoencoder (Kingma & Welling 2014, arXiv:1312.6114): the
generator of deep generative replay (Shin et al. 2017, arXiv:1705.08690).

It works in [0, 1] pixel space, not in the learner's normalised input space: callers scale stored
samples by the data's range, x01 = (x - lo) / (hi - lo), and the decoder ends in a sigmoid
(Bernoulli means), so generated samples map back to the stored units as lo + x01 * (hi - lo).
The loss is the negative evidence lower bound per sample, averaged over the batch:

    L(x) = - sum_i [ x_i log x^_i + (1 - x_i) log(1 - x^_i) ]            (reconstruction)
           + 1/2 sum_j ( mu_j^2 + sigma_j^2 - log sigma_j^2 - 1 )        (KL(q(z|x) || N(0, I)))

with z = mu + sigma * eps. The noise eps comes from a ``torch.Generator`` the caller passes, so a
run replays exactly. Not in the model registry: it is a generator, not a classifier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _layers(widths: list[int], last_act: bool) -> list[nn.Module]:
    out: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        out.append(nn.Linear(a, b))
        if last_act or i < len(widths) - 2:
            out.append(nn.ReLU())
    return out


def make_decoder(input_shape: tuple[int, ...], hidden: tuple[int, ...],
                 latent: int) -> nn.Sequential:
    """latent -> reversed hidden widths -> pixels, returning logits of the Bernoulli means."""
    return nn.Sequential(*_layers([latent, *reversed(hidden), math.prod(input_shape)], False))


def vae_sizes(n_inputs: int, hidden: tuple[int, ...], latent: int) -> tuple[int, int, int]:
    """(encoder parameters, decoder parameters, parameter tensors) of :class:`VAE`, by formula."""
    enc_w = [n_inputs, *hidden, 2 * latent]
    dec_w = [latent, *reversed(hidden), n_inputs]
    count = lambda w: sum(a * b + b for a, b in zip(w[:-1], w[1:]))  # noqa: E731
    return count(enc_w), count(dec_w), 2 * (len(enc_w) - 1 + len(dec_w) - 1)


class VAE(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], hidden: tuple[int, ...] = (256,),
                 latent: int = 32) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.hidden, self.latent = tuple(int(h) for h in hidden), int(latent)
        width = math.prod(self.input_shape)
        self.encoder = nn.Sequential(nn.Flatten(), *_layers([width, *self.hidden, 2 * self.latent],
                                                            False))
        self.decoder = make_decoder(self.input_shape, self.hidden, self.latent)

    def encode(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x01).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Samples in [0, 1], shaped like the inputs."""
        return torch.sigmoid(self.decoder(z)).view(z.shape[0], *self.input_shape)

    def loss(self, x01: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The negative ELBO, summed over pixels and latents, averaged over the batch."""
        mu, logvar = self.encode(x01)
        eps = torch.randn(mu.shape, generator=generator, device=generator.device).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        rec = F.binary_cross_entropy_with_logits(self.decoder(z), x01.flatten(1), reduction="sum")
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum()
        return (rec + kl) / x01.shape[0]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        ref = next(self.parameters())
        z = torch.randn((n, self.latent), generator=generator, device=generator.device)
        return self.decode(z.to(ref.device, ref.dtype))
