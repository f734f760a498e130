import zlib

import pytest

from dqcodec.container import ContainerError, Header, pack, unpack

HEADER = Header("dq-test", bytes(range(8)), 3, "L", 17, 33)


def test_round_trip():
    streams = [b"\x01\x02\x03\x04", b"", b"\xff" * 12]
    header, out = unpack(pack(HEADER, streams))
    assert header == HEADER
    assert out == streams


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
