"""Keras parity: ReduceLROnPlateau (keras/src/callbacks/reduce_lr_on_plateau_test.py)."""
import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import ReduceLROnPlateau


def _fit(callback, epochs):
    """Keras's setUp: Dense(5) -> Dense(2), mse, Adam(0.1), 10 training and 10 validation samples."""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2)))
    model.compile("adam", "mse", device="cpu", optimizer_kwargs={"lr": 0.1})
    g = torch.Generator().manual_seed(2)
    x, y, x_val, y_val = (torch.rand(10, d, generator=g) for d in (3, 2, 3, 2))
    model.fit(x, y, validation_data=(x_val, y_val), callbacks=[callback], epochs=epochs, verbose=0)
    return model.optimizer.param_groups[0]["lr"]


def test_reduces_lr_with_model_fit():
    """keras/src/callbacks/reduce_lr_on_plateau_test.py::ReduceLROnPlateauTest::test_reduces_lr_with_model_fit"""
    cb = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", min_delta=100)
    assert _fit(cb, epochs=2) == pytest.approx(0.01)


def test_honors_min_lr():
    """keras/src/callbacks/reduce_lr_on_plateau_test.py::ReduceLROnPlateauTest::test_honors_min_lr"""
    cb = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", min_delta=10, min_lr=0.005)
    assert _fit(cb, epochs=4) == 0.005


def test_cooldown():
    """keras/src/callbacks/reduce_lr_on_plateau_test.py::ReduceLROnPlateauTest::test_cooldown

    With a cooldown of 2 epochs the lr is reduced every other epoch: two reductions in four epochs.
    """
    cb = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", min_delta=100, cooldown=2)
    assert _fit(cb, epochs=4) == pytest.approx(0.001)


def test_state_reset_across_fit_calls():
    """keras/src/callbacks/reduce_lr_on_plateau_test.py::ReduceLROnPlateauTest::test_state_reset_across_fit_calls"""
    cb = ReduceLROnPlateau(patience=1, factor=0.1, monitor="loss", min_delta=0, cooldown=2)
    cb.on_train_begin()
    cb.best, cb.wait, cb.cooldown_counter = 0.5, 3, 2
    cb.on_train_begin()
    assert cb.best is None and cb.wait == 0 and cb.cooldown_counter == 0


def test_verbose_logging(capsys):
    """keras/src/callbacks/reduce_lr_on_plateau_test.py::ReduceLROnPlateauTest::test_verbose_logging

    Keras logs "ReduceLROnPlateau reducing learning rate to 0.01"; kerastorch prints the old and new values.
    """
    cb = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", min_delta=100, verbose=1)
    _fit(cb, epochs=2)
    assert capsys.readouterr().out == "Epoch 2: ReduceLROnPlateau reducing learning rate from 0.1 to 0.01.\n"


def test_warns_when_optimizer_has_schedule():
    """keras/src/callbacks/reduce_lr_on_plateau_test.py::ReduceLROnPlateauTest::test_throws_when_optimizer_has_schedule

    Deliberate difference: Keras raises a TypeError when the optimizer has a LearningRateSchedule;
    kerastorch warns that the compiled scheduler and the callback combine, and trains.
    """
    cb = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", min_delta=100)
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(3, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.compile(optimizer, "mse", device="cpu",
                  lr_scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0))
    x, y = torch.rand(10, 3), torch.rand(10, 2)
    with pytest.warns(RuntimeWarning, match="ReduceLROnPlateau and the compiled `lr_scheduler` both change"):
        history = model.fit(x, y, validation_data=(x, y), callbacks=[cb], epochs=2, verbose=0)
    assert len(history) == 2
