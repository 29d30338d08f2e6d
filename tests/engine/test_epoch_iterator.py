"""The epoch iterator: which batches each epoch runs, data passes across epochs, and exact resume inside a pass."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as kt
from kerastorch.callbacks import Callback
from kerastorch.data import BatchSource, IndexedLoader, LoaderSource, TensorBatcher, adapt
from kerastorch.engine.epoch_iterator import EpochIterator
from kerastorch.engine.epochs import TrainingControls
from kerastorch.engine.session import FitRecord
from support import InterruptAt


class SeenSamples(Callback):
    """Records, per epoch, the first feature of every sample of every training batch."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])

    def on_train_batch_begin(self, batch, logs=None):
        self.epochs[-1].append(batch)


def ids_model():
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Linear(1, 1))
    model.compile("sgd", "mse", device="cpu")
    return model


def test_every_adapter_result_is_a_batch_source():
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    sources = [adapt(x, y, batch_size=4, shuffle=False), adapt(loader, batch_size=None, shuffle=False),
               adapt(iter([(x, y)]), batch_size=None, shuffle=False)]
    assert [type(s) for s in sources] == [TensorBatcher, IndexedLoader, LoaderSource]
    assert all(isinstance(s, BatchSource) for s in sources)


@pytest.mark.parametrize("kind", ["tensors", "dataloader"])
def test_steps_per_epoch_that_does_not_divide_the_data_continues_the_pass_as_keras(kind):
    """Keras's EpochIterator: 10 batches and steps_per_epoch=9 run 9, 1, 9, 1 batches, each sample once per pass."""
    x = torch.arange(10.).reshape(10, 1)
    y = torch.zeros(10, 1)
    data = {"x": x, "y": y, "batch_size": 1} if kind == "tensors" else \
        {"x": DataLoader(TensorDataset(x, y), batch_size=1, shuffle=True)}
    model, seen = ids_model(), SeenSamples()

    torch.manual_seed(1)
    recorded = []
    original = model.train_step

    def train_step(batch):
        recorded.append(float(batch[0][0, 0]))
        return original(batch)

    model.train_step = train_step
    model.fit(**data, epochs=4, steps_per_epoch=9, callbacks=[seen], verbose=0)
    assert [len(batches) for batches in seen.epochs] == [9, 1, 9, 1]
    assert [b for b in seen.epochs[1]] == [0]
    first_pass, second_pass = recorded[:10], recorded[10:]
    assert sorted(first_pass) == sorted(second_pass) == [float(i) for i in range(10)]
    assert first_pass != second_pass  # each pass draws its own order
    assert list(model.history["epoch"]) == [1, 2, 3, 4]


def test_without_a_cap_every_epoch_is_one_pass():
    batches = EpochIterator(TensorBatcher((torch.arange(5.),), batch_size=2, shuffle=False), FitRecord(),
                            TrainingControls())
    for epoch in range(2):
        assert [b[0].tolist() for _, b in batches.epoch(epoch)] == [[0., 1.], [2., 3.], [4.]]
        batches.end_epoch()


def test_state_dict_says_where_the_pass_stands():
    batches = EpochIterator(TensorBatcher((torch.arange(10.),), batch_size=1, shuffle=False), FitRecord(),
                            TrainingControls(), steps_per_epoch=4)
    for index, _ in batches.epoch(0):
        batches.batch = index  # as fit's batch loop does
        if index == 2:
            assert batches.state_dict()["batch"] == 3 and batches.state_dict()["pass_offset"] == 0
    batches.end_epoch()
    state = batches.state_dict()
    assert (state["batch"], state["pass_offset"], state["batch_size"], state["num_samples"]) == (0, 4, 1, 10)
    resumed = EpochIterator(TensorBatcher((torch.arange(10.),), batch_size=1, shuffle=False), FitRecord(),
                            TrainingControls(), steps_per_epoch=4)
    assert resumed.load_state_dict({**state, "rng": state["epoch_start_rng"]}) is True
    assert [float(b[0]) for _, b in resumed.epoch(1)] == [4., 5., 6., 7.]


@pytest.mark.parametrize(("source", "recorded"), [
    (TensorBatcher((torch.arange(6.),), batch_size=2, shuffle=True, generator=torch.Generator()), set()),
    (TensorBatcher((torch.arange(6.),), batch_size=2, shuffle=True), {"torch"}),
    (IndexedLoader(DataLoader(TensorDataset(torch.arange(6.)), batch_size=2, shuffle=True)), {"torch"}),
    (LoaderSource(DataLoader(TensorDataset(torch.arange(6.)), batch_size=2, shuffle=True)),
     {"python", "numpy", "torch"} | ({"cuda"} if torch.cuda.is_available() else set())),
], ids=["tensors-own-generator", "tensors-global-rng", "indexed-dataloader", "any-dataloader"])
def test_a_pass_start_records_only_the_rngs_its_source_draws_from(source, recorded):
    """NumPy's state costs ~35 us to read: a pass of in-memory or indexed data records torch's alone."""
    batches = EpochIterator(source, FitRecord(), TrainingControls())
    next(iter(batches.epoch(0)))
    assert set(batches.state_dict()["epoch_start_rng"]) == recorded


def test_a_shuffled_dataloader_without_generator_resumes_mid_pass_bit_identically(tmp_path):
    """The indexed DataLoader path records only torch's RNG at a pass's start: enough to redraw its order."""
    def run(**fit_args):
        model, x, y = net_and_data()
        torch.manual_seed(5)
        loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
        return model, model.fit(loader, epochs=4, steps_per_epoch=7, verbose=0, **fit_args)

    model, reference = run()
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(KeyboardInterrupt):
        run(callbacks=[InterruptAt(2, 3), kt.callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"),
                                                                       save_weights_only=False)])
    model, history = run(resume_from=str(tmp_path / "interrupted.pt"))
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert history["loss"].tolist() == reference["loss"].tolist()


def net_and_data():
    torch.manual_seed(3)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.2), nn.ReLU(), nn.Linear(8, 1)))
    model.compile("adam", "mse", device="cpu")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(40, 3, generator=g)
    return model, x, x.sum(1, keepdim=True)


@pytest.mark.parametrize("stop", [(1, 0), (2, 3)], ids=["after-epoch-1-end-inside-the-pass", "mid-epoch-3"])
def test_a_resume_inside_a_pass_that_spans_epochs_is_bit_identical(tmp_path, stop):
    """10 batches, steps_per_epoch=7: epochs of 7, 3, 7, 3 batches; stop anywhere, resume, same weights."""
    model, x, y = net_and_data()
    reference = model.fit(x, y, batch_size=4, epochs=4, steps_per_epoch=7, verbose=0)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model, x, y = net_and_data()
    checkpoint = kt.callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"), save_weights_only=False)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=4, epochs=4, steps_per_epoch=7, verbose=0,
                  callbacks=[InterruptAt(*stop), checkpoint])
    model, x, y = net_and_data()
    path = str(tmp_path / "interrupted.pt")
    history = model.fit(x, y, batch_size=4, epochs=4, steps_per_epoch=7, verbose=0, resume_from=path,
                        callbacks=[kt.callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"),
                                                                save_weights_only=False)])
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert history["loss"].tolist() == reference["loss"].tolist()


def test_an_epoch_end_checkpoint_inside_a_pass_resumes_the_pass(tmp_path):
    model, x, y = net_and_data()
    model.fit(x, y, batch_size=4, epochs=3, steps_per_epoch=7, verbose=0)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model, x, y = net_and_data()
    model.fit(x, y, batch_size=4, epochs=1, steps_per_epoch=7, verbose=0,
              callbacks=[kt.callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"), save_weights_only=False)])
    assert torch.load(tmp_path / "ep1.pt", weights_only=True)["pass_offset"] == 7
    model, x, y = net_and_data()
    model.fit(x, y, batch_size=4, epochs=3, steps_per_epoch=7, verbose=0, resume_from=str(tmp_path / "ep1.pt"))
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
