"""WF-VAE (arXiv 2411.17459), read top to bottom like the paper.

Encoder: a 3D Haar transform splits the video into 8 subbands; the backbone (2D resnets, then 3D
resnets) compresses them while two "energy flow" branches carry the low-frequency bands of further
Haar levels straight into the backbone (concatenated as extra channels). Decoder: the mirror image;
flow branches predict the wavelet coefficients of each level and add them into the low band of the
next finer level before the inverse transforms.

Module and parameter names are those of the official ``WFVAEModel`` so released checkpoints load with
``strict=True``. Every forward takes an optional :class:`CausalCache`; with one, the network runs on a
temporal chunk of a stream and its output chunks concatenate to exactly the whole-video result.
"""

from __future__ import annotations

import torch
from torch import nn

from wfvae_cli.model.cache import CausalCache, align
from wfvae_cli.model.config import WFVAEConfig
from wfvae_cli.model.layers import (
    AttnBlock3DFix,
    CausalConv3d,
    Conv2d,
    Downsample,
    ResnetBlock2D,
    ResnetBlock3D,
    Sequential,
    Spatial2xTime2x3DDownsample,
    Spatial2xTime2x3DUpsample,
    Upsample,
    norm_swish_conv,
    normalize,
)
from wfvae_cli.model.wavelets import (
    HaarWaveletTransform2D,
    HaarWaveletTransform3D,
    InverseHaarWaveletTransform2D,
    InverseHaarWaveletTransform3D,
)

_BLOCKS = {
    "Downsample": Downsample,
    "Spatial2xTime2x3DDownsample": Spatial2xTime2x3DDownsample,
    "Upsample": Upsample,
    "Spatial2xTime2x3DUpsample": Spatial2xTime2x3DUpsample,
    "HaarWaveletTransform2D": HaarWaveletTransform2D,
    "HaarWaveletTransform3D": HaarWaveletTransform3D,
    "InverseHaarWaveletTransform2D": InverseHaarWaveletTransform2D,
    "InverseHaarWaveletTransform3D": InverseHaarWaveletTransform3D,
}


def _mid_blocks(cfg: WFVAEConfig, c_in: int, c: int, c_out: int) -> Sequential:
    """ResnetBlock3D -> (attention) -> ResnetBlock3D, the middle of encoder and decoder."""
    blocks: list[nn.Module] = [ResnetBlock3D(c_in, c, cfg.dropout, cfg.norm_type)]
    if cfg.use_attention:
        blocks.append(AttnBlock3DFix(c, cfg.norm_type))
    blocks.append(ResnetBlock3D(c, c_out, cfg.dropout, cfg.norm_type))
    return Sequential(*blocks)


class Encoder(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> moments (B, 2Z, T/4, H/8, W/8), plus the flow coefficients."""

    def __init__(self, cfg: WFVAEConfig) -> None:
        super().__init__()
        c, e, n = cfg.base_channels, cfg.encoder_energy_flow_hidden_size, cfg.encoder_num_resblocks
        # level 1: per-frame 2D backbone on the 8 subbands of the input 3D Haar transform
        self.down1 = Sequential(
            Conv2d(24, c, 3, padding=1),
            *[ResnetBlock2D(c, c, cfg.dropout, cfg.norm_type) for _ in range(n)],
            _BLOCKS[cfg.l1_dowmsample_block](c, c),
        )
        # level 2: 3D backbone on [backbone, level-1 flow]
        self.down2 = Sequential(
            Conv2d(c + e, 2 * c, 3, padding=1),
            *[ResnetBlock3D(2 * c, 2 * c, cfg.dropout, cfg.norm_type) for _ in range(n)],
            _BLOCKS[cfg.l2_dowmsample_block](2 * c, 2 * c),
        )
        # energy flow: Haar coefficients of the low band, projected to E channels
        self.connect_l1 = Conv2d(cfg.l1_flow_channels, e, 3, padding=1)
        self.connect_l2 = Conv2d(24, e, 3, padding=1)
        self.mid = _mid_blocks(cfg, 2 * c + e, 4 * c, 4 * c)
        self.norm_out = normalize(4 * c, cfg.norm_type)
        self.conv_out = CausalConv3d(4 * c, 2 * cfg.latent_dim, 3, padding=1)
        self.wavelet_transform_in = HaarWaveletTransform3D()
        self.wavelet_transform_l1 = _BLOCKS[cfg.l1_downsample_wavelet]()
        self.wavelet_transform_l2 = _BLOCKS[cfg.l2_downsample_wavelet]()

    def forward(
        self, x: torch.Tensor, cache: CausalCache | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        # stage inputs are handed over as lists (see Sequential), so each is freed once its stage has
        # read it; the flow branches are projected only when their stage needs them
        coeffs = [self.wavelet_transform_in(x, cache)]  # (B, 24, T1, H/2, W/2)
        l1_coeffs = self.wavelet_transform_l1(coeffs[0][:, :3], cache)  # Haar of the LLL band
        l2_coeffs = self.wavelet_transform_l2(l1_coeffs[:, :3], cache)  # 3D Haar of its LL band

        h = self.down1(coeffs, cache)
        h, l1 = align((self, "l1"), h, self.connect_l1(l1_coeffs, cache), cache)
        stage_in = [h, l1]  # backbone channels first, flow channels last
        del h, l1
        h = self.down2(stage_in, cache)
        h, l2 = align((self, "l2"), h, self.connect_l2(l2_coeffs, cache), cache)
        stage_in = [h, l2]
        del h, l2
        h = self.mid(stage_in, cache)
        h = norm_swish_conv(self.conv_out, self.norm_out, h, cache)
        return h, (l1_coeffs, l2_coeffs)


class Decoder(nn.Module):
    """Latent (B, Z, t, h, w) -> video (B, 3, 4(t-1)+1, 8h, 8w), plus the predicted flow coefficients."""

    def __init__(self, cfg: WFVAEConfig) -> None:
        super().__init__()
        c, d, n = cfg.base_channels, cfg.decoder_energy_flow_hidden_size, cfg.decoder_num_resblocks
        self.flow_channels = d
        self.conv_in = CausalConv3d(cfg.latent_dim, 4 * c, 3, padding=1)
        self.mid = _mid_blocks(cfg, 4 * c, 4 * c, 4 * c + d)
        # level 2 up: the last D channels of each stage's output feed the flow branch
        self.up2 = Sequential(
            *[ResnetBlock3D(4 * c, 4 * c, cfg.dropout, cfg.norm_type) for _ in range(n)],
            Spatial2xTime2x3DUpsample(4 * c, 4 * c, t_interpolation=cfg.t_interpolation, depth=0),
            ResnetBlock3D(4 * c, 4 * c + d, cfg.dropout, cfg.norm_type),
        )
        self.up1 = Sequential(
            *[
                ResnetBlock3D(4 * c if i == 0 else 2 * c, 2 * c, cfg.dropout, cfg.norm_type)
                for i in range(n)
            ],
            _BLOCKS[cfg.l1_upsample_block](2 * c, 2 * c, t_interpolation=cfg.t_interpolation, depth=1),
            ResnetBlock3D(2 * c, 2 * c, cfg.dropout, cfg.norm_type),
        )
        self.layer = Sequential(
            ResnetBlock3D(2 * c, c, cfg.dropout, cfg.norm_type),
            ResnetBlock3D(c, c, cfg.dropout, cfg.norm_type),
        )
        r = cfg.connect_res_layer_num
        self.connect_l1 = Sequential(
            *[ResnetBlock3D(d, d, cfg.dropout, cfg.norm_type) for _ in range(r)],
            Conv2d(d, cfg.l1_flow_channels, 3, padding=1),
        )
        self.connect_l2 = Sequential(
            *[ResnetBlock3D(d, d, cfg.dropout, cfg.norm_type) for _ in range(r)],
            Conv2d(d, 24, 3, padding=1),
        )
        self.norm_out = normalize(c, cfg.norm_type)
        self.conv_out = Conv2d(c, 24, 3, padding=1)
        self.inverse_wavelet_transform_out = InverseHaarWaveletTransform3D()
        self.inverse_wavelet_transform_l1 = _BLOCKS[cfg.l1_upsample_wavelet]()
        self.inverse_wavelet_transform_l2 = _BLOCKS[cfg.l2_upsample_wavelet]()

    def forward(
        self, z: torch.Tensor, cache: CausalCache | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        d = self.flow_channels
        h = self.mid(self.conv_in(z, cache), cache, reuse_input=True)  # (B, 4C + D, t, h, w)

        l2_coeffs = self.connect_l2(h[:, -d:], cache)  # level-2 coefficients from the flow channels
        l2 = self.inverse_wavelet_transform_l2(l2_coeffs, cache)  # -> LL band of level 1
        h = self.up2(h[:, :-d], cache)

        l1_coeffs = self.connect_l1(h[:, -d:], cache)
        l1_coeffs, l2 = align((self, "l1"), l1_coeffs, l2, cache)
        l1_coeffs[:, :3] += l2
        l1 = self.inverse_wavelet_transform_l1(l1_coeffs, cache)  # -> LLL band of the output transform
        h = self.up1(h[:, :-d], cache)

        h = self.layer(h, cache, reuse_input=True)
        h = norm_swish_conv(self.conv_out, self.norm_out, h, cache)  # (B, 24, T1, H/2, W/2) output subbands
        h, l1 = align((self, "out"), h, l1, cache)
        h[:, :3] += l1
        return self.inverse_wavelet_transform_out(h, cache), (l1_coeffs, l2_coeffs)
