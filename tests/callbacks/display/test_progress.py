"""The progress bar: ends at its true count, never failed on success, closed on errors, plain when redirected."""
import os
import signal
import sys
import warnings

import pytest
import torch
from tqdm.std import tqdm as text_tqdm

from kerastorch.callbacks import Callback
from kerastorch.callbacks.display import progress
from support import TinyNet

CLOSED = []


class RecordingBar(text_tqdm):
    """A text bar that records (desc, n, total) when it closes."""

    def close(self):
        if not self.disable:
            CLOSED.append((self.desc, self.n, self.total))
        super().close()


def use_output_mode(monkeypatch, mode):
    """Make every kerastorch module that imported output_mode (the bar, fit's choice of printers) see ``mode``."""
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("kerastorch.") and hasattr(module, "output_mode"):
            monkeypatch.setattr(module, "output_mode", lambda: mode)


@pytest.fixture
def bars(monkeypatch):
    CLOSED.clear()
    use_output_mode(monkeypatch, "terminal")
    monkeypatch.setattr(progress, "_bar_class", lambda mode: RecordingBar)
    return CLOSED


def model_and_data(n=40):
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    return model, torch.randn(n, 2), torch.randn(n, 1)


def test_every_bar_ends_at_its_total(bars, capsys):
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y))
    model.evaluate(x, y, batch_size=8, verbose=1)
    model.predict(x, batch_size=8, verbose=1)
    assert bars == [("Epoch 1/2", 10, 10), ("Epoch 2/2", 10, 10), ("Evaluate", 5, 5), ("Predict", 5, 5)]
    assert capsys.readouterr().err == ""  # the bar writes to stdout, like the table


def test_an_epoch_ended_early_on_purpose_is_a_finished_bar(bars):
    class StopAtBatch3(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True

    model, x, y = model_and_data()
    model.fit(x, y, batch_size=4, epochs=3, callbacks=[StopAtBatch3()])
    assert bars == [("Epoch 1/3", 3, 3)]  # total lowered to the count: no "failed" bar in notebooks


def test_an_error_closes_the_bar_where_it_stopped(bars):
    class Boom(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 4:
                raise RuntimeError("boom")

    model, x, y = model_and_data()
    with pytest.raises(RuntimeError, match="^boom$"):
        model.fit(x, y, batch_size=4, epochs=2, callbacks=[Boom()])
    assert len(bars) == 1 and bars[0][0] == "Epoch 1/2" and bars[0][2] == 10  # closed, not as finished


def test_an_interrupted_bar_closes_at_the_batch_the_message_names(bars):
    class Interrupt(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 4:
                os.kill(os.getpid(), signal.SIGINT)

    model, x, y = model_and_data()
    with pytest.raises(KeyboardInterrupt, match=r"^Training interrupted in epoch 1, batch 5 of 10;"):
        model.fit(x, y, batch_size=4, epochs=2, callbacks=[Interrupt()])
    assert bars == [("Epoch 1/2", 5, 10)]  # the true count, not the last refresh's; below the total: failed


def test_terminal_values_are_whole_pairs_that_fit_beside_the_bar():
    pairs = ["loss=0.1234", "accuracy=0.9000", "mae=0.5000"]
    assert progress.fit_pairs(pairs, None) == "loss=0.1234, accuracy=0.9000, mae=0.5000"
    assert progress.fit_pairs(pairs, 45) == "loss=0.1234, accuracy=0.9000, mae=0.5000"  # 13 + 17 + 12 + 2 spare
    assert progress.fit_pairs(pairs, 28) == "loss=0.1234, mae=0.5000"  # accuracy left out whole
    assert progress.fit_pairs(pairs, 11) == ""
    narrow = progress.text_bar_format("Epoch 1/2", 875, 78, wanted=200)
    assert "{bar:20}" in narrow and "rate" not in narrow  # the bar keeps 20 characters; the rate makes room
    wide = progress.text_bar_format("Epoch 1/2", 875, 158, wanted=25)
    line = text_tqdm.format_meter(875, 875, 59, prefix="Epoch 1/2", bar_format=wide, unit="step",
                                  postfix="loss=0.1234, mae=0.5000")
    assert len(line) == 158  # the bar takes what the counters and the expected values leave


def test_epoch_bars_number_epochs_as_the_history(bars):
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=20, epochs=2, verbose=0)
    model.fit(x, y, batch_size=20, epochs=1)
    assert bars == [("Epoch 3/3", 2, 2)]


def test_no_bar_when_stdout_is_redirected(monkeypatch, capsys):
    opened = []
    monkeypatch.setattr(progress, "_bar_class", lambda mode: opened.append(mode))
    model, x, y = model_and_data()
    model.evaluate(x, y, verbose=1)
    assert opened == [] and capsys.readouterr().out == ""  # capsys is not a terminal


def test_notebook_without_ipywidgets_gets_a_text_bar_and_no_warning(monkeypatch):
    monkeypatch.setattr(progress, "has_widgets", lambda: False)
    assert progress._bar_class("notebook") is text_tqdm
    monkeypatch.setattr(progress, "output_mode", lambda: "notebook")
    model, x, y = model_and_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a TqdmWarning would fail here
        model.evaluate(x, y, verbose=1)


def test_notebook_with_ipywidgets_gets_the_widget_bar(monkeypatch):
    from tqdm.notebook import tqdm as notebook_tqdm
    monkeypatch.setattr(progress, "has_widgets", lambda: True)
    assert progress._bar_class("notebook") is notebook_tqdm


def test_a_notebook_fit_keeps_one_bar_reset_each_epoch_and_finished_at_the_end(bars, monkeypatch):
    use_output_mode(monkeypatch, "notebook")
    opened = []
    monkeypatch.setattr(progress, "_bar_class", lambda mode: opened.append(mode) or RecordingBar)
    monkeypatch.setattr("kerastorch.callbacks.display.epoch_table.in_notebook", lambda: False)
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=4, epochs=3)
    assert opened == ["notebook"]  # one widget for the whole fit
    assert bars == [("Epoch 3/3", 10, 10)]  # closed once, at its full count: a green bar


def test_a_notebook_bar_leaves_its_final_line_as_the_saved_fallback(monkeypatch):
    from tqdm.notebook import tqdm as notebook_tqdm
    shown, updates = [], []

    class Handle:
        def update(self, data, raw=False):
            updates.append((data, raw))

    def display(obj, raw=False, display_id=False):
        shown.append((obj, raw, display_id))
        return Handle()

    import IPython.display
    monkeypatch.setattr(IPython.display, "display", display)
    use_output_mode(monkeypatch, "notebook")
    monkeypatch.setattr(progress, "_bar_class", lambda mode: notebook_tqdm)
    monkeypatch.setattr("kerastorch.callbacks.display.epoch_table.in_notebook", lambda: False)
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=4, epochs=2, plot=False)
    [(first, raw, display_id)] = shown  # one widget for the fit, shown with a display id
    assert raw and display_id is True and "0/10" in first["text/plain"]
    [(final, raw)] = updates  # replaced once, when the bar closed
    widget = "application/vnd.jupyter.widget-view+json"
    assert raw and final[widget] == first[widget]  # live viewers keep the widget
    assert final["text/plain"].startswith("Epoch 2/2: 100%|") and " 10/10 [" in final["text/plain"]
    assert final["text/html"].startswith('<div class="kerastorch-progress">Epoch 2/2: 100% <progress value="10" '
                                         'max="10"></progress> 10/10 [')
