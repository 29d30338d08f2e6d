"""Callbacks: Keras hook names and arguments, plus ``on_backward_end``."""
from .base import Callback, CallbackList
from .csv_logger import CSVLogger
from .early_stopping import EarlyStopping
from .epoch_table import EpochLine, EpochTable
from .history import History
from .lambda_callback import LambdaCallback
from .lr_scheduler import LearningRateScheduler
from .progress import ProgressBar, SeedLogger
from .reduce_lr_on_plateau import ReduceLROnPlateau
from .tensorboard import TensorBoard
from .terminate_on_nan import TerminateOnNaN

__all__ = ["Callback", "CallbackList", "CSVLogger", "EarlyStopping", "EpochLine", "EpochTable", "History",
           "LambdaCallback", "LearningRateScheduler", "ProgressBar", "ReduceLROnPlateau", "SeedLogger",
           "TensorBoard", "TerminateOnNaN"]
