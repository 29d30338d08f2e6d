"""ModelCheckpoint(weights="averaged"): the EMA / SWA average in weights files, both weights in full checkpoints."""
import pytest
import torch
from torch import nn

import kerastorch as kt


def fitted(tmp_path, **checkpoint):
    torch.manual_seed(0)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)))
    model.compile("adam", "mse", optimizer_kwargs={"lr": 0.05}, device="cpu")
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    saver = kt.callbacks.ModelCheckpoint(str(tmp_path / "w-{weights}-{epoch}.pt"), weights="averaged", **checkpoint)
    model.fit(x, x.sum(1, keepdim=True), batch_size=8, epochs=2, verbose=0,
              callbacks=[kt.callbacks.EMA(decay=0.9, final_weights="raw"), saver])
    return model


def test_a_weights_file_holds_the_average_and_its_name_says_so(tmp_path):
    model = fitted(tmp_path)
    saved = torch.load(tmp_path / "w-ema-2.pt", weights_only=True)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    with model.averaged_weights():
        average = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(saved[k], average[k]) for k in average)
    assert not all(torch.equal(saved[k], trained[k]) for k in trained)  # the average, not the trained weights
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())  # swapped back after saving


def test_a_full_checkpoint_holds_the_trained_weights_and_the_average(tmp_path):
    model = fitted(tmp_path, save_weights_only=False)
    saved = torch.load(tmp_path / "w-ema-2.pt", weights_only=True)
    assert saved["averaged_kind"] == "ema"
    assert all(torch.equal(saved["model"][k], v) for k, v in model.state_dict().items())
    with model.averaged_weights():
        assert all(torch.equal(saved["averaged_model"][k], v) for k, v in model.state_dict().items())


def test_weights_must_be_trained_or_averaged():
    with pytest.raises(ValueError, match=r"`weights` must be 'trained' or 'averaged' \(an EMA or SWA callback's "
                                         r"average\)\. Received: weights='ema'"):
        kt.callbacks.ModelCheckpoint("w.pt", weights="ema")
