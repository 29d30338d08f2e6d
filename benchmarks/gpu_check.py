"""gpu_check: the project's whole GPU check in one command, within a fixed time budget.

What it runs (each step with its own time limit; about 12 minutes at most in all):

1. ``pytest tests/gpu`` and the CUDA-only tests elsewhere: no host-device sync inside a
   training step in fp32, bf16 and fp16 (``torch.cuda.set_sync_debug_mode("error")``),
   CUDA RNG states in checkpoints.
2. ``benchmarks/bench_peers.py --device cuda`` (a few rounds): the hand loop and kerastorch
   ``fit`` on the GPU, with the peers that are installed (``make bench`` installs them).
3. FSDP2 on 2 GPUs (nccl): ``tests/distributed/test_fsdp.py`` with its runs on the GPUs
   (``KT_FSDP_DEVICE=auto``: FSDP == DDP == one GPU, half the bytes per rank, checkpoints, kill -9
   and resume, bf16-mixed). With fewer than 2 GPUs the row is recorded as skipped.

It writes one results file (JSON; ``--out``, default ``gpu-check-results.json``) with the
machine, torch and CUDA versions, each step's command, exit code, duration and the tail of
its output, and exits non-zero when a step failed. Without CUDA it says so and exits 2.

Usage
    python benchmarks/gpu_check.py [--out gpu-check-results.json] [--rounds 3]
    make gpu-check
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAIL_CHARS = 6000


def steps(rounds: int, python: str) -> list[tuple[str, list[str] | None, int]]:
    """(name, command, time limit in seconds) of each step, in order; a None command is skipped."""
    pytest = [python, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=--import-mode=importlib -ra", "-q"]
    return [
        ("tests/gpu and CUDA-only tests", [*pytest, "tests/gpu", "tests/checkpointing/test_files.py",
                                           "tests/engine/test_no_host_reads.py"], 180),
        ("bench_peers --device cuda", [python, "benchmarks/bench_peers.py", "--device", "cuda",
                                       "--rounds", str(rounds)], 300),
        *fsdp_steps(pytest),
    ]


def fsdp_steps(pytest: list[str]) -> list[tuple[str, list[str] | None, int]]:
    """The FSDP rows: their command, or None (skipped) with fewer than 2 GPUs."""
    command = ["env", "KT_FSDP_DEVICE=auto", *pytest, "tests/distributed/test_fsdp.py"]
    return [("FSDP2 on 2 GPUs (tests/distributed/test_fsdp.py)", command if torch.cuda.device_count() >= 2 else None,
             240)]


def skipped_step(name: str) -> dict:
    reason = f"skipped: needs 2 GPUs, {torch.cuda.device_count()} visible"
    print(f"{name}: {reason}", flush=True)  # noqa: T201 (the script's own report)
    return {"step": name, "command": None, "exit_code": 0, "seconds": 0.0, "skipped": reason, "output_tail": ""}


def run_step(name: str, command: list[str], limit: int) -> dict:
    """Run one step; its exit code (124 when it ran past ``limit``), duration and output tail."""
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        code, partial = 124, expired.stdout or ""  # bytes, even with text=True
        output = (partial.decode(errors="replace") if isinstance(partial, bytes) else partial) + \
            f"\n[gpu_check: stopped after {limit} s]"
    seconds = round(time.monotonic() - start, 1)
    print(f"{name}: exit {code} in {seconds} s", flush=True)  # noqa: T201 (the script's own report)
    return {"step": name, "command": " ".join(command), "exit_code": code, "seconds": seconds,
            "output_tail": output[-TAIL_CHARS:]}


def machine() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-check-results.json", help="the results file to write")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds for bench_peers")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine; nothing was run.",  # noqa: T201
              file=sys.stderr)
        return 2
    results = {"machine": machine(), "steps": [run_step(name, command, limit) if command is not None else
                                               skipped_step(name)
                                               for name, command, limit in steps(args.rounds, sys.executable)]}
    with open(args.out, "w") as file:
        json.dump(results, file, indent=2)
    print(f"gpu_check: results in {args.out}")  # noqa: T201
    return 0 if all(step["exit_code"] == 0 for step in results["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
