"""Keras parity: ModelCheckpoint (keras/src/callbacks/model_checkpoint_test.py::test_model_checkpoint_options)."""
import os

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import ModelCheckpoint


def _fit(callback, epochs=1, batch_size=5, loss="cross_entropy", metrics=("acc",), classes=3):
    """30 training and 30 validation samples of 3 features, as Keras's test data."""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, classes)))
    model.compile("sgd", loss, list(metrics), device="cpu")
    g = torch.Generator().manual_seed(42)
    x, x_val = torch.rand(30, 3, generator=g), torch.rand(30, 3, generator=g)
    if classes == 1:
        y, y_val = (torch.rand(30, 1, generator=g) > 0.5).float(), (torch.rand(30, 1, generator=g) > 0.5).float()
    else:
        y, y_val = torch.randint(0, classes, (30,), generator=g), torch.randint(0, classes, (30,), generator=g)
    model.fit(x, y, batch_size=batch_size, validation_data=(x_val, y_val), callbacks=[callback], epochs=epochs,
              verbose=0)
    return model


def test_integer_save_freq_saves_every_n_batches(tmp_path):
    """model_checkpoint_test.py::ModelCheckpointTest::test_model_checkpoint_options, Case 8a (and 8b)."""
    filepath = str(tmp_path / "checkpoint.epoch{epoch:02d}.pt")
    _fit(ModelCheckpoint(filepath, save_freq=15), epochs=10, batch_size=6)  # 5 batches / epoch
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.epoch03.pt", "checkpoint.epoch06.pt", "checkpoint.epoch09.pt"]


def test_invalid_save_freq():
    """model_checkpoint_test.py::ModelCheckpointTest::test_model_checkpoint_options, Case 9."""
    with pytest.raises(ValueError, match="`save_freq` must be 'epoch' or a positive integer"):
        ModelCheckpoint("checkpoint.pt", save_freq="invalid_save_freq")
    ModelCheckpoint("checkpoint.pt", save_freq="epoch")
    ModelCheckpoint("checkpoint.pt", save_freq=3)


@pytest.mark.parametrize("weights_only", [False, True])
def test_batch_in_the_file_name(tmp_path, weights_only):
    """model_checkpoint_test.py::ModelCheckpointTest::test_model_checkpoint_options, Cases 10a and 10b."""
    filepath = str(tmp_path / "checkpoint.epoch{epoch:02d}batch{batch:02d}.pt")
    _fit(ModelCheckpoint(filepath, save_freq=1, save_weights_only=weights_only), epochs=5, batch_size=15)
    expected = [filepath.format(epoch=e, batch=b) for e in range(1, 6) for b in (1, 2)]
    assert sorted(os.path.join(tmp_path, name) for name in os.listdir(tmp_path)) == expected


@pytest.mark.parametrize("case, monitor, mode, threshold, saved", [
    ("11", "val_acc", "max", -0.01, True),
    ("12", "val_loss", "auto", None, True),
    ("13", "val_loss", "min", 0, False),
    ("14", "val_loss", "auto", 0, False),
])
def test_initial_value_threshold(tmp_path, case, monitor, mode, threshold, saved):
    """model_checkpoint_test.py::ModelCheckpointTest::test_model_checkpoint_options, Cases 11 to 14."""
    filepath = tmp_path / "checkpoint.pt"
    _fit(ModelCheckpoint(filepath, monitor=monitor, save_best_only=True, initial_value_threshold=threshold,
                         mode=mode))
    assert filepath.exists() == saved


def test_initial_value_threshold_auc(tmp_path):
    """model_checkpoint_test.py::ModelCheckpointTest::test_model_checkpoint_options, Case 15."""
    filepath = tmp_path / "checkpoint.pt"
    _fit(ModelCheckpoint(filepath, monitor="val_auc", save_best_only=True, initial_value_threshold=1),
         loss="bce_with_logits", metrics=("auc",), classes=1)
    assert not filepath.exists()


def test_unknown_monitor_is_a_value_error(tmp_path):
    """model_checkpoint_test.py::ModelCheckpointTest::test_model_checkpoint_options, Case 5.

    Deliberate difference: Keras warns "Can save best model only with unknown available" and saves
    every epoch; kerastorch refuses the name before training, listing what fit logs.
    """
    filepath = tmp_path / "checkpoint.pt"
    with pytest.raises(ValueError, match="ModelCheckpoint monitors 'unknown', which fit will not log"):
        _fit(ModelCheckpoint(filepath, monitor="unknown", save_best_only=True, mode="min"))
    assert not filepath.exists()


def test_unknown_mode_is_a_value_error():
    """model_checkpoint_test.py::ModelCheckpointTest::test_model_checkpoint_options, Case 6.

    Deliberate difference: Keras warns "ModelCheckpoint mode 'unknown' is unknown" and falls back to
    "auto"; kerastorch raises.
    """
    with pytest.raises(ValueError, match="`mode` must be one of 'auto', 'min', 'max'. Received: mode='unknown'"):
        ModelCheckpoint("checkpoint.pt", monitor="val_loss", mode="unknown")
