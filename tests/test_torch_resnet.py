import pytest
import torch

from torchvision.models import resnet as torchvision_resnet

from resbook.models.torch_resnet import BasicBlock, ResNet, cifar_resnet, count_parameters, mnist_resnet


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
    res, plain = cifar_resnet(depth), cifar_resnet(depth, shortcut=None)
    assert count_parameters(res) == count_parameters(plain) == params
    assert res(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in res.modules()) + 1 == depth
    assert [name for name, _ in res.named_children()] == ["conv1", "bn1", "relu", "layer1", "layer2", "layer3",
                                                          "avgpool", "fc"]
    assert all(block.residual for block in res.modules() if isinstance(block, BasicBlock))
    assert not any(block.residual for block in plain.modules() if isinstance(block, BasicBlock))
    projection = cifar_resnet(depth, shortcut="projection")
    assert count_parameters(projection) == params + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_cifar_resnet_rejects_impossible_depths():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_resnet(21)


def test_resnet_with_two_basic_blocks_per_stage_has_torchvisions_resnet18_parameters():
    ours = ResNet(BasicBlock, [2, 2, 2, 2]).state_dict()
    theirs = torchvision_resnet.resnet18().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in theirs)


@pytest.mark.parametrize("build", [lambda **kw: cifar_resnet(20, **kw), lambda **kw: mnist_resnet(**kw)])
def test_zero_init_residual_starts_every_residual_block_as_the_identity(build):
    torch.manual_seed(0)
    model = build(zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert blocks and all(torch.count_nonzero(b.bn2.weight) == 0 for b in blocks)
    assert all(torch.count_nonzero(b.bn2.weight) > 0 for b in build().modules() if isinstance(b, BasicBlock))
    plain = build(shortcut=None, zero_init_residual=True)  # no residual branch: nothing to zero
    assert all(torch.count_nonzero(b.bn2.weight) > 0 for b in plain.modules() if isinstance(b, BasicBlock))


def test_resnet_rejects_stages_without_widths_or_blocks():
    with pytest.raises(ValueError, match="one width per stage"):
        ResNet(BasicBlock, [1, 1], widths=(16, 32, 64))
    with pytest.raises(ValueError, match="at least one block per stage"):
        mnist_resnet(blocks=0)
    with pytest.raises(ValueError, match="stem must be"):
        ResNet(BasicBlock, [1], widths=(8,), stem="tiny")
