"""plot_history: the drawn lines are the history's columns exactly; subplots, scales, the best marker, errors."""
import re
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest

import kerastorch as kt
from kerastorch.callbacks.display import plot_history
from kerastorch.callbacks.display.figure import HistoryFigure
from support import run_notebook

matplotlib.use("Agg")

NAN = float("nan")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def history():
    """Five epochs numbered from 3 (a second fit), validation on epochs 4 and 6 only, lr decaying."""
    return pd.DataFrame({
        "epoch": [3, 4, 5, 6, 7],
        "loss": [0.9, 0.7, 0.6, 0.55, 0.5],
        "acc": [0.5, 0.6, 0.7, 0.75, 0.8],
        "val_loss": [NAN, 0.8, NAN, 0.65, NAN],
        "val_acc": [NAN, 0.55, NAN, 0.72, NAN],
        "lr": [0.1, 0.1, 0.01, 0.01, 0.001],
    })


def lines_of(axes):
    return {line.get_label(): (line.get_xdata(), line.get_ydata()) for line in axes.lines}


def subplots(figure):
    return [axes.get_label() for axes in figure.axes]


def png_width(png):
    return int.from_bytes(png[16:20], "big")  # the IHDR chunk: width, then height


def test_the_drawn_lines_are_the_history_columns_exactly():
    frame = history()
    figure = plot_history(frame)
    loss, acc, lr = figure.axes
    epochs = frame["epoch"].to_numpy()
    for axes, train, validation in ((loss, "loss", "val_loss"), (acc, "acc", "val_acc")):
        drawn = lines_of(axes)
        np.testing.assert_array_equal(drawn["train"][0], epochs)
        np.testing.assert_array_equal(drawn["train"][1], frame[train].to_numpy())
        np.testing.assert_array_equal(drawn["validation"][0], epochs)
        np.testing.assert_array_equal(drawn["validation"][1], frame[validation].to_numpy())  # NaN: gaps
    assert list(lines_of(lr)) == ["lr"]
    np.testing.assert_array_equal(lines_of(lr)["lr"][1], [0.1, 0.1, 0.01, 0.01, 0.001])
    assert lines_of(loss)["validation"][1][0] != lines_of(loss)["validation"][1][0]  # NaN kept, not dropped


def test_one_subplot_per_base_metric_and_epoch_is_not_drawn():
    figure = plot_history(history())
    assert isinstance(figure, HistoryFigure)
    assert subplots(figure) == ["loss", "acc", "lr"]
    assert [axes.get_title() for axes in figure.axes] == ["loss (best val 0.6500 at epoch 6)",
                                                          "acc (best val 0.7200 at epoch 6)", "lr"]
    assert [axes.get_xlabel() for axes in figure.axes] == ["epoch"] * 3
    labels = [line.get_label() for axes in figure.axes for line in axes.lines]
    assert labels == ["train", "validation", "best val_loss 0.6500 (epoch 6)", "train", "validation", "lr"]
    assert [axes.get_legend() is not None for axes in figure.axes] == [True, True, True]


def test_every_curve_has_a_marker_per_epoch_so_one_epoch_and_isolated_values_show():
    drawn = {line.get_label(): line.get_marker() for line in plot_history(history()).axes[0].lines}
    assert drawn == {"train": "o", "validation": "o", "best val_loss 0.6500 (epoch 6)": "*"}
    axes = plot_history(pd.DataFrame({"epoch": [1], "loss": [0.5], "val_loss": [0.6]})).axes[0]
    assert [(line.get_marker(), line.get_xdata().tolist()) for line in axes.lines[:2]] == [("o", [1]), ("o", [1])]
    assert axes.get_xlim() == (0.5, 1.5) and [tick for tick in axes.get_xticks() if 0.5 <= tick <= 1.5] == [1]


def test_long_runs_get_smaller_markers_and_a_padded_axis():
    axes = plot_history(pd.DataFrame({"loss": np.linspace(1, 0, 100)})).axes[0]
    assert axes.lines[0].get_markersize() == 1.5 and axes.get_xlim() == (1 - 3.96, 100 + 3.96)
    assert plot_history(pd.DataFrame({"loss": np.linspace(1, 0, 60)})).axes[0].lines[0].get_markersize() == 3


@pytest.mark.parametrize(("monitor", "mode", "titles"), [
    (None, "auto", ["loss (best val 0.6500 at epoch 6)", "acc (best val 0.7200 at epoch 6)"]),
    ("loss", "auto", ["loss (best train 0.5000 at epoch 7)", "acc (best val 0.7200 at epoch 6)"]),
    ("val_acc", "min", ["loss (best val 0.6500 at epoch 6)", "acc (best val 0.5500 at epoch 4)"]),
])
def test_each_title_holds_the_best_value_of_the_monitor_else_of_validation(monitor, mode, titles):
    figure = plot_history(history(), ["loss", "acc"], monitor=monitor, mode=mode)
    assert [axes.get_title() for axes in figure.axes] == titles


def test_titles_of_training_only_and_monitored_lr_subplots():
    frame = pd.DataFrame({"loss": [0.4, 0.3, 0.35], "acc": [0.5, 0.7, 0.6], "lr": [0.1, 0.01, 0.001]})
    assert [axes.get_title() for axes in plot_history(frame).axes] == [
        "loss (best 0.3000 at epoch 2)", "acc (best 0.7000 at epoch 2)", "lr"]
    assert plot_history(frame, monitor="lr").axes[2].get_title() == "lr (best 0.001 at epoch 3)"


@pytest.mark.parametrize("metrics", [["acc"], ["acc", "auc", "mae"]])
def test_the_figure_is_at_most_760_px_wide_two_subplots_a_row(metrics):
    columns = {"epoch": [1, 2, 3], "loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.6, 0.7]}
    for name in metrics:
        columns.update({name: [0.5, 0.6, 0.7], f"val_{name}": [0.4, 0.5, 0.6]})
    figure = plot_history(pd.DataFrame(columns))
    assert len(figure.axes) == 1 + len(metrics)
    assert png_width(figure._repr_png_()) <= 760
    assert len({axes.get_position().x0 for axes in figure.axes}) == 2                      # two columns,
    assert len({axes.get_position().y0 for axes in figure.axes}) == (len(metrics) + 2) // 2  # wrapping into rows
    assert figure.axes[0].title.get_fontsize() >= 10 and figure.axes[0].xaxis.label.get_fontsize() >= 9


def test_the_lr_subplot_is_log_scaled_when_positive_and_varying_else_linear():
    assert [axes.get_yscale() for axes in plot_history(history()).axes] == ["linear", "linear", "log"]
    constant = pd.DataFrame({"loss": [1.0, 0.5], "lr": [0.1, 0.1]})
    assert plot_history(constant, ["loss", "lr"]).axes[1].get_yscale() == "linear"
    with_zero = pd.DataFrame({"loss": [1.0, 0.5], "lr": [0.1, 0.0]})
    assert plot_history(with_zero).axes[1].get_yscale() == "linear"


def test_a_constant_lr_gets_no_subplot_unless_named_monitored_or_alone():
    constant = pd.DataFrame({"loss": [1.0, 0.5, 0.4], "lr": [0.1, 0.1, NAN], "head_lr": [0.01, 0.01, 0.01]})
    assert subplots(plot_history(constant)) == ["loss"]
    assert subplots(plot_history(constant, ["loss", "lr"])) == ["loss", "lr"]
    assert subplots(plot_history(constant, monitor="lr")) == ["loss", "lr"]
    assert subplots(plot_history(pd.DataFrame({"lr": [0.1, 0.1]}))) == ["lr"]
    one_group_changes = constant.assign(head_lr=[0.01, 0.01, 0.001])
    assert subplots(plot_history(one_group_changes)) == ["loss", "lr"]


def test_learning_rates_of_parameter_groups_share_the_lr_subplot_labelled_by_column():
    frame = pd.DataFrame({"loss": [1.0, 0.5], "lr": [0.1, 0.05], "head_lr": [0.01, 0.005]})
    figure = plot_history(frame)
    assert subplots(figure) == ["loss", "lr"]
    assert list(lines_of(figure.axes[1])) == ["lr", "head_lr"]


def test_without_an_epoch_column_x_is_1_to_n_and_a_val_only_metric_gets_its_own_subplot():
    frame = pd.DataFrame({"loss": [0.4, 0.3, 0.35], "val_f1": [0.2, 0.6, 0.5]})
    figure = plot_history(frame)
    assert subplots(figure) == ["loss", "f1"]
    assert figure.axes[1].get_title() == "f1 (best val 0.6000 at epoch 2)"  # f1: max
    np.testing.assert_array_equal(lines_of(figure.axes[0])["train"][0], [1, 2, 3])
    assert list(lines_of(figure.axes[1])) == ["validation"]
    star = figure.axes[0].lines[-1]  # no val_loss: the best loss is starred
    assert star.get_label() == "best loss 0.3000 (epoch 2)" and star.get_marker() == "*"


@pytest.mark.parametrize(("monitor", "mode", "subplot", "x", "y"), [
    (None, "auto", 0, 6, 0.65),                 # default: val_loss, min; NaN epochs skipped
    ("loss", "min", 0, 7, 0.5),
    ("loss", "max", 0, 3, 0.9),
    ("val_acc", "auto", 1, 6, 0.72),           # auto: acc -> max
    ("acc", "min", 1, 3, 0.5),
    ("lr", "auto", 2, 7, 0.001),
])
def test_the_best_epoch_of_the_monitor_is_starred_on_its_subplot(monitor, mode, subplot, x, y):
    figure = plot_history(history(), monitor=monitor, mode=mode)
    stars = [(index, line) for index, axes in enumerate(figure.axes) for line in axes.lines
             if line.get_marker() == "*"]
    assert len(stars) == 1
    index, star = stars[0]
    assert index == subplot and star.get_linestyle() == "None"
    assert star.get_xdata().tolist() == [x] and star.get_ydata().tolist() == [y]
    assert star.get_label().startswith(f"best {monitor or 'val_loss'} ") and star.get_label().endswith(f"(epoch {x})")


def test_epochs_counted_again_by_a_second_fit_are_drawn_in_training_order():
    frame = pd.DataFrame({"epoch": [1, 2, 3, 1, 2], "loss": [0.9, 0.8, 0.7, 0.65, 0.6]})
    axes = plot_history(frame).axes[0]
    np.testing.assert_array_equal(axes.lines[0].get_xdata(), [1, 2, 3, 4, 5])
    assert axes.get_xlabel() == "epoch (all fits, in order)"
    assert axes.lines[-1].get_label() == "best loss 0.6000 (epoch 5)"


def test_the_star_comes_after_the_curves_in_the_legend():
    labels = plot_history(history(), monitor="loss").axes[0].get_legend_handles_labels()[1]
    assert labels == ["train", "validation", "best loss 0.5000 (epoch 7)"]


def test_ties_star_the_first_best_epoch():
    figure = plot_history(pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.5, 0.2, 0.2]}))
    assert figure.axes[0].lines[-1].get_xydata().tolist() == [[2.0, 0.2]]


def test_metrics_selects_and_orders_the_subplots():
    figure = plot_history(history(), ["lr", "loss"])
    assert subplots(figure) == ["lr", "loss"]
    assert [line.get_label() for line in figure.axes[1].lines] == ["train", "validation",
                                                                   "best val_loss 0.6500 (epoch 6)"]
    assert subplots(plot_history(history(), "acc")) == ["acc"]  # one name; no star


def test_a_model_or_a_list_of_rows_is_plotted_like_its_frame():
    rows = history().to_dict("records")

    class FakeModel:  # duck typing: anything with a .history DataFrame
        history = pd.DataFrame(rows)

    for source in (rows, FakeModel()):
        figure = plot_history(source)
        np.testing.assert_array_equal(lines_of(figure.axes[1])["validation"][1], history()["val_acc"].to_numpy())


def test_model_plot_history_delegates(tiny, binary_data):
    tiny.compile("sgd", "mse", device="cpu")
    history_frame = tiny.fit(*binary_data, epochs=2, verbose=0)
    figure = tiny.plot_history(title="run 1")
    assert figure._suptitle.get_text() == "run 1"
    np.testing.assert_array_equal(lines_of(figure.axes[0])["train"][1], history_frame["loss"].to_numpy())
    assert kt.plot_history is plot_history


def test_redrawing_into_a_figure_clears_it_first():
    figure = plot_history(history())
    again = plot_history(pd.DataFrame({"loss": [1.0, 0.5]}), figure=figure)
    assert again is figure and subplots(figure) == ["loss"]
    assert len(figure.axes[0].lines) == 2  # train and the star, nothing left from the first draw
    assert tuple(figure.get_size_inches()) == (5.0, 2.8)  # resized to one subplot


def test_a_user_figure_keeps_its_size():
    from matplotlib.figure import Figure

    mine = Figure(figsize=(3, 2))
    assert plot_history(history(), figure=mine) is mine
    assert tuple(mine.get_size_inches()) == (3, 2) and len(mine.axes) == 3


def test_the_figure_renders_as_png_for_jupyter():
    assert plot_history(history())._repr_png_().startswith(PNG_MAGIC)


def test_an_unknown_metric_names_the_available_ones():
    with pytest.raises(ValueError, match=re.escape("['val_loss'] not in the history; a subplot holds the training and "
                                                   "validation curves, so name 'loss', not 'val_loss'). Received: "
                                                   "metrics=['val_loss']. Available: loss, acc, lr.")):
        plot_history(history(), ["val_loss"])
    with pytest.raises(ValueError, match=re.escape("(no name or a name twice; ")):
        plot_history(history(), ["loss", "loss"])


def test_a_monitor_not_in_the_history_names_the_columns():
    with pytest.raises(ValueError, match=re.escape("`monitor` must be a column of the history. Received: "
                                                   "monitor='val_auc'. Available: loss, acc, val_loss, val_acc, lr.")):
        plot_history(history(), monitor="val_auc")
    with pytest.raises(ValueError, match=re.escape("Received: monitor='epoch'")):
        plot_history(history(), monitor="epoch")
    with pytest.raises(ValueError, match=re.escape("`monitor` is drawn on the 'loss' subplot, which `metrics` leaves "
                                                   "out. Received: monitor='val_loss', metrics=['acc']")):
        plot_history(history(), ["acc"], monitor="val_loss")


def test_a_bad_mode_is_rejected():
    with pytest.raises(ValueError, match=re.escape("`mode` must be one of 'auto', 'min', 'max'. Received: mode='bes")):
        plot_history(history(), mode="best")


def test_an_empty_history_says_to_fit_first():
    for empty in (pd.DataFrame(), [], pd.DataFrame({"epoch": [1, 2]})):
        with pytest.raises(ValueError, match=re.escape("The history is empty: there is nothing to plot. Train first "
                                                       "(model.fit(...)), then plot.")):
            plot_history(empty)


def test_bad_history_types_and_values():
    with pytest.raises(TypeError, match=re.escape("`history` must be a pandas DataFrame (model.history), a list of "
                                                  "row dicts or a kerastorch Model. Received: history of type dict")):
        plot_history({"loss": [1.0]})
    with pytest.raises(TypeError, match=re.escape("Received: ['float']")):
        plot_history([0.5])
    with pytest.raises(ValueError, match=re.escape("History column 'note' must hold numbers (NaN for missing). "
                                                   "Received: ['ok', 'bad']")):
        plot_history(pd.DataFrame({"loss": [1.0, 0.5], "note": ["ok", "bad"]}))


def test_missing_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=re.escape("plot_history needs matplotlib: pip install matplotlib (or pip "
                                                    "install kerastorch[notebook])")):
        plot_history(history())


def image_outputs(cell):
    return [output for output in cell.outputs if "image/png" in output.get("data", {})]


def texts(cell):
    return [output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in cell.outputs]


@pytest.mark.slow
def test_in_jupyter_the_returned_figure_renders_once_as_a_png(tmp_path):
    pytest.importorskip("nbclient")
    history_code = "import pandas as pd\nhistory = pd.DataFrame({'loss': [1.0, 0.5], 'val_loss': [1.1, 0.7]})\n"
    cells, _ = run_notebook([
        "import kerastorch as kt\n" + history_code + "kt.plot_history(history)",
        "%matplotlib inline\nkt.plot_history(history)",     # the inline backend's own Figure formatter
        "figure = kt.plot_history(history)",                # not the last expression: nothing shown
    ], tmp_path)
    for cell in cells[:2]:
        assert len(cell.outputs) == 1 and len(image_outputs(cell)) == 1
        assert image_outputs(cell)[0]["output_type"] == "execute_result"
        assert not any("<Figure size" in text for text in texts(cell)), texts(cell)
    assert cells[2].outputs == []
