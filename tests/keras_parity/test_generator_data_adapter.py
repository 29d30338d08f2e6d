"""Keras 3's generator adapter tests (keras/src/trainers/data_adapters/generator_data_adapter_test.py),
translated to kerastorch's public API: fit runs a Python generator of batches and the steps record them.

Left out: the tf / jax generator types, ``test_with_unexpected_shapes`` (tf.data only), ``test_sparse_tensors``
and ``test_ragged_tensors`` (tf / jax / scipy sparse and ragged tensors, which Keras's torch backend refuses too).
"""
import math

import numpy as np
import pytest
import torch

from keras_parity.batches import AnyWidth, Recorder, compiled, shapes


def example_generator(x, y, sample_weight=None, batch_size=32):
    """generator_data_adapter_test.py::example_generator: slices of the arrays, the last one partial."""
    def make():
        for i in range(math.ceil(len(x) / batch_size)):
            low, high = i * batch_size, min(i * batch_size + batch_size, len(x))
            if sample_weight is not None:
                yield x[low:high], y[low:high], sample_weight[low:high]
            else:
                yield x[low:high], y[low:high]

    return make


@pytest.mark.parametrize("generator_type", ["np", "torch"])
@pytest.mark.parametrize("use_sample_weight", [True, False], ids=["use_weight", "no_weight"])
def test_basic_flow(use_sample_weight, generator_type):
    """generator_data_adapter_test.py::GeneratorDataAdapterTest::test_basic_flow: batches of 16, 16, 2 as
    float32 tensors (NumPy batches converted like tensors), in the generator's order."""
    rng = np.random.default_rng(0)
    x = rng.random((34, 4)).astype("float32")
    y = np.array([[i, i] for i in range(34)], dtype="float32") / 34
    sw = rng.random(34).astype("float32")
    if generator_type == "torch":
        x, y, sw = torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(sw)
    model = compiled(Recorder, 4, 2)
    model.fit(example_generator(x, y, sample_weight=sw if use_sample_weight else None, batch_size=16)(), verbose=0)
    sample_order = []
    for i, batch in enumerate(model.seen["train"]):
        assert len(batch) == (3 if use_sample_weight else 2)
        assert all(isinstance(part, torch.Tensor) and part.dtype == torch.float32 for part in batch)
        n = 2 if i == 2 else 16
        assert shapes(batch[:2]) == ((n, 4), (n, 2))
        sample_order += (batch[1][:, 0] * 34).round().int().tolist()
    assert sample_order == list(range(34))


def test_float64_and_int32_numpy_batches():
    """generator_data_adapter_test.py::GeneratorDataAdapterTest::test_basic_flow (NumPy batches "converted like
    tensors"): a generator's float64 NumPy x becomes the model's float32, its int32 y stays int32."""
    def batches():
        for _ in range(2):
            yield np.ones((4, 4)), np.ones((4, 2), dtype="int32")

    model = compiled(Recorder, 4, 2)
    model.fit(batches(), verbose=0)
    assert [(x.dtype, y.dtype) for x, y in model.seen["train"]] == [(torch.float32, torch.int32)] * 2


def test_empty_generator_raises_clear_error():
    """generator_data_adapter_test.py::GeneratorDataAdapterTest::test_empty_generator_raises_clear_error."""
    def generator():
        if False:
            yield

    model = compiled(Recorder, 4, 2)
    with pytest.raises(ValueError, match="`x` is an empty generator: it yielded no batch"):
        model.fit(generator(), verbose=0)
    assert model.history.empty


def test_with_different_shapes():
    """generator_data_adapter_test.py::GeneratorDataAdapterTest::test_with_different_shapes: each batch keeps its
    own shape, (16, 4), (16, 5), (2, 6)."""
    def generator():
        yield np.ones([16, 4], "float32"), np.ones([16, 2], "float32")
        yield np.ones([16, 5], "float32"), np.ones([16, 2], "float32")
        yield np.ones([2, 6], "float32"), np.ones([2, 2], "float32")

    model = compiled(AnyWidth, 2)
    model.fit(generator(), verbose=0)
    assert [shapes(batch) for batch in model.seen["train"]] == [((16, 4), (16, 2)), ((16, 5), (16, 2)),
                                                                 ((2, 6), (2, 2))]
    assert all(x.dtype == y.dtype == torch.float32 for x, y in model.seen["train"])


def _ones_batches(count=None):
    """trainer_test.py::create_dataset("generator"): batches of ones (5, 4) and zeros (5, 3); count None: endless."""
    while count is None or count > 0:
        count = None if count is None else count - 1
        yield np.ones((5, 4), "float32"), np.zeros((5, 3), "float32")


def test_fit_with_data_adapter_generator_infinite():
    """trainer_test.py::TestTrainer::test_fit_with_data_adapter[generator_infinite]: an endless generator,
    steps_per_epoch=20, epochs=3: 20 batches per epoch."""
    model = compiled(Recorder, 4, 3)
    history = model.fit(_ones_batches(), epochs=3, steps_per_epoch=20, verbose=0)
    assert len(model.seen["train"]) == 60 and list(history["epoch"]) == [1, 2, 3]


def test_fit_with_data_adapter_generator():
    """trainer_test.py::TestTrainer::test_fit_with_data_adapter[generator]: a finite generator of 20 batches and
    epochs=3 trains without an error. Deliberate difference: Keras's later epochs replay the two batches it peeked
    at (its epochs run 20, 2, 2 batches); kerastorch runs the 20 and stops with a warning that says why."""
    model = compiled(Recorder, 4, 3)
    with pytest.warns(UserWarning, match="has no batch left for epoch 2"):
        history = model.fit(_ones_batches(20), epochs=3, verbose=0)
    assert len(model.seen["train"]) == 20 and list(history["epoch"]) == [1]
