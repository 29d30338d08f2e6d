"""Training control (issue 18): validation cadence, validation batch caps, smoke runs, overfitting a
few batches and a wall-clock limit, each with a known answer (which epochs and batches ran)."""
import math
import types

import pytest
import torch
from torch import nn

import kerastorch as kt
import kerastorch.engine.epochs as epochs_module
from kerastorch.callbacks import Callback, ModelCheckpoint


def data(n=16, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x.sum(1, keepdim=True)


def model(seed=0):
    torch.manual_seed(seed)
    net = kt.Model.wrap(nn.Linear(3, 1))
    net.compile("sgd", "mse", optimizer_kwargs={"lr": 0.05}, device="cpu")
    return net


class Recorder(Callback):
    """Which epochs validated and how many batches each phase ran."""

    def __init__(self):
        super().__init__()
        self.events = []

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch", epoch + 1))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("train", batch))

    def on_test_batch_end(self, batch, logs=None):
        self.events.append(("val", batch))

    def validated(self):
        epochs, current = [], None
        for kind, value in self.events:
            if kind == "epoch":
                current = value
            elif kind == "val" and current not in epochs:
                epochs.append(current)
        return epochs


@pytest.mark.parametrize(("freq", "expected"), [(2, [2, 4]), ([1, 4, 9], [1, 4]), (1, [1, 2, 3, 4, 5])])
def test_validation_freq_validates_the_keras_epochs_and_leaves_nan_elsewhere(freq, expected):
    recorder = Recorder()
    history = model().fit(*data(), batch_size=8, epochs=5, verbose=0, validation_data=data(8, seed=4),
                          validation_freq=freq, callbacks=[recorder])
    assert recorder.validated() == expected
    validated = [not math.isnan(v) for v in history["val_loss"]]
    assert [e for e, ok in zip(history["epoch"], validated) if ok] == expected


def test_validation_freq_counts_epochs_as_keras_across_initial_epoch():
    recorder = Recorder()
    model().fit(*data(), batch_size=8, epochs=6, initial_epoch=2, verbose=0, validation_data=data(8),
                validation_freq=3, callbacks=[recorder])
    assert recorder.validated() == [3, 6]  # Keras: (epoch index + 1) % 3 == 0


@pytest.mark.parametrize("bad", [0, -1, [], [0, 2], "2", 1.5, True])
def test_a_bad_validation_freq_is_refused_before_training(bad):
    net = model()
    with pytest.raises(ValueError, match=r"`validation_freq` must be a positive int"):
        net.fit(*data(), verbose=0, validation_data=data(), validation_freq=bad)
    assert net._record.global_step == 0


def test_validation_steps_caps_the_validation_batches_and_their_mean():
    recorder = Recorder()
    net = model()
    x_val, y_val = data(12, seed=5)
    history = net.fit(*data(), batch_size=4, epochs=1, verbose=0, validation_data=(x_val, y_val),
                      validation_steps=2, callbacks=[recorder])
    assert [v for k, v in recorder.events if k == "val"] == [0, 1]
    expected = torch.nn.functional.mse_loss(net.predict(x_val[:8]), y_val[:8]).item()  # the first 2 batches of 4
    assert history["val_loss"].iloc[0] == pytest.approx(expected, rel=1e-6)


def test_validation_steps_ends_an_endless_validation_stream():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            while True:
                yield data(1, seed=7)[0][0], torch.zeros(1)

    recorder = Recorder()
    history = model().fit(*data(), batch_size=8, epochs=2, verbose=0, validation_data=Stream(),
                          validation_steps=3, callbacks=[recorder])
    assert [v for k, v in recorder.events if k == "val"] == [0, 1, 2, 0, 1, 2]
    assert history["val_loss"].notna().all()


def test_fast_dev_run_runs_one_batch_of_each_calls_every_hook_and_keeps_nothing(tmp_path):
    net = model()
    net.fit(*data(), batch_size=4, epochs=1, verbose=0)  # a first fit: its history must stay as it is
    before = [dict(r) for r in net._record.history_rows], net._record.global_step
    recorder = Recorder()
    checkpoint = ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"))
    csv = kt.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    history = net.fit(*data(), batch_size=4, epochs=10, verbose=0, validation_data=data(8),
                      fast_dev_run=True, callbacks=[recorder, checkpoint, csv])
    assert recorder.events == [("epoch", 1), ("train", 0), ("val", 0)]  # hooks get the 0-based index
    assert list(tmp_path.iterdir()) == []  # no file written
    assert [dict(r) for r in net._record.history_rows] == before[0] and net._record.global_step == before[1]
    assert len(history) == 1


def test_fast_dev_run_n_runs_n_batches():
    recorder = Recorder()
    model().fit(*data(), batch_size=2, epochs=3, verbose=0, validation_data=data(8), fast_dev_run=3,
                callbacks=[recorder])
    assert recorder.events == [("epoch", 1), ("train", 0), ("train", 1), ("train", 2), ("val", 0), ("val", 1),
                               ("val", 2)]


def test_overfit_batches_trains_and_validates_on_the_same_first_batches():
    x, y = data(16)
    net = model()
    history = net.fit(x, y, batch_size=4, epochs=40, verbose=0, overfit_batches=2,
                      validation_data=data(8, seed=9))
    # validation ran on the 2 training batches (the first 8 samples, in order), not on validation_data
    expected = torch.nn.functional.mse_loss(net.predict(x[:8]), y[:8]).item()
    assert history["val_loss"].iloc[-1] == pytest.approx(expected, rel=1e-5)
    assert history["loss"].iloc[-1] < 0.01 * history["loss"].iloc[0]  # it memorised them
    hand = model()  # a hand loop over the same 2 batches, unshuffled
    for _ in range(40):
        for i in (0, 4):
            hand.optimizer.zero_grad()
            torch.nn.functional.mse_loss(hand(x[i:i + 4]), y[i:i + 4]).backward()
            hand.optimizer.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(net.parameters(), hand.parameters()))


class FakeClock:
    """Each training batch takes one second (a callback advances it)."""

    def __init__(self):
        self.now = 100.0

    def monotonic(self):
        return self.now


def test_max_time_stops_before_the_batch_that_would_pass_the_limit_and_resume_continues(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(epochs_module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    tick = kt.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: setattr(clock, "now", clock.now + 1))
    x, y = data(16)
    net = model()
    checkpoint = ModelCheckpoint(str(tmp_path / "ckpt.pt"), save_weights_only=False)
    with pytest.warns(UserWarning, match=r"max_time=10.5s reached: training stopped in epoch 3 after 2 batch\(es\); "
                                         r"model.history keeps the finished epochs. Interrupt checkpoint: .*"
                                         r"interrupted.pt; fit\(resume_from=...\) continues from it."):
        history = net.fit(x, y, batch_size=4, epochs=5, verbose=0, max_time=10.5, callbacks=[tick, checkpoint])
    assert net._record.global_step == 10  # 10 one-second steps; an 11th would end at 11 s > 10.5 s
    assert list(history["epoch"]) == [1, 2]
    resumed = model(seed=1)
    resumed.fit(x, y, batch_size=4, epochs=5, verbose=0, resume_from=str(tmp_path / "interrupted.pt"))
    whole = model()
    whole.fit(x, y, batch_size=4, epochs=5, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), whole.parameters()))
    assert resumed._record.global_step == whole._record.global_step == 20


def test_max_time_reached_at_an_epoch_end_finishes_and_validates_that_epoch(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(epochs_module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    tick = kt.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: setattr(clock, "now", clock.now + 1))
    net = model()
    with pytest.warns(UserWarning, match=r"^max_time=8.5s reached at the end of epoch 2: training stopped; "
                                         r"model.history keeps the finished epochs.$"):
        history = net.fit(*data(16), batch_size=4, epochs=5, verbose=0, validation_data=data(8), max_time=8.5,
                          callbacks=[tick])
    # 4 steps an epoch, 1 s each: after step 8 (8 s) a 9th would end at 9 s > 8.5 s, and step 8 ends epoch 2
    assert list(history["epoch"]) == [1, 2] and history["val_loss"].notna().all()
    assert net._record.global_step == 8


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_time": 0}, r"`max_time` must be a positive number of seconds"),
    ({"max_time": "1h"}, r"`max_time` must be a positive number of seconds"),
    ({"validation_steps": 0}, r"validation_steps"),
    ({"fast_dev_run": 0.5}, r"fast_dev_run"),
    ({"fast_dev_run": True, "overfit_batches": 2}, r"Pass either `fast_dev_run` or `overfit_batches`, not both"),
])
def test_bad_control_arguments_are_refused_before_training(kwargs, message):
    net = model()
    with pytest.raises((ValueError, TypeError), match=message):
        net.fit(*data(), verbose=0, **kwargs)
    assert net._record.global_step == 0 and net._record.history_rows == []


def test_validation_every_n_steps_counts_global_steps_across_epochs_and_fits():
    x, y = data(16)
    net = model()
    net.compile("sgd", "mse", metrics=["mae"], optimizer_kwargs={"lr": 0.05}, device="cpu")
    history = net.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, validation_data=data(8, seed=4),
                      validation_every_n_steps=6)  # 4 steps an epoch: 6 is more than one
    rows = net.validation_history
    assert list(rows["step"]) == [6, 12] and list(rows["epoch"]) == [2, 3]
    net.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, validation_data=data(8, seed=4),
            validation_every_n_steps=6)  # the global count goes on: steps 13..20
    assert list(net.validation_history["step"]) == [6, 12, 18]
    # the training metrics are the epoch's own (step validation works on copies of the metrics)
    twin = model()
    twin.compile("sgd", "mse", metrics=["mae"], optimizer_kwargs={"lr": 0.05}, device="cpu")
    plain = twin.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, validation_data=data(8, seed=4))
    assert list(history["mae"]) == list(plain["mae"]) and list(history["val_loss"]) == list(plain["val_loss"])


def test_a_step_validation_scores_the_weights_of_that_step():
    x, y = data(16)
    x_val, y_val = data(8, seed=4)
    net = model()
    net.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, validation_data=(x_val, y_val),
            validation_every_n_steps=3)
    after_three = model()
    after_three.fit(x, y, batch_size=4, epochs=1, steps_per_epoch=3, shuffle=False, verbose=0)
    expected = torch.nn.functional.mse_loss(after_three.predict(x_val), y_val).item()
    assert net.validation_history["val_loss"].iloc[0] == pytest.approx(expected, rel=1e-6)


def test_a_resume_inside_a_step_validation_schedule_validates_at_the_same_global_steps(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(epochs_module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    tick = kt.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: setattr(clock, "now", clock.now + 1))
    x, y = data(16)
    val = data(8, seed=4)
    net = model()
    with pytest.warns(UserWarning, match="max_time=6.5s reached"):  # stops after step 6, inside epoch 2
        net.fit(x, y, batch_size=4, epochs=4, verbose=0, validation_data=val, validation_every_n_steps=5,
                max_time=6.5, callbacks=[tick, ModelCheckpoint(str(tmp_path / "c.pt"), save_weights_only=False)])
    resumed = model(seed=1)
    resumed.fit(x, y, batch_size=4, epochs=4, verbose=0, validation_data=val, validation_every_n_steps=5,
                resume_from=str(tmp_path / "interrupted.pt"))
    whole = model()
    whole.fit(x, y, batch_size=4, epochs=4, verbose=0, validation_data=val, validation_every_n_steps=5)
    assert list(resumed.validation_history["step"]) == list(whole.validation_history["step"]) == [5, 10, 15]
    assert resumed.validation_history.equals(whole.validation_history)
