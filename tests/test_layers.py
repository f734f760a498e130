"""dqcodec.layers computes what CompressAI's GDN and sub-pixel convolution compute, gradients and
state-dict keys included, so models trained with CompressAI's layers load and run unchanged."""

import torch

from dqcodec import layers
from dqcodec.baselines import compressai_module


def test_gdn_matches_compressai_in_keys_values_and_gradients():
    theirs_module = compressai_module("compressai.layers")
    torch.manual_seed(0)
    theirs, ours = theirs_module.GDN(6), layers.GDN(6)
    assert list(theirs.state_dict()) == list(ours.state_dict())
    for key, value in theirs.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key]), key
    with torch.no_grad():  # a trained-looking state: some parameters below their bounds
        theirs.gamma.add_(torch.randn(6, 6) * 0.05)
        theirs.beta.add_(torch.randn(6) * 0.5)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 6, 5, 7)
    y_theirs, y_ours = theirs(x), ours(x)
    assert torch.equal(y_theirs, y_ours)
    (y_theirs * x).sum().backward()
    (y_ours * x).sum().backward()
    assert torch.equal(theirs.gamma.grad, ours.gamma.grad)
    assert torch.equal(theirs.beta.grad, ours.beta.grad)


def test_subpel_conv_matches_compressai():
    theirs = compressai_module("compressai.layers").subpel_conv3x3(4, 3, 2)
    ours = layers.subpel_conv3x3(4, 3, 2)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 4, 6, 5)
    assert torch.equal(theirs(x), ours(x))
    assert ours(x).shape == (1, 3, 12, 10)
