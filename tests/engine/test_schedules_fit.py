"""Schedule presets in fit: the total counted from the data, one step per optimizer update, the closed form."""
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kerastorch as kt
from kerastorch.checkpointing.compatibility import CheckpointMismatchError
from support import InterruptAt

BASE, MIN_LR, WARMUP = 0.1, 0.01, 2


def warmup_cosine(u, total):
    """The documented definition, written out: linear warmup to BASE at update WARMUP, cosine to MIN_LR at total-1."""
    if u < WARMUP:
        return BASE * (u + 1) / (WARMUP + 1)
    if u >= total - 1:
        return MIN_LR
    progress = (u - WARMUP) / (total - 1 - WARMUP)
    return MIN_LR + (BASE - MIN_LR) * 0.5 * (1 + math.cos(math.pi * progress))


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(27, 3, generator=g)  # batch 4: 7 batches, the last of 3 samples
    return x, x.sum(1, keepdim=True)


def model_recording_updates(schedule=None, grad_accum_steps=3):
    torch.manual_seed(1)
    model = kt.Model.wrap(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)))
    model.compile("sgd", "mse", optimizer_kwargs={"lr": BASE}, device="cpu", grad_accum_steps=grad_accum_steps,
                  lr_scheduler=schedule or kt.schedules.WarmupCosine(warmup=WARMUP, min_lr=MIN_LR))
    lrs = []
    model.optimizer.register_step_pre_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
    return model, lrs


@pytest.mark.parametrize("kind", ["tensors", "dataloader"])
def test_every_update_uses_the_closed_form_lr_and_the_last_one_the_end_value(kind):
    x, y = data()
    model, lrs = model_recording_updates()
    source = {"x": x, "y": y, "batch_size": 4} if kind == "tensors" else \
        {"x": DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)}
    history = model.fit(**source, epochs=3, verbose=0)
    total = 3 * 3  # 7 batches per epoch in windows of 3, 3, 1
    assert len(lrs) == total
    assert lrs == pytest.approx([warmup_cosine(u, total) for u in range(total)], rel=1e-12, abs=1e-15)
    assert history["lr"].iloc[-1] == pytest.approx(MIN_LR)


def test_a_name_is_the_preset_with_its_defaults():
    x, y = data()
    model, lrs = model_recording_updates("warmup_linear")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert len(lrs) == 6 and lrs[0] == pytest.approx(BASE * 1 / 1) and lrs[-1] == 0.0


def test_a_mid_epoch_resume_continues_the_schedule_at_the_same_update(tmp_path):
    x, y = data()
    model, first = model_recording_updates()
    checkpoint = kt.callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"), save_weights_only=False)
    with pytest.raises(KeyboardInterrupt):  # waits for the window's end: batch 5 closes the second window
        model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[InterruptAt(1, 4), checkpoint])
    assert len(first) == 3 + 2
    model, second = model_recording_updates()
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, resume_from=str(tmp_path / "interrupted.pt"))
    assert first + second == pytest.approx([warmup_cosine(u, 9) for u in range(9)], rel=1e-12, abs=1e-15)


def test_resuming_with_another_schedule_is_refused_before_anything_loads(tmp_path):
    x, y = data()
    model, _ = model_recording_updates()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0,
              callbacks=[kt.callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"), save_weights_only=False)])
    model, lrs = model_recording_updates(kt.schedules.WarmupCosine(warmup=3, min_lr=MIN_LR))
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(CheckpointMismatchError, match=r"saved with the learning-rate schedule "
                                                      r"WarmupCosine\(warmup=2, min_lr=0.01\); this model is "
                                                      r"compiled with WarmupCosine\(warmup=3, min_lr=0.01\)"):
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, resume_from=str(tmp_path / "ep1.pt"))
    assert lrs == [] and all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_generator_without_steps_per_epoch_cannot_size_the_schedule():
    x, y = data()
    model, lrs = model_recording_updates(grad_accum_steps=1)
    with pytest.raises(ValueError, match=r"needs the run's number of optimizer updates, but the training data has "
                                         r"no length .* Pass steps_per_epoch=\.\.\. to fit"):
        model.fit(((x[i:i + 4], y[i:i + 4]) for i in range(0, 27, 4)), epochs=2, verbose=0)
    assert lrs == []


def test_a_generator_that_ends_early_says_the_schedule_did_not_finish():
    x, y = data()
    model, lrs = model_recording_updates()
    batches = ((x[i:i + 4], y[i:i + 4]) for i in range(0, 27, 4))  # 7 batches for 2 epochs of 6
    with pytest.warns(UserWarning, match=r"ran out of batches in epoch 2 after 1 of its 6 steps.* The learning-rate "
                                         r"schedule WarmupCosine\(warmup=2, min_lr=0.01\) was set for 4 optimizer "
                                         r"updates and made 2: it ended before its end value\."):
        model.fit(batches, epochs=2, steps_per_epoch=6, verbose=0)
    assert len(lrs) == 2  # the second epoch's lone batch never closed its window of 3


def test_an_update_that_fp16_skips_does_not_advance_the_schedule():
    from kerastorch.amp import SkipCountingGradScaler

    scaler = SkipCountingGradScaler("cpu", init_scale=2.0 ** 16)
    layer = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    scaler.scale(layer(torch.tensor([[float("inf"), 1.0]])).sum()).backward()
    scaler.step(optimizer)
    scaler.update()
    assert scaler.skipped_last_step() is True
    optimizer.zero_grad()
    scaler.scale(layer(torch.ones(1, 2)).sum()).backward()
    scaler.step(optimizer)
    scaler.update()
    assert scaler.skipped_last_step() is False
