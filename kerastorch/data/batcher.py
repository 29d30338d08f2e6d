"""In-memory tensors batched by index slicing: one permutation per epoch, then contiguous views.

The fast path for tensors, arrays and frames: no per-sample ``__getitem__``,
no collate. The last batch holds the remainder exactly.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from .trees import tree_leaves, tree_map


def num_samples(structure: Any, names: str) -> int:
    """Common first dimension of all leaves; a clear error when they differ."""
    sizes = [leaf.shape[0] if leaf.dim() else 0 for leaf in tree_leaves(structure)]
    if not sizes:
        raise ValueError(f"{names} holds no arrays.")
    if len(set(sizes)) > 1:
        raise ValueError(f"All arrays in {names} must have the same number of samples "
                         f"(first dimension). Received sizes: {sizes}")
    if sizes[0] == 0:
        raise ValueError(f"{names} is empty (0 samples). Pass at least one sample.")
    return sizes[0]


class TensorBatcher:
    """Batches in-memory tensors by slicing: the fast path.

    Args:
        arrays: a tuple ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)`` of
            tensors or nested structures of tensors, all with N samples.
        batch_size: samples per batch; the last batch holds the remainder.
        shuffle: draw one permutation per epoch from ``generator``.
        generator: the torch.Generator used for shuffling (saved in checkpoints).

    Example:
        >>> b = TensorBatcher((torch.arange(10.),), batch_size=4, shuffle=False)
        >>> [len(x) for (x,) in b]
        [4, 4, 2]
    """

    exhausted = False  # in-memory data never runs out (a generator's LoaderSource can)

    def __init__(self, arrays: tuple, batch_size: int, shuffle: bool,
                 generator: torch.Generator | None = None) -> None:
        self.arrays = arrays
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.total_samples = num_samples(arrays, "the data")
        self.num_samples = self.total_samples  # this rank's share once sharded
        self.rank, self.world = 0, 1
        self.skip_batches = 0  # set by resume to skip batches already trained this epoch

    @property
    def pass_rngs(self) -> tuple[str, ...]:
        """The global RNGs a pass draws from: torch's when shuffling without a generator, else none."""
        return ("torch",) if self.shuffle and self.generator is None else ()

    def shard(self, rank: int, world: int) -> None:
        """Give this rank every ``world``-th sample of each epoch's order, without padding.

        No sample is repeated, so an 11-sample dataset on 2 ranks counts 11 (6 + 5).
        All ranks must share the generator's state (fit broadcasts its seed).
        """
        self.rank, self.world = rank, world
        self.num_samples = len(range(rank, self.total_samples, world))

    def first_input(self) -> Any:
        """The first sample of ``x`` (a CPU copy, batch dimension kept): an example of the model's input.

        Example:
            >>> TensorBatcher((torch.arange(6.).reshape(3, 2),), batch_size=2, shuffle=False).first_input()
            tensor([[0., 1.]])
        """
        return tree_map(lambda t: t[:1].detach().cpu(), self.arrays[0])  # host-sync: once per fit call, one sample

    def to_device(self, device: torch.device) -> None:
        """Keep the whole data on ``device``: epochs then do no host-to-device copies."""
        self.arrays = tree_map(lambda t: t.to(device), self.arrays)

    def pin(self) -> None:
        """Pin host memory so per-batch copies to CUDA are asynchronous."""
        self.arrays = tree_map(lambda t: t.pin_memory() if t.device.type == "cpu" else t, self.arrays)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple]:
        # The permutation is drawn here, eagerly, not at the first next(): a resumed
        # epoch restores the generator, calls iter(), then restores the later RNG state.
        arrays = self.arrays
        order = torch.randperm(self.total_samples, generator=self.generator) if self.shuffle else None
        if self.world > 1:
            base = order if order is not None else torch.arange(self.total_samples)
            order = base[self.rank::self.world]
        if order is not None:
            # One gather per epoch, then zero-copy slices: fewer ops than per-batch indexing
            # (index_select: a third of the time of t[order] for a (6200, 2) tensor).
            arrays = tree_map(lambda t: t.index_select(0, order.to(t.device)), arrays)
        start = self.skip_batches * self.batch_size
        self.skip_batches = 0
        return self._slices(arrays, start, self.num_samples)

    def _slices(self, arrays: Any, start: int, stop: int) -> Iterator[tuple]:
        size = self.batch_size
        if len(arrays) == 2 and all(isinstance(t, torch.Tensor) for t in arrays):
            x, y = arrays  # (x, y) tensors, the common case: two slices, no generator
            for begin in range(start, stop, size):
                yield x[begin:begin + size], y[begin:begin + size]
            return
        flat = all(isinstance(t, torch.Tensor) for t in arrays)
        for begin in range(start, stop, size):
            end = begin + size
            if flat:  # tensors: plain slices, no recursive walk
                yield tuple(t[begin:end] for t in arrays)
            else:
                yield tree_map(lambda t: t[begin:end], arrays)  # noqa: B023 (tree_map calls it at once)

