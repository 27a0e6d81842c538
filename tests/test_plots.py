import matplotlib

matplotlib.use("Agg")

import re  # noqa: E402

import numpy as np  # noqa: E402

from resbook import plots  # noqa: E402


def test_plot_curves_draws_training_and_validation_and_errors():
    hist = {"loss": [2.0, 1.0, 0.5], "val_loss": [2.1, 1.2, 0.9], "accuracy": [0.5, 0.8, 0.9],
            "val_accuracy": [0.4, 0.7, 0.85], "step_loss": list(np.linspace(2, 0.5, 30))}
    fig = plots.plot_curves({"a": hist, "b": hist}, keys=("loss", "error", "step_loss"), validation=True,
                            smooth=5, vlines={"unfreeze": 1.5})
    loss_ax, error_ax, step_ax = fig.axes
    assert len(loss_ax.get_lines()) == 2 * 2 + 1  # two runs x (training, validation) + the event line
    train_error = error_ax.get_lines()[0].get_ydata()
    assert np.allclose(train_error, [0.5, 0.2, 0.1])
    assert len(step_ax.get_lines()[0].get_ydata()) == 30 - 5 + 1  # smoothed
    assert step_ax.get_xlabel() == "step" and loss_ax.get_xlabel() == "epoch"
    assert loss_ax.get_ylabel() == "loss" and error_ax.get_ylabel() == "error"  # not "training loss": both drawn
    fig = plots.plot_curves({"a": hist}, keys=("loss",))
    assert fig.axes[0].get_ylabel() == "training loss"


def test_plot_scalars_skips_missing_tags():
    scalars = {"loss/train": ([1, 2, 3], [1.0, 0.5, 0.2])}
    fig = plots.plot_scalars(scalars, {"loss": ["loss/train", "loss/val"]}, logy=("loss",))
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 1 and ax.get_yscale() == "log"


def _labelled_y_ticks(ax):
    """The (value, text) of every labelled y tick inside the panel, as drawn."""
    ax.figure.canvas.draw()
    low, high = ax.get_ylim()
    return [(t.get_position()[1], t.get_text()) for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
            if t.get_text() and low <= t.get_position()[1] <= high]


def test_log_axes_are_labelled_with_plain_numbers():
    """A loss falling from 4 to 0.5 (less than a decade, chapter 5's first steps) and one over three
    decades: every label is a plain number such as 0.5 or 2, never 4x10^0, and there are enough to read."""
    for losses in (np.geomspace(4, 0.5, 60), np.geomspace(3, 0.003, 60)):
        fig = plots.plot_curves({"a": {"step_loss": list(losses)}}, keys=("step_loss",), logy=("step_loss",))
        ticks = _labelled_y_ticks(fig.axes[0])
        assert len(ticks) >= 3, ticks
        for value, text in ticks:
            assert re.fullmatch(r"\d+(\.\d+)?", text) and np.isclose(float(text), value), (value, text)
    fig = plots.plot_scalars({"step/loss": (np.arange(1, 61), np.geomspace(2, 0.3, 60))}, {"loss": ["step/loss"]},
                             logy=("loss",))
    assert [text for _, text in _labelled_y_ticks(fig.axes[0])] == ["0.5", "1", "2"]


def test_image_grid():
    fig = plots.image_grid(np.zeros((5, 8, 8, 1), np.uint8), titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 6 and [a.get_title() for a in fig.axes[:5]] == list("abcde")


def test_confusion_matrix_shows_counts_and_makes_rare_mistakes_visible():
    """99.7% right (chapter 6's digits): a single mistake among a thousand right answers must stand out
    from the cells with none, and the biggest mistake gets the darkest colour."""
    fig = plots.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], ["x", "y", "z"])
    counts = [t.get_text() for t in fig.axes[0].texts]
    assert counts == ["1", "1", "0", "0", "1", "0", "0", "0", "1"]

    y_true = np.repeat([0, 1, 2], 1000)
    y_pred = y_true.copy()
    y_pred[0], y_pred[1000:1003] = 1, 2  # one 0 read as 1, three 1s read as 2
    fig = plots.confusion_matrix(y_true, y_pred, ["0", "1", "2"])
    ax = fig.axes[0]
    colour = np.zeros((3, 3, 4))
    for im in ax.get_images():  # the diagonal and the mistakes are drawn as two masked layers
        rgba = im.to_rgba(im.get_array())
        shown = ~np.ma.getmaskarray(im.get_array())
        colour[shown] = rgba[shown]
    assert colour[..., 3].min() == 1  # every cell is painted by one of the layers

    def darkness(i, j):
        return 1 - colour[i, j, :3].mean()

    none = darkness(0, 2)
    assert darkness(0, 1) > none + 0.1  # one mistake in a thousand is visible
    assert darkness(1, 2) > darkness(0, 1) + 0.3  # three in a thousand are darker still
    assert darkness(0, 0) < darkness(1, 2)  # 999 right answers do not drown the mistakes
    assert [t.get_text() for t in ax.texts][:3] == ["999", "1", "0"]
