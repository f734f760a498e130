import dataclasses
import struct
import zlib

import pytest

from dqcodec.container import ArgumentError, ContainerError, Header, pack, read_header, unpack

HEADER = Header("dq-test", bytes(range(8)), 3, "L", 17, 33, 512, kind=1, codes_quality=2)


def test_round_trip():
    streams = [b"\x01\x02\x03\x04", b"", b"\xff" * 12]
    header, out = unpack(pack(HEADER, streams))
    assert header == HEADER
    assert out == streams
    assert read_header(pack(HEADER, streams))[1] == 4


def test_a_header_without_its_kind_is_not_written():
    with pytest.raises(ArgumentError, match="kind"):
        pack(dataclasses.replace(HEADER, kind=None), [b""])


def _version_3(header: Header, streams: list[bytes]) -> bytes:
    """A file as dqcodec 0.3 wrote it: no kind, no codes quality."""
    name = header.model.encode()
    fields = struct.pack(
        "<8sBBIIHB",
        header.weights_hash,
        header.quality,
        1,
        header.height,
        header.width,
        header.tile // 16,
        len(streams),
    )
    body = (
        b"DQC\x00"
        + bytes([3, len(name)])
        + name
        + fields
        + b"".join(struct.pack("<I", len(s)) for s in streams)
        + b"".join(streams)
    )
    return body + struct.pack("<I", zlib.crc32(body))


def test_version_3_files_still_unpack_with_no_kind():
    streams = [b"\x07" * 5, b"abc"]
    header, out = unpack(_version_3(HEADER, streams))
    assert header == dataclasses.replace(HEADER, kind=None, codes_quality=None) and out == streams


@pytest.mark.parametrize("position", [0, 5, 12, 30, -1])
def test_any_flipped_byte_is_caught(position):
    data = bytearray(pack(HEADER, [b"\x00" * 16]))
    data[position] ^= 0x40
    with pytest.raises(ContainerError):
        unpack(bytes(data))


@pytest.mark.parametrize("keep", [0, 3, 10, 40])
def test_truncated_files_are_caught(keep):
    data = pack(HEADER, [b"\x00" * 16])
    with pytest.raises(ContainerError):
        unpack(data[:keep])


def test_other_files_are_not_mistaken_for_dq():
    with pytest.raises(ContainerError, match="magic"):
        unpack(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)


def test_version_1_files_get_a_one_line_error_naming_their_version():
    data = bytearray(pack(HEADER, [b"\x00" * 16]))
    data[4] = 1
    body = bytes(data[:-4])
    data[-4:] = zlib.crc32(body).to_bytes(4, "little")
    with pytest.raises(ContainerError, match="format version 1, written by dqcodec 0.1") as caught:
        unpack(bytes(data))
    assert "\n" not in str(caught.value)
