"""Keras parity: EarlyStopping (keras/src/callbacks/early_stopping_test.py)."""
import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import EarlyStopping


def _model(metrics=("mse",)):
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(5, 1), nn.ReLU(), nn.Linear(1, 1), nn.ReLU()))
    model.compile("sgd", "mae", list(metrics), device="cpu")
    return model


def _data(n=10):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 5, generator=g), torch.rand(n, 1, generator=g)


@pytest.mark.parametrize("mode, monitor, expected", [
    ("max", "val_mse", "max"), ("min", "val_loss", "min"), ("auto", "val_mse", "min"), ("auto", "loss", "min"),
    ("auto", "acc", "max"), ("auto", "val_accuracy", "max"), ("auto", "hinge", "min"),
    ("auto", "f1_score", "max")])
def test_early_stopping_modes(mode, monitor, expected):
    """keras/src/callbacks/early_stopping_test.py::EarlyStoppingTest::test_early_stopping (the mode table)."""
    assert EarlyStopping(monitor=monitor, mode=mode).mode == expected


def test_early_stopping_unknown_monitor_is_a_value_error():
    """keras/src/callbacks/early_stopping_test.py::EarlyStoppingTest::test_early_stopping (monitor="unknown")."""
    x, y = _data()
    with pytest.raises(ValueError, match="EarlyStopping monitors 'unknown', which fit will not log"):
        _model().fit(x, y, batch_size=5, validation_data=(x, y), epochs=2, verbose=0,
                     callbacks=[EarlyStopping(monitor="unknown")])


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_early_stopping_patience(patience):
    """keras/src/callbacks/early_stopping_test.py::EarlyStoppingTest::test_early_stopping_patience"""
    stopper = EarlyStopping(monitor="loss", patience=patience)
    stopper.set_model(_model())
    stopper.on_train_begin()
    for epoch, loss in enumerate([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]):
        stopper.on_epoch_end(epoch=epoch, logs={"loss": loss})
        if stopper.model.stop_training:
            break
    assert stopper.stopped_epoch == max(patience, 1) + 2


def test_early_stopping_reuse():
    """keras/src/callbacks/early_stopping_test.py::EarlyStoppingTest::test_early_stopping_reuse"""
    x, y = _data(100)
    model, stopper = _model(), EarlyStopping(monitor="mse", patience=3)
    first = model.fit(x, y, callbacks=[stopper], verbose=0, epochs=20)
    assert len(first) >= 3
    second = model.fit(x, y, callbacks=[stopper], verbose=0, epochs=20)
    assert len(second) - len(first) >= 3  # kerastorch's history goes on across fits


def test_state_reset_across_fit_calls():
    """keras/src/callbacks/early_stopping_test.py::EarlyStoppingTest::test_state_reset_across_fit_calls"""
    stopper = EarlyStopping(monitor="loss", patience=3)
    stopper.set_model(_model())
    stopper.on_train_begin()
    stopper.best, stopper.wait, stopper.stopped_epoch, stopper.best_epoch = 0.1, 3, 5, 5
    stopper.best_weights = object()
    stopper.on_train_begin()
    assert stopper.best is None and stopper.wait == 0 and stopper.best_weights is None
    assert stopper.stopped_epoch == 0 and stopper.best_epoch == 0


def test_early_stopping_with_baseline():
    """keras/src/callbacks/early_stopping_test.py::EarlyStoppingTest::test_early_stopping_with_baseline"""
    x, y = _data()
    history = _model().fit(x, y, verbose=0, epochs=20, callbacks=[EarlyStopping(monitor="mse", patience=3,
                                                                                baseline=0.6)])
    assert len(history) >= 3


def _restored(losses, stop_at=None, **kwargs):
    """Drive the hooks with the model's bias set to the epoch index (Keras's DummyModel.set_weight_to_epoch)."""
    model = _model()
    stopper = EarlyStopping(monitor="val_loss", restore_best_weights=True, **kwargs)
    stopper.set_model(model)
    stopper.on_train_begin()
    trained = 0
    for epoch, loss in enumerate(losses):
        trained += 1
        with torch.no_grad():
            model[2].bias.fill_(epoch)
        stopper.on_epoch_end(epoch, logs={"val_loss": loss})
        if epoch == stop_at:
            model.stop_training = True
        if model.stop_training:
            break
    stopper.on_train_end()
    return trained, float(model[2].bias.detach())


def test_early_stopping_final_weights_when_restoring_model_weights():
    """keras/src/callbacks/early_stopping_test.py::EarlyStoppingTest::
    test_early_stopping_final_weights_when_restoring_model_weights"""
    assert _restored([0.2, 0.15, 0.1, 0.11, 0.12], patience=2) == (5, 2.0)
    assert _restored([0.9, 0.8, 0.7, 0.71, 0.72, 0.73], patience=5, baseline=0.5) == (5, 2.0)
    assert _restored([0.9, 0.8, 0.7, 0.71, 0.72, 0.73], stop_at=3, patience=5, baseline=0.5) == (4, 2.0)


def test_early_stopping_with_start_from_epoch():
    """keras/src/callbacks/early_stopping_test.py::EarlyStoppingTest::test_early_stopping_with_start_from_epoch"""
    x, y = _data()
    model = _model()
    history = model.fit(x, y, verbose=0, epochs=20, callbacks=[EarlyStopping(monitor="mse", patience=3,
                                                                              start_from_epoch=2)])
    assert len(history) >= 3 + 2
    more = model.fit(x, y, verbose=0, epochs=20, callbacks=[EarlyStopping(monitor="mse", patience=0,
                                                                           start_from_epoch=2)])
    assert len(more) - len(history) >= 2
