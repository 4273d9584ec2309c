"""A baseline that computes WF-VAE the way the official code does (direct inference only).

The official implementation cannot be fetched on these machines, so this is our own functional
re-implementation of its *computation pattern*, written from the reference description
(`shared/reference/wfvae-architecture.md`): per-frame 2D ops run on a (B*T, C, H, W) copy of the
video (`video_to_image`), LayerNorm permutes channels last and back, causal padding concatenates
frame copies, the 3D Haar transform loops over the channels running eight 1-channel convolutions
each (the 2D one runs four over all channels) and concatenates, swish is ``x * sigmoid(x)``, q/k/v
are separate 1x1x1 Conv3d calls. It reads the parameters of a :class:`wfvae_cli.model.WFVAE`, so both
run the same weights side by side; ``tests``-style parity against the golden fixture keeps it honest.

It is a benchmark baseline, not product code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wfvae_cli.model.autoencoder import WFVAE


def nonlinearity(x):  # the official swish: two ops and a temporary, not F.silu
    return x * torch.sigmoid(x)


def _to_img(x):  # b c t h w -> (b t) c h w
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), t


def _to_vid(x, t):
    bt, c, h, w = x.shape
    return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)


class OfficialStyle:
    def __init__(self, model: WFVAE) -> None:
        self.p = dict(model.named_parameters()) | dict(model.named_buffers())
        self.cfg = model.config

    # ---------------------------------------------------------------- primitives
    def norm(self, x, name):
        weight, bias = self.p[f"{name}.norm.weight"], self.p[f"{name}.norm.bias"]
        if x.dim() == 5:
            y = F.layer_norm(x.permute(0, 2, 3, 4, 1), (x.shape[1],), weight, bias, 1e-6)
            return y.permute(0, 4, 1, 2, 3)
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, bias, 1e-6)
        return y.permute(0, 3, 1, 2)

    def cconv(self, x, name, stride=1, padding=None):
        w, b = self.p[f"{name}.conv.weight"], self.p.get(f"{name}.conv.bias")
        kt = w.shape[2]
        if padding is None:
            padding = w.shape[3] // 2
        if kt > 1:
            x = torch.cat([x[:, :, :1].repeat(1, 1, kt - 1, 1, 1), x], dim=2)
        return F.conv3d(x, w, b, stride=stride, padding=(0, padding, padding))

    def conv2d_frames(self, x, name, stride=1, padding=1):
        img, t = _to_img(x)
        out = F.conv2d(img, self.p[f"{name}.weight"], self.p[f"{name}.bias"], stride=stride, padding=padding)
        return _to_vid(out, t)

    def res3d(self, x, name):
        h = self.cconv(nonlinearity(self.norm(x, f"{name}.norm1")), f"{name}.conv1")
        h = self.cconv(nonlinearity(self.norm(h, f"{name}.norm2")), f"{name}.conv2")
        if f"{name}.nin_shortcut.conv.weight" in self.p:
            x = self.cconv(x, f"{name}.nin_shortcut")
        return x + h

    def res2d(self, x, name):
        img, t = _to_img(x)  # the official video_to_image wraps the whole block
        p = self.p
        h = F.conv2d(nonlinearity(self.norm(img, f"{name}.norm1")), p[f"{name}.conv1.weight"], p[f"{name}.conv1.bias"],
                     padding=1)
        h = F.conv2d(nonlinearity(self.norm(h, f"{name}.norm2")), p[f"{name}.conv2.weight"], p[f"{name}.conv2.bias"],
                     padding=1)
        return _to_vid(img + h, t)

    def attn(self, x, name):
        h = self.norm(x, f"{name}.norm")
        q, k, v = (self.cconv(h, f"{name}.{n}") for n in "qkv")
        b, c, t, hh, ww = q.shape
        q, k, v = (z.permute(0, 2, 3, 4, 1).reshape(b * t, hh * ww, c) for z in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.reshape(b, t, hh, ww, c).permute(0, 4, 1, 2, 3)
        return x + self.cconv(out, f"{name}.proj_out")

    def haar3d(self, x, name):
        b, c, t, h, w = x.shape
        x = x.reshape(b * c, 1, t, h, w)
        names = ("h", "g", "hh", "gh", "h_v", "g_v", "hh_v", "gh_v")
        # the official forward loops over the b*c single-channel videos, eight causal convs each
        outs = [self.cconv(x[i : i + 1], f"{name}.{n}_conv", stride=2, padding=0) for i in range(b * c) for n in names]
        y = torch.cat(outs, dim=0)  # ((b c 8), 1, t', h', w')
        return y.reshape(b, c, 8, *y.shape[2:]).transpose(1, 2).reshape(b, 8 * c, *y.shape[2:])

    def haar2d(self, x, name):
        b, c, t, h, w = x.shape
        img = x.permute(0, 2, 1, 3, 4).reshape(b * t * c, 1, h, w)
        outs = [F.conv2d(img, self.p[f"{name}.{n}"], stride=2) for n in ("aa", "ad", "da", "dd")]
        outs = [o.reshape(b, t, c, h // 2, w // 2).permute(0, 2, 1, 3, 4) for o in outs]
        return torch.cat(outs, dim=1)

    def ihaar3d(self, x, name):
        b, c8 = x.shape[:2]
        c = c8 // 8
        total = 0
        for i, n in enumerate(("h", "g", "hh", "gh", "h_v", "g_v", "hh_v", "gh_v")):
            g = x[:, i * c : (i + 1) * c].reshape(b * c, 1, *x.shape[2:])
            total = total + F.conv_transpose3d(g, self.p[f"{name}.{n}"], stride=2)
        total = total.reshape(b, c, *total.shape[2:])
        return total[:, :, 1:]

    def ihaar2d(self, x, name):
        b, c4, t, h, w = x.shape
        c = c4 // 4
        total = 0
        for i, n in enumerate(("aa", "ad", "da", "dd")):
            g = x[:, i * c : (i + 1) * c].permute(0, 2, 1, 3, 4).reshape(b * t * c, 1, h, w)
            total = total + F.conv_transpose2d(g, self.p[f"{name}.{n}"], stride=2)
        return total.reshape(b, t, c, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)

    def up3d(self, x, name):
        if x.shape[2] == 1:
            x = F.interpolate(x, scale_factor=(1, 2, 2), mode="trilinear")
        else:
            x0, r = x[:, :, :1], x[:, :, 1:]
            r = F.interpolate(r, scale_factor=(2, 1, 1), mode=self.cfg.t_interpolation)
            r = F.interpolate(r, scale_factor=(1, 2, 2), mode="trilinear")
            x0 = F.interpolate(x0, scale_factor=(1, 2, 2), mode="trilinear")
            x = torch.cat([x0, r], dim=2)
        return self.cconv(x, f"{name}.conv")

    # ---------------------------------------------------------------- network (4x config)
    @torch.no_grad()
    def encode(self, x):
        n = self.cfg.encoder_num_resblocks
        coeffs = self.haar3d(x, "encoder.wavelet_transform_in")
        l1_coeffs = self.haar2d(coeffs[:, :3], "encoder.wavelet_transform_l1")
        l1 = self.conv2d_frames(l1_coeffs, "encoder.connect_l1")
        l2_coeffs = self.haar3d(l1_coeffs[:, :3], "encoder.wavelet_transform_l2")
        l2 = self.conv2d_frames(l2_coeffs, "encoder.connect_l2")
        h = self.conv2d_frames(coeffs, "encoder.down1.0")
        for i in range(1, n + 1):
            h = self.res2d(h, f"encoder.down1.{i}")
        img, t = _to_img(h)
        conv = f"encoder.down1.{n + 1}.conv"
        h = _to_vid(F.conv2d(F.pad(img, (0, 1, 0, 1)), self.p[f"{conv}.weight"], self.p[f"{conv}.bias"], stride=2), t)
        h = torch.cat([h, l1], dim=1)
        h = self.conv2d_frames(h, "encoder.down2.0")
        for i in range(1, n + 1):
            h = self.res3d(h, f"encoder.down2.{i}")
        h = self.cconv(F.pad(h, (0, 1, 0, 1)), f"encoder.down2.{n + 1}.conv", stride=2, padding=0)
        h = torch.cat([h, l2], dim=1)
        h = self.res3d(h, "encoder.mid.0")
        h = self.attn(h, "encoder.mid.1")
        h = self.res3d(h, "encoder.mid.2")
        h = self.cconv(nonlinearity(self.norm(h, "encoder.norm_out")), "encoder.conv_out")
        return h

    @torch.no_grad()
    def decode(self, z):
        n, d = self.cfg.decoder_num_resblocks, self.cfg.decoder_energy_flow_hidden_size
        h = self.cconv(z, "decoder.conv_in")
        h = self.res3d(h, "decoder.mid.0")
        h = self.attn(h, "decoder.mid.1")
        h = self.res3d(h, "decoder.mid.2")
        l2_coeffs = self.conv2d_frames(self.res3d(h[:, -d:], "decoder.connect_l2.0"), "decoder.connect_l2.1")
        l2 = self.ihaar3d(l2_coeffs, "decoder.inverse_wavelet_transform_l2")
        h = h[:, :-d]
        for i in range(n):
            h = self.res3d(h, f"decoder.up2.{i}")
        h = self.up3d(h, f"decoder.up2.{n}")
        h = self.res3d(h, f"decoder.up2.{n + 1}")
        l1_coeffs = self.conv2d_frames(self.res3d(h[:, -d:], "decoder.connect_l1.0"), "decoder.connect_l1.1")
        l1_coeffs[:, :3] = l1_coeffs[:, :3] + l2
        l1 = self.ihaar2d(l1_coeffs, "decoder.inverse_wavelet_transform_l1")
        h = h[:, :-d]
        for i in range(n):
            h = self.res3d(h, f"decoder.up1.{i}")
        img, t = _to_img(h)
        img = F.interpolate(img, scale_factor=2, mode="nearest")
        conv = f"decoder.up1.{n}.conv"
        h = _to_vid(F.conv2d(img, self.p[f"{conv}.weight"], self.p[f"{conv}.bias"], padding=1), t)
        h = self.res3d(h, f"decoder.up1.{n + 1}")
        h = self.res3d(h, "decoder.layer.0")
        h = self.res3d(h, "decoder.layer.1")
        h = self.conv2d_frames(nonlinearity(self.norm(h, "decoder.norm_out")), "decoder.conv_out")
        h[:, :3] = h[:, :3] + l1
        return self.ihaar3d(h, "decoder.inverse_wavelet_transform_out")
