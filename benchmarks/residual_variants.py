"""Residual coders compared by benchmarks/residual_proxies.py: each takes (original, base, step) and gives
(the stream's bytes, the decoded image), decoding its own stream. The levers are the library's own
(``residual.rate_distortion_round``, ``residual._deblock_edges``) with their strengths as parameters."""

from __future__ import annotations

import numpy as np

from dqcodec import residual
from dqcodec.entropy import StreamDecoder, StreamEncoder
from dqcodec.recorder import Recorder


def _coded(quantized: np.ndarray, base: np.ndarray, step: int) -> tuple[bytes, np.ndarray]:
    """The stream of chosen coefficients, and the difference it decodes to."""
    stream = StreamEncoder()
    residual.encode_quantized(quantized, step, stream)
    data = stream.to_bytes()
    return data, residual.decode(*base.shape[:2], step, StreamDecoder(data))


def _deblocked(values: np.ndarray, beta: int, limit: int) -> np.ndarray:
    return residual._deblock_edges(residual._deblock_edges(values, beta, limit, 1), beta, limit, 0)


def levers(original, base, step, beta_scale=0.0, tc_scale=0.0, on="difference", weight=None):
    """Dead-zone or rate-distortion rounding (``weight``), then deblocking of the difference or of the image
    with threshold and limit scaled by the step (none when ``beta_scale`` is 0)."""
    difference = original.astype(np.int64) - base
    quantized = residual.quantize(difference, step)
    if weight is not None:
        quantized = residual.rate_distortion_round(residual.forward(difference) / step, quantized, weight)
    data, decoded_difference = _coded(quantized, base, step)
    if not beta_scale:
        return data, residual.add(base, decoded_difference)
    beta, limit = max(1, int(beta_scale * step)), max(1, int(tc_scale * step))
    if on == "difference":
        return data, residual.add(base, _deblocked(decoded_difference, beta, limit))
    image = residual.add(base, decoded_difference).astype(np.int64)
    return data, np.clip(_deblocked(image, beta, limit), 0, 255).astype(np.uint8)


def v1(original, base, step):
    """dq-2's residual layer as shipped."""
    return levers(original, base, step)


def rdoq(original, base, step):
    return levers(original, base, step, weight=residual.RATE_WEIGHT)


def rdoq_deblocking_the_image(original, base, step):
    """Rounding for rate, and the library's filter on the decoded image (session 19's proxies)."""
    return levers(
        original, base, step, residual.DEBLOCK_BETA, residual.DEBLOCK_LIMIT, on="image", weight=residual.RATE_WEIGHT
    )


def shipped_dq3(original, base, step):
    """dq-3's residual coder as the library runs it: rate-distortion rounding, the difference deblocked."""
    codec = residual.ResidualCodec(step, deblocking=True, rate_weight=residual.RATE_WEIGHT)
    stream = StreamEncoder()
    codec.compress(original, base, stream)
    data = stream.to_bytes()
    return data, codec.decompress(base, StreamDecoder(data), Recorder())


VARIANTS = {"v1": v1, "fast-rdoq": rdoq, "rdoq+deblock": rdoq_deblocking_the_image, "dq3": shipped_dq3}


def code(variant: str, original: np.ndarray, base: np.ndarray, step: int) -> tuple[bytes, np.ndarray]:
    """A variant by name, or levers joined by '+': rdoq<weight> (rdoq0.12), db<beta>-<tc> (deblock the
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
    return levers(original, base, step, **options)
