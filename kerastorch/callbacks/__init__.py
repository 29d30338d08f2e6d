"""Callbacks: Keras hook names and arguments, plus ``on_backward_end``."""
from .averaging import EMA, SWA
from .backup_and_restore import BackupAndRestore
from .base import Callback, CallbackList
from .csv_logger import CSVLogger
from .display import EpochLine, EpochTable, LivePlot, ProgressBar, SeedLogger, TorchkerasLogger
from .early_stopping import EarlyStopping
from .history import History
from .lambda_callback import LambdaCallback
from .lr_scheduler import LearningRateScheduler
from .mlflow_logger import MLflowLogger
from .model_checkpoint import ModelCheckpoint
from .reduce_lr_on_plateau import ReduceLROnPlateau
from .tensorboard import TensorBoard
from .terminate_on_nan import TerminateOnNaN

__all__ = ["BackupAndRestore", "Callback", "CallbackList", "CSVLogger", "EarlyStopping", "EMA", "EpochLine",
           "EpochTable", "History", "LambdaCallback", "LearningRateScheduler", "LivePlot", "MLflowLogger",
           "ModelCheckpoint", "ProgressBar", "ReduceLROnPlateau", "SeedLogger", "SWA", "TensorBoard", "TerminateOnNaN",
           "TorchkerasLogger"]
