"""ModelCheckpoint and BackupAndRestore: documented arguments with exact expected files and values."""
import os

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import BackupAndRestore, Callback, ModelCheckpoint


class Scripted(Callback):
    """Overwrite the epoch logs with scripted values (runs before the checkpoint callback)."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


def model():
    torch.manual_seed(0)
    net = kt.Model.wrap(nn.Linear(2, 1))
    net.compile("sgd", "mse", ["mae"], optimizer_kwargs={"lr": 0.01}, device="cpu")
    return net


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 2, generator=g), torch.randn(12, 1, generator=g)


def test_filename_template_uses_epoch_and_logs(tmp_path):
    x, y = data()
    template = str(tmp_path / "epoch{epoch:02d}-{val_loss:.3f}.pt")
    net = model()
    net.fit(x, y, epochs=3, validation_data=(x, y), verbose=0,
            callbacks=[Scripted("val_loss", [0.5, 0.25, 0.125]), ModelCheckpoint(template)])
    assert sorted(os.listdir(tmp_path)) == ["epoch01-0.500.pt", "epoch02-0.250.pt", "epoch03-0.125.pt"]
    saved = torch.load(tmp_path / "epoch03-0.125.pt", weights_only=True)
    assert list(saved) == ["weight", "bias"] and torch.equal(saved["weight"], net.weight)


def test_save_best_only_with_mode_max_keeps_the_best_epoch(tmp_path):
    x, y = data()
    snapshots = {}

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots[epoch] = self.model.weight.detach().clone()

    path = tmp_path / "best.pt"
    cb = ModelCheckpoint(path, monitor="val_mae", mode="max", save_best_only=True)
    model().fit(x, y, epochs=4, validation_data=(x, y), verbose=0,
                callbacks=[Scripted("val_mae", [0.1, 0.3, 0.2, 0.25]), cb, Snap()])
    assert torch.equal(torch.load(path, weights_only=True)["weight"], snapshots[1])
    assert cb.best == 0.3


def test_auto_mode_and_missing_monitor(tmp_path):
    assert ModelCheckpoint(tmp_path / "a.pt", monitor="val_acc").mode == "max"
    assert ModelCheckpoint(tmp_path / "a.pt", monitor="val_loss").mode == "min"
    x, y = data()
    with pytest.raises(ValueError, match="val_loss"):
        model().fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "a.pt", save_best_only=True)])


def test_save_freq_in_batches_writes_full_mid_epoch_checkpoints(tmp_path):
    x, y = data()
    cb = ModelCheckpoint(tmp_path / "step.pt", save_weights_only=False, save_freq=2)
    model().fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[cb])  # 3 batches/epoch, 6 in all
    checkpoint = kt.checkpointing.safe_load(tmp_path / "step.pt")
    assert checkpoint["format"] == "kerastorch.training_checkpoint"
    assert (checkpoint["epoch"], checkpoint["batch"], checkpoint["global_step"]) == (1, 3, 6)
    assert len(checkpoint["history"]) == 1  # the second epoch's row is not finished at its last batch


def test_bad_save_freq_and_unknown_template_field(tmp_path):
    with pytest.raises(ValueError, match="`save_freq` must be 'epoch' or a positive integer"):
        ModelCheckpoint(tmp_path / "a.pt", save_freq=0)
    x, y = data()
    with pytest.raises(ValueError, match=r"uses \{val_acc\}, but fit has no validation data"):  # before training
        model().fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "{val_acc}.pt"))])


def test_verbose_prints_the_saved_path(tmp_path, capsys):
    x, y = data()
    model().fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "w.pt", verbose=1)])
    assert capsys.readouterr().out == f"ModelCheckpoint: saved {tmp_path / 'w.pt'}\n"


def test_backup_is_deleted_after_success_unless_asked_to_keep(tmp_path):
    x, y = data()
    model().fit(x, y, epochs=2, verbose=0, callbacks=[BackupAndRestore(tmp_path / "a")])
    assert not (tmp_path / "a").exists()  # the backup and its emptied folder, as Keras
    model().fit(x, y, epochs=2, verbose=0, callbacks=[BackupAndRestore(tmp_path / "b", delete_checkpoint=False)])
    kept = kt.checkpointing.safe_load(tmp_path / "b" / "backup.pt")
    assert kept["epoch"] == 2 and kept["batch"] == 0 and len(kept["history"]) == 2


def test_backup_resume_continues_history_in_the_same_process(tmp_path):
    x, y = data()
    first = model()
    first.fit(x, y, epochs=2, verbose=0, callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False)])
    second = model()
    history = second.fit(x, y, epochs=4, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history.iloc[:2].equals(first.history)


def test_epoch_savers_stay_out_of_the_per_batch_table(tmp_path):
    from kerastorch.callbacks import CallbackList
    table = CallbackList([ModelCheckpoint(tmp_path / "a.pt"), BackupAndRestore(tmp_path / "b"),
                          ModelCheckpoint(tmp_path / "c.pt", save_freq=5)])
    assert len(table.on_train_batch_end) == 1 and len(table.on_epoch_end) == 3


class Interrupt(Callback):
    """Raise at the end of the given 0-based epoch, as a crash would end the fit."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("interrupted")


def test_double_checkpoint_falls_back_to_the_previous_backup(tmp_path):
    x, y = data()
    backup = BackupAndRestore(tmp_path, double_checkpoint=True)
    first = model()
    with pytest.raises(RuntimeError, match="interrupted"):
        first.fit(x, y, epochs=4, verbose=0, callbacks=[backup, Interrupt(at=1)])
    assert sorted(os.listdir(tmp_path)) == ["backup.prev.pt", "backup.pt"]
    assert kt.checkpointing.safe_load(tmp_path / "backup.prev.pt")["global_step"] == 1  # epoch 1's (1 batch)
    (tmp_path / "backup.pt").write_bytes(b"0")  # the latest backup is unreadable
    second = model()
    with pytest.warns(UserWarning, match="the latest backup .* is missing or unreadable; resuming from the previous"):
        history = second.fit(x, y, epochs=4, verbose=0, callbacks=[backup])
    assert history["epoch"].tolist() == [1, 2, 3, 4] and history.iloc[:1].equals(first.history.iloc[:1])
    assert not tmp_path.exists()  # both backups and the emptied folder are gone after the finished fit


def test_a_backup_folder_holding_other_files_is_kept_with_them(tmp_path):
    x, y = data()
    (tmp_path / "notes.txt").write_text("mine")
    model().fit(x, y, epochs=1, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("backup_dir", ["", None])
def test_an_empty_backup_dir_is_refused(backup_dir):
    with pytest.raises(ValueError, match=f"`backup_dir` must be a non-empty folder path, e.g. 'backup'. "
                                         f"Received: backup_dir={backup_dir!r}"):
        BackupAndRestore(backup_dir)


def test_initial_value_threshold_checks(tmp_path):
    with pytest.raises(TypeError, match="`initial_value_threshold` must be a number or None. Received: "
                                        "initial_value_threshold='0.5'"):
        ModelCheckpoint(tmp_path / "a.pt", initial_value_threshold="0.5")
    with pytest.raises(ValueError, match="`initial_value_threshold` must not be NaN"):
        ModelCheckpoint(tmp_path / "a.pt", initial_value_threshold=float("nan"))
    assert ModelCheckpoint(tmp_path / "a.pt", initial_value_threshold=1).best == 1.0


def test_the_threshold_also_bounds_save_top_k(tmp_path):
    x, y = data()
    cb = ModelCheckpoint(tmp_path / "e{epoch}.pt", save_top_k=2, initial_value_threshold=0.3)
    model().fit(x, y, epochs=4, validation_data=(x, y), verbose=0,
                callbacks=[Scripted("val_loss", [0.5, 0.25, 0.3, 0.125]), cb])
    assert sorted(os.listdir(tmp_path)) == ["e2.pt", "e4.pt"]  # 0.5 and 0.3 do not beat 0.3


def test_the_batch_field_needs_mid_epoch_saves(tmp_path):
    x, y = data()
    with pytest.raises(ValueError, match=r"uses \{batch\}, which only mid-epoch saves know\. Pass "
                                         r"save_freq=<number of batches>, or drop \{batch\} from the name\."):
        model().fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "e{epoch}b{batch}.pt"))])
    assert os.listdir(tmp_path) == []
