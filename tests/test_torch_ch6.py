"""Chapter 6: the article's MNIST ResNet, its match with torchvision, and TensorBoard logging."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet
from tensorboard.backend.event_processing import event_accumulator

from resbook import settings
from resbook.data import folders
from resbook.data.generated import make_digits
from resbook.data.mnist import MNIST_MEAN, MNIST_STD
from resbook.errors import ResbookError
from resbook.models.torch_resnet import (BasicBlock, ZeroPadShortcut, count_parameters, mnist_resnet,
                                         output_shapes, parameters_by_child)
from resbook.records import read_scalars, tensorboard_dir
from resbook.train.torch_loop import as_tensors, evaluate, fit, random_shift

CPU = torch.device("cpu")
ARTICLE_SHAPES = [("conv1", (2, 64, 14, 14)), ("bn1", (2, 64, 14, 14)), ("relu", (2, 64, 14, 14)),
                  ("maxpool", (2, 64, 7, 7)), ("layer1", (2, 64, 7, 7)), ("layer2", (2, 128, 4, 4)),
                  ("layer3", (2, 256, 2, 2)), ("avgpool", (2, 256, 1, 1)), ("fc", (2, 10))]
PROJECTIONS = (64 * 128 + 2 * 128) + (128 * 256 + 2 * 256)  # two 1x1 convolutions + their BatchNorms
CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "06_pytorch_resnet_tensorboard.ipynb"


MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # digits 0-9 in MNIST's train set


def chapter_cell(marker: str) -> str:
    """The source of the one code cell of chapter 6 that contains ``marker``."""
    cells = ["".join(cell["source"]) for cell in json.loads(CHAPTER.read_text(encoding="utf-8"))["cells"]
             if cell["cell_type"] == "code" and marker in "".join(cell["source"])]
    assert len(cells) == 1
    return cells[0]


def chapter_logging_code() -> str:
    """The source of chapter 6's TensorBoard logging cell (``log_inputs``, ``tensorboard_hook``)."""
    return chapter_cell("def tensorboard_hook")


def chapter_logging() -> dict:
    """What chapter 6's logging cell defines, run as the chapter runs it."""
    namespace = {"settings": settings}
    exec(chapter_logging_code(), namespace)
    return namespace


@pytest.fixture(scope="module")
def digits():
    (x, y), (xt, yt) = make_digits(512, seed=0), make_digits(256, seed=1)
    return as_tensors(x, y, MNIST_MEAN, MNIST_STD), as_tensors(xt, yt, MNIST_MEAN, MNIST_STD)


def test_chapter_split_holds_out_about_5000_mnist_digits_never_trained_on():
    config = chapter_cell("settings.pick(")
    fractions = {name: float(re.search(rf"{name}=dict\(.*?val_fraction=([0-9.]+)", config, re.S).group(1))
                 for name in ("smoke", "full")}
    mnist_labels = np.repeat(np.arange(10), MNIST_TRAIN_COUNTS)  # the full profile's pool
    assert abs(len(folders.split(mnist_labels, fractions["full"], seed=0).val) - 5000) <= 10  # as the text says

    pool, test = make_digits(600, seed=0), make_digits(50, seed=1)  # the smoke profile's kind of digits
    chapter = {"digits": (pool, test), "CFG": {"val_fraction": fractions["smoke"]}, "folders": folders,
               "run": settings.Run("05_x", "smoke", "generated", "cpu", {}, 0), "as_tensors": as_tensors,
               "MNIST_MEAN": MNIST_MEAN, "MNIST_STD": MNIST_STD}
    exec(chapter_cell("folders.split("), chapter)  # the chapter's split cell, as the chapter runs it
    holdout, train, val = chapter["holdout"], chapter["train"], chapter["val"]
    assert not set(holdout.train) & set(holdout.val) and len(train[0]) + len(val[0]) == 600
    assert abs(len(val[0]) - 600 * fractions["smoke"]) <= 10
    assert np.bincount(val[1].numpy(), minlength=10).min() > 0  # every digit is in the validation set
    x_val, y_val = as_tensors(pool[0][holdout.val], pool[1][holdout.val], MNIST_MEAN, MNIST_STD)
    assert torch.equal(val[0], x_val) and torch.equal(val[1], y_val)  # labels stay with their images
    assert len(chapter["test"][0]) == 50


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


def test_random_shift_moves_each_image_by_at_most_max_shift():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 12, 12)
    x[:, :, 6, 6] = 1.0  # one bright pixel in the middle of each image
    out = random_shift(x, 2)
    assert out.shape == x.shape and out.dtype == x.dtype
    pos = out.flatten(1).argmax(1)
    dy, dx = pos // 12 - 6, pos % 12 - 6
    assert out.flatten(1).sum(1).eq(1).all()  # the pixel is moved, not lost or copied
    assert dy.abs().max() == 2 and dx.abs().max() == 2 and len(set(zip(dy.tolist(), dx.tolist()))) > 10
    assert torch.equal(random_shift(x, 0), x)


def test_article_model_learns_generated_digits(digits):
    train, test = digits
    torch.manual_seed(0)
    model = mnist_resnet()
    before = evaluate(model, *test, device=CPU)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    hist = fit(model, opt, train, test, epochs=3, batch_size=64, device=CPU, verbose=False,
               augment=lambda x: random_shift(x, 2))
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert hist["val_accuracy"][-1] > max(0.8, before["accuracy"] + 0.4)


def _tiny_run(digits, log_dir, epochs, checkpoint=None, log_model=False):
    torch.manual_seed(0)
    model = mnist_resnet(widths=(8, 16), in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=3 * 4)
    chapter = chapter_logging()
    with chapter["SummaryWriter"](log_dir) as writer:
        if log_model:
            chapter["log_inputs"](writer, model, random_shift(digits[0][0][:8]))
        hist = fit(model, opt, (digits[0][0][:256], digits[0][1][:256]), digits[1], epochs=epochs,
                   batch_size=64, scheduler=sched, device=CPU, verbose=False, checkpoint=checkpoint,
                   on_epoch_end=chapter["tensorboard_hook"](writer, model, opt))
    return hist


def test_chapter_logging_writes_what_read_scalars_returns(digits, tmp_path):
    log_dir = tmp_path / "tb"
    hist = _tiny_run(digits, log_dir, epochs=2, log_model=True)
    scalars = read_scalars(log_dir)
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "learning_rate", "step/loss"} <= set(scalars)
    steps, values = scalars["loss/val"]
    assert steps.tolist() == [1, 2] and values == pytest.approx(hist["val_loss"], rel=1e-6)
    assert scalars["step/loss"][0].tolist() == list(range(1, 9))
    assert scalars["step/loss"][1] == pytest.approx(hist["step_loss"], rel=1e-6)

    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.HISTOGRAMS: 0})
    acc.Reload()
    tags = acc.Tags()
    assert "weights/conv1.weight" in tags["histograms"] and "gradients/fc.bias" in tags["histograms"]
    assert tags["images"] == ["samples"] and tags["graph"]


def test_a_resumed_run_continues_its_tensorboard_curves(digits, tmp_path):
    log_dir, ckpt = tmp_path / "tb", tmp_path / "run.pt"
    _tiny_run(digits, log_dir, epochs=2, checkpoint=ckpt)
    hist = _tiny_run(digits, log_dir, epochs=3, checkpoint=ckpt)  # a new process: new model, new logger
    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 2
    scalars = read_scalars(log_dir)
    assert scalars["accuracy/val"][0].tolist() == [1, 2, 3]
    assert scalars["accuracy/val"][1] == pytest.approx(hist["val_accuracy"], rel=1e-6)
    assert scalars["step/loss"][0].tolist() == list(range(1, 13))


def test_read_scalars_explains_a_folder_without_event_files(tmp_path):
    with pytest.raises(ResbookError, match="holds no TensorBoard event files"):
        read_scalars(tmp_path)


def test_tensorboard_dir_is_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    run = settings.Run("05_x", "smoke", "generated", "cpu", {}, 0)
    path = tensorboard_dir(run, "article resnet")
    assert path.parent == tmp_path / "runs" / "tensorboard"
    assert path.name.startswith("05_x_article-resnet_")


LOGGING_WITHOUT_TENSORFLOW = """
import sys, torch
from resbook import settings
from resbook.models.torch_resnet import mnist_resnet
from resbook.records import read_scalars
exec(sys.argv[2])  # chapter 6's logging cell
model = mnist_resnet(widths=(8,))
model(torch.randn(2, 1, 28, 28)).sum().backward()
with SummaryWriter(sys.argv[1]) as writer:
    log_inputs(writer, model, torch.randn(2, 1, 28, 28))
    hook = tensorboard_hook(writer, model, torch.optim.SGD(model.parameters(), lr=0.1))
    hook(1, {"epoch": [1], "loss": [0.5], "val_loss": [0.6], "accuracy": [0.8], "val_accuracy": [0.7],
             "step_loss": [0.5]})
assert read_scalars(sys.argv[1])["loss/train"][1].tolist() == [0.5]
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def test_chapter_logging_does_not_import_tensorflow(tmp_path):
    """torch's SummaryWriter would load all of TensorFlow (when installed) just for file I/O."""
    out = subprocess.run([sys.executable, "-c", LOGGING_WITHOUT_TENSORFLOW, str(tmp_path / "tb"),
                          chapter_logging_code()], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "tensorflow imported: False" in out.stdout
