import io
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
import pytest  # noqa: E402

from resbook import diagrams  # noqa: E402
from resbook.errors import ResbookError  # noqa: E402

ROWS = [  # chapter 2's ResNet-50 at 64x64, as its stage table gives them, with the block counts added
    {"stage": "input", "output_shape": (64, 64, 3)},
    {"stage": "conv1", "output_shape": (32, 32, 64), "parameters": 9_728},
    {"stage": "conv2", "blocks": 3, "output_shape": (16, 16, 256)},
    {"stage": "conv3", "blocks": 4, "output_shape": (8, 8, 512)},
    {"stage": "conv4", "blocks": 6, "output_shape": (4, 4, 1024)},
    {"stage": "conv5", "blocks": 3, "output_shape": (2, 2, 2048)},
    {"stage": "head", "output_shape": (5,)},
]


def texts(fig: Figure) -> list[str]:
    """Every piece of text the figure draws, in drawing order."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def renders_as_png(fig: Figure) -> bool:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue().startswith(b"\x89PNG") and len(buffer.getvalue()) > 5_000


def test_residual_block_is_chapter_1s_equation():
    fig = diagrams.residual_block()
    shown = texts(fig)
    assert shown.count("weight layer") == 2 and shown.count("ReLU  $g$") == 2 and shown.count("+") == 1
    # the main path, top-down: what goes in, what each layer gives, what comes out
    for label in (r"$a^{[l]}$", r"$z^{[l+1]}$", r"$a^{[l+1]}$", r"$z^{[l+2]}$", r"$z^{[l+2]} + a^{[l]}$",
                  r"$a^{[l+2]}$"):
        assert label in shown
    assert any("identity" in t and "$a^{[l]}$" in t for t in shown)  # the shortcut carries a^[l]
    assert any("g\\,(z^{[l+2]} + a^{[l]})" in t for t in shown)     # the title is the equation
    assert renders_as_png(fig)


def test_residual_block_draws_its_layers_top_down():
    fig = diagrams.residual_block()
    y = {t.get_text(): t.get_position()[1] for t in fig.findobj(Text)}
    assert y[r"$a^{[l]}$"] > y["weight layer"] > y["+"] > y[r"$a^{[l+2]}$"]


@pytest.mark.parametrize("projection", [False, True])
def test_bottleneck_block_has_three_convolutions_with_batchnorm(projection):
    fig = diagrams.bottleneck_block(projection=projection)
    shown = texts(fig)
    convs = [t for t in shown if "conv" in t]
    assert [t.split(",")[0] for t in convs[:3]] == ["1×1 conv", "3×3 conv", "1×1 conv"]
    assert shown.count("BatchNorm") == 3 and shown.count("ReLU") == 3 and shown.count("+") == 1
    shortcut = [t for t in shown if "stride s" in t and "BatchNorm" in t]
    if projection:
        assert shortcut == ["1×1 conv, 4f, stride s\n+ BatchNorm"]  # the projection: 1x1 conv + BN, stride s
        assert "1×1 conv, f, stride s" in shown                    # the main path strides too (v1)
        assert "projection shortcut" in shown
    else:
        assert shortcut == [] and not any("stride" in t for t in shown)
        assert any(t.startswith("identity") for t in shown)
    assert renders_as_png(fig)


def test_preact_block_has_nothing_after_the_addition():
    fig = diagrams.preact_block()
    shown = texts(fig)
    assert shown.count("BatchNorm") == 2 and shown.count("ReLU") == 2 and shown.count("3×3 conv") == 2
    y = {t.get_text(): t.get_position()[1] for t in fig.findobj(Text)}
    below_the_add = [t for t in fig.findobj(Text) if t.get_text() and t.get_position()[1] < y["+"]]
    assert [t.get_text() for t in below_the_add] == [r"$x_{l+1} = x_l + F(x_l)$" + "\n(no ReLU after the addition)"]
    # BN -> ReLU -> conv: the first BatchNorm is above the first ReLU, which is above the first conv
    order = [t.get_text() for t in sorted(fig.findobj(Text), key=lambda t: -t.get_position()[1])
             if t.get_text() in ("BatchNorm", "ReLU", "3×3 conv")]
    assert order == ["BatchNorm", "ReLU", "3×3 conv"] * 2
    assert renders_as_png(fig)


def test_stage_layout_shows_every_stage_its_blocks_and_each_shape_it_is_given():
    fig = diagrams.stage_layout(ROWS, title="ResNet-50 at 64×64")
    shown = texts(fig)
    for shape in ("64×64×3", "32×32×64", "16×16×256", "8×8×512", "4×4×1024", "2×2×2048", "5"):
        assert shape in shown
    for stage in ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "head", "input"):
        assert stage in shown
    assert [t for t in shown if t.startswith("× ")] == ["× 3", "× 4", "× 6", "× 3"]
    assert "7×7 conv, 64, stride 2" in shown
    assert any(t.startswith("3×3 max-pool, stride 2\n1×1 conv, 64") for t in shown)  # conv2_x, Table 1
    assert "1×1 conv, 512\n3×3 conv, 512\n1×1 conv, 2048" in shown                    # conv5_x
    assert "global average pool → 2048\ndense, 5 logits" in shown
    assert "ResNet-50 at 64×64" in shown
    assert renders_as_png(fig)


def test_stage_layout_draws_what_it_is_given_not_a_fixed_resnet50():
    fig = diagrams.stage_layout([{"stage": "conv2", "blocks": 8, "output_shape": [56, 56, 256]},
                                 {"stage": "conv3", "blocks": 1, "output_shape": (28, 28, 512)}])
    shown = texts(fig)
    assert "56×56×256" in shown and "28×28×512" in shown and "× 8" in shown and "× 1" in shown
    assert not any("max-pool" in t or "head" in t for t in shown)
    plt.close(fig)


@pytest.mark.parametrize("rows, words", [
    ([], "non-empty list of rows"),
    ({"stage": "conv2", "blocks": 3, "output_shape": (16, 16, 256)}, "non-empty list of rows"),
    (["conv2"], "not a dict"),
    ([{"blocks": 3, "output_shape": (16, 16, 256)}], "no stage name"),
    ([{"stage": "conv2", "blocks": 3}], "output_shape None"),
    ([{"stage": "conv2", "output_shape": (16, 0, 256)}], "tuple of positive ints"),
    ([{"stage": "conv2", "output_shape": "16x16x256"}], "tuple of positive ints"),
    ([{"stage": "conv2", "output_shape": (16, 16, 256.0)}], "tuple of positive ints"),
    ([{"stage": "conv2", "blocks": 0, "output_shape": (16, 16, 256)}], "blocks=0"),
    ([{"stage": "conv2", "blocks": "3", "output_shape": (16, 16, 256)}], "positive number of blocks"),
])
def test_stage_layout_refuses_a_bad_row_in_one_sentence(rows, words):
    before = plt.get_fignums()
    with pytest.raises(ResbookError) as error:
        diagrams.stage_layout(rows)
    message = str(error.value)
    assert words in message
    assert message.endswith(".") and "\n" not in message and message.count(". ") == 0
    assert plt.get_fignums() == before  # no half-drawn figure left behind


def test_diagrams_import_no_framework():
    code = "import sys, resbook.diagrams; print(*(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == ""
