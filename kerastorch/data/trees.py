"""Nested batches: map over their tensors, move them to a device, split them into (x, y, w).

A batch is a tensor, a tuple/list or a dict, nested in any way; these helpers
walk it without caring which. The common flat ``(x, y)`` batch takes a fast
path with no recursion (the hot loop calls these every step). Other mappings
(transformers' ``BatchEncoding``, what its data collators return) are walked as
dicts, and :func:`move_to_device` makes them plain dicts.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..checks import describe


def tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    """Apply ``fn`` to every leaf of nested tuples/lists/dicts."""
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, item) for item in tree)
    if isinstance(tree, dict):
        return {key: tree_map(fn, value) for key, value in tree.items()}
    if type(tree) is not torch.Tensor and isinstance(tree, Mapping):  # e.g. a BatchEncoding (a UserDict)
        return {key: tree_map(fn, value) for key, value in tree.items()}
    return fn(tree)


def tree_leaves(tree: Any) -> list[Any]:
    leaves: list[Any] = []
    tree_map(leaves.append, tree)
    return leaves


def move_to_device(batch: Any, device: torch.device, non_blocking: bool = True,
                   channels_last: bool = False) -> Any:
    """Move every tensor of a nested batch to ``device`` (asynchronously where possible).

    With ``channels_last``, 4-D floating tensors (image batches) also change memory format.
    """
    kind = type(batch)
    if (kind is tuple or kind is list) and not channels_last:
        # The common (x, y) batch (a list from a DataLoader): no recursive walk, no generator.
        if len(batch) == 2 and type(batch[0]) is torch.Tensor and type(batch[1]) is torch.Tensor:
            x, y = batch[0].to(device, non_blocking=non_blocking), batch[1].to(device, non_blocking=non_blocking)
            return (x, y) if kind is tuple else [x, y]
        if all(type(t) is torch.Tensor for t in batch):
            return kind(t.to(device, non_blocking=non_blocking) for t in batch)
    if channels_last:
        return tree_map(lambda t: t.to(device, non_blocking=non_blocking, memory_format=torch.channels_last)
                        if isinstance(t, torch.Tensor) and t.dim() == 4 and t.is_floating_point()
                        else t.to(device, non_blocking=non_blocking) if isinstance(t, torch.Tensor) else t, batch)
    return tree_map(lambda t: t.to(device, non_blocking=non_blocking)
                    if isinstance(t, torch.Tensor) else t, batch)


_RESERVED = ("y", "sample_weight")


def unpack_batch(batch: Any) -> tuple[Any, Any, Any]:
    """Split a batch into ``(x, y, sample_weight)``; missing parts are None.

    A tuple/list of length 1, 2 or 3 is ``(x,)``, ``(x, y)`` or ``(x, y, w)``;
    a bare tensor is ``x`` alone. Multiple inputs go in a nested tuple:
    ``((x1, x2), y)``. A dict batch (what a Dataset returning dicts gives) is read by
    its keys: ``{"x": ..., "y": ..., "sample_weight": ...}`` (``x`` itself may be a
    tensor, tuple or dict); without an ``"x"`` key the entries other than ``"y"`` and
    ``"sample_weight"`` are keyword inputs of ``forward``.

    The Hugging Face way: a dict batch without ``"x"`` and ``"y"`` but with ``"labels"``
    (``{"input_ids": ..., "attention_mask": ..., "labels": ...}``) passes every entry but
    ``"sample_weight"``, the labels included, to ``forward`` (a transformers model computes
    its loss from them), and its ``y`` is ``batch["labels"]`` (for the metrics, or a compiled
    loss). A ``"y"`` entry still wins: then ``"labels"`` is just another keyword input.

    Example:
        >>> x, y, w = unpack_batch({"input_ids": 1, "mask": 2, "y": 3})
        >>> x, y, w
        ({'input_ids': 1, 'mask': 2}, 3, None)
        >>> unpack_batch({"input_ids": 1, "labels": 0})
        ({'input_ids': 1, 'labels': 0}, 0, None)
    """
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None, None
        if len(batch) == 2:
            return batch[0], batch[1], None
        if len(batch) == 3:
            return batch[0], batch[1], batch[2]
        raise ValueError(f"A batch must be (x,), (x, y) or (x, y, sample_weight). Received a "
                         f"{type(batch).__name__} of length {len(batch)}; for several inputs "
                         "use ((x1, x2), y).")
    if isinstance(batch, dict):
        return _unpack_dict(batch)
    if type(batch) is not torch.Tensor and isinstance(batch, Mapping):  # a BatchEncoding not moved yet
        return _unpack_dict(dict(batch))
    return batch, None, None


def _unpack_dict(batch: dict) -> tuple[Any, Any, Any]:
    y, weights = batch.get("y"), batch.get("sample_weight")
    if "x" in batch:
        extra = sorted(str(key) for key in batch if key not in ("x", *_RESERVED))
        if extra:
            raise ValueError(f"A dict batch with an 'x' entry may also hold only 'y' and 'sample_weight'. "
                             f"Received keys: {sorted(map(str, batch))}. Put several inputs under 'x' as a "
                             "tuple or a dict: {'x': {'a': ..., 'b': ...}, 'y': ...}.")
        return batch["x"], y, weights
    if y is None and batch.get("labels") is not None:  # Hugging Face: labels are a keyword input and the target
        x = batch if weights is None else {key: value for key, value in batch.items() if key != "sample_weight"}
        return x, batch["labels"], weights
    if y is None and weights is None:
        return batch, None, None
    return {key: value for key, value in batch.items() if key not in _RESERVED}, y, weights


def batch_size_of(batch: Any) -> int:
    """Number of samples in a batch (first dimension of its first tensor)."""
    if type(batch) in (tuple, list) and batch and type(batch[0]) is torch.Tensor and batch[0].dim():
        return batch[0].shape[0]  # the common (x, y) batch, without the tree walk
    for leaf in tree_leaves(batch):
        if isinstance(leaf, torch.Tensor) and leaf.dim():
            return leaf.shape[0]
    raise ValueError(f"Could not find a batch dimension in batch {describe(batch)}.")

