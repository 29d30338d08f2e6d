"""kerastorch: Keras's compile / fit / evaluate / predict / summary for PyTorch.

Example:
    >>> import kerastorch as kt
    >>> from torch import nn
    >>> model = kt.Model.wrap(nn.Linear(2, 1))
"""
from . import callbacks, losses, metrics, regularizers
from ._version import __version__
from .callbacks.display.plots import plot_history
from .interpret import interpret
from .model import Model
from .seeding import seed_everything
from .summary import summary

__all__ = ["Model", "interpret", "plot_history", "seed_everything", "summary", "callbacks", "losses", "metrics",
           "regularizers", "__version__"]
