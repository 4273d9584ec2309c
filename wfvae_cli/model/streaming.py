"""Causal Cache streaming sessions: encode or decode a video of any length chunk by chunk.

    with model.stream_encoder(chunk_frames=16) as enc:
        for frames in reader:            # any number of frames per push: 1, 3, 100 ...
            store(enc.push(frames))      # latent frames that are final now (maybe none)
        store(enc.flush())               # the rest

The concatenation of everything a session returns equals direct inference on the whole video
(float32: within ~1e-6), whatever the split, because every temporal layer keeps exactly the frames it
has not consumed yet (:mod:`wfvae_cli.model.cache`). Memory is bounded by ``chunk_frames``: a push
larger than that is processed in pieces.

Video lengths: the model maps 4k+1 frames (8k+1 for the 8x variant) to k+1 latent frames. For other
lengths ``length_policy`` decides at :meth:`flush`: ``"error"`` (default) raises, ``"trim"`` drops the
trailing frames (what the official code does silently), ``"pad"`` repeats the last frame up to the
next valid length (decode, then cut the output back to the input length).
"""

from __future__ import annotations

import itertools
import warnings
from typing import TYPE_CHECKING, Any, Literal

import torch

from wfvae_cli.errors import WfvaeError
from wfvae_cli.model.cache import CausalCache
from wfvae_cli.model.distribution import DiagonalGaussian

if TYPE_CHECKING:
    from wfvae_cli.model.autoencoder import WFVAE

LengthPolicy = Literal["error", "trim", "pad"]
LENGTH_POLICIES = ("error", "trim", "pad")


def valid_length(frames: int, factor: int) -> bool:
    """True when ``frames`` is ``factor * k + 1`` (the lengths the causal VAE maps exactly)."""
    return frames >= 1 and (frames - 1) % factor == 0


def _length_error(n: int, factor: int) -> WfvaeError:
    keep = (n - 1) // factor * factor + 1
    return WfvaeError(
        f"video has {n} frames; WF-VAE needs {factor}k+1 frames (e.g. {keep} or {keep + factor}): trim the clip, "
        "or pass length_policy='trim' (drop the last frames) or 'pad' (repeat the last frame)"
    )


def fit_length(video: torch.Tensor, factor: int, policy: LengthPolicy) -> torch.Tensor:
    """Apply the length policy to a whole video (B, C, T, H, W) before direct inference."""
    n = video.shape[2]
    if valid_length(n, factor):
        return video
    if n == 0:
        raise WfvaeError("the video has no frames")
    if policy not in LENGTH_POLICIES:
        raise WfvaeError(f"length_policy must be one of {LENGTH_POLICIES}, got {policy!r}")
    if policy == "error":
        raise _length_error(n, factor)
    keep = (n - 1) // factor * factor + 1
    if policy == "trim":
        warnings.warn(f"dropping the last {n - keep} of {n} frames (WF-VAE needs {factor}k+1)", stacklevel=3)
        return video[:, :, :keep]
    return torch.cat([video, video[:, :, -1:].expand(-1, -1, keep + factor - n, -1, -1)], dim=2)


class _Session:
    """Shared mechanics: a cache, chunked pushes, autograd only when wanted (``WFVAE.autograd_for``), no
    reuse after flush."""

    def __init__(self, model: WFVAE, chunk_frames: int | None) -> None:
        if model.config.norm_type == "groupnorm":
            raise WfvaeError(
                "this model uses groupnorm, which normalises over the whole video: Causal Cache streaming "
                "cannot be exact; use direct inference (chunk_frames=None) or a layernorm model"
            )
        if chunk_frames is not None and chunk_frames < 1:
            raise WfvaeError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.model = model
        self.chunk_frames = chunk_frames
        self.cache = CausalCache()
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the cached frames (the session cannot be used afterwards)."""
        self.cache.clear()
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this streaming session is closed (flush() ends a stream); start a new one")

    @staticmethod
    def _pieces(x: torch.Tensor, step: int | None, start: int) -> list[torch.Tensor]:
        """Split the frames [start, start + len(x)) of a stream at 1 + k*step (k >= 1).

        The causal first frame rides with the first chunk (a 4k+1-frame video with chunk 4k runs as
        one piece, like the direct path) and every later chunk has exactly ``step`` frames; where the
        cuts fall never changes the result, only the speed: no chunk of a single frame.
        """
        n = x.shape[2]
        if step is None or n == 0:
            return [x]  # an empty push still runs once (a flush step, or nothing to emit)
        first_cut = 1 + step * max(1, (start - 1) // step + 1)  # the first 1 + k*step after ``start``
        bounds = [0, *(c - start for c in range(first_cut, start + n, step)), n]
        return [x[:, :, a:b] for a, b in itertools.pairwise(bounds)]


class StreamEncoder(_Session):
    """Streams video frames (B, 3, t, H, W) in [-1, 1] into posterior chunks."""

    def __init__(self, model: WFVAE, chunk_frames: int | None = None, length_policy: LengthPolicy = "error") -> None:
        super().__init__(model, chunk_frames)
        if length_policy not in LENGTH_POLICIES:
            raise WfvaeError(f"length_policy must be one of {LENGTH_POLICIES}, got {length_policy!r}")
        self.length_policy = length_policy
        self.frames_in = 0
        self._last: torch.Tensor | None = None

    def state_dict(self) -> dict[str, Any]:
        """Everything the session remembers between pushes (frames seen, the last frame, the Causal Cache), as
        plain tensors keyed by layer name: restored with :meth:`load_state_dict` into a new session of the same
        model, the stream continues exactly (the same pushes give the same bits as an uninterrupted session)."""
        self._check_open()
        names = {id(m): n for n, m in self.model.named_modules()}
        last = None if self._last is None else self._last.detach().clone()
        return {"frames_in": self.frames_in, "last": last, "cache": self.cache.state(names)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a stream saved by :meth:`state_dict` (this session must be new)."""
        self._check_open()
        if self.frames_in:
            raise RuntimeError("load_state_dict() on a stream that has already been pushed to")
        self.cache.load_state(state["cache"], dict(self.model.named_modules()))
        self.frames_in = int(state["frames_in"])
        self._last = state["last"]

    def push(self, frames: torch.Tensor) -> DiagonalGaussian:
        """Feed the next frames; returns the latent frames that became final (possibly zero)."""
        self._check_open()
        if frames.dim() != 5 or frames.shape[1] != 3:
            raise WfvaeError(f"expected video frames of shape (B, 3, T, H, W), got {tuple(frames.shape)}")
        if frames.shape[2]:
            self._last = frames[:, :, -1:]
        return self._run(frames)

    def _run(self, frames: torch.Tensor) -> DiagonalGaussian:
        pieces = self._pieces(frames, self.chunk_frames, self.frames_in)
        self.frames_in += frames.shape[2]
        with self.model.autograd_for(frames):
            outs = [self.model.encoder(piece, self.cache)[0] for piece in pieces]
            return DiagonalGaussian.from_moments(torch.cat(outs, dim=2))

    def flush(self) -> DiagonalGaussian:
        """End the stream, applying the length policy; returns any remaining latent frames."""
        self._check_open()
        factor = self.model.config.temporal_factor
        n = self.frames_in
        out = None
        if n == 0:
            raise WfvaeError("no frames were pushed to the stream encoder")
        if not valid_length(n, factor):
            keep = (n - 1) // factor * factor + 1
            if self.length_policy == "error":
                self.close()
                raise _length_error(n, factor)
            if self.length_policy == "trim":
                warnings.warn(f"dropping the last {n - keep} of {n} frames (WF-VAE needs {factor}k+1)", stacklevel=2)
            else:
                assert self._last is not None
                missing = keep + factor - n
                out = self._run(self._last.expand(-1, -1, missing, -1, -1))
        self.close()
        if out is None:
            z = self.model.config.latent_dim
            ref = self._last if self._last is not None else torch.empty(0)
            empty = ref.new_empty((ref.shape[0], z, 0, ref.shape[3] // 8, ref.shape[4] // 8))
            out = DiagonalGaussian(empty, empty)
        return out


class StreamDecoder(_Session):
    """Streams latent frames (B, Z, t, h, w) into video frames (B, 3, T, 8h, 8w).

    ``chunk_frames`` counts *video* frames, like the encoder's: each decode step takes
    ``max(1, chunk_frames // temporal_factor)`` latent frames.
    """

    def __init__(self, model: WFVAE, chunk_frames: int | None = None) -> None:
        super().__init__(model, chunk_frames)
        factor = model.config.temporal_factor
        self.latent_step = None if chunk_frames is None else max(1, chunk_frames // factor)
        self.frames_in = 0
        self._ref: torch.Tensor | None = None

    def push(self, latents: torch.Tensor, final: bool = False) -> torch.Tensor:
        """Feed the next latent frames; returns the video frames that became final (possibly zero).

        ``final=True`` says these are the stream's last frames: everything is returned now (the
        temporal upsampler clamps at the end instead of waiting for look-ahead) and the session ends,
        which saves the extra pass through the decoder that :meth:`flush` would make.
        """
        self._check_open()
        z = self.model.config.latent_dim
        if latents.dim() != 5 or latents.shape[1] != z:
            raise WfvaeError(f"expected latents of shape (B, {z}, t, h, w), got {tuple(latents.shape)}")
        pieces = self._pieces(latents, self.latent_step, self.frames_in)
        self.frames_in += latents.shape[2]
        self._ref = latents[:, :, :0]
        outs = []
        with self.model.autograd_for(latents):
            for i, piece in enumerate(pieces):
                self.cache.final = final and i == len(pieces) - 1
                outs.append(self.model.decoder(piece, self.cache)[0])
        if final:
            self.close()
        return torch.cat(outs, dim=2)

    def flush(self) -> torch.Tensor:
        """End the stream; returns the frames that were waiting for look-ahead."""
        self._check_open()
        if self._ref is None:
            raise WfvaeError("no latent frames were pushed to the stream decoder")
        self.cache.final = True
        with self.model.autograd_for(self._ref):
            out = self.model.decoder(self._ref, self.cache)[0]
        self.close()
        return out
