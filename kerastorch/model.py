"""Model: Keras's compile / fit / evaluate / predict / summary on an nn.Module.

The user surface and the overridable ``*_step`` methods, no loop logic: ``compile`` is
:func:`kerastorch.compiling.build_config`; fit / evaluate / predict are in :mod:`kerastorch.engine`.
``state_dict()`` and ``parameters()`` stay the network's: optimizer, loss, metrics and scaler are
in a plain :class:`~kerastorch.compiling.CompileConfig` (``_config``), what training did so far in
a :class:`~kerastorch.engine.session.FitRecord` (``_record``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import compiling
from .callbacks.base import Callback
from .checks import compiled, reject_unknown_arguments, reraise_with
from .compat import torchkeras
from .data import unpack_batch
from .engine import evaluate as evaluate_engine
from .engine import execution
from .engine import fit as fit_engine
from .engine import predict as predict_engine
from .engine.epochs import training_controls
from .engine.on_batch import OnBatchSurface, keras_result
from .engine.reentry import refuse_while_running
from .engine.session import FitRecord, Session
from .engine.step import optimizer_step
from .exploring import ExploringSurface
from .fsdp import FSDP
from .losses.model_loss import carries_loss, loss_and_logs, model_predictions
from .persistence import PersistenceSurface
from .strategy import legacy_strategy

if TYPE_CHECKING:
    import pandas as pd

    from .metrics import Metric


class Model(torchkeras.TorchkerasSurface, ExploringSurface, OnBatchSurface, PersistenceSurface, execution.RoutedCall,
            nn.Module):
    """An ``nn.Module`` with Keras's training API; ``Model(net)`` wraps a module the torchkeras way.

    Example:
        >>> class Net(Model):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = nn.Linear(2, 1)
        ...     def forward(self, x):
        ...         return self.fc(x)
        >>> net = Net()
        >>> net.compile(optimizer="sgd", loss="mse", device="cpu")
        >>> history = net.fit(torch.randn(8, 2), torch.randn(8, 1), epochs=2, verbose=0)
        >>> list(history.columns)
        ['epoch', 'loss', 'lr']

    Customise a step by overriding :meth:`train_step` (see its docstring).
    """

    def __init__(self, net: nn.Module | None = None) -> None:
        super().__init__()
        if net is not None:  # torchkeras's Model(net): net is the submodule `net` and the forward
            self.net = torchkeras.checked_net(net)
        self._init_training_state()

    def _init_training_state(self) -> None:
        self._config: compiling.CompileConfig | None = None  # set by compile()
        self._record = FitRecord()                          # history, epoch, step count, shuffling
        self._session: Session | None = None                # the running fit's, for backward_and_step
        self._compile_call: tuple[tuple, dict[str, Any]] | None = None  # compile's arguments (set by compile())
        self.stop_training = self.stop_evaluating = self.stop_predicting = False  # set by callbacks, as in Keras

    @classmethod
    def wrap(cls, module: nn.Module) -> Model:
        """Return a Model that shares ``module``'s parameters, buffers and forward.

        A new object of a subclass of ``type(module)`` and ``Model``, with exactly ``module``'s
        ``state_dict()`` keys; training it updates ``module``'s parameters (the same tensors).

        Example:
            >>> net = Model.wrap(nn.Sequential(nn.Linear(2, 1)))
            >>> list(net.state_dict())
            ['0.weight', '0.bias']
        """
        if not isinstance(module, nn.Module):
            raise TypeError(f"Model.wrap needs an nn.Module. Received: {type(module).__name__}")
        if isinstance(module, Model):
            return module
        wrapped_type: type[Model] = type(module.__class__.__name__, (module.__class__, Model), {"__module__": __name__})
        wrapped = wrapped_type.__new__(wrapped_type)
        wrapped.__dict__.update(module.__dict__)  # shares _parameters/_modules dicts with module
        wrapped._init_training_state()
        return wrapped

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The compiled optimizer."""
        return compiled(self._config, "optimizer").optimizer

    @property
    def compiled_metrics(self) -> dict[str, Metric]:
        """The compiled metrics by name (empty before ``compile``)."""
        config = self._config
        return config.metrics if config is not None else {}

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch over all ``fit`` calls: epoch, loss, metrics, val_*, lr."""
        import pandas as pd  # pandas takes most of a second to import: only when asked
        return pd.DataFrame(self._record.history_rows)

    @property
    def validation_history(self) -> pd.DataFrame:
        """One row per ``fit(validation_every_n_steps=N)`` validation: step (global), epoch, val_*."""
        import pandas as pd
        return pd.DataFrame(self._record.validation_rows)

    @property
    def device(self) -> torch.device:
        """The compiled device, else the device of the first parameter (CPU if none)."""
        if self._config is not None:
            return self._config.device
        first = next(self.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def compile(self, *args: Any, optimizer: Any = None, loss: Any = None, metrics: Any = None,
                optimizer_kwargs: dict[str, Any] | None = None,
                regularizers: Any = None, loss_weights: Any = None, class_weight: dict | None = None,
                device: str | torch.device = "auto", precision: str | None = None, amp: bool = False,
                lr_scheduler: Any = None, scheduler_interval: str = "epoch", scheduler_monitor: str = "val_loss",
                grad_accum_steps: int = 1, grad_clip_norm: float | None = None,
                grad_clip_value: float | None = None, strategy: str | FSDP = "auto",
                jit_compile: bool | dict[str, Any] = False, channels_last: bool = False,
                data_on_device: bool | str = "auto", sync_batchnorm: bool = False,
                loss_func: Any = None, metrics_dict: dict | None = None, **unknown: Any) -> None:
        """Configure training. Calling again replaces the whole configuration.

        Positionally ``compile(optimizer, loss, metrics)``, or torchkeras's ``compile(loss_func,
        optimizer, metrics_dict, device)`` when the first is a loss (a module or ``fn(y_pred, y)``).

        Args:
            optimizer: "adam" (the default), "adamw", "sgd", "rmsprop", "adagrad"; an
                optimizer built on this model's parameters; or ``callable(params)``.
            loss: a name ("mse", "mae", "bce", "bce_with_logits", "cross_entropy",
                "nll", "huber", "smooth_l1", "focal"), an ``nn.Module``, a function
                ``fn(y_pred, y_true)`` (may return a dict with a "loss" key whose
                other entries are logged), or a dict/list of those per output.
            metrics: ``{name: spec}`` or a list of specs; a spec is a name (see
                :mod:`kerastorch.metrics`), a function ``fn(y_pred, y_true)``, or a
                ``torchmetrics.Metric``.
            optimizer_kwargs: hyperparameters of a named optimizer, e.g. ``{"lr": 1e-2}``.
            regularizers: weight penalties (:mod:`kerastorch.regularizers`), logged as ``reg_loss``.
            loss_weights: per-output weights for a dict/list ``loss``.
            class_weight: ``{class_index: weight}`` for built-in losses.
            device: "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
            precision: "32", "bf16-mixed" or "16-mixed"; ``amp=True`` picks the best mixed mode.
            lr_scheduler: a scheduler on ``model.optimizer``, or ``optimizer -> scheduler``
                (e.g. ``lambda opt: StepLR(opt, 10)``), stepped each ``scheduler_interval``
                ("epoch", "step"); ReduceLROnPlateau gets ``scheduler_monitor`` ("val_loss").
            grad_accum_steps: batches per optimizer step.
            grad_clip_norm / grad_clip_value: gradient clipping before each step (unscaled under fp16).
            strategy: "auto" (DDP under ``torchrun``, else one process), "ddp", "fsdp" (FSDP2 shards
                parameters, gradients and optimizer state over the torchrun processes; ``kt.FSDP(...)``
                picks the units: :mod:`kerastorch.fsdp`) or "dp" (``nn.DataParallel`` over the visible GPUs;
                fewer than 2: a warning, no wrap). "ddp"/"fsdp" outside torchrun warn and train in one process.
                The deprecated ``data_parallel=True`` (or GPU ids) means "dp".
            jit_compile: True, or a dict of ``torch.compile`` keyword arguments.
            channels_last: the model and 4-D inputs in channels_last (conv nets on GPU).
            data_on_device: keep in-memory training data on the GPU ("auto": under 1 GiB).
            sync_batchnorm: BatchNorm -> SyncBatchNorm before the DDP wrap (torchrun only; else a warning).
            loss_func / metrics_dict: the torchkeras names for ``loss`` / ``metrics``.

        Raises:
            TypeError: an unknown keyword argument (named, with the closest valid one).
            ValueError: a bad value. Every argument is checked before anything
                changes, so a failed ``compile`` keeps the previous configuration.

        Example:
            >>> net = Model.wrap(nn.Linear(3, 1))
            >>> net.compile("adam", "bce_with_logits", ["accuracy"], optimizer_kwargs={"lr": 1e-2}, device="cpu")
        """
        strategy = legacy_strategy(strategy, unknown)  # the deprecated data_parallel=, as a strategy
        call = (args, {name: value for name, value in locals().items() if name not in ("self", "args", "unknown")})
        reject_unknown_arguments("compile", unknown, compiling.COMPILE_ARGUMENTS, compiling.COMPILE_HINTS)
        refuse_while_running(self, "compile")
        named, form = torchkeras.compile_arguments(args, optimizer=optimizer, loss=loss, metrics=metrics,
                                                   device=device, loss_func=loss_func, metrics_dict=metrics_dict)
        self._config = compiling.build_config(
            self, **named, optimizer_kwargs=optimizer_kwargs,
            regularizers=regularizers, loss_weights=loss_weights, class_weight=class_weight,
            precision=precision, amp=amp, lr_scheduler=lr_scheduler, scheduler_interval=scheduler_interval,
            scheduler_monitor=scheduler_monitor, grad_accum_steps=grad_accum_steps,
            grad_clip_norm=grad_clip_norm, grad_clip_value=grad_clip_value, strategy=strategy,
            jit_compile=jit_compile, channels_last=channels_last, data_on_device=data_on_device,
            sync_batchnorm=sync_batchnorm)
        self._config.torchkeras_form = form
        self._compile_call = call  # how it was compiled: fit(processes=N) compiles the same way in each worker

    def forward_batch(self, x: Any) -> Any:
        """Call the model on ``x``: a tuple/list is passed positionally, a dict as keywords (in fit, evaluate
        and predict ``self(...)`` goes through DDP / DataParallel / torch.compile: :mod:`~.engine.execution`)."""
        if isinstance(x, (tuple, list)):
            return self(*x)
        if isinstance(x, dict):
            return self(**x)
        return self(x)

    def _step_runner(self, kind: str, session: Session | None = None) -> Any:
        """The engine's per-batch callable for "train" / "test" / "predict": the Keras-form step, routed."""
        step, user_code = torchkeras.resolve_step(self, kind, Model)
        return execution.step_runner(self, self._config, kind, step, user_code, session)

    def compute_loss(self, y_pred: Any, y: Any, sample_weight: torch.Tensor | None = None,
                     training: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(objective, logs)``; ``logs["loss"]`` is the data loss (comparable with ``val_loss``).

        With regularizers the objective is loss + penalty, its exact gradient added in :meth:`backward_and_step` (fused,
        not differentiated here); ``reg_loss`` is it at each epoch's end (not validation). Own losses: ``model_loss``.
        """
        config = self._config
        if config is None or config.loss is None or type(y_pred) is not torch.Tensor:  # a ModelOutput, dict, tuple
            return loss_and_logs(y_pred, y, sample_weight, config, self._session)
        loss, components = config.loss(y_pred, y, sample_weight)
        return loss, {"loss": loss.detach(), **components}

    def update_metrics(self, y_pred: Any, y: Any, sample_weight: torch.Tensor | None = None) -> None:
        """Add a batch to every compiled metric (on the device, no host sync)."""
        config = self._config
        for name, metric in (config.metrics if config is not None else {}).items():
            try:  # free until something raises (Python 3.11): then the error names the metric
                metric.update(y_pred, y, sample_weight)
            except Exception as err:
                reraise_with(err, f"(in the metric {name!r} of compile(metrics=...))")

    def backward_and_step(self, loss: torch.Tensor, num_items: Any = None) -> None:
        """Backward, ``on_backward_end`` hooks and, on update steps, penalty gradient, clipping and
        the optimizer step (:func:`kerastorch.engine.step.optimizer_step`; outside fit, every call).

        With ``grad_accum_steps`` the batches of a window are weighted by what their mean ``loss``
        averaged over: the batch's samples, or ``num_items`` (e.g. the tokens of a token-level loss,
        an int or a device tensor), so the window's gradient is that of its concatenated batch.

        Example:
            >>> net = Model.wrap(nn.Linear(2, 1)); net.compile("sgd", "mse", device="cpu")
            >>> net.backward_and_step(net(torch.ones(1, 2)).pow(2).mean())
        """
        config = self._config
        if config is None:
            raise RuntimeError("You must call `compile()` before `backward_and_step()`. "
                               "Example: model.compile(optimizer='adam', loss='mse')")
        optimizer_step(loss, config, self._session, num_items)

    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One training step on a device batch; returns scalar tensors to log.

        Every returned value is averaged over the epoch (weighted by batch size)
        and logged under its key. Override it to customise training:

        Example:
            >>> class TwoLosses(nn.Linear, Model):  # a network class, then Model (as Model.wrap does)
            ...     def train_step(self, batch):
            ...         x, y = batch
            ...         y_pred = self(x)
            ...         mse = torch.nn.functional.mse_loss(y_pred, y)
            ...         l1 = y_pred.abs().mean()
            ...         self.backward_and_step(mse + 0.1 * l1)
            ...         self.update_metrics(y_pred, y)
            ...         return {"loss": mse.detach(), "l1": l1.detach()}
            >>> net = TwoLosses(2, 1); net.compile("sgd", "mse", device="cpu")
            >>> list(net.fit(torch.randn(8, 2), torch.randn(8, 1), verbose=0).columns)
            ['epoch', 'loss', 'l1', 'lr']
        """
        x, y, sample_weight = unpack_batch(batch)
        config: compiling.CompileConfig = self._config  # type: ignore[assignment]  # fit requires compile()
        precision = config.precision
        with precision.context or precision.autocast():  # fp32: one shared null context, no call
            y_pred = self(x) if type(x) is torch.Tensor else self.forward_batch(x)
            loss, logs = self.compute_loss(y_pred, y, sample_weight)
        optimizer_step(loss, config, self._session)  # what backward_and_step does, a frame less
        self.update_metrics(y_pred if type(y_pred) is torch.Tensor else model_predictions(y_pred, y), y, sample_weight)
        return logs

    def test_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One evaluation step (under inference mode); returns scalar tensors to log."""
        x, y, sample_weight = unpack_batch(batch)
        config: compiling.CompileConfig = self._config  # type: ignore[assignment]  # evaluate requires compile()
        with config.precision.autocast():
            y_pred = self.forward_batch(x)
            scored = config.loss is not None or carries_loss(y_pred, y)
            logs = self.compute_loss(y_pred, y, sample_weight, training=False)[1] if scored else {}
        self.update_metrics(y_pred if type(y_pred) is torch.Tensor else model_predictions(y_pred, y), y, sample_weight)
        return logs

    def predict_step(self, batch: Any) -> Any:
        """One prediction step: the model's output for the batch's ``x`` (of a ModelOutput, its logits)."""
        x, _, _ = unpack_batch(batch)
        with self._config.precision.autocast() if self._config is not None else contextlib.nullcontext():
            return y_pred if type(y_pred := self.forward_batch(x)) is torch.Tensor else model_predictions(y_pred)

    # ----------------------------------------------------------------- user API
    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: int | str = 1, callbacks: Sequence[Callback] | None = None,
            validation_data: Any = None, validation_split: float = 0.0, shuffle: bool = True,
            initial_epoch: int = 0, steps_per_epoch: int | None = None, *,
            sample_weight: Any = None, dl_train: Any = None, dl_val: Any = None,
            log_step_freq: int | None = None, resume_from: Any = None,
            trust_checkpoint: bool = False, plot: Any = "auto", validation_freq: Any = 1,
            validation_steps: int | None = None, fast_dev_run: bool | int = False, overfit_batches: int = 0,
            max_time: Any = None, class_weight: dict | None = None,
            validation_every_n_steps: int | None = None, processes: int | None = None) -> pd.DataFrame:
        """Train; return ``model.history``: one row per epoch of every fit so far, epochs numbered on from the last.

        Args:
            x, y: training data (tensors, arrays, DataFrames, tuples/dicts of those
                for several inputs), or a Dataset / DataLoader in ``x`` alone.
            batch_size: samples per batch for in-memory data (default 32).
            epochs: index of the last epoch to run (with ``initial_epoch``, Keras-style).
            verbose: 0 silent, 1 progress bar and a table row per epoch, 2 one line per epoch.
            callbacks: :class:`~kerastorch.callbacks.Callback` instances.
            validation_data: ``(x_val, y_val)``, ``(x_val, y_val, w)``, a Dataset or DataLoader.
            validation_split: last fraction of in-memory ``x``/``y`` held out for validation.
            shuffle: reshuffle in-memory data every epoch.
            initial_epoch: epoch to start from (0-based).
            steps_per_epoch: cap on batches per epoch.
            sample_weight: per-sample weights for in-memory data. class_weight: ``{class: weight}`` for this fit
                (Keras's place; replaces compile's); a class left out weighs 1.
            dl_train, dl_val, log_step_freq: torchkeras's ``fit(epochs, dl_train, dl_val=None, log_step_freq=1)``.
            resume_from: a training checkpoint to continue from exactly (also mid-epoch), or
                "auto": the newest valid one this fit's checkpoint callbacks wrote.
            trust_checkpoint: allow checkpoints that need full unpickling (files you trust only).
            plot: a live loss/metrics figure (:class:`~kerastorch.callbacks.LivePlot`): "auto" draws it in notebooks
                with matplotlib installed, True always, False never, a path writes it to that PNG each epoch.
            validation_freq, validation_steps, validation_every_n_steps, fast_dev_run, overfit_batches, max_time:
                validation cadence, limits and debug runs, see :func:`kerastorch.engine.epochs.training_controls`.
            processes: train in this many new processes with DDP (e.g. one per GPU, from a notebook), then load
                rank 0's weights, optimizer state and history here: :func:`kerastorch.launch.fit_in_processes`.

        Ctrl-C stops after the batch: checkpoint callbacks save an interrupt checkpoint, the history keeps
        the finished epochs, ``KeyboardInterrupt`` is raised (twice: at once); SIGTERM: ``SystemExit(143)``.
        A fit while a call runs, or any call from another thread, raises RuntimeError; callbacks may evaluate/predict.

        Example:
            >>> net = Model.wrap(nn.Linear(2, 1)); net.compile("sgd", "mse", device="cpu")
            >>> net.fit(torch.randn(10, 2), torch.randn(10, 1), batch_size=4, epochs=1, verbose=0).shape
            (1, 3)
        """
        if processes is not None:  # the same fit in N spawned workers (kerastorch.launch), its result loaded here
            arguments = {name: value for name, value in locals().items() if name not in ("self", "processes")}
            from .launch import fit_in_processes
            return fit_in_processes(self, processes, arguments)
        named, torchkeras_form = torchkeras.fit_arguments(x, y, batch_size, epochs, validation_data, dl_train,
                                                          dl_val, log_step_freq)
        config = compiled(self._config, "fit")
        fit_engine.fit(self, config, self._record, **named, verbose=verbose, callbacks=callbacks,
                       validation_split=validation_split, shuffle=shuffle, initial_epoch=initial_epoch,
                       steps_per_epoch=steps_per_epoch, sample_weight=sample_weight, torchkeras_form=torchkeras_form,
                       resume_from=resume_from, trust_checkpoint=trust_checkpoint,
                       custom_logs=compiling.may_log_custom_keys(self, Model, self._config), plot=plot,
                       controls=training_controls(validation_freq, validation_steps, max_time, fast_dev_run,
                                                  overfit_batches, validation_every_n_steps), class_weight=class_weight)
        return torchkeras.history_frame(self.history) if torchkeras_form else self.history

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: int | str = 0, callbacks: Sequence[Callback] | None = None,
                 sample_weight: Any = None, return_dict: bool = True) -> Any:
        """Loss and metrics, exact over all samples: ``{"loss": ..., "acc": ...}``; ``return_dict=False``: Keras's list.

        Example:
            >>> net = Model.wrap(nn.Linear(2, 1)); net.compile("sgd", "mse", device="cpu")
            >>> sorted(net.evaluate(torch.zeros(3, 2), torch.zeros(3, 1)))
            ['loss']
        """
        config = compiled(self._config, "evaluate")
        logs = evaluate_engine.evaluate(self, config, self._record, x, y, batch_size, verbose, callbacks, sample_weight)
        return torchkeras.evaluate_logs(logs) if config.torchkeras_form else keras_result(logs, return_dict)

    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = 0,
                callbacks: Sequence[Callback] | None = None) -> Any:
        """Model outputs for ``x`` on the CPU, concatenated over batches (tuples/dicts kept).

        Eval mode, ``torch.inference_mode``; each batch's output goes to the CPU as it is made (into one
        buffer when the sample count is known; pinned, with asynchronous copies, on CUDA).

        Example:
            >>> Model.wrap(nn.Linear(2, 3)).predict(torch.zeros(5, 2)).shape
            torch.Size([5, 3])
        """
        return predict_engine.predict(self, self._config, self._record, x, batch_size, verbose, callbacks,
                                      self.device)

    def running_logs(self) -> dict[str, float]:
        """The running epoch's means and metrics so far (one host sync; for progress displays)."""
        return {} if self._session is None else self._session.running_logs()
