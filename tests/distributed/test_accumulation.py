"""Accumulation and schedule presets under torchrun: 2 ranks x accumulation 3 == 1 process x the global windows.

Each update's gradient is the gradient of the mean loss over the samples both ranks accumulated in that window
(windows of unequal sizes: 3 batches of 4 on each rank, then a short window of 2 + 1 samples), its lr is the
closed-form WarmupCosine of the run's 4 updates, and a run interrupted mid-epoch and resumed makes the same updates.
"""
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from test_torchrun import TORCHRUN, finish, free_port, run  # noqa: E402  (the folder is not on the test path)

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("accumulation_script.py")
TOTAL, BASE, MIN_LR, WARMUP = 4, 0.1, 0.01, 2


def closed_form(u):
    if u < WARMUP:
        return BASE * (u + 1) / (WARMUP + 1)
    if u >= TOTAL - 1:
        return MIN_LR
    return MIN_LR + (BASE - MIN_LR) * 0.5 * (1 + math.cos(math.pi * (u - WARMUP) / (TOTAL - 1 - WARMUP)))


def launch(out, mode):
    finish(run([*TORCHRUN, "--nproc_per_node=2", f"--master-port={free_port()}", str(SCRIPT), str(out), mode]))
    return [torch.load(out / f"{mode}_rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("accumulation")
    return {mode: launch(out, mode) for mode in ("whole", "interrupt", "resume")}


def test_each_update_has_the_gradient_of_both_ranks_window_and_the_closed_form_lr(runs):
    rank0, rank1 = runs["whole"]
    assert [u["lr"] for u in rank0["updates"]] == pytest.approx([closed_form(u) for u in range(TOTAL)], rel=1e-12)
    assert [len(w) for w in rank0["seen"]] == [3, 1, 3, 1] and [len(w) for w in rank1["seen"]] == [3, 1, 3, 1]
    assert [sum(len(x) for x, _ in w) for w in rank0["seen"]] == [12, 2, 12, 2]  # rank 1: 12, 1, 12, 1
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    reference.load_state_dict({k.removeprefix("body."): v for k, v in rank0["start_weights"].items()})
    for u, (ours, theirs, update) in enumerate(zip(rank0["seen"], rank1["seen"], rank0["updates"], strict=True)):
        x = torch.cat([b[0] for b in ours + theirs])
        y = torch.cat([b[1] for b in ours + theirs])
        reference.zero_grad()
        nn.functional.mse_loss(reference(x), y).backward()
        for got, parameter in zip(update["grads"], reference.parameters(), strict=True):
            torch.testing.assert_close(got, parameter.grad, rtol=0, atol=1e-12)
        with torch.no_grad():
            for parameter in reference.parameters():
                parameter -= closed_form(u) * parameter.grad
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(rank0["weights"][f"body.{key}"], value, rtol=0, atol=1e-12)
        assert torch.equal(rank0["weights"][f"body.{key}"], rank1["weights"][f"body.{key}"])


def test_a_mid_epoch_interrupt_and_resume_make_the_same_updates(runs):
    whole, interrupted, resumed = runs["whole"][0], runs["interrupt"][0], runs["resume"][0]
    assert len(interrupted["updates"]) == 3 and len(resumed["updates"]) == 1  # stopped after epoch 2's first window
    updates = interrupted["updates"] + resumed["updates"]
    assert [u["lr"] for u in updates] == [u["lr"] for u in whole["updates"]]
    for ours, theirs in zip(updates, whole["updates"], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(ours["grads"], theirs["grads"], strict=True))
    assert all(torch.equal(resumed["weights"][k], whole["weights"][k]) for k in whole["weights"])
