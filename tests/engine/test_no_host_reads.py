"""The hot loop reads nothing back to the host inside a training step (CPU check).

On CUDA, tests/gpu/test_no_host_sync.py runs fit under
``torch.cuda.set_sync_debug_mode("error")``. That needs a GPU; this test runs
everywhere. It replaces the Python-level ways of reading a tensor's value on
the host (``item``, ``tolist``, ``bool``, ``float``, ``int``, ``numpy``) with a
spy that records every call made *from kerastorch's own code* while a
training step runs (from the start of batch 1 to the end of the epoch's last
batch; batch 0 may resolve lazy state). Each of those calls would be a
host-device sync on a GPU. Calls from torch itself (e.g. a CPU optimizer
reading its step counter) are not kerastorch's to avoid and are not counted.
"""
from __future__ import annotations

import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as kt
from kerastorch.amp import MixedPrecision
from kerastorch.callbacks import Callback

HOST_READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__")


class StepWindow(Callback):
    """Marks the training steps of batches 1..last of every epoch as watched."""

    def __init__(self) -> None:
        super().__init__()
        self.watching = False
        self.watched_steps = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.watching = batch >= 1
        self.watched_steps += self.watching

    def on_train_batch_end(self, batch, logs=None):
        self.watching = batch + 1 < self.params["steps"]  # keeps watching the next batch's loading


@pytest.fixture
def host_read_spy(monkeypatch):
    """Yields (window callback, list of 'method from module:line' host reads seen while watching)."""
    window, seen = StepWindow(), []

    def spy(name):
        original = getattr(torch.Tensor, name)

        def watched(self, *args, **kwargs):
            caller = sys._getframe(1)
            module = caller.f_globals.get("__name__", "")
            if window.watching and module.split(".")[0] == "kerastorch":
                seen.append(f"{name} from {module}:{caller.f_lineno}")
            return original(self, *args, **kwargs)

        return watched

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, spy(name))
    return window, seen


def binary_data(n=96):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=generator)
    return x, (x[:, 0] > 0).float()


def test_the_spy_catches_a_per_step_read_of_the_running_logs(host_read_spy):
    # Proof that the check can fail: running_logs() reads the logs back (kerastorch code); a
    # callback calling it every batch makes one read per watched step.
    window, seen = host_read_spy

    class EveryStep(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.running_logs()

    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(8, 1), nn.Flatten(0)))
    model.compile("adam", "bce_with_logits", device="cpu")
    x, y = binary_data()
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[window, EveryStep()], verbose=0)
    assert window.watched_steps == 2  # batches 1 and 2 of 3
    assert len(seen) == 2 and all(read.startswith("tolist from kerastorch.readback:") for read in seen), seen


@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("data", ["tensors", "loader"])
def test_training_steps_read_nothing_back_to_the_host(host_read_spy, precision, data):
    window, seen = host_read_spy
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1), nn.Flatten(0)))
    model.compile("adam", "bce_with_logits", ["accuracy", "auc", "precision", "recall", "f1", "mae"],
                  regularizers=kt.regularizers.L1L2(1e-4, 1e-4), grad_clip_norm=1.0, grad_accum_steps=2,
                  lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (1 + step)),
                  precision="32" if precision == "16-mixed" else precision, device="cpu")
    if precision == "16-mixed":  # compile() refuses fp16 on CPU (slow there); its scaler logic runs anyway
        model._config.precision = MixedPrecision("16-mixed", torch.device("cpu"))
    x, y = binary_data()
    source = {"x": x, "y": y, "batch_size": 16} if data == "tensors" else \
        {"x": DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)}
    history = model.fit(**source, validation_data=(x[:32], y[:32]), epochs=2, callbacks=[window], verbose=0)
    assert len(history) == 2 and window.watched_steps == 2 * 5
    assert seen == []


def test_live_plot_reads_nothing_back_to_the_host(host_read_spy, tmp_path):
    # LivePlot draws from the history rows (floats fit already read): the per-step check passes with it on,
    # and over the whole fit (window forced open) no host read comes from the display modules.
    window, seen = host_read_spy
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(8, 1), nn.Flatten(0)))
    model.compile("adam", "bce_with_logits", ["accuracy"], device="cpu")
    x, y = binary_data()
    live = kt.callbacks.LivePlot(path=tmp_path / "curves.png")
    model.fit(x, y, batch_size=16, validation_data=(x[:32], y[:32]), epochs=2, callbacks=[window, live], verbose=0)
    assert window.watched_steps == 2 * 5 and seen == []
    assert (tmp_path / "curves.png").exists()

    class Always(Callback):
        def on_train_begin(self, logs=None):
            window.watching = True

    model.fit(x, y, batch_size=16, validation_data=(x[:32], y[:32]), epochs=2, callbacks=[Always(), live], verbose=0)
    assert seen, "the open window records the engine's once-per-epoch reads"
    assert [read for read in seen if ".callbacks.display." in read] == []
    assert len(live.figure.axes[0].lines[0].get_xdata()) == 4


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_a_model_computed_loss_reads_nothing_back_to_the_host(host_read_spy, precision):
    # The Hugging Face way (kerastorch.losses.model_loss): dict batches with "labels", forward returns
    # {"loss", "logits"}, no compiled loss; metrics on the logits; accumulation, clipping and a penalty on.
    window, seen = host_read_spy

    class SelfScoring(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

        def forward(self, features, labels=None):
            logits = self.body(features)
            return {"logits": logits} if labels is None else \
                {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}

    class Samples(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y.long()

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"features": self.x[i], "labels": self.y[i]}

    torch.manual_seed(0)
    model = kt.Model.wrap(SelfScoring())
    model.compile("adam", metrics=["accuracy", "f1"], regularizers=kt.regularizers.L2(1e-4), grad_clip_norm=1.0,
                  grad_accum_steps=2, precision=precision, device="cpu")
    x, y = binary_data()
    history = model.fit(DataLoader(Samples(x, y), batch_size=16), validation_data=DataLoader(Samples(x[:32], y[:32])),
                        epochs=2, callbacks=[window], verbose=0)
    assert sorted(history.columns) == ["accuracy", "epoch", "f1", "loss", "lr", "reg_loss", "val_accuracy", "val_f1",
                                       "val_loss"]
    assert window.watched_steps == 2 * 5 and seen == []
