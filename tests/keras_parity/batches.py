"""Helpers for the data-adapter parity tests: models and a callback that record what fit / evaluate / predict
hand to the steps (Keras's adapter tests iterate the adapter; here the public API runs and the steps watch)."""
import torch
from torch import nn

import kerastorch as kt
from kerastorch.callbacks import Callback


class Recorder(kt.Model):
    """``nn.Linear(inputs, outputs)`` that keeps every batch its train / test / predict steps receive."""

    def __init__(self, inputs=4, outputs=2):
        super().__init__()
        self.dense = nn.Linear(inputs, outputs)
        self.seen = {"train": [], "test": [], "predict": []}

    def forward(self, x):
        return self.dense(x)

    def train_step(self, batch):
        self.seen["train"].append(batch)
        return super().train_step(batch)

    def test_step(self, batch):
        self.seen["test"].append(batch)
        return super().test_step(batch)

    def predict_step(self, batch):
        self.seen["predict"].append(batch)
        return super().predict_step(batch)


class AnyWidth(Recorder):
    """A Recorder whose output does not depend on the input's width: batches of several shapes can train."""

    def __init__(self, outputs=2):
        super().__init__(1, outputs)

    def forward(self, x):
        return self.dense(x.mean(-1, keepdim=True))


class TwoInTwoOut(Recorder):
    """Keyword inputs ``x1`` (1 feature) and ``x2`` (2), outputs of 3 and 4 columns."""

    def __init__(self):
        super().__init__(3, 3)
        self.second = nn.Linear(3, 4)

    def forward(self, x1, x2):
        joined = torch.cat([x1, x2], 1)
        return [self.dense(joined), self.second(joined)]


class Steps(Callback):
    """Per epoch, the indices of the training batches run (Keras's StepObserver, per epoch)."""

    def __init__(self):
        super().__init__()
        self.epochs = []
        self.losses = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])

    def on_batch_begin(self, batch, logs=None):  # Keras's alias, as StepObserver overrides it
        self.epochs[-1].append(batch)

    def on_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))  # a host sync per batch: fine in a test


def compiled(model_class, *args, loss="mse", **kwargs):
    """``model_class(*args)`` made under seed 0 (two calls give the same weights), compiled with SGD on the CPU."""
    torch.manual_seed(0)
    model = model_class(*args)
    model.compile("sgd", loss, device="cpu", **kwargs)
    return model


def shapes(batch):
    """Shapes of a batch's tensors, dicts kept, lists and tuples as tuples (a DataLoader makes tuples lists)."""
    if isinstance(batch, dict):
        return {key: shapes(value) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return tuple(shapes(item) for item in batch)
    return tuple(batch.shape)
