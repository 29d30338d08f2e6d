"""TensorBoard: write the epoch logs (and optionally batch losses) as TensorBoard scalars."""
from __future__ import annotations

import os
from typing import Any

from ..checks import require_positive_int_or_epoch
from ..distributed import is_rank_zero
from ..readback import read_scalars
from .base import Callback

MISSING_PACKAGE = ("TensorBoard callback needs the `tensorboard` package: "
                   "pip install kerastorch[tensorboard]")


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(MISSING_PACKAGE) from err
    return SummaryWriter


class TensorBoard(Callback):
    """Log training curves for TensorBoard (``tensorboard --logdir logs``).

    Laid out as Keras does, so train and validation curves share one chart:
    ``<log_dir>/train`` gets every training key ``k`` (loss, metrics, ``lr``,
    ...) under the tag ``epoch_<k>``, and ``<log_dir>/validation`` gets each
    ``val_<k>`` under the same tag ``epoch_<k>``. The step of an epoch value is
    the epoch number counted from 1, as in the history frame and printed tables.
    Scalars are stored as float32 (TensorBoard's format). Each epoch is flushed
    to disk; the writers are closed when training ends. Only rank 0 writes
    under ``torchrun``.

    Args:
        log_dir: the folder of the event files.
        update_freq: "epoch", or an integer N: the training batch logs are also
            written every N batches under ``batch_<k>`` in ``train``, with the
            global step (batches since the first fit) as the step. Each such
            write reads the batch's values from the device (one sync per N batches).

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

    def __new__(cls, log_dir: str | os.PathLike = "logs", update_freq: str | int = "epoch") -> TensorBoard:
        # Only an instance that writes batch values has a batch hook, so the
        # default adds nothing to the training batch loop.
        if cls is TensorBoard and update_freq != "epoch":
            cls = _BatchTensorBoard
        return super().__new__(cls)

    def __init__(self, log_dir: str | os.PathLike = "logs", update_freq: str | int = "epoch") -> None:
        super().__init__()
        require_positive_int_or_epoch("update_freq", update_freq)
        self._writer_class = _summary_writer_class()
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._writers: dict[str, Any] = {}

    def _writer(self, name: str) -> Any:
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = self._writer_class(log_dir=os.path.join(self.log_dir, name))
        return writer

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._close()  # a previous fit that raised may have left writers open
        if is_rank_zero():
            self._writer("train")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self._writers:
            return
        step = epoch + 1
        for key, value in (logs or {}).items():
            name, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(name).add_scalar(f"epoch_{tag}", value, step)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._close()

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
