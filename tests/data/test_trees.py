"""Dict batches the Hugging Face way, and mappings that are not dicts (transformers' BatchEncoding is a UserDict)."""
from collections import UserDict

import pytest
import torch

from kerastorch.data import batch_size_of, move_to_device, tree_leaves, unpack_batch

IDS, MASK, LABELS, W = torch.ones(3, 5, dtype=torch.long), torch.ones(3, 5), torch.tensor([0, 1, 1]), torch.ones(3)


def test_a_labels_entry_is_both_a_keyword_input_and_the_target():
    batch = {"input_ids": IDS, "attention_mask": MASK, "labels": LABELS}
    x, y, w = unpack_batch(batch)
    assert x is batch and y is LABELS and w is None  # forward(**batch): labels included, for the model's loss


def test_sample_weights_beside_labels_are_taken_out_of_the_inputs():
    x, y, w = unpack_batch({"input_ids": IDS, "labels": LABELS, "sample_weight": W})
    assert list(x) == ["input_ids", "labels"] and y is LABELS and w is W


@pytest.mark.parametrize("batch, expected", [
    ({"input_ids": IDS, "labels": LABELS, "y": W}, (["input_ids", "labels"], W)),  # "y" wins; labels are an input
    ({"x": IDS, "y": LABELS}, (None, LABELS)),  # the documented forms keep working
    ({"input_ids": IDS, "mask": MASK}, (["input_ids", "mask"], None)),
    ({"input_ids": IDS, "labels": None}, (["input_ids", "labels"], None)),  # no labels to target
])
def test_the_earlier_dict_forms_are_unchanged(batch, expected):
    x, y, _ = unpack_batch(batch)
    assert (x is IDS if expected[0] is None else list(x) == expected[0]) and y is expected[1]


def test_a_user_dict_batch_is_walked_moved_and_unpacked_as_a_dict():
    batch = UserDict({"input_ids": IDS, "attention_mask": MASK, "labels": LABELS})
    assert tree_leaves(batch) == [IDS, MASK, LABELS] and batch_size_of(batch) == 3
    moved = move_to_device(batch, torch.device("cpu"))
    assert type(moved) is dict and list(moved) == ["input_ids", "attention_mask", "labels"]
    x, y, w = unpack_batch(batch)  # not moved yet: read as the dict it holds
    assert type(x) is dict and list(x) == ["input_ids", "attention_mask", "labels"] and y is LABELS and w is None
