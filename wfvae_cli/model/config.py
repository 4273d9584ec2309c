"""WF-VAE configuration: one typed dataclass that reads and writes the official ``config.json``.

The official config is a diffusers ``ConfigMixin`` dict; its field names are kept verbatim here,
including the misspelled ``l1_dowmsample_block`` / ``l2_dowmsample_block``, so that a config written by
:meth:`WFVAEConfig.to_dict` is byte-for-byte what the official loader expects.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wfvae_cli.errors import CheckpointError, WfvaeError

#: Block/wavelet class names the official code resolves with ``getattr(modules, name)``.
DOWN_BLOCKS_2D = "Downsample"
DOWN_BLOCKS_3D = "Spatial2xTime2x3DDownsample"
UP_BLOCKS_2D = "Upsample"
UP_BLOCKS_3D = "Spatial2xTime2x3DUpsample"
WAVELET_2D = "HaarWaveletTransform2D"
WAVELET_3D = "HaarWaveletTransform3D"
IWAVELET_2D = "InverseHaarWaveletTransform2D"
IWAVELET_3D = "InverseHaarWaveletTransform3D"

_CLASS_NAME = "WFVAEModel"
_DIFFUSERS_VERSION = "0.30.2"


@dataclass
class WFVAEConfig:
    """Hyper-parameters of ``WFVAEModel`` (official ``modeling_wfvae.py``), with the official defaults."""

    latent_dim: int = 8
    base_channels: int = 128
    encoder_num_resblocks: int = 2
    encoder_energy_flow_hidden_size: int = 64
    decoder_num_resblocks: int = 2
    decoder_energy_flow_hidden_size: int = 128
    attention_type: str = "AttnBlock3DFix"
    use_attention: bool = True
    dropout: float = 0.0
    norm_type: str = "groupnorm"
    t_interpolation: str = "nearest"
    connect_res_layer_num: int = 1
    scale: list[float] = field(default_factory=lambda: [0.18215] * 4)
    shift: list[float] = field(default_factory=lambda: [0.0] * 4)
    l1_dowmsample_block: str = DOWN_BLOCKS_2D
    l1_downsample_wavelet: str = WAVELET_2D
    l2_dowmsample_block: str = DOWN_BLOCKS_3D
    l2_downsample_wavelet: str = WAVELET_3D
    l1_upsample_block: str = UP_BLOCKS_2D
    l1_upsample_wavelet: str = IWAVELET_2D
    l2_upsample_block: str = UP_BLOCKS_3D
    l2_upsample_wavelet: str = IWAVELET_3D

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived quantities
    @property
    def temporal_8x(self) -> bool:
        """The official code picks 4x or 8x temporal compression from the level-1 block name."""
        return self.l1_dowmsample_block != DOWN_BLOCKS_2D

    @property
    def temporal_factor(self) -> int:
        return 8 if self.temporal_8x else 4

    @property
    def spatial_factor(self) -> int:
        return 8

    @property
    def l1_flow_channels(self) -> int:
        """Channels of the level-1 wavelet coefficients: 12 for 2D Haar of RGB, 24 for 3D Haar."""
        return 12 if self.l1_downsample_wavelet == WAVELET_2D else 24

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """Latent (C, T, H, W) for an input of ``frames`` x ``height`` x ``width`` (4k+1 frames, multiples of 8)."""
        t = (frames - 1) // self.temporal_factor + 1
        return (self.latent_dim, t, height // self.spatial_factor, width // self.spatial_factor)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Reject configs the model cannot build, with the field name in the message."""
        positive = ("latent_dim", "base_channels", "encoder_energy_flow_hidden_size", "decoder_energy_flow_hidden_size")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise WfvaeError(f"config field {name} must be > 0, got {getattr(self, name)}")
        for name in ("encoder_num_resblocks", "decoder_num_resblocks", "connect_res_layer_num"):
            if int(getattr(self, name)) < 0:
                raise WfvaeError(f"config field {name} must be >= 0, got {getattr(self, name)}")
        if self.decoder_num_resblocks < 1:
            raise WfvaeError("config field decoder_num_resblocks must be >= 1 (up1.0 changes the width)")
        if self.norm_type not in ("layernorm", "groupnorm"):
            raise WfvaeError(f"config field norm_type must be 'layernorm' or 'groupnorm', got {self.norm_type!r}")
        if self.attention_type != "AttnBlock3DFix":
            raise WfvaeError(
                f"config field attention_type {self.attention_type!r} is not supported (only 'AttnBlock3DFix')"
            )
        if self.t_interpolation not in ("nearest", "trilinear"):
            raise WfvaeError(
                f"config field t_interpolation must be 'nearest' or 'trilinear', got {self.t_interpolation!r}"
            )
        allowed = {
            "l1_dowmsample_block": (DOWN_BLOCKS_2D, DOWN_BLOCKS_3D),
            "l2_dowmsample_block": (DOWN_BLOCKS_3D,),
            "l1_upsample_block": (UP_BLOCKS_2D, UP_BLOCKS_3D),
            "l2_upsample_block": (UP_BLOCKS_3D,),
            "l1_downsample_wavelet": (WAVELET_2D, WAVELET_3D),
            "l2_downsample_wavelet": (WAVELET_3D,),
            "l1_upsample_wavelet": (IWAVELET_2D, IWAVELET_3D),
            "l2_upsample_wavelet": (IWAVELET_3D,),
        }
        for name, ok in allowed.items():
            if getattr(self, name) not in ok:
                raise WfvaeError(f"config field {name}={getattr(self, name)!r} is not supported; expected one of {ok}")
        # 4x and 8x configs must be self-consistent (the official code silently builds a broken net otherwise)
        eight = self.temporal_8x
        if (self.l1_downsample_wavelet == WAVELET_3D) != eight or (self.l1_upsample_block == UP_BLOCKS_3D) != eight or (
            self.l1_upsample_wavelet == IWAVELET_3D
        ) != eight:
            raise WfvaeError(
                "config mixes 4x and 8x temporal level-1 blocks: use Downsample/HaarWaveletTransform2D/Upsample/"
                "InverseHaarWaveletTransform2D (4x) or the 3D counterparts (8x) together"
            )
        if self.norm_type == "groupnorm":
            c, e, d = self.base_channels, self.encoder_energy_flow_hidden_size, self.decoder_energy_flow_hidden_size
            for width in (c, 2 * c, 4 * c, 2 * c + e, 4 * c + d, d):
                if width % 32:
                    raise WfvaeError(
                        f"groupnorm (32 groups) needs every normalised width divisible by 32; base_channels={c}, "
                        f"flow sizes {e}/{d} give {width}"
                    )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """The official ``config.json`` dict (diffusers tags included, keys sorted like diffusers does)."""
        d = dataclasses.asdict(self)
        d["scale"] = [float(v) for v in d["scale"]]
        d["shift"] = [float(v) for v in d["shift"]]
        d["_class_name"] = _CLASS_NAME
        d["_diffusers_version"] = _DIFFUSERS_VERSION
        return dict(sorted(d.items()))

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> WFVAEConfig:
        """Build from an official config dict; unknown keys are an error (a typo must not be ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if not k.startswith("_")}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"{source}: unknown config field(s) {unknown}; is this a WF-VAE (WFVAEModel) config?")
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid config: {exc}") from exc

    @classmethod
    def from_json(cls, path: str | Path) -> WFVAEConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise CheckpointError(f"cannot read config {path}: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        if data.get("_class_name", _CLASS_NAME) != _CLASS_NAME:
            raise CheckpointError(
                f"{path}: _class_name is {data['_class_name']!r}, not 'WFVAEModel' (WFVAE2 and CausalVAE are other networks)"
            )
        return cls.from_dict(data, source=str(path))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def replace(self, **changes: Any) -> WFVAEConfig:
        return dataclasses.replace(self, **changes)

    def with_temporal_factor(self, factor: int) -> WFVAEConfig:
        """The same network with 4x (level-1 blocks 2D) or 8x (level-1 blocks 3D) temporal compression."""
        if factor not in (4, 8):
            raise WfvaeError(f"temporal compression must be 4 or 8, got {factor}")
        eight = factor == 8
        return self.replace(
            l1_dowmsample_block=DOWN_BLOCKS_3D if eight else DOWN_BLOCKS_2D,
            l1_downsample_wavelet=WAVELET_3D if eight else WAVELET_2D,
            l1_upsample_block=UP_BLOCKS_3D if eight else UP_BLOCKS_2D,
            l1_upsample_wavelet=IWAVELET_3D if eight else IWAVELET_2D,
        )


def _released(base_channels: int, latent_dim: int = 16) -> WFVAEConfig:
    """The released L-16chn config with another width / latent size (the paper's S/M/L differ only in width)."""
    return WFVAEConfig(
        latent_dim=latent_dim,
        base_channels=base_channels,
        encoder_energy_flow_hidden_size=128,
        decoder_energy_flow_hidden_size=128,
        norm_type="layernorm",
        t_interpolation="trilinear",
        scale=[0.18215] * 4,
        shift=[0.0] * 4,
    )


PRESET_WIDTHS = {"wfvae-s": 128, "wfvae-m": 160, "wfvae-l": 192}
LATENT_DIMS = (4, 8, 16, 32)
#: presets whose *trained* weights ship inside the package, in ``wfvae_cli/assets/<name>/`` (HF layout)
BUNDLED_PRESETS = ("wfvae-tiny",)


def bundled_dir(name: str) -> Path:
    """Folder of a bundled preset (``config.json`` + ``diffusion_pytorch_model.safetensors``)."""
    return Path(__file__).resolve().parent.parent / "assets" / name.lower()


def preset_config(name: str) -> WFVAEConfig:
    """Config of a named preset.

    ``wfvae-s|m|l`` (16 latent channels) and ``wfvae-s|m|l-{4,8,16,32}ch`` for other latent sizes;
    ``wfvae-s-8chn`` is the Open-Sora Plan v1.3 variant (encoder flow 64, nearest temporal upsampling).
    A ``-8x`` suffix gives the 8x temporal variant of any of them (e.g. ``wfvae-l-8x``).
    """
    key = name.lower()
    if key in BUNDLED_PRESETS:
        return WFVAEConfig.from_json(bundled_dir(key) / "config.json")
    if key.endswith("-8x"):
        return preset_config(key.removesuffix("-8x")).with_temporal_factor(8)
    if key in ("wfvae-s-8chn", "wfvae-s-8chn-osp13"):
        return WFVAEConfig(
            latent_dim=8,
            base_channels=128,
            encoder_energy_flow_hidden_size=64,
            decoder_energy_flow_hidden_size=128,
            norm_type="layernorm",
            t_interpolation="nearest",
            scale=[0.18215] * 8,
            shift=[0.0] * 8,
        )
    if key in PRESET_WIDTHS:
        return _released(PRESET_WIDTHS[key])
    for base, width in PRESET_WIDTHS.items():
        for z in LATENT_DIMS:
            if key in (f"{base}-{z}ch", f"{base}-{z}chn"):
                return _released(width, z)
    raise KeyError(name)


def preset_names() -> list[str]:
    names = [*PRESET_WIDTHS, "wfvae-s-8chn", *BUNDLED_PRESETS]
    names += [f"{b}-{z}ch" for b in PRESET_WIDTHS for z in LATENT_DIMS]
    names += [f"{b}-8x" for b in PRESET_WIDTHS]
    return names
