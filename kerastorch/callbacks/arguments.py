"""Checks of callback arguments that need the fit: path templates, files vs folders.

Callbacks run them from :meth:`~kerastorch.callbacks.base.Callback.check_params`, which fit
calls on every callback before the first ``on_train_begin``: a bad argument fails before
any callback opens a file and before any training step.

* :func:`check_template`: every ``{field}`` of a ``str.format`` path template is a key the
  fit will log (``params["log_keys"]``, as :func:`~kerastorch.callbacks.monitor.check_monitor`
  reads it) and its format spec applies (``epoch`` is an int, every logged value a float);
* :func:`require_file` / :func:`require_folder` / :func:`require_parent_folder`: a directory
  where a file is expected, or the other way round.
"""
from __future__ import annotations

import difflib
import os
import re
import string
from collections.abc import Iterable
from typing import Any


def _fields(template: str, where: str) -> list[tuple[str, str, str | None]]:
    """``(field, spec, conversion)`` of each replacement field of ``template``."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"{where} is not a valid format template ({err}). Write a literal brace as '{{{{' "
                         "or '}}}}'.") from None
    return [(field, spec or "", conversion) for _, field, spec, conversion in parsed if field is not None]


def _unknown_key(key: str, where: str, available: list[str], has_validation: Any) -> ValueError:
    choices = ", ".join(["epoch", *available])
    if key.startswith("val_") and has_validation is False:
        return ValueError(f"{where} uses {{{key}}}, but fit has no validation data, so no val_* value is logged. "
                          f"Pass validation_data= or validation_split=, or use one of: {choices}.")
    close = difflib.get_close_matches(key, ["epoch", *available], n=1) or \
        [name for name in available if name.startswith(key)][:1]  # Keras's "acc" for "accuracy"
    hint = f" Did you mean {{{close[0]}}}?" if close else ""
    return ValueError(f"{where} uses {{{key}}}, which fit will not log.{hint} Available: {choices}.")


def check_template(template: str, callback: Any, arg: str, keys: Iterable[str] | None = None,
                   reason: str = "") -> None:
    """Raise ValueError if ``template`` cannot be filled with what fit logs.

    Args:
        template: a ``str.format`` template, e.g. ``"ckpt/{epoch:02d}-{val_loss:.3f}.pt"``.
        callback: the calling callback; its ``params`` are read (``log_keys``, ``custom_logs``,
            ``has_validation``: see :func:`~kerastorch.callbacks.monitor.check_monitor`) and its
            class name goes into the message.
        arg: the argument's name, for the message.
        keys: the keys the template may use besides ``epoch`` when fewer than ``log_keys``
            are known at save time (e.g. ``()`` for mid-epoch saves).
        reason: with ``keys``, why other keys are unknown (goes into the message).

    Example:
        >>> class Saver: params = {"log_keys": ["loss", "lr"], "has_validation": False}
        >>> check_template("w-{epoch:02d}-{loss:.3f}.pt", Saver(), "filepath")
        >>> check_template("w-{loss:d}.pt", Saver(), "filepath")
        Traceback (most recent call last):
        ...
        ValueError: Saver `filepath`='w-{loss:d}.pt' cannot format {loss:d}: loss is a float (Unknown format code 'd' for object of type 'float'). Use a float format such as {loss:.4f}.
    """  # noqa: E501 (a doctest's expected message is one line)
    params = getattr(callback, "params", None) or {}
    where = f"{type(callback).__name__} `{arg}`={template!r}"
    log_keys = params.get("log_keys")
    available = list(log_keys) if keys is None and log_keys is not None else list(keys or [])
    checked = keys is not None or (log_keys is not None and not params.get("custom_logs"))
    for field, spec, conversion in _fields(template, where):
        key = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not key or key.isdigit():
            raise ValueError(f"{where} has a positional field {{{field}}}: name the value, e.g. {{epoch}} or "
                             "{loss:.4f}.")
        if checked and key not in ("epoch", "step", "weights") and key not in available:
            if reason:
                raise ValueError(f"{where} uses {{{key}}}, {reason}")
            raise _unknown_key(key, where, available, params.get("has_validation"))
        sample: Any = 1 if key in ("epoch", "batch", "step") else "ema" if key == "weights" else 0.5
        text = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        try:
            text.format(**{key: sample})
        except (ValueError, TypeError, IndexError, AttributeError, KeyError) as err:
            integer = key in ("epoch", "batch", "step")
            kind, example = ("an int", f"{{{key}:03d}}") if integer else ("a float", f"{{{key}:.4f}}")
            raise ValueError(f"{where} cannot format {text}: {key} is {kind} ({err}). Use "
                             f"{kind} format such as {example}.") from None


def template_keys(template: str) -> set[str]:
    """The names a ``str.format`` path template uses (its fields' first parts); empty when it has none.

    Example:
        >>> sorted(template_keys("ckpt/{epoch:02d}-{val_loss:.3f}.pt")), template_keys("best.pt")
        (['epoch', 'val_loss'], set())
    """
    try:
        fields = _fields(template, "template")
    except ValueError:
        return set()  # check_template reports it
    return {re.split(r"[.\[]", field, maxsplit=1)[0] for field, _, _ in fields}


def filled(template: str, keys: Iterable[str]) -> str:
    """``template`` filled with sample values (epoch 1, every other key 0.5), for path checks.

    Example:
        >>> filled("ckpt/{epoch:02d}-{loss:.1f}.pt", ["loss"])
        'ckpt/01-0.5.pt'
    """
    try:
        return template.format(epoch=1, step=1, weights="ema",
                               **{key: 1 if key == "batch" else 0.5 for key in keys if key not in ("step", "weights")})
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        return template  # check_template reports what is wrong with it


def require_file(path: str, callback: Any, arg: str, example: str) -> None:
    """Raise ValueError if ``path`` names a directory (it exists as one, or ends with a separator).

    Example:
        >>> require_file("log.csv", object(), "filename", "log.csv")
    """
    separators = tuple(sep for sep in (os.sep, os.altsep) if sep)
    if path.endswith(separators) or os.path.isdir(path):
        raise ValueError(f"{type(callback).__name__} `{arg}` must name a file, but {path!r} is a directory. "
                         f"Received: {arg}={path!r}. Name a file inside it, e.g. "
                         f"{os.path.join(path, example)!r}.")


def require_folder(path: str, callback: Any, arg: str) -> None:
    """Raise ValueError if ``path`` (a folder to write into) exists as a file.

    Example:
        >>> require_folder("logs", object(), "log_dir")
    """
    if os.path.isfile(path):
        raise ValueError(f"{type(callback).__name__} `{arg}` must be a folder, but {path!r} is a file. "
                         f"Received: {arg}={path!r}. Pass a folder name (it is created if missing).")


def require_parent_folder(path: str, callback: Any, arg: str) -> None:
    """Raise ValueError if the folder ``path`` goes into exists as a file.

    Example:
        >>> require_parent_folder("logs/train.csv", object(), "filename")
    """
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isfile(folder):
        raise ValueError(f"{type(callback).__name__} `{arg}`={path!r} is inside {folder!r}, which is a file, not a "
                         "folder. Choose a file name in a folder (it is created if missing).")
