"""kerastorch: Keras's compile / fit / evaluate / predict / summary for PyTorch.

Example:
    >>> import kerastorch as kt
    >>> from torch import nn
    >>> model = kt.Model.wrap(nn.Linear(2, 1))
"""
from . import callbacks, losses, metrics, regularizers, schedules
from ._version import __version__
from .callbacks.display.plots import plot_history
from .fsdp import FSDP
from .interpret import interpret
from .launch import launch
from .model import Model
from .seeding import seed_everything
from .summary import summary

__all__ = ["Model", "FSDP", "interpret", "launch", "plot_history", "seed_everything", "summary", "callbacks", "losses",
           "metrics", "regularizers", "schedules", "__version__"]
