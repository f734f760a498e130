"""Learned priors over code indices.

``GroupCausalPrior`` predicts logits for the M sub-tensors of one level. Group j is
conditioned on a context that the decoder already has (the decoded upper level, or
nothing at the top) and on the quantized codes of groups 0..j-1, including their
3x3 spatial neighbourhood. Group 0 of the top level therefore gets a learned
distribution of its own; later groups get richer context. The structure is a MADE
over channel groups: masked convolutions let one pass produce every group's logits
in training, while coding runs group by group and reuses earlier groups' hidden
activations, so the whole level costs one pass either way.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import exact, fixed, graph
from .transforms import build as build_graph


class _GroupMaskedConv(nn.Conv2d):
    """Conv whose output group j sees `free_in` context channels plus input groups up to
    j (``inclusive``) or up to j-1 (strict): ``graph.MaskedConv``."""

    def __init__(self, spec: graph.MaskedConv):
        super().__init__(spec.cin, spec.cout, spec.kernel, padding=spec.padding)
        self.spec = spec
        self.free_in, self.group_in, self.group_out = spec.free_in, spec.group_in, spec.group_out
        self.register_buffer("mask", torch.from_numpy(spec.mask()), persistent=False)

    def visible_inputs(self, j: int) -> int:
        return self.spec.visible_inputs(j)

    def forward(self, x, groups: int | None = None):
        """Every output group, or only the first ``groups`` from the inputs they may see."""
        weight, bias = self.weight * self.mask, self.bias
        if groups is not None:
            rows, n_in = groups * self.group_out, self.visible_inputs(groups - 1)
            if n_in == 0:
                return bias[:rows].view(1, -1, 1, 1).expand(x.shape[0], -1, x.shape[2], x.shape[3])
            x, weight, bias = x[:, :n_in], weight[:rows, :n_in], bias[:rows]
        return F.conv2d(x, weight, bias, padding=self.padding)


class AnchorNet(nn.Module):
    """A group's anchor context (``graph.AnchorContext``): the logits of its non-anchor positions given its
    anchors' codes as well as the group-causal prior's logits."""

    def __init__(self, spec: graph.AnchorContext):
        super().__init__()
        self.spec = spec
        self.codes, self.logits, self.mix, self.out = (
            build_graph(conv) for conv in (spec.codes, spec.logits, spec.mix, spec.out)
        )
        nn.init.zeros_(self.out.weight)  # untrained, it leaves the prior's logits as they are
        nn.init.zeros_(self.out.bias)

    def forward(self, codes: torch.Tensor, logits: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) of the non-anchor positions from the group's codes (B, D, H, W), of which it sees
        the anchors' (``anchors``: (1, 1, H, W) ones there), and the prior's logits (B, K, H, W)."""
        seen = torch.cat([codes * anchors, anchors.expand(codes.shape[0], 1, -1, -1)], 1)
        h = F.gelu(self.codes(seen) + self.logits(logits))
        return logits + self.out(F.gelu(self.mix(h)))


class GroupCausalPrior(nn.Module):
    def __init__(self, context_channels, num_groups, code_dim, codebook_size, hidden_per_group=32, anchors=()):
        super().__init__()
        self.num_groups = num_groups
        self.code_dim = code_dim
        self.codebook_size = codebook_size
        g, h = num_groups, hidden_per_group
        self.layers = nn.ModuleList(
            _GroupMaskedConv(spec) for spec in graph.prior(context_channels, g, code_dim, codebook_size, h)
        )
        # the first len(anchors) groups' checkerboard contexts (graph.AnchorContext), under "anchors.j"
        self.anchors = nn.ModuleList(AnchorNet(spec) for spec in anchors)

    def forward(self, context: torch.Tensor | None, codes: torch.Tensor, groups: int | None = None) -> torch.Tensor:
        """Logits (B, M, K, H, W) for every group at once (training and rate estimates), or
        (B, groups, K, H, W) for the first ``groups`` only, computing nothing for the rest."""
        x = codes if context is None else torch.cat([context, codes], 1)
        for i, layer in enumerate(self.layers):
            x = layer(x, groups)
            if i < len(self.layers) - 1:
                x = F.gelu(x)
        b, _, hh, ww = x.shape
        logits = x.view(b, -1, self.codebook_size, hh, ww)
        return self._with_anchor_contexts(logits, codes) if len(self.anchors) else logits

    def _with_anchor_contexts(self, logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The logits with each anchored group's non-anchor positions given that group's anchors' codes."""
        anchors = torch.from_numpy(graph.anchor_mask(*logits.shape[-2:])).to(logits)[None, None]
        d, groups = self.code_dim, [logits[:, j] for j in range(logits.shape[1])]
        for j, net in enumerate(self.anchors[: len(groups)]):
            given = net(codes[:, j * d : (j + 1) * d], groups[j], anchors)
            groups[j] = torch.where(anchors[0] > 0, groups[j], given)
        return torch.stack(groups, 1)

    def sequential(
        self, context: torch.Tensor | None, shape: tuple[int, int, int], groups: int | None = None
    ) -> SequentialPrior:
        """A group-by-group view in exact fixed point, for the first ``groups`` groups (all by
        default); shape is (B, H, W) of the level."""
        return SequentialPrior(self, context, shape, groups)


class SequentialPrior:
    """Logits of one group at a time, fed the codes of the groups decoded so far.

    The encoder and the decoder both drive this object in group order with the same
    inputs. It computes in exact fixed point (``dqcodec.exact``): the context and the codes
    it is given, and the logits it returns, are integer counts of 2^-FRAC, so the two
    directions get the same logits on any CPU, kernel or thread count.
    """

    def __init__(
        self,
        prior: GroupCausalPrior,
        context: torch.Tensor | None,
        shape: tuple[int, int, int],
        groups: int | None = None,
    ):
        self.layers = [_ExactGroupConv(layer) for layer in prior.layers]
        self.groups = groups or prior.num_groups
        self.anchor_nets = [_ExactAnchorNet(net, shape[1:]) for net in prior.anchors[: self.groups]]
        if context is not None:
            self.layers[0].add_context(context, self.groups)
        self.shape = shape
        self.pushed = 0
        # every group's codes and hidden activations, written into place as they come (no growing concatenations)
        b, h, w = shape
        self.codes = torch.zeros(b, self.groups * prior.code_dim, h, w, dtype=torch.float64)
        self.hidden = [
            torch.zeros(b, self.groups * layer.group_out, h, w, dtype=torch.float64) for layer in prior.layers[:-1]
        ]

    def logits(self, j: int) -> torch.Tensor:
        """Fixed-point logits (B, K, H, W) of group j; needs the codes of groups < j to have been pushed."""
        if self.pushed != j or j >= self.groups:
            raise RuntimeError(f"group {j} asked for after {self.pushed} pushed groups, of {self.groups}")
        x = self.codes
        for layer, hidden in zip(self.layers[:-1], self.hidden):
            width = layer.layer.group_out
            hidden[:, j * width : (j + 1) * width] = exact.gelu(layer(x, j, self.shape))
            x = hidden
        return self.layers[-1](x, j, self.shape)

    @property
    def anchored(self) -> int:
        """How many of the first groups are coded over a checkerboard (anchors first)."""
        return len(self.anchor_nets)

    def anchor_logits(self, j: int, logits: torch.Tensor, anchor_codes: torch.Tensor) -> torch.Tensor:
        """Fixed-point logits (B, K, H, W) of group j's non-anchor positions, from its logits (``logits(j)``) and
        its anchors' fixed-point codes (B, D, H, W), zero at the other positions."""
        return self.anchor_nets[j](anchor_codes, logits)

    def push(self, codes_j: torch.Tensor) -> None:
        """Fixed-point codes (B, D, H, W) of the group just coded."""
        d = codes_j.shape[1]
        self.codes[:, self.pushed * d : (self.pushed + 1) * d] = codes_j
        self.pushed += 1


class _ExactGroupConv:
    """A masked conv in exact arithmetic, one output group at a time, from the group inputs
    that group may see. The context's share of every group's sums is computed once, in one
    convolution (``add_context``); integer sums add exactly, so this splits no rounding."""

    def __init__(self, layer: _GroupMaskedConv):
        self.layer = layer
        self.weight = exact.fixed_weight(layer.weight * layer.mask)
        self.bias = exact.fixed_bias(layer.bias)
        exact.check_exact_range(self.weight, self.bias)
        self.context_sums = None

    def add_context(self, context: torch.Tensor, groups: int) -> None:
        rows, free = groups * self.layer.group_out, self.layer.free_in
        self.context_sums = exact.conv2d(context, self.weight[:rows, :free], self.bias[:rows], self.layer.padding)

    def __call__(self, x: torch.Tensor, j: int, shape: tuple[int, int, int]) -> torch.Tensor:
        """Group j's outputs from x, the group inputs (without the context) it may see and maybe more."""
        layer = self.layer
        rows = slice(j * layer.group_out, (j + 1) * layer.group_out)
        first, last = layer.free_in, layer.visible_inputs(j)
        if self.context_sums is not None:
            sums = self.context_sums[:, rows]
        else:
            sums = self.bias[rows].view(1, -1, 1, 1).expand(shape[0], -1, shape[1], shape[2])
        if last > first:
            sums = sums + exact.conv2d(x[:, : last - first], self.weight[rows, first:last], None, layer.padding)
        return exact.rescale(sums)


class _ExactAnchorNet:
    """An anchor context in exact fixed point: the two input convolutions' integer sums added before rescaling."""

    def __init__(self, net: AnchorNet, size: tuple[int, int]):
        self.convs = {name: exact.ExactConv.of(getattr(net, name)) for name in ("codes", "logits", "mix", "out")}
        first = (self.convs["codes"], self.convs["logits"])
        worst = sum(float(c.weight.abs().sum((1, 2, 3)).max()) for c in first) * fixed.LIMIT
        if worst + sum(float(c.bias.abs().max()) for c in first) >= fixed.EXACT:
            raise exact.FixedPointError("an anchor context's sums can pass float64's exact integers")
        self.anchors = torch.from_numpy(graph.anchor_mask(*size)).double()[None, None]

    def __call__(self, anchor_codes: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        codes, given = self.convs["codes"], self.convs["logits"]
        seen = torch.cat([anchor_codes, self.anchors.expand(anchor_codes.shape[0], 1, -1, -1) * exact.SCALE], 1)
        sums = exact.conv2d(seen, codes.weight, codes.bias, codes.padding) + exact.conv2d(
            logits, given.weight, given.bias, 0
        )
        h = exact.gelu(self.convs["mix"](exact.gelu(exact.rescale(sums))))
        return (logits + self.convs["out"](h)).clamp_(-exact.LIMIT, exact.LIMIT)
