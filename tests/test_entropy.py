import numpy as np
import pytest
import torch

from dqcodec import exact
from dqcodec.entropy import PROBABILITY_BITS, CorruptStreamError, StreamDecoder, StreamEncoder, ideal_bits


def quantize_probabilities(logits):
    return exact.logits_to_frequencies(exact.to_fixed(logits), PROBABILITY_BITS)


def tables(n, k, seed=0):
    logits = torch.randn(1, k, 1, n, generator=torch.Generator().manual_seed(seed)) * 3
    return quantize_probabilities(logits)


def sample(frequencies, seed=0):
    rng = np.random.default_rng(seed)
    p = frequencies / frequencies.sum(-1, keepdims=True)
    return np.array([rng.choice(len(row), p=row) for row in p])


def test_quantized_tables_are_integers_with_no_zero():
    f = quantize_probabilities(torch.tensor([[[[-1e4]], [[0.0]], [[1e4]]]]))
    assert f.shape == (1, 3)
    assert (f >= 1).all() and np.array_equal(f, np.round(f))


def test_round_trip_of_several_chunks_in_one_stream():
    chunks = [tables(500, 16, seed) for seed in range(3)]
    symbols = [sample(f, seed) for seed, f in enumerate(chunks)]
    encoder = StreamEncoder()
    for s, f in zip(symbols, chunks):
        encoder.encode(s, f)
    data = encoder.to_bytes()
    decoder = StreamDecoder(data)
    for s, f in zip(symbols, chunks):
        assert np.array_equal(decoder.decode(f), s)
    decoder.finish()


def test_payload_is_within_half_a_percent_of_the_ideal():
    f = tables(20000, 64)
    s = sample(f)
    encoder = StreamEncoder()
    encoder.encode(s, f)
    actual = 8 * len(encoder.to_bytes())
    ideal = ideal_bits(s, f)
    assert ideal <= actual <= 1.005 * ideal + 64


def test_a_stream_that_is_not_whole_words_is_rejected():
    with pytest.raises(CorruptStreamError):
        StreamDecoder(b"\x00\x01\x02")


def test_leftover_data_is_reported():
    f = tables(100, 8)
    s = sample(f)
    encoder = StreamEncoder()
    encoder.encode(s, f)
    decoder = StreamDecoder(encoder.to_bytes() + b"\x12\x34\x56\x78" * 4)
    decoder.decode(f)
    with pytest.raises(CorruptStreamError):
        decoder.finish()


def _encoded(f, s) -> bytes:
    encoder = StreamEncoder()
    encoder.encode(s, f)
    return encoder.to_bytes()


@pytest.mark.parametrize("word", [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x00\x00\x00"])
def test_one_extra_word_after_a_stream_is_refused(word):
    f = tables(100, 8)
    decoder = StreamDecoder(_encoded(f, sample(f)) + word)
    decoder.decode(f)
    with pytest.raises(CorruptStreamError, match="left over"):
        decoder.finish()


def test_an_emptied_or_cut_stream_is_refused():
    f = tables(300, 16)
    data = _encoded(f, sample(f))
    for damaged in (b"", data[:-4], data[4:]):
        decoder = StreamDecoder(damaged)
        with pytest.raises(CorruptStreamError):
            decoder.decode(f)
            decoder.finish()


def test_whatever_the_coder_raises_on_bad_words_is_a_corrupt_stream():
    # random words under extreme tables make constriction fail its own assertions; the caller sees one error class
    rng = np.random.default_rng(0)
    failures = 0
    for _ in range(300):
        words = rng.integers(0, 2**32, int(rng.integers(1, 5)), dtype=np.uint64).astype("<u4").tobytes()
        f = rng.integers(1, 1000, (int(rng.integers(1, 40)), int(rng.integers(2, 300)))).astype(np.float64)
        try:
            decoder = StreamDecoder(words)
            decoder.decode(f)
            decoder.finish()
        except CorruptStreamError:
            failures += 1
    assert failures > 250  # random words are almost never a valid stream
