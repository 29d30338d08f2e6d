"""evaluate: loss and metrics over data, exact over all samples; also fit's validation pass."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, cast

import torch
from torch.utils.data import DataLoader

from ..callbacks.base import CallbackList, as_callback_list
from ..callbacks.display import ProgressBar
from ..checks import require_verbose
from ..data import adapt, batch_size_of, floating_dtype, move_to_device, place, source_length
from ..data.scan import scan
from ..distributed import is_rank_zero
from .guards import raise_batch_error
from .logs import LogAccumulator, epoch_logs
from .reentry import guarded
from .session import FitRecord, Session

if TYPE_CHECKING:
    from ..compiling import CompileConfig


@guarded("evaluate")
def evaluate(model: Any, config: CompileConfig, record: FitRecord, x: Any, y: Any, batch_size: int | None,
             verbose: Any, callbacks: Any, sample_weight: Any) -> dict[str, float]:
    """See :meth:`kerastorch.Model.evaluate`."""
    require_verbose(verbose)
    source = place(adapt(x, y, sample_weight, batch_size=batch_size, shuffle=False,
                         float_dtype=floating_dtype(model)), config.device, config.data_on_device, 0)
    for finding in scan(source):  # non-finite data or negative weights: said before the first batch
        warnings.warn(finding.warning(), UserWarning, stacklevel=4)
    printers = [ProgressBar()] if verbose == 1 and is_rank_zero() else []
    callback_list = CallbackList([*as_callback_list(callbacks), *printers], model=model,
                                 params={"steps": source_length(source), "verbose": verbose})
    session = Session(config, record, callback_list)
    callback_list.set_session(session)
    try:
        return run_test(model, session, source)
    except BaseException as error:
        for close in callback_list.on_exception:  # displays close before the traceback prints
            close(error)
        raise


def validation_source(validation_data: Any, batch_size: int | None, config: CompileConfig, seed: int,
                      float_dtype: torch.dtype = torch.float32) -> Any:
    """``fit(validation_data=...)`` as a placed batch source, or None; a list ``[x_val, y_val]`` is a tuple."""
    if validation_data is None:
        return None
    if isinstance(validation_data, (tuple, list)):
        if len(validation_data) not in (2, 3):
            raise ValueError("`validation_data` must be (x_val, y_val), (x_val, y_val, sample_weight), "
                             f"a Dataset or a DataLoader. Received a {type(validation_data).__name__} of length "
                             f"{len(validation_data)}.")
        source = adapt(*validation_data, batch_size=batch_size, shuffle=False, arg="validation_data",
                       float_dtype=float_dtype)
    else:
        # fit's batch_size batches in-memory data; a DataLoader given as validation_data batches itself.
        own_batches = isinstance(validation_data, DataLoader)
        source = adapt(validation_data, batch_size=None if own_batches else batch_size, shuffle=False,
                       arg="validation_data", float_dtype=float_dtype)
    return place(source, config.device, config.data_on_device, seed)


def run_test(model: Any, session: Session, source: Any, prefix: str = "", steps: int | None = None) -> dict[str, float]:
    """Evaluate over ``source`` (at most ``steps`` batches) with ``model.test_step``; return the logs as floats."""
    config, callbacks = cast("CompileConfig", session.config), session.callbacks  # compiled
    was_training = model.training
    model.eval()
    length = source_length(source)
    accumulator = LogAccumulator(length if steps is None or length is None else min(steps, length))
    for metric in config.metrics.values():
        metric.reset()
    device = config.device
    model.stop_evaluating = False
    callbacks.call("on_test_begin", None)
    batch_begin, batch_end = callbacks.on_test_batch_begin, callbacks.on_test_batch_end
    test_step = model._step_runner("test")
    phase = "validation" if prefix else "evaluation"
    loss = config.loss
    checks = loss.recheck() if loss is not None else None  # this data's first batch is checked
    try:
        with torch.inference_mode():
            for index, batch in enumerate(source):
                for hook in batch_begin:
                    hook(index, {})
                batch = move_to_device(batch, device)
                try:
                    logs = test_step(batch)
                except Exception as err:
                    raise_batch_error(err, batch, model, phase, index)
                accumulator.add(index, logs, batch_size_of(batch))
                for hook in batch_end:
                    hook(index, logs)
                if (steps is not None and index + 1 >= steps) or model.stop_evaluating:
                    break  # fit(validation_steps=...) (ends an endless stream too), or a callback, as in Keras
        logs = epoch_logs(config, accumulator, prefix)
    finally:
        model.train(was_training)
        if loss is not None and checks is not None:  # training's checks (and target alignment) stay as they were
            loss.restore_checks(checks)
    callbacks.call("on_test_end", {key.removeprefix(prefix): value for key, value in logs.items()})  # Keras's keys
    return logs
