import pytest
import torch

from dqcodec.quantize import DepthwiseQuantizer


def make(depthwise=True):
    torch.manual_seed(0)
    q = DepthwiseQuantizer(in_channels=12, num_groups=3, codebook_size=16, code_dim=2, depthwise=depthwise)
    q.train()
    q(torch.randn(4, 12, 8, 8))  # seeds the codebooks from data
    return q.eval()


def test_indices_invert_to_the_quantized_output():
    q = make()
    quantized, indices, _, _ = q(torch.randn(2, 12, 5, 7))
    assert indices.shape == (2, 3, 5, 7)
    assert torch.allclose(q.decode_indices(indices), quantized, atol=1e-6)  # straight-through adds z - z
    for g in range(3):
        assert torch.allclose(q.decode_group(indices[:, g], g), quantized[:, 2 * g : 2 * g + 2], atol=1e-6)


def test_each_index_is_the_nearest_codeword():
    q = make()
    x = torch.randn(1, 12, 4, 4)
    _, indices, _, _ = q(x)
    distances = q.distances(q.project(x))  # (M, N, K)
    assert torch.equal(indices.permute(1, 0, 2, 3).reshape(3, -1), distances.argmin(-1))


def test_an_entropy_constrained_choice_adds_each_codewords_cost_to_its_distance():
    q = make()
    x = torch.randn(1, 12, 4, 4)
    distances = q.distances(q.project(x))  # (M, N, K)
    cost = torch.rand_like(distances) * distances.mean()
    seen = []

    def rate(codes):
        seen.append(codes)
        return cost

    _, indices, _, _ = q(x, rate)
    assert torch.equal(indices.permute(1, 0, 2, 3).reshape(3, -1), (distances + cost).argmin(-1))
    nearest, _, _, _ = q(x)
    assert torch.allclose(seen[0], nearest, atol=1e-6)  # the cost is asked for given the nearest codewords
    assert not torch.equal(indices, q(x)[1])


def test_depthwise_has_a_codebook_per_group_and_plain_vq_shares_one():
    assert make(depthwise=True).embed.shape == (3, 16, 2)
    plain = make(depthwise=False)
    assert plain.embed.shape == (1, 16, 2)
    assert plain.proj_weight.shape[0] == 1
    books = plain.codebooks()
    assert torch.equal(books[0], books[2])


def test_training_moves_codewords_toward_their_vectors():
    q = make()
    q.train()
    x = torch.randn(8, 12, 8, 8) + 3.0
    before = q.embed.clone()
    for _ in range(20):
        q(x)
    assert not torch.equal(before, q.embed)
    q.eval()
    _, _, loss_after, _ = q(x)
    q2 = make()
    _, _, loss_before, _ = q2(x)
    assert loss_after < loss_before


def test_dead_codes_are_reseeded():
    q = make()
    q.train()
    q.cluster_size[0, :8] = 0.0  # pretend half of group 0's codewords are unused
    q(torch.randn(4, 12, 8, 8))
    assert (q.cluster_size >= q.dead_code_threshold).all()


def test_quantizing_stays_in_float32_under_bfloat16_autocast():
    q = make()
    x = torch.randn(2, 12, 5, 7)
    expected, expected_indices, _, _ = q(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        quantized, indices, _, _ = q(x)  # the projection would run in bfloat16 if autocast reached it
    assert quantized.dtype == torch.float32
    assert torch.equal(indices, expected_indices)


def make_soft():
    torch.manual_seed(0)
    q = DepthwiseQuantizer(in_channels=12, num_groups=3, codebook_size=16, code_dim=2, learning="soft-to-hard")
    q.train()
    q(torch.randn(4, 12, 8, 8))  # the first batch seeds the codebooks, as EMA ones are
    return q


def test_soft_to_hard_codes_hard_and_learns_its_codebook_by_gradients():
    q = make_soft()
    assert isinstance(q.embed, torch.nn.Parameter)
    x = torch.randn(2, 12, 5, 7)
    quantized, indices, _, assignments = q(x)
    assert torch.allclose(quantized, q.decode_indices(indices), atol=1e-6)  # the value is the nearest codeword
    assert torch.equal(indices, q.eval()(x)[1])  # and the same index coding uses
    assert assignments.shape == (2, 3, 16, 5, 7) and torch.allclose(assignments.sum(2), torch.ones(2, 3, 5, 7))
    quantized.pow(2).sum().backward()
    assert q.embed.grad.abs().sum() > 0  # every codeword near a vector moves, not only the nearest
    before = q.embed.detach().clone()
    q.train()(torch.randn(2, 12, 5, 7))
    assert torch.equal(q.embed.detach(), before)  # no EMA update


def test_annealing_makes_the_soft_assignments_hard():
    q = make_soft()
    x = torch.randn(2, 12, 5, 7)
    q.anneal(0.0)
    early = q(x)[3].max(2).values.mean()
    q.anneal(1.0)
    late = q(x)[3].max(2).values.mean()
    assert q.temperature == pytest.approx(0.02)
    assert early < 0.5 and late > 0.9


def test_ema_codebooks_stay_buffers_and_return_no_assignments():
    q = make()
    assert "embed" in dict(q.named_buffers())
    assert q.train()(torch.randn(2, 12, 5, 7))[3] is None
