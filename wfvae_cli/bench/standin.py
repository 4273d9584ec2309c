"""A stand-in for the WF-VAE that takes a fixed time per clip and uses no CPU: the model of ``wfvae bench pipeline``.

Why a stand-in: on a GPU WF-VAE-L encodes a 33x512² clip in ~0.05 s, so what limits a GPU node is the data
pipeline (decode, resize, batching, copies, writes), not the model. To measure that pipeline on any machine,
the model is replaced by an object with the model's encode interface that *sleeps* ``seconds_per_clip`` per
clip (the GIL is released and no core is used, as while a GPU computes) and returns latents of exactly the
shape the real model's config gives. It goes through the same :class:`~wfvae_cli.pipeline.stages.LatentEncoder`
(device move, precision, posterior → store rows) and the same executors as a real model, so the bench
measures the real pipeline; only the arithmetic of the network is missing. ``--clip-mode full`` (Causal-Cache
streaming of whole videos) is not modelled: the bench refuses it.
"""

from __future__ import annotations

import hashlib
import json
import time

import torch
from torch import nn

from wfvae_cli.errors import WfvaeError
from wfvae_cli.model.config import WFVAEConfig
from wfvae_cli.model.distribution import DiagonalGaussian


class StandInModel(nn.Module):
    """``encode(video)`` → a posterior of ``config.latent_shape`` (fixed seeded noise), after sleeping
    ``seconds_per_clip`` × B.

    It holds one parameter (so ``.to(device, dtype)`` and device checks behave as for a model) and no
    weights worth the name; a store it writes records ``random_weights`` (its latents are noise), and
    :meth:`fingerprint` hashes the word "stand-in" with the config, so it never equals real weights.
    """

    random_weights = True  # the latents mean nothing: stores written with it say so

    def __init__(self, config: WFVAEConfig, seconds_per_clip: float) -> None:
        super().__init__()
        if not seconds_per_clip >= 0:
            raise WfvaeError(f"--model-time {seconds_per_clip!r}: must be >= 0 seconds per clip")
        self.config = config
        self.seconds_per_clip = float(seconds_per_clip)
        self.source = f"stand-in ({seconds_per_clip:g} s/clip)"
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)
        self._outputs: dict[tuple, DiagonalGaussian] = {}
        self.calls = 0  # encode calls (batches), for tests and the report
        self.clips = 0

    def fingerprint(self) -> str:
        """SHA-256 (the store's ``weights_sha256`` format) of "stand-in", the config and the time per clip."""
        blob = json.dumps({"stand-in": self.seconds_per_clip, "config": self.config.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _posterior(self, video: torch.Tensor) -> DiagonalGaussian:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"expected video (B, 3, T, H, W), got {tuple(video.shape)}")
        b, _, t, h, w = video.shape
        shape = (b, *self.config.latent_shape(t, h, w))
        if video.device.type == "cuda":  # as a real model would, wait for the input copy to land
            torch.cuda.synchronize(video.device)
        time.sleep(self.seconds_per_clip * b)  # no CPU: a GPU computing
        self.calls += 1
        self.clips += b
        key = (shape, video.device, video.dtype)
        if key not in self._outputs:
            # Seeded noise, made once per shape: latents as incompressible as real ones (so the store's
            # compression costs what it would), without spending CPU per call on what a GPU would compute.
            gen = torch.Generator().manual_seed(0)
            mean = torch.randn(shape, generator=gen).to(video.device, video.dtype)
            logvar = (torch.randn(shape, generator=gen) - 4.0).to(video.device, video.dtype)
            self._outputs[key] = DiagonalGaussian(mean, logvar)
        return self._outputs[key]  # never written to by the pipeline (rows are read-only views)

    def encode(
        self, video: torch.Tensor, chunk_frames: int | None = None, length_policy: str = "error"
    ) -> DiagonalGaussian:
        """The posterior of a (B, 3, T, H, W) batch; ``chunk_frames`` is accepted and changes nothing."""
        return self._posterior(video)
