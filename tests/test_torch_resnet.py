import pytest
import torch

from resbook.models.torch_resnet import BasicBlock, cifar_resnet, count_parameters


@pytest.mark.parametrize("shortcut, cin, cout, stride, extra_params", [
    ("identity", 16, 16, 1, 0),
    ("zeropad", 16, 32, 2, 0),
    ("projection", 16, 32, 2, 16 * 32 + 2 * 32),
    (None, 16, 32, 2, 0),
])
def test_block_shapes_and_shortcut_parameters(shortcut, cin, cout, stride, extra_params):
    block = BasicBlock(cin, cout, stride, shortcut)
    out = block(torch.randn(2, cin, 8, 8))
    assert out.shape == (2, cout, 8 // stride, 8 // stride)
    convs = 9 * cin * cout + 9 * cout * cout + 4 * cout  # two 3x3 convs + two BatchNorms
    assert count_parameters(block) == convs + extra_params


def test_identity_shortcut_needs_equal_shapes():
    with pytest.raises(ValueError, match="identity shortcut needs equal shapes"):
        BasicBlock(16, 32, 2, "identity")
    with pytest.raises(ValueError, match="shortcut must be one of"):
        BasicBlock(16, 16, 1, "dense")


def test_residual_block_with_zero_last_bn_is_identity_on_nonnegative_input():
    block = BasicBlock(8, 8, 1, "identity").eval()
    torch.nn.init.zeros_(block.bn2.weight)
    torch.nn.init.zeros_(block.bn2.bias)
    x = torch.rand(2, 8, 6, 6)
    assert torch.equal(block(x), x)
    plain = BasicBlock(8, 8, 1, None).eval()
    plain.load_state_dict(block.state_dict())
    assert torch.count_nonzero(plain(x)) == 0


@pytest.mark.parametrize("depth, params", [(20, 269_722), (56, 853_018)])
def test_cifar_resnet_matches_the_paper(depth, params):
    """He et al. Table 6: ResNet-20 has 0.27M and ResNet-56 0.85M parameters (3-channel CIFAR input)."""
    res, plain = cifar_resnet(depth), cifar_resnet(depth, residual=False)
    assert count_parameters(res) == count_parameters(plain) == params
    assert res(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in res.modules()) + 1 == depth


def test_cifar_resnet_rejects_impossible_depths():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_resnet(21)
