"""Checkpoint retention: which of the files a saver wrote it keeps (the k best by a score, the n newest).

:class:`Retention` is ModelCheckpoint's ``save_top_k`` / ``keep_last`` bookkeeping. It knows
only the files it was told were written (:meth:`Retention.add`), so it never names for
deletion a file its saver did not write in this run or in a run it resumed (its
:meth:`Retention.state_dict` travels in the saver's callback state, hence in full
checkpoints). :meth:`Retention.add` records the new file and returns the files that
fell out; the saver deletes them (:func:`remove_files`) only once the new file is durably
written.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from typing import Any

_Entry = tuple[str, "float | None"]  # (absolute path, score or None), oldest first


class Retention:
    """The files a saver wrote and keeps: the ``top_k`` best scores and the ``keep_last`` newest.

    Args:
        mode: "min" (lower scores are better) or "max".
        top_k: keep the files with the k best scores (None: no rule by score).
        keep_last: keep the n most recently written files (None: no rule by age).

    With neither rule nothing is ever deleted, and only the best and the newest file are
    remembered (for :attr:`best_path` and :attr:`last_path`). A file is kept while it is in
    the top k *or* among the n newest. Equal scores rank the older file first, so a tie never
    displaces a file already kept. A file written again under the same name replaces its
    entry. NaN scores and None are unranked (kept only for their age).

    Example:
        >>> keep = Retention("min", top_k=2)
        >>> [[os.path.basename(gone) for gone in keep.add(name, score)]
        ...  for name, score in [("a.pt", 0.5), ("b.pt", 0.25), ("c.pt", 0.375)]]
        [[], [], ['a.pt']]
        >>> sorted(os.path.basename(path) for path in keep.best_k), os.path.basename(keep.best_path)
        (['b.pt', 'c.pt'], 'b.pt')
    """

    def __init__(self, mode: str, top_k: int | None = None, keep_last: int | None = None) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max'. Received: mode={mode!r}")
        self.mode, self.top_k, self.keep_last = mode, top_k, keep_last
        self.entries: list[_Entry] = []
        self.last_path: str | None = None

    @property
    def deletes(self) -> bool:
        """True when a rule (``top_k`` or ``keep_last``) may delete files."""
        return self.top_k is not None or self.keep_last is not None

    def ranked(self) -> list[tuple[str, float]]:
        """The scored entries, best first; equal scores keep their writing order (older first)."""
        scored = [(path, score) for path, score in self.entries if score is not None]
        sign = 1.0 if self.mode == "min" else -1.0
        return sorted(scored, key=lambda entry: sign * entry[1])

    def admits(self, score: float | None) -> bool:
        """Whether a new file with ``score`` would enter the top k (always True without ``top_k``).

        Example:
            >>> keep = Retention("max", top_k=1); _ = keep.add("a.pt", 0.5)
            >>> keep.admits(0.5), keep.admits(0.75), keep.admits(None)
            (False, True, False)
        """
        if self.top_k is None:
            return True
        if score is None or math.isnan(score):
            return False
        ranked = self.ranked()
        if len(ranked) < self.top_k:
            return True
        worst = ranked[self.top_k - 1][1]
        return score < worst if self.mode == "min" else score > worst

    def add(self, path: str | os.PathLike, score: float | None) -> list[str]:
        """Record ``path`` as just written with ``score``; return the files to delete once it is durable.

        The returned files are forgotten at once (they no longer count), never include
        ``path``, and are empty without a rule.
        """
        target = os.path.abspath(os.fspath(path))
        score = None if score is None or math.isnan(score) else float(score)
        self.entries = [entry for entry in self.entries if entry[0] != target] + [(target, score)]
        self.last_path = target
        kept = self._kept()
        dropped = [entry[0] for entry in self.entries if entry[0] not in kept]
        self.entries = [entry for entry in self.entries if entry[0] in kept]
        return dropped if self.deletes else []

    def _kept(self) -> set[str]:
        best = self.top_k if self.top_k is not None else (0 if self.keep_last is not None else 1)
        newest = self.keep_last if self.keep_last is not None else (0 if self.top_k is not None else 1)
        recent = self.entries[-newest:] if newest else []
        return {entry[0] for entry in self.ranked()[:best]} | {entry[0] for entry in recent}

    @property
    def best_k(self) -> dict[str, float]:
        """The kept files ranked by score, best first: ``{path: score}`` (at most ``top_k``)."""
        ranked = self.ranked()
        return dict(ranked[:self.top_k])

    @property
    def best_path(self) -> str | None:
        """The kept file with the best score (the older one on a tie), or None."""
        ranked = self.ranked()
        return ranked[0][0] if ranked else None

    @property
    def best_score(self) -> float | None:
        """The score of :attr:`best_path`, or None."""
        ranked = self.ranked()
        return ranked[0][1] if ranked else None

    def state_dict(self) -> dict[str, Any]:
        """Plain lists and strings (loadable with ``torch.load(weights_only=True)``)."""
        return {"entries": [[path, score] for path, score in self.entries], "last_path": self.last_path}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; files deleted since it was taken are forgotten."""
        self.entries = [(str(path), None if score is None else float(score)) for path, score in state["entries"]
                        if os.path.exists(path)]
        self.last_path = state.get("last_path")


def remove_files(paths: Iterable[str]) -> list[str]:
    """Delete ``paths`` (already gone is fine; one that cannot be deleted warns); return the ones deleted.

    Example:
        >>> import tempfile; folder = tempfile.mkdtemp(); old = os.path.join(folder, "old.pt")
        >>> open(old, "wb").close()
        >>> [os.path.basename(p) for p in remove_files([old, os.path.join(folder, "gone.pt")])]
        ['old.pt']
    """
    removed = []
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:  # deleted by someone else meanwhile
            continue
        except OSError as exc:  # training goes on: an old file left behind is not worth stopping for
            warnings.warn(f"Could not delete the old checkpoint '{path}': {exc}", RuntimeWarning, stacklevel=2)
            continue
        removed.append(path)
    return removed
