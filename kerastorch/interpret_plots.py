"""The figures of :mod:`kerastorch.interpret`: the confusion matrix and the top-loss images.

This module imports matplotlib; :mod:`kerastorch.interpret` loads it only when a plot is
asked for, so ``import kerastorch`` stays cheap. As ``plot_history``'s figure, the figures are
built without pyplot (no window, never shown twice) and have ``_repr_png_``, so Jupyter shows
each as one PNG image.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure

from .checks import describe

if TYPE_CHECKING:
    import pandas as pd

#: Resolution of the PNG images Jupyter shows.
PNG_DPI = 100


class InterpretationFigure(Figure):
    """A plain matplotlib Figure that Jupyter renders as one PNG.

    Example:
        >>> InterpretationFigure(figsize=(2, 1))._repr_png_()[1:4]
        b'PNG'
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=PNG_DPI)
        return buffer.getvalue()


def plot_confusion_matrix(counts: np.ndarray, class_names: Sequence[str]) -> InterpretationFigure:
    """Draw a (true x predicted) count matrix, the count written in each cell.

    Example:
        >>> figure = plot_confusion_matrix(np.array([[3, 1], [0, 2]]), ["a", "b"])
        >>> [text.get_text() for text in figure.axes[0].texts]
        ['3', '1', '0', '2']
    """
    classes = len(class_names)
    side = max(4.0, 0.45 * classes + 2.0)
    figure = InterpretationFigure(figsize=(side, side), layout="constrained")
    axes = figure.subplots()
    axes.imshow(counts, cmap="Blues", vmin=0)
    threshold = counts.max() / 2 if counts.size else 0
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > threshold else "black", fontsize=9 if classes <= 12 else 7)
    axes.set_xticks(range(classes), class_names, rotation=90 if classes > 6 else 0)
    axes.set_yticks(range(classes), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title("Confusion matrix")
    return figure


def image_array(image: np.ndarray) -> np.ndarray:
    """One image for ``imshow``: (H, W) or (1, H, W) as (H, W); (3, H, W) as (H, W, 3) scaled to [0, 1].

    Example:
        >>> image_array(np.zeros((3, 2, 4))).shape, image_array(np.ones((1, 2, 4))).shape
        ((2, 4, 3), (2, 4))
    """
    if image.ndim == 3 and image.shape[0] == 1:
        return image[0]
    if image.ndim == 2:
        return image
    low, high = image.min(), image.max()
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return np.transpose(scaled, (1, 2, 0))


def plot_images(images: Sequence[np.ndarray], titles: Sequence[str], title: str = "pred/target/loss") -> Figure:
    """A grid of images, one titled axes each (grey ones with a grey colour map).

    Example:
        >>> figure = plot_images([np.zeros((4, 4))] * 3, ["a", "b", "c"])
        >>> len(figure.axes), figure.axes[2].get_title()
        (3, 'c')
    """
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    figure = InterpretationFigure(figsize=(2.2 * columns, 2.4 * rows + 0.4), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for unused in grid[len(images):]:
        figure.delaxes(unused)
    for axes, image, name in zip(grid, images, titles, strict=False):
        picture = image_array(image)
        axes.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        axes.set_title(name, fontsize=9)
        axes.axis("off")
    figure.suptitle(title)
    return figure


def plot_top_losses(x: Any, table: pd.DataFrame, class_names: Sequence[str], samples: int) -> Figure:
    """The images of ``table``'s rows (``Interpretation.top_losses``), each titled "pred/target/loss".

    Args:
        x: all ``samples`` inputs as images: (N, C, H, W) with 1 or 3 channels, or (N, H, W).
        table: the ``index``, ``loss``, ``pred`` and ``target`` of the samples to draw.
        class_names: the name of each class.
        samples: how many samples were interpreted (the length ``x`` must have).

    Example:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"index": [1], "loss": [0.5], "pred": [0], "target": [1]})
        >>> plot_top_losses(torch.zeros(2, 4, 4), table, ["a", "b"], 2).axes[0].get_title()
        'a/b/0.50'
    """
    images = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    channels_ok = images.dim() == 3 or images.dim() == 4 and images.shape[1] in (1, 3)
    if len(images) != samples or not channels_ok:
        raise ValueError(f"`x` must hold the {samples} interpreted samples as images, (N, C, H, W) with 1 or 3 "
                         f"channels or (N, H, W). Received: x={describe(x)}")
    titles = [f"{class_names[pred]}/{class_names[target]}/{loss:.2f}"
              for loss, pred, target in zip(table["loss"], table["pred"], table["target"], strict=True)]
    return plot_images([images[int(index)].detach().cpu().double().numpy() for index in table["index"]], titles)
