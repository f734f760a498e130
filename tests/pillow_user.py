"""What a Pillow user does with .dq files, run in a fresh process (tests/test_pillow_plugin.py).

    python tests/pillow_user.py FOLDER MODEL    prints one JSON object of facts

FOLDER holds lossy.dq and gray.dq, written by the test with dqcodec.compress, and the images they
code as lossy.png and gray.png; MODEL is the installed model to save with. The process imports
nothing but the plugin (and what Pillow users import) before it opens them, so the first facts show
what ``import dqcodec.DqImagePlugin`` and ``Image.open`` do on their own. Nothing here asserts:
exceptions are reported as facts, and the tests check them.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import warnings
import zlib
from pathlib import Path


def error_of(action) -> dict | None:
    """The exception ``action()`` raises, as facts (None if it raises none)."""
    try:
        action()
    except Exception as error:
        cause = error.__cause__
        return {
            "type": type(error).__name__,
            "classes": [c.__name__ for c in type(error).__mro__],
            "message": str(error),
            "cause": None if cause is None else type(cause).__name__,
            "cause_classes": [] if cause is None else [c.__name__ for c in type(cause).__mro__],
        }
    return None


def main(folder: Path, model: str) -> dict:
    facts: dict = {}
    from PIL import Image, ImageFile

    import dqcodec.DqImagePlugin

    facts["torch_after_import"] = "torch" in sys.modules
    facts["extension"] = Image.registered_extensions().get(".dq")
    facts["mime"] = Image.MIME.get("DQ")
    facts["can_save"] = "DQ" in Image.SAVE

    # opening reads the header alone
    lossy_path = folder / "lossy.dq"
    im = Image.open(lossy_path)
    facts["open"] = {
        "format": im.format,
        "size": list(im.size),
        "mode": im.mode,
        "info": dict(im.info),
        "pixels_allocated": im._im is not None,
        "tiles": len(im.tile),
    }
    gray = Image.open(folder / "gray.dq")
    facts["open_gray"] = {"size": list(gray.size), "mode": gray.mode}
    from_bytes = Image.open(io.BytesIO(lossy_path.read_bytes()))
    facts["open_bytesio"] = {"format": from_bytes.format, "size": list(from_bytes.size), "mode": from_bytes.mode}
    facts["torch_after_open"] = "torch" in sys.modules
    facts["codec_after_open"] = "dqcodec.codec" in sys.modules

    # decoding
    import numpy as np

    import dqcodec

    reference = dqcodec.decompress(lossy_path.read_bytes())
    im.load()
    facts["lossy_equals_decompress"] = np.array_equal(np.asarray(im), np.asarray(reference))
    facts["info_after_load"] = dict(im.info)
    facts["file_closed_after_load"] = im.fp is None
    facts["bytesio_equals_decompress"] = np.array_equal(np.asarray(from_bytes), np.asarray(reference))
    facts["gray_equals_decompress"] = gray.mode == "L" and np.array_equal(
        np.asarray(gray), np.asarray(dqcodec.decompress((folder / "gray.dq").read_bytes()))
    )

    parser = ImageFile.Parser()
    for start in range(0, len(lossy_path.read_bytes()), 100):
        parser.feed(lossy_path.read_bytes()[start : start + 100])
    facts["parser_equals_decompress"] = np.array_equal(np.asarray(parser.close()), np.asarray(reference))

    # what Pillow users do with an opened file: each on a fresh one, loaded by the operation itself
    def fresh():
        return Image.open(lossy_path)

    def same(a, b) -> bool:
        return a.size == b.size and a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))

    thumbnail, expected = fresh(), reference.copy()
    thumbnail.thumbnail((32, 32))
    expected.thumbnail((32, 32))
    facts["operations"] = {
        "thumbnail": [list(thumbnail.size), same(thumbnail, expected)],
        "convert_L": [fresh().convert("L").mode, same(fresh().convert("L"), reference.convert("L"))],
        "crop": [
            list(fresh().crop((8, 4, 40, 36)).size),
            same(fresh().crop((8, 4, 40, 36)), reference.crop((8, 4, 40, 36))),
        ],
        "resize": [list(fresh().resize((32, 24)).size), same(fresh().resize((32, 24)), reference.resize((32, 24)))],
        "copy": [list(fresh().copy().size), same(fresh().copy(), reference)],
        "tobytes": [len(fresh().tobytes()), fresh().tobytes() == reference.tobytes()],
    }

    # saving passes its options to dqcodec.compress
    source = Image.open(folder / "lossy.png")
    source.load()
    out = folder / "out"
    out.mkdir()
    source.save(out / "q3.dq", quality=3, model=model)
    source.save(out / "e1.dq", quality=3, effort=1, model=model)
    buffer = io.BytesIO()
    source.save(buffer, format="DQ", quality=2, model=model)
    facts["save"] = {
        "quality": (out / "q3.dq").read_bytes() == dqcodec.compress(source, quality=3, model=model),
        "effort": (out / "e1.dq").read_bytes() == dqcodec.compress(source, quality=3, effort=1, model=model),
        "bytesio": buffer.getvalue() == dqcodec.compress(source, quality=2, model=model),
        "bytesio_quality": Image.open(io.BytesIO(buffer.getvalue())).info["quality"],
        "default_quality": Image.open(io.BytesIO(_saved(source, model=model))).info["quality"],
    }

    # lossless: the very pixels, in RGB, L, and 1 and P (coded as L and RGB)
    source.save(out / "lossless.dq", lossless=True, model=model)
    with Image.open(out / "lossless.dq") as lossless:
        lossless.load()
        facts["lossless"] = {
            "equal": same(lossless, source),
            "info": dict(lossless.info),
            "bytes": (out / "lossless.dq").stat().st_size,
        }
    near = Image.open(io.BytesIO(_saved(source, quality=6, model=model)))  # the tiny model's tolerance 3
    near.load()
    error = np.abs(np.asarray(near, dtype=int) - np.asarray(source.convert("RGB"), dtype=int)).max()
    facts["near_lossless"] = {
        "lossless": near.info["lossless"],
        "quality": near.info["quality"],
        "max_error": int(error),
    }
    gray_source = Image.open(folder / "gray.png")
    binary = gray_source.point(lambda v: 255 * (v > 128)).convert("1")
    palette = source.quantize(16)
    facts["lossless_modes"] = {}
    for name, image, decoded_as in (("L", gray_source, "L"), ("1", binary, "L"), ("P", palette, "RGB")):
        reopened = Image.open(io.BytesIO(_saved(image, lossless=True, model=model)))
        facts["lossless_modes"][name] = [reopened.mode, same(reopened, image.convert(decoded_as))]

    # modes dqcodec does not code, and bad options
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    refused = {
        "RGBA": source.convert("RGBA"),
        "LA": gray_source.convert("LA"),
        "I;16": Image.new("I;16", (8, 8)),
        "CMYK": source.convert("CMYK"),
        "P with transparency": transparent,
    }
    facts["refused"] = {}
    for name, image in refused.items():
        target = out / f"refused-{name}.dq".replace(";", "")
        facts["refused"][name] = {
            "error": error_of(lambda image=image, target=target: image.save(target, model=model)),
            "file_left": target.exists(),
        }
    facts["bad_options"] = {
        "quality 99": error_of(lambda: _saved(source, quality=99, model=model)),
        "lossless and effort": error_of(lambda: _saved(source, lossless=True, effort=1, model=model)),
        "no such model": error_of(lambda: _saved(source, model="no-such-model")),
    }

    # damaged files
    data = lossy_path.read_bytes()
    flipped = bytearray(data[:-4])
    flipped[-3] ^= 0x5A  # in the last stream
    flipped = bytes(flipped) + struct.pack("<I", zlib.crc32(flipped))  # with a valid checksum
    damaged = {
        "bad magic": b"DQX\x00" + data[4:],
        "header cut": data[:12],
        "version 1": data[:4] + b"\x01" + data[5:],
        "version 9": data[:4] + b"\x09" + data[5:],
        "truncated": data[:-10],
        "checksum": data[:-5] + bytes([data[-5] ^ 1]) + data[-4:],
        "corrupt stream": flipped,
    }
    facts["damaged"] = {}
    for name, content in damaged.items():
        path = out / f"{name.replace(' ', '-')}.dq"
        path.write_bytes(content)
        opened = []
        facts["damaged"][name] = {
            "open": error_of(lambda opened=opened, path=path: opened.append(Image.open(path))),
            "load": error_of(lambda opened=opened: opened[0].load()) if opened else None,
            "decompress": error_of(lambda content=content: dqcodec.decompress(content)),
        }

    # decompression bombs: Pillow's limit, at open, from the header
    bombs = {}
    default_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 1000  # 64 x 48 = 3072 is over twice this: refused at open
        bombs["over twice the limit"] = error_of(lambda: Image.open(lossy_path))
        Image.MAX_IMAGE_PIXELS = 2000  # over the limit, under twice it: a warning, and it decodes
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warned = Image.open(lossy_path)
            bombs["warning"] = [w.category.__name__ for w in caught]
            bombs["decodes"] = error_of(warned.load)
    finally:
        Image.MAX_IMAGE_PIXELS = default_limit
    huge = bytearray(data)
    name_length = data[5]
    # after magic, version, name, hash, kind, quality, codes quality, mode (format version 4)
    struct.pack_into("<II", huge, 6 + name_length + 8 + 4, 100_000, 100_000)
    bombs["header of 10 gigapixels"] = error_of(lambda: Image.open(io.BytesIO(bytes(huge))))
    facts["bombs"] = bombs
    return facts


def _saved(image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="DQ", **options)
    return buffer.getvalue()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2])))
