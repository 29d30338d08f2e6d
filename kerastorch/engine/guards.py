"""Guards around the loops: refuse what cannot work before training, and say what a failing batch was.

* :func:`check_validation_source`: a generator cannot feed more than one validation pass;
* :func:`guard_batchnorm`: refuse, in the first forward and before any optimizer step, a
  last training batch of 1 sample that a BatchNorm layer cannot train on;
* :func:`raise_batch_error`: an exception from a batch's step, re-raised with the batch's
  shapes and dtypes, or as the known mistake it is (dtype or feature-count mismatch);
* :func:`stop_for_exhausted_data`: a generator ran out before the epochs did.

Nothing here runs per step: the guards run once per call, the error path only on an error.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader

from ..checks import reraise_with
from ..data import IndexedLoader, LoaderSource, TensorBatcher, tree_leaves, unpack_batch

if TYPE_CHECKING:
    from .session import Session

_MATMUL_SHAPES = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
_DTYPE_WORDS = ("dtype", "scalar type", "type (", "Found dtype", "expected scalar", "must have the same")


def check_validation_source(source: Any, epochs_to_run: int) -> None:
    """A one-shot validation generator would be empty from the second epoch's validation on."""
    if source is not None and getattr(source, "one_shot", False) and epochs_to_run > 1:
        raise ValueError(f"`validation_data` is a generator, which can be iterated only once, but validation runs "
                         f"after each of the {epochs_to_run} epochs. Pass a DataLoader, an IterableDataset or "
                         "in-memory (x_val, y_val) instead.")


def check_validation_targets(train: Any, val: Any) -> None:
    """In-memory validation targets must be shaped like the training targets (host metadata only), so a
    mismatch is said before the first training step instead of after the first epoch.

    A target of shape ``(N,)`` and one of ``(N, 1)`` are alike (aligned as Keras does).
    """
    if not (isinstance(train, TensorBatcher) and isinstance(val, TensorBatcher)) or \
            len(train.arrays) < 2 or len(val.arrays) < 2:
        return
    train_y, val_y = train.arrays[1], val.arrays[1]
    if not (isinstance(train_y, torch.Tensor) and isinstance(val_y, torch.Tensor)) or \
            train_y.is_floating_point() != val_y.is_floating_point():
        return  # e.g. class indices and one-hot rows: two encodings cross_entropy both takes
    alike = {(), (1,)}
    expected, received = tuple(train_y.shape[1:]), tuple(val_y.shape[1:])
    if expected != received and not {expected, received} <= alike:
        raise ValueError(f"`validation_data` targets have shape {received} per sample, but the training targets "
                         f"have {expected}, so the validation loss could not compare them with the model's output "
                         f"(it would fail after the first training epoch). Received: y_val shape "
                         f"{tuple(val_y.shape)}, y shape {tuple(train_y.shape)}. Pass validation targets shaped "
                         "like the training targets.")


def _last_batch(source: Any) -> tuple[int, int, int] | None:
    """``(last batch size, samples, batch_size)`` of an epoch over ``source``, when it can be known."""
    if isinstance(source, TensorBatcher):
        samples, size = source.num_samples, source.batch_size
        if isinstance(source, IndexedLoader) and source.drop_last:
            return (size, samples, size) if samples >= size else None
        return samples % size or size, samples, size
    loader = source.loader if isinstance(source, LoaderSource) else None
    if not isinstance(loader, DataLoader) or loader.batch_size is None or loader.drop_last \
            or type(loader.batch_sampler) is not BatchSampler:
        return None
    try:
        samples = len(loader.sampler)  # type: ignore[arg-type]  # a Sampler without __len__ raises TypeError
    except TypeError:
        return None
    return samples % loader.batch_size or loader.batch_size, samples, loader.batch_size


def guard_batchnorm(model: nn.Module, source: Any, capped: bool) -> Callable[[], None]:
    """Refuse a last training batch of 1 sample that a BatchNorm layer would fail on; return the hooks' remover.

    torch raises only when the last batch of the first epoch arrives, after a whole epoch of
    optimizer steps. Whether a layer fails depends on what it receives (a batch of one image
    has many values per channel; one feature vector has one), so a forward pre-hook on each
    BatchNorm layer looks at the first training batch's input, before any optimizer step,
    and removes itself. Installed only when the last batch has 1 sample.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    last = None if capped or not norms else _last_batch(source)
    if last is None or last[0] != 1:
        return _nothing
    _, samples, size = last
    saved = {id(m): {k: v.clone() for k, v in m.state_dict().items()} for m in norms}
    handles: dict[int, Any] = {}

    def remove() -> None:
        for handle in handles.values():
            handle.remove()
        handles.clear()

    def hook(module: nn.Module, args: tuple) -> None:
        if not module.training or not args or not isinstance(args[0], torch.Tensor) or args[0].dim() < 2:
            return
        handle = handles.pop(id(module), None)
        if handle is not None:
            handle.remove()
        if args[0].numel() // max(args[0].shape[0] * args[0].shape[1], 1) != 1:
            return  # more than one value per channel: a batch of 1 trains
        remove()
        for norm in norms:  # layers before this one already updated their running statistics
            norm.load_state_dict(saved[id(norm)])
        other = next((b for b in (size - 1, size + 1, size - 2, size + 2) if b > 1 and samples % b != 1), None)
        suggestion = f"batch_size={other}" if other is not None else "another batch_size"
        raise ValueError(f"{type(module).__name__} cannot train on a batch of 1 sample (it needs more than one "
                         f"value per channel), and the last training batch of each epoch would hold 1 sample: "
                         f"{samples} samples with batch_size={size}. Use {suggestion}, drop one sample, or "
                         "pass a DataLoader with drop_last=True. Nothing was trained.")

    handles.update((id(norm), norm.register_forward_pre_hook(hook)) for norm in norms)
    return remove


def _nothing() -> None:
    return None


def _describe_batch(batch: Any) -> str:
    """``x float64 (32, 4), y int64 (32,)`` for a batch (leaves named by their place in it)."""
    try:
        parts = dict(zip(("x", "y", "sample_weight"), unpack_batch(batch), strict=True))
    except ValueError:
        parts = {"batch": batch}
    described = []
    for name, part in parts.items():
        if part is None:
            continue
        leaves = [leaf for leaf in tree_leaves(part) if isinstance(leaf, torch.Tensor)]
        if len(leaves) == 1 and isinstance(part, torch.Tensor):
            described.append(f"{name} {str(part.dtype).removeprefix('torch.')} {tuple(part.shape)}")
        else:
            described.extend(f"{name}[{i}] {str(leaf.dtype).removeprefix('torch.')} {tuple(leaf.shape)}"
                             for i, leaf in enumerate(leaves))
    return ", ".join(described) or type(batch).__name__


def _known_mistake(err: Exception, batch: Any, model: nn.Module, where: str) -> Exception | None:
    """A clearer exception for a torch error whose cause the batch shows, else None."""
    text = str(err)
    try:
        x = unpack_batch(batch)[0]
    except ValueError:
        return None
    inputs = [leaf for leaf in tree_leaves(x) if isinstance(leaf, torch.Tensor)]
    layer_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if isinstance(err, RuntimeError) and layer_dtype is not None and any(word in text for word in _DTYPE_WORDS):
        odd = next((t for t in inputs if t.dtype != layer_dtype), None)
        if odd is not None:
            fix = ("Cast the inputs: x.float() (in-memory integer inputs stay int64, the indices embedding "
                   "layers take)" if not odd.is_floating_point() else
                   f"Cast the batches to {layer_dtype} in your Dataset or collate_fn (in-memory tensors and "
                   "arrays are cast for you)")
            return TypeError(f"The model's layers compute in {layer_dtype}, but the input is {odd.dtype}. "
                             f"Received: input of shape {tuple(odd.shape)} and dtype {odd.dtype}. {fix}, or "
                             f"convert the model: model.to({odd.dtype}). {where}")
    found = _MATMUL_SHAPES.search(text)
    if found is not None:
        received, expected = int(found.group(2)), int(found.group(3))
        first = inputs[0] if inputs else None
        if first is not None and first.dim() == 2 and first.shape[1] == received:
            return ValueError(f"The model expects {expected} features per sample, but the input has {received}. "
                              f"Received: x of shape {tuple(first.shape)}. Pass data with {expected} columns, or "
                              f"build the first layer with {received} inputs. {where}")
        shape = tuple(first.shape) if first is not None else "?"
        return ValueError(f"A linear layer inside the model expects {expected} input features but receives "
                          f"{received}. Received: input of shape {shape}. The layers before it produce another "
                          f"size: set that layer's in_features to {received} (e.g. nn.Linear({received}, ...)), "
                          f"or use nn.LazyLinear. {where}")
    return None


def raise_batch_error(err: Exception, batch: Any, model: nn.Module, phase: str, index: int,
                      epoch: int | None = None) -> NoReturn:
    """Re-raise ``err`` from a batch's step with what the batch was (the same type, chained), or as a known mistake.

    Args:
        err: the exception the step raised.
        batch: the batch (on the device) it ran on.
        model: the model (its parameters' dtype explains dtype errors).
        phase: "training", "validation", "evaluation" or "prediction".
        index: the batch's index in the epoch; epoch: the 0-based epoch (training only).
    """
    where = f"(while running {phase} batch {index}" + (f" of epoch {epoch + 1}" if epoch is not None else "") + \
        f": {_describe_batch(batch)})"
    known = _known_mistake(err, batch, model, where)
    if known is not None:
        raise known from err
    reraise_with(err, where)


def stop_for_exhausted_data(model: Any, session: Session, done: int, steps: int | None, epoch: int) -> bool:
    """After an epoch of ``done`` batches over a generator that ran out: warn and stop (True: the epoch had no
    batch, log nothing)."""
    if (steps is not None and done >= steps) or (steps is None and done > 0):
        return False  # a full epoch (without a length: a pass that ended with the data)
    model.stop_training = True
    left = session.epochs - epoch - (1 if done else 0)
    if steps is None:
        warnings.warn(f"The training generator has no batch left for epoch {session.epoch_number(epoch)}: a "
                      f"generator runs once, and the epochs before took all its batches. Training stopped ({left} "
                      "epoch(s) not run). For several epochs pass a re-iterable source (a DataLoader, an "
                      "IterableDataset, in-memory tensors) or a generator that loops with steps_per_epoch=...",
                      UserWarning, stacklevel=3)
        return True
    warnings.warn(f"The training generator ran out of batches in epoch {epoch + 1} after {done} of its "
                  f"{steps} steps; training stopped ({left} epoch(s) not run). Make it yield at least "
                  "steps_per_epoch * epochs batches (e.g. loop over the data: `while True:`), or lower "
                  f"steps_per_epoch.{_unfinished_schedule(session)}", UserWarning, stacklevel=3)
    return done == 0


def _unfinished_schedule(session: Session) -> str:
    """What the early end did to a schedule preset that was bound for the run's total (else nothing)."""
    scheduler: Any = session.config.lr_scheduler if session.config is not None else None
    total = getattr(scheduler, "total", None)
    if total is None or getattr(scheduler, "schedule", None) is None:
        return ""
    return (f" The learning-rate schedule {scheduler.schedule!r} was set for {total} optimizer updates and made "
            f"{scheduler.last_epoch}: it ended before its end value.")


def prepare_checks(config: Any) -> None:
    """A new call brings new data: the compiled loss checks its first batch again."""
    if config.loss is not None:
        config.loss.recheck()
