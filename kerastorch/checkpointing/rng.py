"""RNG states: capture and restore Python's, NumPy's, torch's CPU and all CUDA generators.

Kept as lists, numbers and tensors (no numpy arrays, which ``weights_only``
loading refuses), so a captured state survives ``atomic_save`` / ``safe_load``.
"""
from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch

ALL_RNGS = ("python", "numpy", "torch", "cuda")


def capture_rng_state(rngs: tuple[str, ...] = ALL_RNGS) -> dict[str, Any]:
    """Snapshot the Python, NumPy, torch CPU and (if present) all CUDA RNG states.

    Stored as lists, numbers and tensors (no numpy arrays, which ``weights_only``
    loading refuses) so the dict survives :func:`atomic_save` / :func:`safe_load`.

    Args:
        rngs: which of ``ALL_RNGS`` to snapshot (NumPy's costs tens of microseconds: a caller
            that knows what will draw, e.g. a data pass's start, takes only those).

    Returns:
        A dict for :func:`restore_rng_state` (the states left out are left alone on restore).

    Example:
        >>> import os, tempfile; from kerastorch.checkpointing.files import atomic_save, safe_load
        >>> path = os.path.join(tempfile.mkdtemp(), "last.pt")
        >>> atomic_save({"rng": capture_rng_state()}, path)
        >>> first = torch.rand(3)
        >>> restore_rng_state(safe_load(path)["rng"]); torch.equal(torch.rand(3), first)
        True
    """
    state: dict[str, Any] = {}
    if "python" in rngs:
        version, internal, gauss_next = random.getstate()
        state["python"] = [version, list(internal), gauss_next]
    if "numpy" in rngs:
        state["numpy"] = _numpy_state()
    if "torch" in rngs:
        state["torch"] = torch.get_rng_state()
    if "cuda" in rngs and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> list[Any]:
    numpy_state = np.random.get_state(legacy=True)
    if not isinstance(numpy_state, tuple):  # Only after np.random.set_bit_generator(...).
        raise TypeError("capture_rng_state supports only NumPy's default MT19937 global RNG.")
    name, keys, pos, has_gauss, cached_gaussian = numpy_state
    # Same order as np.random.get_state(); keys as int64 (older torch has no uint32).
    return [str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached_gaussian)]


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states captured by :func:`capture_rng_state`; missing keys are skipped.

    A CUDA device-count mismatch or missing CUDA gives a UserWarning.

    Args:
        state: The dict from :func:`capture_rng_state`, e.g. after a save and load.

    Example:
        >>> import random
        >>> state = capture_rng_state()
        >>> first = random.random(), torch.rand(3)
        >>> restore_rng_state(state)
        >>> random.random() == first[0], torch.equal(torch.rand(3), first[1])  # the same numbers again
        (True, True)
    """
    if "python" in state:
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
    if "numpy" in state:
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))
    if "torch" in state:
        # .cpu(): a load with map_location="cuda" would have moved it to the GPU.
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state:
        _restore_cuda_rng(state["cuda"])


def _restore_cuda_rng(states: list[torch.Tensor]) -> None:
    if not torch.cuda.is_available():
        warnings.warn("Checkpoint has CUDA RNG states but CUDA is not available; not restored.",
                      stacklevel=3)
        return
    count = torch.cuda.device_count()
    if len(states) != count:
        warnings.warn(f"Checkpoint has CUDA RNG states for {len(states)} devices but {count} "
                      "are visible; restoring only devices present in both.", stacklevel=3)
    for index, device_state in enumerate(states[:count]):
        torch.cuda.set_rng_state(device_state.cpu(), index)

