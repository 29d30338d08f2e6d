"""Inside fit / evaluate / predict, ``self(x)`` in any step is the model as the call runs it.

Custom steps (Keras and torchkeras form) run under the precision's autocast and through the
torch.compile wrapper; outside those calls, and in callbacks, ``model(x)`` is the plain module.
DDP is covered under torchrun in tests/distributed/test_torchrun.py.
"""
import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.engine.execution import RoutedCall


def data(n=16, features=3):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, features, generator=g)
    return x, x.sum(1, keepdim=True)


class Recording(kt.Model):
    """The README's custom step, recording the dtypes it sees."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1)
        self.seen = []

    def forward(self, x):
        return self.fc(x)

    def train_step(self, batch):
        x, y = batch
        y_pred = self(x)
        mse = torch.nn.functional.mse_loss(y_pred, y)
        self.seen.append(("train", y_pred.dtype, mse.dtype))
        self.backward_and_step(mse)
        self.update_metrics(y_pred, y)
        return {"loss": mse.detach()}

    def test_step(self, batch):
        x, y = batch
        y_pred = self(x)
        self.seen.append(("test", y_pred.dtype))
        return {"loss": torch.nn.functional.mse_loss(y_pred, y)}

    def predict_step(self, batch):
        y_pred = self(batch[0])
        self.seen.append(("predict", y_pred.dtype))
        return y_pred


class TorchkerasForm(kt.Model):
    """torchkeras 2.x's train_step(features, labels) and evaluate_step, calling self.forward."""

    seen: list

    def train_step(self, features, labels):
        self.optimizer.zero_grad()
        predictions = self.forward(features)
        loss = self.loss_func(predictions, labels)
        self.seen.append(("train", predictions.dtype, loss.dtype))
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def evaluate_step(self, features, labels):
        predictions = self(features)
        self.seen.append(("test", predictions.dtype))
        return {"val_loss": self.loss_func(predictions, labels).item()}


def test_a_custom_step_runs_its_forward_in_bfloat16_and_its_loss_in_float32():
    model = Recording()
    model.compile("sgd", "mse", device="cpu", precision="bf16-mixed")
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y))
    model.predict(x, batch_size=16)
    assert model.seen == [("train", torch.bfloat16, torch.float32)] * 2 + [("test", torch.bfloat16)] * 2 + \
        [("predict", torch.bfloat16)]
    assert model(x).dtype == torch.float32  # outside the calls: the plain module, no autocast
    assert model.fc.weight.dtype == torch.float32 and model.fc.weight.grad is None


def test_the_custom_bf16_step_trains_as_the_built_in_one():
    """Same forward dtype, same float32 loss, same backward: the same weights as the built-in step."""
    x, y = data()
    torch.manual_seed(0)
    custom = Recording()
    torch.manual_seed(0)
    built_in = kt.Model.wrap(nn.Linear(3, 1))
    built_in.load_state_dict({f"{k.removeprefix('fc.')}": v for k, v in custom.state_dict().items()})
    for model in (custom, built_in):
        model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, device="cpu", precision="bf16-mixed")
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert torch.equal(custom.fc.weight, built_in.weight) and torch.equal(custom.fc.bias, built_in.bias)


def test_a_torchkeras_form_step_calling_self_forward_runs_under_autocast():
    model = TorchkerasForm(nn.Linear(3, 1))
    model.seen = []
    model.compile(loss_func=nn.MSELoss(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                  precision="bf16-mixed")
    x, y = data(8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model.fit(1, loader, dl_val=loader, log_step_freq=100)
    assert model.seen == [("train", torch.bfloat16, torch.float32), ("test", torch.bfloat16)]
    assert "forward" not in model.__dict__ and model._route is None  # nothing left behind


def counting_backend(calls):
    """A torch.compile backend that counts the runs of the graphs it compiled."""

    def backend(graph_module, example_inputs):
        def run(*args):
            calls.append(len(args))
            return graph_module.forward(*args)

        return run

    return backend


def test_with_jit_compile_a_custom_step_runs_the_compiled_module():
    torch._dynamo.reset()
    calls = []
    model = Recording()
    model.compile("sgd", "mse", device="cpu", jit_compile={"backend": counting_backend(calls)})
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert len(calls) == 2  # each of the 2 training steps ran the compiled graph
    model.evaluate(x, y, batch_size=8)
    model.predict(x, batch_size=16)
    assert len(calls) == 2 + 2 + 1
    model(x)  # outside the calls: the eager module
    assert len(calls) == 5


def test_a_callback_calling_the_model_during_fit_gets_the_plain_module():
    calls, outputs = [], []
    model = Recording()
    model.compile("sgd", "mse", device="cpu", precision="bf16-mixed",
                  jit_compile={"backend": counting_backend(calls)})
    probe = kt.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: outputs.append(model(data()[0]).dtype))
    torch._dynamo.reset()
    model.fit(*data(), batch_size=8, epochs=1, verbose=0, callbacks=[probe])
    assert outputs == [torch.float32, torch.float32] and len(calls) == 2


def test_an_error_inside_a_routed_step_leaves_the_plain_model():
    class Failing(Recording):
        def train_step(self, batch):
            self(batch[0])
            raise ValueError("boom")

    model = Failing()
    model.compile("sgd", "mse", device="cpu", jit_compile={"backend": counting_backend([])})
    with pytest.raises(ValueError, match="boom"):
        model.fit(*data(), batch_size=8, epochs=1, verbose=0)
    assert model._route is None and "forward" not in model.__dict__


def test_a_plain_model_keeps_its_own_steps():
    """No wrapper and no override: the engine calls train_step itself (no extra Python frame per step)."""
    model = kt.Model.wrap(nn.Linear(3, 1))
    model.compile("sgd", "mse", device="cpu", precision="bf16-mixed")
    assert model._step_runner("train") == model.train_step
    assert model._step_runner("predict") == model.predict_step
    custom = Recording()
    custom.compile("sgd", "mse", device="cpu")
    assert custom._step_runner("train") == custom.train_step  # float32: nothing to add
    assert type(kt.Model).__call__ is type.__call__ and kt.Model.__call__ is RoutedCall.__call__
