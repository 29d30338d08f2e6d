"""TerminateOnNaN: stops after an epoch whose loss is NaN or infinite."""
import math

import pytest
import torch

from kerastorch.callbacks import Callback, LambdaCallback, TerminateOnNaN
from support import TinyNet


class Poisonable(TinyNet):
    """Outputs NaN while ``poison`` is set."""

    poison = False

    def forward(self, x):
        out = super().forward(x)
        return out * float("nan") if self.poison else out


class Script(Callback):
    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["loss"] = self.values[epoch]


def _data():
    g = torch.Generator().manual_seed(4)
    return torch.randn(8, 2, generator=g), torch.randn(8, 1, generator=g)


def test_a_model_whose_loss_becomes_nan_stops():
    torch.manual_seed(0)
    model = Poisonable()
    model.compile("sgd", "mse", device="cpu")
    poison = LambdaCallback(on_epoch_begin=lambda epoch, logs: setattr(model, "poison", epoch >= 2))
    with pytest.warns(RuntimeWarning, match="Non-finite training loss"):
        history = model.fit(*_data(), batch_size=4, epochs=6, verbose=0, callbacks=[poison, TerminateOnNaN()])
    assert len(history) == 3 and math.isnan(history["loss"].iloc[2])
    assert history["loss"].iloc[:2].notna().all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_stops_on_a_non_finite_epoch_loss_in_fit(bad):
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    with pytest.warns(RuntimeWarning, match=f"TerminateOnNaN: loss is {bad} at epoch 2; training stopped"):
        history = model.fit(*_data(), batch_size=4, epochs=5, verbose=0,
                            callbacks=[Script([0.5, bad, 0.5, 0.5, 0.5]), TerminateOnNaN()])
    assert len(history) == 2 and model.stop_training


def test_finite_losses_and_missing_loss_do_not_stop():
    torch.manual_seed(0)
    cb = TerminateOnNaN()
    cb.set_model(TinyNet())
    cb.on_epoch_end(0, {"loss": 1e30, "val_loss": float("nan")})
    cb.on_epoch_end(1, {"acc": float("nan")})
    assert not cb.model.stop_training


def test_it_adds_no_batch_hook():
    from kerastorch.callbacks.base import CallbackList
    table = CallbackList([TerminateOnNaN()])
    assert table.on_train_batch_end == () and len(table.on_epoch_end) == 1


def test_raise_error_raises_naming_the_epoch_when_no_batch_is_known():
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    ended = []
    tracker = LambdaCallback(on_train_end=lambda logs: ended.append(True))
    with pytest.raises(RuntimeError, match=r"TerminateOnNaN: NaN or Inf loss encountered at epoch 2 \(its mean "
                                           r"loss\) \(batches count from 0, epochs from 1 as in the history\)\. "
                                           r"Loss value: nan\. Training stopped \(raise_error=True\)\."):
        model.fit(*_data(), batch_size=4, epochs=5, verbose=0,
                  callbacks=[Script([0.5, float("nan"), 0.5]), TerminateOnNaN(raise_error=True), tracker])
    assert ended == [] and len(model.history) == 2  # no on_train_end; History (first) had kept epoch 2's row


def test_raise_error_names_the_first_non_finite_batch_from_the_epoch_accumulator():
    class Accumulator:
        def first_nonfinite(self):
            return 3

    class Session:
        accumulator, nonfinite = Accumulator(), True

        def epoch_number(self, epoch):
            return epoch + 1

    cb = TerminateOnNaN(raise_error=True)
    cb.set_session(Session())
    with pytest.raises(RuntimeError, match=r"encountered at batch 3 of epoch 1 "):
        cb.on_epoch_end(0, {"loss": float("inf")})
    quiet = TerminateOnNaN()
    quiet.set_model(TinyNet())
    quiet.set_session(Session())
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fit already warned about its own non-finite loss: no second warning
        quiet.on_epoch_end(0, {"loss": float("nan")})
    assert quiet.model.stop_training


def test_raise_error_must_be_a_bool():
    with pytest.raises(TypeError, match="`raise_error` must be True or False. Received: raise_error='yes'"):
        TerminateOnNaN(raise_error="yes")
