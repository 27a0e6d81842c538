import matplotlib

matplotlib.use("Agg")

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


def test_image_grid_and_confusion_matrix():
    fig = plots.image_grid(np.zeros((5, 8, 8, 1), np.uint8), titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 6 and [a.get_title() for a in fig.axes[:5]] == list("abcde")
    fig = plots.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], ["x", "y", "z"])
    counts = [t.get_text() for t in fig.axes[0].texts]
    assert counts == ["1", "1", "0", "0", "1", "0", "0", "0", "1"]
