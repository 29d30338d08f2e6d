"""bench_predict_memory: the memory ``predict`` needs beyond its outputs, and its time.

What it measures
    ``nn.Linear(64, 512)`` over 200,000 samples of 64 features, batch 1000, in eval mode and
    ``torch.inference_mode``: the outputs are 200,000 x 512 float32, 391 MiB. Contenders:

    * ``kerastorch predict``   ``kt.Model.wrap(layer).predict(x, batch_size=1000)``: each batch's
      output copied into a buffer allocated at the first batch (kerastorch.engine.outputs).
    * ``kerastorch predict, previous join``   the same call with the collector replaced by the
      previous one: every batch's output kept, then ``torch.cat`` (the code before this change).
    * ``hand: list + torch.cat``   the previous behaviour by hand: a list of the batches'
      outputs, then ``torch.cat(outputs).cpu()``.
    * ``hand: preallocated buffer``   the limit: ``out[i:i + 1000].copy_(layer(x[i:i + 1000]))``
      into ``torch.empty(200_000, 512)`` (pinned on CUDA, non-blocking copies, one synchronize).

How it is measured
    One fresh process per contender, so that no contender's peak or heap is another's. In it:
    the data and the layer, one warm-up call on 2 batches (lazy initialisation), then
    ``--repeats`` calls, each with the result of the one before freed. Before each call the
    kernel's peak RSS (``VmHWM`` in ``/proc/self/status``) is reset to the current RSS by writing
    ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0), and the current RSS (``VmRSS``) is read;
    after the call ``VmHWM`` is read again. Peak RSS growth = VmHWM after - VmRSS before: what the
    call needed at its worst, the returned outputs included (so 1.00x the output size is the
    minimum). Where the reset is refused, only the first call is measured, against the peak so
    far. The table shows the largest growth over the calls (the first, in practice), its ratio to
    the output size, and the median seconds per call. glibc's malloc runs with its defaults
    (no ``warm_heap``): what users get. On ``--device cuda`` the peak CUDA memory growth
    (``torch.cuda.max_memory_allocated``, reset before each call) is shown too.

How to read it
    ``x outputs`` is peak RSS growth over the outputs' size. Targets, printed as PASS/FAIL:
    kerastorch predict <= 1.10x the outputs, and its median time <= 1.05x the previous join's
    (a shared machine's noise allowance; rerun when near it). The checksum column (sum of all
    outputs) must agree across contenders.

Usage
    python benchmarks/bench_predict_memory.py [--samples 200000] [--repeats 3] [--device cpu] [--json out.json]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import kerastorch as kt  # noqa: E402
from _harness import Target, print_table  # noqa: E402
from kerastorch.engine import predict as predict_engine  # noqa: E402

IN_FEATURES = 64
MIB = 1 << 20


# ----------------------------------------------------------------------------- the contenders
class PreviousJoin:
    """The collector predict used before: every batch's output kept where it was made, then one torch.cat."""

    def __init__(self, plan: Any) -> None:
        self.outputs: list[torch.Tensor] = []

    def add(self, output: torch.Tensor, index: int) -> None:
        self.outputs.append(output)

    def result(self) -> torch.Tensor:
        return torch.cat(self.outputs).cpu()


def kerastorch_predict(layer: nn.Module, device: torch.device, batch_size: int) -> Callable[[torch.Tensor], Any]:
    model = kt.Model.wrap(layer)
    return lambda x: model.predict(x, batch_size=batch_size)


def kerastorch_previous(layer: nn.Module, device: torch.device, batch_size: int) -> Callable[[torch.Tensor], Any]:
    predict_engine.OutputCollector = PreviousJoin  # type: ignore[misc,assignment]  # this process only
    return kerastorch_predict(layer, device, batch_size)


def hand_concatenate(layer: nn.Module, device: torch.device, batch_size: int) -> Callable[[torch.Tensor], Any]:
    def run(x: torch.Tensor) -> torch.Tensor:
        layer.eval()
        with torch.inference_mode():
            outputs = [layer(x[i:i + batch_size].to(device, non_blocking=True)) for i in range(0, len(x), batch_size)]
        return torch.cat(outputs).cpu()

    return run


def hand_buffer(layer: nn.Module, device: torch.device, batch_size: int) -> Callable[[torch.Tensor], Any]:
    def run(x: torch.Tensor) -> torch.Tensor:
        layer.eval()
        cuda = device.type == "cuda"
        out = torch.empty(len(x), layer.out_features, pin_memory=cuda)
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                out[i:i + batch_size].copy_(layer(x[i:i + batch_size].to(device, non_blocking=True)),
                                            non_blocking=cuda)
        if cuda:
            torch.cuda.synchronize(device)
        return out

    return run


CONTENDERS: dict[str, Callable[[nn.Module, torch.device, int], Callable[[torch.Tensor], Any]]] = {
    "kerastorch predict": kerastorch_predict,
    "kerastorch predict, previous join": kerastorch_previous,
    "hand: list + torch.cat": hand_concatenate,
    "hand: preallocated buffer": hand_buffer,
}


# ----------------------------------------------------------------------------- one contender, in its own process
def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def measure(run: Callable[[torch.Tensor], Any], x: torch.Tensor, repeats: int,
            device: torch.device) -> dict[str, Any]:
    """Seconds, peak RSS growth (and peak CUDA growth) of each call; the last result's checksum."""
    seconds, growth, cuda_growth, resets, checksum = [], [], [], [], 0.0
    for repeat in range(repeats):
        gc.collect()
        reset = reset_peak()
        if not reset and repeat:
            break  # the peak cannot be reset: only the first call is measured
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        before, cuda_before = status_kib("VmRSS"), torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        start = time.perf_counter()
        result = run(x)
        seconds.append(time.perf_counter() - start)
        growth.append((status_kib("VmHWM") - before) * 1024)
        if device.type == "cuda":
            cuda_growth.append(torch.cuda.max_memory_allocated(device) - cuda_before)
        resets.append(reset)
        checksum = result.sum(dtype=torch.float64).item()
        del result
    return {"seconds": seconds, "rss_growth_bytes": growth, "cuda_growth_bytes": cuda_growth,
            "hwm_reset": all(resets), "checksum": checksum}


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x = torch.randn(args.samples, IN_FEATURES, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    layer = nn.Linear(IN_FEATURES, args.width).to(device)
    run = CONTENDERS[args.child](layer, device, args.batch_size)
    run(x[:2 * args.batch_size])  # warm-up: kernels, allocators, kerastorch's first call
    print(json.dumps(measure(run, x, args.repeats, device)))


# ----------------------------------------------------------------------------- the parent: one process each
def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--child", name, "--samples", str(args.samples),
               "--width", str(args.width), "--batch-size", str(args.batch_size), "--repeats", str(args.repeats),
               "--threads", str(args.threads), "--device", args.device]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[Target]:
    size = args.samples * args.width * 4
    cuda = args.device == "cuda"
    headers = ["contender", "device", "seconds (median)", "peak RSS growth (MiB)", "x outputs",
               *(["peak CUDA growth (MiB)", "x outputs (CUDA)"] if cuda else []), "checksum"]
    lines = []
    for name, result in results.items():
        growth = max(result["rss_growth_bytes"])
        line = [name, args.device, f"{statistics.median(result['seconds']):.3f}", f"{growth / MIB:,.0f}",
                f"{growth / size:.2f}"]
        if cuda:
            line += [f"{max(result['cuda_growth_bytes']) / MIB:,.0f}", f"{max(result['cuda_growth_bytes']) / size:.2f}"]
        lines.append([*line, f"{result['checksum']:.6g}"])
    print(f"# outputs: {args.samples:,} x {args.width} float32 = {size / MIB:,.0f} MiB; batch {args.batch_size}; "
          f"{args.repeats} call(s) per process; VmHWM reset per call: "
          f"{all(r['hwm_reset'] for r in results.values())}")
    print_table(headers, lines)
    mine, before = results["kerastorch predict"], results["kerastorch predict, previous join"]
    ratio = max(mine["rss_growth_bytes"]) / size
    speed = statistics.median(mine["seconds"]) / statistics.median(before["seconds"])
    return [Target("kerastorch predict: peak RSS growth over the outputs' size", ratio, 1.10, ratio <= 1.10),
            Target("kerastorch predict: median seconds over the previous join's", speed, 1.05, speed <= 1.05)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=512, help="output features")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="calls per process (seconds: their median)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--child", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.path.exists("/proc/self/status"):
        sys.exit("bench_predict_memory reads /proc/self/status: Linux only.")
    if args.child:
        child(args)
        return
    print(f"# torch {torch.__version__}, torch.set_num_threads({args.threads}), one process per contender")
    results = {}
    for name in CONTENDERS:
        results[name] = run_child(name, args)
        print(f"# {name}: done", file=sys.stderr, flush=True)
    targets = report(results, args)
    for target in targets:
        print(target.line())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"script": "bench_predict_memory", "settings": vars(args), "results": results,
                       "targets": [vars(t) for t in targets]}, handle, indent=2)
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
