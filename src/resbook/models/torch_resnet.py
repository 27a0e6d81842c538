"""Residual networks in PyTorch, written the way torchvision writes them.

* :class:`BasicBlock`: two 3x3 convolutions with BatchNorm, and a shortcut of
  one of the kinds He et al. (2016) compare: ``"identity"`` (needs equal
  shapes), ``"zeropad"`` (option A: subsample and pad the extra channels with
  zeros, no parameters), ``"projection"`` (option B: a strided 1x1 convolution
  + BatchNorm, torchvision's ``downsample``), or ``None`` for a *plain* block
  with no shortcut at all, the control the paper trains against.
* :class:`PreActBasicBlock`: the pre-activation block of He et al.,
  "Identity Mappings in Deep Residual Networks" (2016): BatchNorm and ReLU
  before each convolution and nothing after the addition, so the identity
  path runs through the whole network untouched.
* :class:`ResNet`: torchvision's ``ResNet(block, layers)``, with the same
  names (``conv1``, ``bn1``, ``maxpool``, ``layer1``, ..., ``avgpool``,
  ``fc``), a choice of stem (torchvision's ImageNet stem, or the paper's 3x3
  CIFAR stem) and of ``shortcut`` for the blocks that change shape; with
  pre-activation blocks it adds the final BatchNorm-ReLU ``post_bn``.
* :func:`cifar_resnet`: the paper's CIFAR-10 networks (Section 4.2): a 3x3
  stem and three stages of ``n`` blocks with 16, 32, 64 channels, depth
  ``6n + 2`` (20, 32, 44, 56, 110), with original or (``preact=True``)
  pre-activation blocks; chapter 1.
* :func:`mnist_resnet`: the small ResNet of the PyTorch + TensorBoard article
  (chapter 6): torchvision's ImageNet stem (7x7 convolution with stride 2,
  max-pool) and one basic block per stage, for 28x28 digits. With
  ``widths=(64, 128, 256, 512), blocks=2`` it *is* torchvision's ResNet-18.

The parameter names match torchvision's ``BasicBlock`` and ``ResNet``, so
weights load across with ``load_state_dict``.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn
from torch.nn import functional as F

Shortcut = Literal["identity", "zeropad", "projection"] | None
SHORTCUTS = ("identity", "zeropad", "projection", None)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias, used for projection shortcuts."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A of the paper: take every ``stride``-th pixel and zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("a zero-padding shortcut can add channels, not remove them")
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


def make_downsample(in_channels: int, out_channels: int, stride: int, shortcut: Shortcut,
                    batch_norm: bool = True) -> nn.Module | None:
    """The module that reshapes a block's shortcut, or None where the block adds its input as it is (or adds nothing).

    ``"zeropad"``: :class:`ZeroPadShortcut`; ``"projection"``: a strided 1x1
    convolution, followed by BatchNorm when ``batch_norm``. Blocks that keep
    their shape get None; an ``"identity"`` shortcut for a block that changes
    shape, or an unknown kind, raises a ValueError.
    """
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}, not {shortcut!r}")
    same_shape = stride == 1 and in_channels == out_channels
    if shortcut == "identity" and not same_shape:
        raise ValueError(
            f"an identity shortcut needs equal shapes, but this block maps {in_channels} channels "
            f"to {out_channels} with stride {stride}: use 'zeropad' or 'projection'")
    if shortcut is None or same_shape:
        return None
    if shortcut == "zeropad":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    conv = conv1x1(in_channels, out_channels, stride)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels)) if batch_norm else nn.Sequential(conv)


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``: the two-layer residual block.

    With ``shortcut=None`` the ``+ shortcut(x)`` term is dropped and the block
    is a plain two-layer stack. ``"identity"`` is used automatically where the
    shapes allow it (same channels, stride 1) unless ``shortcut`` is None.
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 shortcut: Shortcut = "projection"):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.residual = shortcut is not None
        self.downsample = make_downsample(in_channels, out_channels, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def zero_init_last(self) -> None:
        """Zero the last BatchNorm's weight: the residual branch starts at zero (Goyal et al. 2017)."""
        nn.init.zeros_(self.bn2.weight)


class PreActBasicBlock(nn.Module):
    """``conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x)``: the pre-activation block.

    He et al., "Identity Mappings in Deep Residual Networks" (2016), Fig. 4(e):
    BatchNorm and ReLU come *before* each convolution and nothing follows the
    addition, so a stack of blocks with identity shortcuts carries its input
    to the end unchanged, ``x_L = x_l + sum of the residuals``. The names are
    :class:`BasicBlock`'s (``bn1`` now normalises the block's input), and
    ``shortcut`` takes the same values:

    * ``"projection"``: a strided 1x1 convolution *without* BatchNorm applied
      to the pre-activated input ``relu(bn1(x))``, as the paper's Torch code
      (fb.resnet.torch ``preresnet.lua``, ``both_preact``), kuangliu's
      pytorch-cifar ``preact_resnet.py`` and keras.applications' ResNetV2 do;
    * ``"zeropad"`` (option A) and ``"identity"`` take ``x`` itself, as
      ResNetV2's parameter-free strided shortcut does, so that path stays free
      of parameters and activations;
    * ``None``: no shortcut, the plain pre-activation stack.

    The output is not normalised: a network of these blocks ends with its own
    BatchNorm-ReLU (:class:`ResNet`'s ``post_bn``).
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 shortcut: Shortcut = "projection"):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.residual = shortcut is not None
        self.downsample = make_downsample(in_channels, out_channels, stride, shortcut, batch_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(preact))))
        if not self.residual:
            return out
        if self.downsample is None:
            return out + x
        return out + self.downsample(x if isinstance(self.downsample, ZeroPadShortcut) else preact)

    def zero_init_last(self) -> None:
        """Zero the last convolution's weight (no BatchNorm follows it): the residual branch starts at zero."""
        nn.init.zeros_(self.conv2.weight)


Block = type[BasicBlock] | type[PreActBasicBlock]


def make_stage(block: Block, in_channels: int, out_channels: int, blocks: int, stride: int,
               shortcut: Shortcut) -> nn.Sequential:
    """``blocks`` blocks; the first changes shape (stride, channels), the rest keep it (identity shortcuts)."""
    layers = [block(in_channels, out_channels, stride, shortcut)]
    inner = None if shortcut is None else "identity"
    layers += [block(out_channels, out_channels, 1, inner) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def init_weights(model: nn.Module, zero_init_residual: bool = False) -> nn.Module:
    """He (Kaiming) normal init for convolutions, BatchNorm to (1, 0), as torchvision does.

    ``zero_init_residual`` starts each residual block's residual branch at
    zero, so every block begins as its shortcut (the identity where the shape
    stays): :class:`BasicBlock` zeroes its last BatchNorm's weight (Goyal et
    al. 2017), :class:`PreActBasicBlock`, which has no BatchNorm after its last
    convolution, that convolution's weight (as Fixup, Zhang et al. 2019, does).
    Plain blocks are left alone.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, (BasicBlock, PreActBasicBlock)) and m.residual:
                m.zero_init_last()
    return model


class ResNet(nn.Module):
    """torchvision's ``ResNet(block, layers)`` with its names, for small images and any shortcut.

    * stem ``conv1``, ``bn1``, ``relu`` and, with ``stem="imagenet"``,
      ``maxpool``: torchvision's 7x7 convolution with stride 2 and a 3x3
      max-pool with stride 2 (a quarter of the side is left); with
      ``stem="cifar"`` the paper's CIFAR stem, one 3x3 convolution with
      stride 1 and no pooling;
    * ``layer1``, ``layer2``, ...: one stage per entry of ``layers`` (its
      number of blocks) and ``widths`` (its channels). Every stage after the
      first halves the feature map and changes the width in its first block,
      where ``shortcut`` joins input and output (``"projection"``: a strided
      1x1 convolution, torchvision's ``downsample``; ``"zeropad"``: the
      parameter-free option A); every other block has an identity shortcut.
      ``shortcut=None`` gives the plain network of the same depth;
    * with ``block=PreActBasicBlock``, ``post_bn`` (keras.applications'
      ResNetV2 name) and ``relu`` after the last stage, since a
      pre-activation block leaves its output un-normalised;
    * head: ``avgpool`` (global average pooling) and ``fc``, which returns logits.

    ``ResNet(BasicBlock, [2, 2, 2, 2])`` has the parameters of torchvision's
    ``resnet18()``, name for name.
    """

    def __init__(self, block: Block, layers: Sequence[int],
                 widths: Sequence[int] = (64, 128, 256, 512), stem: Literal["imagenet", "cifar"] = "imagenet",
                 shortcut: Shortcut = "projection", in_channels: int = 3, num_classes: int = 1000,
                 zero_init_residual: bool = False):
        super().__init__()
        if not layers or len(layers) != len(widths) or min(layers) < 1:
            raise ValueError(f"need one width per stage and at least one block per stage, not "
                             f"layers={list(layers)}, widths={list(widths)}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', not {stem!r}")
        imagenet = stem == "imagenet"
        self.conv1 = (nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False) if imagenet
                      else conv3x3(in_channels, widths[0]))
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet else None
        self.stage_names: list[str] = []
        c = widths[0]
        for i, (blocks, w) in enumerate(zip(layers, widths), start=1):
            self.add_module(f"layer{i}", make_stage(block, c, w, blocks, 1 if i == 1 else 2, shortcut))
            self.stage_names.append(f"layer{i}")
            c = w
        self.post_bn = nn.BatchNorm2d(c) if issubclass(block, PreActBasicBlock) else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self, zero_init_residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        if self.post_bn is not None:
            x = self.relu(self.post_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet(depth: int, shortcut: Shortcut = "zeropad", in_channels: int = 3, num_classes: int = 10,
                 widths: Sequence[int] = (16, 32, 64), zero_init_residual: bool = False,
                 preact: bool = False) -> ResNet:
    """The paper's CIFAR ResNet (Section 4.2) of ``depth = 6n + 2`` weighted layers.

    A 3x3 stem and three stages of ``n`` basic blocks with 16, 32 and 64
    channels. ``shortcut`` joins the blocks that change shape: the paper's
    ``"zeropad"`` (option A, so the residual network has exactly the
    parameters of the plain one), ``"projection"`` (option B), or ``None``
    for the plain network without any shortcut. ``preact=True`` builds it of
    :class:`PreActBasicBlock` (He et al., "Identity Mappings", 2016) and a
    final ``post_bn``. The stem stays ``conv1``-``bn1``-``relu``, the paper's
    "first activation right after conv1", so the two networks differ only in
    their blocks and ``post_bn``; ``layer1.0`` pre-activates once more on its
    residual branch, where the paper's first unit does not.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...), not {depth}")
    n = (depth - 2) // 6
    block = PreActBasicBlock if preact else BasicBlock
    return ResNet(block, [n] * len(widths), widths, stem="cifar", shortcut=shortcut,
                  in_channels=in_channels, num_classes=num_classes, zero_init_residual=zero_init_residual)


def mnist_resnet(shortcut: Shortcut = "projection", widths: Sequence[int] = (64, 128, 256),
                 blocks: int = 1, in_channels: int = 1, num_classes: int = 10,
                 zero_init_residual: bool = False) -> ResNet:
    """The article's MNIST ResNet: 7x7 stem + max-pool, three basic blocks, linear head.

    The default widths 64/128/256 double whenever the feature map halves, as in
    every ResNet, and start where torchvision's ResNet-18 starts: 1.2M
    parameters, about a ninth of ResNet-18's 11.2M. ``shortcut`` chooses what
    joins the blocks that change shape (``"projection"`` or ``"zeropad"``;
    ``None`` for a plain network); blocks that keep their shape always use the
    identity, so ``shortcut="identity"`` raises a ValueError unless no block
    changes shape. ``widths=(64, 128, 256, 512), blocks=2`` builds ResNet-18.
    """
    return ResNet(BasicBlock, [blocks] * len(widths), widths, stem="imagenet", shortcut=shortcut,
                  in_channels=in_channels, num_classes=num_classes, zero_init_residual=zero_init_residual)


def output_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, output shape)`` of each direct child of ``model``, in the order ``model(x)`` calls them.

    Runs one forward pass in eval mode without gradients (hooks record the
    shapes), so it does not change BatchNorm statistics.
    """
    shapes: list[tuple[str, tuple[int, ...]]] = []
    hooks = [child.register_forward_hook(lambda _m, _i, out, name=name: shapes.append((name, tuple(out.shape))))
             for name, child in model.named_children()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return shapes


def parameters_by_child(model: nn.Module) -> dict[str, int]:
    """Parameter count of each direct child of ``model`` (children without parameters are left out)."""
    counts = {name: count_parameters(child) for name, child in model.named_children()}
    return {name: n for name, n in counts.items() if n}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
