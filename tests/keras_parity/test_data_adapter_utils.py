"""Keras 3's data adapter utility tests (keras/src/trainers/data_adapters/data_adapter_utils_test.py), translated:
``class_weight_to_sample_weights`` is what ``fit(class_weight=...)`` does to each sample's loss, so each case
trains one batch at learning rate 0 and compares the logged loss with the weights Keras computes.

Left out: ``TestDistributedBatchSampler`` (Keras's torch sharding sampler; kerastorch shards with torch's
DistributedSampler under torchrun, tested in tests/distributed).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from keras_parity.batches import Recorder, compiled

X = np.random.default_rng(0).random((4, 2)).astype("float32")


@pytest.mark.parametrize(("y", "class_weight", "expected"), [
    (np.array([0, 1, 0, 2]), {0: 1.0, 1: 2.0, 2: 3.0}, [1.0, 2.0, 1.0, 3.0]),
    (np.array([0, 3, 0, 2]), {0: 1.0, 1: 2.0, 2: 3.0}, [1.0, 1.0, 1.0, 3.0]),
    (np.array([[0], [1], [0], [2]]), {0: 1.0, 1: 2.0, 2: 3.0}, [1.0, 2.0, 1.0, 3.0]),
    (np.array([0, 1, 0, 2]), {}, [1.0, 1.0, 1.0, 1.0]),
    (np.array([0, 1, 0, 2]), {"0": 1.0, "1": 2.0, "2": 3.0}, [1.0, 2.0, 1.0, 3.0]),
    (np.array([0, 1, 0, 2]), {0.0: 1.0, 1.0: 2.0, 2.0: 3.0}, [1.0, 2.0, 1.0, 3.0]),
    (np.array([0, 1, 0, 2], dtype="int32"), {0: 1.0, 1: 2.0, 2: 3.0}, [1.0, 2.0, 1.0, 3.0]),
], ids=["simple_class_labels", "unmapped_class", "multi_dimensional_input", "all_unmapped", "string_number_keys",
        "float_number_keys", "int32_class_labels"])
def test_class_weight_to_sample_weights(y, class_weight, expected):
    """data_adapter_utils_test.py::TestClassWeightToSampleWeights::test_class_weight_to_sample_weights (class
    indices; the last case, int32 labels, is the same rule with Keras's int32 dtype)."""
    model = compiled(Recorder, 2, 4, loss="cross_entropy", optimizer_kwargs={"lr": 0.0})
    loss = model.fit(X, y, class_weight=class_weight, verbose=0)["loss"].iloc[0]
    per_sample = F.cross_entropy(model(torch.as_tensor(X)), torch.as_tensor(y).reshape(-1).long(), reduction="none")
    assert loss == pytest.approx((per_sample * torch.tensor(expected)).mean().item(), rel=1e-6)


@pytest.mark.parametrize("dtype", ["int64", "float32"])
def test_class_weight_to_sample_weights_one_hot_encoded_labels(dtype):
    """data_adapter_utils_test.py::TestClassWeightToSampleWeights::test_class_weight_to_sample_weights
    [one_hot_encoded_labels]: a sample's class is its one-hot target's argmax, integer or float one-hot alike."""
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=dtype)
    model = compiled(Recorder, 2, 3, loss="mse", optimizer_kwargs={"lr": 0.0})
    loss = model.fit(X, y, class_weight={0: 1.0, 1: 2.0, 2: 3.0}, verbose=0)["loss"].iloc[0]
    per_sample = ((model(torch.as_tensor(X)) - torch.as_tensor(y, dtype=torch.float32)) ** 2).mean(1)
    assert loss == pytest.approx((per_sample * torch.tensor([1.0, 2.0, 1.0, 3.0])).mean().item(), rel=1e-6)
