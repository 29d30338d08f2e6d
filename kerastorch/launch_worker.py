"""The worker side of :mod:`kerastorch.launch`: one spawned process, set up as a torchrun rank.

A worker sets torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...) before it
unpickles anything, runs the function it was sent and reports to the parent over its pipe:
``("stdout" | "stderr", text)`` while it runs (rank 0 only), then ``("done", pickled value)`` or
``("error", (time, traceback text))``. Also here: the pickling both sides use (cloudpickle,
tensors moved to the CPU) and the training state that :func:`fit_worker` carries across.
"""
from __future__ import annotations

import io
import os
import pickle
import random
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch
from torch import nn

from .fsdp import full_model_state, full_optimizer_state, load_full_optimizer_state


def run_worker(rank: int, processes: int, port: int, payload: bytes, channel: Connection) -> None:
    """Entry point of a spawned worker: run the pickled ``(fn, args, kwargs)`` as rank ``rank``."""
    _set_torchrun_environment(rank, processes, port)
    outbox = _Outbox(channel)
    if rank == 0:  # rank 0's output is the notebook cell's; the other ranks keep the parent's streams
        sys.stdout, sys.stderr = _Relay(outbox, "stdout"), _Relay(outbox, "stderr")
    try:
        fn, args, kwargs = pickle.loads(payload)
        value = fn(*args, **kwargs)
        report = dumps(value) if rank == 0 else b""
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    except BaseException:  # every failure goes to the parent, which stops the other workers
        failure = (time.time(), traceback.format_exc())
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # what prints at exit stays here
        outbox.send(("error", failure))
        raise SystemExit(1) from None
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    outbox.send(("done", report))


def _set_torchrun_environment(rank: int, processes: int, port: int) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes),
                       "LOCAL_WORLD_SIZE": str(processes), "GROUP_RANK": "0",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    if "OMP_NUM_THREADS" not in os.environ:  # as torchrun does: N processes x all cores would oversubscribe
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


class _Outbox:
    """The worker's end of its pipe, shared by the relayed streams and the final report."""

    def __init__(self, channel: Connection) -> None:
        self._channel = channel
        self._lock = threading.Lock()  # a DataLoader thread may print while the main thread reports

    def send(self, message: tuple[str, Any]) -> None:
        with self._lock:
            self._channel.send(message)


class _Relay(io.TextIOBase):
    """A text stream whose writes go to the parent, which writes them to its own stream."""

    def __init__(self, outbox: _Outbox, name: str) -> None:
        self._outbox, self._name = outbox, name

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            self._outbox.send((self._name, str(text)))
        return len(text)


# ------------------------------------------------------------------ pickling
def dumps(obj: Any) -> bytes:
    """cloudpickle ``obj`` (classes and functions of ``__main__`` by value), its tensors moved to the CPU.

    On the CPU, so that neither side touches a GPU it was not given; identity is kept (a parameter an
    optimizer holds is the model's parameter after loading).

    Example:
        >>> layer = nn.Linear(2, 1)
        >>> copy = pickle.loads(dumps({"net": layer, "params": list(layer.parameters())}))
        >>> copy["params"][0] is copy["net"].weight
        True
    """
    buffer = io.BytesIO()
    _cpu_pickler_class()(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


_PICKLER: list[type] = []  # made once, at the first dumps (cloudpickle is optional: imported then)


def _cpu_pickler_class() -> type:
    if not _PICKLER:
        try:
            import cloudpickle
        except ImportError as err:
            raise ImportError("Training in several processes (fit(processes=N), kt.launch) needs cloudpickle: "
                              "`pip install cloudpickle` (or `pip install kerastorch[notebook]`).") from err

        class CpuPickler(cloudpickle.Pickler):
            def reducer_override(self, obj: Any) -> Any:
                if type(obj) in (torch.Tensor, nn.Parameter) and obj.device.type != "cpu":
                    return _rebuild_on_cpu, (obj.detach().cpu(), type(obj) is nn.Parameter, obj.requires_grad)
                return super().reducer_override(obj)

        _PICKLER.append(CpuPickler)
    return _PICKLER[0]


def _rebuild_on_cpu(data: torch.Tensor, parameter: bool, requires_grad: bool) -> torch.Tensor:
    if parameter:
        return nn.Parameter(data, requires_grad=requires_grad)
    return data.requires_grad_(requires_grad) if requires_grad else data


# ------------------------------------------------------------ training state
def fit_worker(model: Any, compile_call: tuple[tuple, dict[str, Any]], fit_kwargs: dict[str, Any],
               state: dict[str, Any]) -> dict[str, Any] | None:
    """Compile ``model`` as the notebook did (DDP is set up by compile, as under torchrun), continue from the
    notebook's optimizer, scheduler, scaler and RNG states, fit; rank 0 returns what the notebook loads."""
    args, kwargs = compile_call
    model.compile(*args, **kwargs)
    load_training_state(model, state)
    history = model.fit(**fit_kwargs)
    weights, state = full_model_state(model), training_state(model)  # under FSDP: gathered by every rank
    if int(os.environ["RANK"]) != 0:
        return None
    return {"weights": weights, "record": model._record, "history": history, **state}


def training_state(model: Any) -> dict[str, Any]:
    """What training continues from besides the weights and the record: optimizer, scheduler, scaler, RNGs."""
    config = model._config
    return {"optimizer": full_optimizer_state(model, config.optimizer),
            "lr_scheduler": config.lr_scheduler.state_dict() if config.lr_scheduler is not None else None,
            "scaler": config.precision.scaler.state_dict(),
            "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state()),
            "deterministic": torch.are_deterministic_algorithms_enabled()}


def load_training_state(model: Any, state: dict[str, Any]) -> None:
    """Load :func:`training_state`'s dict into a model compiled by the same ``compile`` call."""
    config = model._config
    optimizer = state["optimizer"]
    if optimizer["state"]:
        load_full_optimizer_state(model, config.optimizer, optimizer)
    else:  # never stepped: only its hyperparameters (under FSDP torch would initialise the state with a step)
        for group, saved in zip(config.optimizer.param_groups, optimizer["param_groups"], strict=True):
            group.update({key: value for key, value in saved.items() if key != "params"})
    if state["lr_scheduler"] is not None and config.lr_scheduler is not None:
        config.lr_scheduler.load_state_dict(state["lr_scheduler"])
    if state["scaler"]:  # a disabled scaler's state is empty
        config.precision.scaler.load_state_dict(state["scaler"])
    python_rng, numpy_rng, torch_rng = state["rng"]
    random.setstate(python_rng)
    np.random.set_state(numpy_rng)
    torch.set_rng_state(torch_rng)
    torch.use_deterministic_algorithms(state["deterministic"])
