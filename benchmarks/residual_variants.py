"""Residual coders compared by benchmarks/residual_proxies.py: each takes (original, base, step) and gives
(the stream's bytes, the decoded image), decoding its own stream."""

from __future__ import annotations

import numpy as np

from dqcodec import residual
from dqcodec.entropy import StreamDecoder, StreamEncoder
from dqcodec.recorder import Recorder


def v1(original: np.ndarray, base: np.ndarray, step: int) -> tuple[bytes, np.ndarray]:
    """dq-2's residual layer as shipped."""
    stream = StreamEncoder()
    residual.encode(original, base, step, stream, rate_weight=0)
    data = stream.to_bytes()
    decoded = residual.add(base, residual.decode(*base.shape[:2], step, StreamDecoder(data)))
    return data, decoded


VARIANTS = {"v1": v1}


def symbol_bits(tables: residual.Tables, channel: int, band: int, context: int) -> np.ndarray:
    """-log2 p of every value -L..L under a (channel, band, context)'s table (empty if L = 0)."""
    if not tables.largest(channel, band, context):
        return np.zeros(1)
    frequencies = tables.get(channel, band, context)[0]
    return -np.log2(frequencies / frequencies.sum())


def rdo_quantize(coefficients: np.ndarray, start: np.ndarray, weight: float, passes: int = 2) -> np.ndarray:
    """Greedy rate-distortion rounding of coefficients (in steps): each picks 0, floor or floor + 1 of its
    magnitude, whichever costs least in (error in steps)^2 + weight * bits under the tables fitted to the
    previous pass's choice and their contexts."""
    quantized = start.copy()
    magnitude = np.abs(coefficients)
    sign = np.where(coefficients < 0, -1, 1)
    low = np.floor(magnitude).astype(np.int64)
    for _ in range(passes):
        magnitudes = np.abs(quantized)
        contexts = [[residual.band_contexts(magnitudes, c, b) for b in range(64)] for c in range(3)]
        tables = residual.Tables(residual._fit(quantized, contexts))
        chosen = quantized.copy()
        for channel in range(3):
            for band in range(64):
                for context in range(residual.CONTEXTS):
                    where = contexts[channel][band] == context
                    if not where.any():
                        continue
                    largest = tables.largest(channel, band, context)
                    bits = symbol_bits(tables, channel, band, context)
                    m = magnitude[channel, :, :, band][where]
                    s = sign[channel, :, :, band][where]
                    candidates = np.stack(
                        [
                            np.zeros_like(m, dtype=np.int64),
                            low[channel, :, :, band][where],
                            low[channel, :, :, band][where] + 1,
                        ]
                    )
                    candidates = np.minimum(candidates, largest)
                    cost = (m - candidates) ** 2 + weight * bits[s * candidates + largest]
                    best = candidates[np.argmin(cost, axis=0), np.arange(m.size)]
                    chosen[channel, :, :, band][where] = s * best
        quantized = chosen
    return quantized


def rdoq(original: np.ndarray, base: np.ndarray, step: int, weight: float = 0.12) -> tuple[bytes, np.ndarray]:
    """Encoder only: rate-distortion optimised rounding; the stream decodes with dq-2's decoder."""
    difference = original.astype(np.int64) - base
    coefficients = residual.forward(difference) / step
    quantized = rdo_quantize(coefficients, residual.quantize(difference, step), weight)
    stream = StreamEncoder()
    residual.encode_quantized(quantized, step, stream)
    data = stream.to_bytes()
    decoded = residual.add(base, residual.decode(*base.shape[:2], step, StreamDecoder(data)))
    return data, decoded


def deblock_edges(values: np.ndarray, beta: int, tc: int, axis: int) -> np.ndarray:
    """HEVC's weak filter across every 8-pixel block edge along an axis of (h, w, c) int64 values, line by
    line: where both sides are smooth (second differences below beta) and the step across the edge is
    below 10 tc, move the two pixels next to the edge towards each other by at most tc."""
    out = np.moveaxis(values.copy(), axis, 0)
    edges = np.arange(residual.BLOCK, out.shape[0] - 2, residual.BLOCK)
    edges = edges[edges >= 3]
    if not len(edges):
        return np.moveaxis(out, 0, axis)
    p2, p1, p0, q0, q1, q2 = (out[edges + k] for k in (-3, -2, -1, 0, 1, 2))
    smooth = np.abs(p2 - 2 * p1 + p0) + np.abs(q2 - 2 * q1 + q0) < beta
    delta = (9 * (q0 - p0) - 3 * (q1 - p1) + 8) >> 4
    apply = smooth & (np.abs(delta) < 10 * tc)
    delta = np.clip(delta, -tc, tc) * apply
    out[edges - 1] = p0 + delta
    out[edges] = q0 - delta
    return np.moveaxis(out, 0, axis)


def deblocked(original, base, step, beta_scale=1.0, tc_scale=0.25, on="difference", weight=None):
    difference = original.astype(np.int64) - base
    quantized = residual.quantize(difference, step)
    if weight is not None:
        quantized = rdo_quantize(residual.forward(difference) / step, quantized, weight)
    stream = StreamEncoder()
    residual.encode_quantized(quantized, step, stream)
    data = stream.to_bytes()
    decoded_difference = residual.decode(*base.shape[:2], step, StreamDecoder(data))
    beta, tc = max(1, int(beta_scale * step)), max(1, int(tc_scale * step))
    if not beta_scale:
        return data, residual.add(base, decoded_difference)
    if on == "difference":
        filtered = deblock_edges(deblock_edges(decoded_difference, beta, tc, 1), beta, tc, 0)
        return data, residual.add(base, filtered)
    image = residual.add(base, decoded_difference).astype(np.int64)
    filtered = deblock_edges(deblock_edges(image, beta, tc, 1), beta, tc, 0)
    return data, np.clip(filtered, 0, 255).astype(np.uint8)


def code(variant: str, original: np.ndarray, base: np.ndarray, step: int) -> tuple[bytes, np.ndarray]:
    """A variant by name: v1, or levers joined by '+': rdoq<weight> (rdoq0.12), db<beta>-<tc> (deblock the
    difference, scales of the step), dbi<beta>-<tc> (deblock the image)."""
    if variant in VARIANTS:
        return VARIANTS[variant](original, base, step)
    options: dict = {}
    for lever in variant.split("+"):
        if lever.startswith("rdoq"):
            options["weight"] = float(lever[4:])
        elif lever.startswith("dbi") or lever.startswith("db"):
            on, numbers = ("image", lever[3:]) if lever.startswith("dbi") else ("difference", lever[2:])
            beta, tc = numbers.split("-")
            options.update(beta_scale=float(beta), tc_scale=float(tc), on=on)
        else:
            raise ValueError(f"unknown lever {lever!r}")
    if "beta_scale" not in options:
        options.update(beta_scale=0.0, tc_scale=0.0)
    return deblocked(original, base, step, **options)


def fast_rdoq(original, base, step, weight=residual.RATE_WEIGHT):
    stream = StreamEncoder()
    residual.encode(original, base, step, stream, rate_weight=weight)
    data = stream.to_bytes()
    return data, residual.add(base, residual.decode(*base.shape[:2], step, StreamDecoder(data)))


VARIANTS["fast-rdoq"] = fast_rdoq


def library_deblock(original, base, step):
    data, decoded = fast_rdoq(original, base, step)
    return data, residual.deblock(decoded, step)


VARIANTS["rdoq+deblock"] = library_deblock


def shipped_dq3(original, base, step):
    """dq-3's residual coder as the library runs it: rate-distortion rounding, the difference deblocked."""
    codec = residual.ResidualCodec(step, deblocking=True, rate_weight=residual.RATE_WEIGHT)
    stream = StreamEncoder()
    codec.compress(original, base, stream)
    data = stream.to_bytes()
    return data, codec.decompress(base, StreamDecoder(data), Recorder())


VARIANTS["dq3"] = shipped_dq3
