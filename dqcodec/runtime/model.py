"""A DQ model for decoding without torch: its level chain in exact fixed point and its synthesis in float32.

``RuntimeModel`` is built from a weights file's config and arrays and offers what ``stack.LayerStack``
decodes with: ``chain.decompress`` (every level's indices of a region, from its streams) and
``reconstruct`` (the codes' image). The tables are those of the torch path (``levels.LevelChain``)
integer for integer; the image is the float synthesis, within a level of torch's.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import fixed, graph
from ..codes import DecodedCodes, last_coded
from ..config import DQConfig
from ..entropy import PROBABILITY_BITS, StreamDecoder, StreamEncoder
from ..errors import FixedPointError, MissingExtraError
from ..point import Ladder, OperatingPoint
from ..recorder import Recorder
from . import kernels, network, pixels
from .lowbit_pixels import LowbitPixelModel


class AnchorNet:
    """A group's anchor context (``graph.AnchorContext``, ``priors.AnchorNet``) in exact fixed point."""

    def __init__(self, spec: graph.AnchorContext, arrays: Mapping[str, np.ndarray], prefix: str):
        self.spec = spec
        self.weights, self.biases = {}, {}
        for name in ("codes", "logits", "mix", "out"):
            self.weights[name] = fixed.fixed_weight(arrays[f"{prefix}{name}.weight"])
            self.biases[name] = fixed.fixed_bias(arrays[f"{prefix}{name}.bias"])
            fixed.check_exact_range(self.weights[name], self.biases[name])
        first = ("codes", "logits")
        worst = sum(float(np.abs(self.weights[n]).sum((1, 2, 3)).max()) for n in first) * fixed.LIMIT
        if worst + sum(float(np.abs(self.biases[n]).max()) for n in first) >= fixed.EXACT:
            raise FixedPointError("an anchor context's sums can pass float64's exact integers")
        self.flat = {name: kernels.conv_weight(weight) for name, weight in self.weights.items()}

    def __call__(self, anchor_codes: np.ndarray, logits: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """Fixed-point logits (H, W, K) of the non-anchor positions from the anchors' codes (H, W, D), zero
        elsewhere, and the group-causal logits (H, W, K)."""
        spec, flat, biases = self.spec, self.flat, self.biases
        seen = np.concatenate([anchor_codes, anchors[..., None] * fixed.SCALE], -1)
        sums = kernels.conv2d(seen, flat["codes"], biases["codes"], spec.window, 1, spec.window // 2)
        sums += kernels.conv2d(logits, flat["logits"], biases["logits"], 1)
        h = fixed.gelu(fixed.rescale(sums))
        h = fixed.gelu(fixed.rescale(kernels.conv2d(h, flat["mix"], biases["mix"], 1)))
        return np.clip(
            logits + fixed.rescale(kernels.conv2d(h, flat["out"], biases["out"], 1)), -fixed.LIMIT, fixed.LIMIT
        )


CodeGroup = Callable[[int, np.ndarray, "np.ndarray | None"], np.ndarray]


class Prior:
    """A level's group-causal prior (``priors.GroupCausalPrior``) in exact fixed point, group by group, as
    ``priors.SequentialPrior`` runs it: the same integer weights, sums, rounding and GELU."""

    def __init__(
        self,
        specs: tuple[graph.MaskedConv, ...],
        arrays: Mapping[str, np.ndarray],
        prefix: str,
        anchors: list[AnchorNet] | None = None,
    ):
        self.specs = specs
        self.anchors = anchors or []
        self.weights, self.biases = [], []
        for i, spec in enumerate(specs):
            weight = fixed.fixed_weight(arrays[f"{prefix}{i}.weight"] * spec.mask())
            bias = fixed.fixed_bias(arrays[f"{prefix}{i}.bias"])
            fixed.check_exact_range(weight, bias)
            self.weights.append(weight)
            self.biases.append(bias)

    def sequence(self, context: np.ndarray | None, shape: tuple[int, int], groups: int) -> PriorSequence:
        return PriorSequence(self, context, shape, groups)


class PriorSequence:
    """Logits of one group at a time, fed the codes of the groups decoded so far (``priors.SequentialPrior``)."""

    def __init__(self, prior: Prior, context: np.ndarray | None, shape: tuple[int, int], groups: int):
        self.prior, self.groups, self.shape = prior, groups, shape
        first = prior.specs[0]
        self.context_sums = None
        if context is not None:
            rows = groups * first.group_out
            weight = kernels.conv_weight(prior.weights[0][:rows, : first.free_in])
            self.context_sums = kernels.conv2d(context, weight, prior.biases[0][:rows], first.kernel, 1, first.padding)
        h, w = shape
        self.codes = np.zeros((h, w, groups * first.group_in))
        self.hidden = [np.zeros((h, w, groups * spec.group_out)) for spec in prior.specs[:-1]]
        self.pushed = 0

    def logits(self, j: int) -> np.ndarray:
        """Fixed-point logits (H, W, K) of group j; needs the codes of groups < j to have been pushed."""
        if self.pushed != j or j >= self.groups:
            raise RuntimeError(f"group {j} asked for after {self.pushed} pushed groups, of {self.groups}")
        x = self.codes
        for i, hidden in enumerate(self.hidden):
            width = self.prior.specs[i].group_out
            hidden[..., j * width : (j + 1) * width] = fixed.gelu(self._layer(i, x, j))
            x = hidden
        return self._layer(len(self.hidden), x, j)

    def push(self, codes_j: np.ndarray) -> None:
        """Fixed-point codes (H, W, D) of the group just coded."""
        d = codes_j.shape[-1]
        self.codes[..., self.pushed * d : (self.pushed + 1) * d] = codes_j
        self.pushed += 1

    def _layer(self, i: int, x: np.ndarray, j: int) -> np.ndarray:
        """Layer i's outputs of group j from x, the group inputs (without the context) it may see and maybe more."""
        spec, weight, bias = self.prior.specs[i], self.prior.weights[i], self.prior.biases[i]
        rows = slice(j * spec.group_out, (j + 1) * spec.group_out)
        first, last = spec.free_in, spec.visible_inputs(j)
        if i == 0 and self.context_sums is not None:
            sums = self.context_sums[..., rows]
        else:
            sums = np.broadcast_to(bias[rows], (*self.shape, spec.group_out))
        if last > first:
            taps = kernels.conv_weight(weight[rows, first:last])
            sums = sums + kernels.conv2d(x[..., : last - first], taps, None, spec.kernel, 1, spec.padding)
        return fixed.rescale(sums)


class Level:
    """A level's codebooks and prior: its indices decoded from its stream (``levels.LevelCodec.decompress``)."""

    def __init__(self, config: DQConfig, i: int, arrays: Mapping[str, np.ndarray]):
        level = config.levels[i]
        self.num_groups, self.code_dim, self.codebook_size = level.groups, level.dim, level.codebook
        quantizer = f"levels.{i}.quantizer."
        embed = arrays[quantizer + "embed"].astype(np.float32)  # (books, K, D)
        self.books = embed if config.depthwise else np.repeat(embed[:1], level.groups, 0)
        weight, bias = (
            arrays[quantizer + "proj_weight"],
            arrays[quantizer + "proj_bias"],
        )  # (books, D, C / M), (books, D)
        self.projections = np.broadcast_to(weight, (level.groups, *weight.shape[1:])).astype(np.float32)
        self.projection_biases = np.broadcast_to(bias, (level.groups, *bias.shape[1:])).astype(np.float32)
        specs = graph.prior(
            graph.context_channels(config, i),
            level.groups,
            level.dim,
            level.codebook,
            level.hidden or config.prior_hidden,
        )
        anchor_nets = [
            AnchorNet(spec, arrays, f"levels.{i}.prior.anchors.{j}.")
            for j, spec in enumerate(graph.anchor_contexts(config, i))
        ]
        self.prior = Prior(specs, arrays, f"levels.{i}.prior.layers.", anchor_nets)

    def project(self, features: np.ndarray) -> np.ndarray:
        """Features (H, W, C) -> the groups' projected vectors (M, H * W, D) (``DepthwiseQuantizer.project``)."""
        h, w, c = features.shape
        groups = features.reshape(h * w, self.num_groups, c // self.num_groups).transpose(1, 0, 2)
        return np.matmul(groups, self.projections.transpose(0, 2, 1)) + self.projection_biases[:, None, :]

    def compress(
        self,
        z: np.ndarray,
        context: np.ndarray | None,
        shape: tuple[int, int],
        groups: int,
        rate_weight: float,
        stream: StreamEncoder,
    ) -> np.ndarray:
        """Choose and encode the indices (M, H, W) of the first ``groups`` groups from projected vectors z (M, N, D)
        (``levels.LevelCodec.compress``): each minimises |z - e_k|^2 + rate_weight * (-log2 p_k) under the table
        the decoder will use."""

        def encode_group(j: int, frequencies: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
            book, vectors = self.books[j], z[j] if positions is None else z[j][positions]
            cost = (
                np.square(vectors).sum(-1, keepdims=True) - 2 * (vectors @ book.T) + np.square(book).sum(-1)[None, :]
            ).astype(np.float64)
            if rate_weight:
                cost += rate_weight * -np.log2(frequencies / frequencies.sum(-1, keepdims=True))
            symbols = cost.argmin(-1)
            stream.encode(symbols, frequencies)
            return symbols

        return self._code_groups(context, shape, groups, encode_group)

    def decompress(
        self, stream: StreamDecoder, context: np.ndarray | None, shape: tuple[int, int], groups: int, recorder: Recorder
    ) -> np.ndarray:
        """The indices (M, H, W) of the first ``groups`` groups (the rest 0); every group's table goes to the recorder."""

        def decode_group(j: int, frequencies: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
            symbols = stream.decode(frequencies)
            recorder.record(frequencies, symbols)
            return symbols

        return self._code_groups(context, shape, groups, decode_group)

    def _code_groups(
        self,
        context: np.ndarray | None,
        shape: tuple[int, int],
        groups: int,
        code_group: CodeGroup,
    ) -> np.ndarray:
        """Walk the level group by group: ``code_group(j, frequencies, positions)`` encodes or decodes group j's
        indices at ``positions`` (rows of (H, W), None for all) and returns them; an anchored group codes its
        checkerboard's anchors first (``levels.LevelCodec._code_groups``). Both directions see the same tables."""
        indices = np.zeros((self.num_groups, *shape), dtype=np.int64)
        if not groups:
            return indices
        sequence = self.prior.sequence(context, shape, groups)
        for j in range(groups):
            logits = sequence.logits(j)
            if j < len(self.prior.anchors):
                symbols = self._code_anchored(j, logits, code_group)
            else:
                symbols = code_group(j, fixed.logits_to_frequencies(logits, PROBABILITY_BITS), None)
            indices[j] = symbols.reshape(shape)
            sequence.push(fixed.to_fixed(self.books[j][indices[j]]))
        return indices

    def _code_anchored(self, j: int, logits: np.ndarray, code_group: CodeGroup) -> np.ndarray:
        h, w, _ = logits.shape
        anchors = graph.anchor_mask(h, w)
        flat = anchors.reshape(-1)
        first, second = np.flatnonzero(flat), np.flatnonzero(~flat)
        symbols = np.zeros(h * w, dtype=np.int64)
        symbols[first] = code_group(j, fixed.logits_to_frequencies(logits, PROBABILITY_BITS)[first], first)
        anchor_codes = fixed.to_fixed(self.books[j][symbols.reshape(h, w)]) * anchors[..., None]
        given = self.prior.anchors[j](anchor_codes, logits, anchors)
        symbols[second] = code_group(j, fixed.logits_to_frequencies(given, PROBABILITY_BITS)[second], second)
        return symbols

    def codes(self, indices: np.ndarray, groups: int) -> np.ndarray:
        """The float32 codes (H, W, M * D) of indices (M, H, W), groups past ``groups`` zero."""
        m, h, w = indices.shape
        codes = np.zeros((h, w, m, self.code_dim), dtype=np.float32)
        for j in range(groups):
            codes[:, :, j] = self.books[j][indices[j]]
        return codes.reshape(h, w, m * self.code_dim)


class Chain:
    """The levels as one latent codec (``levels.LevelChain``), decoding only."""

    def __init__(self, net: RuntimeModel):
        self.net = net

    @property
    def stream_names(self) -> list[str]:
        return self.net.config.stream_names

    def compress(
        self,
        features: list[np.ndarray],
        x: np.ndarray,
        point: OperatingPoint,
        streams: list[StreamEncoder],
        rate_weight: float | None = None,
        refine_steps: int = 0,
    ) -> DecodedCodes:
        """Choose and encode every level's indices of a region from its features (``RuntimeModel.analyse``, each
        (1, C, H, W)), as ``levels.LevelChain.compress`` does; the rate weight defaults to the point's."""
        if refine_steps:
            raise MissingExtraError("encoder effort takes gradient steps, which need torch")
        net, groups = self.net, point.groups
        rate_weight = point.rate_weight if rate_weight is None else rate_weight
        last = last_coded(groups)
        context, indices = None, []
        for i, level in enumerate(net.levels):
            own = np.ascontiguousarray(features[i][0].transpose(1, 2, 0))
            shape = (own.shape[0], own.shape[1])
            if i > last:  # a level this point codes nothing of
                indices.append(np.zeros((1, level.num_groups, *shape), dtype=np.int64))
                continue
            level_input = own if context is None else net.mix(i, own, fixed.to_float(context))
            coded = level.compress(level.project(level_input), context, shape, groups[i], rate_weight, streams[i])
            indices.append(coded[None])
            if i < last:
                codes = fixed.to_fixed(level.codes(coded, groups[i]))
                context = net.next_context(i, codes, context, net.exact_contexts)
        return DecodedCodes(indices, groups, last, context)

    def decompress(
        self, streams: list[StreamDecoder], shape: tuple[int, int], point: OperatingPoint, recorder: Recorder
    ) -> DecodedCodes:
        """Decode every level's indices of a region of ``shape`` first-level positions."""
        net, groups = self.net, point.groups
        last = last_coded(groups)
        context, indices = None, []
        for i, level in enumerate(net.levels):
            size = (shape[0] << i, shape[1] << i)
            indices.append(level.decompress(streams[i], context, size, groups[i], recorder)[None])
            if i < last:
                codes = fixed.to_fixed(level.codes(indices[i][0], groups[i]))
                context = net.next_context(i, codes, context, net.exact_contexts)
        return DecodedCodes(indices, groups, last, context)


class RuntimeModel:
    """A DQ model from its config and weights, for coding lossy and residual files without torch."""

    def __init__(self, config: DQConfig, arrays: Mapping[str, np.ndarray]):
        self.config = config
        count = len(config.levels)
        self.levels = [Level(config, i, arrays) for i in range(count)]
        named = graph.networks(config)
        self.exact_contexts = [
            network.exact_layers(named[f"contexts.{i}"], arrays, f"contexts.{i}.") for i in range(count - 1)
        ]
        self.float_contexts = [
            network.float_layers(named[f"contexts.{i}"], arrays, f"contexts.{i}.") for i in range(count - 1)
        ]
        self.synthesis = network.float_layers(named["synthesis"], arrays, "synthesis.")
        self.arrays = arrays
        self.analysis = [network.float_layers(named[f"analysis.{i}"], arrays, f"analysis.{i}.") for i in range(count)]
        self.mixers = [network.float_layers(named[f"mixers.{i}"], arrays, f"mixers.{i}.") for i in range(count - 1)]
        self.has_pixel_model = bool(config.pixel_mixtures)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def inference(self) -> contextlib.AbstractContextManager:
        """What coding runs under (``DQCodec.inference``: no autograd); nothing here."""
        return contextlib.nullcontext()

    @property
    def ladder(self) -> Ladder:
        return Ladder.from_config(self.config)

    @property
    def chain(self) -> Chain:
        return Chain(self)

    def pixel_layer(self, tolerance: int) -> PixelLayer:
        """The pixel layer of lossless (0) or near-lossless points of that tolerance (``stack.PixelLayer``'s)."""
        return PixelLayer(self, tolerance)

    @functools.cached_property
    def exact_synthesis_layers(self) -> tuple[list[network.Function], list[network.Function]]:
        """The synthesis in exact fixed point, up to its last features and its last layer (built on first use)."""
        chain = graph.networks(self.config)["synthesis"]
        assert isinstance(chain, graph.Chain)
        last = len(chain.layers) - 1
        features = [
            f
            for i, layer in enumerate(chain.layers[:last])
            for f in network.exact_layers(layer, self.arrays, f"synthesis.{i}.")
        ]
        return features, network.exact_layers(chain.layers[last], self.arrays, f"synthesis.{last}.")

    def exact_synthesis(self, decoded: DecodedCodes) -> tuple[np.ndarray, np.ndarray]:
        """The synthesis' last features (H / 2, W / 2, F) and image (H, W, 3), unclamped, in fixed point, from decoded
        codes (``DQCodec.exact_synthesis``): what the pixel likelihood reads."""
        i = decoded.last
        x = fixed.to_fixed(self.levels[i].codes(np.asarray(decoded.indices[i])[0], decoded.groups[i]))
        x = self.next_context(i, x, decoded.context, self.exact_contexts)
        for k in range(i + 1, self.num_levels):
            empty = np.zeros((*x.shape[:2], self.levels[k].num_groups * self.levels[k].code_dim))
            x = self.next_context(k, empty, x, self.exact_contexts)
        to_features, to_image = self.exact_synthesis_layers
        features = network.run(to_features, x)
        return features, network.run(to_image, features)

    def analyse(self, x: np.ndarray) -> list[np.ndarray]:
        """Each level's features (1, C, h, w), first level first, of an image x (1, 3, H, W) in [0, 1]
        (``DQCodec.analyse``; the layout of torch's tensors, so ``tiling`` cuts both alike)."""
        y = np.ascontiguousarray(np.asarray(x, dtype=np.float32)[0].transpose(1, 2, 0))
        features = []
        for stage in self.analysis:
            y = network.run(stage, y)
            features.append(y.transpose(2, 0, 1)[None])
        return features[::-1]

    def mix(self, i: int, features: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Level i's input (H, W, C): its features mixed with its float context (``DQCodec.level_input``)."""
        return network.run(self.mixers[i - 1], np.concatenate([features, context], -1))

    def next_context(
        self, i: int, codes: np.ndarray, context: np.ndarray | None, contexts: list[list[network.Function]]
    ) -> np.ndarray:
        """What level i's codes (H, W, C) and context decode to: the next level's context or, after the last
        level, the synthesis input (``DQCodec.next_context``), with the exact or the float context decoders."""
        x = codes if context is None else np.concatenate([codes, context], -1)
        return x if i == self.num_levels - 1 else network.run(contexts[i], x)

    def reconstruct(self, indices: list[np.ndarray], groups: tuple[int, ...]) -> np.ndarray:
        """The image (1, 3, H, W) in [0, 1] from every level's indices (1, M, H, W), in float32, the contexts
        recomputed in float (``DQCodec.reconstruct``)."""
        last = last_coded(groups)
        context = None
        for i in range(last + 1):
            codes = self.levels[i].codes(np.asarray(indices[i])[0], groups[i])
            if i < last:
                context = self.next_context(i, codes, context, self.float_contexts)
        x = self.next_context(last, codes, context, self.float_contexts)
        for k in range(last + 1, self.num_levels):
            empty = np.zeros((*x.shape[:2], self.levels[k].num_groups * self.levels[k].code_dim), dtype=np.float32)
            x = self.next_context(k, empty, x, self.float_contexts)
        image = network.run(self.synthesis, x)
        return np.clip(image, 0, 1).transpose(2, 0, 1)[None]


def load(config: dict, arrays: Mapping[str, np.ndarray]) -> RuntimeModel:
    """A runtime model from a weights file's metadata config and arrays."""
    return RuntimeModel(DQConfig.from_dict(config), arrays)


class PixelLayer:
    """The pixel layer (``stack.PixelLayer``) in the runtime: a tile's pixels from the exact synthesis of its codes."""

    units_per_tile = graph.BLOCK**2  # the pixel positions of its blocks

    def __init__(self, net: RuntimeModel | Any, tolerance: int):
        self.net, self.codec = net, pixels.PixelCodec(pixel_likelihood(net.arrays, net.config), tolerance)

    def compress(
        self,
        decoded: DecodedCodes,
        region: np.ndarray,
        inside: tuple[int, int],
        stream: StreamEncoder,
        recorder: Recorder,
    ) -> None:
        """Encode a tile's pixels; ``region`` (1, 3, H, W) in [0, 1], as ``LayerStack.compress`` hands it."""
        features, x_hat = self.net.exact_synthesis(decoded)
        values = np.round(np.asarray(region, dtype=np.float64)[0].transpose(1, 2, 0) * 255)
        self.codec.compress(features, x_hat, values, inside, stream, recorder)

    def decompress(
        self, decoded: DecodedCodes, inside: tuple[int, int], stream: StreamDecoder, recorder: Recorder
    ) -> np.ndarray:
        features, x_hat = self.net.exact_synthesis(decoded)
        image = self.codec.decompress(features, x_hat, inside, stream, recorder)
        return image[: inside[0], : inside[1]].astype(np.uint8)

    def bits(self, decoded: DecodedCodes, region: np.ndarray, inside: tuple[int, int]) -> float:
        if not hasattr(self.net, "float_pixel_bits"):
            raise MissingExtraError("the model's own estimate of a file's pixel bits (its float mixture) needs torch")
        return self.net.float_pixel_bits(decoded, region, inside)


def pixel_likelihood(arrays: Mapping[str, np.ndarray], config) -> pixels.ExactPixelModel | LowbitPixelModel:
    """A model's pixel likelihood: low-bit (lossless format 2) where its config gives grids, else fixed point."""
    if not config.pixel_mixtures:
        raise ValueError("a pixel layer needs a model with a pixel likelihood")
    shape = (arrays, config.channels, config.pixel_mixtures, config.pixel_hidden)
    if config.pixel_grids:
        return LowbitPixelModel(*shape, config.pixel_grids)
    return pixels.ExactPixelModel(*shape)
