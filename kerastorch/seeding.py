"""Reproducibility: seed every random number generator at once, optionally with deterministic algorithms."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .checks import is_int

#: cuBLAS needs a fixed workspace for deterministic results (see torch's reproducibility notes).
CUBLAS_WORKSPACE = ":4096:8"


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy's global RNG, torch's CPU and every CUDA generator.

    DataLoader workers follow: each worker's ``random``, torch and NumPy seeds derive from
    a base seed the DataLoader draws from torch's generator, which this call seeds. A
    ``torch.Generator`` you pass to a DataLoader is yours to seed.

    Args:
        seed: an integer in [0, 2**32 - 1] (NumPy's range).
        deterministic: also make torch choose deterministic algorithms
            (``torch.use_deterministic_algorithms(True)``; cuDNN deterministic, no
            benchmark autotuning) and set ``CUBLAS_WORKSPACE_CONFIG`` (when unset) as
            cuBLAS requires; slower on GPUs. False leaves those settings as they are.

    Returns None, so that a notebook cell ending in ``kt.seed_everything(0)`` shows nothing.

    Example:
        >>> seed_everything(7); a = torch.rand(2), np.random.rand(), random.random()
        >>> seed_everything(7); b = torch.rand(2), np.random.rand(), random.random()
        >>> torch.equal(a[0], b[0]) and a[1:] == b[1:]
        True
    """
    if not is_int(seed) or not 0 <= seed <= 2**32 - 1:
        raise ValueError(f"`seed` must be an integer in [0, 2**32 - 1]. Received: seed={seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
