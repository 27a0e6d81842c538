"""Chapter 5: the article's MNIST ResNet and its match with torchvision."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet

from resbook.models.torch_resnet import (BasicBlock, ZeroPadShortcut, count_parameters, mnist_resnet,
                                         output_shapes, parameters_by_child)

ARTICLE_SHAPES = [("conv1", (2, 64, 14, 14)), ("bn1", (2, 64, 14, 14)), ("relu", (2, 64, 14, 14)),
                  ("maxpool", (2, 64, 7, 7)), ("layer1", (2, 64, 7, 7)), ("layer2", (2, 128, 4, 4)),
                  ("layer3", (2, 256, 2, 2)), ("avgpool", (2, 256, 1, 1)), ("fc", (2, 10))]
PROJECTIONS = (64 * 128 + 2 * 128) + (128 * 256 + 2 * 256)  # two 1x1 convolutions + their BatchNorms


def _randomise_batchnorm(module: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, so equal outputs mean something."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t in (m.weight.data, m.bias.data, m.running_mean):
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize("shortcut, extra", [("projection", PROJECTIONS), ("zeropad", 0), (None, 0)])
def test_article_model_shapes_for_each_shortcut(shortcut, extra):
    model = mnist_resnet(shortcut)
    assert output_shapes(model, torch.randn(2, 1, 28, 28)) == ARTICLE_SHAPES
    assert count_parameters(model) == 1_187_274 + extra
    blocks = [model.layer1[0], model.layer2[0], model.layer3[0]]
    assert blocks[0].downsample is None and blocks[0].residual == (shortcut is not None)  # identity shortcut
    kinds = {"projection": nn.Sequential, "zeropad": ZeroPadShortcut, None: type(None)}
    for block in blocks[1:]:  # the blocks that halve the feature map and double the channels
        assert isinstance(block.downsample, kinds[shortcut])
        if shortcut == "projection":
            conv = block.downsample[0]
            assert conv.kernel_size == (1, 1) and conv.stride == (2, 2)


def test_identity_shortcut_cannot_join_blocks_that_change_shape():
    with pytest.raises(ValueError, match="identity shortcut needs equal shapes"):
        mnist_resnet("identity")
    same = mnist_resnet("identity", widths=(32,))  # one stage, no shape change: identity everywhere
    assert same(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("stride, cin, cout", [(1, 64, 64), (2, 64, 128)])
def test_basic_block_equals_torchvisions_on_shared_weights(stride, cin, cout):
    torch.manual_seed(stride)
    ours = BasicBlock(cin, cout, stride, "projection")
    downsample = None if stride == 1 else nn.Sequential(resnet.conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
    theirs = resnet.BasicBlock(cin, cout, stride, downsample)
    _randomise_batchnorm(ours, seed=stride)
    theirs.load_state_dict(ours.state_dict())  # strict: every name and shape matches
    x = torch.randn(4, cin, 9, 9)
    for mode in ("eval", "train"):  # running statistics, then batch statistics
        getattr(ours, mode)(), getattr(theirs, mode)()
        out = ours(x.clone())
        side = 9 if stride == 1 else 5
        assert out.shape == (4, cout, side, side)
        assert torch.allclose(out, theirs(x.clone()), atol=1e-6)


def test_two_blocks_of_64_to_512_channels_is_torchvisions_resnet18():
    tv = resnet.resnet18(num_classes=10)
    tv.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    ours = mnist_resnet(widths=(64, 128, 256, 512), blocks=2)
    assert count_parameters(ours) == count_parameters(tv) == 11_175_370
    assert parameters_by_child(ours) == parameters_by_child(tv)
    _randomise_batchnorm(tv, seed=0)
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(ours.eval()(x), tv.eval()(x), atol=1e-5)
