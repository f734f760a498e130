import torch

from dqcodec import exact
from dqcodec.priors import GroupCausalPrior


def make(context_channels):
    torch.manual_seed(0)
    return GroupCausalPrior(context_channels, num_groups=4, code_dim=3, codebook_size=5, hidden_per_group=6)


def test_group_logits_ignore_the_group_itself_and_later_groups():
    prior = make(context_channels=2)
    context = torch.randn(1, 2, 6, 6)
    codes = torch.randn(1, 12, 6, 6)
    base = prior(context, codes)
    changed = codes.clone()
    changed[:, 6:] = torch.randn(1, 6, 6, 6)  # groups 2 and 3
    other = prior(context, changed)
    assert torch.allclose(base[:, :3], other[:, :3])
    assert not torch.allclose(base[:, 3], other[:, 3])


def test_sequential_fixed_point_logits_match_the_one_pass_float_logits():
    for context_channels in (0, 2):
        prior = make(context_channels)
        context = torch.randn(2, context_channels, 5, 7) if context_channels else None
        codes = torch.randn(2, 12, 5, 7)
        full = prior(context, codes)
        sequence = prior.sequential(None if context is None else exact.to_fixed(context), (2, 5, 7))
        for j in range(4):
            logits = sequence.logits(j)
            assert torch.equal(logits, logits.round())  # whole counts of 2^-FRAC
            # rounding weights to 2^-14 and activations to 2^-12 moves a logit by about 1e-3
            assert torch.allclose(exact.to_float(logits), full[:, j], atol=5e-3)
            sequence.push(exact.to_fixed(codes[:, 3 * j : 3 * j + 3]))


def test_first_group_without_context_is_a_learned_constant_distribution():
    prior = make(context_channels=0)
    logits = prior.sequential(None, (1, 3, 3)).logits(0)
    assert torch.equal(logits, logits[:, :, :1, :1].expand_as(logits))


def test_the_first_groups_alone_get_the_same_logits():
    for context_channels in (0, 2):
        prior = make(context_channels)
        context = torch.randn(1, context_channels, 5, 7) if context_channels else None
        codes = torch.randn(1, 12, 5, 7)
        full = prior(context, codes)
        for groups in (1, 3, 4):
            assert torch.allclose(prior(context, codes, groups), full[:, :groups], atol=1e-6)
