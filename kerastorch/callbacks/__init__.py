"""Callbacks: Keras hook names and arguments, plus ``on_backward_end``."""
from .base import Callback, CallbackList
from .epoch_table import EpochLine, EpochTable
from .history import History
from .progress import ProgressBar, SeedLogger

__all__ = ["Callback", "CallbackList", "EpochLine", "EpochTable", "History", "ProgressBar", "SeedLogger"]
