"""predict's outputs, moved to the CPU batch by batch: the device never holds more than one batch of them.

:class:`OutputCollector` learns the output structure (a tensor, or tuples / lists / dicts of them,
nested) from the first batch. Each tensor of it whose first dimension is the batch goes, when the
number of samples is known in advance (:func:`expected_samples`), into one CPU tensor of shape
``(N, *rest)`` allocated at the first batch (pinned when the outputs are on CUDA), each batch
copied into its rows with ``copy_(non_blocking=True)``. Otherwise (a generator, an
``IterableDataset``, a batch that does not fit: another trailing shape or dtype, more rows than
expected) its batches are copied to the CPU as they come and concatenated at the end, as
``torch.cat`` would have. Per-batch scalars (0-dim tensors) are stacked at the end, and values
that are not tensors are returned as a list of the batches' values. The result equals
``torch.cat`` of the batches along dim 0 (structure, dtype, shape, values). Batches whose shapes differ past
dim 0 (a causal language model's logits over batches padded to different lengths) are padded at the end of
each dimension with -100 (:data:`PAD_VALUE`, as Hugging Face's Trainer does) and joined.

No host-device sync per batch: on CUDA the copies are asynchronous and :meth:`OutputCollector.result`
waits for them once, at the end. On the CPU the copy into the buffer is the only per-batch work.
"""
from __future__ import annotations

from collections.abc import Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from ..checks import describe
from ..data import TensorBatcher, tree_map

_ROWS, _STACK, _OTHER = "rows", "stack", "other"


def expected_samples(source: Any) -> tuple[int, int] | None:
    """``(samples in one pass, samples in the first batch)`` when the batch source says so for sure, else None.

    In-memory data knows it (a last partial batch, or none with ``drop_last``); so does a DataLoader
    that batches a sized sampler itself (``batch_size`` set). Generators, ``IterableDataset`` objects
    and custom batch samplers do not.

    Example:
        >>> from ..data import adapt
        >>> expected_samples(adapt(torch.zeros(10, 2), batch_size=4, shuffle=False))
        (10, 4)
        >>> loader = DataLoader(torch.utils.data.TensorDataset(torch.zeros(10)), batch_size=4, drop_last=True)
        >>> expected_samples(adapt(loader, batch_size=None, shuffle=False)), expected_samples(iter([]))
        ((8, 4), None)
    """
    if isinstance(source, TensorBatcher):  # an IndexedLoader too: drop_last leaves whole batches only
        total = min(source.num_samples, len(source) * source.batch_size)
        return (total, min(source.batch_size, total)) if total else None
    loader = getattr(source, "loader", None)
    if not isinstance(loader, DataLoader) or loader.batch_size is None or isinstance(loader.dataset, IterableDataset):
        return None
    if not isinstance(loader.sampler, Sized):
        return None
    count = len(loader.sampler)
    total = count - count % loader.batch_size if loader.drop_last else count
    return (total, min(loader.batch_size, total)) if total else None


class _Leaf:
    """One place in the output structure: its per-batch values, on their way to the CPU."""

    __slots__ = ("path", "kind", "buffer", "filled", "capacity", "chunks", "shape", "rows", "dtype", "device",
                 "non_blocking")
    buffer: torch.Tensor | None  # the rows planned from the first batch, while the batches fit them
    chunks: list[Any]  # batches' values on their way to the result (the buffer's rows first, once spilled)

    def __init__(self, path: str, first: Any, plan: tuple[int, int] | None) -> None:
        self.path, self.buffer, self.filled, self.capacity, self.chunks = path, None, 0, 0, []
        self.kind = _OTHER if not isinstance(first, torch.Tensor) else _STACK if first.dim() == 0 else _ROWS
        self.device = first.device if isinstance(first, torch.Tensor) else None
        self.non_blocking = self.device is not None and self.device.type == "cuda"
        if self.kind is _ROWS:
            self.shape, self.rows, self.dtype = first.shape, first.shape[0], first.dtype
            if plan is not None and self.rows == plan[1] and first.layout == torch.strided and not first.is_nested:
                self.buffer, self.capacity = _host_rows(first, plan[0]), plan[0]

    def add(self, value: Any, index: int) -> None:
        """Take one batch's value: into the buffer's next rows when it fits, else to the CPU chunks."""
        buffer = self.buffer
        if buffer is not None and type(value) is torch.Tensor and value.shape == self.shape \
                and value.dtype == self.dtype:  # a whole batch like the first: the common case first
            start = self.filled
            stop = start + self.rows
            if stop <= self.capacity:
                buffer[start:stop].copy_(value, non_blocking=self.non_blocking)
                self.filled = stop
                return
        self._add_other(value, index)

    def _add_other(self, value: Any, index: int) -> None:
        kind = self.kind
        if kind is _OTHER:
            self.chunks.append(value)
            return
        if not isinstance(value, torch.Tensor):
            raise _structure_error(self.path, "a tensor", value, index)
        if kind is _STACK:  # one scalar per batch: kept on the device (tiny), stacked at the end
            self.chunks.append(value)
            return
        if self.buffer is not None:  # a short batch (the last) fits; another trailing shape or dtype does not
            start, shape = self.filled, value.shape
            if value.dim() == len(self.shape) and shape[1:] == self.shape[1:] and value.dtype == self.dtype \
                    and start + shape[0] <= self.capacity:
                self.buffer[start:start + shape[0]].copy_(value, non_blocking=self.non_blocking)
                self.filled = start + shape[0]
                return
            self.spill()
        self.chunks.append(value.to("cpu", non_blocking=self.non_blocking))

    def spill(self) -> None:
        """Stop using the buffer: the rows written so far become the first chunk."""
        if self.buffer is not None:
            self.chunks.insert(0, self.buffer[:self.filled])
            self.buffer = None

    def result(self) -> Any:
        """The batches' values joined: ``torch.cat`` along dim 0, stacked scalars, or a list."""
        if self.kind is _OTHER:
            return tree_map(lambda v: v, self.chunks)
        if self.kind is _STACK:
            return torch.stack(self.chunks).cpu()  # host-sync: once, at the end (a scalar per batch)
        if self.buffer is not None:
            if self.filled == self.capacity:
                return self.buffer
            self.spill()  # fewer rows than expected: a copy of those written, not a view of the whole buffer
        chunks = self.chunks
        if len(chunks) > 1 and any(chunk.shape[1:] != chunks[0].shape[1:] for chunk in chunks):
            return _padded_cat(chunks)
        return torch.cat(chunks)


#: What fills the positions a batch did not have when batches differ past dim 0 (a causal LM's logits over
#: batches padded to different lengths): Hugging Face Trainer's ``padding_index``, so its users read it alike.
PAD_VALUE = -100


def _padded_cat(chunks: list[torch.Tensor]) -> torch.Tensor:
    """Batches whose shapes differ past dim 0 (not in rank), each padded at the end of every dim to the
    largest size with :data:`PAD_VALUE`, then joined along dim 0.

    Example:
        >>> _padded_cat([torch.ones(1, 2), torch.zeros(2, 3)]).tolist()
        [[1.0, 1.0, -100.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    if len({chunk.dim() for chunk in chunks}) != 1:
        raise ValueError("predict: the batches' outputs have different numbers of dimensions "
                         f"({[tuple(chunk.shape) for chunk in chunks]}), so they cannot be joined. Return outputs "
                         "of one rank from forward / predict_step.")
    sizes = [max(chunk.shape[d] for chunk in chunks) for d in range(1, chunks[0].dim())]
    rows = sum(chunk.shape[0] for chunk in chunks)
    joined = torch.full((rows, *sizes), PAD_VALUE, dtype=chunks[0].dtype)
    start = 0
    for chunk in chunks:
        where = (slice(start, start + chunk.shape[0]), *(slice(0, n) for n in chunk.shape[1:]))
        joined[where] = chunk
        start += chunk.shape[0]
    return joined


def _host_rows(first: torch.Tensor, rows: int) -> torch.Tensor:
    """A CPU tensor of ``rows`` rows shaped like ``first``'s, pinned when ``first`` is on CUDA.

    A normal tensor, not an inference tensor (the user may change the result in place); its memory
    format follows ``first`` (channels-last stays channels-last, as ``torch.cat`` keeps it).
    """
    layout = torch.contiguous_format
    if not first.is_contiguous():
        for candidate, ndim in ((torch.channels_last, 4), (torch.channels_last_3d, 5)):
            if first.dim() == ndim and first.is_contiguous(memory_format=candidate):
                layout = candidate
    shape = (rows, *first.shape[1:])
    with torch.inference_mode(False):
        if first.device.type == "cuda":
            try:
                return torch.empty(shape, dtype=first.dtype, memory_format=layout, pin_memory=True)
            except RuntimeError:  # pinned memory is limited: pageable works too, with slower copies
                pass
        return torch.empty(shape, dtype=first.dtype, memory_format=layout)


class _Node:
    """A tuple, list or dict in the output structure, with a node per item."""

    __slots__ = ("path", "kind", "keys", "children")

    def __init__(self, path: str, kind: type, keys: list[Any] | None, children: list[Any]) -> None:
        self.path, self.kind, self.keys, self.children = path, kind, keys, children


def _learn(value: Any, path: str, plan: tuple[int, int] | None) -> Any:
    """The structure of the first batch's output, as nodes and leaves."""
    if isinstance(value, (tuple, list)):
        children = [_learn(item, f"{path}[{i}]", plan) for i, item in enumerate(value)]
        return _Node(path, type(value), None, children)
    if isinstance(value, dict):
        keys = list(value)
        return _Node(path, dict, keys, [_learn(value[key], f"{path}[{key!r}]", plan) for key in keys])
    return _Leaf(path, value, plan)


def _add(node: Any, value: Any, index: int) -> None:
    """Give each leaf its part of one batch's output, checking the structure against the first batch's."""
    if type(node) is _Leaf:
        node.add(value, index)
        return
    if node.keys is None:
        if type(value) is not node.kind or len(value) != len(node.children):
            raise _structure_error(node.path, f"a {node.kind.__name__} of length {len(node.children)}", value, index)
        for child, item in zip(node.children, value, strict=True):
            _add(child, item, index)
        return
    if not isinstance(value, dict) or value.keys() != set(node.keys):
        raise _structure_error(node.path, f"a dict with keys {node.keys}", value, index)
    for key, child in zip(node.keys, node.children, strict=True):
        _add(child, value[key], index)


def _assemble(node: Any) -> Any:
    if type(node) is _Leaf:
        return node.result()
    items = [_assemble(child) for child in node.children]
    if node.keys is not None:
        return dict(zip(node.keys, items, strict=True))
    return node.kind(*items) if hasattr(node.kind, "_fields") else node.kind(items)  # a namedtuple takes fields


def _leaves(node: Any) -> list[_Leaf]:
    return [node] if type(node) is _Leaf else [leaf for child in node.children for leaf in _leaves(child)]


def _structure_error(path: str, expected: str, value: Any, index: int) -> ValueError:
    shown = f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (tuple, list)) else \
        f"a dict with keys {list(value)}" if isinstance(value, dict) else describe(value)
    return ValueError(f"The model's output must have the same structure in every batch of predict(): "
                      f"`{path}` was {expected} in batch 0. Received: {path}={shown} in batch {index}. Return "
                      "the same tuple/list/dict (same length, same keys, tensors in the same places) from "
                      "forward() for every batch.")


class OutputCollector:
    """Gathers predict's per-batch outputs on the CPU (see the module docstring).

    Args:
        plan: ``(samples, first batch's samples)`` from :func:`expected_samples`, or None when unknown.

    Example:
        >>> collector = OutputCollector((5, 2))
        >>> for index, rows in enumerate(([0, 1], [2, 3], [4])):
        ...     collector.add({"y": torch.tensor(rows), "loss": torch.tensor(0.5)}, index)
        >>> collector.result()
        {'y': tensor([0, 1, 2, 3, 4]), 'loss': tensor([0.5000, 0.5000, 0.5000])}
    """

    def __init__(self, plan: tuple[int, int] | None) -> None:
        self.plan = plan
        self.spec: Any = None
        self.cuda_devices: list[torch.device] = []

    def add(self, output: Any, index: int) -> None:
        """Take batch ``index``'s output (the first batch sets the structure every later one must keep)."""
        spec = self.spec
        if spec is None:
            spec = self.spec = self._start(output)
        if type(spec) is _Leaf:
            spec.add(output, index)
        else:
            _add(spec, output, index)

    def _start(self, output: Any) -> Any:
        if output is None:
            raise TypeError("The model's forward returned None, so predict() has no outputs to return. Received: "
                            "output=None. Return the output at the end of forward(): `return self.layers(x)`.")
        spec = _learn(output, "output", self.plan)
        for leaf in _leaves(spec):  # where asynchronous copies will come from
            if leaf.kind is _ROWS and leaf.non_blocking and leaf.device is not None \
                    and leaf.device not in self.cuda_devices:
                self.cuda_devices.append(leaf.device)
        return spec

    def result(self) -> Any:
        """All batches' outputs on the CPU, joined; waits once for the asynchronous copies."""
        if self.spec is None:
            raise ValueError("`x` yielded no batches, so predict() has no outputs to return. Pass data with at "
                             "least one sample.")
        for device in self.cuda_devices:
            torch.cuda.synchronize(device)  # host-sync: once, at the end, for all the batches' copies
        return _assemble(self.spec)
