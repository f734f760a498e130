import math

import numpy as np
import pytest
import torch

from dqcodec import exact
from dqcodec.entropy import StreamDecoder, StreamEncoder
from dqcodec.pixel_codec import PixelCodec
from dqcodec.pixel_model import BLOCK, PixelModel


class Recorder:
    """A stand-in for the coder's recorder: the (table, symbols) pairs decoded and the units of work done."""

    def __init__(self):
        self.pairs, self.advances = [], 0

    def record(self, frequencies: np.ndarray, symbols: np.ndarray) -> None:
        self.pairs.append((frequencies, symbols))

    def advance(self) -> None:
        self.advances += 1


def _tile(seed: int, height: int = 16, width: int = 24, feature_channels: int = 6):
    """An untrained pixel likelihood, random 8-bit pixels x (/ 255), and random fixed-point features and x_hat."""
    torch.manual_seed(seed)
    model = PixelModel(feature_channels, mixtures=2, hidden=8).eval()
    x = torch.randint(0, 256, (1, 3, height, width)).float() / 255
    x_hat = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    features = torch.randn(1, feature_channels, height // 2, width // 2)
    return model, x, exact.to_fixed(features), exact.to_fixed(x_hat)


def _round_trip(codec: PixelCodec, features, x_hat, x, size):
    encoder_recorder, decoder_recorder = Recorder(), Recorder()
    stream = StreamEncoder()
    codec.compress(features, x_hat, x, size, stream, encoder_recorder)
    data = stream.to_bytes()
    decoder = StreamDecoder(data)
    decoded = codec.decompress(features, x_hat, size, decoder, decoder_recorder)
    decoder.finish()
    return data, decoded, encoder_recorder, decoder_recorder


@pytest.mark.parametrize("tolerance", [0, 2])
def test_pixel_codec_decodes_exactly_or_within_twice_the_tolerance(tolerance):
    model, x, features, x_hat = _tile(tolerance)
    size = (13, 21)  # the region's part inside the image: the rest is not coded
    data, decoded, encoded_by, decoded_by = _round_trip(PixelCodec(model, tolerance), features, x_hat, x, size)
    original = (x * 255).round().long()
    assert decoded.shape == x.shape and decoded.dtype == torch.long
    error = (decoded - original)[..., : size[0], : size[1]].abs()
    assert error.max() <= 2 * tolerance and (error.max() > 0) == (tolerance > 0)
    assert not decoded[..., size[0] :, :].any() and not decoded[..., size[1] :].any()
    assert encoded_by.advances == decoded_by.advances == BLOCK**2
    assert (
        not encoded_by.pairs and len(decoded_by.pairs) == 2 * 3 * BLOCK**2
    )  # per position and channel: the window's table, the tails'
    for frequencies, symbols in decoded_by.pairs:
        assert frequencies.shape[0] == len(symbols)
    # the recorded pairs are what the stream holds: their ideal length is the payload's, to the coder's rounding
    ideal = sum(-np.log2(f[np.arange(len(s)), s] / f.sum(1)).sum() for f, s in decoded_by.pairs)
    assert abs(8 * len(data) - ideal) <= 0.02 * ideal + 64


def test_pixel_codec_writes_the_same_stream_whatever_its_workers():
    model, x, features, x_hat = _tile(5)
    streams = []
    for workers in (1, 2, None):
        stream = StreamEncoder()
        PixelCodec(model, workers=workers).compress(features, x_hat, x, (16, 24), stream, Recorder())
        streams.append(stream.to_bytes())
    assert streams[0] == streams[1] == streams[2]
    decoded = PixelCodec(model).decompress(features, x_hat, (16, 24), StreamDecoder(streams[0]), None)  # no recorder
    assert torch.equal(decoded, (x * 255).round().long())


def test_pixel_codec_bits_are_the_continuous_mixtures_code_length():
    model, x, features, x_hat = _tile(7)
    features, x_hat = exact.to_float(features), exact.to_float(x_hat)
    codec = PixelCodec(model)
    whole, part = codec.bits(features, x_hat, x, (16, 24)), codec.bits(features, x_hat, x, (8, 24))
    with torch.no_grad():
        log_prob = model.log_prob(model.context(features, x_hat), x_hat, (x * 255).round())
    assert math.isclose(whole, float(-log_prob.sum() / math.log(2)), rel_tol=1e-5)
    assert 0 < part < whole


def test_pixel_codec_refuses_a_tolerance_its_tables_cannot_code():
    with pytest.raises(ValueError, match="tolerance"):
        PixelCodec(PixelModel(6, 2, 8), tolerance=16)
