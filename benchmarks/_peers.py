"""Peer frameworks as contenders: PyTorch Lightning, Poutyne, Keras 3 (torch backend).

Each adapter trains the same ``nn.Module`` (a deep copy of the workload's
template) with Adam, the workload's loss and an accuracy metric, and times its
epochs with the framework's own epoch-begin / epoch-end callback hooks. Every
import is optional: :func:`missing` says which peers are not installed.
"""
from __future__ import annotations

import importlib
import logging
import os
import time
import warnings
from typing import Any

os.environ["KERAS_BACKEND"] = "torch"  # before keras is first imported

import torch  # noqa: E402

from _harness import Contender, Timing, synchronize  # noqa: E402
from _workloads import Workload  # noqa: E402

INSTALL_HINT = "skipped (not installed: pip install kerastorch[bench])"
PEERS = {"lightning": "lightning", "poutyne": "poutyne", "keras": "keras"}


def missing(peer: str) -> str | None:
    """None when ``peer`` imports, else why not (one line)."""
    try:
        importlib.import_module(PEERS[peer])
    except Exception as err:  # noqa: BLE001 - any import failure means "not usable here"
        return f"{INSTALL_HINT} [{type(err).__name__}: {str(err)[:80]}]"
    return None


def quiet() -> None:
    """Silence the peers' info logs and warnings (num_workers hints and the like).

    Lightning sets its loggers to INFO when imported, so the installed peers are imported first.
    """
    for peer in PEERS:
        if missing(peer) is None:
            importlib.import_module(PEERS[peer])
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning|poutyne|keras)(\..*)?")
    warnings.filterwarnings("ignore", message=r".*(num_workers|does not have many workers).*")


class _Clock:
    """Epoch begin/end wall times, synchronizing the device at each epoch end."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times, self.begin = device, [], 0.0

    def start(self) -> None:
        self.begin = time.perf_counter()

    def stop(self) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter() - self.begin)


def _hits(output: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    if task == "binary":
        return ((output > 0) == (target > 0.5)).float().mean()
    return (output.argmax(dim=1) == target).float().mean()


# ----------------------------------------------------------------------------- Lightning
class LightningFit(Contender):
    """A LightningModule whose training_step logs loss and accuracy per epoch (on_step=False).

    Each run builds a ``Trainer(max_epochs=E, logger=False, enable_checkpointing=False,
    enable_progress_bar=False, enable_model_summary=False)`` and calls ``fit``; the
    optimizer (and its Adam state) is created once and reused across runs.
    """

    label = "lightning Trainer.fit"

    def __init__(self, workload: Workload, device: torch.device) -> None:
        super().__init__(self.label, workload.steps_per_epoch)
        import lightning as L

        loss_fn, task = workload.loss_fn(), workload.task

        class Module(L.LightningModule):
            def __init__(self, network: torch.nn.Module) -> None:
                super().__init__()
                self.network = network
                self.bench_optimizer = torch.optim.Adam(network.parameters(), lr=workload.lr)

            def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
                x, y = batch
                output = self.network(x)
                loss = loss_fn(output, y)
                self.log("loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
                self.log("acc", _hits(output.detach(), y, task), on_step=False, on_epoch=True, batch_size=len(x))
                return loss

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return self.bench_optimizer

        clock = _Clock(device)

        class Timer(L.Callback):
            def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
                clock.start()

            def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
                clock.stop()

        self.lightning, self.module, self.clock, self.timer = L, Module(workload.fresh_model()), clock, Timer()
        self.loader, self.device = workload.loader(device, seed=1), device

    def run(self, epochs: int) -> Timing:
        self.clock.times = []
        start = time.perf_counter()
        trainer = self.lightning.Trainer(
            max_epochs=epochs, accelerator="cuda" if self.device.type == "cuda" else "cpu", devices=1,
            logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, num_sanity_val_steps=0, callbacks=[self.timer])
        trainer.fit(self.module, train_dataloaders=self.loader)
        synchronize(self.device)
        total = time.perf_counter() - start
        self.final = {key: float(trainer.callback_metrics[key]) for key in ("loss", "acc")
                      if key in trainer.callback_metrics}
        return Timing(total, list(self.clock.times))


# ----------------------------------------------------------------------------- Poutyne
class PoutyneFit(Contender):
    """``poutyne.Model(network, optimizer, loss, batch_metrics=[accuracy]).fit_generator(loader)``."""

    label = "poutyne fit_generator"

    def __init__(self, workload: Workload, device: torch.device) -> None:
        super().__init__(self.label, workload.steps_per_epoch)
        import poutyne

        network = workload.fresh_model()
        optimizer = torch.optim.Adam(network.parameters(), lr=workload.lr)
        self.metric = "bin_acc" if workload.task == "binary" else "acc"
        self.model = poutyne.Model(network, optimizer, workload.loss_fn(), batch_metrics=[self.metric],
                                   device=device)
        clock = self.clock = _Clock(device)

        class Timer(poutyne.Callback):
            def on_epoch_begin(self, epoch_number: int, logs: dict) -> None:
                clock.start()

            def on_epoch_end(self, epoch_number: int, logs: dict) -> None:
                clock.stop()

        self.timer, self.loader = Timer(), workload.loader(device, seed=1)

    def run(self, epochs: int) -> Timing:
        self.clock.times = []
        start = time.perf_counter()
        logs = self.model.fit_generator(self.loader, epochs=epochs, verbose=False, callbacks=[self.timer])
        synchronize(self.clock.device)
        total = time.perf_counter() - start
        self.final = {"loss": float(logs[-1]["loss"]), "acc": float(logs[-1][self.metric]) / 100}  # percent
        return Timing(total, list(self.clock.times))


# ----------------------------------------------------------------------------- Keras 3
class KerasFit(Contender):
    """``keras.Sequential([Input, TorchModuleWrapper(network)])`` with ``fit(x_numpy, y_numpy)``.

    The torch module is wrapped, not rebuilt with Keras layers: same architecture,
    same initial weights. jit_compile=False (eager, as the torch rows).
    """

    label = "keras fit (torch backend)"

    def __init__(self, workload: Workload, device: torch.device) -> None:
        super().__init__(self.label, workload.steps_per_epoch)
        import keras

        if keras.backend.backend() != "torch":
            raise RuntimeError(f"Keras runs on the {keras.backend.backend()!r} backend; this benchmark "
                               "needs KERAS_BACKEND=torch set before keras is imported.")
        self.model = keras.Sequential([keras.Input(shape=tuple(workload.x.shape[1:])),
                                       keras.layers.TorchModuleWrapper(workload.fresh_model())])
        if workload.task == "binary":
            loss, metric = keras.losses.BinaryCrossentropy(from_logits=True), keras.metrics.BinaryAccuracy(
                name="acc", threshold=0.0)
        else:
            loss, metric = keras.losses.SparseCategoricalCrossentropy(from_logits=True), \
                keras.metrics.SparseCategoricalAccuracy(name="acc")
        self.model.compile(optimizer=keras.optimizers.Adam(learning_rate=workload.lr), loss=loss,
                           metrics=[metric], jit_compile=False)
        self.x, self.y = workload.x.numpy(), workload.y.numpy()
        self.batch_size, self.device = workload.batch_size, device
        clock = self.clock = _Clock(device)

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                clock.start()

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                clock.stop()

        self.timer = Timer()

    def run(self, epochs: int) -> Timing:
        self.clock.times = []
        start = time.perf_counter()
        history = self.model.fit(self.x, self.y, batch_size=self.batch_size, epochs=epochs, shuffle=True,
                                 verbose=0, callbacks=[self.timer])
        synchronize(self.device)
        total = time.perf_counter() - start
        self.final = {key: float(history.history[key][-1]) for key in ("loss", "acc")}
        return Timing(total, list(self.clock.times))


PEER_CLASSES = {"lightning": LightningFit, "poutyne": PoutyneFit, "keras": KerasFit}
