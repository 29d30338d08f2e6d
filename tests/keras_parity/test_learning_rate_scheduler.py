"""Keras parity: LearningRateScheduler (keras/src/callbacks/learning_rate_scheduler_test.py)."""
import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import LearningRateScheduler


def _fit(callback, epochs=1, optimizer="sgd", lr=0.01):
    """Keras's setUp: Dense(5) -> Dense(2), mse, 10 samples."""
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2)))
    model.compile(optimizer, "mse", device="cpu", optimizer_kwargs={"lr": lr})
    history = model.fit(torch.rand(10, 3), torch.rand(10, 2), callbacks=[callback], epochs=epochs, verbose=0)
    return model, history


def test_updates_learning_rate():
    """keras/src/callbacks/learning_rate_scheduler_test.py::LearningRateSchedulerTest::test_updates_learning_rate

    The one-argument form ``schedule(epoch)``.
    """
    model, _ = _fit(LearningRateScheduler(lambda step: 1.0 / (2.0 + step)))
    assert model.optimizer.param_groups[0]["lr"] == 0.5


def test_verbose_logging(capsys):
    """keras/src/callbacks/learning_rate_scheduler_test.py::LearningRateSchedulerTest::test_verbose_logging

    Keras logs "setting learning rate to 1.0"; kerastorch prints the value with 6 significant digits.
    """
    _fit(LearningRateScheduler(lambda step: 1.0 / (1.0 + step), verbose=1))
    assert capsys.readouterr().out == "Epoch 1: LearningRateScheduler setting learning rate to 1.\n"


def test_schedule_dependent_on_previous_learning_rate():
    """keras/src/callbacks/learning_rate_scheduler_test.py::LearningRateSchedulerTest::
    test_schedule_dependent_on_previous_learning_rate"""
    model, _ = _fit(LearningRateScheduler(lambda step, lr: lr / 2), epochs=2, optimizer="adam", lr=0.03)
    assert model.optimizer.param_groups[0]["lr"] == 0.03 / 4.0


def test_learning_rate_in_history():
    """keras/src/callbacks/learning_rate_scheduler_test.py::LearningRateSchedulerTest::test_learning_rate_in_history

    Keras's column is ``learning_rate``; kerastorch logs ``lr`` every epoch, with or without the callback.
    """
    _, history = _fit(LearningRateScheduler(lambda step, lr: 0.5))
    assert list(history["lr"]) == [0.5] and type(history["lr"].tolist()[0]) is float


def test_warns_when_optimizer_has_schedule():
    """keras/src/callbacks/learning_rate_scheduler_test.py::LearningRateSchedulerTest::
    test_throws_when_optimizer_has_schedule

    Deliberate difference: Keras raises a TypeError; kerastorch warns that LearningRateScheduler
    overrides the compiled scheduler at each epoch start, and trains.
    """
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(3, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model.compile(optimizer, "mse", device="cpu",
                  lr_scheduler=torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=10))
    with pytest.warns(RuntimeWarning, match="LearningRateScheduler and the compiled `lr_scheduler` both set"):
        history = model.fit(torch.rand(10, 3), torch.rand(10, 2), epochs=2, verbose=0,
                            callbacks=[LearningRateScheduler(lambda step, lr: lr / 2)])
    assert len(history) == 2
