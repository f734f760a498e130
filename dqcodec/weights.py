"""Model files: weights quantized uniformly and entropy-coded (Choi, El-Khamy and Lee, "Towards the
limit of network quantization" and "Universal deep neural network compression").

A float tensor with a step becomes integers q, stored as q times that float32 step: decoding
converts int32 to float32 and multiplies by the step, one correctly rounded IEEE operation, so the
weights decode bit-identically on any CPU. The integers are range-coded with constriction, all of a
tensor with one table: its own histogram (one byte per value, a count to 4 significant bits) or, when
that is smaller, a uniform distribution over its range. Integer tensors are coded the same way with
no step; tensors without a step (and booleans) are stored as they are.

A file names its weights by the SHA-256 of their canonical serialization (``digest``: the metadata as
canonical JSON, then every tensor by name with its dtype, shape and little-endian bytes). The file
holds that digest and decoding checks it, so a damaged or tampered payload, or a decoder that
computes other weights, is refused. Layout, little-endian:

    "DQW\\0", version u8, digest (32 bytes), metadata (u32 length, UTF-8 JSON: the checkpoint without
    its state dict), tensor count u32, then each tensor:
        name (u16 length, UTF-8), dtype u8 (``DTYPES``), ndim u8, shape (ndim x u32), coding u8, and
        RAW: u32 length, the bytes;
        HISTOGRAM or UNIFORM: step f32 (0 for integers), lowest value i32, alphabet size K u32,
            the histogram's K bytes (HISTOGRAM only), u32 length, the stream (none when K is 1);
    then a CRC32 of everything before it.

Everything is checked before anything is allocated; a bad file raises ``ModelError``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from . import entropy
from .errors import ArgumentError, CorruptStreamError, ModelError

MAGIC = b"DQW\x00"
VERSION = 1
SUFFIX = ".dqw"
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
RAW, HISTOGRAM, UNIFORM = 0, 1, 2
MAX_ELEMENTS = 1 << 26  # in all tensors of a file (256 MB of float32; dq-hier has 5.1 million)
MAX_TENSORS = 1 << 16
MAX_NDIM = 8
MAX_META = 1 << 20
MAX_SYMBOL = 1 << 23  # |q| below it: int32 -> float32 is exact, and an alphabet spans at most 2^24 values
DECODE_THREADS = 4  # tensors decoded at once
_HEAD = struct.Struct("<4sB32sI")
_CODED = struct.Struct("<fiI")
_U32 = struct.Struct("<I")


# ---- the decoded weights and their digest ---------------------------------------------------


def canonical_meta(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def digest(meta: dict, state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """SHA-256 of the canonical serialization of a checkpoint's metadata and weights."""
    h = hashlib.sha256(b"dqcodec weights\x00")
    _update(h, canonical_meta(meta))
    for name in sorted(state_dict):
        array = _array(state_dict[name])
        _update(h, name.encode())
        _update(h, str(array.dtype).encode())
        h.update(struct.pack(f"<B{array.ndim}Q", array.ndim, *array.shape))
        _update(h, _little_endian(array).tobytes())
    return h.digest()


def _update(h, data: bytes) -> None:
    h.update(struct.pack("<Q", len(data)))
    h.update(data)


def _array(tensor: torch.Tensor) -> np.ndarray:
    array = tensor.detach().cpu().contiguous().numpy()
    if str(array.dtype) not in DTYPES:
        raise ArgumentError(f"tensors of dtype {array.dtype} cannot be stored")
    return array


def _little_endian(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def quantize(tensor: torch.Tensor, step: float) -> np.ndarray:
    """A float tensor's integers q at a step (as float32), each below MAX_SYMBOL in magnitude."""
    step = np.float32(step)
    if not (np.isfinite(step) and step > 0):
        raise ArgumentError(f"a step must be a positive finite number, got {step}")
    q = np.rint(_array(tensor).astype(np.float64) / np.float64(step))
    if q.size and not np.abs(q).max() < MAX_SYMBOL:
        raise ArgumentError(f"step {step} is too fine for values up to {float(np.abs(_array(tensor)).max())}")
    return np.asarray(q, dtype=np.int32)


def dequantize(q: np.ndarray, step: float) -> np.ndarray:
    """q times the float32 step, in float32: exact conversion, one correctly rounded product."""
    return np.asarray(q.astype(np.float32) * np.float32(step))


def quantized(state_dict: Mapping[str, torch.Tensor], steps: Mapping[str, float | None]) -> dict[str, torch.Tensor]:
    """The weights a file made with these steps decodes to (float tensors without a step, and the
    others, unchanged)."""
    return {name: _decoded_value(tensor, steps.get(name)) for name, tensor in state_dict.items()}


def _decoded_value(tensor: torch.Tensor, step: float | None) -> torch.Tensor:
    if step is None or not tensor.is_floating_point():
        return tensor.detach().cpu().clone()
    return torch.from_numpy(dequantize(quantize(tensor, step), step))


# ---- the shipped steps ----------------------------------------------------------------------

# Steps relative to the standard deviation of each tensor's nonzero values, chosen by measurement
# (a Hessian proxy per layer): each large layer of dq-hier and of the baselines was rounded alone
# (GPTQ, below) at 1/2 of its standard deviation, and the cost measured on 8 training crops (bpp
# and PSNR at three qualities, the lossless bits/dim). With cost s for n values, a step proportional
# to sqrt(n / s), rounded to a power of two, gives every value about the same cost: Choi et al.'s
# equal slope. So the synthesis and the pixel likelihood's last steps get fine steps, priors and
# encoder layers coarse ones. Tensors of at most SMALL values (biases, GDN parameters, codebooks and
# their EMA statistics, the quantizers' projections, the first analysis and last synthesis layers,
# the mixture heads) get FINE: together they are 6% of dq-hier's file.
SMALL, FINE = 1 << 15, 1 / 64
RELATIVE_STEPS: list[tuple[str, float]] = [
    # dq models
    (r"^analysis\.", 1 / 4),
    (r"^mixers\.", 1 / 2),
    (r"^levels\.\d+\.prior\.", 1 / 2),
    (r"^contexts\.", 1 / 8),
    (r"^synthesis\.", 1 / 16),
    (r"^pixels\.inputs\.", 1 / 16),
    (r"^pixels\.steps\.[0-3]\.0\.", 1 / 2),  # the pixel likelihood's steps 0-4 code 1, 1, 2, 4 and 8 of 16 pixels
    (r"^pixels\.steps\.[01]\.2\.", 1 / 2),
    (r"^pixels\.steps\.(4\.0|2\.2)\.", 1 / 8),
    (r"^pixels\.steps\.3\.2\.", 1 / 16),
    (r"^pixels\.steps\.4\.2\.", 1 / 32),
    # CompressAI's bmshj2018 baselines
    (r"^g_s\.2\.", 1 / 2),
    (r"^g_s\.", 1 / 8),
    (r"^(g_a|h_a|h_s)\.", 1 / 2),
    # anything else
    (r".", 1 / 4),
]


def shipped_steps(state_dict: Mapping[str, torch.Tensor]) -> dict[str, float | None]:
    """The step of every float tensor as ``RELATIVE_STEPS`` gives it (None for the others)."""
    return {name: _relative_step(name, tensor) for name, tensor in state_dict.items()}


def _relative_step(name: str, tensor: torch.Tensor) -> float | None:
    if not tensor.is_floating_point():
        return None
    nonzero = tensor.detach().double().flatten()
    nonzero = nonzero[nonzero != 0]
    if len(nonzero) < 2 or not nonzero.std() > 0:
        return None  # stored exactly
    alpha = FINE if tensor.numel() <= SMALL else next(alpha for pattern, alpha in RELATIVE_STEPS if re.search(pattern, name))
    return float(np.float32(alpha * nonzero.std()))


# ---- Hessian-weighted rounding on calibration images --------------------------------------------
#
# Rounding each weight to its nearest step ignores that a layer's inputs are correlated (and mostly
# not zero-mean): the rounding errors of a kernel add up in its output. Choi et al. weight the
# quantization error by the loss's Hessian; per layer, the Hessian of the output error is
# H = E[x x^T] over the layer's input patches x, and GPTQ (Frantar et al., ICLR 2023) rounds the
# weights one input column at a time, each time moving the columns not yet rounded to cancel the
# error so far (by H's inverse Cholesky factor). The result still lies on the grid of steps, so the
# file and the decoder are unchanged; only which grid point each weight gets differs.

HESSIAN_POSITIONS = 4096  # input patches sampled per layer call
HESSIAN_ENTRIES = 1 << 24  # Hessian entries held at once (float64): layers are calibrated in chunks
DAMPING = 0.01  # added to H's diagonal, relative to its mean


def compress_model(model: torch.nn.Module, meta: dict, calibration: list[torch.Tensor] | None = None, steps: Mapping | None = None,
                   base: bytes | None = None) -> bytes:
    """A model's file: masked weights zeroed, steps from ``shipped_steps`` unless given, and the
    convolutions' weights rounded by GPTQ on the ``calibration`` images (model inputs), if any. Given
    ``base``, another model file, every tensor equal to one of its (same name, same values) keeps that
    file's step and is not rounded again, so it decodes to the same values."""
    state_dict = effective_state_dict(model)
    steps = dict(shipped_steps(state_dict) if steps is None else steps)
    kept = kept_from(base, state_dict) if base else {}
    steps.update(kept)
    if calibration:
        state_dict = hessian_rounded(model, state_dict, steps, calibration, frozen=set(kept))
    return compress_state_dict(state_dict, steps, meta)


def kept_from(base: bytes, state_dict: Mapping[str, torch.Tensor]) -> dict[str, float | None]:
    """The steps, in the model file ``base``, of the tensors of ``state_dict`` it holds with the same values."""
    _, base_state, _ = read(base)
    base_steps = stored_steps(base)
    return {name: base_steps[name] for name, tensor in state_dict.items()
            if name in base_state and base_state[name].dtype == tensor.dtype and torch.equal(base_state[name], tensor.detach().cpu())}


def calibration_images(paths: list, size: int = 256) -> list[torch.Tensor]:
    """The centre size x size crop of each image (smaller images padded to a multiple of 64 by
    replication) as a (1, 3, H, W) tensor in [0, 1]."""
    from PIL import Image

    crops = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
        left, top = max(0, (image.width - size) // 2), max(0, (image.height - size) // 2)
        crop = np.asarray(image.crop((left, top, left + min(size, image.width), top + min(size, image.height))), dtype=np.float32)
        x = torch.from_numpy(crop / 255).permute(2, 0, 1)[None]
        crops.append(F.pad(x, (0, -x.shape[3] % 64, 0, -x.shape[2] % 64), mode="replicate"))
    return crops


def effective_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with the weights its masked convolutions never use set to zero."""
    state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        mask = getattr(module, "mask", None)
        if isinstance(mask, torch.Tensor) and f"{name}.weight" in state_dict:
            state_dict[f"{name}.weight"] = state_dict[f"{name}.weight"] * mask
    return state_dict


def hessian_rounded(model: torch.nn.Module, state_dict: dict, steps: Mapping[str, float | None], images: list[torch.Tensor],
                    frozen: set[str] = frozenset()) -> dict:
    """``state_dict`` with the weights of every convolution that has a step rounded to its grid by GPTQ,
    layer by layer in chunks: each chunk calibrated on ``images`` (model inputs) through the layers
    already rounded. Layers whose weight or bias is in ``frozen`` are left alone. The model is not changed."""
    import copy

    model = copy.deepcopy(model).eval()
    model.load_state_dict(state_dict)
    layers = {n: m for n, m in _rounded_layers(model, steps).items() if not {n + ".weight", n + ".bias"} & frozen}
    out = dict(state_dict)
    for chunk in _chunks(layers):
        hessians, means = _input_statistics(model, chunk, images)
        for name, module in chunk.items():
            rounded = _gptq_layer(module, hessians[name], steps[name + ".weight"])
            if module.bias is not None:  # the mean output keeps its value (bias correction)
                out[name + ".bias"] = module.bias.detach() - _mean_shift(module, rounded, means[name])
                module.bias.data.copy_(out[name + ".bias"])
            out[name + ".weight"] = rounded
            module.weight.data.copy_(rounded)
    return out


def _mean_shift(module, rounded: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """How much the layer's mean output moves when its weight becomes ``rounded``."""
    change = _conv_form(rounded, module) - _conv_form(module.weight.detach(), module)
    return (change.reshape(len(change), -1).double() @ mean).float()


def _rounded_layers(model: torch.nn.Module, steps) -> dict:
    convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    return {n: m for n, m in model.named_modules() if isinstance(m, convs) and m.groups == 1 and steps.get(n + ".weight")}


def _chunks(layers: dict) -> list[dict]:
    chunks, size = [{}], 0
    for name, module in layers.items():
        entries = _columns(module) ** 2
        if chunks[-1] and size + entries > HESSIAN_ENTRIES:
            chunks, size = chunks + [{}], 0
        chunks[-1][name], size = module, size + entries
    return chunks


def _columns(module) -> int:
    return module.weight[0].numel() if not module.transposed else module.weight[:, 0].numel()


@torch.no_grad()
def _input_statistics(model, layers: dict, images: list[torch.Tensor]) -> tuple[dict, dict]:
    """E[x x^T] and E[x] over sampled input patches x of each layer (as its weight's columns see them)."""
    generator = torch.Generator().manual_seed(0)
    sums, firsts, counts = {}, {}, {}

    def hook(name):
        def record(module, inputs, output):
            x = _patches(module, inputs[0])
            if len(x) > HESSIAN_POSITIONS:
                x = x[torch.randperm(len(x), generator=generator)[:HESSIAN_POSITIONS]]
            x = x.double()
            sums[name] = sums.get(name, 0) + x.T @ x
            firsts[name] = firsts.get(name, 0) + x.sum(0)
            counts[name] = counts.get(name, 0) + len(x)

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in layers.items()]
    try:
        for image in images:
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return {name: sums[name] / counts[name] for name in sums}, {name: firsts[name] / counts[name] for name in sums}


def _patches(module, x: torch.Tensor) -> torch.Tensor:
    """A layer's input patches (positions, columns), in the order of the columns of ``_conv_form``."""
    k = module.kernel_size
    if module.transposed:  # a transposed convolution is a convolution of the zero-stuffed input
        s, p = module.stride, module.padding
        stuffed = x.new_zeros(*x.shape[:2], (x.shape[2] - 1) * s[0] + 1, (x.shape[3] - 1) * s[1] + 1)
        stuffed[..., :: s[0], :: s[1]] = x
        q = (k[0] - 1 - p[0], k[1] - 1 - p[1])
        x = F.pad(stuffed, (q[1], q[1] + module.output_padding[1], q[0], q[0] + module.output_padding[0]))
        columns = F.unfold(x, k)
    else:
        columns = F.unfold(x, k, module.dilation, module.padding, module.stride)
    return columns.transpose(1, 2).reshape(-1, columns.shape[1])


def _conv_form(weight: torch.Tensor, module) -> torch.Tensor:
    """A layer's weight as a convolution's (out, in, kh, kw); the inverse of itself."""
    return weight.flip(-1, -2).transpose(0, 1) if module.transposed else weight


def _gptq_layer(module, hessian: torch.Tensor, step: float) -> torch.Tensor:
    weight = _conv_form(module.weight.detach(), module)
    mask = getattr(module, "mask", None)
    mask = torch.ones_like(weight) if mask is None else mask.expand_as(weight)
    rows = mask.reshape(len(weight), -1)
    rounded = torch.zeros_like(rows)
    for pattern in torch.unique(rows, dim=0):  # rows that see the same inputs (masked convolutions)
        same, seen = (rows == pattern).all(1), pattern.bool()
        w = weight.reshape(len(weight), -1)[same][:, seen]
        rounded[same.nonzero()[:, :1], seen.nonzero()[:, 0]] = gptq(w, hessian[seen][:, seen], step)
    return _conv_form(rounded.reshape(weight.shape), module).contiguous()


def gptq(weight: torch.Tensor, hessian: torch.Tensor, step: float, block: int = 128) -> torch.Tensor:
    """Weights (out, columns) rounded to whole float32 steps, column by column in decreasing order of
    H's diagonal, each rounding error cancelled as far as the remaining columns can (GPTQ)."""
    step = float(np.float32(step))
    order = torch.argsort(torch.diag(hessian), descending=True)
    w, h = weight.double()[:, order].clone(), hessian.double()[order][:, order].clone()
    dead = torch.diag(h) == 0  # inputs that were always zero: rounded to nearest
    h[dead, dead] = 1.0
    h += DAMPING * torch.diag(h).mean() * torch.eye(len(h), dtype=h.dtype)
    try:
        inverse = torch.linalg.solve_triangular(torch.linalg.cholesky(h), torch.eye(len(h), dtype=h.dtype), upper=False)
        u = torch.linalg.cholesky(inverse.T @ inverse, upper=True)  # of H^-1 (cholesky_inverse is far slower)
    except RuntimeError:  # not positive definite even so: round to nearest
        return weight.div(step).round().mul(step).float()
    q = torch.zeros_like(w)
    for start in range(0, w.shape[1], block):
        end = min(start + block, w.shape[1])
        errors = _gptq_block(w[:, start:end], q[:, start:end], u[start:end, start:end], step)
        w[:, end:] -= errors @ u[start:end, end:]
    return (q[:, torch.argsort(order)].float() * torch.tensor(np.float32(step)))


def _gptq_block(w: torch.Tensor, q: torch.Tensor, u: torch.Tensor, step: float) -> torch.Tensor:
    """Round a block of columns in place (q gets whole steps), returning the scaled errors."""
    errors = torch.zeros_like(w)
    for i in range(w.shape[1]):
        q[:, i] = torch.round(w[:, i] / step)
        errors[:, i] = (w[:, i] - q[:, i] * step) / u[i, i]
        w[:, i:] -= errors[:, i : i + 1] * u[i : i + 1, i:]
    return errors


# ---- writing --------------------------------------------------------------------------------


def compress_state_dict(state_dict: Mapping[str, torch.Tensor], steps: Mapping[str, float | None], meta: dict | None = None) -> bytes:
    """A model file: every float tensor quantized at its step in ``steps`` (absent or None: stored
    exactly), the integers entropy-coded; ``meta`` (JSON) is stored with them."""
    meta = meta or {}
    decoded = quantized(state_dict, steps)
    parts = [_HEAD.pack(MAGIC, VERSION, digest(meta, decoded), len(canonical_meta(meta))), canonical_meta(meta)]
    parts.append(_U32.pack(len(state_dict)))
    for name, tensor in state_dict.items():
        parts.append(_tensor_record(name, tensor, steps.get(name)))
    body = b"".join(parts)
    return body + _U32.pack(zlib.crc32(body))


def _tensor_record(name: str, tensor: torch.Tensor, step: float | None) -> bytes:
    array = _array(tensor)
    encoded = name.encode()
    if len(encoded) >= 1 << 16 or array.ndim > MAX_NDIM:
        raise ArgumentError(f"tensor {name!r}: name or rank too large to store")
    quantizing = step is not None and tensor.is_floating_point()
    dtype = "float32" if quantizing else str(array.dtype)
    head = struct.pack("<H", len(encoded)) + encoded + struct.pack(f"<BB{array.ndim}I", DTYPES.index(dtype), array.ndim, *array.shape)
    if quantizing:
        return head + _smallest(_coded_records(quantize(tensor, step).ravel(), float(np.float32(step))))
    raw = _raw_record(array)
    if array.dtype.kind in "iu" and array.size and np.abs(array.astype(np.int64)).max() < MAX_SYMBOL:
        return head + _smallest([raw, *_coded_records(array.astype(np.int64).ravel(), 0.0)])
    return head + raw


def _raw_record(array: np.ndarray) -> bytes:
    data = _little_endian(array).tobytes()
    return bytes([RAW]) + _U32.pack(len(data)) + data


def _coded_records(q: np.ndarray, step: float) -> list[bytes]:
    """The HISTOGRAM and UNIFORM records of integers q (one record when they are all equal)."""
    low = int(q.min()) if q.size else 0
    symbols = (q - low).astype(np.int32)
    size = int(symbols.max()) + 1 if q.size else 1
    head = _CODED.pack(step, low, size)
    if size == 1:
        return [bytes([UNIFORM]) + head + _U32.pack(0)]
    histogram = log_counts(np.bincount(symbols, minlength=size))
    frequencies = counts_of(histogram)
    coded = [(HISTOGRAM, histogram.tobytes(), entropy.encode_iid(symbols, frequencies)), (UNIFORM, b"", entropy.encode_iid(symbols, size))]
    return [bytes([kind]) + head + table + _U32.pack(len(stream)) + stream for kind, table, stream in coded]


def _smallest(records: list[bytes]) -> bytes:
    return min(records, key=len)


def log_counts(counts: np.ndarray) -> np.ndarray:
    """Counts as bytes c: c < 8 exactly, else (8 + m) << e with c = 8 + 8e + m (4 significant bits, rounded down)."""
    counts = counts.astype(np.int64)
    e = np.maximum(np.frexp(np.maximum(counts, 1).astype(np.float64))[1] - 4, 0)  # bit length - 4
    m = (counts >> e) - 8
    return np.where(counts < 8, counts, 8 + 8 * e + m).astype(np.uint8)


def counts_of(histogram: np.ndarray) -> np.ndarray:
    """The integer frequencies (float64) a histogram of ``log_counts`` bytes stands for."""
    c = histogram.astype(np.int64)
    e, m = np.maximum(c - 8, 0) // 8, np.maximum(c - 8, 0) % 8
    return np.where(c < 8, c, (8 + m) << e).astype(np.float64)


# ---- reading --------------------------------------------------------------------------------


class _Reader:
    """Bytes read front to back; reading past the end is a ModelError."""

    def __init__(self, data: bytes):
        self.data, self.offset = memoryview(data), 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.offset + n > len(self.data):
            raise ModelError(f"model file is truncated or malformed (needs {n} bytes at offset {self.offset} of {len(self.data)})")
        self.offset += n
        return bytes(self.data[self.offset - n : self.offset])

    def unpack(self, fmt: struct.Struct | str) -> tuple:
        fmt = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
        return fmt.unpack(self.take(fmt.size))


def read(data: bytes) -> tuple[dict, dict[str, torch.Tensor], bytes]:
    """(metadata, state dict, digest) of a model file, its digest checked against its weights."""
    meta, records, expected = _records(data)
    with ThreadPoolExecutor(max(1, min(DECODE_THREADS, os.cpu_count() or 1))) as pool:  # constriction lets go of the GIL
        state_dict = dict(zip(records, pool.map(lambda record: record[1](), records.values())))
    if digest(meta, state_dict) != expected:
        raise ModelError("model file's weights do not match their SHA-256: the file is damaged")
    return meta, state_dict, expected


def stored_steps(data: bytes) -> dict[str, float | None]:
    """The step each tensor of a model file is stored with (None: stored as it is, or an integer tensor)."""
    return {name: step for name, (step, _) in _records(data)[1].items()}


def _records(data: bytes) -> tuple[dict, dict[str, tuple[float | None, Callable[[], torch.Tensor]]], bytes]:
    """(metadata, every tensor's (step, how to decode it), the digest the file gives), all but the streams checked."""
    reader = _Reader(_checked_body(data))
    magic, version, expected, meta_length = reader.unpack(_HEAD)
    if magic != MAGIC:
        raise ModelError("not a dqcodec model file (bad magic bytes)")
    if version != VERSION:
        raise ModelError(f"model file format version {version} is not supported (this dqcodec reads {VERSION})")
    meta = _meta(reader.take(meta_length) if meta_length <= MAX_META else b"")
    (count,) = reader.unpack(_U32)
    if count > MAX_TENSORS:
        raise ModelError(f"model file names {count} tensors, more than {MAX_TENSORS}")
    records, budget = {}, MAX_ELEMENTS
    for _ in range(count):
        name, size, step, decode = _read_tensor(reader, budget)
        if name in records:
            raise ModelError(f"model file holds tensor {name!r} twice")
        records[name], budget = (step, decode), budget - size
    if reader.offset != len(reader.data):
        raise ModelError("model file has data after its last tensor")
    return meta, records, expected


def decompress_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    return read(data)[1]


def stored_digest(data: bytes) -> bytes:
    """The digest a model file gives its weights, read from its header (``read`` checks it)."""
    if len(data) < _HEAD.size or data[:4] != MAGIC:
        raise ModelError("not a dqcodec model file (bad magic bytes)")
    return _HEAD.unpack_from(data)[2]


def _checked_body(data: bytes) -> bytes:
    if len(data) < _HEAD.size + _U32.size or data[:4] != MAGIC:
        raise ModelError("not a dqcodec model file (bad magic bytes)")
    if zlib.crc32(data[: -_U32.size]) != _U32.unpack_from(data, len(data) - _U32.size)[0]:
        raise ModelError("model file checksum mismatch: the file is truncated or damaged")
    return data[: -_U32.size]


def _meta(data: bytes) -> dict:
    try:
        meta = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise ModelError("model file's metadata is not a JSON object")
    return meta


def _read_tensor(reader: _Reader, budget: int) -> tuple[str, int, float | None, Callable[[], torch.Tensor]]:
    """A tensor's name, size, step (None if it has none) and how to decode it, everything but its stream checked."""
    (name_length,) = reader.unpack("<H")
    try:
        name = reader.take(name_length).decode()
    except UnicodeDecodeError:
        raise ModelError("model file holds a tensor name that is not UTF-8") from None
    dtype_code, ndim = reader.unpack("<BB")
    if dtype_code >= len(DTYPES) or ndim > MAX_NDIM:
        raise ModelError(f"tensor {name!r}: unknown dtype or rank")
    shape = reader.unpack(f"<{ndim}I")
    size = math.prod(shape)
    if size > budget:
        raise ModelError(f"tensor {name!r}: {size} values, more than the file may hold ({MAX_ELEMENTS} in all)")
    (kind,) = reader.unpack("<B")
    dtype = np.dtype(DTYPES[dtype_code])
    step, values = (None, _read_raw(reader, dtype, size)) if kind == RAW else _read_coded(reader, kind, dtype, size, name)
    return name, size, step, lambda: torch.from_numpy(values().reshape(shape))


def _read_raw(reader: _Reader, dtype: np.dtype, size: int) -> Callable[[], np.ndarray]:
    (length,) = reader.unpack(_U32)
    if length != size * dtype.itemsize:
        raise ModelError(f"a stored tensor has {length} bytes, not the {size * dtype.itemsize} its shape needs")
    data = reader.take(length)
    return lambda: np.frombuffer(data, dtype=dtype.newbyteorder("<")).astype(dtype)


def _read_coded(reader: _Reader, kind: int, dtype: np.dtype, size: int, name: str) -> tuple[float | None, Callable[[], np.ndarray]]:
    if kind not in (HISTOGRAM, UNIFORM):
        raise ModelError(f"tensor {name!r}: unknown coding {kind}")
    step, low, alphabet = reader.unpack(_CODED)
    _check_coded(name, dtype, step, low, alphabet)
    table = counts_of(np.frombuffer(reader.take(alphabet), dtype=np.uint8)) if kind == HISTOGRAM else alphabet
    if kind == HISTOGRAM and not table.any():
        raise ModelError(f"tensor {name!r}: its histogram is empty")
    (length,) = reader.unpack(_U32)
    stream = reader.take(length)

    def decode() -> np.ndarray:
        symbols = np.zeros(size, dtype=np.int32) if alphabet == 1 else _symbols(stream, table, size, name)
        q = symbols.astype(np.int64) + low
        return dequantize(q.astype(np.int32), step) if dtype == np.float32 and step else q.astype(dtype)

    return (float(step) if step else None), decode


def _check_coded(name: str, dtype: np.dtype, step: float, low: int, alphabet: int) -> None:
    integer = dtype.kind in "iu"
    if not (1 <= alphabet <= 2 * MAX_SYMBOL and -MAX_SYMBOL < low and low + alphabet <= MAX_SYMBOL):
        raise ModelError(f"tensor {name!r}: values out of range")
    if integer and (step != 0 or low < np.iinfo(dtype).min or low + alphabet - 1 > np.iinfo(dtype).max):
        raise ModelError(f"tensor {name!r}: values out of its dtype's range")
    if not integer and (dtype != np.float32 or not (np.isfinite(step) and step > 0)):
        raise ModelError(f"tensor {name!r}: a quantized tensor needs dtype float32 and a positive step")


def _symbols(stream: bytes, table, size: int, name: str) -> np.ndarray:
    try:
        return entropy.decode_iid(stream, table, size)
    except CorruptStreamError as error:
        raise ModelError(f"tensor {name!r}: {error}") from None
