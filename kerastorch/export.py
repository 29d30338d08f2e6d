"""export: write a model as ONNX, a ``torch.export`` program or TorchScript, checked on the spot.

Every file is loaded back and compared with the eager model before it reaches ``path``. onnx,
onnxruntime and onnxscript are imported inside :func:`export` only: ``import kerastorch`` stays cheap.
"""
from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import pathlib
import secrets
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .checks import describe
from .data.trees import tree_leaves, tree_map

# (positional args, keyword args): the kerastorch batch conventions, split once.
Inputs = tuple[tuple[Any, ...], dict[str, Any]]
Runner = Callable[[Inputs], list[torch.Tensor]]
ATOL, RTOL = 1e-5, 1e-4
# The temp file's ending: torch.export.save and load warn about any but ".pt2".
_SUFFIXES = {"onnx": ".onnx", "torch.export": ".pt2", "torchscript": ".pt"}


def export(model: nn.Module, path: str | os.PathLike, format: str = "onnx", input_sample: Any = None,
           dynamic_batch: bool = True) -> pathlib.Path:
    """Write ``model`` for inference to ``path`` and check the file against the model.

    The export runs on the model's device, in eval mode, under ``torch.no_grad``; the model's mode
    is restored afterwards. The file is written beside ``path``, loaded back and compared with the
    model (``allclose(atol=1e-5, rtol=1e-4)``) on the example and, with ``dynamic_batch``, at
    another batch size; only then does it replace ``path``. A failed export writes nothing.

    Args:
        model: the network (a ``kerastorch.Model`` or any ``nn.Module``).
        path: the file to write (its folder must exist).
        format: "onnx" (``pip install kerastorch[onnx]``), "torch.export" (a ``.pt2`` file for
            ``torch.export.load``) or "torchscript" (``torch.jit.trace``, for ``torch.jit.load``).
        input_sample: an example input: a tensor, a tuple of tensors (positional inputs) or a
            dict (keyword inputs). Default: the example ``fit`` or ``summary`` kept.
        dynamic_batch: let dim 0 of every input tensor vary (False fixes the example's shapes).

    Returns:
        The path written.

    Raises:
        ValueError: an unknown ``format``, no example input, or no existing folder for ``path``.
        TypeError: an ``input_sample`` without tensors, or a ``dynamic_batch`` that is not a bool.
        ImportError: "onnx" without onnx, onnxruntime or onnxscript installed.
        RuntimeError: the export failed, or the file does not reproduce the model's outputs.

    Example:
        >>> import os, tempfile; path = os.path.join(tempfile.mkdtemp(), "net.pt")
        >>> path = export(nn.Linear(3, 2), path, format="torchscript", input_sample=torch.zeros(4, 3))
        >>> torch.jit.load(path)(torch.ones(7, 3)).shape
        torch.Size([7, 2])
    """
    if format not in _WRITERS:
        raise ValueError(f"`format` must be 'onnx', 'torch.export' or 'torchscript'. Received: format={format!r}")
    if not isinstance(dynamic_batch, bool):
        raise TypeError(f"`dynamic_batch` must be True or False. Received: dynamic_batch={dynamic_batch!r}")
    if format == "onnx":
        _require_onnx()
    inputs = _example_input(model, input_sample)
    target = _target(path)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _write_verified(model, target, format, inputs, dynamic_batch)
    finally:
        model.train(was_training)
    return target


def _target(path: str | os.PathLike) -> pathlib.Path:
    target = pathlib.Path(path)  # checked before any export work, which takes seconds
    if target.is_dir() or not target.parent.is_dir():
        raise ValueError(f"`path` must be a file in an existing folder. Received: path={os.fspath(path)!r}")
    return target


def _require_onnx() -> None:
    try:  # before any work: the exporter needs onnx and onnxscript, the check onnxruntime
        for name in ("onnx", "onnxruntime", "onnxscript"):
            importlib.import_module(name)
    except ImportError as err:
        raise ImportError(f"format='onnx' needs onnx, onnxruntime and onnxscript ({err}). "
                          "Install them with `pip install kerastorch[onnx]`.") from err


def _example_input(model: nn.Module, input_sample: Any) -> Inputs:
    """The example as (args, kwargs) on the model's device."""
    example = input_sample
    if example is None:  # summary(input_shape=...) keeps what it fed the model; fit its data's first sample
        example = model.__dict__.get("_summary_input")
    if example is None:
        example = getattr(getattr(model, "_record", None), "example_input", None)
    if example is None:
        raise ValueError("`input_sample` is needed: export could not find an example input (no "
                         "summary(input_shape=...) and no fit so far). Received: input_sample=None. "
                         "Pass e.g. input_sample=torch.zeros(1, 3, 32, 32).")
    if not any(isinstance(leaf, torch.Tensor) for leaf in tree_leaves(example)):
        raise TypeError("`input_sample` must be a tensor, a tuple of tensors (positional inputs) or a dict "
                        f"of tensors (keyword inputs). Received: input_sample={describe(example)}")
    device = _device_of(model)
    return _split(tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, example))


def _device_of(model: nn.Module) -> torch.device:
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def _split(example: Any) -> Inputs:
    """A tuple/list is positional inputs, a dict keyword inputs, anything else the one input."""
    if isinstance(example, dict):
        return (), dict(example)
    if isinstance(example, (tuple, list)):
        return tuple(example), {}
    return (example,), {}


def _batch_size(inputs: Inputs) -> int | None:
    sizes = [leaf.shape[0] for leaf in tree_leaves(inputs) if isinstance(leaf, torch.Tensor) and leaf.dim()]
    return sizes[0] if sizes else None


def _check_inputs(inputs: Inputs, dynamic_batch: bool) -> list[Inputs]:
    """The example, and with a dynamic batch the example repeated to another batch size."""
    batch = _batch_size(inputs)
    if not dynamic_batch:
        return [inputs]
    if batch is None:
        raise ValueError("dynamic_batch=True needs an input tensor with a batch dimension; the example has only "
                         "0-d tensors. Pass dynamic_batch=False or an input_sample with a batch dimension.")
    factor = 3 if batch == 1 else 2
    grown = tree_map(lambda t: torch.cat([t] * factor) if isinstance(t, torch.Tensor) and t.dim() else t, inputs)
    return [inputs, grown]


def _dynamic_shapes(inputs: Inputs, dynamic_batch: bool) -> Any:
    """torch.export's ``dynamic_shapes``: dim 0 of every input tensor is one shared "batch" Dim."""
    if not dynamic_batch:
        return None
    batch = torch.export.Dim("batch")
    args, kwargs = tree_map(lambda t: {0: batch} if isinstance(t, torch.Tensor) and t.dim() else None, inputs)
    return kwargs if kwargs else args  # one or the other: _split never gives both


def _output_names(output: Any, name: str = "") -> list[str]:
    """ONNX output names: the keys of dict outputs ("logits"), "output_0".. for tuples, else "output"."""
    if isinstance(output, dict):
        return [n for key, value in output.items() for n in _output_names(value, f"{name}.{key}" if name else key)]
    if isinstance(output, (tuple, list)):
        return [n for i, value in enumerate(output)
                for n in _output_names(value, f"{name}.{i}" if name else f"output_{i}")]
    return [name or "output"] if isinstance(output, torch.Tensor) else []


def _call(module: Any, inputs: Inputs) -> Any:
    return module(*inputs[0], **inputs[1])


def _flat(output: Any) -> list[torch.Tensor]:
    """The output tensors in a fixed order (dicts in key order, as torch's pytree and the exporters flatten)."""
    return [leaf.detach().cpu() for leaf in tree_leaves(output) if isinstance(leaf, torch.Tensor)]


def _write_onnx(model: nn.Module, file: str, inputs: Inputs, dynamic_shapes: Any) -> None:
    # The dynamo exporter (torch.export's graph capture, torch's default since 2.9) handles all our
    # cases, including dict inputs and outputs; the TorchScript-based one (dynamo=False) also
    # works but is deprecated. external_data=False keeps the weights inside the one file: a
    # ".data" sidecar is referenced by file name, which the rename into `path` would break
    # (the price: ONNX's 2 GB limit on a single file).
    with warnings.catch_warnings():  # several inputs sharing the one "batch" Dim is what we mean, not a problem
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints", category=UserWarning)
        torch.onnx.export(model, inputs[0], file, kwargs=inputs[1] or None, dynamo=True,
                          dynamic_shapes=dynamic_shapes, external_data=False,
                          output_names=_output_names(_call(model, inputs)) or None, verbose=False)


def _write_torch_export(model: nn.Module, file: str, inputs: Inputs, dynamic_shapes: Any) -> None:
    torch.export.save(torch.export.export(model, inputs[0], inputs[1], dynamic_shapes=dynamic_shapes), file)


def _write_torchscript(model: nn.Module, file: str, inputs: Inputs, dynamic_shapes: Any) -> None:
    # strict=False: dict and list outputs are allowed. Our own check below replaces trace's (check_trace=False)
    # and also tries another batch size, which trace's own check never does.
    twin = _traceable(model)
    if inputs[1]:
        traced = torch.jit.trace(twin, example_kwarg_inputs=inputs[1], strict=False, check_trace=False)
    else:
        traced = torch.jit.trace(twin, inputs[0], strict=False, check_trace=False)
    torch.jit.save(traced, file)


def _traceable(model: nn.Module) -> nn.Module:
    """A twin of ``model`` (its class, parameters, buffers and submodules) that ``torch.jit.trace`` accepts.

    trace looks for ``@torch.jit.export`` methods with ``hasattr(model, name)`` over ``dir(model)``,
    which evaluates every property: one raising something other than AttributeError
    (kerastorch's ``Model.optimizer`` before ``compile``) aborts the trace, and ``Model.history``
    imports pandas. The twin's ``dir()`` leaves properties out (they are never exported methods).
    """
    cls = type(model)

    def listing(self: nn.Module) -> list[str]:
        return [name for name in cls.__dir__(self) if not isinstance(getattr(cls, name, None), property)]

    twin_cls = type(cls.__name__, (cls,), {"__dir__": listing, "__module__": cls.__module__})
    twin: nn.Module = object.__new__(twin_cls)
    twin.__dict__.update(model.__dict__)  # shares the parameter, buffer and submodule dicts: no copy
    return twin


def _load_onnx(file: str) -> Runner:
    import onnxruntime

    session = onnxruntime.InferenceSession(file, providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]

    def run(inputs: Inputs) -> list[torch.Tensor]:
        # Graph inputs are the input tensors in flattening order (kwargs in dict order); the
        # comparison below catches any mismatch.
        tensors = [leaf.cpu().numpy() for leaf in tree_leaves(inputs) if isinstance(leaf, torch.Tensor)]
        return [torch.from_numpy(out) for out in session.run(None, dict(zip(names, tensors, strict=True)))]
    return run


def _runner(module: Any) -> Runner:
    return lambda inputs: _flat(_call(module, inputs))


_WRITERS = {"onnx": _write_onnx, "torch.export": _write_torch_export, "torchscript": _write_torchscript}
_LOADERS: dict[str, Callable[[str], Runner]] = {
    "onnx": _load_onnx, "torch.export": lambda file: _runner(torch.export.load(file).module()),
    "torchscript": lambda file: _runner(torch.jit.load(file))}


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


def _write_verified(model: nn.Module, target: pathlib.Path, format: str, inputs: Inputs, dynamic_batch: bool) -> None:
    """Export to a temp file beside ``target``, check it, then move it over ``target``."""
    checks = _check_inputs(inputs, dynamic_batch)
    # torch.export specializes sizes 0 and 1: a batch-1 example would fix the batch at 1, so
    # the example repeated to batch 3 is exported instead (both are checked).
    exported = checks[-1] if _batch_size(inputs) == 1 else checks[0]
    temp = target.parent / f".{target.name}.export-{os.getpid()}-{secrets.token_hex(4)}{_SUFFIXES[format]}"
    try:
        try:
            _WRITERS[format](model, str(temp), exported, _dynamic_shapes(exported, dynamic_batch))
            run = _LOADERS[format](str(temp))
        except Exception as err:
            raise RuntimeError(f"Export to format={format!r} failed: {_first_line(err)} No file was written. "
                               "Try dynamic_batch=False or another format.") from err
        for check in checks:
            _verify(model, run, check, format)
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)


def _verify(model: nn.Module, run: Runner, inputs: Inputs, format: str) -> None:
    def failure(problem: str) -> RuntimeError:
        return RuntimeError(
            f"Export to format={format!r} failed verification: at batch size {_batch_size(inputs)} the exported "
            f"model's {problem}. No file was written. The forward may depend on the batch size (Python control flow "
            "on shapes or values); try dynamic_batch=False or another format.")

    expected = _flat(_call(model, inputs))
    try:
        got = run(inputs)
    except Exception as err:  # e.g. a graph whose batch the exporter fixed after all
        raise failure(f"run failed ({_first_line(err)})") from err
    shapes, wanted = [tuple(g.shape) for g in got], [tuple(e.shape) for e in expected]
    if shapes != wanted:  # also a different number of outputs
        raise failure(f"output shapes {shapes} differ from the model's {wanted}")
    difference = _max_difference(expected, got)
    if difference is not None:
        raise failure(f"outputs differ from the model's by up to {difference:.3g} (atol={ATOL}, rtol={RTOL})")


def _max_difference(expected: list[torch.Tensor], got: list[torch.Tensor]) -> float | None:
    """None when the outputs (of equal shapes) match, else the largest absolute difference."""
    pairs = [(e.double(), g.double()) for e, g in zip(expected, got, strict=True)]
    if all(torch.allclose(g, e, atol=ATOL, rtol=RTOL, equal_nan=True) for e, g in pairs):
        return None
    return max(float((g - e).abs().max()) for e, g in pairs if e.numel())
