"""Keras parity: CSVLogger (keras/src/callbacks/csv_logger_test.py)."""
import csv
import math

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import CSVLogger, TerminateOnNaN
from support import exploding_model


def _model():
    torch.manual_seed(1337)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1)))
    model.compile("sgd", "mse", ["mse"], device="cpu")
    return model


def _data():
    g = torch.Generator().manual_seed(1337)
    return [torch.rand(10, d, generator=g) for d in (3, 1, 3, 1)]


def test_csv_logger(tmp_path):
    """keras/src/callbacks/csv_logger_test.py::CSVLoggerTest::test_CSVLogger, cases 1 to 3.

    Keras's rows have 5 columns (epoch, loss, mse, val_loss, val_mse); kerastorch's add ``lr``, logged
    every epoch, so each line holds 5 separators where Keras's hold 4.
    """
    x, y, x_val, y_val = _data()
    path, sep = tmp_path / "log.tsv", "\t"
    _model().fit(x, y, batch_size=4, validation_data=(x_val, y_val), callbacks=[CSVLogger(path, separator=sep)],
                 epochs=1, verbose=0)
    assert csv.Sniffer().sniff(path.read_text()).delimiter == sep
    model, cbks = _model(), [CSVLogger(path, separator=sep, append=True)]
    model.fit(x, y, batch_size=4, validation_data=(x_val, y_val), callbacks=cbks, epochs=1, verbose=0)
    model.fit(x, y, batch_size=4, validation_data=(x_val, y_val), callbacks=cbks, epochs=2, verbose=0)  # reuse
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and all(line.count(sep) == 5 for line in lines)
    assert " ".join(lines).count("epoch") == 1
    assert [line.split(sep)[0] for line in lines] == ["epoch", "1", "1", "2", "3"]  # the history's numbers


def test_csv_logger_with_validation_freq(tmp_path):
    """keras/src/callbacks/csv_logger_test.py::CSVLoggerTest::test_CSVLogger, case 3 (validation_freq=3).

    The val_loss column is there from the first row and filled on validated epochs only. Keras writes
    ``NA`` in the other rows; kerastorch leaves the cell empty (pandas reads both as NaN).
    """
    x, y, x_val, y_val = _data()
    path = tmp_path / "log.csv"
    history = _model().fit(x, y, batch_size=4, validation_data=(x_val, y_val), validation_freq=3, epochs=5,
                           verbose=0, callbacks=[CSVLogger(path)])
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["val_loss"] for row in rows] == ["", "", str(history["val_loss"].iloc[2]), "", ""]


def test_stop_training_csv(tmp_path):
    """keras/src/callbacks/csv_logger_test.py::CSVLoggerTest::test_stop_training_csv"""
    model, (x, y) = exploding_model()
    path = tmp_path / "csv_logger.csv"
    with pytest.warns(RuntimeWarning):
        history = model.fit(x, y, batch_size=4, validation_data=(x, y), epochs=20, verbose=0,
                            callbacks=[TerminateOnNaN(), CSVLogger(path)])
    assert len(history) == 1 and not math.isfinite(history["loss"].iloc[0])
    assert path.exists(), "the non-finite epoch's row was not written"
    with open(path, newline="") as file:
        values = [row for row in csv.reader(file) if row]
    assert any(cell in ("nan", "inf") for cell in values[-1]), "NaN not logged in CSVLogger."
