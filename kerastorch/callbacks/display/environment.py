"""Where output goes: a Jupyter notebook, a terminal, or a plain stream (a file, a pipe, CI).

The display callbacks pick their form from :func:`output_mode`: a widget bar and an HTML
table that grows in place in notebooks, a bar redrawn with ``\\r`` in terminals, and one
plain line per epoch when stdout is redirected (``nohup``, CI, SLURM), so logs hold no
bar fragments.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from typing import Literal

OutputMode = Literal["notebook", "terminal", "plain"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (notebook, JupyterLab, VS Code), where rich output renders.

    Example:
        >>> in_notebook()
        False
    """
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:  # never imported: not in IPython (and importing it costs ~0.3 s)
        return False
    shell = ipython_module.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def output_mode() -> OutputMode:
    """"notebook", "terminal" (stdout is a TTY) or "plain" (redirected stdout).

    Example:
        >>> output_mode() in ("notebook", "terminal", "plain")
        True
    """
    if in_notebook():
        return "notebook"
    isatty = getattr(sys.stdout, "isatty", None)
    return "terminal" if isatty is not None and isatty() else "plain"


def has_widgets() -> bool:
    """True when ipywidgets is installed (tqdm's notebook bar needs it; without it: a text bar).

    Example:
        >>> isinstance(has_widgets(), bool)
        True
    """
    return importlib.util.find_spec("ipywidgets") is not None


def terminal_columns() -> int:
    """The terminal width (``COLUMNS`` when set, else the terminal's, else 80).

    Example:
        >>> terminal_columns() > 0
        True
    """
    return shutil.get_terminal_size((80, 24)).columns


def terminal_rows() -> int:
    """The terminal height (``LINES`` when set, else the terminal's, else 24; never 0).

    tqdm draws nothing in a terminal that reports 0 rows (a pseudo-terminal nobody sized):
    the bar is given this instead.

    Example:
        >>> terminal_rows() > 0
        True
    """
    return shutil.get_terminal_size((80, 24)).lines
