"""Input adapters: whatever the user passes -> an iterable of batches.

In-memory data (tensors, numpy arrays, pandas frames, ``TensorDataset`` and
its ``Subset``) is batched by index slicing: one permutation per epoch when
shuffling, then contiguous views, with an exact last partial batch. Other
``Dataset`` objects get a ``DataLoader``. A user's ``DataLoader`` is used as is,
except that one over a ``TensorDataset`` with the default collate, sampler and
no workers is batched by indexing (:mod:`.indexed`), with the same batches in
the same order.

Batches are ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; ``x`` may be a
tensor, a tuple/list (positional inputs) or a dict (keyword inputs).
"""
from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from ..checks import describe, require_positive_int
from ..distributed import launched_distributed
from .batcher import TensorBatcher, num_samples
from .indexed import IndexedLoader, index_batchable
from .trees import tree_map

DEFAULT_BATCH_SIZE = 32


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray)) or hasattr(value, "to_numpy")


def to_tensor(value: Any, name: str) -> torch.Tensor:
    """Convert a tensor, numpy array, pandas object or number list to a tensor.

    float64 becomes float32 and bool becomes float32 (the dtypes losses expect);
    integers become int64. Tensors are kept as they are.
    """
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "to_numpy"):  # pandas DataFrame / Series
        value = value.to_numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise TypeError(f"`{name}` could not be converted to a tensor. Received: {describe(value)}") from err
    if array.dtype == np.float64 or array.dtype == np.bool_:
        array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.int64)
    elif not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"`{name}` must hold numbers. Received an array of dtype {array.dtype}; "
                        "convert non-numeric columns first.")
    return torch.from_numpy(np.ascontiguousarray(array))


def to_structure(value: Any, name: str) -> Any:
    """Convert user data to tensors, keeping tuples/lists/dicts of arrays as structure."""
    if isinstance(value, dict):
        return {key: to_tensor(item, f"{name}[{key!r}]") for key, item in value.items()}
    if isinstance(value, (tuple, list)) and value and all(_is_array(v) for v in value):
        return tuple(to_tensor(item, f"{name}[{i}]") for i, item in enumerate(value))
    return to_tensor(value, name)


class LoaderSource:
    """Wraps a DataLoader (or any re-iterable of batches) with an optional batch skip.

    Args:
        loader: the user's DataLoader / iterable, or one kerastorch built for a Dataset.
        built_from: for a DataLoader kerastorch built, its keyword arguments (so that
            :meth:`pin` can rebuild it); None for the user's own, which stays as given.
    """

    def __init__(self, loader: Any, built_from: dict[str, Any] | None = None) -> None:
        self.loader = loader
        self.built_from = built_from
        self.skip_batches = 0
        dataset = getattr(loader, "dataset", None)
        self.num_samples = len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None

    def pin(self) -> None:
        """Pinned batches for asynchronous copies to CUDA, if kerastorch built the DataLoader."""
        if self.built_from is not None and not self.loader.pin_memory:
            self.loader = DataLoader(**self.built_from, pin_memory=True)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.loader)
        for _ in range(self.skip_batches):
            next(iterator, None)
        self.skip_batches = 0
        return iterator


def _tensor_dataset_arrays(dataset: Dataset) -> tuple | None:
    """The tensors behind a TensorDataset or a (nested) Subset of one, else None."""
    if isinstance(dataset, TensorDataset):
        return tuple(dataset.tensors)
    if isinstance(dataset, Subset):
        inner = _tensor_dataset_arrays(dataset.dataset)
        if inner is not None:
            index = torch.as_tensor(dataset.indices, dtype=torch.long)
            return tuple(t[index] for t in inner)
    return None


def adapt(x: Any, y: Any = None, sample_weight: Any = None, *, batch_size: int | None,
          shuffle: bool, generator: torch.Generator | None = None,
          arg: str = "x") -> TensorBatcher | LoaderSource:
    """Turn fit/evaluate/predict inputs into a batch source (see module docstring)."""
    if x is None:
        raise ValueError(f"`{arg}` must be data: tensors, arrays, a Dataset or a DataLoader. "
                         f"Received: {arg}=None")
    if isinstance(x, (DataLoader, Dataset)) or (hasattr(x, "__iter__") and hasattr(x, "__len__")
                                                and not _is_array(x) and not isinstance(x, (tuple, list, dict))):
        if y is not None or sample_weight is not None:
            raise ValueError(f"`y` and `sample_weight` must not be given when `{arg}` is a "
                             f"{type(x).__name__}: its batches already hold the targets.")
        return _adapt_iterable(x, batch_size, shuffle, generator, arg)
    require_positive_int("batch_size", batch_size, allow_none=True)
    arrays = [to_structure(x, arg)]
    if y is not None:
        arrays.append(to_structure(y, "y"))
    if sample_weight is not None:
        if y is None:
            raise ValueError("`sample_weight` needs `y`.")
        arrays.append(to_tensor(sample_weight, "sample_weight").float())
    _check_lengths(arrays, arg)
    return TensorBatcher(tuple(arrays), batch_size or DEFAULT_BATCH_SIZE, shuffle, generator)


def _check_lengths(arrays: list, arg: str) -> None:
    names = [arg, "y", "sample_weight"][:len(arrays)]
    sizes = [num_samples(part, f"`{name}`") for part, name in zip(arrays, names, strict=True)]
    if len(set(sizes)) > 1:
        detail = ", ".join(f"{name} has {size}" for name, size in zip(names, sizes, strict=True))
        raise ValueError(f"`{arg}` and `y` must have the same number of samples. Received: {detail}.")


def _adapt_iterable(x: Any, batch_size: int | None, shuffle: bool,
                    generator: torch.Generator | None, arg: str) -> TensorBatcher | LoaderSource:
    if isinstance(x, DataLoader) or not isinstance(x, Dataset):
        if batch_size is not None and isinstance(x, DataLoader):
            raise ValueError(f"`batch_size` must not be given when `{arg}` is a DataLoader: "
                             f"the DataLoader sets it. Received: batch_size={batch_size}")
        source: TensorBatcher | LoaderSource = \
            IndexedLoader(x) if index_batchable(x) and not launched_distributed() else LoaderSource(x)
        if len(source) == 0:
            raise ValueError(f"`{arg}` is empty: the DataLoader yields no batches.")
        return source
    if len(cast(Sized, x)) == 0:
        raise ValueError(f"`{arg}` is empty: the Dataset has 0 samples.")
    arrays = _tensor_dataset_arrays(x)
    if arrays is not None:
        return TensorBatcher(arrays, batch_size or DEFAULT_BATCH_SIZE, shuffle, generator)
    options: dict[str, Any] = {"dataset": x, "batch_size": batch_size or DEFAULT_BATCH_SIZE, "shuffle": shuffle,
               "generator": generator if shuffle else None}
    return LoaderSource(DataLoader(**options), built_from=options)


def split_validation(x: Any, y: Any, sample_weight: Any, fraction: float) -> tuple[tuple, tuple]:
    """Keras-style ``validation_split``: the *last* ``fraction`` of samples, before shuffling."""
    if isinstance(x, (DataLoader, Dataset)) or y is None:
        raise ValueError("`validation_split` needs in-memory `x` and `y` (tensors, arrays, "
                         "DataFrames). For a Dataset or DataLoader pass `validation_data`.")
    parts = [to_structure(x, "x"), to_structure(y, "y")]
    if sample_weight is not None:
        parts.append(to_tensor(sample_weight, "sample_weight").float())
    _check_lengths(parts, "x")
    total = num_samples(parts[0], "`x`")
    cut = int(total * (1.0 - fraction))
    if cut == 0 or cut == total:
        raise ValueError(f"`validation_split={fraction}` leaves an empty split for {total} samples.")
    train = tuple(tree_map(lambda t: t[:cut], p) for p in parts)
    val = tuple(tree_map(lambda t: t[cut:], p) for p in parts)
    return train, val


