"""Atomic, verified checkpoint writes and safe checkpoint loads (file level only).

After :func:`atomic_save`, ``path`` holds the complete new file or the untouched
old one, even if the process is killed or the disk fills up. :func:`safe_load`
checks every zip member's CRC-32 and unpickles with ``weights_only=True``, so a
malicious file cannot run code unless the caller trusts it explicitly.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import pickle
import re
import secrets
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Iterable
from typing import Any, Union

import torch

PathLike = Union[str, "os.PathLike[str]"]

# ".<basename>.tmp-<pid>-<8 hex>": cleanup_temp_files can spot them and their writer.
_TEMP_RE = re.compile(r"^\.(?P<base>.+)\.tmp-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})$")
# Bytes per os.write / zip-member read, so verifying needs no second full-size buffer.
_CHUNK = 16 * 1024 * 1024
# Temp files this process is writing now: cleanup_temp_files must not delete them.
_active_temp_files: set[str] = set()
_active_lock = threading.Lock()


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or a file is corrupt, truncated or unsafe."""


def atomic_save(obj: Any, path: PathLike) -> None:
    """Write ``obj`` with ``torch.save`` so that ``path`` is never left half-written.

    ``obj`` is serialized into memory first (costs one extra copy of the
    checkpoint in RAM) and written by this function, so a failure reports the
    real OS error (``[Errno 28] No space left on device``), not torch's zip-writer
    message. The bytes go to a temp file in the target folder, are fsynced, and
    ``os.replace`` moves them over ``path``; then the folder is fsynced. The
    previous file at ``path`` is untouched until ``os.replace``.

    Args:
        obj: Anything ``torch.save`` accepts (tensors and containers for safe_load).
        path: Target file. Its folder must exist (see :func:`check_writable`).

    Raises:
        TypeError: ``path`` is an existing directory.
        CheckpointError: Serialization or a file operation failed; the message
            names ``path`` and the underlying error. No temp file is left behind.

    Example:
        >>> import os, tempfile; folder = tempfile.mkdtemp()
        >>> atomic_save({"model": torch.nn.Linear(2, 1).state_dict(), "epoch": 3}, os.path.join(folder, "last.pt"))
        >>> os.listdir(folder)  # no temp file left beside it
        ['last.pt']
    """
    target = os.fspath(path)
    if os.path.isdir(target):
        raise TypeError(f"Checkpoint path '{target}' is a directory; expected a file path.")
    data = _serialize(obj, target)
    directory = os.path.dirname(os.path.abspath(target))
    token = secrets.token_hex(4)
    temp = os.path.join(directory, f".{os.path.basename(target)}.tmp-{os.getpid()}-{token}")
    with _active_lock:
        _active_temp_files.add(temp)
    try:
        _write_and_sync(temp, data)
        os.replace(temp, target)
    except BaseException as exc:
        # Also on KeyboardInterrupt: never leave a temp file next to the checkpoint.
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        if isinstance(exc, OSError):
            raise CheckpointError(f"Could not write checkpoint '{target}': {exc}") from exc
        raise
    finally:
        with _active_lock:
            _active_temp_files.discard(temp)
    _fsync_directory(directory, target)


def _serialize(obj: Any, target: str) -> memoryview:
    """Return ``torch.save``'s bytes for ``obj`` as a view of the buffer (no copy)."""
    buffer = io.BytesIO()
    try:
        torch.save(obj, buffer)
    except Exception as exc:
        raise CheckpointError(f"Could not serialize checkpoint '{target}': {exc}") from exc
    return buffer.getbuffer()


def _write_and_sync(temp: str, data: memoryview) -> None:
    """Create ``temp`` exclusively, write all of ``data``, fsync and close it."""
    # 0o666 (minus umask) gives the same permissions a plain torch.save would.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temp, flags, 0o666)
    try:
        written = 0
        while written < len(data):
            count = os.write(fd, data[written : written + _CHUNK])
            if count == 0:  # Never expected for regular files; avoid an endless loop.
                raise OSError(errno.EIO, "write returned 0 bytes")
            written += count
        os.fsync(fd)
        # Cheap verification that the file system kept every byte we handed it.
        size = os.fstat(fd).st_size
        if size != len(data):
            raise OSError(errno.EIO, f"wrote {len(data)} bytes but the file has {size}")
    finally:
        os.close(fd)


def _fsync_directory(directory: str, target: str) -> None:
    """Persist the rename; skipped where the OS cannot fsync a directory."""
    if os.name == "nt":  # Windows cannot open a directory as a file.
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        # Some file systems reject fsync on a directory; nothing more can be done there.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise CheckpointError(
                f"Checkpoint '{target}' was written but its folder could not be synced: {exc}"
            ) from exc


def safe_load(path: PathLike, *, map_location: Any = "cpu", trust_checkpoint: bool = False) -> Any:
    """Load a verified checkpoint, refusing anything but tensors and plain containers.

    Every zip member's CRC-32 is checked first (torch does not check tensor
    data), which reads the file once more. ``torch.load`` then gets
    ``weights_only`` explicitly: ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` only
    overrides it when the caller leaves it unset, so loads stay restricted.

    Args:
        path: Checkpoint written by ``torch.save`` (zip format, torch >= 1.6).
        map_location: Passed to ``torch.load``.
        trust_checkpoint: Unpickle fully (can run arbitrary code); only for files you trust.

    Returns:
        The saved object.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: The file is truncated or corrupt, or (without
            ``trust_checkpoint``) holds objects other than tensors/containers.

    Example:
        >>> import os, tempfile; path = os.path.join(tempfile.mkdtemp(), "last.pt")
        >>> model = torch.nn.Linear(2, 1)
        >>> atomic_save({"model": model.state_dict(), "epoch": 3}, path)
        >>> state = safe_load(path)
        >>> model.load_state_dict(state["model"]), state["epoch"]
        (<All keys matched successfully>, 3)
    """
    source = os.fspath(path)
    with open(source, "rb") as file:
        _verify_zip(file, source)
        file.seek(0)
        try:
            # A file object (not a path) keeps torch from dispatching on the file
            # name (.safetensors); explicit mmap=False ignores a global mmap default.
            return torch.load(  # weights_only is True unless the caller passed trust_checkpoint=True
                file, map_location=map_location, weights_only=not trust_checkpoint, mmap=False
            )
        except MemoryError:
            raise
        except Exception as exc:
            raise _load_error(source, exc, trust_checkpoint) from exc


def _verify_zip(file: io.BufferedReader, source: str) -> None:
    """Raise CheckpointError unless ``file`` is a complete zip with good CRCs."""
    if not zipfile.is_zipfile(file):
        raise CheckpointError(
            f"Checkpoint '{source}' is truncated or corrupt: it is not a complete zip "
            "archive (the format torch.save writes)."
        )
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                # CRC 0 on non-empty data means torch wrote it with CRC disabled
                # (torch.serialization.set_crc32_options(False)): nothing to check.
                if info.CRC == 0 and info.file_size > 0:
                    continue
                with archive.open(info) as member:  # Raises BadZipFile on a CRC mismatch.
                    while member.read(_CHUNK):
                        pass
    except Exception as exc:
        raise CheckpointError(f"Checkpoint '{source}' is truncated or corrupt: {exc}") from exc


def _load_error(source: str, exc: Exception, trust_checkpoint: bool) -> CheckpointError:
    """Turn a ``torch.load`` failure on a CRC-verified file into a clear error."""
    message = str(exc)
    # The container is intact, so an unpickling refusal means disallowed content.
    refused = isinstance(exc, pickle.UnpicklingError) or "TorchScript" in message
    if refused and not trust_checkpoint:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", message)
        detail = f" (first disallowed object: {found.group(1)})" if found else ""
        return CheckpointError(
            f"Checkpoint '{source}' contains objects that are not plain tensors or "
            f"containers{detail}, so it was not loaded. trust_checkpoint=True loads it "
            "with full pickle, which can run arbitrary code: only for files you trust."
        )
    return CheckpointError(
        f"Could not load checkpoint '{source}' (corrupt, or not a torch checkpoint): "
        f"{type(exc).__name__}: {message}"
    )


def check_writable(directory: PathLike) -> None:
    """Create ``directory`` if needed and prove a file can be created in it.

    Call it before training so a bad folder fails in seconds, not after an epoch.

    Args:
        directory: Folder that will hold checkpoints.

    Raises:
        CheckpointError: The folder cannot be created or written to.

    Example:
        >>> import os, tempfile; folder = os.path.join(tempfile.mkdtemp(), "exp1", "checkpoints")
        >>> check_writable(folder); os.listdir(folder)  # created, and the probe file removed
        []
    """
    folder = os.fspath(directory)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".kerastorch-write-check-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise CheckpointError(f"Checkpoint directory '{folder}' is not writable: {exc}") from exc


def cleanup_temp_files(directory: PathLike) -> list[str]:
    """Delete temp files left in ``directory`` by an interrupted :func:`atomic_save`.

    Files still being written (by this process, or a live process named in the file) are kept.

    Args:
        directory: Checkpoint folder; a missing one has nothing to clean.

    Returns:
        Sorted names (not paths) of the deleted files.

    Example:
        >>> import os, tempfile; folder = tempfile.mkdtemp()
        >>> open(os.path.join(folder, f".last.pt.tmp-{os.getpid()}-1a2b3c4d"), "wb").close()  # not being written
        >>> cleanup_temp_files(folder)
        ['.last.pt.tmp-...-1a2b3c4d']
    """
    folder = os.fspath(directory)
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        match = _TEMP_RE.match(name)
        full = os.path.abspath(os.path.join(folder, name))
        if match is None or _being_written(full, int(match.group("pid"))):
            continue
        try:
            os.remove(full)
        except FileNotFoundError:  # Its writer finished or cleaned up meanwhile.
            continue
        except PermissionError as exc:  # Windows: still open in another process.
            warnings.warn(f"Could not remove temp file '{full}': {exc}", stacklevel=2)
            continue
        removed.append(name)
    return removed


def _being_written(temp: str, pid: int) -> bool:
    """True if ``temp`` may belong to a write that is still in progress."""
    if pid == os.getpid():
        # After a container restart the new process often reuses the dead one's
        # pid, so for our own pid trust the live registry, not the number.
        with _active_lock:
            return temp in _active_temp_files
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Alive, owned by another user.
        pass
    return True


def newest_valid(paths: Iterable[PathLike], *, trust_checkpoint: bool = False) -> PathLike | None:
    """Return the newest (by modification time) path that :func:`safe_load` accepts.

    Candidates are fully loaded, newest first, until one passes; equal times go
    to the path listed later. Missing paths are ignored.

    Args:
        paths: Candidate checkpoint files.
        trust_checkpoint: Passed to :func:`safe_load`.

    Returns:
        The chosen path as given, or None if no file is valid.

    Warns:
        UserWarning: For each skipped corrupt or unsafe file, naming it.

    Example:
        >>> import os, tempfile, warnings; folder = tempfile.mkdtemp()
        >>> old, new = os.path.join(folder, "epoch_1.pt"), os.path.join(folder, "epoch_2.pt")
        >>> atomic_save({"epoch": 1}, old); open(new, "wb").close()  # the newer file is empty: corrupt
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     chosen = newest_valid([old, new])
        >>> os.path.basename(chosen), len(caught)
        ('epoch_1.pt', 1)
    """
    dated = []
    for index, path in enumerate(paths):
        try:
            dated.append((os.stat(path).st_mtime_ns, index, path))
        except FileNotFoundError:
            continue
    for _, _, path in sorted(dated, key=lambda item: item[:2], reverse=True):
        try:
            safe_load(path, trust_checkpoint=trust_checkpoint)
        except FileNotFoundError:  # Deleted since we looked at it.
            continue
        except CheckpointError as exc:
            warnings.warn(f"Skipping checkpoint '{os.fspath(path)}': {exc}", stacklevel=2)
            continue
        return path
    return None


