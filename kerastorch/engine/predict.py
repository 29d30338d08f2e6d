"""predict: the model's outputs over data, concatenated on the CPU (tuples and dicts kept)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..callbacks.base import CallbackList, as_callback_list
from ..callbacks.display import ProgressBar
from ..checks import require_verbose
from ..data import adapt, floating_dtype, move_to_device, source_length, tree_map
from ..distributed import is_rank_zero
from .guards import raise_batch_error
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
    outputs: list[Any] = []
    callback_list.call("on_predict_begin", None)
    batch_begin, batch_end = callback_list.on_predict_batch_begin, callback_list.on_predict_batch_end
    predict_step = model._step_runner("predict")
    try:
        with torch.inference_mode():
            for index, batch in enumerate(source):
                for hook in batch_begin:
                    hook(index, None)
                batch = move_to_device(batch, device)
                try:
                    output = predict_step(batch)
                except Exception as err:
                    raise_batch_error(err, batch, model, "prediction", index)
                outputs.append(output)
                for hook in batch_end:
                    hook(index, {"outputs": output})
    except BaseException as error:
        for close in callback_list.on_exception:  # displays close before the traceback prints
            close(error)
        raise
    finally:
        model.train(was_training)
    if outputs and outputs[0] is None:
        raise TypeError("The model's forward returned None, so predict() has no outputs to return. Received: "
                        "output=None. Return the output at the end of forward(): `return self.layers(x)`.")
    result = concatenate(outputs)
    callback_list.call("on_predict_end", None)
    return result


def concatenate(outputs: list[Any]) -> Any:
    """Concatenate per-batch outputs along dim 0, keeping tuple/list/dict structure, on the CPU.

    Example:
        >>> concatenate([torch.zeros(2, 3), torch.ones(1, 3)]).shape
        torch.Size([3, 3])
    """
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        # Outputs stay on the device during the loop; one copy to the host at the end.
        return torch.cat(outputs).cpu() if first.dim() else torch.stack(outputs).cpu()  # host-sync: once, at the end
    if isinstance(first, (tuple, list)):
        return type(first)(concatenate([out[i] for out in outputs]) for i in range(len(first)))
    if isinstance(first, dict):
        return {key: concatenate([out[key] for out in outputs]) for key in first}
    return tree_map(lambda v: v, outputs)
