"""Shared monitor logic: mode resolution, the improvement test, the pre-training name check."""
import math

import pytest
import torch

import kerastorch as kt
from kerastorch.callbacks import EarlyStopping, ReduceLROnPlateau
from kerastorch.callbacks.monitor import check_monitor, is_better, require_logged, resolve_mode
from kerastorch.compiling import known_log_keys, may_log_custom_keys
from support import TinyNet


@pytest.mark.parametrize("monitor, mode", [
    ("val_loss", "min"), ("loss", "min"), ("val_acc", "max"), ("accuracy", "max"), ("val_auc", "max"),
    ("val_precision", "max"), ("recall", "max"), ("val_f1", "max"), ("val_mae", "min"), ("lr", "min")])
def test_auto_mode(monitor, mode):
    assert resolve_mode(monitor, "auto") == mode


def test_explicit_mode_and_bad_mode():
    assert resolve_mode("val_acc", "min") == "min"
    with pytest.raises(ValueError, match="`mode` must be one of 'auto', 'min', 'max'. Received: mode='best'"):
        resolve_mode("val_loss", "best")
    with pytest.raises(ValueError, match="`monitor` must be a non-empty string"):
        resolve_mode("", "auto")


def test_is_better_is_strict_and_uses_min_delta():
    assert is_better(0.5, None, "min", 0.0) and is_better(0.5, None, "max", 0.0)
    assert not is_better(math.nan, None, "min", 0.0)
    assert not is_better(math.nan, 1.0, "min", 0.0)
    assert is_better(0.75, 1.0, "min", 0.0) and not is_better(1.0, 1.0, "min", 0.0)
    assert is_better(0.25, 1.0, "min", 0.5) and not is_better(0.5, 1.0, "min", 0.5)
    assert is_better(0.25, 1.0, "min", -0.5)  # the sign of min_delta is ignored
    assert is_better(1.5, 1.0, "max", 0.25) and not is_better(1.25, 1.0, "max", 0.25)


def _compiled(**compile_kwargs):
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu", **compile_kwargs)
    return model


def _checked(monitor, model, has_validation=True):
    cb = EarlyStopping(monitor=monitor)
    cb.set_model(model)
    cb.set_params({"has_validation": has_validation, "log_keys": known_log_keys(model._config, has_validation),
                   "custom_logs": may_log_custom_keys(model, kt.Model, model._config)})
    check_monitor(monitor, cb)


def test_known_keys_in_history_order():
    model = _compiled(metrics=["mae"], regularizers=None)
    assert known_log_keys(model._config, True) == ["loss", "mae", "val_loss", "val_mae", "lr"]
    assert known_log_keys(model._config, False) == ["loss", "mae", "lr"]


def test_check_monitor_accepts_logged_names():
    model = _compiled(metrics=["mae"])
    for name in ("loss", "mae", "lr", "val_loss", "val_mae"):
        _checked(name, model)


def test_check_monitor_rejects_val_without_validation():
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'val_loss', but fit has no validation data.*"
                                         r"monitor one of: loss, lr\."):
        _checked("val_loss", _compiled(), has_validation=False)


def test_check_monitor_rejects_unknown_names_listing_the_available_ones():
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'val_acc', which fit will not log\. "
                                         r"Available: loss, val_loss, lr\."):
        _checked("val_acc", _compiled())
    with pytest.raises(ValueError, match="'reg_loss'"):
        _checked("reg_loss", _compiled())  # no regularizer compiled: never logged
    with pytest.raises(ValueError, match="'val_lr'"):
        _checked("val_lr", _compiled())


def test_check_monitor_allows_reg_loss_with_a_regularizer_but_not_val_reg_loss():
    model = _compiled(regularizers=[kt.regularizers.L2(1e-3)])
    _checked("reg_loss", model)
    with pytest.raises(ValueError, match="'val_reg_loss'"):
        _checked("val_reg_loss", model)


def test_check_monitor_defers_when_the_logged_keys_are_open():
    class Custom(TinyNet):
        def train_step(self, batch):
            logs = super().train_step(batch)
            logs["l1"] = self.fc.weight.abs().sum().detach()
            return logs

    model = Custom()
    model.compile("sgd", "mse", device="cpu")
    _checked("l1", model)

    def loss_with_parts(y_pred, y):
        mse = torch.nn.functional.mse_loss(y_pred, y)
        return {"loss": mse, "half": mse / 2}

    model = TinyNet()
    model.compile("sgd", loss_with_parts, device="cpu")
    _checked("half", model)


def test_check_monitor_without_a_model_checks_nothing():
    check_monitor("anything", EarlyStopping())


def test_require_logged():
    cb = ReduceLROnPlateau()
    assert require_logged("val_loss", {"loss": 1.0, "val_loss": 0.5}, cb) == 0.5
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau monitors 'val_loss', which is not in the epoch logs\. "
                                         r"Available: loss, lr\."):
        require_logged("val_loss", {"loss": 1.0, "lr": 0.1}, cb)
