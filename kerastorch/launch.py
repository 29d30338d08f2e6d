"""Several processes from one notebook: ``kt.launch(fn, processes=N)`` and ``model.fit(..., processes=N)``.

Each of N new processes (``multiprocessing``'s "spawn": a fresh interpreter, safe after CUDA was used
here) is set up as torchrun sets up a rank (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``), so kerastorch trains there
with DDP exactly as under ``torchrun --nproc_per_node=N``. What the workers run crosses as cloudpickle
bytes: classes and functions defined in the notebook (``__main__``) travel by value, which plain
pickling for "spawn" cannot do. Rank 0's printed output is written to this process's streams (the
cell), its return value comes back; a worker that fails or dies stops all of them and raises here.

Limits: the function, the model, the data, the callbacks, the loss and metric functions must be
picklable by cloudpickle (no open files, locks, sockets, generators or database handles), and are
copied into every worker (large in-memory data: N copies). Tensors cross on the CPU. Callbacks run
in the workers: the notebook's callback objects do not see their calls. With CUDA, each worker takes
the GPU of its local rank (``compile(device="auto")``), so ``processes`` should not exceed the GPUs.
Workers without ``OMP_NUM_THREADS`` set use one CPU thread each, as under torchrun.
"""
from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

from .checks import compiled
from .launch_worker import dumps, fit_worker, load_training_state, run_worker, training_state

#: seconds between checks of the workers while waiting (a Ctrl-C is handled at once regardless)
_POLL_SECONDS = 1.0
#: seconds to gather the other workers' errors after the first failure (the first is usually the cause)
_FAILURE_GRACE_SECONDS = 3.0
#: seconds a worker gets to exit after it reported, or after SIGTERM, before it is killed
_EXIT_SECONDS = 10.0


def launch(fn: Callable[..., Any], processes: int, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` in ``processes`` new processes set up as torchrun ranks; return rank 0's value.

    ``fn`` may call ``torch.distributed.init_process_group()`` (the environment is torchrun's) or
    compile and fit a kerastorch model, which sets up DDP itself. A group left initialised is
    destroyed when ``fn`` returns. See the module docstring for what must be picklable.

    Args:
        fn: a function, also one defined in the notebook.
        processes: how many processes (ranks) to start, e.g. the number of GPUs.
        *args, **kwargs: passed to ``fn`` in every process (tensors arrive on the CPU).

    Returns:
        Rank 0's return value (its tensors on the CPU).

    Raises:
        ValueError: ``processes`` is not a positive int, or this process already runs under torchrun.
        TypeError: ``fn`` is not callable, or it or an argument cannot be pickled.
        RuntimeError: a worker raised (its traceback in the message) or died; the others are stopped.

    Example:
        >>> import torch, kerastorch as kt
        >>> def rank_sum():
        ...     torch.distributed.init_process_group("gloo")
        ...     total = torch.tensor([float(torch.distributed.get_rank())])
        ...     torch.distributed.all_reduce(total)
        ...     return total.item()
        >>> kt.launch(rank_sum, processes=2)  # doctest: +SKIP
        1.0

    (Skipped in the docstring run: it starts two interpreters; tests/test_launch.py runs it.)
    """
    check_processes(processes, "kt.launch")
    if not callable(fn):
        raise TypeError(f"`fn` must be a callable to run in each process. Received: fn={fn!r}")
    return run_in_processes(fn, processes, args, kwargs)


def fit_in_processes(model: Any, processes: int, fit_kwargs: dict[str, Any]) -> Any:
    """``model.fit(**fit_kwargs)`` on ``processes`` DDP ranks; load rank 0's result into ``model``; its history.

    The workers get a copy of the model (weights, record), its ``compile`` arguments, the
    optimizer, scheduler, scaler and CPU RNG states, and continue exactly where ``model`` stands.
    Afterwards ``model`` holds rank 0's weights, optimizer, scheduler and scaler states, fit record
    (history, epoch, global step, shuffling generator) and RNG states, as if it had trained here.
    ``processes=1`` trains in this process. If a worker fails, ``model`` is left as it was.

    Example:
        >>> import torch, kerastorch as kt
        >>> net = kt.Model.wrap(torch.nn.Linear(2, 1)); net.compile("sgd", "mse", device="cpu")
        >>> net.fit(torch.randn(8, 2), torch.randn(8, 1), epochs=2, processes=1, verbose=0).shape  # here
        (2, 3)
        >>> net.fit(torch.randn(8, 2), torch.randn(8, 1), epochs=1, processes=2, verbose=0).shape  # doctest: +SKIP
        (3, 3)
    """
    check_processes(processes, "fit")
    compiled(model._config, "fit")  # the error fit gives
    if processes == 1:
        return model.fit(**fit_kwargs)
    _check_gpus(model._config.device, model._compile_call, processes)
    if model._compile_call is None:
        raise RuntimeError("fit(processes=N) compiles the model in each worker as it was compiled here, but this "
                           "model's compile() arguments are unknown. Call model.compile(...) again, then fit.")
    shipped = copy.copy(model)  # the same parameters, buffers and record; without this process's compiled objects
    shipped._config, shipped._session = None, None
    state = training_state(model)
    result = run_in_processes(fit_worker, processes, (shipped, model._compile_call, fit_kwargs, state), {})
    model.load_state_dict(result["weights"])
    load_training_state(model, result)
    vars(model._record).update(vars(result["record"]))
    return result["history"]


def check_processes(processes: Any, caller: str) -> None:
    """Raise ValueError for a ``processes`` that is not a positive int, or when already running under torchrun."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"`processes` must be a positive int: how many processes to train in, e.g. processes=2 "
                         f"(one per GPU). Received: processes={processes!r}")
    under_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if under_torchrun or (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise ValueError(f"{caller}(processes={processes}) starts its own processes, but this process already runs "
                         f"under torchrun (RANK={os.environ.get('RANK')}, WORLD_SIZE={os.environ.get('WORLD_SIZE')}). "
                         "Remove `processes`: under torchrun every rank already trains with DDP.")


def _check_gpus(device: torch.device, compile_call: Any, processes: int) -> None:
    """On CUDA each process needs its own GPU: compile(device="auto") picks the local rank's."""
    if device.type != "cuda":
        return
    if compile_call is not None and compile_call[1].get("device", "auto") not in ("auto", None):
        raise ValueError(f"fit(processes={processes}) gives each process its own GPU with compile(device='auto'); "
                         f"compile(device={compile_call[1]['device']!r}) would put every process on one device. "
                         "Compile with device='auto' (or 'cpu').")
    if processes > torch.cuda.device_count():
        raise ValueError(f"fit(processes={processes}) trains on CUDA with one GPU per process, but "
                         f"{torch.cuda.device_count()} GPU(s) are visible. Use processes={torch.cuda.device_count()} "
                         "or fewer, or compile(device='cpu').")


def run_in_processes(fn: Callable[..., Any], processes: int, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Start the workers on ``fn(*args, **kwargs)``, relay rank 0's output, return rank 0's value."""
    try:
        payload = dumps((fn, args, kwargs))
    except ImportError:
        raise
    except Exception as err:
        raise TypeError(f"The function and arguments for the worker processes could not be pickled: {err}. They "
                        "cross to the workers with cloudpickle: the model, the data, callbacks, loss and metric "
                        "functions must not hold open files, locks, sockets or generators.") from err
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    workers: list[Any] = []
    readers: list[Connection] = []
    try:
        for rank in range(processes):
            reader, writer = context.Pipe(duplex=False)
            readers.append(reader)
            workers.append(context.Process(target=run_worker, args=(rank, processes, port, payload, writer),
                                           name=f"kerastorch-rank-{rank}"))
            workers[-1].start()
            writer.close()  # the worker holds the only writing end: its exit closes the pipe
        return _Supervisor(workers, readers).result()
    finally:
        _stop(workers)
        for reader in readers:
            reader.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(workers: list[Any]) -> None:
    """Terminate the workers still running, kill those that ignore it; never waits without a bound."""
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    deadline = time.monotonic() + _EXIT_SECONDS
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join(_EXIT_SECONDS)


class _Supervisor:
    """Reads the workers' pipes until every one reported, relaying rank 0's output; raises on the first failure."""

    def __init__(self, workers: list[Any], readers: list[Connection]) -> None:
        self.workers, self.readers = workers, readers
        self.reports: dict[int, bytes] = {}
        self.failures: dict[int, tuple[float, str]] = {}  # rank -> (when, what)
        self.deaths: set[int] = set()  # ranks that exited without reporting

    def result(self) -> Any:
        while len(self.reports) < len(self.workers):
            self._read(_POLL_SECONDS)
            if self.failures:
                self._gather_failures()
                raise RuntimeError(self._failure_message())
        for worker in self.workers:  # they exit right after reporting
            worker.join(_EXIT_SECONDS)
        return pickle.loads(self.reports[0])

    def _running(self) -> list[int]:
        return [rank for rank in range(len(self.workers)) if rank not in self.reports and rank not in self.failures]

    def _read(self, timeout: float) -> None:
        running = self._running()
        waitables = [self.readers[rank] for rank in running] + [self.workers[rank].sentinel for rank in running]
        ready = set(wait(waitables, timeout))
        for rank in running:
            exited = self.workers[rank].sentinel in ready
            if self.readers[rank] in ready or exited:
                self._drain(rank)
            if exited and rank not in self.reports and rank not in self.failures:
                self.workers[rank].join(_EXIT_SECONDS)
                self.deaths.add(rank)
                self.failures[rank] = (time.time(), f"The process exited with code {self.workers[rank].exitcode} "
                                                    "without reporting: killed (out of memory?), or it failed "
                                                    "before it started (its own output may say why; in a script, "
                                                    "is the call under `if __name__ == '__main__':`?).")

    def _drain(self, rank: int) -> None:
        reader = self.readers[rank]
        while rank not in self.reports and rank not in self.failures and reader.poll():
            try:
                kind, content = reader.recv()
            except EOFError:  # it exited; the sentinel tells how
                return
            if kind == "stdout":
                sys.stdout.write(content)
                sys.stdout.flush()
            elif kind == "stderr":
                sys.stderr.write(content)
                sys.stderr.flush()
            elif kind == "done":
                self.reports[rank] = content
            else:
                self.failures[rank] = content

    def _gather_failures(self) -> None:
        """Wait briefly for the others: a worker that raised makes its peers fail too, a moment later."""
        deadline = time.monotonic() + _FAILURE_GRACE_SECONDS
        while self._running() and time.monotonic() < deadline:
            self._read(max(0.0, deadline - time.monotonic()))

    def _failure_message(self) -> str:
        # A death comes first: it did not get to say when, and it makes its peers' collectives fail.
        ordered = sorted(self.failures.items(), key=lambda item: (item[0] not in self.deaths, item[1][0]))
        rank, (_, text) = ordered[0]
        others = "".join(f"\nWorker {other} of {len(self.workers)} failed too: {later.strip().splitlines()[-1]}"
                         for other, (_, later) in ordered[1:])
        return (f"Worker {rank} of {len(self.workers)} failed; the other workers were stopped. "
                f"Its error:\n{text.rstrip()}{others}")
