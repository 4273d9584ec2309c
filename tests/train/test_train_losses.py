"""Losses exactly as the official LPIPSWithDiscriminator3D (reference §9), checked against hand computations."""

from __future__ import annotations

import torch
from torch import nn

from wfvae_cli.metrics import LPIPSMetric
from wfvae_cli.model import WFVAE
from wfvae_cli.train.losses import (
    NLayerDiscriminator3D,
    adaptive_weight,
    discriminator_loss,
    generator_loss,
    wavelet_loss,
)

from ..conftest import tiny_config


def _forward(seed: int = 0):
    torch.manual_seed(seed)
    model = WFVAE(tiny_config()).train()
    video = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    recon, posterior, coeffs = model(video, sample_posterior=True, generator=torch.Generator().manual_seed(1))
    return model, video, recon, posterior, coeffs


def test_discriminator_matches_the_reference_table():
    d = NLayerDiscriminator3D()
    convs = [m for m in d.modules() if isinstance(m, nn.Conv3d)]
    channels = [(3, 64), (64, 128), (128, 256), (256, 512), (512, 512), (512, 1)]
    assert [(c.in_channels, c.out_channels) for c in convs] == channels
    assert [c.stride for c in convs] == [(2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2), (1, 1, 1), (1, 1, 1)]
    assert all(c.kernel_size == (3, 3, 3) and c.padding == (1, 1, 1) for c in convs)
    assert [c.bias is not None for c in convs] == [True, False, False, False, False, True]
    bns = [m for m in d.modules() if isinstance(m, nn.BatchNorm3d)]
    assert len(bns) == 4 and all(bn.bias.eq(0).all() for bn in bns)
    assert abs(float(torch.cat([bn.weight.detach() for bn in bns]).mean()) - 1.0) < 0.01
    w = torch.cat([c.weight.detach().flatten() for c in convs])
    assert abs(float(w.std()) - 0.02) < 0.001 and abs(float(w.mean())) < 0.001
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.3 for m in d.modules()) == 4
    logits = NLayerDiscriminator3D(ndf=8)(torch.zeros(1, 3, 9, 32, 32))
    assert logits.shape == (1, 1, 3, 2, 2)


def test_hinge_and_vanilla():
    real, fake = torch.tensor([0.5, 2.0, -1.0]), torch.tensor([-2.0, 0.0, 0.5])
    hinge = 0.5 * ((1 - real).clamp(min=0).mean() + (1 + fake).clamp(min=0).mean())
    torch.testing.assert_close(discriminator_loss(real, fake, "hinge"), hinge)
    vanilla = 0.5 * (torch.log1p(torch.exp(-real)).mean() + torch.log1p(torch.exp(fake)).mean())
    torch.testing.assert_close(discriminator_loss(real, fake, "vanilla"), vanilla)


def test_wavelet_loss_is_the_sum_over_elements_divided_by_batch():
    _, _, _, _, (e1, d1, e2, d2) = _forward()
    assert e1.shape[1] == 12 and e2.shape[1] == 24 and d1.shape == e1.shape and d2.shape == e2.shape
    expected = sum(float((a - b).detach().abs().sum()) for a, b in ((e1, d1), (e2, d2))) / 2
    assert abs(float(wavelet_loss(e1, d1, e2, d2).detach()) - expected) < 1e-3 * expected


def test_generator_loss_official_scaling_without_gan():
    _, video, recon, posterior, coeffs = _forward()
    b, t = 2, 9
    lpips = LPIPSMetric.random_trunk().net
    lpips.spatial = False
    terms = generator_loss(video, recon, posterior, coeffs, perceptual=lpips, perceptual_weight=1.0,
                           kl_weight=1e-6, wavelet_weight=0.1)
    frames = lambda v: v.transpose(1, 2).flatten(0, 1)  # noqa: E731
    p = lpips(frames(video), frames(recon)).reshape(b, t)
    # the per-frame LPIPS is broadcast over C·H·W before the sum: weighted_nll = Σ nll / (B·T)
    rec = ((recon - video).abs().sum() + p.sum() * 3 * 32 * 32) / (b * t)
    kl = posterior.kl().sum() / b
    wl = wavelet_loss(*coeffs)
    torch.testing.assert_close(terms.rec, rec, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(terms.kl, kl)
    torch.testing.assert_close(terms.total, rec + 1e-6 * kl + 0.1 * wl, rtol=1e-5, atol=1e-3)
    assert float(terms.gan) == 0 and float(terms.gan_weight) == 0  # before disc_start
    l2 = generator_loss(video, recon, posterior, coeffs, reconstruction="l2", wavelet_weight=0.0)
    torch.testing.assert_close(l2.rec, (recon - video).square().sum() / (b * t))


def test_adaptive_weight_is_the_gradient_norm_ratio_at_the_last_layer():
    model, video, recon, posterior, coeffs = _forward()
    disc = NLayerDiscriminator3D(ndf=8, n_layers=2).eval()  # eval: no dropout, so two calls agree
    last = model.get_last_layer()
    terms = generator_loss(video, recon, posterior, coeffs, wavelet_weight=0.1, discriminator=disc,
                           disc_weight=0.5, last_layer=last)
    rec = (recon - video).abs().sum() / (2 * 9)
    g = -disc(recon).mean()
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
    g_adv = torch.autograd.grad(g, last, retain_graph=True)[0]
    expected = 0.5 * (g_rec.norm() / (g_adv.norm() + 1e-6)).clamp(0, 1e6)
    torch.testing.assert_close(terms.gan_weight, expected, rtol=1e-4, atol=0)
    torch.testing.assert_close(terms.gan, g)
    assert not terms.gan_weight.requires_grad
    kl = posterior.kl().sum() / 2
    total = rec + 1e-6 * kl + 0.1 * wavelet_loss(*coeffs) + expected * g
    torch.testing.assert_close(terms.total, total, rtol=1e-4, atol=1e-2)
    # the weight is clamped to [0, 1e6]
    w = adaptive_weight(rec, 0.0 * g + 1e-12 * recon.sum(), last, 1.0)
    assert float(w) <= 1e6
