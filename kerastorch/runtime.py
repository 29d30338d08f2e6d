"""Runtime: the per-model training machinery that is not the network.

A :class:`kerastorch.Model` keeps one ``Runtime`` in ``model._kt``: the
compiled configuration, the callbacks of the running call, the history rows,
the train state, the gradient-accumulation plan, pending signals and resume
requests. It is a plain object so the hot loop reads and writes its
attributes without ``nn.Module``'s attribute machinery, and nothing here
shows up in ``state_dict()``.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from typing import Any, Callable, Iterator

import torch

from . import distributed
from . import resume as resume_module
from .callbacks.base import CallbackList
from .callbacks.history import order_logs
from .checkpoint import capture_rng_state, restore_rng_state, safe_load
from .config import CompileConfig
from .loops import LogAccumulator
from .state import TrainState


class Runtime:
    """Training machinery attached to one model (see module docstring)."""

    def __init__(self) -> None:
        self.config: CompileConfig | None = None
        self.hooks: CallbackList = CallbackList()
        self.history_rows: list[dict[str, Any]] = []
        self.state = TrainState()
        self.accumulator: LogAccumulator | None = None
        self.forward_fn: Callable[..., Any] | None = None       # training forward: module or DP/DDP/compiled wrapper
        self.eval_forward_fn: Callable[..., Any] | None = None  # evaluation forward: never DDP
        self.ddp: Any = None
        self.channels_last = False
        self.data_on_device: bool | str = "auto"
        self.generator: torch.Generator | None = None      # shuffling order, saved in checkpoints
        self.accum_divisor = 1
        self.update_now = True
        self.pending_signal: str | None = None
        self.resume_request: tuple[str, bool] | None = None  # (path, trust_checkpoint)
        self.epoch_start_rng: dict[str, Any] | None = None
        self.epoch_start_generator: torch.Tensor | None = None
        self.nonfinite = False
        self.deferred: list[Callable[[], None]] = []
        self._mid_epoch: dict[str, Any] | None = None

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the current hook has been called on every callback (checkpoint writes)."""
        self.deferred.append(action)

    def run_deferred(self) -> None:
        actions, self.deferred = self.deferred, []
        for action in actions:
            action()

    # ------------------------------------------------------------ execution
    def configure_execution(self, model: Any, data_parallel: Any, jit_compile: Any,
                            channels_last: bool, data_on_device: Any) -> None:
        """Build the forward callables: DDP under torchrun, else DataParallel if asked; torch.compile on top."""
        device = self.config.device
        train_fn = eval_fn = model
        self.ddp = None
        if distributed.launched_distributed():
            distributed.ensure_process_group(device)
            train_fn = self.ddp = distributed.wrap_ddp(model, device)
        elif data_parallel:
            train_fn = eval_fn = distributed.wrap_data_parallel(model, data_parallel)
        if jit_compile:
            options = jit_compile if isinstance(jit_compile, dict) else {}
            if not isinstance(jit_compile, (bool, dict)):
                raise TypeError(f"`jit_compile` must be a bool or a dict of torch.compile options. "
                                f"Received: jit_compile={jit_compile!r}")
            compiled_eval = torch.compile(eval_fn, **options)
            train_fn = compiled_eval if train_fn is eval_fn else torch.compile(train_fn, **options)
            eval_fn = compiled_eval
        if data_on_device not in (True, False, "auto"):
            raise ValueError(f"`data_on_device` must be True, False or 'auto'. Received: {data_on_device!r}")
        self.forward_fn, self.eval_forward_fn = train_fn, eval_fn
        self.channels_last, self.data_on_device = channels_last, data_on_device

    def sync_context(self) -> contextlib.AbstractContextManager:
        """DDP's no_sync on accumulation micro-steps that do not update, else nothing."""
        if self.ddp is not None and not self.update_now:
            return self.ddp.no_sync()
        return contextlib.nullcontext()

    # ------------------------------------------------------------ accumulation
    def plan_micro_step(self, index: int, steps: int) -> None:
        """Set the loss divisor and whether to step the optimizer for batch ``index``.

        The divisor is the real size of the accumulation window, so a short last
        window (steps not divisible by k) is averaged over its own batches.
        """
        k = self.config.grad_accum_steps
        window_start = (index // k) * k
        self.accum_divisor = min(k, steps - window_start)
        self.update_now = (index + 1) % k == 0 or index + 1 >= steps

    # ------------------------------------------------------------ epochs
    def prepare_epoch(self, epoch: int, source: Any) -> None:
        """Per-epoch set-up of the data: DistributedSampler.set_epoch where present."""
        self.accum_divisor, self.update_now = 1, True
        sampler = getattr(getattr(source, "loader", None), "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def begin_epoch_accumulator(self, steps: int) -> LogAccumulator:
        """A fresh epoch accumulator and reset metrics (refilled when resuming mid-epoch)."""
        accumulator = LogAccumulator(steps)
        self.accumulator = accumulator
        middle = self._mid_epoch
        if middle is not None:
            accumulator.load_state_dict(middle["partial_logs"], self.config.device)
        else:  # a resumed epoch goes on with the count restored from its checkpoint's scaler state
            self.config.precision.scaler.reset_skip_count()
        for name, metric in self.config.metrics.items():
            metric.reset()
            if middle is not None and middle["metrics"].get(name):
                metric.load_state_dict(middle["metrics"][name])
        return accumulator

    def start_epoch_iterator(self, source: Any) -> Iterator[Any]:
        """``iter(source)``, recording (or, when resuming mid-epoch, replaying) the epoch's RNG."""
        middle, self._mid_epoch = self._mid_epoch, None
        if middle is not None:
            restore_rng_state(middle["epoch_start_rng"])
            if self.generator is not None and middle["epoch_start_generator"] is not None:
                self.generator.set_state(middle["epoch_start_generator"])
            source.skip_batches = middle["batch"]
        self.epoch_start_rng = capture_rng_state()
        self.epoch_start_generator = self.generator.get_state() if self.generator is not None else None
        iterator = iter(source)
        if middle is not None:
            restore_rng_state(middle["rng"])  # dropout etc. continue from where the run stopped
        return iterator

    def step_epoch_scheduler(self, logs: dict[str, float]) -> None:
        scheduler = self.config.lr_scheduler
        if scheduler is None or self.config.scheduler_interval != "epoch":
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitor = self.config.extra.get("scheduler_monitor", "val_loss")
            if monitor not in logs:
                raise ValueError(f"The ReduceLROnPlateau scheduler monitors {monitor!r}, which is not "
                                 f"logged. Available: {sorted(logs)}")
            scheduler.step(logs[monitor])
        else:
            scheduler.step()

    # ------------------------------------------------------------ resume
    def request_resume(self, path: str, trust_checkpoint: bool = False) -> None:
        """Ask the running ``fit`` to resume from ``path`` once on_train_begin hooks have run."""
        self.resume_request = (str(path), trust_checkpoint)

    def apply_resume(self, initial_epoch: int) -> int:
        """Load a requested checkpoint; return the epoch to start from."""
        if self.resume_request is None:
            return initial_epoch
        path, trust = self.resume_request
        self.resume_request = None
        checkpoint = safe_load(path, trust_checkpoint=trust)
        resume_module.restore(self.hooks.model, checkpoint, path)
        if checkpoint["batch"] > 0:
            self._mid_epoch = {key: checkpoint[key] for key in
                               ("batch", "epoch_start_rng", "epoch_start_generator", "partial_logs", "metrics", "rng")}
        else:
            restore_rng_state(checkpoint["rng"])
        self.state.epoch = checkpoint["epoch"]
        return checkpoint["epoch"]

    # ------------------------------------------------------------ failures
    def stop_for_nonfinite(self, epoch: int, step: int, logs: dict[str, float]) -> None:
        """Stop without calling on_epoch_end, so no callback saves the non-finite weights."""
        self.nonfinite = True
        lr = float(self.config.optimizer.param_groups[0]["lr"])
        self.history_rows.append({"epoch": epoch + 1, **order_logs({**logs, "lr": lr})})
        self.hooks.model.stop_training = True
        warnings.warn(f"Non-finite training loss at epoch {epoch + 1}, batch {step} (epochs count "
                      "from 1 as in the history, batches from 0 as in callbacks). Training stopped; "
                      "no checkpoint was written from this epoch.", RuntimeWarning, stacklevel=2)

    @contextlib.contextmanager
    def signal_guard(self) -> Iterator[None]:
        """Turn SIGINT/SIGTERM into a flag the batch loop checks; restore handlers after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum: int, frame: Any) -> None:
            if signum == signal.SIGINT and self.pending_signal == "SIGINT":
                raise KeyboardInterrupt  # a second Ctrl-C does not wait for the batch to end
            self.pending_signal = "SIGINT" if signum == signal.SIGINT else "SIGTERM"

        self.pending_signal = None
        for sig in previous:
            signal.signal(sig, on_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.pending_signal = None

    def handle_signal(self, hooks: CallbackList) -> None:
        """Save interrupt checkpoints, then raise KeyboardInterrupt (SIGINT) or SystemExit(143) (SIGTERM)."""
        received, self.pending_signal = self.pending_signal, None
        for callback in hooks.callbacks:
            save = getattr(callback, "save_interrupt_checkpoint", None)
            if save is not None:
                save()
        if received == "SIGTERM":
            raise SystemExit(143)  # 128 + SIGTERM, what a process killed by SIGTERM reports
        raise KeyboardInterrupt

