"""Printed output: plain lines when redirected, verbose=2 lines, the torchkeras form, silence, epoch numbers, Ctrl-C."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest
import torch
from torch import nn

from kerastorch.callbacks import Callback, EpochTable
from support import TinyNet

REPO = Path(__file__).parents[3]


def fixed_model(loss="mse", metrics=None):
    """Weights zero and lr 0: output 0 for every input, so logged values are known exactly."""
    model = TinyNet()
    nn.init.zeros_(model.fc.weight)
    nn.init.zeros_(model.fc.bias)
    model.compile("sgd", loss, metrics, optimizer_kwargs={"lr": 0.0}, device="cpu")
    return model


def data():
    x = torch.randn(10, 2)
    y = torch.tensor([1., 0, 1, 1, 0, 1, 1, 0, 1, 1]).reshape(10, 1)  # 7 ones
    return x, y


def test_redirected_verbose_1_writes_one_plain_line_per_epoch_and_no_carriage_return(tmp_path):
    script = textwrap.dedent("""
        import torch, kerastorch as kt
        from torch import nn
        net = kt.Model.wrap(nn.Linear(2, 1)); nn.init.zeros_(net.weight); nn.init.zeros_(net.bias)
        net.compile("sgd", "mse", ["mae"], optimizer_kwargs={"lr": 0.0}, device="cpu")
        x, y = torch.randn(64, 2), torch.ones(64, 1)
        net.fit(x, y, batch_size=4, epochs=3, validation_data=(x, y))
        net.evaluate(x, y, verbose=1); net.predict(x, verbose=1)
    """)
    log = tmp_path / "train.log"
    with open(log, "wb") as out:  # what nohup / CI / SLURM do: stdout and stderr into a file
        subprocess.run([sys.executable, "-c", script], stdout=out, stderr=subprocess.STDOUT, check=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    text = log.read_bytes().decode()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"Epoch {epoch}/3 - \d+\.\ds - loss: 1\.0000 - mae: 1\.0000 - val_loss: 1\.0000 - "
                            r"val_mae: 1\.0000 - lr: 0", line), line


def test_verbose_2_prints_one_line_per_epoch(capsys):
    x, y = data()
    fixed_model().fit(x, y, batch_size=4, epochs=2, verbose=2)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2 and captured.err == ""
    assert re.fullmatch(r"Epoch 2/2 - \d+\.\ds - loss: 0\.7000 - lr: 0", lines[1])


def test_a_second_fit_numbers_epochs_on_in_the_history_and_the_output(capsys):
    x, y = data()
    model = fixed_model()
    model.fit(x, y, batch_size=4, epochs=2, verbose=2)
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=2)
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2", "Epoch 3/5", "Epoch 4/5",
                                                        "Epoch 5/5"]


def test_keras_continuation_with_initial_epoch_numbers_like_one_run():
    x, y = data()
    model = fixed_model()
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    model.fit(x, y, batch_size=4, epochs=5, initial_epoch=2, verbose=0)
    assert model.history["epoch"].tolist() == [1, 2, 3, 4, 5]
    fresh = fixed_model()
    fresh.fit(x, y, batch_size=4, epochs=4, initial_epoch=2, verbose=0)
    assert fresh.history["epoch"].tolist() == [3, 4]


def test_verbose_0_is_silent(capsys):
    x, y = data()
    model = fixed_model(metrics=["accuracy"])
    model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), verbose=0)
    model.evaluate(x, y)
    model.predict(x)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_seed_form_output_and_columns(capsys):
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    model = fixed_model()
    history = model.fit(2, loader, dl_val=loader, log_step_freq=2)
    out = capsys.readouterr().out
    assert list(history.columns) == ["loss", "val_loss"]  # torchkeras: no epoch or lr column
    assert "Start Training ..." in out and "Finished Training..." in out
    # Running epoch means of (0 - y)^2: first 4 targets 1,0,1,1 -> 0.75; first 8 -> 5/8.
    assert out.count("{'step': 2, 'loss': 0.75}") == 2
    assert out.count("{'step': 4, 'loss': 0.625}") == 2
    assert "| epoch |  loss | val_loss |" in out and "|   2   | 0.700 |  0.700   |" in out


def test_the_epoch_table_shows_each_epochs_time_and_the_history_has_none(capsys):
    x, y = data()
    model = fixed_model()
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[EpochTable(columns=200)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "|  epoch |  time |   loss |     lr |"
    assert [re.fullmatch(r"\|      \d \| +\d+\.\ds \| 0\.7000 \|      0 \|", line) is not None
            for line in lines[3:5]] == [True, True]
    assert list(history.columns) == ["epoch", "loss", "lr"]


class InterruptAtBatch2(Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_traceback_is_the_callers_frames_and_the_message():
    x, y = data()
    with pytest.raises(KeyboardInterrupt, match=r"^Training interrupted in epoch 1, batch 2 of 3;") as caught:
        fixed_model().fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[InterruptAtBatch2()])
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert frames[0].name == "test_ctrl_c_traceback_is_the_callers_frames_and_the_message"
    assert [f.name for f in frames if f.filename.endswith(("engine/fit.py", "engine/signals.py"))] == []
    assert len(frames) <= 3  # the caller, Model.fit and its guard: not the batch loop
    assert caught.value.__suppress_context__


def test_a_keyboard_interrupt_raised_by_a_callback_keeps_its_traceback():
    class Raise(Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise KeyboardInterrupt("mine")

    x, y = data()
    with pytest.raises(KeyboardInterrupt, match="^mine$") as caught:
        fixed_model().fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[Raise()])
    assert "on_train_batch_end" in [f.name for f in traceback.extract_tb(caught.value.__traceback__)]
