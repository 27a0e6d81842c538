"""Diagrams of residual blocks and of ResNet-50's stages, drawn by code (matplotlib only).

Each function returns a matplotlib Figure, as :mod:`resbook.plots` does, so a
chapter shows it by ending a cell with it. The blocks are drawn top-down as in
He et al.'s figures: boxes for the layers, arrows for the data, a circled "+"
where the shortcut is added. Figures are sized in inches to the drawing
(about 4 to 6 inches wide), so they stay readable at the book's column width.
"""

from __future__ import annotations

from numbers import Integral
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyBboxPatch

from .errors import ResbookError

# Fill colours by kind of layer (pale, so the black text reads well in print too).
COLOURS = {"conv": "#d6e6f5", "norm": "#fbeccb", "act": "#dcefd8", "pool": "#e9e0f3",
           "dense": "#f5d9d9", "plain": "#f2f2f2"}
FONT = 9          # points
STEP = 0.5        # inches between two layers of a block
BOX_W, BOX_H = 2.2, 0.3
ADD_R = 0.15      # radius of the "+" node
EDGE = "#333333"


def _canvas(width: float, height: float):
    """A figure of ``width`` x ``height`` inches whose one axes maps data units to inches, axis off."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_position([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(-height, 0)  # y grows downwards from 0 at the top: the drawings read top-down
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def _box(ax, x: float, y: float, text: str, kind: str, width: float = BOX_W, height: float = BOX_H,
         linewidth: float = 0.9) -> None:
    """A rounded box centred on (x, y), filled by ``kind``'s colour, with ``text`` (if any) in it."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0,rounding_size=0.06", facecolor=COLOURS[kind],
                                edgecolor=EDGE, linewidth=linewidth))
    if text:
        ax.text(x, y, text, ha="center", va="center", fontsize=FONT)


def _add_node(ax, x: float, y: float) -> None:
    """The circled "+" where the shortcut joins the main path."""
    ax.add_patch(Circle((x, y), ADD_R, facecolor="white", edgecolor=EDGE, linewidth=0.9))
    ax.text(x, y, "+", ha="center", va="center", fontsize=FONT + 3)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=EDGE, linewidth=0.9, shrinkA=0, shrinkB=0,
                                mutation_scale=9))


def _line(ax, *points: tuple[float, float]) -> None:
    xs, ys = zip(*points)
    ax.plot(xs, ys, color=EDGE, linewidth=0.9, solid_capstyle="butt")


def _block(title: str, input_label: str, steps: Sequence[tuple[str, str]], after: Sequence[tuple[str, str]],
           output_label: str, edge_labels: Sequence[str] = (), shortcut_label: str = "identity",
           shortcut_box: str | None = None, step_note: Mapping[int, str] | None = None, step: float = STEP):
    """A residual block drawn top-down.

    ``steps`` are the layers of the main path before the addition, ``after``
    those after it, each ``(text, kind)``. ``edge_labels[i]`` names what flows
    out of the i-th node of the main path (the "+" included), written left of
    its arrow. The shortcut leaves just below ``input_label`` on the right and
    joins at the "+"; ``shortcut_box`` puts a layer on it. ``step_note`` adds a
    grey note right of a step (by index into ``steps``); ``step`` is the
    distance from one layer to the next, in inches.
    """
    nodes = [*steps, ("+", "add"), *after]
    left = 1.25 if edge_labels else 0.3           # room for the edge labels
    x = left + BOX_W / 2                          # the main path
    side_w = 1.9 if shortcut_box else 0.0
    sx = left + BOX_W + 0.35 + side_w / 2         # the shortcut's vertical line
    width = sx + (side_w / 2 if shortcut_box else 0) + 1.25
    top = 0.45 if title else 0.1
    y_in = -(top + 0.12)
    ys = [y_in - 0.7 - i * step for i in range(len(nodes))]
    y_out = ys[-1] - step
    lines = output_label.count("\n") + 1
    fig, ax = _canvas(width, -y_out + 0.1 + 0.2 * lines)
    if title:
        ax.text(width / 2, -0.22, title, ha="center", va="center", fontsize=FONT + 1, fontweight="bold")
    ax.text(x, y_in, input_label, ha="center", va="center", fontsize=FONT + 1)
    previous = y_in - 0.14
    for i, ((text, kind), y) in enumerate(zip(nodes, ys)):
        half = ADD_R if kind == "add" else BOX_H / 2
        _arrow(ax, (x, previous), (x, y + half))
        if kind == "add":
            _add_node(ax, x, y)
        else:
            _box(ax, x, y, text, kind)
        if step_note and i in step_note:
            ax.text(x + BOX_W / 2 + 0.08, y, step_note[i], ha="left", va="center", fontsize=FONT - 1,
                    color="#555555")
        if i < len(edge_labels) and edge_labels[i]:
            ax.text(x - 0.1, (y - half + (ys[i + 1] + BOX_H / 2 if i + 1 < len(ys) else y_out + 0.14)) / 2,
                    edge_labels[i], ha="right", va="center", fontsize=FONT)
        previous = y - half
    _arrow(ax, (x, previous), (x, y_out + 0.14))
    ax.text(x, y_out + 0.08, output_label, ha="center", va="top", fontsize=FONT + 1)

    # The shortcut: right from just below the input, down to the "+", left into it.
    y_split, y_add = y_in - 0.3, ys[len(steps)]
    ax.add_patch(Circle((x, y_split), 0.035, color=EDGE))
    if shortcut_box:
        y_mid = (y_split + y_add) / 2
        _line(ax, (x, y_split), (sx, y_split), (sx, y_mid + BOX_H / 2))
        _box(ax, sx, y_mid, shortcut_box, "conv", width=side_w)
        _line(ax, (sx, y_mid - BOX_H / 2), (sx, y_add))
        label_y = y_mid + BOX_H / 2 + 0.18
        ax.text(sx, label_y, shortcut_label, ha="center", va="center", fontsize=FONT, color="#1f4e79")
    else:
        _line(ax, (x, y_split), (sx, y_split), (sx, y_add))
        ax.text(sx + 0.1, (y_split + y_add) / 2, shortcut_label, ha="left", va="center", fontsize=FONT,
                color="#1f4e79")
    _arrow(ax, (sx, y_add), (x + ADD_R, y_add))
    return fig


def residual_block():
    """The two-layer residual block with its identity shortcut, in chapter 1's notation.

    Weight layer, ReLU, weight layer, the "+" that adds the block's input
    $a^{[l]}$ carried by the shortcut, and a last ReLU:
    $a^{[l+2]} = g(z^{[l+2]} + a^{[l]})$ (He et al. 2016, Fig. 2).
    """
    return _block(
        title=r"Residual block: $a^{[l+2]} = g\,(z^{[l+2]} + a^{[l]})$",
        input_label=r"$a^{[l]}$",
        steps=[("weight layer", "conv"), ("ReLU  $g$", "act"), ("weight layer", "conv")],
        after=[("ReLU  $g$", "act")],
        output_label=r"$a^{[l+2]}$",
        edge_labels=[r"$z^{[l+1]}$", r"$a^{[l+1]}$", r"$z^{[l+2]}$", r"$z^{[l+2]} + a^{[l]}$"],
        shortcut_label="identity\n" + r"shortcut $a^{[l]}$",
        step=0.68,  # room for the activations' names between the layers
    )


def bottleneck_block(projection: bool = False):
    """The three-layer bottleneck block of ResNet-50, with the identity or the projection shortcut.

    1x1 conv (``f`` filters, reduce), 3x3 conv (``f``), 1x1 conv (``4f``,
    expand), each followed by BatchNorm, the first two by a ReLU; the last ReLU
    comes after the addition. With ``projection=True`` the block changes the
    shape: the first 1x1 conv has stride ``s`` (as in ``keras.applications``,
    ResNet v1) and the shortcut is a 1x1 conv with ``4f`` filters and the same
    stride, plus BatchNorm.
    """
    first = "1×1 conv, f, stride s" if projection else "1×1 conv, f"
    steps = [(first, "conv"), ("BatchNorm", "norm"), ("ReLU", "act"),
             ("3×3 conv, f", "conv"), ("BatchNorm", "norm"), ("ReLU", "act"),
             ("1×1 conv, 4f", "conv"), ("BatchNorm", "norm")]
    kind = "projection" if projection else "identity"
    return _block(
        title=f"Bottleneck block, {kind} shortcut",
        input_label="x" + (" (shape changes)" if projection else ", 4f channels"),
        steps=steps,
        after=[("ReLU", "act")],
        output_label="4f channels" + (", 1/s of the height and width" if projection else ""),
        shortcut_label="projection shortcut" if projection else "identity\nshortcut x",
        shortcut_box="1×1 conv, 4f, stride s\n+ BatchNorm" if projection else None,
        step_note={0: "reduce", 6: "expand"},
    )


def preact_block():
    """The pre-activation residual block of He et al., *Identity Mappings in Deep Residual Networks* (2016).

    BatchNorm, ReLU, 3x3 conv, then BatchNorm, ReLU, 3x3 conv, and the "+"
    with the identity shortcut, with nothing after the addition: the shortcut
    path from block to block is a pure identity.
    """
    return _block(
        title="Pre-activation block (He et al. 2016)",
        input_label=r"$x_l$",
        steps=[("BatchNorm", "norm"), ("ReLU", "act"), ("3×3 conv", "conv"),
               ("BatchNorm", "norm"), ("ReLU", "act"), ("3×3 conv", "conv")],
        after=[],
        output_label=r"$x_{l+1} = x_l + F(x_l)$" + "\n(no ReLU after the addition)",
        shortcut_label="identity\n" + r"shortcut $x_l$",
    )


def _shape_text(shape: Sequence[int]) -> str:
    """An output shape as the stage layout writes it: ``(16, 16, 256)`` -> ``16×16×256``."""
    return "×".join(str(int(n)) for n in shape)


def _checked(rows) -> list[dict]:
    """``rows`` if each is a dict with a name, an output shape and (optionally) a block count; else one sentence."""
    example = '{"stage": "conv2", "blocks": 3, "output_shape": (16, 16, 256)}'
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence) or not rows:
        raise ResbookError(f"stage_layout needs a non-empty list of rows such as {example}, not {rows!r:.80}.")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ResbookError(f"Row {i} of the stage layout is {row!r:.60}, not a dict such as {example}.")
        stage = row.get("stage")
        if not isinstance(stage, str) or not stage:
            raise ResbookError(f"Row {i} of the stage layout has no stage name: give it a 'stage' such as 'conv2'.")
        shape = row.get("output_shape")
        if (not isinstance(shape, Sequence) or isinstance(shape, str) or not shape
                or not all(isinstance(n, Integral) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise ResbookError(f"Row {i} ({stage}) has output_shape {shape!r:.60}: give a tuple of positive "
                               "ints such as (16, 16, 256).")
        blocks = row.get("blocks")
        if blocks is not None and (not isinstance(blocks, Integral) or isinstance(blocks, bool) or blocks < 1):
            raise ResbookError(f"Row {i} ({stage}) has blocks={blocks!r:.40}: give a positive number of "
                               "blocks, or leave 'blocks' out for a row without residual blocks.")
    return list(rows)


def _stage_lines(row: Mapping, previous: Mapping | None) -> tuple[str, list[str], str]:
    """The name, the detail lines and the colour kind of one row's box."""
    stage, shape, blocks = row["stage"], row["output_shape"], row.get("blocks")
    channels = int(shape[-1])
    if blocks is not None:
        lines = []
        if previous is not None and previous["stage"] == "conv1" and previous.get("blocks") is None:
            lines.append("3×3 max-pool, stride 2")  # in conv2_x, as in He et al.'s Table 1
        if channels % 4 == 0:
            lines += [f"1×1 conv, {channels // 4}", f"3×3 conv, {channels // 4}", f"1×1 conv, {channels}"]
        return (stage if stage.endswith("_x") else f"{stage}_x"), lines, "conv"
    if stage == "conv1":
        return stage, [f"7×7 conv, {channels}, stride 2"], "conv"
    if stage == "head":
        pooled = f" → {int(previous['output_shape'][-1])}" if previous is not None else ""
        return stage, [f"global average pool{pooled}", f"dense, {channels} logits"], "dense"
    return stage, [], "plain"


def stage_layout(rows: Sequence[Mapping], title: str | None = None):
    """A ResNet's stages as a top-down strip of boxes, each with its output shape.

    ``rows`` is data, one dict per stage in order, such as
    ``{"stage": "conv2", "blocks": 3, "output_shape": (16, 16, 256)}``: give
    ``"blocks"`` for a stage of bottleneck blocks (drawn as a stack, its three
    convolutions read off the output channels), and leave it out for the stem
    (``"conv1"``: the 7x7 convolution, whose max-pool is drawn at the top of
    ``conv2_x`` as in He et al.'s Table 1), the ``"head"`` (average pool and
    dense layer) or any other row (``"input"``), drawn as a box with its name.
    Extra keys (``"parameters"``) are ignored, so ``stage_table``'s rows with
    block counts added are valid rows. Each output shape is written as
    ``16×16×256``. A row that is not of this form is a :class:`ResbookError`.
    """
    rows = _checked(rows)
    boxes = [_stage_lines(row, rows[i - 1] if i else None) for i, row in enumerate(rows)]
    heights = [0.3 + 0.18 * len(lines) for _, lines, _ in boxes]
    gap, box_w, stack = 0.26, 2.3, 0.05
    x = 0.75 + box_w / 2                       # boxes; "× n" sits left of them
    shape_x = x + box_w / 2 + 0.35
    top = 0.5 if title else 0.15
    header_y = -(top + 0.05)
    fig, ax = _canvas(shape_x + 1.45, top + 0.3 + sum(heights) + gap * (len(rows) - 1) + 0.2)
    if title:
        ax.text((shape_x + 1.45) / 2, -0.25, title, ha="center", va="center", fontsize=FONT + 1,
                fontweight="bold")
    ax.text(x, header_y, "stage", ha="center", va="center", fontsize=FONT, color="#555555")
    ax.text(shape_x, header_y, "output shape", ha="left", va="center", fontsize=FONT, color="#555555")
    y_top = header_y - 0.2
    for row, (name, lines, kind), h in zip(rows, boxes, heights):
        y = y_top - h / 2
        blocks = row.get("blocks")
        if blocks is not None and blocks > 1:  # a stack: the stage repeats its block
            for k in (2, 1):
                _box(ax, x + k * stack, y - k * stack, "", kind, width=box_w, height=h, linewidth=0.6)
        _box(ax, x, y, "", kind, width=box_w, height=h)
        ax.text(x, y + h / 2 - 0.17, name, ha="center", va="center", fontsize=FONT, fontweight="bold")
        if lines:
            ax.text(x, y - 0.09, "\n".join(lines), ha="center", va="center", fontsize=FONT, linespacing=1.3)
        if blocks is not None:
            ax.text(x - box_w / 2 - 0.12, y, f"× {blocks}", ha="right", va="center", fontsize=FONT + 1)
        ax.text(shape_x, y, _shape_text(row["output_shape"]), ha="left", va="center", fontsize=FONT,
                family="monospace")
        y_next = y_top - h - gap
        if row is not rows[-1]:
            _arrow(ax, (x, y_top - h - (stack * 2 if blocks and blocks > 1 else 0)), (x, y_next))
        y_top = y_next
    return fig
