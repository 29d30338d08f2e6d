"""TensorBoard: the epoch logs (and optionally batch losses) as scalars, the model graph, histograms."""
from __future__ import annotations

import os
import time
import warnings
from typing import Any

import torch

from ..checks import require_non_negative_int, require_positive_int_or_epoch
from ..distributed import is_rank_zero
from ..readback import read_scalars
from .arguments import require_folder
from .base import Callback

MISSING_PACKAGE = ("TensorBoard callback needs the `tensorboard` package: "
                   "pip install kerastorch[tensorboard]")


#: Epoch-log keys whose TensorBoard tag is Keras's name for them.
KERAS_TAGS = {"lr": "learning_rate"}


def weight_tag(name: str) -> str:
    """A parameter's TensorBoard name as Keras writes a weight's: ``<layer>/<weight>``.

    Example:
        >>> weight_tag("encoder.0.weight")
        'encoder/0/weight'
    """
    return name.replace(".", "/")


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(MISSING_PACKAGE) from err
    return SummaryWriter


class TensorBoard(Callback):
    """Log training curves for TensorBoard (``tensorboard --logdir logs``).

    Laid out and named as Keras does, so train and validation curves share one chart:
    ``<log_dir>/train`` gets every training key ``k`` (loss, metrics, ...) under the
    tag ``epoch_<k>`` and the logged ``lr`` as ``epoch_learning_rate``;
    ``<log_dir>/validation`` gets each ``val_<k>`` under the same tag ``epoch_<k>``
    and, at the end of each validation pass (and of ``evaluate``), each value as
    ``evaluation_<k>_vs_iterations`` with the global step (batches trained) as its
    step. The step of an epoch value is the epoch number counted from 1, as in the
    history frame and printed tables (Keras counts from 0). Scalars are stored as
    float32 (TensorBoard's format). Each epoch is flushed to disk; the writers are
    closed when training ends. Only rank 0 writes under ``torchrun``.

    Args:
        log_dir: the folder of the event files.
        update_freq: "epoch", or an integer N: the training batch logs are also
            written every N batches under ``batch_<k>`` in ``train``, with the
            global step (batches since the first fit) as the step. Each such
            write reads the batch's values from the device (one sync per N batches).
        histogram_freq: every N epochs, histograms of each parameter, named as Keras
            names them, ``<layer>/<weight>/histogram`` (``fc.weight`` gives
            ``fc/weight/histogram``), and of its gradient in the epoch's last batch
            (``fc/weight/gradients``, not in Keras) in ``train``; 0 (the default, as in
            Keras) writes none and adds no hook.
        write_graph: write the model's graph once, traced on the first training batch
            (in eval mode, with the RNG states kept, so training is unchanged).
        write_steps_per_second: as in Keras, also write the training speed: each
            epoch's batches per second of wall time as ``epoch_steps_per_second`` and,
            with an integer ``update_freq``, the speed since the previous batch write as
            ``batch_steps_per_second``.

    Raises:
        ImportError: when the ``tensorboard`` package is not installed.

    Example:
        >>> import os, tempfile, torch; from kerastorch import Model
        >>> log_dir = os.path.join(tempfile.mkdtemp(), "run1")
        >>> net = Model.wrap(torch.nn.Linear(2, 1)); net.compile("sgd", "mse", device="cpu")
        >>> x, y = torch.randn(8, 2), torch.randn(8, 1)
        >>> _ = net.fit(x, y, epochs=2, validation_data=(x, y), verbose=0, callbacks=[TensorBoard(log_dir)])
        >>> sorted(os.listdir(log_dir))
        ['train', 'validation']
    """

    writes_files = True  # fit(fast_dev_run=...) leaves it out

    def __new__(cls, log_dir: str | os.PathLike = "logs", update_freq: str | int = "epoch",
                *args: Any, **kwargs: Any) -> TensorBoard:
        # Only an instance that writes batch values has a batch hook, so the
        # default adds nothing to the training batch loop.
        if cls is TensorBoard and update_freq != "epoch":
            cls = _BatchTensorBoard
        return super().__new__(cls)

    def __init__(self, log_dir: str | os.PathLike = "logs", update_freq: str | int = "epoch",
                 histogram_freq: int = 0, write_graph: bool = True, write_steps_per_second: bool = False) -> None:
        super().__init__()
        require_positive_int_or_epoch("update_freq", update_freq)
        require_non_negative_int("histogram_freq", histogram_freq)
        self._writer_class = _summary_writer_class()
        self.log_dir = os.fspath(log_dir)
        self.update_freq, self.histogram_freq, self.write_graph = update_freq, histogram_freq, write_graph
        self.write_steps_per_second = write_steps_per_second
        self.inactive_hooks = (*(() if histogram_freq else ("on_backward_end",)),
                               *(() if write_steps_per_second else ("on_epoch_begin",)))
        self._training = False
        # (time, global step) the epoch's and the batch writes' speeds are measured from (write_steps_per_second)
        self._epoch_mark: tuple[float, int] | None = None
        self._batch_mark: tuple[float, int] | None = None
        self._writers: dict[str, Any] = {}
        self._graph_input: Any = None
        self._graph_hook: Any = None
        self._graph_written = False

    def _writer(self, name: str) -> Any:
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = self._writer_class(log_dir=os.path.join(self.log_dir, name))
        return writer

    def check_params(self) -> None:
        require_folder(self.log_dir, self, "log_dir")

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._close()  # a previous fit that raised may have left writers open
        self._training = True
        if is_rank_zero():
            self._writer("train")
            if self.write_graph and not self._graph_written:
                # Keep the first batch's input (a reference, no copy) to trace the graph at epoch end.
                self._graph_hook = self.model.register_forward_pre_hook(self._keep_graph_input, with_kwargs=True)

    def _keep_graph_input(self, module: Any, args: tuple, kwargs: dict) -> None:
        self._graph_input = args if not kwargs else None  # add_graph traces positional inputs only
        self._remove_graph_hook()

    def _remove_graph_hook(self) -> None:
        if self._graph_hook is not None:
            self._graph_hook.remove()
            self._graph_hook = None

    def on_backward_end(self, batch: int, logs: dict | None = None) -> None:
        last = batch + 1 == self.params.get("steps")
        if self._writers and last and (self.session.epoch + 1) % self.histogram_freq == 0:
            writer, step = self._writer("train"), self.epoch_number(self.session.epoch)
            for name, parameter in self.model.named_parameters():
                if parameter.grad is not None:  # host-sync: once per histogram_freq epochs
                    writer.add_histogram(f"{weight_tag(name)}/gradients", parameter.grad, step)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_mark = self._batch_mark = (time.perf_counter(), self.session.record.global_step)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self._writers:
            return
        step = self.epoch_number(epoch)
        if self._graph_input is not None:
            self._add_graph()
        if self.histogram_freq and step % self.histogram_freq == 0:
            for name, parameter in self.model.named_parameters():  # host-sync: once per histogram_freq epochs
                self._writer("train").add_histogram(f"{weight_tag(name)}/histogram", parameter, step)
        for key, value in (logs or {}).items():
            name, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", KERAS_TAGS.get(key, key))
            self._writer(name).add_scalar(f"epoch_{tag}", value, step)
        if self.write_steps_per_second and self._epoch_mark is not None:
            speed = self._steps_per_second(self._epoch_mark)  # the epoch's logs were read: the device caught up
            if speed is not None:
                self._writer("train").add_scalar("epoch_steps_per_second", speed, step)
        for writer in self._writers.values():
            writer.flush()

    def _steps_per_second(self, mark: tuple[float, int]) -> float | None:
        """Batches trained per second since ``mark`` (time, global step); None when no time has passed."""
        (start, first), now = mark, time.perf_counter()
        return (self.session.record.global_step - first) / (now - start) if now > start else None

    def on_test_end(self, logs: dict | None = None) -> None:
        """Keras's ``evaluation_<k>_vs_iterations`` in ``validation``, at fit's validation passes and evaluate."""
        if not logs or not is_rank_zero():
            return
        step = self.session.record.global_step if self.session is not None else 0
        writer = self._writer("validation")
        for key, value in logs.items():
            writer.add_scalar(f"evaluation_{key[4:] if key.startswith('val_') else key}_vs_iterations", value, step)
        if not self._training:  # evaluate(): no epoch end will flush or close it
            self._close()

    def _add_graph(self) -> None:
        """Trace the model on the kept input, in eval mode, without moving any RNG or buffer."""
        inputs, self._graph_input, self._graph_written = self._graph_input, None, True
        was_training = self.model.training
        devices = [inputs[0].device.index or 0] if inputs and getattr(inputs[0], "is_cuda", False) else []
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad(), warnings.catch_warnings():
                # add_graph traces with torch.jit, which warns about its own deprecation: not the user's.
                warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
                self._writer("train").add_graph(self.model, inputs)
        finally:
            self.model.train(was_training)

    def on_train_end(self, logs: dict | None = None) -> None:
        self._remove_graph_hook()
        self._close()
        self._training = False

    def on_exception(self, error: BaseException) -> None:
        """The call failed: what was written so far reaches the disk, and a later evaluate() closes its writer."""
        self.on_train_end()

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class _BatchTensorBoard(TensorBoard):
    """TensorBoard with an integer ``update_freq``: also writes batch values."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self._writers or not logs:
            return
        step = self.session.record.global_step
        if step % self.update_freq:
            return
        writer = self._writer("train")
        for key, value in read_scalars(logs).items():
            writer.add_scalar(f"batch_{key}", value, step)
        if self.write_steps_per_second and self._batch_mark is not None:
            speed = self._steps_per_second(self._batch_mark)  # read_scalars waited: the time is the work's
            self._batch_mark = (time.perf_counter(), step)
            if speed is not None:
                writer.add_scalar("batch_steps_per_second", speed, step)
