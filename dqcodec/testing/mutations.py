"""Mutations of .dq files and image files, the way an attacker or a broken disk would change them:
bytes and bits flipped, cut, inserted, deleted or repeated, header fields set to edge values, streams
emptied, swapped or filled with noise, image sizes set to edge values."""

from __future__ import annotations

import random
import struct
import zlib

EDGE_U32 = (0, 1, 2, 15, 16, 17, 255, 256, 65535, 65536, 2**31 - 1, 2**32 - 1)


def with_crc(data: bytes) -> bytes:
    """The bytes before a .dq file's CRC with the CRC recomputed over them."""
    body = data[:-4] if len(data) >= 4 else data
    return body + struct.pack("<I", zlib.crc32(body))


def _header_fields(data: bytes) -> dict[str, tuple[int, str]]:
    """Offsets and struct formats of a .dq file's header fields (the layout of the version it names: 4, or 3)."""
    if len(data) < 6:
        return {}
    offset = 6 + data[5]
    names = ["weights_hash", "kind", "quality", "codes_quality", "mode", "height", "width", "tile", "count"]
    formats = ["8s", "B", "B", "B", "B", "I", "I", "H", "B"]
    if data[4] == 3:  # no kind, no codes quality
        names, formats = names[:1] + names[2:3] + names[4:], formats[:1] + formats[2:3] + formats[4:]
    fields = {"version": (4, "B"), "name_length": (5, "B")}
    for name, fmt in zip(names, formats):
        fields[name] = (offset, fmt)
        offset += struct.calcsize("<" + fmt)
    fields["lengths"] = (offset, "I")
    return fields


def mutate_dq(data: bytes, rng: random.Random) -> bytes:
    """One to three mutations of a .dq file, then the CRC recomputed with probability 1/2."""
    for _ in range(rng.randint(1, 3)):
        data = rng.choice([_flip_bytes, _flip_bits, _truncate, _insert, _delete, _repeat, _header_edge, _stream_edit])(
            data, rng
        )
    return with_crc(data) if rng.random() < 0.5 else data


def mutate_image(data: bytes, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 3)):
        data = rng.choice([_flip_bytes, _flip_bits, _truncate, _insert, _delete, _repeat, _image_size_edge])(data, rng)
    return data


def _flip_bytes(data, rng):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _flip_bits(data, rng):
    data = bytearray(data)
    if data:
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    return bytes(data)


def _truncate(data, rng):
    return data[: rng.randrange(len(data) + 1)]


def _insert(data, rng):
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.randbytes(rng.choice([1, 4, 8, 64])) + data[i:]


def _delete(data, rng):
    i = rng.randrange(len(data) + 1)
    return data[:i] + data[i + rng.choice([1, 4, 16]) :]


def _repeat(data, rng):
    i = rng.randrange(len(data) + 1)
    return data[:i] + data[i : i + rng.choice([4, 16, 64])] * rng.randint(1, 8) + data[i:]


def _header_edge(data, rng):
    fields = _header_fields(data)
    if not fields:
        return data
    name = rng.choice(list(fields))
    offset, fmt = fields[name]
    size = struct.calcsize("<" + fmt)
    if offset + size > len(data):
        return data
    if fmt == "8s":
        value = rng.randbytes(8)
    else:
        limit = 2 ** (8 * size) - 1
        value = rng.choice([v for v in EDGE_U32 if v <= limit] + [rng.randint(0, limit)])
    return data[:offset] + struct.pack("<" + fmt, value) + data[offset + size :]


def _stream_edit(data, rng):
    """Empty a stream, fill it with noise, or swap two, keeping the header's lengths consistent."""
    fields = _header_fields(data)
    try:
        count_offset = fields["count"][0]
        count = data[count_offset]
        first = fields["lengths"][0]
        lengths = list(struct.unpack_from(f"<{count}I", data, first))
        start = first + 4 * count
        streams, offset = [], start
        for n in lengths:
            streams.append(data[offset : offset + n])
            offset += n
        tail = data[offset:]
    except (KeyError, IndexError, struct.error):
        return data
    if not streams:
        return data
    i = rng.randrange(len(streams))
    action = rng.choice(["empty", "noise", "swap", "word"])
    if action == "empty":
        streams[i] = b""
    elif action == "noise":
        streams[i] = rng.randbytes(4 * rng.randint(1, 64))
    elif action == "swap" and len(streams) > 1:
        j = rng.randrange(len(streams))
        streams[i], streams[j] = streams[j], streams[i]
    else:
        streams[i] = streams[i] + rng.randbytes(4)
    header = data[:first] + struct.pack(f"<{len(streams)}I", *map(len, streams))
    return header + b"".join(streams) + tail


def _image_size_edge(data, rng):
    """Set a PNG's IHDR size (with its CRC fixed) to an edge value; other formats get a byte flip."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 33:
        width, height = rng.choice([(0, 0), (1, 65535), (65535, 65535), (100000, 100000), (2**31 - 1, 1)])
        ihdr = data[12:16] + struct.pack(">II", width, height) + data[24:29]
        return data[:16] + ihdr[4:] + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]
    return _flip_bytes(data, rng)
