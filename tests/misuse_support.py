"""What a misuse test checks after a refused call: nothing the user had changed.

``snapshot(model, folder)`` copies the weights, the optimizer state, the history
and the files under ``folder``; ``assert_unchanged(model, snap, folder)`` compares
them bit for bit.
"""
from __future__ import annotations

import copy
import os

import torch


def _files(folder):
    if folder is None:
        return {}
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, folder)] = handle.read()
    return found


def snapshot(model, folder=None):
    """Copies of everything a refused call must leave alone."""
    config = model._config
    return {
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": copy.deepcopy(config.optimizer.state_dict()) if config is not None else None,
        "history": [dict(row) for row in model._record.history_rows],
        "global_step": model._record.global_step,
        "files": _files(folder),
    }


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def assert_unchanged(model, before, folder=None):
    """Weights, optimizer state, history, step count and files are exactly as in ``before``."""
    after = snapshot(model, folder)
    for key in before:
        assert _same(before[key], after[key]), f"{key} changed"
