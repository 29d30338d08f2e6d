"""Input adapters: whatever the user passes -> an iterable of batches.

In-memory data (tensors, numpy arrays, pandas frames, ``TensorDataset`` and
its ``Subset``) is batched by index slicing: one permutation per epoch when
shuffling, then contiguous views, with an exact last partial batch. Other
``Dataset`` objects get a ``DataLoader``. A user's ``DataLoader`` is used as is,
except that one over a ``TensorDataset`` with the default collate, sampler and
no workers is batched by indexing (:mod:`.indexed`), with the same batches in
the same order.

Batches are ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; ``x`` may be a
tensor, a tuple/list (positional inputs) or a dict (keyword inputs). A batch may
also be a dict: ``{"x": ..., "y": ..., "sample_weight": ...}``, or keyword inputs
plus reserved ``"y"`` / ``"sample_weight"`` entries (see
:func:`~kerastorch.data.trees.unpack_batch`).

In-memory floating data (tensors, arrays, frames, a ``TensorDataset``) is cast to
the model's floating dtype (float32 unless the model was made ``.double()`` /
``.half()``), booleans too. int32 and int64 keep their dtype, as in Keras (int32 targets
stay int32: the losses that need int64 class indices cast them); other integers (uint8,
int16, ...) become int64, which torch's index-taking layers (``nn.Embedding``) accept.
A pandas Series is one column, ``(N, 1)``, and a SciPy sparse matrix is made dense, as
Keras does for PyTorch. Batches from a DataLoader or a generator keep their structure;
their NumPy arrays become tensors by the same rules, and their floats the model's dtype.

Python generators and other one-shot iterators of batches, and ``IterableDataset``
objects (batched by a DataLoader, ``batch_size`` default 32, never shuffled), have
no length: an epoch is one pass over them, or ``steps_per_epoch`` batches. A
one-shot iterator is not restarted: epochs continue it, and fit stops with a warning
when it runs out (an endless generator with ``steps_per_epoch`` runs every epoch).
"""
from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterator, Sized
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from ..checkpointing.rng import ALL_RNGS
from ..checks import describe, plain_int, require_positive_int
from ..distributed import launched_distributed
from .batcher import TensorBatcher, num_samples
from .hf_datasets import hf_loader, is_hf_dataset
from .indexed import IndexedLoader, index_batchable
from .trees import tree_leaves, tree_map

DEFAULT_BATCH_SIZE = 32
_NUMPY_FLOATS = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray)) or hasattr(value, "to_numpy") or _is_sparse(value)


def _is_sparse(value: Any) -> bool:
    """A SciPy sparse matrix or array (duck-typed: SciPy is not imported)."""
    return hasattr(value, "toarray") and hasattr(value, "nnz")


def floating_dtype(module: nn.Module) -> torch.dtype:
    """The dtype in-memory floating data is cast to: the module's first floating parameter's (else float32).

    Example:
        >>> floating_dtype(nn.Linear(2, 1)), floating_dtype(nn.Linear(2, 1).double())
        (torch.float32, torch.float64)
    """
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def to_tensor(value: Any, name: str, float_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Convert a tensor, numpy array, pandas object or number list to a tensor.

    Floating and bool data become ``float_dtype`` (the model's: what its layers compute in);
    int32 and int64 keep their dtype (Keras's rule), other integers become int64 (what
    ``nn.Embedding`` takes). Tensors and arrays follow the same rule. A pandas
    Series becomes one column ``(N, 1)``; a SciPy sparse matrix becomes dense.

    Example:
        >>> to_tensor(torch.ones(2, dtype=torch.float64), "x").dtype, to_tensor(np.arange(2, dtype=np.int32), "y").dtype
        (torch.float32, torch.int32)
    """
    if isinstance(value, torch.Tensor):
        if (value.is_floating_point() or value.dtype == torch.bool) and value.dtype != float_dtype:
            return value.to(float_dtype)
        if value.is_floating_point() or value.is_complex() or value.dtype in (torch.bool, torch.int32, torch.int64):
            return value
        return value.long()
    if hasattr(value, "to_numpy"):  # pandas DataFrame / Series (a Series is one column, as in Keras)
        value = value.to_numpy().reshape(-1, 1) if getattr(value, "ndim", None) == 1 else value.to_numpy()
    elif _is_sparse(value):
        value = value.toarray()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise TypeError(f"`{name}` could not be converted to a tensor. Received: {describe(value)}") from err
    if np.issubdtype(array.dtype, np.integer):
        if array.dtype not in (np.int32, np.int64):  # int32 stays (Keras); the class-index losses cast it
            array = array.astype(np.int64)
    elif not (np.issubdtype(array.dtype, np.floating) or array.dtype == np.bool_):
        raise TypeError(f"`{name}` must hold numbers. Received an array of dtype {array.dtype}; "
                        "convert non-numeric columns first.")
    elif float_dtype in _NUMPY_FLOATS:
        array = array.astype(_NUMPY_FLOATS[float_dtype], copy=False)  # a copy when the dtype changes
    else:  # e.g. bfloat16, which NumPy lacks: convert a copy
        return torch.from_numpy(np.array(array)).to(float_dtype)
    if not array.flags.writeable:  # e.g. pandas 3's read-only views: torch would share (and warn about) them
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array))


def to_structure(value: Any, name: str, float_dtype: torch.dtype = torch.float32) -> Any:
    """Convert user data to tensors, keeping tuples/lists/dicts of arrays as structure."""
    if isinstance(value, dict):
        return {key: to_tensor(item, f"{name}[{key!r}]", float_dtype) for key, item in value.items()}
    if isinstance(value, (tuple, list)) and value and all(_is_array(v) for v in value):
        converted = (to_tensor(item, f"{name}[{i}]", float_dtype) for i, item in enumerate(value))
        return list(converted) if isinstance(value, list) else tuple(converted)  # the user's structure, as Keras
    return to_tensor(value, name, float_dtype)


_END = object()


def _prepended(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    """``first`` then the rest of a generator, as one generator (closing it closes the user's, as before)."""
    yield first
    yield from rest


def _batch_leaf(leaf: Any, float_dtype: torch.dtype) -> Any:
    if isinstance(leaf, np.ndarray):
        return to_tensor(leaf, "a batch", float_dtype)
    if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.dtype != float_dtype:
        return leaf.to(float_dtype)
    return leaf


class LoaderSource:
    """Wraps a DataLoader (or any iterable of batches) with an optional batch skip.

    Args:
        loader: the user's DataLoader / iterable / generator, or one kerastorch built for a Dataset.
        built_from: for a DataLoader kerastorch built, its keyword arguments (so that
            :meth:`pin` can rebuild it); None for the user's own, which stays as given.

    A one-shot iterator (a generator) is continued, not restarted, by each ``iter()``;
    ``exhausted`` becomes True when it has no batch left.
    """

    exhausted = False
    #: A user's sampler, dataset or worker seeding may draw from any global RNG.
    pass_rngs = ALL_RNGS

    def __init__(self, loader: Any, built_from: dict[str, Any] | None = None,
                 float_dtype: torch.dtype | None = None) -> None:
        self.loader = loader
        self.built_from = built_from
        self.float_dtype = float_dtype  # batches' NumPy arrays and other floats become this (the model's)
        self.skip_batches = 0
        self.one_shot = isinstance(loader, Iterator)
        dataset = getattr(loader, "dataset", None)
        self.num_samples = len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None

    def pin(self) -> None:
        """Pinned batches for asynchronous copies to CUDA, if kerastorch built the DataLoader."""
        if self.built_from is not None and not self.loader.pin_memory:
            self.loader = DataLoader(**self.built_from, pin_memory=True)

    def __len__(self) -> int:
        return len(self.loader)  # TypeError without a length: see source_length

    def __iter__(self) -> Iterator[Any]:
        iterator = self._continued() if self.one_shot else iter(self.loader)
        for _ in range(self.skip_batches):
            next(iterator, None)
        self.skip_batches = 0
        return iterator if self.float_dtype is None else self._converted(iterator, self.float_dtype)

    @staticmethod
    def _converted(iterator: Iterator[Any], float_dtype: torch.dtype) -> Iterator[Any]:
        """Batches as in-memory data is converted (NumPy arrays to tensors, floats to the model's dtype), decided
        on the first batch: batches that need nothing pass through untouched, at no cost per batch."""
        first = next(iterator, _END)
        if first is _END:
            return iter(())
        batches = itertools.chain((first,), iterator)
        if not any(isinstance(leaf, np.ndarray) or (isinstance(leaf, torch.Tensor) and leaf.is_floating_point()
                                                     and leaf.dtype != float_dtype) for leaf in tree_leaves(first)):
            return batches
        return (tree_map(lambda leaf: _batch_leaf(leaf, float_dtype), batch) for batch in batches)

    def _continued(self) -> Iterator[Any]:
        # The same iterator, where the last epoch left it. Not `yield from`: closing this
        # epoch's generator (a steps_per_epoch break) would close the user's too.
        while True:
            try:
                batch = next(self.loader)
            except StopIteration:
                self.exhausted = True
                return
            yield batch


def source_length(source: Any) -> int | None:
    """Batches per pass of a batch source, or None when it has no length (a generator, an IterableDataset).

    Example:
        >>> source_length(adapt(torch.zeros(5, 2), batch_size=2, shuffle=False)), source_length(LoaderSource(iter([])))
        (3, None)
    """
    try:
        return len(source)
    except TypeError:
        return None


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
          arg: str = "x", float_dtype: torch.dtype = torch.float32) -> TensorBatcher | LoaderSource:
    """Turn fit/evaluate/predict inputs into a batch source (see module docstring)."""
    if x is None:
        raise ValueError(f"`{arg}` must be data: tensors, arrays, a Dataset or a DataLoader. "
                         f"Received: {arg}=None")
    if isinstance(x, (str, bytes)):  # iterable and sized, but no data: refused before it is read as batches
        raise TypeError(f"`{arg}` must be data: tensors, arrays, DataFrames, a Dataset, a DataLoader or a generator "
                        f"of batches. Received: {arg}={x!r:.60} (a {type(x).__name__}). To read a file, load it "
                        "first (e.g. pandas.read_csv(path)).")
    if shuffle not in (True, False):
        raise ValueError(f"`shuffle` must be True or False. Received: shuffle={shuffle!r}. Keras's "
                         "shuffle='batch' (for HDF5 data read in chunks) has no use here: in-memory data is "
                         "shuffled by index at no extra cost. Pass shuffle=True.")
    require_positive_int("batch_size", batch_size, allow_none=True)
    batch_size = plain_int(batch_size)
    if isinstance(x, (DataLoader, Dataset, Iterator)) or (
            hasattr(x, "__iter__") and hasattr(x, "__len__") and not _is_array(x)
            and not isinstance(x, (tuple, list, dict))):
        if y is not None or sample_weight is not None:
            raise ValueError(f"`y` and `sample_weight` must not be given when `{arg}` is a "
                             f"{type(x).__name__}: its batches already hold the targets.")
        return _adapt_iterable(x, batch_size, shuffle, generator, arg, float_dtype)
    arrays = [to_structure(x, arg, float_dtype)]
    if y is not None:
        arrays.append(to_structure(y, "y", float_dtype))
    if sample_weight is not None:
        if y is None:
            raise ValueError("`sample_weight` needs `y`.")
        arrays.append(to_tensor(sample_weight, "sample_weight").float())
    _check_lengths(arrays, arg, x)
    return TensorBatcher(tuple(arrays), batch_size or DEFAULT_BATCH_SIZE, shuffle, generator)


def _check_lengths(arrays: list, arg: str, given: Any = None) -> None:
    names = [arg, "y", "sample_weight"][:len(arrays)]
    sizes = [num_samples(part, f"`{name}`") for part, name in zip(arrays, names, strict=True)]
    if len(set(sizes)) > 1 and isinstance(given, list) and len(sizes) > 1 and len(given) == sizes[1]:
        first = given[0]
        shape = tuple(first.shape) if hasattr(first, "shape") else type(first).__name__
        raise ValueError(f"`{arg}` is a Python list of {len(given)} items (the first of shape {shape}), which "
                         f"kerastorch reads as {len(given)} separate model inputs (forward(*{arg})) of "
                         f"{sizes[0]} samples each; `y` has {sizes[1]} samples. If each item is one sample, stack "
                         f"them into one tensor: {arg} = torch.stack({arg}) (or np.stack({arg})). For several model "
                         "inputs, pass a tuple of tensors that each hold every sample.")
    if len(set(sizes)) > 1:
        detail = ", ".join(f"{name} has {size}" for name, size in zip(names, sizes, strict=True))
        raise ValueError(f"`{arg}` and `y` must have the same number of samples. Received: {detail}.")


def _adapt_iterable(x: Any, batch_size: int | None, shuffle: bool, generator: torch.Generator | None, arg: str,
                    float_dtype: torch.dtype) -> TensorBatcher | LoaderSource:
    if is_hf_dataset(x):  # batched as transformers' Trainer does: numeric columns, "labels", padding
        return LoaderSource(hf_loader(x, batch_size, shuffle, generator), float_dtype=float_dtype)
    if isinstance(x, Iterator):  # a generator: batches as they come, continued over epochs
        if batch_size is not None:
            raise ValueError(f"`batch_size` must not be given when `{arg}` is a generator: it yields whole "
                             f"batches. Received: batch_size={batch_size}")
        if inspect.isgenerator(x) and inspect.getgeneratorstate(x) == inspect.GEN_CLOSED:
            raise ValueError(f"`{arg}` is a generator that is already exhausted (an earlier call used up its "
                             "batches). Create a new generator for this call.")
        if inspect.isgenerator(x) and inspect.getgeneratorstate(x) == inspect.GEN_CREATED:
            first = next(x, _END)  # an empty generator is an error now, not an epoch without batches
            if first is _END:
                raise ValueError(f"`{arg}` is an empty generator: it yielded no batch. Make it yield (x, y) batches.")
            x = _prepended(first, x)
        return LoaderSource(x, float_dtype=float_dtype)
    if isinstance(x, IterableDataset):  # no length, no shuffling: a DataLoader batches it
        options: dict[str, Any] = {"dataset": x, "batch_size": batch_size or DEFAULT_BATCH_SIZE}
        return LoaderSource(DataLoader(**options), built_from=options, float_dtype=float_dtype)
    if isinstance(x, DataLoader) or not isinstance(x, Dataset):
        if batch_size is not None and isinstance(x, DataLoader):
            raise ValueError(f"`batch_size` must not be given when `{arg}` is a DataLoader: "
                             f"the DataLoader sets it. Received: batch_size={batch_size}")
        source: TensorBatcher | LoaderSource = \
            IndexedLoader(x, float_dtype) if index_batchable(x) and not launched_distributed() else \
            LoaderSource(x, float_dtype=float_dtype)
        if source_length(source) == 0:
            raise ValueError(f"`{arg}` is empty: the DataLoader yields no batches.")
        return source
    if len(cast(Sized, x)) == 0:
        raise ValueError(f"`{arg}` is empty: the Dataset has 0 samples.")
    arrays = _tensor_dataset_arrays(x)
    if arrays is not None:
        arrays = tuple(to_tensor(t, f"{arg}.tensors[{i}]", float_dtype) for i, t in enumerate(arrays))
        return TensorBatcher(arrays, batch_size or DEFAULT_BATCH_SIZE, shuffle, generator)
    options = {"dataset": x, "batch_size": batch_size or DEFAULT_BATCH_SIZE, "shuffle": shuffle,
               "generator": generator if shuffle else None}
    return LoaderSource(DataLoader(**options), built_from=options, float_dtype=float_dtype)


def split_validation(x: Any, y: Any, sample_weight: Any, fraction: float,
                     float_dtype: torch.dtype = torch.float32) -> tuple[tuple, tuple]:
    """Keras-style ``validation_split``: the *last* ``fraction`` of samples, before shuffling."""
    if isinstance(x, (DataLoader, Dataset, Iterator)) or y is None:
        raise ValueError("`validation_split` needs in-memory `x` and `y` (tensors, arrays, "
                         "DataFrames). For a Dataset, DataLoader or generator pass `validation_data`.")
    parts = [to_structure(x, "x", float_dtype), to_structure(y, "y", float_dtype)]
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


