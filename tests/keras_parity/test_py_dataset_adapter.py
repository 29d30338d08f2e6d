"""Keras 3's PyDataset adapter tests (keras/src/trainers/data_adapters/py_dataset_adapter_test.py), translated
for PyTorch users: a Keras ``PyDataset`` (whole batches by index, ``num_batches``, workers) is, in PyTorch, a
map-style ``Dataset`` whose items are batches, read by ``DataLoader(dataset, batch_size=None)`` (``shuffle=True``
shuffles the batches' order; ``num_workers`` stands for Keras's ``workers`` / ``use_multiprocessing``); an infinite
one (``num_batches`` None) is an ``IterableDataset``, given ``steps_per_epoch``.

Left out: ``test_speedup`` (a timing of Keras's thread pool), ``test_iterate_finite`` /
``test_iterate_infinite_*`` (PyDataset's own iteration protocol) and ``test_sharding`` (Keras's distribution API).
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset

from keras_parity.batches import AnyWidth, Recorder, compiled, shapes


class ExamplePyDataset(Dataset):
    """py_dataset_adapter_test.py::ExamplePyDataset: item ``idx`` is batch ``idx`` of the arrays."""

    def __init__(self, x_set, y_set, sample_weight=None, batch_size=32):
        self.x, self.y, self.sample_weight, self.batch_size = x_set, y_set, sample_weight, batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, idx):
        low = idx * self.batch_size
        high = min(low + self.batch_size, len(self.x))
        if self.sample_weight is not None:
            return self.x[low:high], self.y[low:high], self.sample_weight[low:high]
        return self.x[low:high], self.y[low:high]


class InfinitePyDataset(IterableDataset):
    """ExamplePyDataset(infinite=True): its batches in order, over and over."""

    def __init__(self, x_set, y_set, batch_size):
        self.batches = ExamplePyDataset(x_set, y_set, batch_size=batch_size)

    def __iter__(self):
        while True:
            for idx in range(len(self.batches)):
                yield self.batches[idx]


def _order(model):
    return [int(v) for bx, by in model.seen["train"] for v in by[:, 0].tolist()]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("dataset_type", ["np", "torch"], ids=["single_np", "single_torch"])
def test_basic_flow(dataset_type, shuffle):
    """py_dataset_adapter_test.py::PyDatasetAdapterTest::test_basic_flow (finite): 4 batches of (16, 4) / (16, 2)
    float32; in order, or in a shuffled order of whole batches."""
    x = np.random.default_rng(1337).random((64, 4)).astype("float32")
    y = np.array([[i, i] for i in range(64)], dtype="float32")
    if dataset_type == "torch":
        x, y = torch.as_tensor(x), torch.as_tensor(y)
    model = compiled(Recorder, 4, 2, optimizer_kwargs={"lr": 0.0})
    torch.manual_seed(0)
    model.fit(DataLoader(ExamplePyDataset(x, y, batch_size=16), batch_size=None, shuffle=shuffle), verbose=0)
    assert [shapes(batch) for batch in model.seen["train"]] == [((16, 4), (16, 2))] * 4
    assert all(bx.dtype == by.dtype == torch.float32 for bx, by in model.seen["train"])
    order = _order(model)
    assert (order != list(range(64))) if shuffle else (order == list(range(64)))
    assert sorted(order) == list(range(64))


def test_basic_flow_infinite():
    """py_dataset_adapter_test.py::PyDatasetAdapterTest::test_basic_flow (infinite): the batches come in order,
    pass after pass (two epochs of steps_per_epoch=4 see samples 0..63 twice)."""
    x = np.random.default_rng(1337).random((64, 4)).astype("float32")
    y = np.array([[i, i] for i in range(64)], dtype="float32")
    model = compiled(Recorder, 4, 2, optimizer_kwargs={"lr": 0.0})
    model.fit(DataLoader(InfinitePyDataset(x, y, 16), batch_size=None), epochs=2, steps_per_epoch=4, verbose=0)
    assert _order(model) == list(range(64)) * 2


def test_basic_flow_multiprocessing():
    """py_dataset_adapter_test.py::PyDatasetAdapterTest::test_basic_flow[multiprocessing] (workers=2): the
    DataLoader's two worker processes give the same batches in the same order."""
    x = np.random.default_rng(1337).random((64, 4)).astype("float32")
    y = np.array([[i, i] for i in range(64)], dtype="float32")
    model = compiled(Recorder, 4, 2, optimizer_kwargs={"lr": 0.0})
    model.fit(DataLoader(ExamplePyDataset(x, y, batch_size=16), batch_size=None, num_workers=2), verbose=0)
    assert _order(model) == list(range(64))


def test_class_weight():
    """py_dataset_adapter_test.py::PyDatasetAdapterTest::test_class_weight: class weights {0: 2, 1: 1, 2: 3}
    weigh each sample of a batch dataset by its class. (Keras's x is random integers; here floats, for the
    linear layer.)"""
    x = np.random.default_rng(0).integers(1, 100, (4, 5)).astype("float32") / 100
    y = np.array([0, 1, 2, 1])
    model = compiled(Recorder, 5, 3, loss="cross_entropy", optimizer_kwargs={"lr": 0.0})
    loader = DataLoader(ExamplePyDataset(x, y, batch_size=2), batch_size=None)
    loss = model.fit(loader, class_weight={0: 2, 1: 1, 2: 3}, verbose=0)["loss"].iloc[0]
    assert len(model.seen["train"]) == 2
    per_sample = F.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y), reduction="none")
    assert loss == pytest.approx((per_sample * torch.tensor([2.0, 1.0, 3.0, 1.0])).mean().item(), rel=1e-6)


def test_dict_inputs():
    """py_dataset_adapter_test.py::PyDatasetAdapterTest::test_dict_inputs: dict batches {"x", "y"} reach the steps
    as dicts, x (4, 4) and y (4, 2) of one dtype (float64 NumPy batches become the model's float32)."""
    class DictPyDataset(Dataset):
        def __init__(self, inputs, batch_size=32):
            self.inputs, self.batch_size = inputs, batch_size

        def __len__(self):
            return math.ceil(len(self.inputs["x"]) / self.batch_size)

        def __getitem__(self, idx):
            low, high = idx * self.batch_size, min(idx * self.batch_size + self.batch_size, len(self.inputs["x"]))
            return {"x": self.inputs["x"][low:high], "y": self.inputs["y"][low:high]}

    rng = np.random.default_rng(0)
    model = compiled(Recorder, 4, 2)
    model.fit(DataLoader(DictPyDataset({"x": rng.random((40, 4)), "y": rng.random((40, 2))}, batch_size=4),
                         batch_size=None), verbose=0)
    assert len(model.seen["train"]) == 10
    for batch in model.seen["train"]:
        assert isinstance(batch, dict) and shapes(batch) == {"x": (4, 4), "y": (4, 2)}
        assert batch["x"].dtype == batch["y"].dtype == torch.float32


def test_with_different_shapes():
    """py_dataset_adapter_test.py::PyDatasetAdapterTest::test_with_different_shapes: batches (16, 4), (16, 5),
    (2, 6), float32."""
    class DifferentShapes(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, idx):
            rows, cols = ((16, 4), (16, 5), (2, 6))[idx]
            return np.ones([rows, cols], "float32"), np.ones([rows, 2], "float32")

    model = compiled(AnyWidth, 2)
    model.fit(DataLoader(DifferentShapes(), batch_size=None), verbose=0)
    assert [shapes(batch) for batch in model.seen["train"]] == [((16, 4), (16, 2)), ((16, 5), (16, 2)),
                                                                 ((2, 6), (2, 2))]


class ExceptionPyDataset(Dataset):
    """py_dataset_adapter_test.py::ExceptionPyDataset: batches 0 and 1, then a ValueError."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index < 2:
            return np.random.random((8, 4)).astype("float32"), np.random.random((8, 2)).astype("float32")
        raise ValueError("Expected exception")


def test_exception_reported():
    """py_dataset_adapter_test.py::PyDatasetAdapterTest::test_exception_reported[single]: the dataset's error
    reaches the caller as a ValueError with its message, after the two good batches. (With workers, torch's
    DataLoader re-raises it itself; its workers then take ~10 s to be collected, so that variant is left out.)"""
    model = compiled(Recorder, 4, 2)
    with pytest.raises(ValueError, match="Expected exception"):
        model.fit(DataLoader(ExceptionPyDataset(), batch_size=None), verbose=0)
    assert len(model.seen["train"]) == 2


class OnesPyDataset(Dataset):
    """trainer_test.py::TestPyDataset: 20 batches of ones (5, 4) and zeros (5, 3)."""

    def __len__(self):
        return 20

    def __getitem__(self, idx):
        return torch.ones((5, 4)), torch.zeros((5, 3))


@pytest.mark.parametrize("fit_kwargs", [{}, {"class_weight": {0: 1, 1: 2}}], ids=["py_dataset", "py_dataset_cw"])
def test_fit_with_data_adapter_py_dataset(fit_kwargs):
    """trainer_test.py::TestTrainer::test_fit_with_data_adapter[py_dataset / py_dataset_cw]: epochs=3 run the 20
    batches each (class weights of one-hot-shaped float targets read each sample's class as its argmax)."""
    model = compiled(Recorder, 4, 3)
    history = model.fit(DataLoader(OnesPyDataset(), batch_size=None), epochs=3, verbose=0, **fit_kwargs)
    assert len(model.seen["train"]) == 60 and list(history["epoch"]) == [1, 2, 3]
