"""A Pillow plugin for .dq files: ``import dqcodec.DqImagePlugin`` registers the format "DQ".

    import dqcodec.DqImagePlugin
    from PIL import Image

    with Image.open("photo.dq") as im:  # reads the header only: size, mode, im.info
        im.thumbnail((256, 256))        # decodes the pixels (dqcodec.decompress)
    im.save("small.dq", quality=4)      # or lossless=True, effort=1, model="dq-2"

Opening reads the header alone, without torch: ``im.size``, ``im.mode`` ("RGB", or "L" for a grayscale
file) and ``im.info`` (``model``, ``quality``, ``tile``, ``version``). The pixels are decoded on
``load()`` (or anything that needs them), which also sets ``im.info["lossless"]`` and ``im.info["kind"]``
(``lossy``, ``residual``, ``near_lossless`` or ``lossless``).

Errors are Pillow's: bytes whose header is not that of a .dq file this dqcodec reads raise
``PIL.UnidentifiedImageError`` from ``Image.open``; a file whose streams do not decode raises
``OSError`` with dqcodec's message from ``load()`` (the ``DQCodecError`` is its ``__cause__``).
A file's pixel count is checked by Pillow's decompression-bomb check (``Image.MAX_IMAGE_PIXELS``)
when it is opened, and decoding allows what that check allows, not dqcodec's own 64-megapixel limit.

Saving takes ``quality``, ``lossless``, ``effort``, ``model`` and ``max_pixels``, passed to
``dqcodec.compress`` with its defaults. Modes it codes are RGB, L, 1 and P without transparency
(1 decodes as L, P as RGB); others (RGBA, LA, I;16, CMYK, ...) raise ``OSError`` rather than lose
information: convert them first. Bad arguments raise ``ValueError``. Like ``dqcodec.compress``, saving
turns an image upright by its EXIF orientation, since a .dq file carries no metadata.
"""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile, UnidentifiedImageError

from . import container
from .errors import ArgumentError, DQCodecError, ModelError

FORMAT = "DQ"
DECODER = "dq"
SAVE_OPTIONS = ("quality", "lossless", "effort", "model", "max_pixels")


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == container.MAGIC


def _read_header(fp: IO[bytes]) -> tuple[container.Header, int]:
    """The header of a .dq file, and its format version, from the start of ``fp``, without
    reading its streams. Raises ``ContainerError`` with the messages of ``container.unpack``."""
    header, version, _, _ = container.read_header(fp.read(container.MAX_HEADER_BYTES))
    return header, version


def _max_pixels() -> int | None:
    """The pixel limit Pillow's decompression-bomb check applies: above twice ``Image.MAX_IMAGE_PIXELS``
    ``Image.open`` raises ``DecompressionBombError`` (None: no limit)."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


class DqImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "dqcodec learned image"

    def _open(self) -> None:
        assert self.fp is not None
        try:
            header, version = _read_header(self.fp)
        except DQCodecError as error:
            # the magic bytes matched, so no other plugin reads it: say why this one does not
            raise UnidentifiedImageError(f"cannot identify image file {self.filename or self.fp!r}: {error}") from error
        self._size = (header.width, header.height)
        if isinstance(getattr(type(self), "mode", None), property):  # Pillow >= 10.1
            self._mode = header.mode
        else:  # pragma: no cover - Pillow 10.0
            self.mode = header.mode
        self.info.update(model=header.model, quality=header.quality, tile=header.tile, version=version)
        self.n_frames = 1
        self.is_animated = False
        # the decoder is given im.info, to add what only the model tells: whether the file is lossless
        tile = (DECODER, (0, 0, header.width, header.height), 0, (self.info,))
        tile_type = getattr(ImageFile, "_Tile", None)  # Pillow >= 11.1 names the tuple's fields
        self.tile = [tile_type(*tile) if tile_type else tile]

    def load_seek(self, pos: int) -> None:
        # a .dq file decodes whole: defining this also keeps ImageFile.Parser from feeding the decoder
        # piece by piece (it parses the whole data when it is closed)
        assert self.fp is not None
        self.fp.seek(pos)


class DqDecoder(ImageFile.PyDecoder):
    """Decodes a whole .dq file with ``dqcodec.decompress`` (which needs every byte: no partial images)."""

    _pulls_fd = True

    def init(self, args: tuple) -> None:
        self.info = args[0] if args else {}

    def decode(self, buffer) -> tuple[int, int]:
        from . import codec

        assert self.fd is not None and self.im is not None
        data = self.fd.read()
        try:
            opened = codec.open_file(data, max_pixels=_max_pixels())
            image = codec.decode_file(opened)
        except DQCodecError as error:
            raise OSError(str(error)) from error
        self.info.update(lossless=opened.point.exact, kind=opened.point.kind.name.lower())
        if image.size != (self.state.xsize, self.state.ysize) or image.mode != self.mode:
            raise OSError(
                f"decoded a {image.mode} image of {image.size}, the header said {self.mode} of {(self.state.xsize, self.state.ysize)}"
            )
        self.set_as_raw(image.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    import dqcodec

    options = {key: im.encoderinfo[key] for key in SAVE_OPTIONS if key in im.encoderinfo}
    try:
        data = dqcodec.compress(im, **options)
    except (ArgumentError, ModelError):  # bad arguments: ValueErrors, as Pillow's own
        raise
    except DQCodecError as error:  # an image dqcodec does not code (mode, size, frames)
        raise OSError(str(error)) from error
    fp.write(data)


Image.register_open(FORMAT, DqImageFile, _accept)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, ".dq")
Image.register_mime(FORMAT, "image/x-dq")
Image.register_decoder(DECODER, DqDecoder)
