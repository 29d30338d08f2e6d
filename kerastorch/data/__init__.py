"""Data: whatever the user passes -> batch sources, placed on the right device and rank.

* :mod:`.adapters`: tensors, arrays, frames, Datasets, DataLoaders -> a batch source
  (in-memory data is batched by index slicing, the fast path);
* :mod:`.placement`: this rank's shard under torchrun, GPU residency and pinning;
* :mod:`.trees`: nested batches (map, move to a device, split into ``(x, y, w)``).
"""
from .adapters import LoaderSource, TensorBatcher, adapt, split_validation, to_structure, to_tensor
from .placement import place
from .trees import batch_size_of, move_to_device, tree_leaves, tree_map, unpack_batch

__all__ = ["LoaderSource", "TensorBatcher", "adapt", "batch_size_of", "move_to_device", "place",
           "split_validation", "to_structure", "to_tensor", "tree_leaves", "tree_map", "unpack_batch"]
