"""A user's ``DataLoader(TensorDataset(...))`` batched by indexing, with the DataLoader's own random numbers.

A DataLoader calls ``__getitem__`` once per sample and collates the samples:
for in-memory tensors that is most of an overhead-bound step. When the
DataLoader is one whose batches are exactly ``tensors[indices]`` (a
``TensorDataset``, the default collate function, no workers, the default
sequential or random sampler in a plain ``BatchSampler``), :class:`IndexedLoader`
makes the same batches by indexing the tensors. Each epoch it draws exactly the
random numbers iterating the DataLoader draws, from the same generators and in
the same order (the DataLoader's base seed, then the sampler's permutations), so
the batches, their order and every RNG state after the epoch are those of
``for batch in loader``. The draws are made when the epoch's iterator is made; a
DataLoader makes its sampler's at the first and the last batch, which differs
only for a sampler generator shared with something else during the epoch.
Anything else goes through the DataLoader unchanged.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset, default_collate

from .batcher import TensorBatcher


def index_batchable(loader: Any) -> bool:
    """True when iterating ``loader`` gives ``tensors[indices]`` batches that indexing can reproduce.

    Example:
        >>> data = TensorDataset(torch.arange(6.0))
        >>> index_batchable(DataLoader(data, shuffle=True)), index_batchable(DataLoader(data, num_workers=1))
        (True, False)
    """
    if type(loader) is not DataLoader or type(loader.dataset) is not TensorDataset:
        return False
    sampler, batch_sampler = loader.sampler, loader.batch_sampler
    default_sampler = type(sampler) is SequentialSampler or (
        type(sampler) is RandomSampler and not sampler.replacement and sampler._num_samples is None)
    return (loader.num_workers == 0 and loader.collate_fn is default_collate and default_sampler
            and type(batch_sampler) is BatchSampler and batch_sampler.sampler is sampler
            and len(loader.dataset) > 0)


class IndexedLoader(TensorBatcher):
    """The batches of an :func:`index_batchable` DataLoader, made by indexing its tensors.

    Args:
        loader: the user's DataLoader (kept as ``loader``: its sampler, generator and length).

    Example:
        >>> loader = DataLoader(TensorDataset(torch.arange(5.0), torch.arange(5)), batch_size=2, drop_last=True)
        >>> [x.tolist() for x, y in IndexedLoader(loader)]
        [[0.0, 1.0], [2.0, 3.0]]
    """

    def __init__(self, loader: DataLoader, float_dtype: torch.dtype | None = None) -> None:
        shuffle = type(loader.sampler) is RandomSampler
        dataset = cast(TensorDataset, loader.dataset)  # index_batchable checked it
        # Floating tensors in the model's dtype, as in-memory data (one cast per call, not per batch).
        tensors = tuple(t.to(float_dtype) if float_dtype is not None and t.is_floating_point() and
                        t.dtype != float_dtype else t for t in dataset.tensors)
        super().__init__(tensors, batch_size=loader.batch_size or 1, shuffle=shuffle)
        self.loader = loader
        self.drop_last = loader.drop_last

    @property
    def pass_rngs(self) -> tuple[str, ...]:
        """The DataLoader's base seed and, without their own generators, the sampler's seed come from torch's RNG."""
        return ("torch",)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return super().__len__()

    def __iter__(self) -> Iterator[tuple]:
        # The draws of iter(loader) and its first batch, eagerly (a resumed epoch restores
        # the RNG, calls iter(), then restores the later state: see engine.epoch_iterator).
        torch.empty((), dtype=torch.int64).random_(generator=self.loader.generator)  # the DataLoader's base seed
        arrays = self.arrays
        if self.shuffle:
            generator = self._sampler_generator()
            order = torch.randperm(self.total_samples, generator=generator)
            if generator is self.loader.sampler.generator:  # type: ignore[attr-defined]
                # RandomSampler draws one more permutation (for its empty tail) once exhausted.
                torch.randperm(self.total_samples, generator=generator)
            arrays = tuple(t.index_select(0, order.to(t.device)) for t in arrays)  # one gather per epoch, then slices
        start = self.skip_batches * self.batch_size
        self.skip_batches = 0
        stop = (self.num_samples // self.batch_size) * self.batch_size if self.drop_last else self.num_samples
        return self._slices(arrays, start, stop)

    def _sampler_generator(self) -> torch.Generator:
        """RandomSampler's generator: its own, else a fresh one seeded from the global RNG (as it does)."""
        generator = cast(RandomSampler, self.loader.sampler).generator
        if generator is None:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())  # host-sync: CPU, once per epoch
            generator = torch.Generator()
            generator.manual_seed(seed)
        return generator
