"""WF-VAE training losses, as the official ``LPIPSWithDiscriminator3D`` computes them.

Generator objective (one micro-batch of B clips of T frames; sums run over every element)::

    rec          = |x - x̂|  (or (x - x̂)²)  +  w_p · LPIPS_frame(x, x̂)      per element, LPIPS broadcast
    L_rec        = Σ rec / (B·T)                                            "weighted_nll": sum over C,H,W,
                                                                            mean over frames
    L_KL         = Σ KL(q(z|x) ‖ N(0, I)) / B
    L_WL         = Σ|enc_l1 - dec_l1| / B  +  Σ|enc_l2 - dec_l2| / B       the paper's Eq. 6 (WL loss)
    L_adv        = -mean(D(x̂))
    λ            = disc_weight · clamp(‖∇_W L_rec‖ / (‖∇_W L_adv‖ + 1e-6), 0, 1e6)   W = decoder.conv_out.weight
    L_G          = L_rec + kl_weight·L_KL + wavelet_weight·L_WL + λ·L_adv   (λ·L_adv only from disc_start)

Why the odd scaling matters: because L_rec is a *sum* over C·H·W per frame, the LPIPS term is effectively
multiplied by 3·H·W and the KL weight 1e-6 is tiny only relative to that sum. Using means instead would
change the balance of every term (and the meaning of every weight in the paper's recipes), so the official
sums are kept. The official ``nll = rec / exp(logvar) + logvar`` has a frozen ``logvar = 0``; it is the
identity and is left out.

Discriminator objective: ``hinge = ½·(mean(relu(1 - D(x))) + mean(relu(1 + D(x̂))))`` on detached videos
(``vanilla`` uses softplus). The perceptual network here is LPIPS-AlexNet from the ``lpips`` package (the
evaluation metric), not the taming VGG-LPIPS of the official training; see docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wfvae_cli.model.distribution import DiagonalGaussian

__all__ = [
    "GeneratorLossTerms",
    "NLayerDiscriminator3D",
    "adaptive_weight",
    "discriminator_loss",
    "generator_loss",
    "wavelet_loss",
]


# ================================================================================================ D
class NLayerDiscriminator3D(nn.Module):
    """The official 3D PatchGAN (``NLayerDiscriminator3D(input_nc=3, ndf=64, n_layers=4)``).

    Layer ``n`` (1-based) of the ``n_layers`` strided ones halves time only for ``n ≤ 2`` (the first two)
    and space always; then one stride-1 block and a 1-channel logit conv. Every conv is 3×3×3 with padding
    1; the inner convs have no bias (BatchNorm follows). Init is the official ``weights_init``: conv weights
    N(0, 0.02), BatchNorm weight N(1, 0.02) and bias 0. Dropout 0.3 follows every inner LeakyReLU.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 4, dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv3d(input_nc, ndf, 3, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            stride = (2, 2, 2) if n == 1 else (1, 2, 2)
            layers += [
                nn.Conv3d(ndf * prev, ndf * mult, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm3d(ndf * mult),
                nn.LeakyReLU(0.2, True),
                nn.Dropout(dropout),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv3d(ndf * prev, ndf * mult, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm3d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Dropout(dropout),
            nn.Conv3d(ndf * mult, 1, 3, stride=1, padding=1),
        ]
        self.main = nn.Sequential(*layers)
        self.apply(_weights_init)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Patch logits ``(B, 1, t, h, w)`` for videos ``(B, 3, T, H, W)`` in [-1, 1]."""
        return self.main(video)


def _weights_init(m: nn.Module) -> None:
    if isinstance(m, nn.Conv3d):
        nn.init.normal_(m.weight, 0.0, 0.02)  # biases keep PyTorch's default, as in the official code
    elif isinstance(m, nn.BatchNorm3d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """``hinge``: ½(E[relu(1 − D(x))] + E[relu(1 + D(x̂))]); ``vanilla``: the softplus version."""
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
    if kind == "vanilla":
        return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())
    raise ValueError(f"unknown discriminator loss {kind!r}")


# ================================================================================================ G
def wavelet_loss(
    enc_l1: torch.Tensor, dec_l1: torch.Tensor, enc_l2: torch.Tensor, dec_l2: torch.Tensor
) -> torch.Tensor:
    """WL loss (paper Eq. 6, official scaling): ``Σ|enc_l1 − dec_l1| / B + Σ|enc_l2 − dec_l2| / B``.

    ``enc_l*`` are the encoder's wavelet coefficients of the input (12-channel 2D Haar of the LLL band,
    24-channel 3D Haar of its LL band); ``dec_l*`` the decoder's energy-flow outputs at the same levels
    (``dec_l1`` already holds IWT(dec_l2) in its LL band, as the decoder returns it).
    """
    b = enc_l1.shape[0]
    return ((enc_l1 - dec_l1).abs().sum() + (enc_l2 - dec_l2).abs().sum()) / b


def adaptive_weight(
    rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, disc_weight: float
) -> torch.Tensor:
    """Eq. 7: ``disc_weight · clamp(‖∇_W L_rec‖ / (‖∇_W L_adv‖ + 1e-6), 0, 1e6)``, detached.

    Why: it scales the adversarial gradient at the decoder's last layer to the reconstruction gradient's
    size, so the GAN neither vanishes nor dominates whatever the loss magnitudes are.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.linalg.vector_norm(rec_grad.float()) / (torch.linalg.vector_norm(g_grad.float()) + 1e-6)
    return weight.clamp(0.0, 1e6).detach() * disc_weight


@dataclass
class GeneratorLossTerms:
    """Everything the generator step computes; ``total`` is what is back-propagated."""

    total: torch.Tensor
    rec: torch.Tensor
    perceptual: torch.Tensor
    kl: torch.Tensor
    wavelet: torch.Tensor
    gan: torch.Tensor
    gan_weight: torch.Tensor

    def scalars(self) -> dict[str, float]:
        return {
            "loss": float(self.total.detach()),
            "rec": float(self.rec.detach()),
            "lpips": float(self.perceptual.detach()),
            "kl": float(self.kl.detach()),
            "wl": float(self.wavelet.detach()),
            "g_adv": float(self.gan.detach()),
            "d_weight": float(self.gan_weight.detach()),
        }


def generator_loss(
    video: torch.Tensor,
    recon: torch.Tensor,
    posterior: DiagonalGaussian,
    coeffs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    reconstruction: str = "l1",
    perceptual: nn.Module | None = None,
    perceptual_weight: float = 0.0,
    kl_weight: float = 1e-6,
    wavelet_weight: float = 0.1,
    discriminator: nn.Module | None = None,
    disc_weight: float = 0.0,
    last_layer: torch.Tensor | None = None,
) -> GeneratorLossTerms:
    """The official generator loss (module docstring). ``discriminator=None`` means "before disc_start".

    ``perceptual`` is an ``lpips.LPIPS`` network (frozen, eval mode, ``spatial=False``) taking
    ``(N, 3, H, W)`` frames in [-1, 1]; it runs on all B·T frames at once.
    """
    b, _, t = video.shape[:3]
    video = video.float()
    recon = recon.float()
    diff = recon - video
    rec = diff.abs() if reconstruction == "l1" else diff.square()
    zero = video.new_zeros(())
    p_mean = zero
    if perceptual is not None and perceptual_weight > 0:
        frames_x = video.transpose(1, 2).flatten(0, 1)  # (B·T, 3, H, W)
        frames_y = recon.transpose(1, 2).flatten(0, 1)
        p = perceptual(frames_x, frames_y).reshape(b, t)  # (B·T, 1, 1, 1) → per frame
        p_mean = p.mean()
        rec = rec + perceptual_weight * p[:, None, :, None, None]  # broadcast over C, H, W as officially
    rec_loss = rec.sum() / (b * t)
    # KL in float32: under bf16 autocast the moments are bf16, and a bf16 sum over C·T·H·W loses digits
    kl = DiagonalGaussian(posterior.mean.float(), posterior.logvar.float()).kl().sum() / b
    wl = wavelet_loss(*(c.float() for c in coeffs)) if wavelet_weight > 0 else zero
    total = rec_loss + kl_weight * kl + wavelet_weight * wl
    g_adv, weight = zero, zero
    if discriminator is not None and disc_weight > 0:
        g_adv = -discriminator(recon).float().mean()
        if last_layer is None:
            raise ValueError("the adaptive GAN weight needs the decoder's last layer")
        weight = adaptive_weight(rec_loss, g_adv, last_layer, disc_weight)
        total = total + weight * g_adv
    return GeneratorLossTerms(total, rec_loss, p_mean, kl, wl, g_adv, weight)
