"""fit(validation_freq=N): epochs without validation log no val_* key, and the monitoring callbacks skip them.

The callbacks are driven directly with hand-made epoch logs: a validated epoch has val_* keys,
the others have none (what fit passes with ``validation_freq``).
"""
import os

import pytest
import torch

from kerastorch.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from kerastorch.callbacks.monitor import monitored_value, validated
from support import TinyNet

PARAMS = {"has_validation": True, "log_keys": ["loss", "val_loss", "lr"], "custom_logs": False,
          "validation_freq": 2}


def _logs(values):
    """Epoch logs: a float is a validated epoch's val_loss, None an epoch without validation."""
    return [{"loss": 1.0, "lr": 0.5} if v is None else {"loss": 1.0, "val_loss": v, "lr": 0.5} for v in values]


def _model(lr=1.0):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu", optimizer_kwargs={"lr": lr})
    return model


def _drive(cb, logs_seq, model=None, after_each=None):
    cb.set_model(model or _model())
    cb.set_params(dict(PARAMS))
    cb.on_train_begin({})
    cb.model.stop_training = False
    out = []
    for epoch, logs in enumerate(logs_seq):
        cb.on_epoch_end(epoch, dict(logs))
        cb.flush_writes()
        out.append(after_each(cb) if after_each else None)
        if cb.model.stop_training:
            break
    cb.on_train_end({})
    return out


def test_monitored_value_skips_only_epochs_without_validation():
    cb = EarlyStopping()
    assert validated({"val_loss": 1.0}) and not validated({"loss": 1.0})
    assert monitored_value("val_loss", {"loss": 1.0, "lr": 0.1}, cb) is None
    assert monitored_value("val_loss", {"val_loss": 0.5}, cb) == 0.5
    with pytest.raises(ValueError, match=r"monitors 'val_acc', which is not in the epoch logs\. "
                                         r"Available: loss, val_loss\."):
        monitored_value("val_acc", {"loss": 1.0, "val_loss": 0.5}, cb)  # a validated epoch lacks it: an error
    with pytest.raises(ValueError, match=r"monitors 'acc', which is not in the epoch logs"):
        monitored_value("acc", {"loss": 1.0}, cb)  # a non-val name keeps today's check


def test_early_stopping_counts_patience_in_validated_epochs_only(recwarn):
    cb = EarlyStopping(patience=2)
    # validated epochs (0-based): 1 (0.5), 3 (0.6), 5 (0.7): the wait reaches 2 at epoch 5
    _drive(cb, _logs([None, 0.5, None, 0.6, None, 0.7, None, 0.1]))
    assert cb.stopped and cb.stopped_epoch == 5 and cb.best == 0.5 and cb.best_epoch == 1 and cb.wait == 2
    assert len(recwarn) == 0  # skipped silently


def test_early_stopping_waits_through_unvalidated_epochs():
    cb = EarlyStopping(patience=1)
    waits = _drive(cb, _logs([None, 1.0, None, None, None, 0.5, None]), after_each=lambda c: c.wait)
    assert waits == [0, 0, 0, 0, 0, 0, 0] and not cb.stopped and cb.best == 0.5


def test_early_stopping_on_a_training_value_is_unchanged():
    cb = EarlyStopping(monitor="loss", patience=1)
    _drive(cb, _logs([None, 1.0, None]))
    assert cb.stopped and cb.stopped_epoch == 1  # loss is 1.0 every epoch


def test_reduce_lr_on_plateau_counts_validated_epochs_only():
    cb = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_delta=0.0)
    lrs = _drive(cb, _logs([None, 1.0, None, 1.0, None, 1.0, None, 1.0, None, 1.0]),
                 after_each=lambda c: c.model.optimizer.param_groups[0]["lr"])
    # Validated epochs 1, 3, 5, 7, 9 behave as 5 consecutive epochs with cooldown=2: reductions at 3 and 7.
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert cb.cooldown_counter == 1


def test_model_checkpoint_save_best_only_skips_unvalidated_epochs(tmp_path, recwarn):
    cb = ModelCheckpoint(tmp_path / "best-{epoch}.pt", save_best_only=True)
    files = _drive(cb, _logs([None, 0.5, None, 0.25, None, 0.75]), after_each=lambda c: sorted(os.listdir(tmp_path)))
    assert files == [[], ["best-2.pt"], ["best-2.pt"], ["best-2.pt", "best-4.pt"], ["best-2.pt", "best-4.pt"],
                     ["best-2.pt", "best-4.pt"]]
    assert cb.best == 0.25 and len(recwarn) == 0


def test_a_file_name_with_val_fields_is_written_on_validated_epochs_only(tmp_path):
    cb = ModelCheckpoint(tmp_path / "e{epoch}-{val_loss:.2f}.pt")
    _drive(cb, _logs([None, 0.5, None, 0.25]))
    assert sorted(os.listdir(tmp_path)) == ["e2-0.50.pt", "e4-0.25.pt"]
    cb = ModelCheckpoint(tmp_path / "every-{epoch}.pt")  # no val_* field: every epoch, as before
    _drive(cb, _logs([None, 0.5]))
    assert sorted(os.listdir(tmp_path))[-2:] == ["every-1.pt", "every-2.pt"]


def test_model_checkpoint_save_top_k_ranks_validated_epochs_only(tmp_path):
    cb = ModelCheckpoint(tmp_path / "e{epoch}.pt", save_top_k=1)
    _drive(cb, _logs([None, 0.5, None, 0.25, None, 0.75]))
    assert os.listdir(tmp_path) == ["e4.pt"] and cb.best_model_score == 0.25


def test_csv_logger_leaves_unlogged_cells_empty_with_the_known_columns(tmp_path):
    path = tmp_path / "log.csv"
    cb = CSVLogger(path)
    _drive(cb, _logs([None, 0.5, None]))
    assert path.read_text() == ("epoch,loss,val_loss,lr\n"
                                "1,1.0,,0.5\n"
                                "2,1.0,0.5,0.5\n"
                                "3,1.0,,0.5\n")


def test_csv_logger_with_a_custom_step_adds_val_twins_when_the_first_epoch_does_not_validate(tmp_path):
    path = tmp_path / "log.csv"
    cb = CSVLogger(path)
    cb.set_params({**PARAMS, "custom_logs": True})
    cb.on_train_begin({})
    cb.on_epoch_end(0, {"loss": 1.0, "l1": 2.0, "lr": 0.5})
    cb.on_epoch_end(1, {"loss": 1.0, "l1": 2.0, "val_loss": 0.5, "val_l1": 3.0, "lr": 0.5})
    cb.on_train_end({})
    assert path.read_text() == ("epoch,loss,l1,val_loss,val_l1,lr\n"
                                "1,1.0,2.0,,,0.5\n"
                                "2,1.0,2.0,0.5,3.0,0.5\n")
