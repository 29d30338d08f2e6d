"""ReduceLROnPlateau: exact lr sequences for factor, patience, min_delta, cooldown and min_lr."""
import pytest
import torch

from kerastorch.callbacks import Callback, ReduceLROnPlateau
from support import TinyNet


def _model(lr=1.0):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu", optimizer_kwargs={"lr": lr})
    return model


def _lrs(cb, values, model=None, monitor="val_loss", begin=True, first_epoch=0):
    """Feed scripted values to the epoch hooks; return the lr after each epoch."""
    if cb.model is None:
        cb.set_model(model or _model())
        cb.set_params({"has_validation": True})
    if begin:
        cb.on_train_begin(None)
    out = []
    for epoch, value in enumerate(values, start=first_epoch):
        cb.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
        out.append(cb.model.optimizer.param_groups[0]["lr"])
    return out


def test_reduces_after_patience_epochs():
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0)
    assert _lrs(cb, [1.0] * 6) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_improvement_resets_the_wait():
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0)
    assert _lrs(cb, [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]) == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    assert cb.best == 0.25


def test_patience_zero_reduces_at_every_epoch_without_improvement():
    cb = ReduceLROnPlateau(factor=0.5, patience=0, min_delta=0.0)
    assert _lrs(cb, [1.0, 1.0, 0.5, 0.75]) == [1.0, 0.5, 0.5, 0.25]


def test_min_delta_is_strict():
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.125)
    # 0.875 is not below 1.0 - 0.125: the wait reaches 2 at epoch 2.
    assert _lrs(cb, [1.0, 0.9375, 0.875, 0.8125]) == [1.0, 1.0, 0.5, 0.5]
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.125)
    assert _lrs(cb, [1.0, 0.9375, 0.75, 0.75, 0.75]) == [1.0, 1.0, 1.0, 1.0, 0.5]


def test_cooldown_counts_as_keras_counts_it():
    # Each epoch after a reduction first decrements the counter, then counts if it reached 0:
    # cooldown=1 changes nothing, cooldown=2 leaves one epoch out.
    cb = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1, min_delta=0.0)
    assert _lrs(cb, [1.0] * 6) == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    cb = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_delta=0.0)
    assert _lrs(cb, [1.0] * 6) == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    cb = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=3, min_delta=0.0)
    assert _lrs(cb, [1.0] * 6) == [1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    cb = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=0, min_delta=0.0)
    assert _lrs(cb, [1.0] * 4) == [1.0, 0.5, 0.25, 0.125]


def test_improvement_during_cooldown_updates_best():
    cb = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_delta=0.0)
    assert _lrs(cb, [1.0, 1.0, 0.5, 0.75, 0.75]) == [1.0, 0.5, 0.5, 0.25, 0.25]
    assert cb.best == 0.5


def test_min_lr_bounds_the_lr():
    cb = ReduceLROnPlateau(factor=0.5, patience=1, min_lr=0.3, min_delta=0.0)
    assert _lrs(cb, [1.0] * 5) == [1.0, 0.5, 0.3, 0.3, 0.3]


def test_factor_product_is_computed_like_python():
    cb = ReduceLROnPlateau(factor=0.1, patience=0, min_delta=0.0)
    assert _lrs(cb, [1.0, 1.0, 1.0], model=_model(lr=0.1)) == [0.1, 0.1 * 0.1, 0.1 * 0.1 * 0.1]


def test_mode_max():
    cb = ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1, min_delta=0.0)
    assert cb.mode == "max"
    model = TinyNet()
    model.compile("sgd", "mse", ["accuracy"], device="cpu", optimizer_kwargs={"lr": 1.0})
    assert _lrs(cb, [0.5, 0.75, 0.75, 1.0], model=model, monitor="val_accuracy") == [1.0, 1.0, 0.5, 0.5]


def test_every_param_group_is_reduced():
    model = TinyNet()
    optimizer = torch.optim.SGD([{"params": [model.fc.weight], "lr": 1.0}, {"params": [model.fc.bias], "lr": 0.5}])
    model.compile(optimizer, "mse", device="cpu")
    cb = ReduceLROnPlateau(factor=0.5, patience=0, min_lr=0.25, min_delta=0.0)
    _lrs(cb, [1.0, 1.0, 1.0], model=model)
    assert [g["lr"] for g in model.optimizer.param_groups] == [0.25, 0.25]


class Script(Callback):
    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def test_in_fit_the_history_shows_the_new_lr_from_the_next_epoch():
    model = _model(lr=0.0625)
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    cb = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0)
    history = model.fit(x, y, batch_size=4, epochs=5, validation_data=(x, y), verbose=0,
                        callbacks=[Script([1.0, 1.0, 1.0, 0.5, 0.5]), cb])
    assert list(history["lr"]) == [0.0625, 0.0625, 0.03125, 0.015625, 0.015625]
    assert model.optimizer.param_groups[0]["lr"] == 0.0078125


def test_state_dict_round_trip():
    first = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_delta=0.0)
    model = _model()
    assert _lrs(first, [1.0, 1.0, 1.0], model=model) == [1.0, 1.0, 0.5]
    state = first.state_dict()
    assert state == {"best": 1.0, "wait": 0, "cooldown_counter": 1}
    second = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_delta=0.0)
    second.set_model(model)
    second.set_params({"has_validation": True})
    second.on_train_begin(None)
    second.load_state_dict(state)
    assert _lrs(second, [1.0, 1.0, 1.0], begin=False, first_epoch=3) == [0.5, 0.25, 0.25]


def test_missing_monitor_fails_before_training():
    model = _model()
    with pytest.raises(ValueError, match="ReduceLROnPlateau monitors 'val_loss'"):
        model.fit(torch.randn(4, 2), torch.randn(4, 1), epochs=1, verbose=0, callbacks=[ReduceLROnPlateau()])


def test_verbose_prints_one_line_per_reduction(capsys):
    cb = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0, verbose=1)
    _lrs(cb, [1.0, 1.0])
    assert capsys.readouterr().out == "Epoch 2: ReduceLROnPlateau reducing learning rate from 1 to 0.5.\n"


def test_warns_with_a_compiled_scheduler():
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.compile(optimizer, "mse", device="cpu", lr_scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1))
    with pytest.warns(RuntimeWarning, match="both change the learning rate"):
        model.fit(torch.randn(4, 2), torch.randn(4, 1), epochs=1, verbose=0,
                  callbacks=[ReduceLROnPlateau(monitor="loss")])


@pytest.mark.parametrize("kwargs, message", [
    ({"factor": 1.0}, "`factor` must be between 0 and 1"), ({"factor": 0.0}, "`factor` must be between 0 and 1"),
    ({"patience": -1}, "`patience` must be an integer >= 0"), ({"cooldown": 1.5}, "`cooldown` must be an integer"),
    ({"min_lr": -1.0}, "`min_lr` must be >= 0")])
def test_argument_checks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReduceLROnPlateau(**kwargs)
