"""The pixel layer as a codec: a tile's 8-bit pixels given the synthesis' last features and image,
coded exactly or (a tolerance d > 0) within 2d.

``code_pixels`` walks the steps of the 4x4 blocks (``pixel_model.STEPS``), their positions, the
three channels and chunks of pixels in the order encoder and decoder share, building each chunk's
integer tables (``pixel_tables.ChunkDistribution``). ``PixelCodec`` runs that walk to encode into
or decode from a pixel stream, and gives the ideal code length under the float mixture.

A recorder, if one is given to ``compress`` or ``decompress``, is told of the work as it goes:
``recorder.advance()`` as each of the ``BLOCK**2`` block positions is done and, when decoding,
``recorder.record(frequencies, symbols)`` for every table decoded with (each chunk's window table
and its decoded symbols, then the uniform tables of its tails and their offsets).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .entropy import StreamDecoder, StreamEncoder
from .pixel_model import BLOCK, MEAN_SCALE, STEPS, PixelModel, fold
from .pixel_tables import ONE, ChunkDistribution, ExactPixelModel, WindowTable, window_bins

CHUNK = 1 << 14  # pixels per batch of tables

CodeChannel = Callable[[WindowTable, int, int, torch.Tensor], torch.Tensor]


def code_pixels(
    model: ExactPixelModel,
    context,
    x_hat,
    size: tuple[int, int],
    code_channel: CodeChannel,
    workers: int = 1,
    on_position: Callable[[], None] | None = None,
    tolerance: int = 0,
) -> torch.Tensor:
    """Walk steps, block positions, channels and chunks of pixels, in the order both directions share.

    ``context`` and ``x_hat`` are the exact model's fixed-point context and reconstruction.
    ``code_channel(table, position, channel, pixels)`` encodes or decodes one channel of a
    chunk (``position`` = di * 4 + dj in the block, ``pixels`` index the flattened block
    grid) and returns its decoded values (within 2 * ``tolerance`` of the originals). Each table is built
    by ``workers`` threads, each running its tensor operations on one thread; the arithmetic is exact, so
    the tables are the same whatever ``workers`` is. ``on_position()``, if given, is called as each of the
    block's ``BLOCK**2`` positions is done.
    Returns the image (1, 3, H, W) of 8-bit values as int64, zero outside ``size``.
    """
    base = 255 * x_hat.clamp(0, ONE)
    inside = torch.zeros_like(base[:, :1])
    inside[..., : size[0], : size[1]] = 1
    folded_base = fold(base)[0].flatten(2)  # (3, 16, h*w)
    folded_inside = fold(inside)[0, 0].flatten(1).bool()  # (16, h*w)
    grid = (base.shape[-2] // BLOCK, base.shape[-1] // BLOCK)
    image = torch.zeros_like(base, dtype=torch.long)
    with _table_builders(workers) as pool:
        for s, step in enumerate(STEPS):
            residual = torch.floor((image * ONE - base) / MEAN_SCALE + 0.5) * inside  # exact: a power of two
            raw = model.params(context, s, residual, inside)[0]
            for i, (di, dj) in enumerate(step):
                p = di * BLOCK + dj
                step_raw = raw[i].flatten(1).T  # (h*w, 10K)
                pieces = folded_inside[p].nonzero().squeeze(1).split(CHUNK)
                chunks = [
                    ChunkDistribution(step_raw[pixels], folded_base[:, p, pixels].T, tolerance) for pixels in pieces
                ]
                coded = torch.zeros(step_raw.shape[0], 3, dtype=torch.long)
                for c in range(3):
                    for pixels, chunk in zip(pieces, chunks):
                        coded[pixels, c] = code_channel(chunk.table(c, pool.map), p, c, pixels).long()
                        chunk.push(c, coded[pixels, c])
                image[0, :, di::BLOCK, dj::BLOCK] = coded.T.reshape(3, *grid)
                if on_position:
                    on_position()
    return image


@contextlib.contextmanager
def _table_builders(workers: int):
    """A pool of ``workers`` threads whose tensor operations each run on one thread: the tables' blocks are
    small, and two threads each splitting every operation in two only wait on each other. (Each thread's
    first ``torch.set_num_threads`` call sets its own OpenMP and MKL thread counts, and the default for new
    threads; the caller's thread keeps its own, and the default is restored at the end.)"""
    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            yield pool
    finally:
        torch.set_num_threads(threads)


class PixelCodec:
    """The pixel layer: a tile's 8-bit pixels given the synthesis' features and image, exactly or within 2*tolerance.

    ``features`` and ``x_hat`` are the synthesis' last feature map (1, F, H/2, W/2) and its image
    (1, 3, H, W): in exact fixed point (``dqcodec.exact``) for ``compress`` and ``decompress``, as
    ``exact.run_module`` computes them, so that both directions get the same tables; in float for
    ``bits``. ``size`` (h, w) is the part of the region inside the true image: only its pixels are
    coded. The tables are built by ``workers`` threads (by default ``torch.get_num_threads()`` when
    coding); they are the same whatever the count.
    """

    def __init__(self, model: PixelModel, tolerance: int = 0, workers: int | None = None):
        window_bins(tolerance)  # a tolerance the tables can code, or a ValueError
        self.model = model
        self.tolerance = tolerance
        self.workers = workers

    @torch.no_grad()
    def compress(
        self,
        features: torch.Tensor,
        x_hat: torch.Tensor,
        x: torch.Tensor,
        size: tuple[int, int],
        stream: StreamEncoder,
        recorder=None,
    ) -> None:
        """Encode the pixels of the top-left ``size`` of the region x (1, 3, H, W), 8-bit values / 255, into ``stream``."""
        folded = fold((x * 255).round().long())[0].flatten(2)  # (3, 16, h*w)

        def encode(table, position, c, pixels):
            values = folded[c, position, pixels]
            symbols, tail_offsets, tail_sizes = table.split(values)
            stream.encode(symbols.numpy(), table.frequencies)
            if len(tail_sizes):
                stream.encode_uniform(tail_offsets.numpy(), tail_sizes.numpy())
            return table.quantize(values)

        self._code(features, x_hat, size, encode, recorder)

    @torch.no_grad()
    def decompress(
        self, features: torch.Tensor, x_hat: torch.Tensor, size: tuple[int, int], stream: StreamDecoder, recorder=None
    ) -> torch.Tensor:
        """The region's pixels (1, 3, H, W), int64 8-bit values inside the top-left ``size`` (exact, or within
        2 * tolerance of the encoder's) and 0 outside it, decoded from ``stream``."""

        def decode(table, position, c, pixels):
            frequencies = table.frequencies
            symbols = stream.decode(frequencies)
            tail_sizes = table.tail_sizes(torch.from_numpy(symbols))
            tail_sizes = tail_sizes[tail_sizes >= 2].numpy()
            offsets = stream.decode_uniform(tail_sizes)
            if recorder is not None:
                recorder.record(frequencies, symbols)
                recorder.record((np.arange(256) < tail_sizes[:, None]).astype(np.float64), offsets)
            return table.join(torch.from_numpy(symbols), torch.from_numpy(offsets))

        return self._code(features, x_hat, size, decode, recorder)

    @torch.no_grad()
    def bits(self, features: torch.Tensor, x_hat: torch.Tensor, x: torch.Tensor, size: tuple[int, int]) -> float:
        """-log2 p(x) of the region x (8-bit values / 255) over its top-left ``size`` under the continuous
        mixture (no table rounding), given the synthesis' float features and (unclamped) image."""
        inside = torch.zeros_like(x[:, :1])
        inside[..., : size[0], : size[1]] = 1
        log_prob = self.model.log_prob(self.model.context(features, x_hat), x_hat, (x * 255).round(), inside)
        return float(-log_prob.sum() / math.log(2))

    def _code(self, features, x_hat, size, code_channel: CodeChannel, recorder) -> torch.Tensor:
        model = ExactPixelModel(self.model)
        workers = torch.get_num_threads() if self.workers is None else self.workers
        on_position = None if recorder is None else recorder.advance
        return code_pixels(
            model, model.context(features, x_hat), x_hat, size, code_channel, workers, on_position, self.tolerance
        )
