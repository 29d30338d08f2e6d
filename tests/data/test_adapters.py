"""Input adapters: slicing batcher, conversions, splits, device moves, batch unpacking."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset, random_split

from kerastorch import data as D


def test_batcher_exact_last_partial_batch_and_views():
    x = torch.arange(10.)
    batches = [b[0] for b in D.TensorBatcher((x,), batch_size=4, shuffle=False)]
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[0].data_ptr() == x.data_ptr()  # unshuffled batches are zero-copy views


def test_batcher_shuffles_with_one_permutation_per_epoch():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(10)
    batcher = D.TensorBatcher((x, x * 10), batch_size=3, shuffle=True, generator=g)
    epoch1 = [b for b in batcher]
    epoch2 = [b for b in batcher]
    order1 = torch.cat([b[0] for b in epoch1])
    assert sorted(order1.tolist()) == list(range(10))
    assert all(torch.equal(b[1], b[0] * 10) for b in epoch1)  # x and y stay paired
    assert not torch.equal(order1, torch.cat([b[0] for b in epoch2]))
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(order1, expected)


def test_conversions():
    assert D.to_tensor(np.zeros((2, 2)), "x").dtype == torch.float32
    assert D.to_tensor(np.zeros(3, dtype=np.int32), "y").dtype == torch.int32  # int32 stays int32 (Keras)
    assert D.to_tensor(np.zeros(3, dtype=np.uint8), "x").dtype == torch.int64  # what nn.Embedding takes
    assert D.to_tensor(torch.zeros(3, dtype=torch.int16), "x").dtype == torch.int64
    assert D.to_tensor(np.array([True, False]), "y").dtype == torch.float32
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert D.to_tensor(frame, "x").tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert D.to_tensor(pd.Series([1, 2]), "y").tolist() == [[1], [2]]  # a Series is one column, as in Keras
    kept = torch.zeros(2)  # already the model's dtype: the same tensor, no copy
    assert D.to_tensor(kept, "x") is kept
    # torch tensors are cast as arrays are (issue 10): float64 -> the model's float dtype; int32 stays (issue 21)
    assert D.to_tensor(torch.zeros(2, dtype=torch.float64), "x").dtype == torch.float32
    assert D.to_tensor(torch.zeros(2, dtype=torch.float64), "x", torch.float64).dtype == torch.float64
    assert D.to_tensor(torch.zeros(2, dtype=torch.int32), "y").dtype == torch.int32


def test_tensor_dataset_and_subset_take_the_fast_path():
    ds = TensorDataset(torch.arange(10.), torch.arange(10.) * 2)
    source = D.adapt(ds, batch_size=4, shuffle=False)
    assert isinstance(source, D.TensorBatcher) and len(source) == 3
    train, _ = random_split(ds, [7, 3], generator=torch.Generator().manual_seed(0))
    sub = D.adapt(train, batch_size=10, shuffle=False)
    (x, y), = list(sub)
    assert isinstance(sub, D.TensorBatcher) and x.tolist() == [float(i) for i in train.indices]
    assert torch.equal(y, x * 2)


class Squares(Dataset):
    """x = i, y = i * i for i in 0..4: a Dataset that is not a TensorDataset."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.tensor([float(i)]), torch.tensor([float(i * i)])


def test_generic_dataset_gets_a_dataloader():
    source = D.adapt(Squares(), batch_size=2, shuffle=False)
    assert isinstance(source, D.LoaderSource)
    assert [y.flatten().tolist() for _, y in source] == [[0, 1], [4, 9], [16]]


def test_on_cuda_a_dataloader_built_for_a_dataset_is_pinned_and_a_users_is_not():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    generator = torch.Generator()
    built = D.place(D.adapt(Squares(), batch_size=2, shuffle=True, generator=generator), cuda, "auto", 0)
    loader = built.loader
    assert loader.pin_memory and loader.batch_size == 2 and len(loader.dataset) == 5
    assert isinstance(loader.sampler, torch.utils.data.RandomSampler) and loader.sampler.generator is generator
    users = DataLoader(Squares(), batch_size=2)
    assert D.place(D.adapt(users, batch_size=None, shuffle=True), cuda, "auto", 0).loader is users
    assert not D.place(D.adapt(Squares(), batch_size=2, shuffle=False), cpu, "auto", 0).loader.pin_memory


def test_user_dataloader_used_as_is():
    loader = DataLoader(TensorDataset(torch.zeros(6, 1)), batch_size=4)
    source = D.adapt(loader, batch_size=None, shuffle=True)
    assert source.loader is loader and len(source) == 2


def test_split_validation_takes_last_fraction():
    (x, y), (vx, vy) = D.split_validation(np.arange(10), np.arange(10) * 2, None, 0.2)
    assert x.tolist() == list(range(8)) and vx.tolist() == [8, 9] and vy.tolist() == [16, 18]


def test_split_validation_rejects_loaders():
    loader = DataLoader(TensorDataset(torch.zeros(4, 1), torch.zeros(4, 1)))
    with pytest.raises(ValueError, match="`validation_split` needs in-memory"):
        D.split_validation(loader, None, None, 0.2)


def test_unpack_batch_forms():
    x, y, w = torch.zeros(2), torch.ones(2), torch.full((2,), 2.0)
    assert D.unpack_batch(x)[0] is x
    assert D.unpack_batch((x,)) == (x, None, None)
    assert D.unpack_batch([x, y])[1] is y
    assert D.unpack_batch((x, y, w))[2] is w
    assert D.unpack_batch({"a": x})[0] == {"a": x}
    with pytest.raises(ValueError, match=r"use \(\(x1, x2\), y\)"):
        D.unpack_batch((x, y, w, w))


def test_move_to_device_is_recursive():
    batch = ((torch.zeros(1), {"k": torch.ones(1)}), [torch.zeros(2)])
    moved = D.move_to_device(batch, torch.device("cpu"))
    assert isinstance(moved[0][1], dict) and isinstance(moved[1], list)


def test_structures_with_mismatched_lengths():
    with pytest.raises(ValueError, match=r"same number of samples \(first dimension\). Received sizes: \[3, 4\]"):
        D.adapt((torch.zeros(3, 1), torch.zeros(4, 1)), batch_size=2, shuffle=False)
