"""predict: the model's outputs over data, moved to the CPU batch by batch and joined (tuples and dicts kept).

Each batch's output goes to the CPU as it is produced (:mod:`.outputs`), into one preallocated
buffer per output tensor when the number of samples is known: the device holds one batch of
outputs at a time, and the CPU about the outputs' size (not twice it, as joining at the end needs).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..callbacks.base import CallbackList, as_callback_list
from ..callbacks.display import ProgressBar
from ..checks import require_verbose
from ..data import adapt, floating_dtype, move_to_device, source_length
from ..distributed import is_rank_zero
from .guards import raise_batch_error
from .outputs import OutputCollector, expected_samples
from .reentry import guarded
from .session import FitRecord, Session

if TYPE_CHECKING:
    from ..compiling import CompileConfig


@guarded("predict")
def predict(model: Any, config: CompileConfig | None, record: FitRecord, x: Any, batch_size: int | None,
            verbose: Any, callbacks: Any, device: torch.device) -> Any:
    """See :meth:`kerastorch.Model.predict` (works before ``compile``: ``config`` may be None)."""
    require_verbose(verbose)
    source = adapt(x, batch_size=batch_size, shuffle=False, float_dtype=floating_dtype(model))
    printers = [ProgressBar()] if verbose == 1 and is_rank_zero() else []
    callback_list = CallbackList([*as_callback_list(callbacks), *printers], model=model,
                                 params={"steps": source_length(source), "verbose": verbose})
    session = Session(config, record, callback_list)
    callback_list.set_session(session)
    was_training = model.training
    model.eval()
    collector = OutputCollector(expected_samples(source))
    collect = collector.add
    model.stop_predicting = False
    callback_list.call("on_predict_begin", None)
    batch_begin, batch_end = callback_list.on_predict_batch_begin, callback_list.on_predict_batch_end
    predict_step = model._step_runner("predict")
    try:
        with torch.inference_mode():
            for index, batch in enumerate(source):
                for hook in batch_begin:
                    hook(index, {})
                batch = move_to_device(batch, device)
                try:
                    output = predict_step(batch)
                except Exception as err:
                    raise_batch_error(err, batch, model, "prediction", index)
                for hook in batch_end:
                    hook(index, {"outputs": output})
                collect(output, index)  # to the CPU, asynchronously on CUDA (after the hooks: what they see)
                if model.stop_predicting:  # a callback ended it, as in Keras
                    break
    except BaseException as error:
        for close in callback_list.on_exception:  # displays close before the traceback prints
            close(error)
        raise
    finally:
        model.train(was_training)
    result = collector.result()
    callback_list.call("on_predict_end", None)
    return result

