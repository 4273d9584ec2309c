"""LPIPS (AlexNet, v0.1) with the official WF-VAE convention, built without network access.

The ``lpips`` package ships the calibrated linear heads (``weights/v0.1/alex.pth``) but takes the AlexNet
trunk from torchvision, which downloads ``alexnet-owt-7be5be79.pth`` when the network is constructed.
Here the network is constructed with a random trunk (``pnet_rand=True``: no download) and the trunk is
then loaded from a local file whose sha256 is verified, so an offline machine gives the real numbers
or a clear error, never a silent random trunk.

Convention (``cal_lpips.py``): ``LPIPS(net='alex', version='0.1', spatial=True)``, inputs in [-1, 1],
frames flattened to ``(B·T, 3, H, W)``, the spatial map averaged over everything. Here the map is
averaged per frame and the frames per clip, which is the same number for clips of equal length.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch

from wfvae_cli.metrics._frames import paired_frames
from wfvae_cli.metrics.weights import MetricWeightsError, find_weight_file, verify_sha256

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_SHA256_PREFIX = "7be5be79"
"""torchvision's file name carries the first 8 hex digits of the file's sha256."""

_METRIC = "LPIPS"
_SLICE_KEY = re.compile(r"^slice\d+\.(\d+)\.(weight|bias)$")


def _build_lpips(spatial: bool = True) -> torch.nn.Module:
    """``lpips.LPIPS(net='alex', version='0.1')`` with its shipped linear heads and a random trunk.

    ``pnet_rand=True`` is what keeps torchvision from downloading; the trunk is replaced afterwards
    (or, for :meth:`LPIPSMetric.random_trunk`, deliberately left random).
    """
    from wfvae_cli.extras import require

    lpips = require("lpips", "LPIPS")  # heavy import, only when LPIPS is actually used

    with warnings.catch_warnings():
        # lpips 0.1.4 calls torchvision with the deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\..*")
        net = lpips.LPIPS(
            pretrained=True, net="alex", version="0.1", spatial=spatial, pnet_rand=True, verbose=False
        )
    return net.eval().requires_grad_(False)


def _load_trunk(net: torch.nn.Module, path: Path) -> None:
    """Copy the ``features.*`` tensors of a torchvision AlexNet state dict into the LPIPS trunk.

    The LPIPS trunk re-slices ``alexnet().features`` into ``slice1..slice5`` but keeps the layer
    indices, so ``slice2.3.weight`` is ``features.3.weight``. Every trunk tensor must be present with
    the right shape; the classifier tensors of the file are unused.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MetricWeightsError(
            f"{_METRIC}: cannot read {path} ({exc}); download {ALEXNET_URL} again"
        ) from exc
    if not isinstance(state, dict):
        raise MetricWeightsError(
            f"{_METRIC}: {path} is not a state dict; expected torchvision's {ALEXNET_FILE}"
        )
    trunk = net.net
    mapped: dict[str, torch.Tensor] = {}
    for key, target in trunk.state_dict().items():
        match = _SLICE_KEY.match(key)
        assert match is not None, f"unexpected LPIPS trunk key {key}"
        source = f"features.{match.group(1)}.{match.group(2)}"
        tensor = state.get(source)
        if not isinstance(tensor, torch.Tensor) or tensor.shape != target.shape:
            raise MetricWeightsError(
                f"{_METRIC}: {path} has no AlexNet tensor {source} of shape {tuple(target.shape)}; "
                f"expected torchvision's {ALEXNET_FILE}"
            )
        mapped[key] = tensor
    trunk.load_state_dict(mapped, strict=True)


class LPIPSMetric:
    """LPIPS-Alex v0.1 per clip, with a trunk loaded from a verified local file.

    ``weights`` is the path of ``alexnet-owt-7be5be79.pth`` (or a directory holding it); ``None`` looks
    in ``$TORCH_HOME/hub/checkpoints/`` and ``~/.cache/torch/hub/checkpoints/``. A missing file raises
    :class:`~wfvae_cli.metrics.MetricUnavailable`, a file with the wrong sha256 raises
    :class:`~wfvae_cli.metrics.MetricWeightsError`.

    ``chunk_frames`` bounds how many frames go through AlexNet at once (memory only; the result does
    not depend on it).
    """

    net: torch.nn.Module
    device: torch.device
    chunk_frames: int
    weights_path: Path | None
    weights_sha256: str | None
    random: bool

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        *,
        chunk_frames: int = 64,
    ) -> None:
        path = find_weight_file(ALEXNET_FILE, weights, metric=_METRIC, source=ALEXNET_URL)
        digest = verify_sha256(path, ALEXNET_SHA256_PREFIX, metric=_METRIC, source=ALEXNET_URL)
        net = _build_lpips()
        _load_trunk(net, path)
        self._setup(net, device, chunk_frames, path=path, sha256=digest, random=False)

    @classmethod
    def random_trunk(
        cls, device: str | torch.device = "cpu", *, seed: int = 0, chunk_frames: int = 64
    ) -> LPIPSMetric:
        """LPIPS with a **random** AlexNet trunk (and the real linear heads): for plumbing tests only.

        The numbers are meaningless as a perceptual distance (though still 0 for identical inputs and
        growing with the distortion); never report them. Seeded, without touching the global RNG.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _build_lpips()
        obj = cls.__new__(cls)
        obj._setup(net, device, chunk_frames, path=None, sha256=None, random=True)
        return obj

    def _setup(
        self,
        net: torch.nn.Module,
        device: str | torch.device,
        chunk_frames: int,
        *,
        path: Path | None,
        sha256: str | None,
        random: bool,
    ) -> None:
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.device = torch.device(device)
        self.net = net.to(self.device)
        self.chunk_frames = chunk_frames
        self.weights_path = path
        self.weights_sha256 = sha256
        self.random = random

    def __repr__(self) -> str:
        trunk = "RANDOM trunk (tests only)" if self.random else str(self.weights_path)
        return f"LPIPSMetric(alex v0.1, {trunk}, device={self.device})"

    @torch.no_grad()
    def per_frame(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS of every frame: ``(B, T)`` for ``(B, 3, T, H, W)`` clips, ``(N,)`` for images.

        Inputs are in [-1, 1] (the model's range). Each frame's value is the mean of the spatial LPIPS
        map, as in the official code. float64 on the input's device.
        """
        fx, fy, layout = paired_frames(x, y)
        if fx.shape[1] != 3:
            raise ValueError(f"LPIPS needs 3-channel RGB frames, got {fx.shape[1]} channels")
        values = [
            self.net(
                fx[i : i + self.chunk_frames].to(self.device, torch.float32),
                fy[i : i + self.chunk_frames].to(self.device, torch.float32),
            ).mean(dim=(1, 2, 3))
            for i in range(0, fx.shape[0], self.chunk_frames)
        ]
        per_frame = torch.cat(values).to(device=x.device, dtype=torch.float64)
        return layout.fold(per_frame)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS per clip, ``(B,)`` (or per image, ``(N,)``): the mean over frames; average over clips."""
        per_frame = self.per_frame(x, y)
        return per_frame.mean(dim=1) if per_frame.dim() == 2 else per_frame
