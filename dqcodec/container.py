"""The .dq container: a fixed little-endian header, the streams, and a CRC32.

Pure packing and unpacking of bytes; no file handles and no model code. The layout
is documented in docs/bitstream.md.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import ArgumentError, ContainerError  # ContainerError is re-exported

MAGIC = b"DQC\x00"
VERSION = 3
# Version 2 (dqcodec 0.2) is version 3 without the tile field: every file is one tile.
READABLE = (2, 3)
# Version 1 (dqcodec 0.1) computed probability tables in float arithmetic, so its files decode only
# on the kernels that wrote them; this dqcodec does not read it.
OLD_VERSIONS = {1: "dqcodec 0.1, whose files decode only on the CPU and torch build that wrote them"}
MODES = ("RGB", "L")
_FIXED = struct.Struct("<4sBB")  # magic, version, model-name length
_FIELDS = struct.Struct("<8sBBIIHB")  # weights hash, quality, mode, height, width, tile / 16, stream count
_FIELDS_V2 = struct.Struct("<8sBBIIB")  # the same without the tile
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

def pack(header: Header, streams: list[bytes]) -> bytes:
    name = header.model.encode("utf-8")
    if len(name) > 255:
        raise ArgumentError("model name longer than 255 bytes")
    if len(header.weights_hash) != 8:
        raise ArgumentError("weights hash must be 8 bytes")
    if header.tile % 16 or not 0 <= header.tile < 16 << 16:
        raise ArgumentError("tile size must be a multiple of 16 below 2^20")
    body = b"".join(
        [
            _FIXED.pack(MAGIC, VERSION, len(name)),
            name,
            _FIELDS.pack(
                header.weights_hash,
                header.quality,
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


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    if len(data) < _FIXED.size or data[:4] != MAGIC:
        raise ContainerError("not a .dq file (bad magic bytes)")
    _, version, name_length = _FIXED.unpack_from(data)
    if version in OLD_VERSIONS:
        raise ContainerError(f"this .dq file is format version {version}, written by {OLD_VERSIONS[version]}; this dqcodec reads versions {READABLE[0]} to {READABLE[-1]}")
    if version not in READABLE:
        raise ContainerError(f".dq format version {version} is not supported (this dqcodec reads versions {READABLE[0]} to {READABLE[-1]})")
    if len(data) < _CRC.size or zlib.crc32(data[: -_CRC.size]) != _CRC.unpack_from(data, len(data) - _CRC.size)[0]:
        raise ContainerError("checksum mismatch: the file is truncated or corrupted")
    body = memoryview(data)[: -_CRC.size]
    offset = _FIXED.size
    try:
        name = bytes(body[offset : offset + name_length]).decode("utf-8")
        offset += name_length
        if version == 2:
            weights_hash, quality, mode, height, width, count = _FIELDS_V2.unpack_from(body, offset)
            tile, offset = 0, offset + _FIELDS_V2.size
        else:
            weights_hash, quality, mode, height, width, tile, count = _FIELDS.unpack_from(body, offset)
            tile, offset = 16 * tile, offset + _FIELDS.size
        lengths = struct.unpack_from(f"<{count}I", body, offset)
        offset += 4 * count
    except (struct.error, UnicodeDecodeError) as error:
        raise ContainerError(f"malformed header: {error}") from None
    if mode >= len(MODES) or height == 0 or width == 0:
        raise ContainerError("malformed header: bad mode or image size")
    if offset + sum(lengths) != len(body):
        raise ContainerError("stream lengths do not match the file size")
    streams = []
    for length in lengths:
        streams.append(bytes(body[offset : offset + length]))
        offset += length
    header = Header(name, weights_hash, quality, MODES[mode], height, width, tile)
    return header, streams

