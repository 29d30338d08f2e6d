"""What fit / evaluate / predict print: the progress bar, the epoch table or line, the torchkeras log."""
from .epoch_table import EpochLine, EpochTable, format_value, render_table
from .progress import ProgressBar
from .torchkeras_log import SeedLogger, TorchkerasLogger

__all__ = ["EpochLine", "EpochTable", "ProgressBar", "SeedLogger", "TorchkerasLogger", "format_value", "render_table"]
