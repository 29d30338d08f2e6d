"""The batch-source interface: what fit's epoch iterator needs of training data.

Every adapter's result implements it (:class:`~kerastorch.data.TensorBatcher`,
:class:`~kerastorch.data.IndexedLoader`, :class:`~kerastorch.data.LoaderSource`), so the
engine sees one kind of object whatever the user passed.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class BatchSource(Protocol):
    """Training batches, pass after pass.

    Attributes:
        skip_batches: batches the next ``iter()`` skips (set by an exact resume; reset to 0 by ``iter()``).
        exhausted: a one-shot source (a generator) has no batch left.
        pass_rngs: the global RNGs (of :data:`~kerastorch.checkpointing.rng.ALL_RNGS`) a pass draws its order
            from; an exact resume puts them back as they were at the pass's start, to draw the same order.

    ``iter(source)`` starts a pass over the data (drawing its shuffling order); a source with a
    ``__len__`` says how many batches a pass holds (:func:`~kerastorch.data.source_length`).
    ``batch_size`` and ``num_samples`` (or None) say what mid-epoch checkpoints counted in.

    Example:
        >>> import torch
        >>> from kerastorch.data import adapt
        >>> isinstance(adapt(torch.zeros(4, 2), batch_size=2, shuffle=False), BatchSource)
        True
    """

    skip_batches: int
    exhausted: bool

    @property
    def pass_rngs(self) -> tuple[str, ...]: ...

    def __iter__(self) -> Iterator[Any]: ...
