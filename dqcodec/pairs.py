"""Pair files: two views of one scene (stereo, a burst, two exposures) in one file (issue 32).

A pair file holds a common stream and one local stream per view (docs/bitstream.md, "Pair files"):

- the **common stream** is a whole single-image .dq file of view 0, the reference view: the part
  of the scene both views are decoded from;
- **view 0's local stream** is empty: view 0 is the common stream's image;
- **view 1's local stream** codes view 1 in one of three ways (``ViewCoding``): *predicted* from the
  common stream's decoded image (``disparity``: one vector per 16x16 block and a gain and offset per channel,
  then the residual layer, ``residual.ResidualCodec``, coding view 1 minus that prediction at the quality's
  step); *mixed*, its own codes too, each block's base the closest of their image, the prediction and the
  mean of both (``Base``); or its *own* .dq file when
  prediction does not pay (an unrelated pair, a near-lossless quality). The encoder codes every way the
  quality allows and keeps the one of least squared error + lambda * bits, lambda the residual encoder's own
  weight of bits (``RATE_WEIGHT * step^2``).

Decoding view 0 reads the common stream alone; decoding view 1 reads the common stream and its own local
stream (its own file alone, when it was coded on its own). Nothing in a local stream's tables depends on
pixels, so a reference image that differs by a grey level between machines (the lossy synthesis runs in
float) changes view 1 by as much and never desynchronizes its stream, as for single residual files.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from PIL import Image

from . import container, disparity, residual, tiling
from .defaults import DEFAULT_MAX_PIXELS
from .entropy import StreamDecoder, StreamEncoder
from .errors import ArgumentError, ContainerError, CorruptStreamError
from .images import ImageLike, load_image, rgb_and_mode
from .point import MAX_STEP, Kind, Ladder, OperatingPoint
from .recorder import Recorder

MAGIC = container.PAIR_MAGIC
VERSION = 2  # version 2 adds the photometric correction and the mean of both bases to version 1's local stream
READABLE = (1, 2)
VIEWS = 2
_FIXED = struct.Struct("<4sBB3I")  # magic, version, view 1's coding, lengths of common, local 0, local 1
_PREDICTED = struct.Struct("<BIIBHI")  # view 1 predicted: mode, height, width, residual step, tile / 16, codes bytes
_CRC = struct.Struct("<I")
STEP_RATIO = 1.3  # between residual steps of neighbouring qualities, when a model has one (dq-3: 116 / 88)


class Base(IntEnum):
    """What a mixed view's block takes as its residual's base (version 1: CODES or PREDICTION only)."""

    CODES = 0  # the image of view 1's own codes
    PREDICTION = 1  # the prediction from view 0
    MEAN = 2  # their rounded mean


class ViewCoding(IntEnum):
    OWN = 0  # view 1's local stream is a .dq file of its own
    PREDICTED = 1  # disparity vectors, then the residual of view 1 against its prediction from view 0
    MIXED = 2  # view 1's own codes (a lossy .dq file), then per block whether the codes' image or the
    # prediction is the base, the vectors, and the residual against that base


@dataclass(frozen=True)
class PredictedHeader:
    mode: str
    height: int
    width: int
    step: int
    tile: int
    codes_bytes: int = 0  # MIXED: the length of the codes' .dq file that follows the header


@dataclass(frozen=True)
class PairFile:
    """A pair file's streams, checked: the common stream (view 0's .dq file) and view 1's local stream."""

    coding: ViewCoding
    common: bytes
    local: tuple[bytes, bytes]
    version: int = VERSION

    @property
    def stream_bytes(self) -> dict[str, int]:
        return {"common": len(self.common), "local 0": len(self.local[0]), "local 1": len(self.local[1])}


def is_pair(data: bytes | memoryview) -> bool:
    return bytes(data[:4]) == MAGIC


# ---- the container ------------------------------------------------------------------------------


def pack(coding: ViewCoding, common: bytes, local: tuple[bytes, bytes]) -> bytes:
    body = _FIXED.pack(MAGIC, VERSION, int(coding), len(common), *map(len, local)) + common + b"".join(local)
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: bytes) -> PairFile:
    if len(data) < _FIXED.size + _CRC.size or not is_pair(data):
        raise ContainerError("not a dq pair file (bad magic bytes or too short)")
    magic, version, coding, *lengths = _FIXED.unpack_from(data)
    if version not in READABLE:
        raise ContainerError(
            f"dq pair format version {version} is not supported (this dqcodec reads {READABLE[0]} to {READABLE[-1]})"
        )
    if zlib.crc32(data[: -_CRC.size]) != _CRC.unpack_from(data, len(data) - _CRC.size)[0]:
        raise ContainerError("checksum mismatch: the file is truncated or corrupted")
    if coding not in iter(ViewCoding):
        raise ContainerError(f"unknown coding {coding} of view 1")
    if _FIXED.size + sum(lengths) + _CRC.size != len(data):
        raise ContainerError("stream lengths do not match the file size")
    if lengths[1]:
        raise ContainerError(f"view 0's local stream must be empty in pair format {version}")
    streams, offset = [], _FIXED.size
    for length in lengths:
        streams.append(bytes(data[offset : offset + length]))
        offset += length
    return PairFile(ViewCoding(coding), streams[0], (streams[1], streams[2]), version)


def _pack_predicted(header: PredictedHeader, codes: bytes, stream: bytes) -> bytes:
    mode = container.MODES.index(header.mode)
    fields = _PREDICTED.pack(mode, header.height, header.width, header.step, header.tile // 16, len(codes))
    return fields + codes + stream


def _unpack_predicted(local: bytes, max_pixels: int | None) -> tuple[PredictedHeader, bytes, bytes]:
    """View 1's header, its codes' .dq file (MIXED; empty for PREDICTED) and its stream."""
    if len(local) < _PREDICTED.size:
        raise ContainerError("view 1's local stream is truncated inside its header")
    mode, height, width, step, tile, codes_bytes = _PREDICTED.unpack_from(local)
    if mode >= len(container.MODES) or not 1 <= step <= MAX_STEP:
        raise ContainerError("malformed header of view 1: bad mode or residual step")
    if _PREDICTED.size + codes_bytes > len(local):
        raise ContainerError("view 1's codes are longer than its local stream")
    container.check_pixels(height, width, max_pixels)
    container.check_tile(16 * tile, height, width)
    header = PredictedHeader(container.MODES[mode], height, width, step, 16 * tile, codes_bytes)
    end = _PREDICTED.size + codes_bytes
    return header, local[_PREDICTED.size : end], local[end:]


# ---- encoding -----------------------------------------------------------------------------------


def compress_pair(
    first: ImageLike,
    second: ImageLike,
    quality: int | None = None,
    model: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    coding: ViewCoding | None = None,
) -> bytes:
    """The bytes of a pair file of two views (paths, PIL images or arrays, as ``dqcodec.compress`` takes),
    both at one quality of one model. ``coding`` forces how view 1 is coded (None: the encoder codes it every
    way the quality allows and keeps the one of least squared error + lambda * bits)."""
    from . import codec

    if coding is not None and coding not in list(ViewCoding):
        raise ArgumentError(f"coding is one of {', '.join(c.name for c in ViewCoding)} or None, got {coding!r}")
    views = [rgb_and_mode(load_image(image, max_pixels)) for image in (first, second)]
    common = codec.compress(_as_mode(*views[0]), quality=quality, model=model, max_pixels=max_pixels)
    opened = codec.open_file(common, max_pixels)
    step = prediction_step(opened.point, opened.config)
    if coding not in (None, ViewCoding.OWN) and not step:
        raise ArgumentError(f"quality {opened.header.quality} codes no residual, so view 1 cannot be predicted")
    tried = [coding] if coding is not None else list(ViewCoding) if step else [ViewCoding.OWN]
    reference = codec.decode_file(opened) if tried != [ViewCoding.OWN] else None
    estimate = _estimate(_rgb_array(reference), np.asarray(views[1][0])) if reference is not None else None
    codes = _codes_file(views[1], opened) if ViewCoding.MIXED in tried else b""
    candidates = [
        (c, _encode_second(c, views[1], opened, step, estimate, gains, codes))
        for c in tried
        for gains in ((disparity.IDENTITY_GAINS, estimate.gains) if c != ViewCoding.OWN and estimate else (None,))
    ]
    chosen, local = min(candidates, key=lambda c: _cost(c[1], c[0], opened, reference, views[1][0], step))
    return pack(chosen, common, (b"", local))


@dataclass(frozen=True)
class _Estimate:
    """What the encoder finds once for every way of predicting view 1: its vectors, its prediction from view 0
    and that prediction's fitted photometric correction."""

    target: np.ndarray
    vectors: np.ndarray
    prediction: np.ndarray
    gains: np.ndarray


def _estimate(reference_rgb: np.ndarray, target: np.ndarray) -> _Estimate:
    vectors = disparity.estimate(reference_rgb, target)
    prediction = disparity.predict(reference_rgb, vectors, *target.shape[:2])
    return _Estimate(target, vectors, prediction, disparity.fit_gains(prediction, target))


def _codes_file(view: tuple[Image.Image, str], opened) -> bytes:
    """View 1's own codes (a lossy .dq file at the common file's codes quality), for the mixed coding."""
    from . import codec

    rgb, mode = view
    return codec.compress(
        _as_mode(rgb, mode), quality=opened.point.codes_quality, model=opened.header.model, max_pixels=None
    )


def _encode_second(
    coding: ViewCoding,
    view: tuple[Image.Image, str],
    opened,
    step: int,
    estimate: _Estimate | None,
    gains: np.ndarray | None,
    codes: bytes,
) -> bytes:
    """View 1's local stream coded one way: predicted or mixed with those photometric gains (the encoder tries
    the identity and the fitted ones: on its tuning pairs of a real stereo rig, a fitted correction lost as
    often as it won), mixed with its codes' file, or on its own."""
    from . import codec

    rgb, mode = view
    if coding == ViewCoding.OWN:
        return codec.compress(
            _as_mode(rgb, mode), quality=opened.header.quality, model=opened.header.model, max_pixels=None
        )
    assert estimate is not None and gains is not None
    target, vectors = estimate.target, estimate.vectors
    height, width = target.shape[:2]
    base = disparity.apply_gains(estimate.prediction, gains)
    stream = StreamEncoder()
    if coding == ViewCoding.MIXED:
        vectors, base = _mixed_with(codes, vectors, base, target, stream)
    else:
        codes = b""
    disparity.encode_vectors(vectors, stream)
    disparity.encode_gains(gains, stream)
    layer = _residual_layer(step, opened.config)
    for cut in tiling.cut((height, width), container.MAX_TILE):
        layer.compress(target[cut.rows, cut.cols], base[cut.rows, cut.cols], stream)
    header = PredictedHeader(mode, height, width, step, container.MAX_TILE)
    return _pack_predicted(header, codes, stream.to_bytes())


def _mixed_with(codes: bytes, vectors: np.ndarray, prediction: np.ndarray, target: np.ndarray, stream: StreamEncoder):
    """A mixed view's vectors and base, given its own codes' file: each block's ``Base`` (into the stream) is the
    closest to the target of the codes' image, the prediction and their mean; unused vectors repeat their left
    neighbour's."""
    from . import codec

    own = _rgb_array(codec.decompress(codes, max_pixels=None))
    choices = _closest_bases(prediction, own, target)
    _encode_choices(choices, stream)
    return _fill_unused(vectors, choices != Base.CODES), _mixed_base(choices, prediction, own)


def _as_mode(rgb: Image.Image, mode: str) -> Image.Image:
    return rgb.convert("L") if mode == "L" else rgb


def _rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def prediction_step(point: OperatingPoint, config) -> int:
    """The residual step view 1 is predicted at for a file's point: a residual quality's own; a lossy
    quality's continued below the first residual step above it by the ratio of that step to the next one
    (``STEP_RATIO`` where there is none), once per lossy quality from it to that step; 0 (no prediction) for the
    pixel layers' qualities and for lossy qualities with no residual quality above them."""
    ladder = Ladder.from_config(config)
    if point.kind == Kind.RESIDUAL:
        return point.residual_step
    above = [p.residual_step for p in ladder.rungs()[point.quality :] if p.kind == Kind.RESIDUAL]
    if point.kind != Kind.LOSSY or not above:
        return 0
    ratio = above[0] / above[1] if len(above) > 1 else STEP_RATIO
    below = next(q for q in range(point.quality + 1, len(ladder) + 1) if not ladder.is_lossy(q)) - point.quality
    return int(min(MAX_STEP, round(above[0] * ratio**below)))


def _block_errors(image: np.ndarray, target: np.ndarray) -> np.ndarray:
    error = ((image.astype(np.int64) - target) ** 2).sum(-1)
    return disparity.block_sums(error, disparity.BLOCK, disparity.blocks(*target.shape[:2]), padding="constant")


def _closest_bases(prediction: np.ndarray, own: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(bh, bw) the ``Base`` of each block closest to the target (the first of equals)."""
    candidates = (own, prediction, _mean(prediction, own))
    return np.argmin([_block_errors(candidate, target) for candidate in candidates], axis=0)


def _mean(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return ((first.astype(np.int16) + second + 1) >> 1).astype(np.uint8)


def _fill_unused(vectors: np.ndarray, used: np.ndarray) -> np.ndarray:
    """The vectors with each unused one replaced by its left neighbour's, so it costs nearly nothing."""
    filled = vectors.copy()
    for x in range(1, vectors.shape[1]):
        filled[~used[:, x], x] = filled[~used[:, x], x - 1]
    return filled


def _mixed_base(choices: np.ndarray, prediction: np.ndarray, own: np.ndarray) -> np.ndarray:
    """The base of a mixed view from each block's ``Base``."""
    h, w = own.shape[:2]
    per_pixel = np.repeat(np.repeat(choices, disparity.BLOCK, 0), disparity.BLOCK, 1)[:h, :w, None]
    mean = _mean(prediction, own) if (choices == Base.MEAN).any() else own
    return np.select([per_pixel == Base.PREDICTION, per_pixel == Base.MEAN], [prediction, mean], own)


def _encode_choices(choices: np.ndarray, stream: StreamEncoder) -> None:
    """Each block's ``Base``: the counts of the first two (uniform), then the blocks with their counts' table."""
    counts = np.bincount(choices.reshape(-1), minlength=len(Base))
    stream.encode_uniform(counts[:-1], np.full(len(Base) - 1, choices.size + 1))
    stream.encode_iid(choices.reshape(-1).astype(np.int64), _choice_table(counts))


def _decode_choices(shape: tuple[int, int], stream: StreamDecoder, version: int) -> np.ndarray:
    """``_encode_choices``'s blocks; version 1 has two choices only (CODES and PREDICTION)."""
    count, kinds = shape[0] * shape[1], len(Base) if version >= 2 else 2
    first = stream.decode_uniform(np.full(kinds - 1, count + 1)).astype(np.int64)
    if first.sum() > count:
        raise CorruptStreamError("a mixed view's counts of bases exceed its blocks")
    counts = np.append(first, count - first.sum())
    if version == 1:  # version 1 sent the count of predicted blocks, the second choice
        counts = counts[::-1]
    return stream.decode_iid(_choice_table(counts), count).reshape(shape)


def _choice_table(counts: np.ndarray) -> np.ndarray:
    return (counts + 1)[None].astype(np.float64)


def _residual_layer(step: int, config) -> residual.ResidualCodec:
    return residual.ResidualCodec(step, bool(config.residual_deblocking), float(config.residual_rate_weight))


def _cost(local: bytes, coding: ViewCoding, opened, reference: Image.Image | None, original: Image.Image, step: int):
    """Squared error + RATE_WEIGHT * step^2 * bits of view 1 as this local stream decodes it."""
    decoded = _rgb_array(_decode_second(coding, opened, local, reference, None))
    error = float(np.sum((decoded.astype(np.float64) - np.asarray(original, dtype=np.float64)) ** 2))
    return error + residual.RATE_WEIGHT * max(step, 1) ** 2 * 8 * len(local)


# ---- decoding -----------------------------------------------------------------------------------


def decompress_pair(
    data: bytes, views: tuple[int, ...] = (0, 1), max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> list[Image.Image]:
    """The views (0, 1 or both) of a pair file, each in its original size and mode. View 0 reads the common
    stream alone; view 1 the common stream and its local stream (its local stream alone if coded on its own)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ArgumentError(f"expected the bytes of a dq pair file, got {type(data).__name__}")
    if not isinstance(views, (tuple, list)) or not views or any(v not in range(VIEWS) for v in views):
        raise ArgumentError(f"views are 0 and 1, got {views!r}")
    pair = unpack(bytes(data))
    from . import codec

    decoded: dict[int, Image.Image] = {}
    opened = None
    if 0 in views or pair.coding != ViewCoding.OWN:  # the common stream, opened once for both views
        opened = codec.open_file(pair.common, max_pixels)
        if 0 in views:
            decoded[0] = codec.decode_file(opened)
    if 1 in views:
        decoded[1] = _decode_second(pair.coding, opened, pair.local[1], decoded.get(0), max_pixels, pair.version)
    return [decoded[v] for v in views]


def _decode_second(
    coding: ViewCoding,
    opened,
    local: bytes,
    reference: Image.Image | None,
    max_pixels: int | None,
    version: int = VERSION,
) -> Image.Image:
    """View 1 from its local stream (of a pair file of that version) and, unless coded on its own, the common
    file (``codec.open_file``'s ``OpenedFile``) and that file's image if already decoded (``reference``)."""
    from . import codec

    if coding == ViewCoding.OWN:
        return codec.decompress(local, max_pixels=max_pixels)
    header, codes, stream_bytes = _unpack_predicted(local, max_pixels)
    if (coding == ViewCoding.MIXED) != bool(codes):
        raise ContainerError(f"view 1 is coded {coding.name.lower()} but {'has no' if not codes else 'has'} codes")
    if prediction_step(opened.point, opened.config) != header.step:
        raise ContainerError(f"view 1's residual step {header.step} is not the step of quality {opened.header.quality}")
    if reference is None:
        reference = codec.decode_file(opened)
    stream = StreamDecoder(stream_bytes)
    shape = disparity.blocks(header.height, header.width)
    choices = _decode_choices(shape, stream, version) if codes else None
    vectors = disparity.decode_vectors(shape, stream)
    image = disparity.predict(_rgb_array(reference), vectors, header.height, header.width)
    if version >= 2:
        image = disparity.apply_gains(image, disparity.decode_gains(stream))
    if choices is not None:
        own = _rgb_array(codec.decompress(codes, max_pixels=max_pixels))
        if own.shape != image.shape:
            raise ContainerError(
                f"view 1's codes are of {own.shape[1]}x{own.shape[0]} pixels, its header names {header.width}x{header.height}"
            )
        image = _mixed_base(choices, image, own)
    layer = _residual_layer(header.step, opened.config)
    for cut in tiling.cut((header.height, header.width), header.tile):
        image[cut.rows, cut.cols] = layer.decompress(image[cut.rows, cut.cols], stream, Recorder())
    stream.finish()
    decoded = Image.fromarray(image, "RGB")
    return decoded.convert("L") if header.mode == "L" else decoded


# ---- inspecting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairInfo:
    coding: ViewCoding
    stream_bytes: dict[str, int]
    common: container.Header  # view 0's
    second: container.Header | PredictedHeader  # view 1's
    file_bytes: int


def inspect_pair(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> PairInfo:
    pair = unpack(bytes(data))
    common = container.unpack(pair.common, max_pixels)[0]
    if pair.coding == ViewCoding.OWN:
        second: container.Header | PredictedHeader = container.unpack(pair.local[1], max_pixels)[0]
    else:
        second = _unpack_predicted(pair.local[1], max_pixels)[0]
    return PairInfo(pair.coding, pair.stream_bytes, common, second, len(data))
