"""Inputs (issue 10, items 4 and 5): what should simply work gives known answers; what cannot is refused early.

Known answers compare with the same training on plain tensors (same batches, same order, SGD),
whose weights must come out identical.
"""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import kerastorch as kt
from misuse_support import assert_unchanged, snapshot

X = torch.randn(24, 4, generator=torch.Generator().manual_seed(0))
Y = X[:, :1] * 2 - X[:, 1:2]


def model_(seed=0, out=1, **compile_kwargs):
    torch.manual_seed(seed)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, out)))
    model.compile("sgd", "mse", device="cpu", **compile_kwargs)
    return model


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def reference(batch_size=6, epochs=1):
    """The tensor-fed fit without shuffling: the answer the other inputs must reach."""
    model = model_()
    model.fit(X, Y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    return weights(model)


def batches(batch_size=6):
    for start in range(0, len(X), batch_size):
        yield X[start:start + batch_size], Y[start:start + batch_size]


def assert_same(a, b):
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


# ---------------------------------------------------------------- item 5: generators and IterableDataset
def test_a_generator_fed_fit_reaches_the_tensor_fed_weights():
    model = model_()
    history = model.fit(batches(), verbose=0)
    assert_same(weights(model), reference())
    assert list(history["epoch"]) == [1]


def test_a_generator_continues_over_epochs_of_steps_per_epoch_batches():
    model = model_()
    history = model.fit(batches(), epochs=2, steps_per_epoch=2, verbose=0)
    # 2 epochs x 2 batches: the first 4 of the generator's 4 batches, as one tensor epoch
    assert_same(weights(model), reference())
    assert len(history) == 2


def test_a_generator_has_no_step_total_for_the_progress_bar():
    seen = {}

    class Params(kt.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.update(self.params)

    model_().fit(batches(), verbose=0, callbacks=[Params()])
    assert seen["steps"] is None


def test_a_generator_that_runs_out_warns_with_the_numbers_and_stops():
    model = model_()
    with pytest.warns(UserWarning, match=r"ran out of batches in epoch 3 after 0 of its 2 steps; training "
                                         r"stopped \(2 epoch\(s\) not run\)"):
        history = model.fit(batches(), epochs=4, steps_per_epoch=2, verbose=0)
    assert len(history) == 2  # the generator's 4 batches filled two epochs; nothing logged for the third
    assert_same(weights(model), reference())


class Stream(IterableDataset):
    """No __len__: samples one by one, as a stream."""

    def __iter__(self):
        return iter(zip(X, Y, strict=True))


def test_an_iterable_dataset_is_batched_and_each_epoch_is_one_pass():
    model = model_()
    history = model.fit(Stream(), batch_size=6, epochs=2, verbose=0)
    assert_same(weights(model), reference(epochs=2))
    assert len(history) == 2


def test_an_iterable_dataset_with_steps_per_epoch_stops_each_pass_early():
    model = model_()
    model.fit(Stream(), batch_size=6, steps_per_epoch=2, verbose=0)
    expected = model_()
    expected.fit(X[:12], Y[:12], batch_size=6, shuffle=False, verbose=0)
    assert_same(weights(model), weights(expected))


def test_evaluate_and_predict_take_generators():
    model = model_()
    model.fit(X, Y, batch_size=6, shuffle=False, verbose=0)
    assert model.evaluate(batches()) == pytest.approx(model.evaluate(X, Y, batch_size=6), rel=1e-6)
    assert torch.equal(model.predict(x for x, _ in batches()), model.predict(X, batch_size=6))


# ---------------------------------------------------------------- item 5: dict batches, lists, NumPy ints
class DictSamples(torch.utils.data.Dataset):
    def __init__(self, keys=("x", "y")):
        self.keys = keys

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        return dict(zip(self.keys, (X[i], Y[i]), strict=True))


def test_a_dataloader_of_x_y_dicts_trains_like_tuples():
    model = model_()
    model.fit(DataLoader(DictSamples(), batch_size=6), verbose=0)
    assert_same(weights(model), reference())


class KeywordNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, features):
        return self.body(features)


def test_a_dict_of_keyword_inputs_with_a_y_entry_passes_the_rest_to_forward():
    model = kt.Model.wrap(KeywordNet())
    model.compile("sgd", "mse", device="cpu")
    model.fit(DataLoader(DictSamples(("features", "y")), batch_size=6), verbose=0)
    assert_same(weights(model), reference())


def test_a_dict_batch_with_x_and_unknown_keys_is_refused():
    model = model_()
    before = snapshot(model)

    class Extra(DictSamples):
        def __getitem__(self, i):
            return {"x": X[i], "y": Y[i], "mask": X[i]}

    with pytest.raises(ValueError, match=r"A dict batch with an 'x' entry may also hold only 'y' and "
                                         r"'sample_weight'\. Received keys: \['mask', 'x', 'y'\]"):
        model.fit(DataLoader(Extra(), batch_size=6), verbose=0)
    assert_unchanged(model, before)


def test_validation_data_as_a_list_equals_the_tuple():
    a, b = model_(), model_()
    as_tuple = a.fit(X, Y, batch_size=6, shuffle=False, verbose=0, validation_data=(X[:6], Y[:6]))
    as_list = b.fit(X, Y, batch_size=6, shuffle=False, verbose=0, validation_data=[X[:6], Y[:6]])
    assert as_list["val_loss"].tolist() == as_tuple["val_loss"].tolist()


def test_numpy_integers_are_taken_wherever_ints_are():
    model = model_(grad_accum_steps=np.int64(1))
    history = model.fit(X.numpy(), Y.numpy(), batch_size=np.int64(6), epochs=np.int64(2),
                        steps_per_epoch=np.int32(4), initial_epoch=np.int64(1), shuffle=False, verbose=0)
    assert [type(e) for e in history["epoch"].tolist()] == [int] and model._record.global_step == 4
    assert_same(weights(model), reference())
    assert model.evaluate(X, Y, batch_size=np.int64(6))["loss"] == pytest.approx(
        model.evaluate(X, Y, batch_size=6)["loss"])


def test_numpy_integer_batch_size_reaches_a_dataloader_it_builds():
    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return len(X)

        def __getitem__(self, i):
            return X[i], Y[i]

    model = model_()
    model.fit(Plain(), batch_size=np.int64(6), shuffle=False, verbose=0)
    assert_same(weights(model), reference())


def test_steps_per_epoch_beyond_the_data_warns_once_with_both_numbers():
    model = model_()
    with pytest.warns(UserWarning, match=r"`steps_per_epoch=10` is more than the 4 batches the training data "
                                         r"holds: each epoch runs 4 batches") as record:
        model.fit(X, Y, batch_size=6, epochs=2, steps_per_epoch=10, shuffle=False, verbose=0)
    assert sum("steps_per_epoch" in str(w.message) for w in record) == 1
    assert_same(weights(model), reference(epochs=2))


# ---------------------------------------------------------------- item 4: dtypes
def test_float64_and_float16_tensors_are_cast_as_arrays_are():
    for dtype in (torch.float64, torch.float16):
        model = model_()
        model.fit(X.to(dtype).float().to(dtype), Y.to(dtype), batch_size=6, shuffle=False, verbose=0)
        expected = model_()
        expected.fit(X.to(dtype).float(), Y.to(dtype).float(), batch_size=6, shuffle=False, verbose=0)
        assert_same(weights(model), weights(expected))


def test_a_float64_model_gets_float64_data():
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(4, 1).double())
    model.compile("sgd", "mse", device="cpu")
    model.fit(X.numpy().astype(np.float32), Y, batch_size=6, verbose=0)
    assert model.predict(X).dtype == torch.float64


def test_integer_inputs_into_float_layers_say_cast():
    model = model_()
    model.fit(X, Y, batch_size=6, verbose=0)
    before = snapshot(model)
    with pytest.raises(TypeError, match=r"The model's layers compute in torch.float32, but the input is "
                                        r"torch.int64.*x.float\(\).*while running training batch 0 of epoch 2: "
                                        r"x int64 \(6, 4\), y float32 \(6, 1\)"):
        model.fit(X.long(), Y, batch_size=6, verbose=0)
    assert_unchanged(model, before)


def test_float64_batches_from_a_dataloader_are_cast_to_the_model_dtype_as_in_memory_data():
    """Keras casts them (keras/src/trainers/data_adapters/torch_data_loader_adapter_test.py); so does kerastorch,
    for a DataLoader over a TensorDataset (cast once per call) and over any other Dataset (per batch)."""

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(X)

        def __getitem__(self, i):
            return X[i].double(), Y[i].double()

    results = []
    for loader in (DataLoader(TensorDataset(X, Y), batch_size=6), DataLoader(TensorDataset(X.double(), Y.double()),
                                                                              batch_size=6),
                   DataLoader(Pairs(), batch_size=6)):
        torch.manual_seed(0)
        model = model_()
        model.fit(loader, verbose=0, shuffle=False)
        results.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for other in results[1:] for a, b in zip(results[0], other))


# ---------------------------------------------------------------- refusals of one-shot data
def test_a_finite_generator_for_several_epochs_runs_its_batches_once_then_stops_as_in_keras():
    """keras/src/trainers/epoch_iterator.py: the first epoch takes all the generator's batches, the next has none."""
    model = model_()
    model.fit(X, Y, batch_size=6, verbose=0)
    with pytest.warns(UserWarning, match=r"The training generator has no batch left for epoch 3: a generator runs "
                                         r"once, and the epochs before took all its batches\. Training stopped "
                                         r"\(2 epoch\(s\) not run\)"):
        history = model.fit(batches(), epochs=3, verbose=0)
    assert list(history["epoch"]) == [1, 2]  # the earlier fit's epoch, then the generator's one epoch


def test_an_exhausted_generator_is_refused():
    model = model_()
    used = batches()
    model.fit(used, verbose=0)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"generator that is already exhausted.*Create a new generator"):
        model.fit(used, verbose=0)
    assert_unchanged(model, before)


def test_batch_size_with_a_generator_is_refused():
    model = model_()
    with pytest.raises(ValueError, match=r"`batch_size` must not be given when `x` is a generator.*"
                                         r"batch_size=6"):
        model.fit(batches(), batch_size=6, verbose=0)


def test_a_generator_as_validation_data_for_several_epochs_is_refused():
    model = model_()
    model.fit(X, Y, batch_size=6, verbose=0)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"`validation_data` is a generator.*after each of the 2 epochs"):
        model.fit(X, Y, epochs=2, verbose=0, validation_data=batches())
    assert_unchanged(model, before)


def test_gradient_accumulation_over_data_without_a_length_needs_steps_per_epoch():
    model = model_(grad_accum_steps=2)
    with pytest.raises(ValueError, match=r"without a length.*needs `steps_per_epoch` with gradient accumulation"):
        model.fit(Stream(), batch_size=6, verbose=0)
    model.fit(Stream(), batch_size=6, steps_per_epoch=4, verbose=0)  # with it: fine
