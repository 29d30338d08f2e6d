"""Timing harness shared by the benchmarks: CLI, interleaved rounds, tables, JSON.

Method (the same in every script):

* every contender is a :class:`Contender` whose ``run(epochs)`` trains its own
  copy of the model for ``epochs`` epochs and returns a :class:`Timing`;
* each contender is warmed up with one epoch, then the contenders run in
  ``rounds`` interleaved rounds, each in a fresh random order (seeded, so a
  rerun uses the same orders): no contender always runs first, or always
  right after the same other one (measured: with a fixed cyclic order, the
  MLP's kerastorch/hand ratio was 1.23 in rounds where kerastorch ran first
  and 0.96 where it ran last);
* a round's sample is microseconds per training step; the tables show the
  median and the minimum over rounds, and their ratios to a baseline row.

On Linux the scripts re-run themselves with glibc malloc's thresholds fixed
(:func:`warm_heap`; ``--system-malloc`` turns it off), so that no contender
pays for page faults that depend on the heap layout others left behind.

Medians of interleaved rounds resist the noise of a shared machine: a burst of
load from another process slows whichever contender is running and lands in
one round's sample, not in one contender's total.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

try:
    import resource
except ImportError:  # Windows has no resource module
    resource = None  # type: ignore[assignment]

import torch
from torch.utils._python_dispatch import TorchDispatchMode


@dataclass
class Timing:
    """One ``Contender.run``: wall seconds of the whole call and of each epoch, minor page faults."""

    total: float
    epochs: list[float] = field(default_factory=list)
    page_faults: int = 0


def minor_page_faults() -> int:
    """This process's minor page faults so far (0 where ``resource`` is missing, e.g. Windows)."""
    if resource is None:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class Contender:
    """Something that trains a model; subclasses implement :meth:`run`."""

    def __init__(self, name: str, steps_per_epoch: int) -> None:
        self.name = name
        self.steps_per_epoch = steps_per_epoch
        self.final: dict[str, float] = {}  # last epoch's logs (loss, metric), a sanity check

    def run(self, epochs: int) -> Timing:
        raise NotImplementedError


def base_parser(description: str, rounds: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=rounds,
                        help=f"interleaved timing rounds per workload (default {rounds})")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per contender per round (default: per workload)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings: a smoke test that the script runs, not a measurement")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default 1: steadier on a shared machine)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--system-malloc", action="store_true",
                        help="keep glibc malloc's default, adaptive thresholds (see warm_heap)")
    return parser


# glibc malloc: no memory handed back to the OS when freed (trim), and one fixed size (32 MiB, its
# maximum) above which blocks are mmap-ed, instead of thresholds that adapt to what was freed last.
WARM_HEAP_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 40), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}


def warm_heap(args: argparse.Namespace) -> None:
    """Re-run this script with :data:`WARM_HEAP_ENV` set (Linux, unless ``--system-malloc``).

    Why: with glibc's defaults, whether the activations a CPU training step
    frees are handed back to the OS (and page-faulted in again, zero-filled,
    by the next step) depends on the heap's layout at that moment, i.e. on
    what ran before in the process. Measured on ResNet-18 (batch 64): 0 or
    about 27,000 minor page faults per step, 10-20% of a step's time, and it
    flips between contenders and rounds by chance. With the heap kept warm,
    every contender runs without page faults and the table compares the
    frameworks, not the heap's luck. The ``faults/step`` column shows it.
    (For real CPU training the same variables, or jemalloc/tcmalloc via
    ``LD_PRELOAD``, help any framework alike.)
    """
    if args.system_malloc or platform.system() != "Linux":
        return
    if all(os.environ.get(key) == value for key, value in WARM_HEAP_ENV.items()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WARM_HEAP_ENV})


def setup(args: argparse.Namespace) -> None:
    """Apply the heap settings (:func:`warm_heap`), ``--threads`` and ``--quick``; print the settings line."""
    warm_heap(args)
    if args.quick:
        args.rounds = min(args.rounds, 2)
        args.epochs = 1
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs visible, torch.set_num_threads({args.threads}); "
          f"--rounds {args.rounds} (interleaved), median and min over rounds"
          + ("; glibc malloc defaults" if args.system_malloc else "; warm heap (MALLOC_*_THRESHOLD_ set)")
          + (" [--quick: smoke test, numbers mean nothing]" if args.quick else ""))
    sys.stdout.flush()


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(contenders: Sequence[Contender], threads: int,
            failures: list[str] | None = None) -> list[Contender]:
    """One epoch each. With a ``failures`` list, a contender that raises is dropped and noted."""
    ready = []
    for contender in contenders:
        torch.set_num_threads(threads)
        try:
            contender.run(1)
        except Exception as err:  # noqa: BLE001 - reported, and the other contenders still run
            if failures is None:
                raise
            failures.append(f"{contender.name}: failed in warm-up ({type(err).__name__}: {str(err)[:200]})")
            continue
        ready.append(contender)
    return ready


ORDER_SEED = 20261123  # the rounds' contender orders: the same in every run of a script


def interleave(contenders: Sequence[Contender], rounds: int, epochs: int, threads: int,
               failures: list[str] | None = None) -> dict[str, list[Timing]]:
    """Warm up each contender (one epoch), then run ``rounds`` rounds of ``epochs`` epochs each.

    Each round runs every contender once, in a random order drawn from a
    seeded generator. A contender whose warm-up raises is dropped (see
    :func:`warm_up`) when ``failures`` is a list.
    """
    contenders = warm_up(contenders, threads, failures)
    timings: dict[str, list[Timing]] = {c.name: [] for c in contenders}
    orders = random.Random(ORDER_SEED)
    for _ in range(rounds):
        for contender in orders.sample(contenders, len(contenders)):
            torch.set_num_threads(threads)  # a framework may have changed it
            gc.collect()
            faults = minor_page_faults()
            timing = contender.run(epochs)
            timing.page_faults = minor_page_faults() - faults
            timings[contender.name].append(timing)
        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return timings


class _AtenOpCounter(TorchDispatchMode):
    """Counts every aten operator call that reaches the dispatcher (any device)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _count_python_calls(run: Callable[[], Any]) -> int:
    calls = 0

    def profiler(frame, event, arg):
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profiler)
    try:
        run()
    finally:
        sys.setprofile(None)
    return calls


def _count_aten_ops(run: Callable[[], Any]) -> int:
    with _AtenOpCounter() as counter:
        run()
    return counter.count


def work_per_step(contender: Contender) -> dict[str, float]:
    """Python function calls and aten operator calls per training step: noise-free overhead.

    Wall time on a shared machine drifts; counts do not. Each count is taken
    for a 2-epoch call minus a 1-epoch call, which leaves one epoch's work
    without what a call does once (building a Trainer, set-up, teardown).
    """
    counts = {}
    for key, count in (("python_calls_per_step", _count_python_calls), ("aten_ops_per_step", _count_aten_ops)):
        one, two = count(lambda: contender.run(1)), count(lambda: contender.run(2))
        counts[key] = (two - one) / contender.steps_per_epoch
    return counts


def whole_call(contender: Contender, timing: Timing, epochs: int) -> float:
    """us/step from the whole call: what the user waits for, fixed per-call costs included."""
    return timing.total * 1e6 / (epochs * contender.steps_per_epoch)


def epochs_only(contender: Contender, timing: Timing, epochs: int) -> float:
    """us/step from the epochs alone (per-call set-up excluded)."""
    return sum(timing.epochs) * 1e6 / (len(timing.epochs) * contender.steps_per_epoch)


@dataclass
class Row:
    """One line of a results table."""

    workload: str
    contender: str
    samples: list[float]
    baseline: Row | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def minimum(self) -> float:
        return min(self.samples)

    @property
    def ratio(self) -> float:
        return self.median / self.baseline.median if self.baseline else 1.0

    @property
    def ratio_min(self) -> float:
        return self.minimum / self.baseline.minimum if self.baseline else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"workload": self.workload, "contender": self.contender,
                "us_per_step_median": round(self.median, 2), "us_per_step_min": round(self.minimum, 2),
                "ratio_median": round(self.ratio, 4), "ratio_min": round(self.ratio_min, 4),
                "baseline": self.baseline.contender if self.baseline else None,
                "samples_us_per_step": [round(s, 2) for s in self.samples], **self.extra}


def rows_for(workload: str, contenders: Sequence[Contender], timings: dict[str, list[Timing]],
             epochs: int, baseline: str, per_step: Callable[[Contender, Timing, int], float]) -> list[Row]:
    """Table rows in contender order, each with its ratio to the ``baseline`` contender."""
    rows = []
    for contender in (c for c in contenders if c.name in timings):  # dropped ones are left out
        runs = timings[contender.name]
        rows.append(Row(workload, contender.name, [per_step(contender, t, epochs) for t in runs],
                        extra={"final": contender.final, "steps_per_round": epochs * contender.steps_per_epoch,
                               "page_faults_per_step": statistics.median(
                                   t.page_faults / (epochs * contender.steps_per_epoch) for t in runs),
                               "call_seconds": [round(t.total, 6) for t in runs],
                               "epoch_seconds": [[round(e, 6) for e in t.epochs] for t in runs]}))
    base = next(row for row in rows if row.contender == baseline)
    for row in rows:
        row.baseline = base
    return rows


def race(workload, contenders: Sequence[Contender], args: argparse.Namespace, baseline: str) -> list[Row]:
    """Announce a workload, interleave its contenders' rounds, and return its table rows."""
    epochs = args.epochs or workload.epochs
    print(f"# {workload.name}: {len(workload.x)} samples, batch {workload.batch_size}, "
          f"{workload.steps_per_epoch} steps/epoch, {epochs} epoch(s) per round", file=sys.stderr)
    timings = interleave(contenders, args.rounds, epochs, args.threads)
    return rows_for(workload.name, contenders, timings, epochs, baseline, whole_call)


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def print_table(headers: Sequence[str], lines: Sequence[Sequence[str]]) -> None:
    """A markdown table, columns padded for reading in a terminal too."""
    widths = [max(len(str(h)), *(len(str(line[i])) for line in lines)) for i, h in enumerate(headers)]
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        cells = [str(c).rjust(w) if i >= 2 else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(line, widths, strict=False))]
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


def final_text(final: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in final.items()) if final else "-"


def print_rows(rows: Sequence[Row], baseline_label: str,
               extra_columns: Sequence[tuple[str, Callable[[Row], str]]] = ()) -> None:
    """The results table; ``extra_columns`` are ``(header, row -> text)`` before the last column."""
    headers = ["workload", "contender", "us/step (median)", "us/step (min)",
               f"x {baseline_label} (median)", f"x {baseline_label} (min)",
               *(name for name, _ in extra_columns), "last epoch"]
    lines = [[r.workload, r.contender, fmt(r.median), fmt(r.minimum), f"{r.ratio:.3f}",
              f"{r.ratio_min:.3f}", *(fn(r) for _, fn in extra_columns), final_text(r.extra["final"])]
             for r in rows]
    print_table(headers, lines)


@dataclass
class Target:
    """A PASS/FAIL check printed under the tables."""

    description: str
    value: float
    limit: float
    passed: bool

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.description}: {self.value:.3f}x (limit {self.limit:.2f}x)"


def paired_ratios(row: Row, reference: Row) -> list[float]:
    """Per round, ``row``'s sample over ``reference``'s sample from the same round.

    Both ran back to back in each round, so a slow spell of a shared machine
    that lasts a round mostly cancels out of the ratio, which it does not from
    the ratio of two medians taken over different rounds.
    """
    return [mine / theirs for mine, theirs in zip(row.samples, reference.samples, strict=False)]


def sign_test_p(wins: int, rounds: int) -> float:
    """One-sided sign test: the chance of ``wins`` or more wins in ``rounds`` coin flips."""
    return sum(math.comb(rounds, k) for k in range(wins, rounds + 1)) / 2 ** rounds


@dataclass
class Comparison:
    """``row`` against ``reference`` round by round: paired median ratio and rounds won."""

    row: Row
    reference: Row

    @property
    def ratios(self) -> list[float]:
        return paired_ratios(self.row, self.reference)

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def wins(self) -> int:
        return sum(ratio < 1.0 for ratio in self.ratios)

    @property
    def p_value(self) -> float:
        return sign_test_p(self.wins, len(self.ratios))

    def text(self) -> str:
        return (f"{self.median:.3f}x paired median, faster in {self.wins}/{len(self.ratios)} rounds "
                f"(sign test p={self.p_value:.3g})")


def paired_target(description: str, comparison: Comparison, limit: float, strict: bool = False) -> Target:
    """The paired median ratio of ``comparison`` at most ``limit`` (below it when ``strict``)."""
    value = comparison.median
    passed = value < limit if strict else value <= limit
    return Target(f"{description} [{comparison.text()}]", value, limit, passed)


def report(script: str, args: argparse.Namespace, rows: Sequence[Row], baseline_label: str,
           targets: Sequence[Target], notes: Sequence[str] = ()) -> None:
    """The end of a benchmark script: the table, the notes, the PASS/FAIL lines, the JSON."""
    print()
    print_rows(rows, baseline_label)
    print()
    for note in notes:
        print(f"# {note}")
    for target in targets:
        print(target.line())
    write_json(args.json, script, args, rows, targets, notes)


def write_json(path: str | None, script: str, args: argparse.Namespace, rows: Sequence[Row],
               targets: Sequence[Target] = (), notes: Sequence[str] = ()) -> None:
    if not path:
        return
    payload = {
        "script": script,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {"rounds": args.rounds, "epochs": args.epochs, "threads": args.threads,
                     "quick": args.quick, "torch": torch.__version__,
                     "python": platform.python_version(), "cpus": os.cpu_count(),
                     **{k: v for k, v in vars(args).items() if k not in ("json",)}},
        "results": [row.as_dict() for row in rows],
        "targets": [vars(t) for t in targets],
        "notes": list(notes),
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
    print(f"# wrote {path}")
