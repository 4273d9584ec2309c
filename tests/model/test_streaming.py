"""Causal Cache: streamed encode/decode equals direct inference for every split and length."""

from __future__ import annotations

import random

import pytest
import torch

from wfvae_cli.errors import WfvaeError
from wfvae_cli.model import WFVAE

from ..conftest import EIGHT_X, tiny_model

ATOL = 1e-5
LENGTHS = [1, 5, 9, 17, 33, 65]
PRIMES = [2, 3, 5, 7, 11, 13]


def _splits(total: int, kind: str, rng: random.Random) -> list[int]:
    if kind == "ones":
        return [1] * total
    if kind == "whole":
        return [total]
    sizes, i = [], 0
    pool = PRIMES if kind == "primes" else list(range(1, 12))
    while i < total:
        n = min(rng.choice(pool), total - i)
        sizes.append(n)
        i += n
    return sizes


def _stream_encode(model: WFVAE, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    outs, i = [], 0
    with model.stream_encoder() as enc:
        for n in sizes:
            outs.append(enc.push(x[:, :, i : i + n]).mean)
            i += n
        outs.append(enc.flush().mean)
    return torch.cat(outs, dim=2)


def _stream_decode(model: WFVAE, z: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    outs, i = [], 0
    with model.stream_decoder() as dec:
        for n in sizes:
            outs.append(dec.push(z[:, :, i : i + n]))
            i += n
        outs.append(dec.flush())
    return torch.cat(outs, dim=2)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("kind", ["ones", "primes", "random", "whole"])
@torch.no_grad()
def test_stream_equals_direct(model, length, kind):
    rng = random.Random(length * 31 + len(kind))
    x = torch.rand(1, 3, length, 16, 24, generator=torch.Generator().manual_seed(length)) * 2 - 1
    direct = model.encode(x)
    streamed = _stream_encode(model, x, _splits(length, kind, rng))
    assert streamed.shape == direct.mean.shape
    torch.testing.assert_close(streamed, direct.mean, rtol=0, atol=ATOL)

    z = direct.mean
    decoded = model.decode(z)
    assert decoded.shape[2] == length
    streamed_dec = _stream_decode(model, z, _splits(z.shape[2], kind, rng))
    assert streamed_dec.shape == decoded.shape
    torch.testing.assert_close(streamed_dec, decoded, rtol=0, atol=ATOL)


@pytest.mark.parametrize("length", [1, 5, 9, 17])
@pytest.mark.parametrize("kind", ["ones", "primes", "whole"])
@torch.no_grad()
def test_final_push_equals_push_and_flush(model, length, kind):
    """push(final=True) ends the stream in the same pass: no flush pass, the same frames."""
    gen = torch.Generator().manual_seed(length)
    z = torch.randn(1, model.config.latent_dim, (length - 1) // 4 + 1, 2, 3, generator=gen)
    decoded = model.decode(z)
    sizes = _splits(z.shape[2], kind, random.Random(length))
    with model.stream_decoder() as dec:
        pieces, start = [], 0
        for i, size in enumerate(sizes):
            pieces.append(dec.push(z[:, :, start : start + size], final=i == len(sizes) - 1))
            start += size
        assert dec.closed
    torch.testing.assert_close(torch.cat(pieces, dim=2), decoded, rtol=0, atol=ATOL)


@pytest.mark.parametrize("chunk", [1, 2, 4, 7, 8, 16])
@torch.no_grad()
def test_chunk_frames_argument(model, chunk):
    x = torch.rand(2, 3, 33, 16, 16) * 2 - 1
    direct = model.encode(x)
    chunked = model.encode(x, chunk_frames=chunk)
    torch.testing.assert_close(chunked.mean, direct.mean, rtol=0, atol=ATOL)
    torch.testing.assert_close(chunked.logvar, direct.logvar, rtol=0, atol=ATOL)
    decoded_chunked = model.decode(direct.mean, chunk_frames=chunk)
    torch.testing.assert_close(decoded_chunked, model.decode(direct.mean), rtol=0, atol=ATOL)


@pytest.mark.parametrize("t_interpolation", ["trilinear", "nearest"])
@torch.no_grad()
def test_eight_x_variant_streams_exactly(t_interpolation):
    model = tiny_model(seed=2, t_interpolation=t_interpolation, **EIGHT_X)
    for length in (1, 9, 17, 33):
        x = torch.rand(1, 3, length, 16, 16) * 2 - 1
        direct = model.encode(x)
        assert direct.mean.shape[2] == (length - 1) // 8 + 1
        streamed = _stream_encode(model, x, _splits(length, "random", random.Random(length)))
        torch.testing.assert_close(streamed, direct.mean, rtol=0, atol=ATOL)
        decoded = model.decode(direct.mean)
        assert decoded.shape[2] == length
        sd = _stream_decode(model, direct.mean, [1] * direct.mean.shape[2])
        torch.testing.assert_close(sd, decoded, rtol=0, atol=ATOL)


@torch.no_grad()
def test_many_lengths_in_one_process(model):
    """The official model latches the first tiled length; sessions here are independent."""
    for length in (33, 9, 17, 1, 65, 5):
        x = torch.rand(1, 3, length, 16, 16) * 2 - 1
        torch.testing.assert_close(model.encode(x, chunk_frames=4).mean, model.encode(x).mean, rtol=0, atol=ATOL)


@torch.no_grad()
def test_sessions_interleave(model):
    xa, xb = torch.rand(1, 3, 17, 16, 16), torch.rand(1, 3, 9, 16, 16)
    with model.stream_encoder() as a, model.stream_encoder() as b:
        parts_a = [a.push(xa[:, :, :5]).mean]
        parts_b = [b.push(xb[:, :, :4]).mean]
        parts_a += [a.push(xa[:, :, 5:]).mean, a.flush().mean]
        parts_b += [b.push(xb[:, :, 4:]).mean, b.flush().mean]
    torch.testing.assert_close(torch.cat(parts_a, 2), model.encode(xa).mean, rtol=0, atol=ATOL)
    torch.testing.assert_close(torch.cat(parts_b, 2), model.encode(xb).mean, rtol=0, atol=ATOL)


class TestLengthPolicy:
    @torch.no_grad()
    def test_error_is_default(self, model):
        x = torch.rand(1, 3, 16, 16, 16)
        with pytest.raises(WfvaeError, match=r"16 frames.*4k\+1"):
            model.encode(x)
        with pytest.raises(WfvaeError, match="16 frames"):
            model.encode(x, chunk_frames=4)

    @torch.no_grad()
    def test_trim_drops_trailing_frames(self, model):
        x = torch.rand(1, 3, 16, 16, 16)
        with pytest.warns(UserWarning, match="dropping the last 3"):
            trimmed = model.encode(x, length_policy="trim")
        torch.testing.assert_close(trimmed.mean, model.encode(x[:, :, :13]).mean, rtol=0, atol=ATOL)
        with pytest.warns(UserWarning):
            chunked = model.encode(x, chunk_frames=3, length_policy="trim")
        torch.testing.assert_close(chunked.mean, trimmed.mean, rtol=0, atol=ATOL)

    @torch.no_grad()
    def test_pad_repeats_last_frame(self, model):
        x = torch.rand(1, 3, 15, 16, 16)
        padded = torch.cat([x, x[:, :, -1:].expand(-1, -1, 2, -1, -1)], dim=2)
        expected = model.encode(padded).mean
        assert expected.shape[2] == 5
        torch.testing.assert_close(model.encode(x, length_policy="pad").mean, expected, rtol=0, atol=ATOL)
        padded = model.encode(x, chunk_frames=2, length_policy="pad").mean
        torch.testing.assert_close(padded, expected, rtol=0, atol=ATOL)


@torch.no_grad()
def test_stream_memory_is_bounded(model):
    """The cache holds a few frames per layer, independent of how many frames went through."""
    sizes = []
    with model.stream_encoder(chunk_frames=8) as enc:
        for _ in range(8):
            enc.push(torch.rand(1, 3, 8, 16, 16))
            sizes.append(enc.cache.nbytes())
    assert max(sizes) == min(sizes[1:]) and sizes[-1] < 64 * 1024


def test_groupnorm_model_refuses_streaming():
    from ..conftest import tiny_config

    model = WFVAE(
        tiny_config(norm_type="groupnorm", base_channels=32, encoder_energy_flow_hidden_size=32,
                    decoder_energy_flow_hidden_size=32)
    ).eval()
    x = torch.rand(1, 3, 5, 16, 16)
    with torch.no_grad():
        model.encode(x)  # direct works
        with pytest.raises(WfvaeError, match="groupnorm"):
            model.encode(x, chunk_frames=4)


def test_closed_session_cannot_be_reused(model):
    enc = model.stream_encoder()
    with torch.no_grad():
        enc.push(torch.rand(1, 3, 5, 16, 16))
        enc.flush()
    with pytest.raises(RuntimeError, match="closed"):
        enc.push(torch.rand(1, 3, 4, 16, 16))


@pytest.mark.parametrize(
    "start, n, step, sizes",
    [
        (0, 17, 16, [17]),  # a 4k+1 clip with chunk 4k is one piece: the causal frame rides along
        (0, 33, 16, [17, 16]),
        (0, 40, 8, [9, 8, 8, 8, 7]),
        (5, 20, 4, [4, 4, 4, 4, 4]),  # a later push continues the same grid of cuts
        (1, 8, 4, [4, 4]),
        (0, 1, 4, [1]),
        (0, 12, None, [12]),
    ],
)
def test_chunks_are_cut_at_one_plus_multiples_of_the_chunk(start, n, step, sizes):
    from wfvae_cli.model.streaming import StreamEncoder

    pieces = StreamEncoder._pieces(torch.zeros(1, 3, n, 8, 8), step, start)
    assert [p.shape[2] for p in pieces] == sizes


def test_encoder_runs_a_4k_plus_1_clip_in_one_piece_with_chunk_4k(model, monkeypatch):
    calls = []
    forward = model.encoder.forward
    monkeypatch.setattr(model.encoder, "forward", lambda x, cache=None: calls.append(x.shape[2]) or forward(x, cache))
    with torch.no_grad():
        model.encode(torch.rand(1, 3, 17, 16, 16) * 2 - 1, chunk_frames=16)
    assert calls == [17]


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_saved_session_continues_bit_identically(model, cut):
    """state_dict() after any push, saved with torch.save and loaded into a new session: the same bits as an
    uninterrupted stream (what --clip-mode full checkpoints rely on)."""
    import io

    torch.manual_seed(0)
    x = torch.rand(1, 3, 33, 32, 32) * 2 - 1
    chunks = [x[:, :, i : i + 8] for i in range(0, 33, 8)]
    with torch.inference_mode():
        with model.stream_encoder(chunk_frames=8) as enc:
            whole = [enc.push(c) for c in chunks] + [enc.flush()]
        with model.stream_encoder(chunk_frames=8) as enc:
            first = [enc.push(c) for c in chunks[:cut]]
            buf = io.BytesIO()
            torch.save(enc.state_dict(), buf)
        saved = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
        assert sum(t.numel() for t in saved["cache"].values() if isinstance(t, torch.Tensor)) > 0
        with model.stream_encoder(chunk_frames=8) as enc:
            enc.load_state_dict(saved)
            rest = [enc.push(c) for c in chunks[cut:]] + [enc.flush()]
    for a, b in zip(whole, first + rest, strict=True):
        assert torch.equal(a.mean, b.mean) and torch.equal(a.logvar, b.logvar)
