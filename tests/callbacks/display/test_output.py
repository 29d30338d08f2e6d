"""Printed output: the epoch table (golden file), one-line mode, seed mode, silence."""
import re
from pathlib import Path

import torch
from torch import nn

from support import TinyNet

GOLDEN = Path(__file__).parents[2] / "golden"


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


def test_epoch_table_golden(capsys):
    x, y = data()
    fixed_model(metrics={"mae": "mae"}).fit(x, y, batch_size=4, epochs=3, validation_data=(x, y), verbose=1)
    out = capsys.readouterr().out
    assert out == (GOLDEN / "epoch_table.txt").read_text()


def test_verbose_2_prints_one_line_per_epoch(capsys):
    x, y = data()
    fixed_model().fit(x, y, batch_size=4, epochs=2, verbose=2)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2 and captured.err == ""
    assert re.fullmatch(r"Epoch 2/2 - \d+\.\ds - loss: 0\.7000 - lr: 0", lines[1])


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
