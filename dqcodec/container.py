"""The .dq container: a fixed little-endian header, the streams, and a CRC32.

Pure packing and unpacking of bytes; no file handles and no model code. The layout
is documented in docs/bitstream.md.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import (  # ContainerError is re-exported
    ArgumentError,
    ContainerError,
    ImageTooLargeError,
    UnsupportedImageError,
)

MAGIC = b"DQC\x00"
PAIR_MAGIC = b"DQP\x00"  # a pair file (dqcodec.pairs): two views, read with decompress_pair
VERSION = 4
# Version 3 is version 4 without the kind and codes-quality fields: a decoder infers the kind from the stream
# count and the quality (``point.Ladder.from_legacy_header``). Version 2 (dqcodec 0.2) is version 3 without the
# tile field: every file is one tile.
READABLE = (2, 3, 4)
# Version 1 (dqcodec 0.1) computed probability tables in float arithmetic, so its files decode only
# on the kernels that wrote them; this dqcodec does not read it.
OLD_VERSIONS = {1: "dqcodec 0.1, whose files decode only on the CPU and torch build that wrote them"}
MODES = ("RGB", "L")
TILE_UNIT = 16  # tiles and images are coded in multiples of 16 pixels (the first level's stride)
MAX_TILE = 1024  # the largest tile side a decoder accepts: a tile coding every pixel at 1024² takes about 2 GB
MIN_TILE = 64
_FIXED = struct.Struct("<4sBB")  # magic, version, model-name length
# weights hash, kind, quality, codes' quality, mode, height, width, tile / 16, stream count
_FIELDS = struct.Struct("<8sBBBBIIHB")
_FIELDS_V3 = struct.Struct("<8sBBIIHB")  # without the kind and the codes' quality
_FIELDS_V2 = struct.Struct("<8sBBIIB")  # and without the tile
_FIELDS_OF = {2: _FIELDS_V2, 3: _FIELDS_V3, 4: _FIELDS}
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class Header:
    model: str
    weights_hash: bytes  # first 8 bytes of the weights' SHA-256
    quality: int
    mode: str  # "RGB" or "L"
    height: int
    width: int
    tile: int = 0  # side of the square tiles the image is coded in, in pixels; 0: one tile
    kind: int | None = None  # what follows the codes (``point.Kind``); None in files of versions 2 and 3
    codes_quality: int | None = None  # the lossy quality whose codes the file carries; None likewise


def pack(header: Header, streams: list[bytes]) -> bytes:
    name = header.model.encode("utf-8")
    if len(name) > 255:
        raise ArgumentError("model name longer than 255 bytes")
    if len(header.weights_hash) != 8:
        raise ArgumentError("weights hash must be 8 bytes")
    if header.tile % 16 or not 0 <= header.tile < 16 << 16:
        raise ArgumentError("tile size must be a multiple of 16 below 2^20")
    if header.kind is None or header.codes_quality is None:
        raise ArgumentError(f"a version-{VERSION} header names its kind and its codes' quality")
    body = b"".join(
        [
            _FIXED.pack(MAGIC, VERSION, len(name)),
            name,
            _FIELDS.pack(
                header.weights_hash,
                header.kind,
                header.quality,
                header.codes_quality,
                MODES.index(header.mode),
                header.height,
                header.width,
                header.tile // 16,
                len(streams),
            ),
            b"".join(struct.pack("<I", len(s)) for s in streams),
            *streams,
        ]
    )
    return body + _CRC.pack(zlib.crc32(body))


# the most bytes a header takes before its stream lengths: what ``read_header`` needs at most
MAX_HEADER_BYTES = _FIXED.size + 255 + max(fields.size for fields in _FIELDS_OF.values())


def _version(data: bytes | memoryview) -> tuple[int, int]:
    """The format version and model-name length, once the magic and version are known to be readable."""
    if bytes(data[:4]) == PAIR_MAGIC:
        raise ContainerError("a pair file of two views: decode it with dqcodec.decompress_pair (or `dqcodec decode`)")
    if len(data) < _FIXED.size or data[:4] != MAGIC:
        raise ContainerError("not a .dq file (bad magic bytes)")
    _, version, name_length = _FIXED.unpack_from(data)
    if version in OLD_VERSIONS:
        raise ContainerError(
            f"this .dq file is format version {version}, written by {OLD_VERSIONS[version]}; this dqcodec reads versions {READABLE[0]} to {READABLE[-1]}"
        )
    if version not in READABLE:
        raise ContainerError(
            f".dq format version {version} is not supported (this dqcodec reads versions {READABLE[0]} to {READABLE[-1]})"
        )
    return version, name_length


def read_header(data: bytes | memoryview) -> tuple[Header, int, int, int]:
    """The header from the start of a .dq file (its first ``MAX_HEADER_BYTES`` are enough), without
    reading its streams or checking its checksum, as an image viewer's open does: (header, format
    version, stream count, offset of the stream lengths)."""
    version, name_length = _version(data)
    fields = _FIELDS_OF[version]
    offset = _FIXED.size + name_length
    if len(data) < offset + fields.size:
        raise ContainerError("malformed header: the file is truncated inside it")
    try:
        name = bytes(data[_FIXED.size : offset]).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ContainerError(f"malformed header: {error}") from None
    values = fields.unpack_from(data, offset)
    kind = codes_quality = None
    if version == 4:
        weights_hash, kind, quality, codes_quality, mode, height, width, tile, count = values
    elif version == 3:
        weights_hash, quality, mode, height, width, tile, count = values
    else:
        (weights_hash, quality, mode, height, width, count), tile = values, 0
    if mode >= len(MODES) or height == 0 or width == 0:
        raise ContainerError("malformed header: bad mode or image size")
    header = Header(name, weights_hash, quality, MODES[mode], height, width, 16 * tile, kind, codes_quality)
    return header, version, count, offset + fields.size


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, list[bytes]]:
    """A file's header and streams; its image size (against ``max_pixels``, None: no limit) and its tile
    size are checked before anything of their size is allocated."""
    _version(data)
    if len(data) < _CRC.size or zlib.crc32(data[: -_CRC.size]) != _CRC.unpack_from(data, len(data) - _CRC.size)[0]:
        raise ContainerError("checksum mismatch: the file is truncated or corrupted")
    body = memoryview(data)[: -_CRC.size]
    header, _, count, offset = read_header(body)
    check_pixels(header.height, header.width, max_pixels)
    check_tile(header.tile, header.height, header.width)
    try:
        lengths = struct.unpack_from(f"<{count}I", body, offset)
    except struct.error as error:
        raise ContainerError(f"malformed header: {error}") from None
    offset += 4 * count
    if offset + sum(lengths) != len(body):
        raise ContainerError("stream lengths do not match the file size")
    streams = []
    for length in lengths:
        streams.append(bytes(body[offset : offset + length]))
        offset += length
    return header, streams


def check_pixels(height: int, width: int, max_pixels: int | None) -> None:
    """Refuse a size before anything of that size is allocated, as Pillow's decompression-bomb check does."""
    if height < 1 or width < 1:
        raise UnsupportedImageError(f"an image of {width}x{height} pixels has nothing to code")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageTooLargeError(
            f"{width}x{height} is {height * width / 1e6:.1f} megapixels, over the limit of {max_pixels / 1e6:.1f} "
            "(raise it with max_pixels, or --max-pixels on the command line)"
        )


def check_tile(tile: int, height: int, width: int) -> None:
    """A tile size a decoder accepts: 0 (one tile, the whole padded image) or MIN_TILE to MAX_TILE
    pixels in steps of TILE_UNIT; either way no tile is larger than MAX_TILE on a side. ``height`` and ``width``
    are the image's, before padding to whole units."""
    height, width = -(-height // TILE_UNIT) * TILE_UNIT, -(-width // TILE_UNIT) * TILE_UNIT
    if tile == 0:
        if max(height, width) > MAX_TILE:
            raise ContainerError(
                f"an untiled file of {width}x{height} pixels is larger than a tile may be "
                f"({MAX_TILE}x{MAX_TILE}); dqcodec 0.2 wrote such files"
            )
        return
    if tile % TILE_UNIT or not MIN_TILE <= tile <= MAX_TILE:
        raise ContainerError(f"tile size {tile} is not a multiple of {TILE_UNIT} from {MIN_TILE} to {MAX_TILE}")
