"""predict moves each batch's output to the CPU as it comes (kerastorch.engine.outputs), with the old result.

The reference is the previous implementation, kept here as ``device_concatenate``: every batch's
output kept, then ``torch.cat`` (``torch.stack`` for per-batch scalars) along dim 0, tuples,
lists and dicts kept. predict must return exactly that (structure, dtype, shape, values) for
every kind of batch source: in-memory tensors, DataLoaders (with ``drop_last`` too), map-style
Datasets, generators and IterableDatasets (number of samples unknown).
"""
from __future__ import annotations

import collections
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import kerastorch as kt
from kerastorch.callbacks import Callback
from kerastorch.data import LoaderSource, adapt, tree_map
from kerastorch.engine import outputs as outputs_module
from kerastorch.engine.outputs import OutputCollector, expected_samples

Pair = collections.namedtuple("Pair", ["logits", "score"])

FORMS = {
    "tensor": lambda h: h,
    "tuple": lambda h: (h, h[:, :1]),
    "list": lambda h: [h, h.sum(1)],
    "dict": lambda h: {"logits": h, "pair": (h[:, :1], h.sum(1))},
    "nested": lambda h: {"a": [h, {"b": (h * 2, h.argmax(1))}], "c": h[:, 0]},
    "scalar per batch": lambda h: h.mean(),
    "with non-tensors": lambda h: (h, h.mean(), "tag", None),
    "int64": lambda h: h.argmax(1),
    "float64": lambda h: h.double(),
}


def device_concatenate(outputs):
    """The previous predict's join, on the outputs of every batch (the reference)."""
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(outputs).cpu() if first.dim() else torch.stack(outputs).cpu()
    if isinstance(first, (tuple, list)):
        return type(first)(device_concatenate([out[i] for out in outputs]) for i in range(len(first)))
    if isinstance(first, dict):
        return {key: device_concatenate([out[key] for out in outputs]) for key in first}
    return tree_map(lambda v: v, outputs)


def assert_same(actual, expected):
    assert type(actual) is type(expected), (type(actual), type(expected))
    if isinstance(expected, torch.Tensor):
        assert (actual.dtype, actual.shape, actual.device.type) == (expected.dtype, expected.shape, "cpu")
        assert torch.equal(actual, expected)
        assert not actual.is_inference() and not actual.requires_grad
    elif isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected)
        for mine, theirs in zip(actual, expected):
            assert_same(mine, theirs)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(actual[key], expected[key])
    else:
        assert actual == expected


class Shaped(nn.Module):
    """A linear layer whose output is returned in one of FORMS."""

    def __init__(self, form):
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.form = nn.Linear(2, 3), FORMS[form]

    def forward(self, x):
        return self.form(self.fc(x))


class Samples(Dataset):
    """A map-style Dataset that is not a TensorDataset (kerastorch builds or keeps a real DataLoader)."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return (self.x[i],)


class Stream(IterableDataset):
    def __init__(self, x):
        self.x = x

    def __iter__(self):
        return iter(self.x)


X = torch.randn(10, 2, generator=torch.Generator().manual_seed(1))

# source name -> (predict's x and batch_size, the batches it gives: size 4, a last batch of 2 unless dropped)
SOURCES = {
    "tensors": lambda: ({"x": X, "batch_size": 4}, False),
    "DataLoader(TensorDataset)": lambda: ({"x": DataLoader(TensorDataset(X), batch_size=4)}, False),
    "DataLoader(drop_last=True)": lambda: ({"x": DataLoader(TensorDataset(X), batch_size=4, drop_last=True)}, True),
    "Dataset": lambda: ({"x": Samples(X), "batch_size": 4}, False),
    "DataLoader(Dataset, drop_last=True)": lambda: ({"x": DataLoader(Samples(X), batch_size=4, drop_last=True)},
                                                    True),
    "generator": lambda: ({"x": ((X[i:i + 4],) for i in range(0, 10, 4))}, False),
    "IterableDataset": lambda: ({"x": Stream(X), "batch_size": 4}, False),
}


def reference(module, drop_last=False):
    stops = range(0, 8 if drop_last else 10, 4)
    with torch.inference_mode():
        outputs = [module(X[i:i + 4]) for i in stops]
    return device_concatenate(outputs)


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("form", list(FORMS))
def test_predict_returns_what_concatenating_on_the_device_returned(form, source):
    module = Shaped(form)
    arguments, drop_last = SOURCES[source]()
    assert_same(kt.Model.wrap(module).predict(**arguments), reference(module, drop_last))


@pytest.mark.parametrize(("source", "plan"), [
    ("tensors", (10, 4)), ("DataLoader(TensorDataset)", (10, 4)), ("DataLoader(drop_last=True)", (8, 4)),
    ("Dataset", (10, 4)), ("DataLoader(Dataset, drop_last=True)", (8, 4)), ("generator", None),
    ("IterableDataset", None)])
def test_the_number_of_samples_is_known_exactly_or_not_at_all(source, plan):
    arguments, _ = SOURCES[source]()
    assert expected_samples(adapt(arguments["x"], batch_size=arguments.get("batch_size"), shuffle=False)) == plan


def test_a_custom_batch_sampler_or_a_small_drop_last_loader_is_unknown():
    sampler = torch.utils.data.BatchSampler(range(10), batch_size=4, drop_last=False)
    assert expected_samples(adapt(DataLoader(Samples(X), batch_sampler=sampler), batch_size=None,
                                  shuffle=False)) is None
    assert expected_samples(LoaderSource(DataLoader(Samples(X), batch_size=16, drop_last=True))) is None


@pytest.fixture
def allocations(monkeypatch):
    """The (rows, rest of shape) of every preallocated output buffer."""
    made = []
    original = outputs_module._host_rows

    def spy(first, rows):
        made.append((rows, tuple(first.shape[1:])))
        return original(first, rows)

    monkeypatch.setattr(outputs_module, "_host_rows", spy)
    return made


@pytest.mark.parametrize(("source", "made"), [
    ("tensors", [(10, (3,)), (10, (1,))]), ("DataLoader(drop_last=True)", [(8, (3,)), (8, (1,))]),
    ("generator", []), ("IterableDataset", [])])
def test_known_sizes_get_one_buffer_per_output_tensor(allocations, source, made):
    module = Shaped("tuple")
    arguments, drop_last = SOURCES[source]()
    assert_same(kt.Model.wrap(module).predict(**arguments), reference(module, drop_last))
    assert allocations == made


def test_the_buffer_is_the_result_without_a_copy():
    collector = OutputCollector((5, 2))
    for index, stop in enumerate((2, 4, 5)):
        collector.add(torch.arange(stop - 2 if index < 2 else 4, stop).float(), index)
    buffer = collector.spec.buffer
    result = collector.result()
    assert result is buffer and torch.equal(result, torch.tensor([0.0, 1, 2, 3, 4]))


class Odd(nn.Module):
    """Outputs that do not fit the buffer planned from the first batch, from batch 1 on."""

    def __init__(self, change):
        super().__init__()
        self.change, self.calls = change, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 1:
            return x * 2
        return {"dtype": lambda: x.double(), "more rows": lambda: torch.cat([x, x]),
                "fewer rows": lambda: x[:1], "trailing": lambda: torch.cat([x, x], dim=1)}[self.change]()


@pytest.mark.parametrize("change", ["dtype", "more rows", "fewer rows"])
def test_outputs_that_do_not_fit_the_buffer_fall_back_to_concatenation(allocations, change):
    result = kt.Model.wrap(Odd(change)).predict(X, batch_size=4)
    module = Odd(change)
    assert_same(result, reference(module))
    assert allocations == [(10, (2,))]  # planned, then given up
    assert result.untyped_storage().nbytes() == result.numel() * result.element_size()  # no oversized buffer


def test_a_trailing_shape_that_changes_is_padded_with_minus_100_as_hugging_face_does():
    """Batches whose shapes differ past dim 0 (a language model's logits over batches padded to their own
    lengths) are padded at the end with -100, Hugging Face Trainer's padding index, then joined."""
    result = kt.Model.wrap(Odd("trailing")).predict(X, batch_size=4)
    width = X.shape[1]
    assert tuple(result.shape) == (len(X), 2 * width)
    torch.testing.assert_close(result[:4, :width], X[:4] * 2)
    assert bool((result[:4, width:] == -100).all())
    torch.testing.assert_close(result[4:], torch.cat([X[4:], X[4:]], dim=1))


def test_outputs_whose_rows_are_not_the_samples_are_concatenated(allocations):
    class Twice(nn.Module):
        def forward(self, x):
            return torch.cat([x, -x])  # 2 rows per sample: not the planned rows, so no buffer

    assert_same(kt.Model.wrap(Twice()).predict(X, batch_size=4), reference(Twice()))
    assert allocations == []


@pytest.mark.parametrize(("outputs", "message"), [
    ([(1, 2), (1, 2), (1, 2, 3)], r"`output` was a tuple of length 2 in batch 0\. Received: output=a tuple of "
                                  r"length 3 in batch 2\."),
    ([{"a": 1}, {"b": 1}], r"`output` was a dict with keys \['a'\] in batch 0\. Received: output=a dict with "
                           r"keys \['b'\] in batch 1\."),
    ([(1, [2]), (1, (2,))], r"`output\[1\]` was a list of length 1 in batch 0\. Received: output\[1\]=a tuple "
                            r"of length 1 in batch 1\."),
    ([{"y": "t"}, {"y": None}], r"`output\['y'\]` was a tensor in batch 0\. Received: output\['y'\]=None in "
                                r"batch 1\."),
])
def test_a_batch_whose_output_has_another_structure_is_named(outputs, message):
    def tensors(value):  # 1, 2 and "t" stand for tensors of the batch
        return torch.ones(2) if value in (1, 2, "t") else value

    class Changing(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            structure = outputs[self.calls - 1]
            if isinstance(structure, dict):
                return {key: tensors(value) for key, value in structure.items()}
            return tuple(tensors(v) if not isinstance(v, (list, tuple)) else type(v)(map(tensors, v))
                         for v in structure)

    with pytest.raises(ValueError, match=message + ".*Return the same"):
        kt.Model.wrap(Changing()).predict(torch.zeros(2 * len(outputs), 2), batch_size=2)


def test_a_forward_returning_none_says_so_and_closes_the_display():
    class Silent(nn.Module):
        def forward(self, x):
            return None

    seen = []

    class Watch(Callback):
        def on_exception(self, error):
            seen.append(type(error).__name__)

    with pytest.raises(TypeError, match=r"forward returned None, so predict\(\) has no outputs"):
        kt.Model.wrap(Silent()).predict(torch.randn(3, 4), callbacks=[Watch()])
    assert seen == ["TypeError"]  # raised at the first batch, inside the loop: displays close first


def test_a_generator_without_batches_is_refused():
    with pytest.raises(ValueError, match=r"`x` yielded no batches, so predict\(\) has no outputs"):
        kt.Model.wrap(nn.Linear(2, 3)).predict(iter([]))


def test_a_namedtuple_output_stays_a_namedtuple():
    class Named(nn.Module):
        def forward(self, x):
            return Pair(x * 2, x.sum(1))

    result = kt.Model.wrap(Named()).predict(X, batch_size=4)
    assert type(result) is Pair and torch.equal(result.logits, X * 2) and torch.equal(result.score, X.sum(1))


def test_channels_last_outputs_stay_channels_last():
    images = torch.randn(6, 3, 4, 4)
    module = nn.Conv2d(3, 2, 1).to(memory_format=torch.channels_last)

    class Images(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = module

        def forward(self, x):
            return self.conv(x.contiguous(memory_format=torch.channels_last))

    result = kt.Model.wrap(Images()).predict(images, batch_size=4)
    with torch.inference_mode():
        expected = device_concatenate([Images()(images[:4]), Images()(images[4:])])
    assert torch.equal(result, expected)
    assert expected.is_contiguous(memory_format=torch.channels_last)  # torch.cat keeps channels-last ...
    assert result.is_contiguous(memory_format=torch.channels_last)  # ... and so does the buffer


def test_the_result_can_be_changed_in_place():
    result = kt.Model.wrap(Shaped("tensor")).predict(X, batch_size=4)
    result.add_(1)  # an inference tensor would refuse this outside inference mode


def test_on_predict_batch_end_gets_each_batch_output_as_forward_returned_it():
    returned, seen = [], []

    class Remember(nn.Module):
        def forward(self, x):
            returned.append(x * 3)
            return returned[-1]

    class Record(Callback):
        def on_predict_batch_end(self, batch, logs=None):
            seen.append((batch, logs["outputs"]))

    result = kt.Model.wrap(Remember()).predict(X, batch_size=4, callbacks=[Record()])
    assert [batch for batch, _ in seen] == [0, 1, 2]
    assert all(output is original for (_, output), original in zip(seen, returned))
    assert torch.equal(result, X * 3)


def test_predict_reads_nothing_back_to_the_host(monkeypatch):
    # On a GPU each of these calls would be a host-device sync; the CPU check of tests/engine/test_no_host_reads.py,
    # here over the whole predict call (all batches, the collector's first batch and its result included).
    seen = []

    def spy(name):
        original = getattr(torch.Tensor, name)

        def watched(self, *args, **kwargs):
            module = sys._getframe(1).f_globals.get("__name__", "")
            if module.startswith("kerastorch"):
                seen.append(f"{name} from {module}:{sys._getframe(1).f_lineno}")
            return original(self, *args, **kwargs)

        return watched

    model = kt.Model.wrap(Shaped("nested"))
    for name in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, spy(name))
    for source in ("tensors", "Dataset", "generator"):
        arguments, _ = SOURCES[source]()
        model.predict(**arguments)
    assert seen == []


class SyncGuard(Callback):
    """CUDA's sync debug mode on from the start of batch 1 (batch 0 allocates the buffers) until the result."""

    def on_predict_batch_begin(self, batch, logs=None):
        if batch == 1:
            torch.cuda.set_sync_debug_mode("error")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("source", ["tensors", "generator"])
def test_on_cuda_predict_copies_asynchronously_and_waits_once(monkeypatch, source):
    waits = []
    result_of = OutputCollector.result

    def result(self):  # the one wait, after the loop: outside the checked region
        torch.cuda.set_sync_debug_mode(0)
        waits.append(self.cuda_devices)
        return result_of(self)

    monkeypatch.setattr(OutputCollector, "result", result)
    module = Shaped("dict").cuda()
    x = torch.randn(4000, 2)  # a last batch of 160
    arguments = {"x": x, "batch_size": 256} if source == "tensors" else \
        {"x": ((x[i:i + 256],) for i in range(0, 4000, 256))}
    try:
        output = kt.Model.wrap(module).predict(**arguments, callbacks=[SyncGuard()])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    with torch.inference_mode():
        expected = device_concatenate([module(x[i:i + 256].cuda()) for i in range(0, 4000, 256)])
    assert_same(output, expected)
    assert waits == [[torch.device("cuda", 0)]]
    assert output["logits"].is_pinned() == (source == "tensors")  # the preallocated buffer is pinned
