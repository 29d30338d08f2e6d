"""Placement of batch sources: this rank's shard under torchrun, and the GPU.

In-memory data goes onto the GPU when it fits (``data_on_device``) or is
pinned for asynchronous copies; a DataLoader kerastorch built is pinned; a
user's own DataLoader is left as it is, except that under torchrun it is
re-made over this rank's shard when it uses the default samplers.
"""
from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import cast

import torch
from torch.utils.data import DataLoader

from ..distributed import launched_distributed, rank, world_size
from .adapters import LoaderSource
from .batcher import TensorBatcher
from .trees import tree_leaves

DEVICE_DATA_LIMIT = 1 << 30  # data_on_device="auto" keeps data under 1 GiB on the GPU


class ShardSampler(torch.utils.data.Sampler):
    """Every ``world``-th index of a (shuffled) order, without DistributedSampler's padding.

    ``set_epoch`` reseeds the shuffle so every epoch differs and all ranks agree.
    """

    def __init__(self, length: int, rank: int, world: int, shuffle: bool, seed: int) -> None:
        self.length, self.rank, self.world = length, rank, world
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator)
        else:
            order = torch.arange(self.length)
        return iter(order[self.rank::self.world].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world))


def shard_loader(loader: DataLoader, rank: int, world: int, seed: int) -> DataLoader:
    """The same DataLoader over this rank's shard; a user's own sampler is respected."""
    sampler = loader.sampler
    if not isinstance(sampler, (torch.utils.data.SequentialSampler, torch.utils.data.RandomSampler)) \
            or loader.batch_sampler is None or type(loader.batch_sampler) is not torch.utils.data.BatchSampler:
        return loader  # custom (e.g. DistributedSampler): the user decides what each rank sees
    shard = ShardSampler(len(cast(Sized, loader.dataset)), rank, world,
                         isinstance(sampler, torch.utils.data.RandomSampler), seed)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=shard, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                      persistent_workers=loader.persistent_workers)



def place(source: TensorBatcher | LoaderSource, device: torch.device, data_on_device: bool | str,
          seed: int) -> TensorBatcher | LoaderSource:
    """Shard ``source`` for this rank under torchrun; keep in-memory data on (or pinned for) the GPU.

    Args:
        source: what :func:`~kerastorch.data.adapters.adapt` returned.
        device: the compiled device.
        data_on_device: True, False or "auto" (on the GPU when under 1 GiB).
        seed: the shuffling seed all ranks share (for a sharded DataLoader's order).

    Example:
        >>> from kerastorch.data.adapters import adapt
        >>> source = place(adapt(torch.zeros(4, 2), batch_size=2, shuffle=False), torch.device("cpu"), "auto", 0)
        >>> len(source)
        2
    """
    if launched_distributed():
        if isinstance(source, TensorBatcher):
            source.shard(rank(), world_size())
        elif isinstance(source.loader, DataLoader):
            source.loader = shard_loader(source.loader, rank(), world_size(), seed)
    if device.type != "cuda":
        return source
    if isinstance(source, TensorBatcher):
        nbytes = sum(t.numel() * t.element_size() for t in tree_leaves(source.arrays))
        if data_on_device is True or (data_on_device == "auto" and nbytes < DEVICE_DATA_LIMIT):
            source.to_device(device)
        else:
            source.pin()
    else:
        source.pin()  # only a DataLoader kerastorch built for a Dataset; the user's own stays as it is
    return source
