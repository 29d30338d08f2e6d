"""Keras parity: hook aliases, the logs hooks receive, LambdaCallback's names.

Each test names, in its docstring, the Keras test (or Keras source) whose outcome it asserts.
"""
import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback, LambdaCallback


class Counting(kt.Model):
    """Counts its training forward passes in a buffer (Keras's CanaryLayer / TestModel)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        if self.training:
            self.iterations += 1
        return self.fc(x)


def _compiled(model=None):
    torch.manual_seed(0)
    model = model or kt.Model.wrap(nn.Linear(2, 1))
    model.compile("sgd", "mse", device="cpu")
    return model


def test_model_state_is_current_on_epoch_end():
    """keras/src/callbacks/callback_test.py::CallbackTest::test_model_state_is_current_on_epoch_end

    A callback overriding only Keras's alias ``on_batch_end`` is called, and sees the model as of that batch.
    """
    seen = []

    class CBK(Callback):
        def on_batch_end(self, batch, logs):
            seen.append((batch, int(self.model.iterations)))

    model = _compiled(Counting())
    model.fit(torch.rand(8, 1), torch.rand(8, 1), batch_size=2, callbacks=[CBK()], verbose=0)
    assert seen == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_on_batch_begin_alias_is_called():
    """keras/src/callbacks/callback.py::Callback.on_train_batch_begin (calls the on_batch_begin alias)."""
    seen = []

    class Old(Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(batch)

    _compiled().fit(torch.rand(6, 2), torch.rand(6, 1), batch_size=2, callbacks=[Old()], verbose=0)
    assert seen == [0, 1, 2]


def _recorder(hooks):
    got = {}

    def record(name):
        return lambda *args: got.setdefault(name, args[-1])

    return got, LambdaCallback(**{name: record(name) for name in hooks})


def test_begin_hooks_get_an_empty_dict():
    """keras/src/callbacks/callback_list.py::CallbackList.on_train_begin (pythonify_logs(None) == {}).

    Also keras/src/callbacks/lambda_callback_test.py::LambdaCallbackTest::test_lambda_callback, whose
    ``on_train_begin=lambda logs: ...`` gets a dict.
    """
    got, recorder = _recorder(["on_train_begin", "on_epoch_begin", "on_test_begin", "on_predict_begin",
                               "on_predict_end"])
    model = _compiled()
    x, y = torch.rand(4, 2), torch.rand(4, 1)
    model.fit(x, y, validation_data=(x, y), callbacks=[recorder], verbose=0)
    model.predict(x, callbacks=[recorder], verbose=0)
    assert got == {"on_train_begin": {}, "on_epoch_begin": {}, "on_test_begin": {}, "on_predict_begin": {},
                   "on_predict_end": {}}


def test_batch_begin_hooks_get_an_empty_dict():
    """keras/src/callbacks/callback_list.py::CallbackList.on_train_batch_begin (pythonify_logs(None) == {})."""
    got, recorder = _recorder(["on_train_batch_begin", "on_test_batch_begin", "on_predict_batch_begin"])
    model = _compiled()
    x, y = torch.rand(4, 2), torch.rand(4, 1)
    model.fit(x, y, validation_data=(x, y), callbacks=[recorder], verbose=0)
    model.predict(x, callbacks=[recorder], verbose=0)
    assert got == {"on_train_batch_begin": {}, "on_test_batch_begin": {}, "on_predict_batch_begin": {}}


def test_on_test_end_during_fit_gets_evaluate_keys():
    """keras/src/backend/torch/trainer.py::TorchTrainer.fit (on_test_end gets evaluate's logs; val_ is added after)."""
    got, recorder = _recorder(["on_test_end"])
    model = _compiled()
    model.compile("sgd", "mse", ["mae"], device="cpu")
    x, y = torch.rand(4, 2), torch.rand(4, 1)
    model.fit(x, y, validation_data=(x, y), callbacks=[recorder], verbose=0)
    assert sorted(got["on_test_end"]) == ["loss", "mae"]


def test_lambda_callback_with_additional_kwargs_is_refused():
    """keras/src/callbacks/lambda_callback_test.py::LambdaCallbackTest::test_lambda_callback_with_additional_kwargs

    Deliberate difference: Keras stores an unknown keyword as an attribute (``custom_method``);
    kerastorch refuses it, since a misspelt hook would otherwise never be called.
    """
    with pytest.raises(TypeError, match=r"LambdaCallback got an unknown hook 'custom_method'\. Hooks: "):
        LambdaCallback(custom_method=lambda logs: None)


def test_lambda_callback_with_batches():
    """keras/src/callbacks/lambda_callback_test.py::LambdaCallbackTest::test_lambda_callback_with_batches"""
    calls = []
    cb = LambdaCallback(on_train_batch_begin=lambda batch, logs: calls.append("begin"),
                        on_train_batch_end=lambda batch, logs: calls.append("end"))
    _compiled().fit(torch.randn(16, 2), torch.randn(16, 1), batch_size=4, validation_split=0.2, epochs=5,
                    callbacks=[cb], verbose=0)
    assert calls == ["begin", "end"] * 15  # 12 training samples: 3 batches x 5 epochs
