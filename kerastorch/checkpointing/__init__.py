"""Persistence: atomic files and safe loads, RNG states, training-state capture and restore, save policy.

* :mod:`.files`: ``atomic_save`` / ``safe_load`` and checkpoint-folder housekeeping;
* :mod:`.rng`: capture and restore every RNG state;
* :mod:`.training_state`: a whole training run as a checkpoint dict, and back;
* :mod:`.policy`: when checkpoint callbacks save, and what they refuse to save;
* :mod:`.compatibility`: a file checked against the model before anything is loaded.
"""
from .files import CheckpointError, atomic_save, check_writable, cleanup_temp_files, newest_valid, safe_load
from .rng import capture_rng_state, restore_rng_state

__all__ = ["CheckpointError", "atomic_save", "capture_rng_state", "check_writable", "cleanup_temp_files",
           "newest_valid", "restore_rng_state", "safe_load"]
