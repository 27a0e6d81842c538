import pytest
import torch

from torchvision.models import resnet as torchvision_resnet

from resbook.models.torch_resnet import (BasicBlock, PreActBasicBlock, ResNet, cifar_resnet, count_parameters,
                                        mnist_resnet, output_shapes)


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


# --- pre-activation blocks (He et al., "Identity Mappings in Deep Residual Networks", 2016) ---

@pytest.mark.parametrize("shortcut, cin, cout, stride, extra_params", [
    ("identity", 16, 16, 1, 0),
    ("zeropad", 16, 32, 2, 0),
    ("projection", 16, 32, 2, 16 * 32),  # a bare 1x1 convolution: no BatchNorm on a pre-activated shortcut
    (None, 16, 32, 2, 0),
])
def test_preact_block_shapes_and_parameters(shortcut, cin, cout, stride, extra_params):
    block = PreActBasicBlock(cin, cout, stride, shortcut)
    assert block(torch.randn(2, cin, 8, 8)).shape == (2, cout, 8 // stride, 8 // stride)
    # bn1 normalises the input (cin channels), bn2 the first convolution's output (cout)
    assert count_parameters(block) == 2 * cin + 9 * cin * cout + 2 * cout + 9 * cout * cout + extra_params
    assert [name for name, _ in block.named_children()][:5] == ["bn1", "relu", "conv1", "bn2", "conv2"]
    with pytest.raises(ValueError, match="identity shortcut needs equal shapes"):
        PreActBasicBlock(cin, 2 * cin, 2, "identity")


def zero_convs(block):
    for conv in (block.conv1, block.conv2):
        torch.nn.init.zeros_(conv.weight)
    return block.eval()


def test_preact_block_with_zero_convs_is_exactly_the_identity_while_the_original_block_gives_relu():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)  # negative entries too
    assert torch.equal(zero_convs(PreActBasicBlock(8, 8, 1, "identity"))(x), x)  # nothing after the addition
    assert torch.equal(zero_convs(BasicBlock(8, 8, 1, "identity"))(x), torch.relu(x))  # ReLU after the addition
    # the parameter-free zeropad shortcut also carries x itself, un-activated
    padded = torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 8, 3, 3)], dim=1)
    assert torch.equal(zero_convs(PreActBasicBlock(8, 16, 2, "zeropad"))(x), padded)


def test_preact_projection_shortcut_takes_the_pre_activated_input():
    block = zero_convs(PreActBasicBlock(8, 16, 2, "projection"))
    negative = -torch.rand(2, 8, 6, 6) - 0.1  # relu(bn1(x)) is zero with bn1's initial statistics
    assert torch.count_nonzero(block(negative)) == 0
    assert torch.count_nonzero(block.downsample(negative)) > 0  # it would not be zero on x itself


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_preact_cifar_resnet_has_the_parameters_of_the_original_but_its_final_and_first_stage_bns(depth):
    """Same depth, same names, same convolutions; the BatchNorms differ in exactly three places.

    The pre-activation net adds ``post_bn`` (2 x 64), and the first block of stages 2 and 3
    normalises its input (16, 32 channels) where the original normalises its first convolution's
    output (32, 64 channels): 2 x 16 and 2 x 32 fewer. Net: +32 parameters at every depth.
    """
    original, preact = cifar_resnet(depth), cifar_resnet(depth, preact=True)
    ours, theirs = dict(original.named_parameters()), dict(preact.named_parameters())
    assert set(theirs) - set(ours) == {"post_bn.weight", "post_bn.bias"} and set(ours) <= set(theirs)
    differ = {name: (ours[name].shape[0], theirs[name].shape[0]) for name in ours
              if ours[name].shape != theirs[name].shape}
    assert differ == {f"layer{i}.0.bn1.{p}": (c, c // 2) for i, c in ((2, 32), (3, 64)) for p in ("weight", "bias")}
    assert count_parameters(preact) - count_parameters(original) == 2 * 64 - 2 * 16 - 2 * 32 == 32
    assert sum(isinstance(m, torch.nn.Conv2d) for m in preact.modules()) + 1 == depth
    plain = cifar_resnet(depth, shortcut=None, preact=True)
    assert count_parameters(plain) == count_parameters(preact)
    projection = cifar_resnet(depth, shortcut="projection", preact=True)  # 1x1 convolutions without BatchNorm
    assert count_parameters(projection) == count_parameters(preact) + 16 * 32 + 32 * 64


def test_preact_resnet_keeps_torchvisions_names_and_adds_a_final_batchnorm():
    model = cifar_resnet(20, preact=True, in_channels=1)
    assert [name for name, _ in model.named_children()] == ["conv1", "bn1", "relu", "layer1", "layer2", "layer3",
                                                            "post_bn", "avgpool", "fc"]
    assert all(isinstance(b, PreActBasicBlock) for stage in (model.layer1, model.layer2, model.layer3) for b in stage)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert [name for name, _ in output_shapes(model, torch.randn(2, 1, 28, 28))] == [
        "conv1", "bn1", "relu", "layer1", "layer2", "layer3", "post_bn", "relu", "avgpool", "fc"]
    # ResNet-18's names, weight for weight, plus post_bn
    ours = ResNet(PreActBasicBlock, [2, 2, 2, 2]).state_dict()
    theirs = torchvision_resnet.resnet18().state_dict()
    assert set(ours) - set(theirs) == {f"post_bn.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                                                 "num_batches_tracked")}
    assert set(theirs) - set(ours) == {f"layer{i}.0.downsample.1.{k}" for i in (2, 3, 4)
                                       for k in ("weight", "bias", "running_mean", "running_var",
                                                 "num_batches_tracked")}  # no BatchNorm on the projection
    assert "post_bn" not in dict(cifar_resnet(20).named_children())


def test_zero_init_residual_zeroes_the_last_conv_of_each_preact_block():
    torch.manual_seed(0)
    model = cifar_resnet(20, preact=True, zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if isinstance(m, PreActBasicBlock)]
    assert len(blocks) == 9 and all(torch.count_nonzero(b.conv2.weight) == 0 for b in blocks)
    assert all(torch.count_nonzero(b.bn2.weight) == b.bn2.num_features for b in blocks)  # BatchNorms untouched
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(model.layer1(x), x)  # a stage of identity blocks starts as the identity
    plain = cifar_resnet(20, shortcut=None, preact=True, zero_init_residual=True)  # nothing to zero
    assert all(torch.count_nonzero(b.conv2.weight) > 0 for b in plain.modules() if isinstance(b, PreActBasicBlock))


@pytest.mark.parametrize("zero_init_residual", [False, True])
def test_preact_resnet_trains(zero_init_residual):
    torch.manual_seed(0)
    model = cifar_resnet(8, preact=True, in_channels=1, zero_init_residual=zero_init_residual)
    x, y = torch.randn(16, 1, 12, 12), torch.randint(0, 10, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = model.layer1[0].conv2.weight.detach().clone()
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert not torch.equal(model.layer1[0].conv2.weight, before)  # the last conv learns, zeroed or not
