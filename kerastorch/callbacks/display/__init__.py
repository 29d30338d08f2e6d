"""What fit / evaluate / predict print or draw: the progress bar, the epoch table or line, the torchkeras log,
the history plot and the live training plot (matplotlib is imported only when a plot is made)."""
from .epoch_table import EpochLine, EpochTable, format_value, render_table
from .live_plot import LivePlot
from .plots import plot_history
from .progress import ProgressBar
from .torchkeras_log import SeedLogger, TorchkerasLogger

__all__ = ["EpochLine", "EpochTable", "LivePlot", "ProgressBar", "SeedLogger", "TorchkerasLogger", "format_value",
           "plot_history", "render_table"]
