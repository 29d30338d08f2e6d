"""Keras parity: BackupAndRestore (keras/src/callbacks/backup_and_restore_test.py)."""
import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import BackupAndRestore, Callback


class Interrupting(Callback):
    """Keras's InterruptingCallback: raise after ``steps_int`` batches or ``epoch_int`` epochs."""

    def __init__(self, steps_int=None, epoch_int=None):
        super().__init__()
        self.batch_count = self.epoch_count = 0
        self.steps_int, self.epoch_int = steps_int, epoch_int

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_count += 1
        if self.epoch_count == self.epoch_int:
            raise RuntimeError("EpochInterruption")

    def on_batch_end(self, batch, logs=None):
        self.batch_count += 1
        if self.batch_count == self.steps_int:
            raise RuntimeError("StepsInterruption")


class Canary(kt.Model):
    """Keras's CanaryLayer + Dense(1): a non-trainable counter of training forward passes."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1)
        self.register_buffer("counter", torch.zeros(()))

    def forward(self, x):
        if self.training:
            self.counter += 1
        return self.fc(x)


def _model():
    torch.manual_seed(0)
    model = Canary()
    model.compile("sgd", "mse", ["mse"], device="cpu")
    return model


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(10, 3, generator=g), torch.rand(10, 1, generator=g)  # 3 batches of 4


@pytest.mark.parametrize("save_freq", ["batch", 0.15])
def test_save_freq_unknown_error(save_freq):
    """keras/src/callbacks/backup_and_restore_test.py::BackupAndRestoreCallbackTest::test_save_freq_unknown_error"""
    with pytest.raises(ValueError, match="`save_freq` must be 'epoch' or a positive integer"):
        BackupAndRestore(backup_dir="backup_dir", save_freq=save_freq)


def test_best_case_step(tmp_path):
    """keras/src/callbacks/backup_and_restore_test.py::BackupAndRestoreCallbackTest::test_best_case_step

    Deliberate difference: exact mid-epoch resume. Keras restarts the interrupted epoch from its first
    batch (its counter ends at 17: 2 before the crash, then 5 x 3); kerastorch continues after the last
    backed-up batch, so every batch of the 5 epochs runs exactly once in the weights it ends with (15).
    """
    backup_dir = tmp_path / "subdir"
    x, y = _data()
    model, cbk = _model(), BackupAndRestore(backup_dir, save_freq=1)
    with pytest.raises(RuntimeError, match="StepsInterruption"):
        model.fit(x, y, batch_size=4, callbacks=[cbk, Interrupting(steps_int=2)], epochs=2, verbose=0)
    assert backup_dir.exists() and int(model.counter) == 2
    history = model.fit(x, y, batch_size=4, callbacks=[cbk], epochs=5, verbose=0)
    assert history["epoch"].iloc[-1] == 5 and int(model.counter) == 15


def test_best_case_epoch(tmp_path):
    """keras/src/callbacks/backup_and_restore_test.py::BackupAndRestoreCallbackTest::test_best_case_epoch"""
    backup_dir = tmp_path / "subdir"
    x, y = _data()
    model, cbk = _model(), BackupAndRestore(backup_dir=backup_dir, save_freq="epoch")
    with pytest.raises(RuntimeError, match="EpochInterruption"):
        model.fit(x, y, batch_size=4, callbacks=[cbk, Interrupting(epoch_int=2)], epochs=6, verbose=0)
    assert backup_dir.exists() and int(model.counter) == 6
    history = model.fit(x, y, batch_size=4, callbacks=[cbk], epochs=5, verbose=0)
    assert history["epoch"].iloc[-1] == 5 and int(model.counter) == 5 * 3


def test_backup_corrupted(tmp_path):
    """keras/src/callbacks/backup_and_restore_test.py::BackupAndRestoreCallbackTest::test_backup_corrupted"""
    backup_dir = tmp_path / "subdir"
    x, y = _data()
    model, cbk = _model(), BackupAndRestore(backup_dir=backup_dir, save_freq="epoch", double_checkpoint=True)
    with pytest.raises(RuntimeError, match="EpochInterruption"):
        model.fit(x, y, batch_size=4, callbacks=[cbk, Interrupting(epoch_int=2)], epochs=6, verbose=0)
    assert (backup_dir / "backup.pt").exists() and (backup_dir / "backup.prev.pt").exists()
    assert int(model.counter) == 6
    (backup_dir / "backup.pt").write_text("0")  # corrupt the latest backup
    with pytest.warns(UserWarning, match="resuming from the previous one"):
        history = model.fit(x, y, batch_size=4, callbacks=[cbk], epochs=5, verbose=0)
    assert history["epoch"].iloc[-1] == 5 and int(model.counter) == 5 * 3


def test_model_deleted_case_epoch(tmp_path):
    """keras/src/callbacks/backup_and_restore_test.py::BackupAndRestoreCallbackTest::test_model_deleted_case_epoch"""
    backup_dir = tmp_path / "subdir"
    x, y = _data()
    _model().fit(x, y, batch_size=4, callbacks=[BackupAndRestore(backup_dir, save_freq="epoch")], epochs=2,
                 verbose=0)
    assert not backup_dir.exists()


@pytest.mark.parametrize("backup_dir", ["", None])
def test_backup_dir_empty_error(backup_dir):
    """keras/src/callbacks/backup_and_restore_test.py::BackupAndRestoreCallbackTest::test_backup_dir_empty_error
    (and test_backup_dir_none_error)"""
    with pytest.raises(ValueError, match="`backup_dir` must be a non-empty folder path"):
        BackupAndRestore(backup_dir=backup_dir, save_freq="epoch")
