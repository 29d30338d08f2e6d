"""Tests for kerastorch.schedules: closed forms through a real optimizer, torch's OneCycleLR, resume, errors."""
import math
import re

import pytest
import torch
from torch import nn

from kerastorch.schedules import (
    ConstantWithWarmup,
    OneCycle,
    Schedule,
    ScheduleLR,
    WarmupCosine,
    WarmupLinear,
    resolve_schedule,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _sgd(*lrs: float) -> torch.optim.SGD:
    """SGD on a tiny linear layer: one param group per lr (weight, then bias)."""
    layer = nn.Linear(2, 1)
    if len(lrs) == 1:
        return torch.optim.SGD(layer.parameters(), lr=lrs[0])
    return torch.optim.SGD([{"params": [layer.weight], "lr": lrs[0]}, {"params": [layer.bias], "lr": lrs[1]}])


def _run(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, updates: int,
         group: int = 0) -> list[float]:
    """The lr each of ``updates`` real optimizer updates uses, stepping the scheduler after each."""
    layer_params = [p for g in optimizer.param_groups for p in g["params"]]
    lrs = []
    for _ in range(updates):
        optimizer.zero_grad()
        sum(p.sum() for p in layer_params).backward()
        lrs.append(float(optimizer.param_groups[group]["lr"]))
        optimizer.step()
        scheduler.step()
    return lrs


def _drive(schedule: Schedule, total: int, *lrs: float, group: int = 0) -> tuple[list[float], float]:
    """The lr of every update of a bound run, and the lr the optimizer shows after it."""
    optimizer = _sgd(*lrs)
    used = _run(optimizer, schedule.bind(optimizer, total), total, group)
    return used, optimizer.param_groups[group]["lr"]


# The closed forms, written out from the definitions in the module docstring.

def _warmup_then(update: int, total: int, warmup: int, peak: float, end: float, shape: str) -> float:
    warmup = min(warmup, total - 1)
    if update >= total - 1:
        return end
    if update < warmup:
        return peak * (update + 1) / (warmup + 1)
    fraction = (update - warmup) / (total - 1 - warmup)
    if shape == "cos":
        return end + (peak - end) * (1 + math.cos(math.pi * fraction)) / 2
    if shape == "linear":
        return peak - (peak - end) * fraction
    return peak


def _one_cycle(update: int, total: int, peak: float, pct: float, div: float, final_div: float) -> float:
    start, end = peak / div, peak / div / final_div
    top = round(pct * total) - 1
    if update < top:
        return _cos_between(start, peak, update / top)
    return _cos_between(peak, end, min((update - top) / (total - 1 - top), 1.0))


def _cos_between(start: float, stop: float, fraction: float) -> float:
    return stop + (start - stop) * (1 + math.cos(math.pi * fraction)) / 2


def _increasing(values: list[float]) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


def _non_increasing(values: list[float]) -> bool:
    return all(a >= b for a, b in zip(values, values[1:], strict=False))


# --- closed forms -------------------------------------------------------------

def test_warmup_cosine_follows_its_closed_form():
    lrs, after = _drive(WarmupCosine(warmup=4, min_lr=0.01), 20, 0.1)
    expected = [_warmup_then(u, 20, 4, 0.1, 0.01, "cos") for u in range(20)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=0)
    assert lrs[0] == pytest.approx(0.1 / 5, rel=1e-12)
    assert lrs[4] == 0.1 and lrs[-1] == 0.01 and after == 0.01
    assert _increasing(lrs[:5]) and _non_increasing(lrs[4:])


def test_warmup_cosine_small_case_by_hand():
    lrs, _ = _drive(WarmupCosine(warmup=2), 6, 1.0)
    assert lrs == pytest.approx([1 / 3, 2 / 3, 1.0, 0.75, 0.25, 0.0], abs=1e-12)


def test_warmup_fraction_rounds_half_up_to_updates():
    assert _drive(WarmupCosine(warmup=0.2), 20, 0.1)[0] == _drive(WarmupCosine(warmup=4), 20, 0.1)[0]
    lrs, _ = _drive(WarmupLinear(warmup=0.25), 10, 1.0)  # 2.5 updates -> 3
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0], abs=1e-12)


def test_warmup_linear_follows_its_closed_form():
    lrs, after = _drive(WarmupLinear(warmup=3, end_lr=0.02), 11, 0.2)
    expected = [_warmup_then(u, 11, 3, 0.2, 0.02, "linear") for u in range(11)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=0)
    assert lrs[:4] == pytest.approx([0.05, 0.1, 0.15, 0.2], rel=1e-12)
    assert lrs[3] == 0.2 and lrs[-1] == 0.02 and after == 0.02
    steps = [a - b for a, b in zip(lrs[3:], lrs[4:], strict=False)]
    assert steps == pytest.approx([0.18 / 7] * 7, rel=1e-9)


def test_constant_with_warmup_follows_its_closed_form():
    lrs, after = _drive(ConstantWithWarmup(warmup=3), 8, 0.2)
    assert lrs == pytest.approx([0.05, 0.1, 0.15] + [0.2] * 5, rel=1e-12)
    assert lrs[3:] == [0.2] * 5 and after == 0.2
    assert ConstantWithWarmup().warmup == 0.1


def test_one_cycle_follows_its_closed_form():
    lrs, after = _drive(OneCycle(max_lr=1.0, pct_start=0.3, div_factor=10.0, final_div_factor=100.0), 20, 0.1)
    expected = [_one_cycle(u, 20, 1.0, 0.3, 10.0, 100.0) for u in range(20)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=0)
    assert lrs[0] == pytest.approx(0.1, rel=1e-12) and lrs[5] == 1.0
    assert lrs[-1] == pytest.approx(0.001, rel=1e-12) and after == lrs[-1]
    assert _increasing(lrs[:6]) and _non_increasing(lrs[5:])


def _torch_one_cycle(total: int, max_lr: float, **kwargs) -> list[float]:
    optimizer = _sgd(0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, three_phase=False,
                                                    cycle_momentum=False, **kwargs)
    return _run(optimizer, scheduler, total)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize(("total", "pct_start"), [(20, 0.3), (100, 0.25), (7, 3 / 7), (1, 0.3), (4, 0.5)])
def test_one_cycle_equals_torch_when_the_peak_is_on_an_update(anneal, total, pct_start):
    ours, _ = _drive(OneCycle(max_lr=0.5, pct_start=pct_start, anneal=anneal), total, 0.1)
    theirs = _torch_one_cycle(total, 0.5, pct_start=pct_start, anneal_strategy=anneal)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-15)


def test_one_cycle_with_its_peak_on_the_first_update_works_where_torch_divides_by_zero():
    assert _drive(OneCycle(max_lr=1.0, pct_start=0.5), 2, 0.1)[0] == pytest.approx([1.0, 1.0 / 25 / 1e4])
    lrs, _ = _drive(OneCycle(max_lr=1.0, pct_start=0.0, anneal="linear"), 5, 0.1)
    assert lrs == pytest.approx([1.0 - (1.0 - 4e-6) * u / 4 for u in range(5)], rel=1e-12)
    with pytest.raises(ZeroDivisionError):
        _torch_one_cycle(2, 1.0, pct_start=0.5)


def test_one_cycle_without_max_lr_peaks_at_each_groups_lr():
    ours, _ = _drive(OneCycle(pct_start=0.3), 20, 0.1, 0.02, group=1)
    optimizer = _sgd(0.1, 0.02)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[0.1, 0.02], total_steps=20,
                                                    three_phase=False, cycle_momentum=False)
    assert ours == pytest.approx(_run(optimizer, scheduler, 20, group=1), rel=1e-9)
    assert max(ours) == 0.02


def test_one_cycle_rounds_a_fractional_peak_to_an_update_where_torch_does_not():
    """Deliberate difference: pct_start * total = 2.5; this preset peaks on update 2, torch between 1 and 2."""
    ours, _ = _drive(OneCycle(max_lr=1.0, pct_start=0.25), 10, 0.1)
    theirs = _torch_one_cycle(10, 1.0, pct_start=0.25)
    assert ours[2] == 1.0 and max(theirs) < 1.0
    assert ours[0] == pytest.approx(theirs[0]) and ours[-1] == pytest.approx(theirs[-1])


# --- param groups, rebinding, edges --------------------------------------------

def test_each_param_group_scales_its_own_lr():
    first, _ = _drive(WarmupLinear(warmup=2), 6, 0.1, 0.01, group=0)
    second, _ = _drive(WarmupLinear(warmup=2), 6, 0.1, 0.01, group=1)
    assert first == pytest.approx([10 * lr for lr in second], rel=1e-12)
    assert first[2] == 0.1 and second[2] == 0.01


def test_one_cycle_max_lr_is_the_peak_of_every_group():
    for group in (0, 1):
        lrs, _ = _drive(OneCycle(max_lr=0.5, pct_start=0.5), 10, 0.1, 0.01, group=group)
        assert lrs[4] == 0.5 and lrs[0] == pytest.approx(0.5 / 25)


def test_binding_again_starts_from_the_original_lrs():
    optimizer = _sgd(0.1, 0.01)
    _run(optimizer, WarmupCosine(warmup=2, min_lr=0.001).bind(optimizer, 8), 8)
    assert [g["lr"] for g in optimizer.param_groups] == [0.001, 0.001]
    scheduler = ConstantWithWarmup(warmup=1).bind(optimizer, 4)
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.005]
    assert _run(optimizer, scheduler, 4) == pytest.approx([0.05, 0.1, 0.1, 0.1])


def test_a_one_update_run_uses_the_end_value():
    assert _drive(WarmupCosine(warmup=0.5, min_lr=0.01), 1, 0.1) == ([0.01], 0.01)
    assert _drive(ConstantWithWarmup(warmup=5), 1, 0.1) == ([0.1], 0.1)
    assert _drive(OneCycle(max_lr=1.0), 1, 0.1)[0] == pytest.approx([1.0 / 25 / 1e4])


def test_a_warmup_longer_than_the_run_is_clipped_to_total_minus_one():
    lrs, _ = _drive(WarmupLinear(warmup=10, end_lr=0.0), 4, 1.0)
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 0.0])
    lrs, _ = _drive(ConstantWithWarmup(warmup=100), 3, 1.0)
    assert lrs == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_steps_past_the_total_stay_at_the_end_value():
    optimizer = _sgd(0.1)
    lrs = _run(optimizer, WarmupLinear(warmup=1, end_lr=0.01).bind(optimizer, 5), 9)
    assert lrs[4:] == [0.01] * 5
    assert WarmupCosine(min_lr=0.5).lr_at(100, 10, base_lr=1.0) == 0.5


def test_a_tensor_lr_is_updated_in_place():
    layer = nn.Linear(2, 1)
    optimizer = torch.optim.Adam(layer.parameters(), lr=torch.tensor(0.01), foreach=False)
    lr_tensor = optimizer.param_groups[0]["lr"]
    lrs = _run(optimizer, WarmupLinear(warmup=1).bind(optimizer, 3), 3)
    assert lrs == pytest.approx([0.005, 0.01, 0.0]) and optimizer.param_groups[0]["lr"] is lr_tensor


def test_presets_have_useful_reprs():
    assert repr(WarmupCosine(warmup=0.1, min_lr=0.0)) == "WarmupCosine(warmup=0.1, min_lr=0.0)"
    assert repr(WarmupLinear(warmup=500, end_lr=1e-6)) == "WarmupLinear(warmup=500, end_lr=1e-06)"
    assert repr(ConstantWithWarmup(warmup=3)) == "ConstantWithWarmup(warmup=3)"
    assert repr(OneCycle(max_lr=0.01)) == ("OneCycle(max_lr=0.01, pct_start=0.3, div_factor=25.0, "
                                           "final_div_factor=10000.0, anneal='cos')")


# --- resume -----------------------------------------------------------------

def test_state_dict_round_trip_mid_schedule_continues_identically(tmp_path):
    schedule = WarmupCosine(warmup=0.2, min_lr=1e-3)
    uninterrupted, _ = _drive(schedule, 20, 0.1)
    optimizer = _sgd(0.1)
    scheduler = schedule.bind(optimizer, 20)
    first = _run(optimizer, scheduler, 7)
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "state.pt")

    state = torch.load(tmp_path / "state.pt", weights_only=True)
    fresh_optimizer = _sgd(0.1)
    fresh_optimizer.load_state_dict(state["optimizer"])
    fresh = schedule.bind(fresh_optimizer, 20)
    fresh.load_state_dict(state["scheduler"])
    assert first + _run(fresh_optimizer, fresh, 13) == uninterrupted


def test_loading_restores_the_total_and_sets_the_optimizers_lr(tmp_path):
    schedule = WarmupLinear(warmup=2, end_lr=0.0)
    optimizer = _sgd(0.1)
    scheduler = schedule.bind(optimizer, 20)
    _run(optimizer, scheduler, 7)
    torch.save(scheduler.state_dict(), tmp_path / "scheduler.pt")
    fresh_optimizer = _sgd(0.1)
    fresh = schedule.bind(fresh_optimizer, 99)
    fresh.load_state_dict(torch.load(tmp_path / "scheduler.pt", weights_only=True))
    assert fresh.total == 20 and fresh.last_epoch == 7
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(_warmup_then(7, 20, 2, 0.1, 0.0, "linear"))
    assert fresh.get_last_lr() == [fresh_optimizer.param_groups[0]["lr"]]


def test_loading_another_schedules_state_raises():
    optimizer = _sgd(0.1)
    state = WarmupCosine(warmup=2).bind(optimizer, 10).state_dict()
    other = WarmupCosine(warmup=3).bind(_sgd(0.1), 10)
    with pytest.raises(ValueError, match=re.escape("The saved schedule is WarmupCosine(warmup=2, min_lr=0.0), "
                                                   "this one is WarmupCosine(warmup=3, min_lr=0.0)")):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match=re.escape("it lacks ['base_lrs', 'total']")):
        other.load_state_dict({"schedule": "x", "last_epoch": 3})


# --- bad arguments ------------------------------------------------------------

@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: WarmupCosine(warmup=-1), ValueError,
     "`warmup` must be >= 0 optimizer updates. Received: warmup=-1. E.g. warmup=500, or a fraction"),
    (lambda: WarmupLinear(warmup=1.0), ValueError,
     "`warmup` as a float is a fraction of the total updates and must be in [0, 1). Received: warmup=1.0. "
     "E.g. warmup=0.05, or an int such as warmup=500."),
    (lambda: ConstantWithWarmup(warmup="10"), TypeError,
     "`warmup` must be an int number of optimizer updates or a float fraction of the total. "
     "Received: warmup='10' (str)."),
    (lambda: ConstantWithWarmup(warmup=True), TypeError, "Received: warmup=True (bool)"),
    (lambda: WarmupCosine(min_lr=-0.1), ValueError,
     "`min_lr` must be a number >= 0. Received: min_lr=-0.1. E.g. min_lr=1e-6."),
    (lambda: WarmupLinear(end_lr=float("nan")), ValueError, "`end_lr` must be a number >= 0. Received: end_lr=nan."),
    (lambda: OneCycle(max_lr=0), ValueError,
     "`max_lr` must be None (each param group's lr is the peak) or a number > 0. Received: max_lr=0."),
    (lambda: OneCycle(pct_start=1.0), ValueError,
     "`pct_start` must be in [0, 1): the fraction of the updates spent rising to the peak. "
     "Received: pct_start=1.0. E.g. pct_start=0.3."),
    (lambda: OneCycle(div_factor=0), ValueError,
     "`div_factor` must be a number > 0. Received: div_factor=0. E.g. div_factor=25.0."),
    (lambda: OneCycle(final_div_factor=-1.0), ValueError, "`final_div_factor` must be a number > 0."),
    (lambda: OneCycle(anneal="exp"), ValueError, "`anneal` must be 'cos' or 'linear'. Received: anneal='exp'."),
    (lambda: WarmupCosine().bind(_sgd(0.1), 0), ValueError,
     "`total` must be an int >= 1: the number of optimizer updates of the run. Received: total=0."),
    (lambda: WarmupCosine().bind(_sgd(0.1), 2.5), ValueError, "Received: total=2.5."),
    (lambda: WarmupCosine().lr_at(-1, 10, 0.1), ValueError,
     "`update` must be an int >= 0 (a 0-based optimizer update). Received: update=-1."),
    (lambda: WarmupCosine().bind("adam", 10), TypeError,
     "`optimizer` must be a torch.optim.Optimizer. Received: str."),
    (lambda: ScheduleLR(_sgd(0.1), "warmup_cosine", 10), TypeError,
     "`schedule` must be a kerastorch.schedules preset, e.g. WarmupCosine(warmup=0.1). Received: str."),
])
def test_bad_arguments_raise_with_the_fix(make, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make()


def test_an_end_lr_above_a_groups_lr_raises_before_touching_the_optimizer():
    optimizer = _sgd(0.1, 0.01)
    with pytest.raises(ValueError, match=re.escape(
            "`min_lr` must not exceed the optimizer's learning rate, or the decay would rise. "
            "Received: min_lr=0.05 with param group 1's lr=0.01. E.g. min_lr=0.0, or raise the optimizer's lr.")):
        WarmupCosine(min_lr=0.05).bind(optimizer, 10)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.01]
    assert all("initial_lr" not in g for g in optimizer.param_groups)
    with pytest.raises(ValueError, match=re.escape("`end_lr` must not exceed")):
        WarmupLinear(end_lr=0.05).bind(optimizer, 10)


# --- resolve_schedule -----------------------------------------------------------

@pytest.mark.parametrize(("name", "preset"), [
    ("one_cycle", OneCycle), ("warmup_cosine", WarmupCosine), ("warmup_linear", WarmupLinear),
    ("constant_with_warmup", ConstantWithWarmup), ("Warmup_Cosine", WarmupCosine), ("ONE_CYCLE", OneCycle),
])
def test_resolve_schedule_names_give_presets_with_defaults(name, preset):
    resolved = resolve_schedule(name)
    assert type(resolved) is preset and repr(resolved) == repr(preset())


def test_resolve_schedule_passes_instances_and_leaves_the_rest():
    schedule = WarmupLinear(warmup=3)
    assert resolve_schedule(schedule) is schedule
    optimizer = _sgd(0.1)
    assert resolve_schedule(torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)) is None
    assert resolve_schedule(lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2)) is None
    assert resolve_schedule(None) is None


def test_resolve_schedule_rejects_an_unknown_name():
    with pytest.raises(ValueError, match=re.escape(
            "Unknown `lr_scheduler` name: 'cosine'. Valid names: 'one_cycle', 'warmup_cosine', 'warmup_linear', "
            "'constant_with_warmup'; or pass a kt.schedules preset")):
        resolve_schedule("cosine")
