"""LivePlot: redraws model.history into one figure each epoch, to a PNG file atomically or in place in Jupyter."""
import base64
import os
import re
import sys
import warnings
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch

import kerastorch as kt
from kerastorch.callbacks import Callback, LivePlot
from kerastorch.callbacks.display import live_plot
from kerastorch.callbacks.display.figure import png_bytes
from support import TinyNet, run_notebook

matplotlib.use("Agg")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, generator=generator)
    return x, x.sum(1, keepdim=True)


def model():
    torch.manual_seed(0)
    net = TinyNet()
    net.compile("sgd", "mse", ["mae"], device="cpu")
    return net


class FileWatcher(Callback):
    """Runs after LivePlot: the PNG's bytes and the folder's files at each epoch end."""

    def __init__(self, path):
        super().__init__()
        self.path, self.images, self.listings = path, [], []

    def on_epoch_end(self, epoch, logs=None):
        self.images.append(self.path.read_bytes())
        self.listings.append(sorted(os.listdir(self.path.parent)))


def curves(figure):
    """{(subplot label, line label): (x, y)} of every line drawn."""
    return {(axes.get_label(), line.get_label()): (line.get_xdata(), line.get_ydata())
            for axes in figure.axes for line in axes.lines}


def subplots(figure):
    return [axes.get_label() for axes in figure.axes]


def png_width(png):
    return int.from_bytes(png[16:20], "big")  # the IHDR chunk: width, then height


class CountingPlot(LivePlot):
    """A LivePlot recording how many history rows each draw showed."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drawn = []

    def _draw(self):
        super()._draw()
        self.drawn.append(len(self.figure.axes[0].lines[0].get_xdata()))


@pytest.fixture
def slow_draws(monkeypatch):
    """perf_counter advances 1 s per call: each draw seems to take 1 s, so max_overhead=0.1 waits 10 s after it."""
    ticks = iter(range(10_000))
    monkeypatch.setattr(live_plot, "time", SimpleNamespace(perf_counter=lambda: float(next(ticks))))


def test_a_fit_writes_the_png_every_epoch_and_draws_the_history_exactly(tmp_path):
    net, (x, y), path = model(), data(), tmp_path / "curves.png"
    live, watcher = LivePlot(path=path, max_overhead=None), FileWatcher(path)
    history = net.fit(x, y, batch_size=4, epochs=3, validation_data=(x, y), callbacks=[live, watcher], verbose=0)
    assert [image[:8] for image in watcher.images] == [PNG_MAGIC] * 3
    assert len(set(watcher.images)) == 3                       # redrawn each epoch
    assert watcher.listings == [["curves.png"]] * 3            # no temp file left beside it
    assert path.read_bytes() == png_bytes(live.figure)         # the file is the last figure
    drawn = curves(live.figure)
    assert subplots(live.figure) == ["loss", "mae"]                # the lr never changed: no lr subplot
    columns = {("loss", "train"): "loss", ("loss", "validation"): "val_loss", ("mae", "train"): "mae",
               ("mae", "validation"): "val_mae"}
    for (title, label), column in columns.items():
        np.testing.assert_array_equal(drawn[title, label][0], [1, 2, 3])
        np.testing.assert_array_equal(drawn[title, label][1], history[column].to_numpy())
    best = int(history["val_loss"].idxmin())
    star = live.figure.axes[0].lines[-1]
    assert star.get_label().startswith("best val_loss ")    # fit has validation data: val_loss is watched
    assert star.get_xydata().tolist() == [[best + 1.0, history["val_loss"][best]]]
    assert live.figure.axes[0].get_title() == f"loss (best val {history['val_loss'][best]:.4f} at epoch {best + 1})"


def test_a_second_fit_continues_on_the_same_history_and_figure(tmp_path):
    net, (x, y), path = model(), data(), tmp_path / "curves.png"
    live = LivePlot(path=path, monitor="loss")
    net.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), callbacks=[live], verbose=0)
    first_figure = live.figure
    history = net.fit(x, y, batch_size=4, epochs=4, initial_epoch=2, callbacks=[live], verbose=0)
    assert live.figure is first_figure and len(history) == 4
    drawn = curves(live.figure)
    np.testing.assert_array_equal(drawn["loss", "train"][0], [1, 2, 3, 4])
    np.testing.assert_array_equal(drawn["loss", "train"][1], history["loss"].to_numpy())
    np.testing.assert_array_equal(drawn["loss", "validation"][1], history["val_loss"].to_numpy())  # NaN, NaN at 3, 4
    assert drawn["loss", f"best loss {history['loss'].min():.4f} (epoch 4)"][0].tolist() == [4]
    assert path.read_bytes() == png_bytes(live.figure)


def test_the_metrics_selection_is_drawn_in_its_order(tmp_path):
    net, (x, y) = model(), data()
    live = LivePlot(path=tmp_path / "curves.png", metrics=["lr", "mae"])
    net.fit(x, y, batch_size=8, epochs=1, callbacks=[live], verbose=0)
    assert subplots(live.figure) == ["lr", "mae"]                  # named: lr drawn though constant
    assert [line.get_marker() for axes in live.figure.axes for line in axes.lines] == ["o", "o"]  # loss: no star


def test_nowhere_to_draw_warns_once_at_train_begin_and_does_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net, (x, y) = model(), data()
    live = LivePlot()
    with pytest.warns(UserWarning) as caught:
        net.fit(x, y, batch_size=4, epochs=3, callbacks=[live], verbose=0)
    assert [str(warning.message) for warning in caught] == [
        "LivePlot has nowhere to draw outside a notebook: pass path='curves.png' to write the figure"]
    assert live.figure is None and os.listdir(tmp_path) == []


def test_only_rank_zero_draws(tmp_path, monkeypatch):
    monkeypatch.setattr(live_plot, "is_rank_zero", lambda: False)
    live = LivePlot(path=tmp_path / "curves.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no "nowhere to draw" warning either
        model().fit(*data(), epochs=1, callbacks=[live], verbose=0)
    assert live.figure is None and os.listdir(tmp_path) == []


def test_bad_arguments_are_rejected_at_construction(tmp_path):
    with pytest.raises(ValueError, match=re.escape("`mode` must be one of 'auto', 'min', 'max'. Received: mode='low'")):
        LivePlot(mode="low")
    with pytest.raises(ValueError, match=re.escape(f"`path` must be a PNG file to write, not a folder. Received: "
                                                   f"path={str(tmp_path)!r}. Pass a file in it, e.g. "
                                                   f"path={str(tmp_path / 'curves.png')!r}.")):
        LivePlot(path=tmp_path)
    missing = tmp_path / "plots" / "curves.png"
    with pytest.raises(ValueError, match=re.escape(f"The folder of `path` does not exist. Received: "
                                                   f"path={str(missing)!r}. Create it first (os.makedirs(")):
        LivePlot(path=missing)
    with pytest.raises(ValueError, match=re.escape("`path` must end in .png (LivePlot writes PNG images). Received: "
                                                   "path='curves.jpg'")):
        LivePlot(path="curves.jpg")
    with pytest.raises(TypeError, match=re.escape("`metrics` must be a list of metric names. Received: metrics=3")):
        LivePlot(metrics=3)
    with pytest.raises(ValueError, match=re.escape("`monitor` must be a non-empty string. Received: monitor=''")):
        LivePlot(monitor="")


@pytest.mark.parametrize(("arguments", "message"), [
    ({"monitor": "val_loss"}, "LivePlot monitors 'val_loss', but fit has no validation data"),
    ({"monitor": "auc"}, "LivePlot monitors 'auc', which fit will not log. Available: loss, mae, lr."),
    ({"metrics": ["accuracy"]}, "`metrics` must name base metrics of the history, each once (['accuracy'] not in the "
                                "history"),
])
def test_names_fit_will_not_log_are_rejected_before_any_epoch(tmp_path, arguments, message):
    net, (x, y) = model(), data()
    weights = net.fc.weight.detach().clone()
    live = LivePlot(path=tmp_path / "curves.png", **arguments)
    with pytest.raises(ValueError, match=re.escape(message)):
        net.fit(x, y, epochs=1, callbacks=[live], verbose=0)
    assert torch.equal(net.fc.weight, weights) and len(net.history) == 0 and os.listdir(tmp_path) == []


def test_the_folder_going_away_is_caught_at_train_begin(tmp_path):
    folder = tmp_path / "plots"
    folder.mkdir()
    live = LivePlot(path=folder / "curves.png")
    folder.rmdir()
    with pytest.raises(ValueError, match=re.escape("The folder of `path` does not exist.")):
        model().fit(*data(), epochs=1, callbacks=[live], verbose=0)


def test_missing_matplotlib_fails_at_construction(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=re.escape("LivePlot needs matplotlib: pip install matplotlib (or pip "
                                                    "install kerastorch[notebook])")):
        LivePlot(path="curves.png")


def test_exported_as_kt_callbacks_live_plot():
    assert kt.callbacks.LivePlot is LivePlot is kt.callbacks.display.LivePlot


@pytest.mark.slow
def test_in_jupyter_one_image_output_is_updated_in_place(tmp_path):
    pytest.importorskip("nbclient")
    cells, client = run_notebook([
        "import torch\nimport kerastorch as kt\n"
        "model = kt.Model.wrap(torch.nn.Linear(2, 1))\nmodel.compile('sgd', 'mse', device='cpu')\n"
        "live = kt.callbacks.LivePlot()\n"
        "model.fit(torch.randn(16, 2), torch.randn(16, 1), epochs=3, callbacks=[live], verbose=0);",
        "from kerastorch.callbacks.display.figure import png_bytes\nimport base64\n"
        "print(live._handle.display_id)\nprint(len(model.history))\n"
        "print(base64.b64encode(png_bytes(live.figure)).decode())",
    ], tmp_path)
    fit_cell, check_cell = cells
    assert [output["output_type"] for output in fit_cell.outputs] == ["display_data"]  # no stderr, no text
    printed = "".join(output["text"] for output in check_cell.outputs if output["output_type"] == "stream")
    display_id, rows, last_png = printed.split()
    assert rows == "3"
    stored = fit_cell.outputs[0]["data"]["image/png"]
    assert base64.b64decode(stored).startswith(PNG_MAGIC)
    assert "".join(stored.split()) == last_png                 # the one output shows the last epoch's figure
    assert display_id in client._display_id_map                # it was displayed with a display id (updatable)


def test_after_epoch_1_each_curve_is_one_visible_point_on_a_whole_epoch_axis(tmp_path):
    net, (x, y) = model(), data()
    live = LivePlot(path=tmp_path / "curves.png")
    net.fit(x, y, batch_size=4, epochs=1, validation_data=(x, y), callbacks=[live], verbose=0)
    for axes in live.figure.axes:
        for line in axes.lines:
            assert line.get_marker() not in ("", "None") and line.get_markersize() > 0
            assert line.get_xdata().tolist() == [1]
        assert axes.get_xlim() == (0.5, 1.5)
        visible = [tick for tick in axes.get_xticks() if 0.5 <= tick <= 1.5]
        assert visible == [1.0]                                    # not 0.95 .. 1.05
    assert live.figure.axes[0].get_title().startswith("loss (best val ")


def test_the_first_3_epochs_are_drawn_at_once_then_max_overhead_holds_draws_back(tmp_path, slow_draws):
    net, (x, y) = model(), data()
    live = CountingPlot(path=tmp_path / "curves.png", max_overhead=0.1)
    net.fit(x, y, batch_size=8, epochs=6, callbacks=[live], verbose=0)
    # Each draw takes 1 s of the fake clock: epochs 1-3 are drawn all the same; 4 and 5 come
    # within the 10 s that draw 3 bought; 6 is drawn when training ends.
    assert live.drawn == [1, 2, 3, 6]
    drawn = curves(live.figure)
    np.testing.assert_array_equal(drawn["loss", "train"][0], [1, 2, 3, 4, 5, 6])   # every epoch in the end
    np.testing.assert_array_equal(drawn["loss", "train"][1], net.history["loss"].to_numpy())


def test_every_epoch_is_drawn_without_max_overhead(tmp_path, slow_draws):
    live = CountingPlot(path=tmp_path / "curves.png", max_overhead=None)
    model().fit(*data(), batch_size=8, epochs=5, callbacks=[live], verbose=0)
    assert live.drawn == [1, 2, 3, 4, 5]


def test_a_second_fit_draws_its_first_3_epochs_at_once_too(tmp_path, slow_draws):
    net, (x, y) = model(), data()
    live = CountingPlot(path=tmp_path / "curves.png")
    net.fit(x, y, batch_size=8, epochs=5, callbacks=[live], verbose=0)
    net.fit(x, y, batch_size=8, epochs=5, callbacks=[live], verbose=0)
    assert live.drawn == [1, 2, 3, 5, 6, 7, 8, 10]


def interrupt_in_epoch_5():
    def on_epoch_begin(epoch, logs=None):
        if epoch == 4:
            raise KeyboardInterrupt("stopped in epoch 5")
    return kt.callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin)


def test_an_interrupt_redraws_every_finished_epoch(tmp_path, slow_draws):
    net, (x, y), path = model(), data(), tmp_path / "curves.png"
    live = CountingPlot(path=path)
    with pytest.raises(KeyboardInterrupt, match="stopped in epoch 5"):
        net.fit(x, y, batch_size=8, epochs=8, validation_data=(x, y), callbacks=[live, interrupt_in_epoch_5()],
                verbose=0)
    assert live.drawn == [1, 2, 3, 4]                              # epoch 4, held back, drawn on the way out
    drawn = curves(live.figure)
    for label in ("train", "validation"):
        np.testing.assert_array_equal(drawn["loss", label][0], [1, 2, 3, 4])
    assert path.read_bytes() == png_bytes(live.figure)             # the file shows them too
    assert os.listdir(tmp_path) == ["curves.png"]


def test_an_interrupt_with_every_epoch_drawn_draws_nothing_more(tmp_path):
    live = CountingPlot(path=tmp_path / "curves.png", max_overhead=None)
    with pytest.raises(KeyboardInterrupt):
        model().fit(*data(), batch_size=8, epochs=8, callbacks=[live, interrupt_in_epoch_5()], verbose=0)
    assert live.drawn == [1, 2, 3, 4]


def test_a_draw_failing_on_the_way_out_warns_and_the_fit_error_is_raised(tmp_path, slow_draws, monkeypatch):
    live = LivePlot(path=tmp_path / "curves.png")
    writes = []

    def write(path, data):
        writes.append(path)
        if len(writes) > 3:
            raise OSError("disk full")

    monkeypatch.setattr(live_plot, "_write_atomically", write)
    with pytest.warns(RuntimeWarning, match=re.escape("LivePlot could not draw the finished epochs while fit ended "
                                                      "with KeyboardInterrupt('stopped in epoch 5'): "
                                                      "OSError('disk full')")), \
            pytest.raises(KeyboardInterrupt, match="stopped in epoch 5"):
        model().fit(*data(), batch_size=8, epochs=8, callbacks=[live, interrupt_in_epoch_5()], verbose=0)
    assert len(writes) == 4


def test_the_png_fits_a_notebook_column(tmp_path):
    net, (x, y), path = model(), data(), tmp_path / "curves.png"
    net.fit(x, y, batch_size=8, epochs=2, validation_data=(x, y), callbacks=[LivePlot(path=path)], verbose=0)
    assert png_width(path.read_bytes()) <= 760


def test_the_lr_subplot_shows_only_when_a_scheduler_changes_the_lr(tmp_path):
    net, (x, y) = model(), data()
    constant, scheduled = LivePlot(path=tmp_path / "a.png"), LivePlot(path=tmp_path / "b.png")
    net.fit(x, y, batch_size=8, epochs=3, callbacks=[constant], verbose=0)
    assert subplots(constant.figure) == ["loss", "mae"]
    net = model()
    schedule = kt.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    net.fit(x, y, batch_size=8, epochs=3, callbacks=[schedule, scheduled], verbose=0)
    assert subplots(scheduled.figure) == ["loss", "mae", "lr"]
    np.testing.assert_allclose(curves(scheduled.figure)["lr", "lr"][1], [0.1, 0.05, 0.1 / 3])


def test_max_overhead_must_be_a_fraction():
    with pytest.raises(ValueError, match=r"`max_overhead` must be a fraction in \(0, 1\] or None"):
        LivePlot(path="curves.png", max_overhead=0)
