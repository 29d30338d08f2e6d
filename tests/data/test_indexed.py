"""A DataLoader over a TensorDataset is batched by indexing, with exactly the DataLoader's batches and RNG draws."""
import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Subset, TensorDataset

import kerastorch as kt
from kerastorch import data as D

X = torch.arange(23.0).reshape(23, 1)
Y = torch.arange(23) % 3
CASES = [  # (shuffle, with a generator, drop_last)
    (shuffle, generator, drop_last) for shuffle in (False, True) for generator in (False, True)
    for drop_last in (False, True)]


def _loader(shuffle, with_generator, drop_last, batch_size=5):
    generator = torch.Generator().manual_seed(7) if with_generator else None
    return DataLoader(TensorDataset(X, Y), batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last)


def _epochs(batches_of, epochs=2):
    """Batches of each epoch, and the global and loader RNG states after each."""
    seen = []
    for _ in range(epochs):
        seen.append([tuple(t.clone() for t in batch) for batch in batches_of()])
    return seen


@pytest.mark.parametrize(("shuffle", "with_generator", "drop_last"), CASES)
def test_same_batches_and_rng_states_as_iterating_the_dataloader(shuffle, with_generator, drop_last):
    torch.manual_seed(3)
    loader = _loader(shuffle, with_generator, drop_last)
    expected = _epochs(lambda: loader)
    expected_state = (torch.get_rng_state(), loader.generator.get_state() if with_generator else None)

    torch.manual_seed(3)
    loader = _loader(shuffle, with_generator, drop_last)
    source = D.adapt(loader, batch_size=None, shuffle=True)
    assert isinstance(source, D.IndexedLoader) and len(source) == len(loader)
    got = _epochs(lambda: source)
    assert torch.equal(torch.get_rng_state(), expected_state[0])
    if with_generator:
        assert torch.equal(loader.generator.get_state(), expected_state[1])
    assert len(got) == len(expected) and all(len(a) == len(b) for a, b in zip(got, expected))
    for epoch_got, epoch_expected in zip(got, expected):
        for batch_got, batch_expected in zip(epoch_got, epoch_expected):
            assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(batch_got, batch_expected))
    if shuffle:
        assert not torch.equal(got[0][0][0], got[1][0][0])  # a new order every epoch


def test_a_skipped_batch_start_resumes_inside_the_epoch():
    torch.manual_seed(4)
    full = list(D.adapt(_loader(True, False, False), batch_size=None, shuffle=True))
    torch.manual_seed(4)
    source = D.adapt(_loader(True, False, False), batch_size=None, shuffle=True)
    source.skip_batches = 2
    rest = list(source)
    assert len(rest) == len(full) - 2 and all(torch.equal(a[0], b[0]) for a, b in zip(rest, full[2:]))


@pytest.mark.parametrize("loader", [
    DataLoader(TensorDataset(X, Y), batch_size=4, collate_fn=lambda items: items),
    DataLoader(TensorDataset(X, Y), batch_size=4, num_workers=1),
    DataLoader(TensorDataset(X, Y), batch_size=4, sampler=RandomSampler(range(23), replacement=True)),
    DataLoader(TensorDataset(X, Y), batch_size=4, sampler=RandomSampler(range(23), num_samples=10)),
    DataLoader(Subset(TensorDataset(X, Y), [0, 1, 2]), batch_size=2),
    DataLoader(TensorDataset(X, Y), batch_size=None),
])
def test_any_other_dataloader_goes_through_unchanged(loader):
    source = D.adapt(loader, batch_size=None, shuffle=True)
    assert isinstance(source, D.LoaderSource) and source.loader is loader


def _train_by_hand(net, loader, epochs):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            optimizer.step()
    return [p.detach().clone() for p in net.parameters()]


def _train_with_fit(net, loader, epochs):
    model = kt.Model.wrap(net)
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.1), loss="mse", device="cpu")
    model.fit(loader, epochs=epochs, verbose=0)
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("with_generator", [False, True])
@pytest.mark.parametrize("dataset", ["tensors", "plain"])
def test_fit_trains_on_the_batches_a_plain_loop_sees(with_generator, dataset):
    """Identical weights after fit and a hand loop over the same seeded DataLoader.

    "tensors" is a TensorDataset (index batching); "plain" a Dataset of its own, which
    goes through the DataLoader: fit draws nothing from the global RNG that would move
    the DataLoader's shuffling.
    """
    x, y = torch.randn(30, 3), torch.randn(30, 1)

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 30

        def __getitem__(self, i):
            return x[i], y[i]

    def loader():
        generator = torch.Generator().manual_seed(11) if with_generator else None
        data = TensorDataset(x, y) if dataset == "tensors" else Pairs()
        return DataLoader(data, batch_size=8, shuffle=True, generator=generator)

    torch.manual_seed(0)
    template = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    torch.manual_seed(5)
    by_hand = _train_by_hand(copy.deepcopy(template), loader(), epochs=3)
    torch.manual_seed(5)
    with_fit = _train_with_fit(copy.deepcopy(template), loader(), epochs=3)
    assert all(torch.equal(a, b) for a, b in zip(by_hand, with_fit))
