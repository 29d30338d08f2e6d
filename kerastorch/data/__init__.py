"""Data: whatever the user passes -> batch sources, placed on the right device and rank.

* :mod:`.adapters`: tensors, arrays, frames, Datasets, DataLoaders -> a batch source;
* :mod:`.batcher`: in-memory data batched by index slicing, the fast path;
* :mod:`.indexed`: a DataLoader over a TensorDataset batched the same way, with its own RNG draws;
* :mod:`.placement`: this rank's shard under torchrun, GPU residency and pinning;
* :mod:`.source`: the batch-source interface (:class:`~.source.BatchSource`) those all implement;
* :mod:`.trees`: nested batches (map, move to a device, split into ``(x, y, w)``).
"""
from .adapters import LoaderSource, adapt, floating_dtype, source_length, split_validation, to_structure, to_tensor
from .batcher import TensorBatcher
from .indexed import IndexedLoader, index_batchable
from .placement import place
from .source import BatchSource
from .trees import batch_size_of, move_to_device, tree_leaves, tree_map, unpack_batch

__all__ = ["BatchSource", "IndexedLoader", "LoaderSource", "TensorBatcher", "adapt", "batch_size_of", "floating_dtype",
           "index_batchable", "move_to_device", "place", "source_length", "split_validation", "to_structure",
           "to_tensor", "tree_leaves", "tree_map", "unpack_batch"]
