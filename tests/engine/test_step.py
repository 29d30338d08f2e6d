"""Gradient accumulation, clipping, mixed precision, torch.compile, DataParallel fallback."""
import math

import pytest
import torch
from torch import nn

import kerastorch as kt
from kerastorch.amp import MixedPrecision, SkipCountingGradScaler, resolve_precision


def mlp(seed=0):
    torch.manual_seed(seed)
    return kt.Model.wrap(nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)))


def data(n=16):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_four_micro_batches_equal_one_batch_of_16():
    x, y = data(16)
    accumulated, whole = mlp(), mlp()
    accumulated.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, grad_accum_steps=4, device="cpu")
    whole.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, device="cpu")
    accumulated.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    whole.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params(accumulated), params(whole)))


def test_ten_micro_batches_with_k4_make_three_steps_matching_a_hand_loop():
    x, y = data(40)
    model, ref = mlp(), mlp()
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, grad_accum_steps=4, device="cpu")
    steps = []
    model.optimizer.register_step_post_hook(lambda opt, args, kwargs: steps.append(1))
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert len(steps) == 3
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for window in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9]):  # the short last window divides by 2
        for b in window:
            loss = nn.functional.mse_loss(ref(x[4 * b:4 * b + 4]), y[4 * b:4 * b + 4]) / len(window)
            loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params(model), params(ref)))


def test_grad_clip_norm_matches_clip_grad_norm():
    x, y = data(8)
    model, ref = mlp(), mlp()
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 1.0}, grad_clip_norm=0.01, device="cpu")
    model.fit(x * 100, y, batch_size=8, epochs=1, verbose=0)
    nn.functional.mse_loss(ref(x * 100), y).backward()
    nn.utils.clip_grad_norm_(ref.parameters(), 0.01)
    with torch.no_grad():
        for p in ref.parameters():
            p -= p.grad
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params(model), params(ref)))


def test_grad_clip_value():
    x, y = data(8)
    model = mlp()
    before = params(model)
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 1.0}, grad_clip_value=0.001, device="cpu")
    model.fit(x * 100, y, batch_size=8, epochs=1, verbose=0)
    assert max((a - b).abs().max().item() for a, b in zip(params(model), before)) <= 0.001 + 1e-7


def test_bf16_mixed_on_cpu_autocasts_forward_and_keeps_fp32_weights():
    seen = []

    class Probe(kt.Model):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 1)

        def forward(self, x):
            out = self.fc(x)
            seen.append(out.dtype)
            return out

    model = Probe()
    model.compile("adam", "mse", precision="bf16-mixed", device="cpu")
    model.fit(*data(8), batch_size=8, epochs=1, verbose=0)
    assert seen == [torch.bfloat16] and model.fc.weight.dtype == torch.float32


def fp16_on_cpu(model, init_scale):
    """compile() refuses fp16 on CPU (slow there); the GradScaler logic itself runs on CPU fine."""
    precision = MixedPrecision("16-mixed", torch.device("cpu"))
    precision.scaler = SkipCountingGradScaler("cpu", init_scale=init_scale)
    model._config.precision = precision
    return precision.scaler


def test_fp16_steps_skipped_for_inf_gradients_are_counted_not_failures():
    model = mlp()
    model.compile("adam", "mse", device="cpu")
    scaler = fp16_on_cpu(model, init_scale=2.0 ** 24)  # far too big: fp16 gradients overflow at first
    history = model.fit(*data(16), batch_size=4, epochs=4, verbose=0)
    assert len(history) == 4 and history["loss"].notna().all()  # no NaN stop
    # Each skipped step halves the scale and nothing grows within 2000 steps: log2(start / end) skips.
    skipped = round(math.log2(2.0 ** 24 / scaler.get_scale()))
    assert skipped >= 1
    assert history["amp_skipped_steps"].sum() == skipped
    assert history["amp_skipped_steps"].iloc[-1] == 0  # the scale has settled
    first_weight = model.optimizer.param_groups[0]["params"][0]
    assert float(model.optimizer.state[first_weight]["step"]) == 16 - skipped  # steps really taken


def test_skip_count_is_part_of_the_scaler_state():
    model = mlp()
    model.compile("adam", "mse", device="cpu")
    scaler = fp16_on_cpu(model, init_scale=2.0 ** 24)
    model.fit(*data(8), batch_size=4, epochs=1, verbose=0)
    counted = float(scaler.skip_count())
    assert counted == 2  # both steps of the epoch overflowed
    restored = SkipCountingGradScaler("cpu")
    restored.load_state_dict(scaler.state_dict())
    assert float(restored.skip_count()) == counted and restored.get_scale() == scaler.get_scale()
    restored.reset_skip_count()
    assert float(restored.skip_count()) == 0


def test_no_skip_count_column_without_fp16():
    model = mlp()
    model.compile("adam", "mse", device="cpu")
    history = model.fit(*data(8), batch_size=4, epochs=1, verbose=0)
    assert list(history.columns) == ["epoch", "loss", "lr"]


def test_amp_switch_picks_bf16_on_cpu_and_fp16_needs_cuda():
    cpu = torch.device("cpu")
    assert resolve_precision(None, True, cpu) == "bf16-mixed"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("16-mixed", False, cpu)
    with pytest.raises(ValueError, match="`precision` must be one of"):
        resolve_precision("8-bit", False, cpu)
    assert type(MixedPrecision("32", cpu).scaler).__name__ == "_NoScaler"


def test_data_parallel_without_gpus_warns_and_does_not_wrap():
    model = mlp()
    with pytest.warns(RuntimeWarning, match="data_parallel was requested but 0 CUDA device"):
        model.compile("sgd", "mse", data_parallel=True, device="cpu")
    assert model._config.forward_fn is model
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


class RecordingDataParallel(nn.DataParallel):
    """A CPU stand-in for nn.DataParallel over 2 GPUs: same class, forward passes through, recorded."""

    calls = 0

    def __init__(self, module, device_ids=None):
        nn.Module.__init__(self)
        self.module, self.device_ids = module, device_ids

    def forward(self, *inputs, **kwargs):
        RecordingDataParallel.calls += 1
        return self.module(*inputs, **kwargs)


def test_data_parallel_with_two_gpus_trains_through_the_wrapper_and_shows_the_bare_module(
        monkeypatch, tmp_path, recwarn):
    monkeypatch.setattr(kt.distributed.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(kt.distributed.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(kt.distributed.nn, "DataParallel", RecordingDataParallel)
    RecordingDataParallel.calls = 0
    model = mlp()
    model.compile("sgd", "mse", strategy="dp", device="cpu")
    monkeypatch.undo()  # only compile needed the two "GPUs"
    wrapper = model._config.forward_fn
    assert isinstance(wrapper, RecordingDataParallel) and wrapper.device_ids == [0, 1]
    assert wrapper.module is model and model._config.eval_forward_fn is wrapper
    x, y = data(16)
    model.fit(x, y, batch_size=8, epochs=1, validation_data=(x, y), verbose=0)
    assert RecordingDataParallel.calls == 4  # 2 training + 2 validation batches went through it
    keys = ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert list(model.state_dict()) == keys
    model.save_weights(tmp_path / "w.pt")
    assert list(torch.load(tmp_path / "w.pt", weights_only=True)) == keys
    bare = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    bare.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True), strict=True)
    assert torch.allclose(model.predict(x), bare(x).detach(), atol=1e-6)
    assert "Total params: 26" in model.summary(input_shape=(3,), print_fn=None)
    assert not [w for w in recwarn if "data_parallel" in str(w.message)]


def test_data_parallel_with_one_gpu_id_warns_and_does_not_wrap(monkeypatch):
    monkeypatch.setattr(kt.distributed.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(kt.distributed.torch.cuda, "device_count", lambda: 2)
    model = mlp()
    with pytest.warns(RuntimeWarning, match=r"data_parallel=\[1\] names one GPU"):
        model.compile("sgd", "mse", data_parallel=[1], device="cpu")
    assert model._config.forward_fn is model


def test_channels_last_converts_model_and_images():
    formats = []

    class Conv(kt.Model):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            formats.append(x.is_contiguous(memory_format=torch.channels_last))
            return self.conv(x).mean((1, 2, 3))

    model = Conv()
    model.compile("sgd", "mse", channels_last=True, device="cpu")
    model.fit(torch.randn(4, 3, 8, 8), torch.randn(4), batch_size=4, epochs=1, verbose=0)
    assert formats == [True] and model.conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_jit_compile_trains_and_checkpoint_loads_into_bare_model(tmp_path):
    model = mlp()
    model.compile("sgd", "mse", optimizer_kwargs={"lr": 0.1}, jit_compile=True, device="cpu")
    history = model.fit(*data(32), batch_size=8, epochs=3, verbose=0)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    model.save_weights(tmp_path / "w.pt")
    model.save(tmp_path / "full.pt")
    bare = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    bare.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True), strict=True)
    full = torch.load(tmp_path / "full.pt", weights_only=True)
    bare.load_state_dict(full["model"], strict=True)
    assert not any("_orig_mod" in key for key in full["model"])
