"""Keras 3's DataLoader adapter tests (keras/src/trainers/data_adapters/torch_data_loader_adapter_test.py),
translated to kerastorch's public API: fit / predict run a DataLoader and the steps record its batches.

Left out: ``test_sharding`` (Keras's distribution API; kerastorch shards a DataLoader with a DistributedSampler
under torchrun, tested in tests/distributed).
"""
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, StackDataset, TensorDataset

from keras_parity.batches import AnyWidth, Recorder, Steps, compiled, shapes


def test_basic_dataloader():
    """torch_data_loader_adapter_test.py::TestTorchDataLoaderAdapter::test_basic_dataloader: 34 samples in
    batches of 16: 3 batches, (16, 4) / (16, 2) then (2, 4) / (2, 2), float32 tensors."""
    x, y = torch.normal(2, 3, size=(34, 4)), torch.normal(1, 3, size=(34, 2))
    model = compiled(Recorder, 4, 2)
    model.fit(DataLoader(TensorDataset(x, y), batch_size=16), verbose=0)
    assert [shapes(batch) for batch in model.seen["train"]] == [((16, 4), (16, 2))] * 2 + [((2, 4), (2, 2))]
    assert all(bx.dtype == by.dtype == torch.float32 for bx, by in model.seen["train"])


def test_dict_batch_preserves_structure():
    """torch_data_loader_adapter_test.py::TestTorchDataLoaderAdapter::test_dict_batch_preserves_structure: a
    DataLoader of dicts {"x", "y"} hands the steps dicts with those keys, x (2, 2) and y (2,)."""
    class DictDataset(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, idx):
            return {"x": torch.tensor([idx, idx + 1], dtype=torch.float32), "y": torch.tensor(idx, dtype=torch.float32)}

    model = compiled(Recorder, 2, 1)
    model.fit(DataLoader(DictDataset(), batch_size=2), verbose=0)
    (batch,) = model.seen["train"]
    assert isinstance(batch, dict) and set(batch) == {"x", "y"}
    assert shapes(batch) == {"x": (2, 2), "y": (2,)}


def test_single_tensor_batch_preserves_structure():
    """torch_data_loader_adapter_test.py::TestTorchDataLoaderAdapter::test_single_tensor_batch_preserves_structure:
    a DataLoader of bare tensors hands predict_step a tensor of shape (2, 3)."""
    class TensorOnlyDataset(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, idx):
            return torch.tensor([idx, idx + 1, idx + 2], dtype=torch.float32)

    model = compiled(Recorder, 3, 1)
    predictions = model.predict(DataLoader(TensorOnlyDataset(), batch_size=2))
    assert all(isinstance(batch, torch.Tensor) and batch.shape == (2, 3) for batch in model.seen["predict"])
    assert len(model.seen["predict"]) == 2 and predictions.shape == (4, 1)


class SixteenSampleBatches(IterableDataset):
    """torch_data_loader_adapter_test.py::test_dataloader_iterable_dataset's TestIterableDataset: 10 items, each
    x (16, 4) and y (16, 2)."""

    def __init__(self):
        self.x, self.y = torch.normal(2, 3, size=(16, 4)), torch.normal(1, 3, size=(16, 2))

    def __iter__(self):
        for _ in range(10):
            yield self.x, self.y


class SixteenSampleBatchesWithLen(SixteenSampleBatches):
    def __len__(self):
        return 10


@pytest.mark.parametrize("implements_len", [True, False])
@pytest.mark.parametrize("batch_size", [None, 3])
def test_dataloader_iterable_dataset(batch_size, implements_len):
    """torch_data_loader_adapter_test.py::TestTorchDataLoaderAdapter::test_dataloader_iterable_dataset: 10 items;
    batch_size=None: 10 batches of (16, 4) / (16, 2); batch_size=3: 4 batches of (3, 16, 4) ... (1, 16, 4).
    The number of steps is known in advance (Keras's num_batches) exactly when the DataLoader has a length."""
    dataset = SixteenSampleBatchesWithLen() if implements_len else SixteenSampleBatches()
    model, steps = compiled(Recorder, 4, 2), Steps()
    model.fit(DataLoader(dataset, batch_size=batch_size), callbacks=[steps], verbose=0)
    expected = math.ceil(10 / batch_size) if batch_size else 10
    assert steps.params["steps"] == (expected if implements_len else None)
    assert len(model.seen["train"]) == expected
    for i, (bx, by) in enumerate(model.seen["train"]):
        assert bx.dtype == by.dtype == torch.float32
        lead = () if not batch_size else (batch_size,) if i < 3 else (10 % batch_size,)
        assert (tuple(bx.shape), tuple(by.shape)) == ((*lead, 16, 4), (*lead, 16, 2))


def test_with_different_shapes():
    """torch_data_loader_adapter_test.py::TestTorchDataLoaderAdapter::test_with_different_shapes: a StackDataset
    of samples of 4, 5 and 6 features gives batches (16, 4), (16, 5), (2, 6), float32."""
    x = [np.ones([4], "float32")] * 16 + [np.ones([5], "float32")] * 16 + [np.ones([6], "float32")] * 2
    loader = DataLoader(StackDataset(x, np.ones((34, 2), "float32")), batch_size=16)
    model = compiled(AnyWidth, 2)
    model.fit(loader, verbose=0)
    assert [shapes(batch) for batch in model.seen["train"]] == [((16, 4), (16, 2)), ((16, 5), (16, 2)),
                                                                 ((2, 6), (2, 2))]
    assert all(bx.dtype == by.dtype == torch.float32 for bx, by in model.seen["train"])


def test_float64_batches_are_cast_and_int32_targets_kept():
    """torch_data_loader_adapter_test.py::TestTorchDataLoaderAdapter::test_basic_dataloader (float32 batches):
    float64 batches from a DataLoader become the model's float32, as in-memory arrays do; int32 targets stay
    int32 and train with cross_entropy (the loss reads them as int64 class indices)."""
    class Float64Samples(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, idx):
            return np.full(3, idx / 6), np.int32(idx % 3)

    model = compiled(Recorder, 3, 3, loss="cross_entropy")
    model.fit(DataLoader(Float64Samples(), batch_size=3), verbose=0)
    assert [(bx.dtype, by.dtype) for bx, by in model.seen["train"]] == [(torch.float32, torch.int32)] * 2


@pytest.mark.parametrize("kind", ["tensor", "iterable", "iterable_with_len"])
def test_fit_with_data_adapter_torch_dataloader(kind):
    """trainer_test.py::TestTrainer::test_fit_with_data_adapter[torch_dataloader_tensor / _iterable /
    _iterable_with_len]: 20 batches of ones (5, 4) and zeros (5, 3), epochs=3: 60 training steps."""
    class Batches(IterableDataset):
        def __iter__(self):
            for _ in range(20):
                yield torch.ones((5, 4)), torch.zeros((5, 3))

    class BatchesWithLen(Batches):
        def __len__(self):
            return 20

    if kind == "tensor":
        loader = DataLoader(TensorDataset(torch.ones((100, 4)), torch.zeros((100, 3))), batch_size=5)
    else:
        loader = DataLoader(BatchesWithLen() if kind == "iterable_with_len" else Batches())
    model = compiled(Recorder, 4, 3)
    history = model.fit(loader, epochs=3, verbose=0)
    assert len(model.seen["train"]) == 60 and list(history["epoch"]) == [1, 2, 3]
    assert {shapes(batch)[0][-2:] for batch in model.seen["train"]} == {(5, 4)}
