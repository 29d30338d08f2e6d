"""A Hugging Face ``datasets.Dataset`` given to fit / evaluate / predict as ``x``, batched as the Trainer does.

* the columns that are not numbers (the raw ``"text"``) are left out, as the Trainer's
  ``remove_unused_columns`` does for a tokenized dataset, and ``"label"`` becomes ``"labels"``
  (what transformers' models take, and what ``DataCollatorWithPadding`` renames it to);
* rows are read as torch tensors (``with_format("torch")``) and batched by a DataLoader;
* sequences of different lengths in a batch are padded on the right to the longest: ``labels`` with
  -100 (left out of the loss), everything else with 0 (``attention_mask`` 0 hides the padded tokens).
  For a tokenizer's own pad id, pass a ``DataLoader(dataset, collate_fn=DataCollatorWithPadding(tokenizer))``.

``datasets`` is never imported here: a dataset is recognised by its type's module.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader

DEFAULT_BATCH_SIZE = 32


def is_hf_dataset(x: Any) -> bool:
    """Whether ``x`` is a ``datasets.Dataset`` (map-style, with columns).

    Example:
        >>> is_hf_dataset(torch.zeros(2))
        False
    """
    return type(x).__module__.startswith("datasets.") and hasattr(x, "column_names") and hasattr(x, "with_format")


def hf_loader(dataset: Any, batch_size: int | None, shuffle: bool, generator: torch.Generator | None) -> DataLoader:
    """A DataLoader over ``dataset``'s numeric columns (``label`` renamed ``labels``), padding each batch."""
    numeric = [name for name, feature in dataset.features.items() if _numeric(feature)]
    if not numeric:
        raise ValueError(f"The dataset has no numeric column to train on (columns: {dataset.column_names}). "
                         "Tokenize it first, e.g. dataset.map(lambda rows: tokenizer(rows['text']), batched=True).")
    if "label" in numeric and "labels" not in numeric:
        dataset = dataset.rename_column("label", "labels")
        numeric = ["labels" if name == "label" else name for name in numeric]
    rows = dataset.with_format("torch", columns=numeric)
    return DataLoader(rows, batch_size=batch_size or DEFAULT_BATCH_SIZE, shuffle=shuffle, generator=generator,
                      collate_fn=pad_rows)


def _numeric(feature: Any) -> bool:
    """A column of numbers or (nested) sequences of numbers: what becomes a tensor."""
    while hasattr(feature, "feature"):  # Sequence / List features hold their element's feature
        feature = feature.feature
    if isinstance(feature, list) and feature:
        return _numeric(feature[0])
    dtype = str(getattr(feature, "dtype", ""))
    return dtype.startswith(("int", "uint", "float", "bool")) or type(feature).__name__ == "ClassLabel"


def pad_rows(rows: list[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack rows into a batch, padding 1-D sequences on the right: ``labels`` with -100, others with 0.

    Example:
        >>> batch = pad_rows([{"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([5, 6, 7])},
        ...                   {"input_ids": torch.tensor([8]), "labels": torch.tensor([8])}])
        >>> batch["input_ids"].tolist(), batch["labels"].tolist()
        ([[5, 6, 7], [8, 0, 0]], [[5, 6, 7], [8, -100, -100]])
    """
    batch = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if values[0].dim() == 1 and len({value.shape[0] for value in values}) > 1:
            batch[key] = torch.nn.utils.rnn.pad_sequence(values, batch_first=True,
                                                         padding_value=-100 if key == "labels" else 0)
        else:
            batch[key] = torch.stack(values)
    return batch
