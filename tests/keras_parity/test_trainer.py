"""Keras 3's trainer tests (keras/src/trainers/trainer_test.py), translated: kerastorch gives Keras's outcome.

ExampleModel there is a Dense layer with a kernel of ones and no bias; ``torch.nn.Linear(bias=False)`` with the
same weights is its twin. Keras's SGD default learning rate is 0.01, as kerastorch's "sgd".
"""
import numpy as np
import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback


def example_model(inputs=4, units=3):
    """keras/src/trainers/trainer_test.py ExampleModel: Dense(units, use_bias=False, kernel_initializer=Ones())."""
    linear = nn.Linear(inputs, units, bias=False)  # use_bias=False there
    nn.init.ones_(linear.weight)
    return kt.Model.wrap(linear)


def test_on_batch_methods():
    """trainer_test.py::TestTrainer::test_on_batch_methods (Keras's numbers)."""
    model = example_model()
    x, y = np.ones((100, 4)), np.zeros((100, 3))
    sw = np.arange(100).reshape((100,)).astype("float32") / 50.0
    model.compile(optimizer="sgd", loss="mse", metrics=["mse"], device="cpu")
    logs = model.train_on_batch(x, y)
    assert isinstance(logs, list) and len(logs) == 2 and logs[0] == pytest.approx(16.0)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert isinstance(logs, dict) and len(logs) == 2 and logs["loss"] == pytest.approx(15.158, abs=1e-3)
    logs = model.test_on_batch(x, y)
    assert isinstance(logs, list) and len(logs) == 2 and logs[0] == pytest.approx(14.360, abs=1e-3)
    logs = model.test_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(14.360, abs=1e-3)
    output = model.predict_on_batch(x)
    assert torch.allclose(output[0], torch.tensor([3.789511] * 3), atol=1e-5)
    logs = model.train_on_batch(x, y, sw)  # with sample weights
    assert logs[0] == pytest.approx(14.217, abs=1e-3)
    assert model.test_on_batch(x, y, sw)[0] == pytest.approx(13.476, abs=1e-3)
    assert torch.allclose(model.predict_on_batch(x)[0], torch.tensor([3.689468] * 3), atol=1e-5)
    logs = model.train_on_batch(x, y, class_weight={1: 0.3, 0: 0.2})  # with class weights
    assert logs[0] == pytest.approx(2.722, abs=1e-3)
    assert model.history.empty  # no fit: nothing in the history


def test_on_batch_methods_without_training():
    """trainer_test.py::TestTrainer::test_on_batch_methods_without_training."""
    model = example_model()
    x, y = np.ones((100, 4)), np.zeros((100, 3))
    model.compile(loss="mse", metrics=["mse"], device="cpu")
    assert torch.allclose(model.predict_on_batch(x)[0], torch.tensor([4.0, 4.0, 4.0]))
    logs = model.test_on_batch(x, y)
    assert isinstance(logs, list) and len(logs) == 2 and logs[0] == pytest.approx(16.0)
    assert model.test_on_batch(x, y, return_dict=True)["loss"] == pytest.approx(16.0)


def test_evaluate_return_list_respect_metrics_order():
    """trainer_test.py::TestTrainer::test_evaluate_return_list_respect_metrics_order (return_dict=False)."""
    def metrics_zero(y_pred, y_true):
        return torch.zeros(())

    def metrics_one(y_pred, y_true):
        return torch.ones(())

    model = example_model(2, 3)
    model.compile(optimizer="sgd", loss="mse", metrics=[metrics_zero, metrics_one], device="cpu")
    out = model.evaluate(np.ones((3, 2)), np.ones((3, 3)), return_dict=False)
    assert len(out) == 3 and out[1] == 0.0 and out[2] == 1.0
    model.compile(optimizer="sgd", loss="mse", metrics=[metrics_one, metrics_zero], device="cpu")
    out = model.evaluate(np.ones((3, 2)), np.ones((3, 3)), return_dict=False)
    assert len(out) == 3 and out[1] == 1.0 and out[2] == 0.0
    # Deliberate difference: kerastorch's default stays a dict (Keras's default is the list).
    assert model.evaluate(np.ones((3, 2)), np.ones((3, 3))) == {"loss": out[0], "metrics_one": 1.0,
                                                                 "metrics_zero": 0.0}


@pytest.mark.parametrize(("method", "gerund", "hook"), [("fit", "training", "train"),
                                                        ("evaluate", "evaluating", "test"),
                                                        ("predict", "predicting", "predict")])
def test_stop_loop(method, gerund, hook):
    """trainer_test.py::TestTrainer::test_stop_loop: a callback's stop_<gerund> ends an endless loop."""
    model = example_model(2, 3)
    model.compile(optimizer="sgd", loss="mse", metrics=["mse"], device="cpu")

    class Stopper(Callback):
        def __init__(self, stop_count):
            super().__init__()
            self.stop_count, self.counter = stop_count, 0

        def batch_end(self, batch, logs=None):
            self.counter += 1
            if self.counter == self.stop_count:
                setattr(self.model, f"stop_{gerund}", True)

    setattr(Stopper, f"on_{hook}_batch_end", Stopper.batch_end)

    def infinite_gen():
        while True:
            x, y = np.ones((2, 2), dtype="float32"), np.ones((2, 3), dtype="float32")
            yield (x,) if method == "predict" else (x, y)

    stopper = Stopper(5)
    getattr(model, method)(infinite_gen(), callbacks=[stopper], verbose=0)
    assert stopper.counter == 5


def test_partial_loss_partial_label():
    """trainer_test.py::TestTrainer::test_partial_loss_partial_label: a None loss leaves an output untrained,
    and a single target goes to the one output that has a loss."""
    class ThreeHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(2, 3)
            nn.init.ones_(self.dense.weight)
            nn.init.zeros_(self.dense.bias)

        def forward(self, x):
            out = self.dense(x)
            return [out, out, out]

    partial, full = kt.Model.wrap(ThreeHeads()), kt.Model.wrap(ThreeHeads())
    partial.compile(loss=["mse", None, None], device="cpu")
    full.compile(loss=["mse", "mse", "mse"], device="cpu")
    x, y = np.ones((32, 2)), np.ones((32, 3))
    partial_logs = partial.evaluate(x, y)
    logs = full.evaluate(x, [y] * 3)
    assert partial_logs["loss"] * 3 == pytest.approx(logs["loss"])


def test_loss_weights():
    """trainer_test.py::TestTrainer::test_loss_weights (single output: a scalar weight; Keras's numbers)."""
    model = example_model()
    model.compile(optimizer="sgd", loss="mse", metrics=["mse"], loss_weights=0.2, device="cpu")
    history = model.fit(np.ones((40, 4)), np.zeros((40, 3)), batch_size=20, epochs=3, verbose=0)
    assert np.allclose(history["loss"], [3.182979, 3.115617, 3.049681], atol=1e-3)


def test_fit_with_class_weight_in_fit():
    """trainer_test.py class_weight tests: fit(class_weight=...) weighs the loss; a class left out weighs 1, and
    keys may be "0" or 0.0 (keras/src/trainers/data_adapters/data_adapter_utils.py class_weight_to_sample_weights)."""
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2] * 4)
    model = kt.Model.wrap(nn.Linear(4, 3))
    model.compile("sgd", "cross_entropy", optimizer_kwargs={"lr": 0.0}, device="cpu")
    loss = model.fit(x, y, batch_size=12, verbose=0, class_weight={"1": 3.0, 0.0: 0.5})["loss"].iloc[0]
    per_sample = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
    assert loss == pytest.approx((per_sample * torch.tensor([0.5, 3.0, 1.0])[y]).mean().item(), rel=1e-6)
    assert model.fit(x, y, batch_size=12, verbose=0)["loss"].iloc[-1] == pytest.approx(per_sample.mean().item(),
                                                                                       rel=1e-6)  # for one fit only


def test_custom_train_step_may_log_python_floats():
    """trainer_test.py custom train_step tests: logs may hold Python numbers."""
    class Custom(kt.Model):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(2, 1)

        def forward(self, x):
            return self.dense(x)

        def train_step(self, batch):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.backward_and_step(loss)
            return {"loss": loss.detach(), "constant": 0.5}

    model = Custom()
    model.compile("sgd", "mse", device="cpu")
    history = model.fit(np.ones((8, 2)), np.ones((8, 1)), batch_size=4, epochs=2, verbose=0)
    assert list(history["constant"]) == [0.5, 0.5]


def test_compiled_metrics_a_custom_train_step_never_updates_are_left_out_of_training_logs():
    """Keras logs what a custom train_step returns: compiled metrics it never updates have no training value (NaN
    in their history columns; evaluation's test_step still updates them), instead of an error at the epoch's end."""

    class Custom(kt.Model):
        def __init__(self):
            super().__init__()
            self.dense = torch.nn.Linear(2, 1)

        def forward(self, x):
            return self.dense(x)

        def train_step(self, batch):
            x, y = batch
            loss = torch.nn.functional.binary_cross_entropy_with_logits(self(x), y)
            self.backward_and_step(loss)
            return {"loss": loss.detach()}

    def hits(y_pred, y_true):
        return ((y_pred > 0) == (y_true > 0.5)).float().mean()

    model = Custom()
    nn.init.zeros_(model.dense.weight)
    nn.init.constant_(model.dense.bias, -1.0)  # logits -1 rising by < 0.03 a step: below 0 for these 4 steps
    model.compile("sgd", "bce_with_logits", {"acc": "accuracy", "hits": hits}, device="cpu")
    x, y = np.ones((8, 2), dtype="float32"), np.ones((8, 1), dtype="float32")
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, validation_data=(x, y))
    assert history[["acc", "hits"]].isna().all().all()  # the compiled columns, with no training value
    assert history["val_acc"].tolist() == history["val_hits"].tolist() == [0.0, 0.0]  # every logit < 0: all miss
