"""Keras 3's epoch iterator tests (keras/src/trainers/epoch_iterator_test.py) and its trainer tests of
``steps_per_epoch`` (keras/src/trainers/trainer_test.py), translated to kerastorch's public API.

Keras's tests iterate ``EpochIterator`` itself; here ``fit`` runs and the steps and a callback record the batches.
The tf.data cases (``test_unsupported_y_arg_tfdata``, ``test_unsupported_sample_weights_arg_tfdata``) have no
PyTorch counterpart and are left out.
"""
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from keras_parity.batches import Recorder, Steps, compiled
from kerastorch.data import LoaderSource, adapt


def test_basic_flow():
    """epoch_iterator_test.py::TestEpochIterator::test_basic_flow: 100 samples in batches of 16, shuffled, with
    sample weights: steps 0..6, each batch (x, y, sample_weight) of tensors."""
    model, steps = compiled(Recorder, 16, 4), Steps()
    rng = np.random.default_rng(0)
    model.fit(rng.random((100, 16)), rng.random((100, 4)), sample_weight=rng.random(100), batch_size=16,
              shuffle=True, callbacks=[steps], verbose=0)
    assert steps.epochs == [[0, 1, 2, 3, 4, 5, 6]]
    assert all(len(batch) == 3 and all(isinstance(t, torch.Tensor) for t in batch) for batch in model.seen["train"])


def test_insufficient_data():
    """epoch_iterator_test.py::TestEpochIterator::test_insufficient_data: steps_per_epoch=6 over 4 batches runs the
    4 batches, with a warning. (Keras warns "Your input ran out of data"; kerastorch says so before the epoch.)"""
    model, steps = compiled(Recorder, 1, 1), Steps()
    x = np.arange(32).reshape((32, 1)).astype("float32")
    with pytest.warns(UserWarning, match=r"`steps_per_epoch=6` is more than the 4 batches"):
        model.fit(x, x * 2, batch_size=8, steps_per_epoch=6, callbacks=[steps], verbose=0)
    assert steps.epochs == [[0, 1, 2, 3]]


def test_unknown_length_input_does_not_warn():
    """epoch_iterator_test.py::TestEpochIterator::test_unknown_length_input_does_not_warn: a generator's end is
    how the epoch's size is found, not an interruption."""
    def generator_example():
        for i in range(4):
            yield np.array([[i / 100]]), np.array([[i / 50]])

    model, steps = compiled(Recorder, 1, 1), Steps()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(generator_example(), callbacks=[steps], verbose=0)
    assert steps.epochs == [[0, 1, 2, 3]]


class ExampleTorchDataset(Dataset):
    """epoch_iterator_test.py's ExampleTorchDataset: NumPy float64 samples."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        return self.x[idx], self.y[idx]


def test_torch_dataloader():
    """epoch_iterator_test.py::TestEpochIterator::test_torch_dataloader: batches of (8, 2) and (8, 1)."""
    rng = np.random.default_rng(0)
    loader = DataLoader(ExampleTorchDataset(rng.random((64, 2)), rng.random((64, 1))), batch_size=8, shuffle=True)
    model = compiled(Recorder, 2, 1)
    model.fit(loader, verbose=0)
    assert len(model.seen["train"]) == 8
    for x, y in model.seen["train"]:
        assert (tuple(x.shape), tuple(y.shape)) == ((8, 2), (8, 1))
        assert x.dtype == y.dtype == torch.float32  # float64 from the DataLoader, cast to the model's dtype


@pytest.mark.parametrize("argument", ["y", "sample_weight"])
def test_unsupported_y_or_sample_weights_arg_torch_dataloader(argument):
    """epoch_iterator_test.py::TestEpochIterator::test_unsupported_y_arg_torch_dataloader and
    ::test_unsupported_sample_weights_arg_torch_dataloader: a ValueError."""
    rng = np.random.default_rng(0)
    loader = DataLoader(ExampleTorchDataset(rng.random((100, 16)), rng.random((100, 4))), batch_size=8)
    extra = rng.random((100, 4)) if argument == "y" else rng.random(100)
    model = compiled(Recorder, 16, 4)
    with pytest.raises(ValueError, match="`y` and `sample_weight` must not be given when `x` is a DataLoader"):
        model.fit(loader, **{argument: extra}, verbose=0)
    assert model.seen["train"] == []


def test_python_generator_input():
    """epoch_iterator_test.py::TestEpochIterator::test_python_generator_input: a generator gets the generator
    adapter (kerastorch's LoaderSource), and fit runs its batches."""
    def generator_example():
        for i in range(100):
            yield np.array([[i / 100]]), np.array([[i / 50]])

    assert isinstance(adapt(generator_example(), batch_size=None, shuffle=False), LoaderSource)
    model, steps = compiled(Recorder, 1, 1), Steps()
    model.fit(generator_example(), callbacks=[steps], verbose=0)
    assert steps.epochs == [list(range(100))]


def test_unrecognized_data_type():
    """epoch_iterator_test.py::TestEpochIterator::test_unrecognized_data_type. Deliberate difference: a wrong
    input type is a TypeError in kerastorch (Keras: ValueError "Unrecognized data type")."""
    model = compiled(Recorder, 1, 1)
    with pytest.raises(TypeError, match=r"`x` must be data: .*Received: x='unsupported_data' \(a str\)"):
        model.fit("unsupported_data", verbose=0)
    assert model.seen["train"] == [] and model.history.empty


class TrackingDataset(Dataset):
    """epoch_iterator_test.py::test_epoch_callbacks's TestPyDataset: whole batches, with epoch hooks."""

    def __init__(self):
        self.data = np.random.default_rng(0).random((64, 2)).astype("float32")
        self.tracker = []

    def __len__(self):
        return 4

    def __getitem__(self, index):
        idx = index % 2
        return self.data[idx * 16:(idx + 1) * 16], self.data[idx * 16:(idx + 1) * 16, :1]

    def on_epoch_begin(self):
        self.tracker.append(1)

    def on_epoch_end(self):
        self.tracker.append(2)


def test_epoch_callbacks():
    """epoch_iterator_test.py::TestEpochIterator::test_epoch_callbacks (finite): the dataset's epoch hooks are
    called once per epoch, in order."""
    dataset = TrackingDataset()
    model = compiled(Recorder, 2, 1)
    model.fit(DataLoader(dataset, batch_size=None), epochs=5, verbose=0)
    assert dataset.tracker == [1, 2] * 5


def _fit_steps(steps_per_epoch, epochs):
    """trainer_test.py's setting: 10 batches of 8 samples; random data in order, so two runs can be compared."""
    rng = np.random.default_rng(0)
    x, y = rng.random((80, 4)), rng.random((80, 1))
    model, steps = compiled(Recorder, 4, 1), Steps()
    model.fit(x, y, batch_size=8, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
              callbacks=[steps], verbose=0)
    return model, steps


@pytest.mark.parametrize(("case", "steps_per_epoch", "batches", "reference_epochs"), [
    ("match_one_epoch", 10, [10, 10, 10, 10], 4),
    ("match_multi_epoch", 5, [5, 5, 5, 5], 2),
    ("not_match_too_low", 9, [9, 1, 9, 1], 2),
    ("not_match_but_high_enough", 11, [10, 10, 10, 10], 4),
])
def test_steps_per_epoch(case, steps_per_epoch, batches, reference_epochs):
    """trainer_test.py::TestTrainer::test_steps_per_epoch: 4 epochs over 10 batches. An epoch that steps_per_epoch
    ends inside the data leaves the rest of the pass to the next epoch (9, 1, 9, 1), and the run equals plain
    epochs over the same batches: the same per-batch losses and weights."""
    if case == "not_match_but_high_enough":
        with pytest.warns(UserWarning, match="is more than the 10 batches"):
            model, steps = _fit_steps(steps_per_epoch, 4)
    else:
        model, steps = _fit_steps(steps_per_epoch, 4)
    assert [len(epoch) for epoch in steps.epochs] == batches
    assert all(epoch == list(range(len(epoch))) for epoch in steps.epochs)
    reference, reference_steps = _fit_steps(None, reference_epochs)
    assert steps.losses == pytest.approx(reference_steps.losses, rel=1e-6)
    assert torch.allclose(model.dense.weight, reference.dense.weight, atol=1e-6)
    x = torch.ones(3, 4)
    assert torch.allclose(model.predict(x), reference.predict(x), atol=1e-6)


def test_max_epochs_and_steps_without_limits():
    """trainer_test.py::TestTrainer::test_max_epochs_and_steps (its first part: no global limits): every epoch
    runs every batch. (Keras's keras.config.set_max_steps_per_epoch has no global twin in kerastorch; fit's
    fast_dev_run / steps_per_epoch cap one call.)"""
    _, steps = _fit_steps(None, 4)
    assert [len(epoch) for epoch in steps.epochs] == [10] * 4


def test_a_generator_continues_across_epochs_with_steps_per_epoch():
    """epoch_iterator.py::EpochIterator._enumerate_iterator (Keras keeps the iterator across epochs when
    steps_per_epoch is set): 10 batches, steps_per_epoch=4, 3 epochs run 4, 4, 2 batches, and the short last epoch
    warns that the data ran out."""
    def ten_batches():
        for i in range(10):
            yield np.full((2, 1), float(i)), np.zeros((2, 1))

    model, steps = compiled(Recorder, 1, 1), Steps()
    with pytest.warns(UserWarning, match="ran out of batches in epoch 3 after 2 of its 4 steps"):
        model.fit(ten_batches(), epochs=3, steps_per_epoch=4, callbacks=[steps], verbose=0)
    assert [len(epoch) for epoch in steps.epochs] == [4, 4, 2]
    assert [float(x[0, 0]) for x, _ in model.seen["train"]] == [float(i) for i in range(10)]

