"""EarlyStopping: exact stopping epochs, min_delta, baseline, modes, restore_best_weights, resume."""
import os

import pytest
import torch

from kerastorch.callbacks import Callback, EarlyStopping, LambdaCallback
from support import TinyNet, params_of, same_params


class Script(Callback):
    """Overwrite ``logs[key]`` with scripted values, so the callbacks after it see them."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


def _model(metrics=None):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", metrics, device="cpu")
    return model


def _data(n=8):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 2, generator=g), torch.randn(n, 1, generator=g)


def _run(cb, values, monitor="val_loss", first_epoch=0, begin=True):
    """Call the hooks as fit does with scripted values; return the epochs run."""
    if cb.model is None:
        cb.set_model(_model())
        cb.set_params({"has_validation": True})
    if begin:
        cb.on_train_begin(None)
    cb.model.stop_training = False
    ran = 0
    for epoch, value in enumerate(values, start=first_epoch):
        cb.on_epoch_end(epoch, {"loss": 1.0, monitor: value, "lr": 0.01})
        ran += 1
        if cb.model.stop_training:
            break
    cb.on_train_end(None)
    return ran


def test_stops_after_patience_epochs_without_improvement_in_a_real_fit():
    model = _model()
    x, y = _data()
    cb = EarlyStopping(monitor="val_loss", patience=2)
    history = model.fit(x, y, batch_size=4, epochs=10, validation_data=(x, y), verbose=0,
                        callbacks=[Script("val_loss", [1.0, 0.5, 0.6, 0.7, 0.4]), cb])
    assert cb.stopped_epoch == 3
    assert cb.best == 0.5 and cb.best_epoch == 1 and cb.wait == 2
    assert len(history) == 4 and model.stop_training


def test_patience_zero_stops_at_the_first_epoch_without_improvement():
    cb = EarlyStopping(patience=0)
    assert _run(cb, [1.0, 0.5, 0.5, 0.1]) == 3
    assert cb.stopped_epoch == 2 and cb.best == 0.5


def test_no_stop_while_improving():
    cb = EarlyStopping(patience=1)
    assert _run(cb, [1.0, 0.9, 0.8, 0.7]) == 4
    assert cb.stopped_epoch == 0 and not cb.stopped and cb.best == 0.7 and cb.best_epoch == 3


def test_min_delta_is_a_strict_threshold():
    cb = EarlyStopping(patience=1, min_delta=0.5)
    assert _run(cb, [1.0, 0.5, 0.25]) == 2  # 0.5 is not below 1.0 - 0.5
    assert cb.stopped_epoch == 1 and cb.best == 1.0
    cb = EarlyStopping(patience=1, min_delta=0.5)
    assert _run(cb, [1.0, 0.25, 0.0, 0.0]) == 3
    assert cb.best == 0.25 and cb.best_epoch == 1 and cb.stopped_epoch == 2
    cb = EarlyStopping(patience=1, min_delta=-0.5)  # sign ignored, as in Keras
    assert _run(cb, [1.0, 0.5]) == 2 and cb.stopped_epoch == 1


def test_baseline_must_be_beaten():
    cb = EarlyStopping(patience=2, baseline=0.5)
    assert _run(cb, [0.9, 0.8, 0.7, 0.6]) == 2  # improving, but never below the baseline
    assert cb.stopped_epoch == 1 and cb.best == 0.8 and cb.best_epoch == 1
    cb = EarlyStopping(patience=2, baseline=0.85)
    assert _run(cb, [0.9, 0.8, 0.7, 0.6]) == 4
    assert cb.stopped_epoch == 0 and not cb.stopped and cb.wait == 0
    cb = EarlyStopping(patience=0, baseline=0.5)
    assert _run(cb, [0.9]) == 1 and cb.stopped_epoch == 0 and cb.stopped  # stopped after the first epoch


def test_mode_max_and_auto_for_accuracy():
    cb = EarlyStopping(monitor="val_accuracy", patience=2)
    assert cb.mode == "max"
    cb.set_model(_model(metrics=["accuracy"]))
    cb.set_params({"has_validation": True})
    assert _run(cb, [0.5, 0.625, 0.625, 0.5, 1.0], monitor="val_accuracy") == 4
    assert cb.stopped_epoch == 3 and cb.best == 0.625 and cb.best_epoch == 1
    cb = EarlyStopping(monitor="val_loss", mode="max", patience=0)
    assert _run(cb, [1.0, 2.0, 1.5]) == 3 and cb.best == 2.0


def test_start_from_epoch_ignores_earlier_epochs():
    cb = EarlyStopping(patience=2, start_from_epoch=2)
    assert _run(cb, [0.1, 0.2, 0.9, 1.0, 1.1, 0.0]) == 5
    assert cb.stopped_epoch == 4 and cb.best == 0.9 and cb.best_epoch == 2
    cb = EarlyStopping(patience=2)
    assert _run(cb, [0.1, 0.2, 0.9, 1.0]) == 3 and cb.stopped_epoch == 2


def test_nan_values_do_not_improve():
    cb = EarlyStopping(patience=1)
    assert _run(cb, [1.0, float("nan")]) == 2 and cb.stopped_epoch == 1 and cb.best == 1.0


def _snapshots(model, store):
    """A LambdaCallback that keeps a copy of the weights at each epoch end."""
    return LambdaCallback(on_epoch_end=lambda epoch, logs: store.append(
        {k: v.clone() for k, v in model.state_dict().items()}))


@pytest.mark.parametrize("patience, epochs, stops", [(2, 10, True), (5, 4, False)])
def test_restore_best_weights_restores_exactly_the_best_epoch(patience, epochs, stops):
    model = _model()
    snapshots = []
    x, y = _data()
    cb = EarlyStopping(patience=patience, restore_best_weights=True)
    history = model.fit(x, y, batch_size=4, epochs=epochs, validation_data=(x, y), verbose=0,
                        callbacks=[Script("val_loss", [1.0, 0.5, 0.6, 0.7, 0.8]), cb, _snapshots(model, snapshots)])
    assert len(history) == 4 and (cb.stopped_epoch == 3) == stops
    assert cb.best_epoch == 1
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(snapshots[3][k], snapshots[1][k]) for k in final)  # the last epoch differs


def test_without_restore_the_last_weights_stay():
    model = _model()
    snapshots = []
    x, y = _data()
    model.fit(x, y, batch_size=4, epochs=10, validation_data=(x, y), verbose=0,
              callbacks=[Script("val_loss", [1.0, 0.5, 0.6, 0.7]), EarlyStopping(patience=2),
                         _snapshots(model, snapshots)])
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[3][k]) for k in final)


def test_state_dict_round_trip_continues_counting(tmp_path):
    first = EarlyStopping(patience=3, restore_best_weights=True)
    assert _run(first, [1.0, 0.5, 0.6]) == 3 and first.wait == 1
    path = tmp_path / "es.pt"
    torch.save(first.state_dict(), path)
    state = torch.load(path, weights_only=True)
    second = EarlyStopping(patience=3, restore_best_weights=True)
    second.set_model(first.model)
    second.set_params({"has_validation": True})
    second.on_train_begin(None)  # fit resets, then a resume loads the saved state
    second.load_state_dict(state)
    assert second.wait == 1 and second.best == 0.5 and second.best_epoch == 1
    assert _run(second, [0.7, 0.8, 0.1], first_epoch=3, begin=False) == 2
    assert second.stopped_epoch == 4
    assert all(torch.equal(second.best_weights[k], first.best_weights[k]) for k in first.best_weights)


def test_resumed_fit_continues_counting(tmp_path):
    from kerastorch.callbacks.model_checkpoint import ModelCheckpoint
    values = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9]
    x, y = _data()
    path = os.fspath(tmp_path / "full.pt")
    model = _model()
    es = EarlyStopping(patience=3)
    model.fit(x, y, batch_size=4, epochs=3, validation_data=(x, y), verbose=0,
              callbacks=[Script("val_loss", values), es, ModelCheckpoint(path, save_weights_only=False)])
    assert es.wait == 1 and es.stopped_epoch == 0 and not es.stopped
    resumed, es2 = _model(), EarlyStopping(patience=3)
    history = resumed.fit(x, y, batch_size=4, epochs=10, validation_data=(x, y), verbose=0, resume_from=path,
                          callbacks=[Script("val_loss", values), es2, ModelCheckpoint(path, save_weights_only=False)])
    assert es2.stopped_epoch == 4 and es2.best == 0.5 and es2.best_epoch == 1
    assert list(history["epoch"]) == [1, 2, 3, 4, 5]


def test_missing_monitor_fails_before_any_step():
    model = _model()
    before = params_of(model)
    x, y = _data()
    with pytest.raises(ValueError, match="val_loss"):
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[EarlyStopping(monitor="val_loss")])
    assert same_params(before, params_of(model))
    with pytest.raises(ValueError, match=r"monitors 'val_accuracy', which fit will not log"):
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, validation_data=(x, y),
                  callbacks=[EarlyStopping(monitor="val_accuracy")])
    assert same_params(before, params_of(model)) and len(model.history) == 0


def test_a_deferred_monitor_missing_at_epoch_end_is_an_error():
    class Custom(TinyNet):
        def train_step(self, batch):
            return super().train_step(batch)

    torch.manual_seed(0)
    model = Custom()
    model.compile("sgd", "mse", device="cpu")
    x, y = _data()
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'l1', which is not in the epoch logs\. "
                                         r"Available: loss, lr\."):
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[EarlyStopping(monitor="l1")])


def test_verbose_prints_one_line(capsys):
    cb = EarlyStopping(patience=1, verbose=1, restore_best_weights=True)
    _run(cb, [1.0, 0.5, 0.75])
    assert capsys.readouterr().out == ("EarlyStopping: stopped after epoch 3; best val_loss=0.5 at epoch 2; "
                                       "restored the weights of epoch 2\n")
    _run(EarlyStopping(patience=5), [1.0, 0.5, 0.75])
    assert capsys.readouterr().out == ""


def test_argument_checks():
    with pytest.raises(ValueError, match="`patience` must be an integer >= 0. Received: patience=-1"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="`start_from_epoch` must be an integer >= 0"):
        EarlyStopping(start_from_epoch=1.5)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        EarlyStopping(mode="lowest")
