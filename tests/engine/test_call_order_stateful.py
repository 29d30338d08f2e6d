"""Random sequences of calls on one small model: every valid order works, invalid ones change nothing.

A hypothesis state machine drives compile (several configurations, recompiles), fit (tensors or
a DataLoader, with or without validation), evaluate, predict, summary, save, save_weights and
load_weights. After every step: no running call is left registered, the history has one row per
epoch trained; evaluate and predict leave weights, optimizer state and history unchanged, and
evaluate gives the same numbers for two batch sizes. Calls that need compile raise the
documented RuntimeError before it and change nothing.
"""
import math
import os
import shutil
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from torch.utils.data import DataLoader, TensorDataset

from kerastorch.engine.reentry import running_calls
from misuse_support import assert_unchanged, snapshot
from support import TinyNet

CONFIGS = {
    "sgd-mse-mae": {"optimizer": "sgd", "loss": "mse", "metrics": ["mae"]},
    "adam-bce-accuracy-auc": {"optimizer": "adam", "loss": "bce_with_logits", "metrics": ["accuracy", "auc"]},
    "rmsprop-bce-f1": {"optimizer": "rmsprop", "loss": "bce_with_logits", "metrics": ["precision", "f1"]},
    "sgd-mse-none": {"optimizer": "sgd", "loss": "mse", "metrics": None},
}
NEEDS_COMPILE = r"You must call `compile\(\)` before `{}\(\)`"

torch.manual_seed(3)
X = torch.randn(12, 2)
Y = (X.sum(1, keepdim=True) > 0).float()


def same_numbers(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or math.isclose(a[k], b[k], rel_tol=1e-6, abs_tol=1e-6) for k in a)


class CallOrder(RuleBasedStateMachine):
    @initialize()
    def start(self):
        torch.manual_seed(0)
        self.model = TinyNet()
        self.folder = tempfile.mkdtemp(prefix="kt-order-")
        self.compiled = False
        self.epochs = 0
        self.files: set[str] = set()

    def teardown(self):
        shutil.rmtree(getattr(self, "folder", ""), ignore_errors=True)

    def _path(self, name):
        return os.path.join(self.folder, name)

    @rule(name=st.sampled_from(sorted(CONFIGS)))
    def compile(self, name):
        self.model.compile(**CONFIGS[name], optimizer_kwargs={"lr": 0.05}, device="cpu")
        self.compiled = True

    @rule(loader=st.booleans(), validation=st.sampled_from([None, "tensors", "loader"]),
          epochs=st.integers(1, 2), batch_size=st.sampled_from([4, 5]))
    def fit(self, loader, validation, epochs, batch_size):
        data = dict(x=DataLoader(TensorDataset(X, Y), batch_size=batch_size, shuffle=True)) if loader else \
            dict(x=X, y=Y, batch_size=batch_size)
        val = {None: None, "tensors": (X[:5], Y[:5]),
               "loader": DataLoader(TensorDataset(X[5:], Y[5:]), batch_size=3)}[validation]
        if not self.compiled:
            before = snapshot(self.model, self.folder)
            with pytest.raises(RuntimeError, match=NEEDS_COMPILE.format("fit")):
                self.model.fit(**data, epochs=epochs, verbose=0, validation_data=val)
            assert_unchanged(self.model, before, self.folder)
            return
        history = self.model.fit(**data, epochs=epochs, verbose=0, validation_data=val)
        self.epochs += epochs
        assert len(history) == self.epochs
        last_val = history["val_loss"].iloc[-1] if "val_loss" in history.columns else math.nan
        assert math.isnan(last_val) == (validation is None)

    @rule(small=st.sampled_from([1, 3, 5]))
    def evaluate(self, small):
        before = snapshot(self.model, self.folder)
        if not self.compiled:
            with pytest.raises(RuntimeError, match=NEEDS_COMPILE.format("evaluate")):
                self.model.evaluate(X, Y)
        else:
            in_batches = self.model.evaluate(X, Y, batch_size=small)
            at_once = self.model.evaluate(X, Y, batch_size=len(X))
            assert same_numbers(in_batches, at_once), (in_batches, at_once)
        assert_unchanged(self.model, before, self.folder)

    @rule(batch_size=st.sampled_from([None, 5]))
    def predict(self, batch_size):
        before = snapshot(self.model, self.folder)
        assert self.model.predict(X, batch_size=batch_size).shape == (12, 1)
        assert_unchanged(self.model, before, self.folder)

    @rule()
    def summary(self):
        assert "Total params: 3" in self.model.summary(input_shape=(2,), print_fn=None)

    @rule()
    def save(self):
        if not self.compiled:
            before = snapshot(self.model, self.folder)
            with pytest.raises(RuntimeError, match=NEEDS_COMPILE.format("save")):
                self.model.save(self._path("full.pt"))
            assert_unchanged(self.model, before, self.folder)
            return
        self.model.save(self._path("full.pt"))
        self.files.add("full.pt")

    @rule()
    def save_weights(self):
        self.model.save_weights(self._path("weights.pt"))
        self.files.add("weights.pt")

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def load_weights(self, data):
        name = data.draw(st.sampled_from(sorted(self.files)))
        history = [dict(row) for row in self.model._record.history_rows]
        result = self.model.load_weights(self._path(name))
        assert (result.missing_keys, result.unexpected_keys) == ([], [])
        saved = torch.load(self._path(name), weights_only=True)
        weights = saved["model"] if name == "full.pt" else saved
        assert all(torch.equal(weights[k], v) for k, v in self.model.state_dict().items())
        assert self.model._record.history_rows == history

    @invariant()
    def nothing_left_running(self):
        if hasattr(self, "model"):
            assert running_calls(self.model) == [] and self.model._session is None
            assert len(self.model._record.history_rows) == self.epochs
            assert self.model.training  # every call restored the mode it found


TestCallOrder = CallOrder.TestCase
TestCallOrder.settings = settings(max_examples=200, stateful_step_count=8, deadline=None, database=None,
                                  suppress_health_check=[HealthCheck.too_slow])
