"""Keras 3's in-memory array adapter tests (keras/src/trainers/data_adapters/array_data_adapter_test.py),
translated to kerastorch's public API: fit runs, and the steps record the batches they receive.

Left out: the tf / tf_ragged / tf_sparse / jax / jax_sparse array types (no PyTorch counterpart),
``test_tf_sparse_trailing_empty_rows`` (tf.data only) and ``test_sharding`` (Keras's distribution API; kerastorch
shards under torchrun, tested in tests/distributed).
"""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch
import torch.nn.functional as F

from keras_parity.batches import Recorder, TwoInTwoOut, compiled, shapes


def make_array(array_type, shape, dtype):
    """array_data_adapter_test.py::TestArrayDataAdapter::make_array (the types PyTorch users have)."""
    x = np.array([[i] * shape[1] for i in range(shape[0])], dtype=dtype)
    if array_type == "torch":
        return torch.as_tensor(x)
    if array_type == "pandas_data_frame":
        return pd.DataFrame(x)
    if array_type == "pandas_series":
        return pd.Series(x[:, 0])
    if array_type == "scipy_sparse":
        return scipy.sparse.coo_matrix(x)
    return x


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("array_dtype", ["float32", "float64"])
@pytest.mark.parametrize("array_type", ["np", "torch", "pandas_data_frame", "pandas_series", "scipy_sparse"])
def test_basic_flow(array_type, array_dtype, shuffle):
    """array_data_adapter_test.py::TestArrayDataAdapter::test_basic_flow: 34 samples in batches of 16: batches of
    16, 16 and 2; x in the float dtype of the model (Keras's floatx), int32 y stays int32; a Series is one column
    (N, 1); x and y stay paired, in order unless shuffled."""
    x = make_array(array_type, (34, 4), array_dtype)
    y = make_array(array_type, (34, 2), "int32")
    xdim1, ydim1 = (1, 1) if array_type == "pandas_series" else (4, 2)
    model = compiled(Recorder, xdim1, ydim1)
    model.fit(x, y, batch_size=16, shuffle=shuffle, verbose=0)
    batches = model.seen["train"]
    assert [shapes(batch) for batch in batches] == [((16, xdim1), (16, ydim1))] * 2 + [((2, xdim1), (2, ydim1))]
    x_order, y_order = [], []
    for bx, by in batches:
        assert isinstance(bx, torch.Tensor) and isinstance(by, torch.Tensor)
        assert bx.dtype == torch.float32 and by.dtype == torch.int32
        x_order += bx[:, 0].tolist()
        y_order += by[:, 0].tolist()
    assert x_order == y_order
    assert (x_order != list(range(34))) if shuffle else (x_order == list(range(34)))
    assert sorted(x_order) == list(range(34))


def test_shuffle_batch():
    """array_data_adapter_test.py::TestArrayDataAdapter::test_basic_flow with shuffle="batch". Deliberate
    difference: kerastorch refuses it before training (Keras shuffles inside each batch, for HDF5 data read in
    chunks; in-memory tensors are shuffled by index at no extra cost)."""
    model = compiled(Recorder, 4, 2)
    with pytest.raises(ValueError, match=r"`shuffle` must be True or False. Received: shuffle='batch'"):
        model.fit(make_array("np", (34, 4), "float32"), make_array("np", (34, 2), "int32"), shuffle="batch",
                  verbose=0)
    assert model.seen["train"] == []


def test_multi_inputs_and_outputs():
    """array_data_adapter_test.py::TestArrayDataAdapter::test_multi_inputs_and_outputs: a dict x, a list y and
    sample weights batch as a dict, a list and the weights, floats in the model's dtype. (Keras repeats the
    sample weights once per output; kerastorch passes the one array, which weighs every output's loss.)"""
    rng = np.random.default_rng(0)
    x1, x2, y1, y2 = (rng.random((34, n)) for n in (1, 2, 3, 4))
    sw = rng.random(34)
    model = compiled(TwoInTwoOut, loss=["mse", "mse"])
    model.fit({"x1": x1, "x2": x2}, [y1, y2], sample_weight=sw, batch_size=16, shuffle=False, verbose=0)
    expected = [({"x1": (n, 1), "x2": (n, 2)}, ((n, 3), (n, 4)), (n,)) for n in (16, 16, 2)]
    assert [shapes(batch) for batch in model.seen["train"]] == expected
    bx, by, bw = model.seen["train"][0]
    assert isinstance(bx, dict) and isinstance(by, list)
    assert bx["x1"].dtype == by[0].dtype == torch.float32
    assert torch.equal(bw, torch.as_tensor(sw[:16], dtype=torch.float32))


@pytest.mark.parametrize("target_encoding", ["int", "categorical"])
def test_class_weights(target_encoding):
    """array_data_adapter_test.py::TestArrayDataAdapter::test_class_weights: class weights become the sample
    weights [0.1, 0.2, 0.3, 0.4] of samples of classes 0..3, from (N, 1) int32 labels or one-hot floats."""
    x = np.random.default_rng(0).random((4, 2)).astype("float32")
    labels = np.array([[0], [1], [2], [3]], dtype="int32")
    y = labels if target_encoding == "int" else np.eye(4, dtype="float32")
    model = compiled(Recorder, 2, 4, loss="cross_entropy", optimizer_kwargs={"lr": 0.0})
    history = model.fit(x, y, class_weight={0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4}, batch_size=16, verbose=0)
    per_sample = F.cross_entropy(model(torch.as_tensor(x)), torch.arange(4), reduction="none")
    expected = (per_sample * torch.tensor([0.1, 0.2, 0.3, 0.4])).sum() / 4
    assert history["loss"].iloc[0] == pytest.approx(expected.item(), rel=1e-6)
    _, by = model.seen["train"][0]
    assert by.dtype == (torch.int32 if target_encoding == "int" else torch.float32)  # the data as given


@pytest.mark.parametrize("argument", ["x", "y", "sample_weight"])
def test_errors_invalid_arrays(argument):
    """array_data_adapter_test.py::TestArrayDataAdapter::test_errors ("Expected all elements of `x` to be
    array-like"). Deliberate difference: a wrong input type is a TypeError in kerastorch (Keras: ValueError)."""
    rng = np.random.default_rng(0)
    data = {"x": rng.random((34, 1)), "y": rng.random((34, 3)), "sample_weight": rng.random(34), argument: "Invalid"}
    model = compiled(Recorder, 1, 3)
    with pytest.raises(TypeError, match=f"`{argument}`"):
        model.fit(**data, verbose=0)
    assert model.seen["train"] == []


def test_errors_class_weight_and_sample_weight_multiply():
    """array_data_adapter_test.py::TestArrayDataAdapter::test_errors ("You cannot `class_weight` and
    `sample_weight` at the same time"). Deliberate difference: kerastorch multiplies them."""
    x = np.random.default_rng(0).random((4, 2)).astype("float32")
    y = np.array([0, 1, 2, 3])
    sw = np.array([1.0, 2.0, 3.0, 4.0], dtype="float32")
    model = compiled(Recorder, 2, 4, loss="cross_entropy", optimizer_kwargs={"lr": 0.0})
    loss = model.fit(x, y, sample_weight=sw, class_weight={0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4}, verbose=0)["loss"]
    per_sample = F.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y), reduction="none")
    expected = (per_sample * torch.tensor([0.1, 0.4, 0.9, 1.6])).sum() / 4
    assert loss.iloc[0] == pytest.approx(expected.item(), rel=1e-6)


def test_torch_data_loader_nested_input():
    """array_data_adapter_test.py::TestArrayDataAdapter::test_torch_data_loader_nested_input: a dict x of
    10 samples in batches of 5: batch[0]["a"] (5, 1), batch[0]["b"] (5, 2), batch[1] (5, 3)."""
    class Keywords(Recorder):
        def __init__(self):
            super().__init__(3, 3)

        def forward(self, a, b):
            return self.dense(torch.cat([a, b], 1))

    model = compiled(Keywords)
    model.fit({"a": np.ones((10, 1)), "b": np.ones((10, 2))}, np.ones((10, 3)), batch_size=5, shuffle=False,
              verbose=0)
    assert [shapes(batch) for batch in model.seen["train"]] == [({"a": (5, 1), "b": (5, 2)}, (5, 3))] * 2


def test_pandas_series_target_is_one_column():
    """array_data_adapter_test.py::TestArrayDataAdapter::test_basic_flow[pandas_series] for a target alone: a Series
    target batches as (N, 1) and trains a one-output regression and a classifier (class-index losses read the
    column as the classes, as Keras's sparse_categorical_crossentropy does)."""
    frame = pd.DataFrame({"a": np.linspace(0, 1, 8), "b": np.linspace(1, 0, 8), "label": [0, 1, 2, 1] * 2})
    regression = compiled(Recorder, 2, 1)
    regression.fit(frame[["a", "b"]], frame["a"], batch_size=8, verbose=0)
    assert shapes(regression.seen["train"][0]) == ((8, 2), (8, 1))
    classifier = compiled(Recorder, 2, 3, loss="cross_entropy", metrics=["accuracy"], optimizer_kwargs={"lr": 0.0})
    logs = classifier.fit(frame[["a", "b"]], frame["label"], batch_size=8, verbose=0)
    assert shapes(classifier.seen["train"][0]) == ((8, 2), (8, 1))
    outputs = classifier(torch.tensor(frame[["a", "b"]].to_numpy(), dtype=torch.float32))
    labels = torch.tensor(frame["label"].to_numpy())
    assert logs["loss"].iloc[0] == pytest.approx(F.cross_entropy(outputs, labels).item(), rel=1e-6)
    assert logs["accuracy"].iloc[0] == pytest.approx((outputs.argmax(1) == labels).float().mean().item())


@pytest.mark.parametrize("loss", ["cross_entropy", "sparse_categorical_crossentropy", "nll", "focal"])
@pytest.mark.parametrize("column", [False, True], ids=["labels_N", "labels_N_1"])
def test_int32_targets_train_class_index_losses(loss, column):
    """array_data_adapter_test.py::TestArrayDataAdapter::test_basic_flow (int32 y stays int32) with Keras's sparse
    losses (keras/src/losses/losses.py::sparse_categorical_crossentropy: integer labels of shape (N,) or (N, 1)):
    int32 labels reach the steps as int32, train and validate with the same losses as int64 labels."""
    rng = np.random.default_rng(0)
    x = rng.random((12, 2)).astype("float32")
    labels = np.array([0, 1, 2] * 4)
    shape = (12, 1) if column else (12,)
    losses = []
    for dtype in ("int64", "int32"):
        y = labels.astype(dtype).reshape(shape)
        model = compiled(Recorder, 2, 3, loss=loss)
        history = model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, labels.astype(dtype)), verbose=0)
        assert {by.dtype for _, by in model.seen["train"]} == {getattr(torch, dtype)}
        assert shapes(model.seen["train"][0]) == ((4, 2), (4, *shape[1:]))
        losses.append(history[["loss", "val_loss"]].to_numpy())
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-6)
