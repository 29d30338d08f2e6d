"""The benchmark harness's statistics and counters (benchmarks/_harness.py), with known answers."""
from __future__ import annotations

import argparse
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import _harness  # noqa: E402
from _harness import Comparison, Contender, Row, Timing, paired_target, sign_test_p, work_per_step  # noqa: E402


def test_sign_test_p_values():
    assert sign_test_p(6, 6) == 1 / 64
    assert sign_test_p(3, 4) == 5 / 16  # P(3 or 4 heads of 4) = (4 + 1) / 16
    assert sign_test_p(0, 11) == 1.0


def test_comparison_pairs_samples_round_by_round():
    # The medians alone say 1.0x; round by round, ours is faster in 3 of 4 rounds.
    ours = Row("w", "ours", [9.0, 18.0, 27.0, 50.0])
    theirs = Row("w", "theirs", [10.0, 20.0, 30.0, 40.0])
    comparison = Comparison(ours, theirs)
    assert comparison.ratios == [0.9, 0.9, 0.9, 1.25]
    assert comparison.median == pytest.approx(0.9)
    assert comparison.wins == 3
    target = paired_target("ours faster", comparison, 1.0, strict=True)
    assert target.passed and target.value == pytest.approx(0.9)
    assert "faster in 3/4 rounds (sign test p=0.312)" in target.line()


class Counted(Contender):
    """Per call: 5 set-up aten ops; per epoch: 2 steps of 3 aten ops and 4 Python calls each."""

    def __init__(self):
        super().__init__("counted", steps_per_epoch=2)

    @staticmethod
    def python_call():
        return None

    def run(self, epochs):
        x = torch.ones(3)
        for _ in range(5):
            x = x + 1
        for _ in range(epochs * self.steps_per_epoch):
            for _ in range(4):
                self.python_call()
            x = (x * 2).sub(1).abs()
        return Timing(0.0, [0.0] * epochs)


def test_work_per_step_counts_one_epoch_without_the_per_call_work():
    counts = work_per_step(Counted())
    assert counts["aten_ops_per_step"] == 3
    # 4 calls of python_call, plus the two tensor methods called from Python (sub, abs) per step
    assert counts["python_calls_per_step"] == 6


def parsed(*argv):
    return _harness.base_parser("test", rounds=3).parse_args(list(argv))


def test_warm_heap_re_executes_the_script_once_with_the_malloc_settings(monkeypatch):
    calls = []
    monkeypatch.setattr(_harness.platform, "system", lambda: "Linux")
    monkeypatch.setattr(_harness.os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    for key in _harness.WARM_HEAP_ENV:
        monkeypatch.delenv(key, raising=False)
    _harness.warm_heap(parsed())
    assert len(calls) == 1
    path, argv, env = calls[0]
    assert path == sys.executable and argv == [sys.executable, *sys.argv]
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(1 << 40) and env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)

    for key, value in _harness.WARM_HEAP_ENV.items():  # the re-executed process goes on
        monkeypatch.setenv(key, value)
    _harness.warm_heap(parsed())
    assert len(calls) == 1


def test_warm_heap_is_off_with_system_malloc(monkeypatch):
    monkeypatch.setattr(_harness.os, "execve", lambda *args: pytest.fail("must not re-execute"))
    for key in _harness.WARM_HEAP_ENV:
        monkeypatch.delenv(key, raising=False)
    args = parsed("--system-malloc")
    assert isinstance(args, argparse.Namespace) and args.system_malloc
    _harness.warm_heap(args)


class Logged(Contender):
    """Appends its name to a shared log on every run."""

    def __init__(self, name, log):
        super().__init__(name, steps_per_epoch=1)
        self.log = log

    def run(self, epochs):
        self.log.append(self.name)
        return Timing(0.0, [0.0] * epochs)


def test_interleave_runs_each_contender_once_per_round_in_varying_seeded_orders(monkeypatch):
    # The harness collects garbage before each timed run; in a suite process holding transformers, MLflow and
    # ONNX that is ~0.5 s a call (320 calls here), and this test is about the orders only.
    monkeypatch.setattr(_harness.gc, "collect", lambda *args: 0)

    def rounds_run():
        log = []
        racers = [Logged(name, log) for name in "ABCD"]
        timings = _harness.interleave(racers, rounds=40, epochs=1, threads=torch.get_num_threads())
        assert {name: len(runs) for name, runs in timings.items()} == {name: 40 for name in "ABCD"}
        assert log[:4] == list("ABCD")  # the warm-up epoch, in the given order
        return [tuple(log[i:i + 4]) for i in range(4, len(log), 4)]

    orders = rounds_run()
    assert all(sorted(order) == list("ABCD") for order in orders)
    assert len(set(orders)) > 12  # not a fixed or merely rotated order (24 orders exist)
    predecessors_of_a = {order[order.index("A") - 1] for order in orders if order[0] != "A"}
    assert predecessors_of_a == {"B", "C", "D"}
    assert rounds_run() == orders  # seeded: every run of a script uses the same orders


def test_gpu_check_says_when_there_is_no_cuda():
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: make gpu-check runs the real check")
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "gpu_check.py")
    done = subprocess.run([sys.executable, script, "--out", os.devnull], capture_output=True, text=True)
    assert done.returncode == 2
    assert "CUDA is not available on this machine; nothing was run." in done.stderr
