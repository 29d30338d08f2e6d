"""LeNet on an image folder: torchvision ImageFolder + DataLoader + kerastorch.

No download: the script writes scikit-learn's bundled ``load_digits`` images
(1797 handwritten digits, 8x8 grayscale) as PNG files into a temporary
directory laid out the way ``torchvision.datasets.ImageFolder`` expects::

    root/train/0/0.png  root/train/0/1.png ...  root/train/9/...
    root/val/0/...                               root/val/9/...

then reads them back with ImageFolder and transforms (Grayscale, Resize(32),
ToTensor, Normalize), so the pipeline is the same as for a real image folder.
The temporary directory is removed at the end.

What it shows:

* a LeNet ``kt.Model`` and ``summary(input_shape=(1, 32, 32))``;
* the short Keras form ``compile("adam", "cross_entropy", ["accuracy"])``
  (the model outputs logits; accuracy takes the argmax);
* ``fit(dl_train, validation_data=dl_val, epochs=...)`` on DataLoaders;
* ``evaluate`` and ``predict`` on a DataLoader.

Needs scikit-learn (for the digits) and Pillow (installed with torchvision).
Run it (about 20 seconds on a laptop CPU)::

    python examples/lenet_imagefolder.py            # 8 epochs
    python examples/lenet_imagefolder.py --epochs 3
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

import kerastorch as kt

SEED = 0
EPOCHS = 8
QUICK_EPOCHS = 4
BATCH_SIZE = 32


def write_digit_folder(root: Path, val_fraction: float = 0.25, seed: int = SEED) -> tuple[int, int]:
    """Write load_digits as PNGs under ``root/{train,val}/<digit>/<i>.png``; return the two sizes."""
    digits = load_digits()
    # 0..16 gray levels -> 0..255 bytes
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    index_train, index_val = train_test_split(np.arange(len(images)), test_size=val_fraction,
                                              stratify=digits.target, random_state=seed)
    for split, indices in (("train", index_train), ("val", index_val)):
        for i in indices:
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{i}.png")
    return len(index_train), len(index_val)


def image_transform() -> transforms.Compose:
    """ImageFolder opens every image as RGB; Grayscale brings it back to one channel."""
    return transforms.Compose([
        transforms.Grayscale(num_output_channels=1),
        transforms.Resize(32),  # 8x8 -> 32x32, the input size LeNet was designed for
        transforms.ToTensor(),  # (1, 32, 32) in [0, 1]
        transforms.Normalize((0.5,), (0.5,)),  # -> [-1, 1]
    ])


class LeNet(kt.Model):
    """LeNet-5: two conv/pool blocks and three linear layers; outputs 10 logits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5)  # 32 -> 28, pooled to 14
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)  # 14 -> 10, pooled to 5
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.flatten(x)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def main(epochs: int | None = None, quick: bool = False, seed: int = SEED) -> dict[str, Any]:
    """Write the image folder, train LeNet on it; return history, val_accuracy and the summary text."""
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else EPOCHS
    torch.manual_seed(seed)
    np.random.seed(seed)

    with tempfile.TemporaryDirectory(prefix="kerastorch-digits-") as tmp:
        root = Path(tmp)
        n_train, n_val = write_digit_folder(root, seed=seed)
        print(f"wrote {n_train} training and {n_val} validation PNGs under {root}")

        ds_train = datasets.ImageFolder(str(root / "train"), transform=image_transform())
        ds_val = datasets.ImageFolder(str(root / "val"), transform=image_transform())
        print(f"classes: {ds_train.classes}")
        dl_train = DataLoader(ds_train, batch_size=BATCH_SIZE, shuffle=True)
        dl_val = DataLoader(ds_val, batch_size=256)

        model = LeNet(num_classes=len(ds_train.classes))
        summary_text = model.summary(input_shape=(1, 32, 32))
        model.compile("adam", "cross_entropy", ["accuracy"])
        history = model.fit(dl_train, validation_data=dl_val, epochs=epochs)

        scores = model.evaluate(dl_val)
        print("\nevaluate on validation: " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
        logits = model.predict(dl_val)
        labels = torch.tensor(ds_val.targets)
        predicted = logits.argmax(dim=1)
        val_accuracy = float((predicted == labels).float().mean())
        sample = torch.linspace(0, len(labels) - 1, 10).long()  # ImageFolder orders samples by class
        print(f"predict: logits of shape {tuple(logits.shape)}; ten predicted digits "
              f"{''.join(ds_val.classes[i] for i in predicted[sample].tolist())}, "
              f"true {''.join(ds_val.classes[i] for i in labels[sample].tolist())}")
        print(f"final validation accuracy: {val_accuracy:.4f}")
    # the temporary directory and its images are gone here
    return {"history": history, "val_accuracy": val_accuracy, "summary": summary_text, "evaluate": scores}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs to train (default {EPOCHS})")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_EPOCHS} epochs")
    args = parser.parse_args()
    # A model this small runs about as fast on one CPU thread, and one thread does
    # not stall when other programs share the cores (several threads can, badly).
    torch.set_num_threads(1)
    main(epochs=args.epochs, quick=args.quick)
