"""The transform layer of a residual quality: what the codes' image misses, as quantized 8x8 DCTs.

A residual quality codes the codes of a lossy quality (its base) and then, tile by tile, the
difference between the image and the base's decoded image. The difference is turned into three
orthonormal colour channels, cut into 8x8 blocks (the tile's true pixels, padded to whole blocks
by repeating the edge), and each block's orthonormal DCT is divided by the quality's step and
rounded towards zero with a dead zone (an encoder's choice, not the format's).

Coding. The coefficients are coded channel by channel, and within a channel band by band in
zigzag order, every block of the tile in one pass. A coefficient's context is one of
``CONTEXTS`` classes of how large the coefficients already decoded around it are: the three
bands before it in its own block (counted twice) and in its four neighbour blocks, and, in the
colour channels, the same band of the first channel. Each (channel, band group, context) has a
table from three numbers the tile's stream sends first: the largest magnitude M, the mass of zero
and the decay of a geometric distribution of the magnitudes from 1 to M, signs equally likely.
The tables are built in integers (``table``), so encoder and decoder hand the range coder the
same ones on any machine.

Decoding. The decoder multiplies the coefficients by the step and inverts the DCT and the colour
transform in integer fixed point (``inverse``), so the decoded difference is the same integers
everywhere; it is added to the base image and clipped to 0..255. The base is the lossy image, whose
samples may differ by one grey level between machines (docs/bitstream.md), and so may the sum;
the stream decodes the same either way, as nothing in it depends on the base.
"""

from __future__ import annotations

import numpy as np

from .entropy import PIXEL_PROBABILITY_BITS, StreamDecoder, StreamEncoder
from .fixed import frequencies
from .point import MAX_STEP  # noqa: F401  (re-exported: the largest step the residual stream holds)
from .recorder import Recorder

BLOCK = 8
DEAD_ZONE = 0.2  # the encoder rounds |c| / step - DEAD_ZONE to nearest: smaller files for the same error
CONTEXTS = 8
_CONTEXT_EDGES = np.array([2, 4, 8, 16, 32, 64, 128])  # 1 + the context's sum, below each: classes 0..7
BAND_GROUP_STARTS = (1, 3, 6, 10, 15, 21, 28, 36, 45)  # zigzag positions where a new group begins
BAND_GROUPS = len(BAND_GROUP_STARTS) + 1
ZERO_LEVELS = 256  # the mass of zero is z / 256, z in 1..255
DECAY_BITS = 12  # the geometric decay is r / 2^12, r in 0..4095
_PREVIOUS_BANDS = 3
RATE_WEIGHT = 0.12  # the encoder's weight of bits against squared error in steps, chosen on training photos (dq-3's)
RATE_PASSES = 2
DEBLOCK_BETA, DEBLOCK_LIMIT = 1.0, 0.1  # deblocking's smoothness threshold and largest change, in steps


def _dct_matrix() -> np.ndarray:
    k = np.arange(BLOCK)
    matrix = np.sqrt(2 / BLOCK) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * BLOCK))
    matrix[0] /= np.sqrt(2)
    return matrix


def _colour_matrix() -> np.ndarray:
    rows = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


DCT = _dct_matrix()
COLOUR = _colour_matrix()  # rows: the channels; orthonormal, so its transpose inverts it
DCT_BITS, COLOUR_BITS = 13, 12
DCT_FIXED = np.round(DCT * (1 << DCT_BITS)).astype(np.int64)
COLOUR_FIXED = np.round(COLOUR * (1 << COLOUR_BITS)).astype(np.int64)
_DCT_FLOAT_T = DCT_FIXED.T.astype(np.float64)  # for exact products in float64 (``inverse_bands``)
_COLOUR_FLOAT_T = COLOUR_FIXED.T.astype(np.float64)
ZIGZAG = np.array(
    sorted(
        range(BLOCK * BLOCK),
        key=lambda i: (i // BLOCK + i % BLOCK, i // BLOCK if (i // BLOCK + i % BLOCK) % 2 else -(i // BLOCK)),
    )
)
_NATURAL = np.argsort(ZIGZAG)  # each natural position's zigzag index
BAND_GROUP = np.searchsorted(BAND_GROUP_STARTS, np.arange(BLOCK * BLOCK), side="right")  # of each zigzag position
# the largest coefficient a difference of 8-bit images can have: 8 x the largest colour sample, 255 * sqrt(3)
MAX_COEFFICIENT = int(np.ceil(BLOCK * 255 * np.sqrt(3)))


def max_magnitude(step: int) -> int:
    """The largest quantized magnitude at a step: what a table may span."""
    return MAX_COEFFICIENT // step + 1


def blocks_shape(height: int, width: int) -> tuple[int, int]:
    return -(-height // BLOCK), -(-width // BLOCK)


# ---- encoding ----------------------------------------------------------------------------


def encode(original: np.ndarray, base: np.ndarray, step: int, stream: StreamEncoder, rate_weight: float = 0.0) -> None:
    """Code original - base, two (h, w, 3) uint8 images, at a quantizer step, into the stream; the
    coefficients are rounded for rate and distortion with that weight (0: plain dead-zone rounding; a
    model's is its ``residual_rate_weight``)."""
    difference = original.astype(np.int64) - base
    quantized = quantize(difference, step)
    if rate_weight:
        quantized = rate_distortion_round(forward(difference) / step, quantized, rate_weight)
    encode_quantized(quantized, step, stream)


def encode_quantized(quantized: np.ndarray, step: int, stream: StreamEncoder) -> None:
    """Code quantized coefficients (3, bh, bw, 64) of one tile, whatever rounding chose them."""
    magnitudes = np.abs(quantized)
    contexts = all_contexts(magnitudes)
    parameters = _fit(quantized, contexts)
    _encode_parameters(parameters, step, stream)
    tables = Tables(parameters)
    for channel in range(3):
        for band in range(BLOCK * BLOCK):
            for context in range(CONTEXTS):
                symbols = quantized[channel, :, :, band][contexts[channel, :, :, band] == context]
                if len(symbols) and tables.largest(channel, band, context):
                    stream.encode_iid(
                        symbols + tables.largest(channel, band, context), tables.get(channel, band, context)
                    )


def quantize(difference: np.ndarray, step: int) -> np.ndarray:
    """(h, w, 3) integer differences -> quantized coefficients (3, bh, bw, 64), bands in zigzag order."""
    coefficients = forward(difference) / step
    return (np.sign(coefficients) * np.floor(np.abs(coefficients) + 0.5 - DEAD_ZONE)).astype(np.int64)


def rate_distortion_round(
    coefficients: np.ndarray, quantized: np.ndarray, weight: float, passes: int = RATE_PASSES
) -> np.ndarray:
    """Coefficients (in steps) rounded to 0, the floor or the ceiling of their magnitude, whichever costs
    least in squared error (in steps) + weight x bits, the bits under the tables that the previous rounding
    (``quantized``, at first) would send, in its contexts. An encoder's choice: the decoder is the same."""
    magnitude = np.abs(coefficients)
    sign = np.where(coefficients < 0, -1, 1)
    for _ in range(passes):
        quantized = sign * _cheapest_magnitudes(magnitude, sign, quantized, weight)
    return quantized


def _cheapest_magnitudes(magnitude: np.ndarray, sign: np.ndarray, quantized: np.ndarray, weight: float) -> np.ndarray:
    """One pass of ``rate_distortion_round``: each magnitude's cheapest of 0, its floor and its ceiling (within
    its table's largest value), under the tables and contexts of ``quantized``."""
    contexts = all_contexts(np.abs(quantized))
    bits, largest = Tables(_fit(quantized, contexts)).bits()
    table = (
        np.broadcast_to(np.arange(3)[:, None, None, None], quantized.shape),
        np.broadcast_to(BAND_GROUP, quantized.shape),
        contexts,
    )
    limit = largest[table]

    def cost(candidate: np.ndarray) -> np.ndarray:
        rate = bits[table + (bits.shape[-1] // 2 + sign * candidate,)]
        return (magnitude - candidate) ** 2 + weight * rate

    floor = np.floor(magnitude).astype(np.int64)
    best = np.zeros_like(floor)
    best_cost = cost(best)
    for candidate in (np.minimum(floor, limit), np.minimum(floor + 1, limit)):
        candidate_cost = cost(candidate)
        better = candidate_cost < best_cost
        best_cost, best = np.where(better, candidate_cost, best_cost), np.where(better, candidate, best)
    return best


def forward(difference: np.ndarray) -> np.ndarray:
    """(h, w, 3) differences -> their float coefficients (3, bh, bw, 64), bands in zigzag order."""
    h, w = difference.shape[:2]
    bh, bw = blocks_shape(h, w)
    padded = np.pad(difference, ((0, bh * BLOCK - h), (0, bw * BLOCK - w), (0, 0)), mode="edge").astype(np.float64)
    channels = np.einsum("cr,hwr->chw", COLOUR, padded)
    tiles = channels.reshape(3, bh, BLOCK, bw, BLOCK).transpose(0, 1, 3, 2, 4)
    return (DCT @ tiles @ DCT.T).reshape(3, bh, bw, BLOCK * BLOCK)[..., ZIGZAG]


def _fit(quantized: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    """Each (channel, band group, context)'s (largest magnitude, zero's mass, decay), fitted to the symbols."""
    parameters = np.zeros((3, BAND_GROUPS, CONTEXTS, 3), dtype=np.int64)
    for channel in range(3):
        for group in range(BAND_GROUPS):
            bands = np.flatnonzero(group == BAND_GROUP)
            for context in range(CONTEXTS):
                symbols = np.concatenate(
                    [quantized[channel, :, :, b][contexts[channel, :, :, b] == context] for b in bands]
                )
                parameters[channel, group, context] = fit_symbols(np.abs(symbols))
    return parameters


def fit_symbols(magnitudes: np.ndarray) -> tuple[int, int, int]:
    largest = int(magnitudes.max(initial=0))
    if not largest:
        return 0, 0, 0
    nonzero = magnitudes[magnitudes > 0]
    zero = int(np.clip(np.round(ZERO_LEVELS * (1 - nonzero.size / magnitudes.size)), 1, ZERO_LEVELS - 1))
    decay = int(np.clip(np.round((1 - 1 / nonzero.mean()) * (1 << DECAY_BITS)), 0, (1 << DECAY_BITS) - 1))
    return largest, zero, decay


def _encode_parameters(parameters: np.ndarray, step: int, stream: StreamEncoder) -> None:
    flat = parameters.reshape(-1, 3)
    stream.encode_uniform(flat[:, 0], np.full(len(flat), max_magnitude(step) + 1))
    used = flat[flat[:, 0] > 0]
    if len(used):
        stream.encode_uniform(used[:, 1] - 1, np.full(len(used), ZERO_LEVELS - 1))
        stream.encode_uniform(used[:, 2], np.full(len(used), 1 << DECAY_BITS))


# ---- decoding ----------------------------------------------------------------------------


def decode(height: int, width: int, step: int, stream: StreamDecoder, recorder: Recorder | None = None) -> np.ndarray:
    """The (height, width, 3) int64 difference coded by ``encode`` at that step; every decoded
    (frequencies, symbols) pair goes to the recorder, if given."""
    bh, bw = blocks_shape(height, width)
    tables = Tables(_decode_parameters(step, stream, recorder))
    planes = np.zeros((3, BLOCK * BLOCK, bh, bw), dtype=np.int64)  # band by band: each band's plane contiguous
    magnitudes = np.zeros_like(planes)
    for channel in range(3):
        for band in range(BLOCK * BLOCK):
            largest = tables.largest_of_band(channel, band)
            if largest.any():  # else every context's table is empty and the band is all zeros
                contexts = _plane_contexts(magnitudes, channel, band)
                _decode_band(planes[channel, band], contexts, largest, tables, (channel, band), stream, recorder)
                np.abs(planes[channel, band], out=magnitudes[channel, band])
    return inverse_bands(planes, step)[:height, :width]


def _decode_band(values, contexts, largest, tables, key, stream: StreamDecoder, recorder: Recorder | None) -> None:
    """One band's (bh, bw) values, context by context, each context's blocks in raster order (``encode``'s)."""
    flat_contexts = contexts.reshape(-1).astype(np.uint8)
    order = np.argsort(flat_contexts, kind="stable")  # a radix sort for 8-bit keys
    ends = np.cumsum(np.bincount(flat_contexts, minlength=CONTEXTS))
    flat = values.reshape(-1)
    for context in np.flatnonzero(largest):
        start, end = (ends[context - 1] if context else 0), ends[context]
        if end > start:
            table = tables.get(*key, int(context))
            symbols = stream.decode_iid(table, int(end - start))
            flat[order[start:end]] = symbols - largest[context]
            _record(recorder, table, symbols)


def _decode_parameters(step: int, stream: StreamDecoder, recorder: Recorder | None) -> np.ndarray:
    count = 3 * BAND_GROUPS * CONTEXTS
    parameters = np.zeros((count, 3), dtype=np.int64)
    for column, size in enumerate((max_magnitude(step) + 1, ZERO_LEVELS - 1, 1 << DECAY_BITS)):
        rows = parameters[:, 0] > 0 if column else np.ones(count, dtype=bool)
        if rows.any():
            symbols = stream.decode_uniform(np.full(int(rows.sum()), size))
            parameters[rows, column] = symbols + (column == 1)
            _record(recorder, np.ones((1, size)), symbols)
    return parameters.reshape(3, BAND_GROUPS, CONTEXTS, 3)


def _record(recorder: Recorder | None, frequencies: np.ndarray, symbols: np.ndarray) -> None:
    """Record (one table per symbol, symbols), the table shared without a copy."""
    if recorder is not None:
        recorder.record(np.broadcast_to(frequencies, (len(symbols), frequencies.shape[-1])), symbols)


def inverse(quantized: np.ndarray, step: int) -> np.ndarray:
    """Quantized coefficients (3, bh, bw, 64) -> the (bh * 8, bw * 8, 3) difference (``inverse_bands``)."""
    return inverse_bands(quantized.transpose(0, 3, 1, 2), step)


def inverse_bands(bands: np.ndarray, step: int) -> np.ndarray:
    """Quantized coefficients held band by band (3, 64, bh, bw), zigzag order -> the (bh * 8, bw * 8, 3)
    difference, in integers: the DCT's and the colour transform's matrices are rounded to fixed point, and
    each stage rounds half up by a shift. The products run as float64 matrix products, which are exact here
    in any summation order (with or without fused multiply-adds): every operand, product and partial sum is
    an integer below 2^53. A coefficient times the step is below 2^12 (``max_magnitude``: 3535 at most) and
    a fixed-point matrix entry below 2^12, so the first DCT stage's eight-term sums stay below 2^27, the
    second's below 2^42, and the colour transform's three-term sums (of 2^28 by 2^12) below 2^42."""
    _, _, bh, bw = bands.shape
    values = (bands[:, _NATURAL] * step).astype(np.float64).reshape(3 * BLOCK, BLOCK, bh * bw)  # (c, i), j, block
    columns = (_DCT_FLOAT_T @ values).reshape(3, BLOCK, BLOCK, bh * bw)  # c, i, v: the sum over j
    spatial = (_DCT_FLOAT_T @ columns.transpose(0, 2, 1, 3)).reshape(3, BLOCK, BLOCK, bh, bw)  # c, v, u: over i
    spatial = _shift_rounding(spatial, 2 * DCT_BITS - COLOUR_BITS)  # scale 2^26 -> 2^12
    planes = spatial.transpose(0, 3, 2, 4, 1).reshape(3, -1)  # c, (block row, u, block column, v)
    rgb = (_COLOUR_FLOAT_T @ planes.astype(np.float64)).T  # scale 2^24
    return _shift_rounding(rgb, 2 * COLOUR_BITS).reshape(bh * BLOCK, bw * BLOCK, 3)


def _shift_rounding(values: np.ndarray, bits: int) -> np.ndarray:
    """Integers held in float64, divided by 2^bits and rounded half up, as int64."""
    return (values.astype(np.int64) + (1 << (bits - 1))) >> bits


def add(base: np.ndarray, difference: np.ndarray) -> np.ndarray:
    """The decoded image: base (uint8) + the decoded difference, clipped to 0..255."""
    return np.clip(base.astype(np.int64) + difference, 0, 255).astype(np.uint8)


def deblock(difference: np.ndarray, step: int) -> np.ndarray:
    """A decoded (h, w, 3) int64 difference with its 8x8 blocks' edges smoothed for a step: HEVC's weak
    filter, line by line and sample by sample, first across vertical edges, then horizontal ones. Where
    both sides of an edge are smooth (their second differences sum below ``DEBLOCK_BETA`` steps) and the
    filter's change stays under ten times its limit, the two samples next to the edge move towards each
    other by at most ``DEBLOCK_LIMIT`` steps. Integers only, and on the difference, which the stream alone
    determines: the image is the base plus it, so it too stays within a level of another machine's."""
    beta = max(1, int(DEBLOCK_BETA * step))
    limit = max(1, int(DEBLOCK_LIMIT * step))
    for axis in (1, 0):
        difference = _deblock_edges(difference, beta, limit, axis)
    return difference


def _deblock_edges(values: np.ndarray, beta: int, limit: int, axis: int) -> np.ndarray:
    """``deblock``'s filter across the block edges along one axis (1: vertical edges, 0: horizontal)."""
    out = np.moveaxis(values.copy(), axis, 0)
    edges = np.arange(BLOCK, out.shape[0] - 2, BLOCK)  # each with three samples on either side
    if not len(edges):
        return np.moveaxis(out, 0, axis)
    p2, p1, p0, q0, q1, q2 = (out[edges + k] for k in (-3, -2, -1, 0, 1, 2))
    smooth = np.abs(p2 - 2 * p1 + p0) + np.abs(q2 - 2 * q1 + q0) < beta
    delta = (9 * (q0 - p0) - 3 * (q1 - p1) + 8) >> 4
    delta = np.where(smooth & (np.abs(delta) < 10 * limit), np.clip(delta, -limit, limit), 0)
    out[edges - 1] = p0 + delta
    out[edges] = q0 - delta
    return np.moveaxis(out, 0, axis)


# ---- what both sides compute -------------------------------------------------------------


def band_contexts(magnitudes: np.ndarray, channel: int, band: int) -> np.ndarray:
    """Every block's context class (bh, bw) for a band (zigzag position) of a channel, from the
    magnitudes (3, bh, bw, 64) of the passes before it only."""
    own = magnitudes[channel, :, :, max(0, band - _PREVIOUS_BANDS) : band].sum(-1)
    return _classes(own, magnitudes[0, :, :, band] if channel else None)


def _plane_contexts(magnitudes: np.ndarray, channel: int, band: int) -> np.ndarray:
    """``band_contexts`` of magnitudes held band by band (3, 64, bh, bw), as the decoder holds them."""
    own = magnitudes[channel, max(0, band - _PREVIOUS_BANDS) : band].sum(0)
    return _classes(own, magnitudes[0, band] if channel else None)


def _classes(own: np.ndarray, first_channel: np.ndarray | None) -> np.ndarray:
    """Context classes (bh, bw) from the previous bands' magnitude sums of each block and, in a colour
    channel, the first channel's magnitudes of the band."""
    total = 2 * own
    total[1:] += own[:-1]
    total[:-1] += own[1:]
    total[:, 1:] += own[:, :-1]
    total[:, :-1] += own[:, 1:]
    if first_channel is not None:
        total += 4 * first_channel
    return np.searchsorted(_CONTEXT_EDGES, total + 1, side="right")


def all_contexts(magnitudes: np.ndarray) -> np.ndarray:
    """The context class (3, bh, bw, 64) of every coefficient, from final magnitudes (an encoder's view:
    the decoder computes each band's after the bands before it)."""
    contexts = np.empty(magnitudes.shape, dtype=np.int64)
    for channel in range(3):
        for band in range(BLOCK * BLOCK):
            contexts[channel, ..., band] = band_contexts(magnitudes, channel, band)
    return contexts


class Tables:
    """The tables of a tile's (channel, band group, context)s from their parameters, each built once."""

    def __init__(self, parameters: np.ndarray):
        self.parameters = parameters
        self._built: dict = {}

    def bits(self) -> tuple[np.ndarray, np.ndarray]:
        """(-log2 p of every value -L..L of every table, centred in one (3, groups, contexts, 2 Lmax + 1)
        array, inf outside a table; every table's L), for an encoder's rate estimates."""
        largest = self.parameters[..., 0]
        span = int(largest.max(initial=0))
        bits = np.full(largest.shape + (2 * span + 1,), np.inf)
        bits[..., span] = 0.0  # a table with L = 0 codes nothing: every value is 0
        for key in zip(*np.nonzero(largest)):
            frequencies = self._table(key)[0]
            size = int(largest[key])
            bits[key][span - size : span + size + 1] = -np.log2(frequencies / frequencies.sum())
        return bits, largest

    def _table(self, key: tuple) -> np.ndarray:
        if key not in self._built:
            self._built[key] = table(*map(int, self.parameters[key]))
        return self._built[key]

    def largest(self, channel: int, band: int, context: int) -> int:
        return int(self.largest_of_band(channel, band)[context])

    def largest_of_band(self, channel: int, band: int) -> np.ndarray:
        """The largest magnitude of each context's table (CONTEXTS,) for a band of a channel."""
        return self.parameters[channel, BAND_GROUP[band], :, 0]

    def get(self, channel: int, band: int, context: int) -> np.ndarray:
        return self._table((channel, int(BAND_GROUP[band]), context))


def table(largest: int, zero: int, decay: int) -> np.ndarray:
    """Integer frequencies (1, 2 * largest + 1) of the values -largest..largest: zero has mass
    zero / 256, each sign half the rest, spread over 1..largest as a geometric distribution of decay
    decay / 2^12 cut at largest, all in integer arithmetic."""
    geometric = np.zeros(largest, dtype=np.int64)
    mass = 1 << 30
    for m in range(largest):
        geometric[m] = mass
        mass = (mass * decay) >> DECAY_BITS
        if not mass:
            break
    side = (geometric * ((ZERO_LEVELS - zero) << 23)) // geometric.sum()  # each product below 2^61
    weights = np.concatenate([side[::-1], [zero << 24], side])[None]  # each below 2^32
    return frequencies(weights, PIXEL_PROBABILITY_BITS)


class ResidualCodec:
    """The residual layer as a codec: a tile's true pixels minus its base image (what the codes decode
    to), as 8x8 DCTs quantized with one step, in one stream shared by the tiles."""

    units_per_tile = 1  # its tiles

    def __init__(self, step: int, deblocking: bool = False, rate_weight: float = 0.0):
        self.step, self.deblocking, self.rate_weight = step, deblocking, rate_weight

    def compress(self, original: np.ndarray, base: np.ndarray, stream: StreamEncoder) -> None:
        """Code a tile's (h, w, 3) uint8 pixels given its (h, w, 3) uint8 base image."""
        encode(original, base, self.step, stream, self.rate_weight)

    def decompress(self, base: np.ndarray, stream: StreamDecoder, recorder: Recorder) -> np.ndarray:
        """A tile's decoded (h, w, 3) uint8 pixels given its base image."""
        height, width = base.shape[:2]
        difference = decode(height, width, self.step, stream, recorder)
        return add(base, deblock(difference, self.step) if self.deblocking else difference)
