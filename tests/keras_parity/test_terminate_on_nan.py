"""Keras parity: TerminateOnNaN (keras/src/callbacks/terminate_on_nan_test.py).

kerastorch checks the epoch logs, never per batch (no host sync per step), and fit itself stops at an
epoch whose loss went non-finite; that epoch still reaches ``on_epoch_end`` (so TerminateOnNaN(raise_error=True)
sees it, as Keras's batch check does).
"""
import math
import os

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import BackupAndRestore, Callback, TerminateOnNaN
from support import exploding_model


def _tiny(x, y, **fit_kwargs):
    """Keras's Sequential([Dense(1, input_shape=(1,))]) with sgd and mse."""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(1, 1))
    model.compile("sgd", "mse", device="cpu")
    with pytest.warns(UserWarning):  # kerastorch warns about the inf targets before training
        return model, model.fit(torch.tensor(x), torch.tensor(y), verbose=0, **fit_kwargs)


def test_terminate_on_nan():
    """keras/src/callbacks/terminate_on_nan_test.py::TerminateOnNaNTest::test_TerminateOnNaN"""
    model, (x, y) = exploding_model()
    with pytest.warns(RuntimeWarning, match="Non-finite training loss at epoch 1"):
        history = model.fit(x, y, batch_size=4, validation_data=(x, y), callbacks=[TerminateOnNaN()], epochs=20,
                            verbose=0)
    assert len(history) == 1 and not math.isfinite(history["loss"].iloc[0])


def test_terminate_on_nan_graceful_stop():
    """keras/src/callbacks/terminate_on_nan_test.py::TerminateOnNaNTest::test_terminate_on_nan_graceful_stop"""
    with pytest.warns(RuntimeWarning, match="Non-finite training loss"):
        _, history = _tiny([[1.0], [2.0]], [[math.inf], [math.inf]], epochs=2, batch_size=1,
                           callbacks=[TerminateOnNaN(raise_error=False)])
    assert len(history) < 4


def test_terminate_on_nan_raise_error_raises_error():
    """keras/src/callbacks/terminate_on_nan_test.py::TerminateOnNaNTest::test_terminate_on_nan_raise_error_raises_error"""
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered"), pytest.warns(RuntimeWarning):
        _tiny([[1.0], [2.0]], [[math.inf], [math.inf]], epochs=1, batch_size=1,
              callbacks=[TerminateOnNaN(raise_error=True)])


class Tracking(Callback):
    def __init__(self):
        super().__init__()
        self.train_end_called = False

    def on_train_end(self, logs=None):
        self.train_end_called = True


def test_raise_error_terminate_does_not_trigger_on_train_end():
    """keras/src/callbacks/terminate_on_nan_test.py::TerminateOnNaNTest::
    test_raise_error_terminate_does_not_trigger_on_train_end"""
    tracking = Tracking()
    with pytest.raises(RuntimeError), pytest.warns(RuntimeWarning):
        _tiny([[1.0]], [[math.inf]], epochs=1, callbacks=[tracking, TerminateOnNaN(raise_error=True)])
    assert not tracking.train_end_called


def test_raise_error_terminate_preserves_backup(tmp_path):
    """keras/src/callbacks/terminate_on_nan_test.py::TerminateOnNaNTest::test_raise_error_terminate_preserves_backup"""
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    (backup_dir / "checkpoint.txt").write_text("dummy checkpoint")
    with pytest.raises(RuntimeError), pytest.warns(RuntimeWarning):
        _tiny([[1.0]], [[math.inf]], epochs=1,
              callbacks=[BackupAndRestore(backup_dir), TerminateOnNaN(raise_error=True)])
    assert os.path.exists(backup_dir / "checkpoint.txt")


@pytest.mark.parametrize("raise_error", [False, True])
def test_normal_training_does_not_raise(raise_error):
    """keras/src/callbacks/terminate_on_nan_test.py::TerminateOnNaNTest::test_normal_training_does_not_raise"""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(1, 1))
    model.compile("sgd", "mse", device="cpu")
    history = model.fit(torch.tensor([[1.0], [2.0]]), torch.tensor([[1.0], [2.0]]), epochs=2, verbose=0,
                        callbacks=[TerminateOnNaN(raise_error=raise_error)])
    assert len(history) == 2


def test_raise_error_terminate_stops_on_later_batch():
    """keras/src/callbacks/terminate_on_nan_test.py::TerminateOnNaNTest::
    test_raise_error_terminate_stops_on_later_batch"""
    with pytest.raises(RuntimeError) as raised, pytest.warns(RuntimeWarning):
        _tiny([[1.0], [2.0]], [[1.0], [math.inf]], epochs=1, batch_size=1, shuffle=False,
              callbacks=[TerminateOnNaN(raise_error=True)])
    assert "batch 1" in str(raised.value)
