"""Model summary: a torchsummary-style table built from torchinfo's forward pass.

Parameters are counted from the module itself, so shared or tied weights count once.
"""
from __future__ import annotations

import html
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from .checks import require_positive_int

if TYPE_CHECKING:
    from torchinfo import ModelStatistics
    from torchinfo.layer_info import LayerInfo

DtypeLike = torch.dtype | type
_MB = 1024**2
_WIDTHS = (20, 25, 15)  # torchsummary's name / shape / param columns


def _as_dtype(obj: Any) -> torch.dtype:
    """``torch.float32`` or a legacy class like ``torch.LongTensor`` -> ``torch.dtype``."""
    if isinstance(obj, torch.dtype):
        return obj
    # Tensor *classes* carry a dtype; tensor instances do too, so require a class.
    dtype = getattr(obj, "dtype", None) if isinstance(obj, type) else None
    if isinstance(dtype, torch.dtype):
        return dtype
    raise TypeError(f"input_dtype must be a torch.dtype (e.g. torch.int64) or a tensor type "
                    f"(e.g. torch.LongTensor). Received: {obj!r} ({type(obj).__name__})")


def _shapes(input_shape: Sequence[Any]) -> list[tuple[int, ...]]:
    """One shape ``(3, 32, 32)`` or several ``[(2,), (3,)]`` -> list of shapes."""
    if not isinstance(input_shape, (tuple, list, torch.Size)):
        raise TypeError(f"input_shape must be a tuple of ints or a list of such tuples, "
                        f"Received: input_shape={input_shape!r}")
    nested = [s for s in input_shape if isinstance(s, (tuple, list, torch.Size))]
    shapes = [tuple(s) for s in cast(Sequence[Any], input_shape)] if nested else [tuple(input_shape)]
    for shape in shapes:
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ValueError(f"input_shape entries must be positive ints. Received: {input_shape!r}")
    return shapes


def _make_inputs(input_shape: Sequence[Any], input_dtype: Any, batch_size: int,
                 device: torch.device) -> list[torch.Tensor]:
    """Dummy inputs of shape ``(batch_size, *shape)``; zeros for non-float dtypes."""
    shapes = _shapes(input_shape)
    if input_dtype is None:
        dtypes = [torch.float32] * len(shapes)
    elif isinstance(input_dtype, (list, tuple)):
        dtypes = [_as_dtype(d) for d in input_dtype]
        if len(dtypes) != len(shapes):
            raise ValueError(f"input_dtype has {len(dtypes)} entries but input_shape "
                             f"describes {len(shapes)} inputs")
    else:
        dtypes = [_as_dtype(input_dtype)] * len(shapes)
    # A private generator keeps the caller's global RNG stream untouched.
    gen = torch.Generator().manual_seed(0)
    inputs = []
    for shape, dtype in zip(shapes, dtypes, strict=True):
        size = (batch_size, *shape)
        if dtype.is_floating_point or dtype.is_complex:
            x = torch.rand(size, generator=gen, dtype=dtype)
        else:  # integer inputs are usually indices: 0 is valid for any embedding
            x = torch.zeros(size, dtype=dtype)
        inputs.append(x.to(device))
    return inputs


def _nbytes(data: Any) -> int:
    """Total bytes of the tensors in a tensor / list / tuple / dict (real dtype sizes)."""
    if isinstance(data, torch.Tensor):
        return data.numel() * data.element_size()
    if isinstance(data, Mapping):
        data = list(data.values())
    return sum(_nbytes(v) for v in data) if isinstance(data, (list, tuple)) else 0


def _run_torchinfo(module: nn.Module, data: Any, depth: int) -> ModelStatistics:
    """Run torchinfo quietly in eval mode, then restore every submodule's own mode."""
    # Imported here: torchinfo takes a noticeable part of `import kerastorch`, and only a
    # summary needs it.
    import torchinfo
    from torchinfo import torchinfo as _torchinfo_impl

    # torchinfo restores only the top module's flag via model.train(flag), which
    # overwrites submodules deliberately left in another mode (e.g. frozen BatchNorm).
    modes = [(m, m.training) for m in module.modules()]
    try:
        # device is left None on purpose: with a device torchinfo calls module.to(device).
        return torchinfo.summary(module, input_data=data, verbose=0, depth=depth,
                                 col_names=("output_size", "num_params"), mode="eval")
    finally:
        for m, training in modes:
            m.training = training
        # torchinfo always caches the last pass per class name, even with caching
        # off, which would keep the model (and its GPU memory) alive.
        getattr(_torchinfo_impl, "_cached_forward_pass", {}).pop(type(module).__name__, None)


def _ancestors(layer: LayerInfo) -> list[LayerInfo]:
    chain, parent = [], layer.parent_info
    while parent is not None:
        chain.append(parent)
        parent = parent.parent_info
    return chain


def _select_layers(summary_list: list[LayerInfo], depth: int
                   ) -> tuple[list[LayerInfo], list[LayerInfo]]:
    """Split executed calls into (table rows, leaf calls used for activation memory).

    A call is a leaf when none of the module's descendants ran (this also covers
    modules like MultiheadAttention that use child weights directly). A row is a
    leaf call, or a call at ``depth`` folding everything below it, unless an
    executed ancestor at ``depth`` or deeper already folds it.
    """
    ran = [layer for layer in summary_list if layer.executed]
    ran_ids = {id(layer.module) for layer in ran}
    # torchinfo's parent_info objects are not the executed ones, so compare modules.
    has_ran_child = {id(a.module) for layer in ran for a in _ancestors(layer)}
    leaves = [layer for layer in ran if id(layer.module) not in has_ran_child]
    folded = lambda layer: any(  # noqa: E731
        a.depth >= depth and id(a.module) in ran_ids for a in _ancestors(layer))
    rows = [layer for layer in ran if not folded(layer)
            and (id(layer.module) not in has_ran_child or layer.depth >= depth)]
    return rows, leaves


def _table_rows(module: nn.Module, layers: list[LayerInfo]) -> list[tuple[str, str, int]]:
    """(name, shape, params) per row; each unique parameter is counted exactly once."""
    seen: set[int] = set()
    rows = []
    for i, layer in enumerate(layers, start=1):
        params = [p for p in layer.module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        owned = sum(1 for _ in layer.module.parameters())
        # Fewer new params than owned ones: the rest were counted on an earlier row.
        mark = " (shared)" if len(params) < owned else ""
        # Batch dim shown as -1; "--" when the output held no tensor.
        shape = str([-1, *layer.output_size[1:]]) if layer.output_size else "--"
        rows.append((f"{layer.class_name}-{i}{mark}", shape, sum(p.numel() for p in params)))
    # Parameters no row covered: registered on a container (cls token, scale) or
    # owned by a submodule that never ran. They still belong in Total.
    for sub in module.modules():
        left = [p for p in sub.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in left)
        if left:
            # A leaf that ran is always a row (or folded), so a leftover leaf never ran.
            tag = "own params" if any(sub.children()) else "not called"
            rows.append((f"{type(sub).__name__} ({tag})", "--", sum(p.numel() for p in left)))
    return rows


_HEADER = ("Layer (type)", "Output Shape", "Param #")


def _totals(totals: tuple[int, int], sizes: tuple[int, int, int]) -> tuple[list[tuple[str, str]], ...]:
    """The lines under the table as (label, value): the parameter counts, then the sizes in MB."""
    (total, trainable), (in_b, act_b, par_b) = totals, sizes
    counts = [("Total params", f"{total:,}"), ("Trainable params", f"{trainable:,}"),
              ("Non-trainable params", f"{total - trainable:,}")]
    megabytes = [("Input size (MB)", f"{in_b / _MB:0.6f}"), ("Forward/backward pass size (MB)", f"{act_b / _MB:0.6f}"),
                 ("Params size (MB)", f"{par_b / _MB:0.6f}"),
                 ("Estimated Total Size (MB)", f"{(in_b + act_b + par_b) / _MB:0.6f}")]
    return counts, megabytes


def _format(rows: list[tuple[str, str, int]], totals: tuple[int, int],
            sizes: tuple[int, int, int]) -> str:
    """Lay out the torchsummary table, widening columns so nothing is cut."""
    cells = [(name, shape, f"{n:,}") for name, shape, n in rows]
    w = [max([base, *(len(c[k]) for c in cells)]) for k, base in enumerate(_WIDTHS)]
    line = lambda c: f"{c[0]:>{w[0]}}  {c[1]:>{w[1]}} {c[2]:>{w[2]}}"  # noqa: E731
    width = w[0] + w[1] + w[2] + 4  # torchsummary: rules one char wider than rows
    dash, eq = "-" * width, "=" * width
    counts, megabytes = ([f"{label}: {value}" for label, value in part] for part in _totals(totals, sizes))
    out = [dash, line(_HEADER), eq, *(line(c) for c in cells), eq, *counts, dash, *megabytes, dash]
    return "\n".join(out)


def _html_table(rows: Sequence[tuple[str, str, int]], totals: tuple[int, int], sizes: tuple[int, int, int]) -> str:
    """The same rows and totals as the text, as one compact HTML table (what a notebook shows)."""
    right = ' style="text-align: right"'
    head = "".join(f"<th{right if k == 2 else ''}>{html.escape(name)}</th>" for k, name in enumerate(_HEADER))
    body = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(shape)}</td><td{right}>{n:,}</td></tr>"
                   for name, shape, n in rows)
    counts, megabytes = _totals(totals, sizes)
    foot = "".join(f'<tr><th colspan="2" style="text-align: left">{html.escape(label)}</th><td{right}>{value}</td>'
                   "</tr>" for label, value in (*counts, *megabytes))
    return (f'<table class="kerastorch-summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            f"<tfoot>{foot}</tfoot></table>")


def _prepare_inputs(module: nn.Module, input_shape: Any, input_dtype: Any, input_data: Any,
                    batch_size: int, device: torch.device | str | None) -> Any:
    """Check the input arguments; return what torchinfo should feed to forward."""
    if (input_shape is None) == (input_data is None):
        got = "neither" if input_shape is None else "both"
        raise ValueError(f"summary() needs `input_shape` or `input_data` (exactly one), "
                         f"Received: {got}.")
    if input_data is None:
        require_positive_int("batch_size", batch_size)
        # Default: where the first parameter (else buffer) lives, else cpu.
        first = next(itertools.chain(module.parameters(), module.buffers()), None)
        device = torch.device(device or (first.device if first is not None else "cpu"))
        return _make_inputs(input_shape, input_dtype, batch_size, device)
    if input_dtype is not None:
        raise ValueError("input_dtype only applies to input_shape; with input_data "
                         "the tensors' own dtypes are used")
    if isinstance(input_data, torch.Tensor):
        return [input_data]
    if isinstance(input_data, (list, tuple, Mapping)):
        return input_data
    raise TypeError(f"input_data must be a tensor, a list/tuple of args or a dict of "
                    f"kwargs. Received: {type(input_data).__name__}")


def example_input(module: nn.Module, input_shape: Any = None, input_dtype: Any = None, input_data: Any = None) -> Any:
    """What ``summary`` fed the model, as one CPU example: a tensor, a tuple (positional inputs) or a dict.

    Example:
        >>> example_input(nn.Linear(3, 1), input_shape=(3,)).shape
        torch.Size([1, 3])
    """
    if isinstance(input_data, int):  # torchkeras's batch size in the fourth place (see summary)
        input_data = None
    inputs = _prepare_inputs(module, input_shape, input_dtype, input_data, 1, "cpu")
    detach = lambda t: t.detach().cpu() if isinstance(t, torch.Tensor) else t  # noqa: E731
    if isinstance(inputs, Mapping):
        return {key: detach(value) for key, value in inputs.items()}
    inputs = [detach(t) for t in inputs]
    return inputs[0] if len(inputs) == 1 else tuple(inputs)


def summary(module: nn.Module, input_shape: Sequence[Any] | None = None,
            input_dtype: DtypeLike | Sequence[DtypeLike] | None = None,
            input_data: Any = None, *, batch_size: int = 1, depth: int = 3,
            device: torch.device | str | None = None,
            print_fn: Callable[[str], Any] | None = print) -> SummaryText:
    """Print a torchsummary-style table of ``module`` and return it as text (a :class:`SummaryText`).

    The returned text shows once as a notebook cell's last line: it is not echoed again
    when it was already printed.

    Rows, in call order as ``ClassName-i``, are the calls of modules none of whose
    submodules ran; below ``depth`` the module at ``depth`` stands for its subtree.
    A reused module's params count on its first row; later rows show 0, ``(shared)``.
    Params on a container or on a layer that never ran get an ``(own params)`` /
    ``(not called)`` row: rows add up to Total = sum of ``module.parameters()``.

    MB = bytes (real dtype sizes) / 1024**2. Input: the input tensors. Forward/
    backward: 2 x output bytes of every leaf call (activations + grads). Params:
    the unique parameters. Estimated Total: the sum of the three.

    Args:
        module: the network; not moved; all train/eval flags are restored after.
        input_shape: one sample's shape without the batch dim, e.g. ``(3, 32, 32)``,
            or a list of shapes for ``forward(x1, x2, ...)``.
        input_dtype: a ``torch.dtype`` or tensor type (``torch.LongTensor``), or
            one per input; default float32. Integer inputs are zeros.
        input_data: used as-is instead: a tensor, a list/tuple of args or a dict of kwargs.
        batch_size: batch size of the generated inputs; -1 (torchkeras's default) means 1. As in
            torchkeras, it may also come fourth: ``summary(net, input_shape, input_dtype, -1)``.
        depth: deepest module level shown as separate rows (top module = 0).
        device: for generated inputs; default: the module's (else cpu).
        print_fn: called with the text; ``None`` prints nothing.

    Raises:
        ValueError: not exactly one of ``input_shape`` / ``input_data`` given.
        TypeError: ``input_dtype`` or ``input_data`` of an unsupported type.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> "Total params: 17" in summary(net, input_shape=(2,), print_fn=None)
        True
    """
    if isinstance(input_data, int) and not isinstance(input_data, bool):
        # torchkeras's summary(model, input_shape, input_dtype, batch_size): an int fourth is the batch size.
        batch_size, input_data = input_data, None
    if batch_size == -1:  # torchkeras's default, "any batch size": run one sample, shown as -1 anyway
        batch_size = 1
    data = _prepare_inputs(module, input_shape, input_dtype, input_data, batch_size, device)
    stats = _run_torchinfo(module, data, depth)
    layers, leaves = _select_layers(stats.summary_list, depth)
    params = list(module.parameters())  # parameters() already skips shared duplicates
    totals = (sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))
    sizes = (_nbytes(data), 2 * sum(layer.output_bytes for layer in leaves),
             sum(p.numel() * p.element_size() for p in params))
    rows = _table_rows(module, layers)
    text = SummaryText(_format(rows, totals, sizes))
    text.table = (tuple(rows), totals, sizes)
    if print_fn is not None:
        print_fn(text)
        text.shown = True
    return text


class SummaryText(str):
    """The summary table as a ``str`` that a notebook or the REPL does not echo a second time.

    ``summary()`` prints the table, then returns it: as a cell's last line (or at the ``>>>``
    prompt) that value would show again, as an escaped string. Once printed, its repr is a
    short pointer and IPython displays nothing; with ``print_fn=None`` the table itself shows,
    in a notebook as an HTML table of the same rows and totals (``_repr_html_``; the text is the
    ``text/plain`` beside it). ``str(text)`` and every ``str`` operation give the text table.

    Example:
        >>> text = SummaryText("Total params: 3")
        >>> text.shown = True
        >>> text, str(text)
        (<model summary: printed above; str() gives the text>, 'Total params: 3')
    """

    shown = False
    #: (rows as (layer, output shape, params), (total, trainable), sizes in bytes), set by :func:`summary`.
    table: tuple[tuple[tuple[str, str, int], ...], tuple[int, int], tuple[int, int, int]] | None = None

    def __repr__(self) -> str:
        return "<model summary: printed above; str() gives the text>" if self.shown else str(self)

    def _repr_html_(self) -> str:
        if self.table is None:  # made from a string: the text, preformatted
            return f"<pre>{html.escape(str(self))}</pre>"
        return _html_table(*self.table)

    def _ipython_display_(self) -> None:
        if self.shown:
            return
        from IPython.display import display  # only called inside IPython
        display({"text/plain": str(self), "text/html": self._repr_html_()}, raw=True)
