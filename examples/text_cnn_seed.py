"""Text CNN, written the seed tutorial's way, on synthetic token data.

The seed trains this model on IMDB reviews turned into token ids. Nothing is
downloaded here: the script makes token sequences with a planted signal
instead. Ordinary words are drawn from a Zipf-like distribution over the
vocabulary; in a positive text about one word in ten is replaced by a word
from a short "positive" list, in a negative text by one from a "negative"
list, and, as noise, every text also holds two words of the other list. The model has to learn which
token ids carry the label, wherever they sit in the text.

What it shows (torchkeras 1.x/2.x style, unchanged):

* the seed's ``Net(Model)``: Embedding(10000, 3, padding_idx=1), two
  Conv1d / MaxPool1d / ReLU blocks, Flatten, Linear(6144, 1), Sigmoid;
* ``model.summary(input_shape=(200,), input_dtype=torch.LongTensor)``
  (Total params: 40,625, as in the seed);
* ``model.compile(loss_func=nn.BCELoss(), optimizer=torch.optim.Adagrad(...),
  metrics_dict={"accuracy": accuracy})``;
* ``dfhistory = model.fit(epochs, dl_train, dl_val=dl_test, log_step_freq=200)``;
* ``model.evaluate(dl_test)`` and ``model.predict(dl_test)`` on a DataLoader.

Run it (about 15 seconds on a laptop CPU)::

    python examples/text_cnn_seed.py              # 5 epochs
    python examples/text_cnn_seed.py --epochs 2
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kerastorch import Model

SEED = 0
EPOCHS = 5
QUICK_EPOCHS = 2

MAX_WORDS = 10000  # vocabulary size: ids 0 (unknown) and 1 (padding) are reserved
MAX_LEN = 200  # every sample keeps (or is padded to) 200 tokens
BATCH_SIZE = 20
N_TRAIN, N_TEST = 4000, 1000  # 200 training steps per epoch, so log_step_freq=200 logs once per epoch

POSITIVE_WORDS = np.arange(500, 510)  # the planted signal: 10 "positive" and 10 "negative" word ids
NEGATIVE_WORDS = np.arange(600, 610)


def pad(data_list, pad_length):
    """The seed's padding: keep the last ``pad_length`` tokens, or left-pad with 1."""
    padded_list = data_list.copy()
    if len(data_list) > pad_length:
        padded_list = data_list[-pad_length:]
    if len(data_list) < pad_length:
        padded_list = [1] * (pad_length - len(data_list)) + data_list
    return padded_list


def synthetic_texts(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` token-id texts (n, MAX_LEN) and 0/1 labels (n, 1), half of them positive."""
    ids = np.arange(2, MAX_WORDS)
    zipf = 1.0 / (ids - 1.0)  # word k is about k times rarer than the most frequent word
    zipf /= zipf.sum()
    labels = rng.permutation(np.arange(n) % 2)
    rows = []
    for label in labels:
        length = int(rng.integers(60, 300))
        words = rng.choice(ids, size=length, p=zipf)
        own, other = (POSITIVE_WORDS, NEGATIVE_WORDS) if label else (NEGATIVE_WORDS, POSITIVE_WORDS)
        slots = rng.choice(length, size=length // 10 + 2, replace=False)
        words[slots[:-2]] = rng.choice(own, size=len(slots) - 2)  # about 10% of the words
        words[slots[-2:]] = rng.choice(other, size=2)  # noise: two words of the other class
        rows.append(pad(words.tolist(), MAX_LEN))
    features = torch.tensor(rows, dtype=torch.long)
    return features, torch.tensor(labels, dtype=torch.float32).reshape(-1, 1)


class Net(Model):

    def __init__(self):
        super().__init__()

        # With padding_idx set, the padding token's embedding stays the zero vector during training
        self.embedding = nn.Embedding(num_embeddings=MAX_WORDS, embedding_dim=3, padding_idx=1)
        self.conv = nn.Sequential()
        self.conv.add_module("conv_1", nn.Conv1d(in_channels=3, out_channels=16, kernel_size=5))
        self.conv.add_module("pool_1", nn.MaxPool1d(kernel_size=2))
        self.conv.add_module("relu_1", nn.ReLU())
        self.conv.add_module("conv_2", nn.Conv1d(in_channels=16, out_channels=128, kernel_size=2))
        self.conv.add_module("pool_2", nn.MaxPool1d(kernel_size=2))
        self.conv.add_module("relu_2", nn.ReLU())

        self.dense = nn.Sequential()
        self.dense.add_module("flatten", nn.Flatten())
        self.dense.add_module("linear", nn.Linear(6144, 1))
        self.dense.add_module("sigmoid", nn.Sigmoid())

    def forward(self, x):
        x = self.embedding(x).transpose(1, 2)
        x = self.conv(x)
        y = self.dense(x)
        return y


def accuracy(y_pred, y_true):
    y_pred = torch.where(y_pred > 0.5, torch.ones_like(y_pred, dtype=torch.float32),
                         torch.zeros_like(y_pred, dtype=torch.float32))
    acc = torch.mean(1 - torch.abs(y_true - y_pred))
    return acc


def main(epochs: int | None = None, quick: bool = False, seed: int = SEED) -> dict[str, Any]:
    """Train on synthetic texts; return dfhistory, the summary text, evaluate's dict and the predictions."""
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else EPOCHS
    torch.manual_seed(seed)
    np.random.seed(seed)
    rng = np.random.default_rng(seed)

    x_train, y_train = synthetic_texts(N_TRAIN, rng)
    x_test, y_test = synthetic_texts(N_TEST, rng)
    # The seed reads one file per sample with num_workers=4; these tensors are
    # in memory, so the main process loads them faster (num_workers=0).
    dl_train = DataLoader(TensorDataset(x_train, y_train), batch_size=BATCH_SIZE, shuffle=True)
    dl_test = DataLoader(TensorDataset(x_test, y_test), batch_size=BATCH_SIZE)

    model = Net()
    print(model)
    summary_text = model.summary(input_shape=(200,), input_dtype=torch.LongTensor)

    model.compile(loss_func=nn.BCELoss(), optimizer=torch.optim.Adagrad(model.parameters(), lr=0.02),
                  metrics_dict={"accuracy": accuracy})
    dfhistory = model.fit(epochs, dl_train, dl_val=dl_test, log_step_freq=200)
    print(dfhistory)

    evaluation = model.evaluate(dl_test)
    print("\nevaluate:", {k: round(v, 4) for k, v in evaluation.items()})
    predictions = model.predict(dl_test)
    print("predict:", tuple(predictions.shape), "first five:", [round(p, 3) for p in predictions[:5, 0].tolist()],
          "labels:", y_test[:5, 0].int().tolist())
    return {"dfhistory": dfhistory, "summary": summary_text, "evaluation": evaluation,
            "predictions": predictions}


if __name__ == "__main__":
    # A model this small runs about as fast on one CPU thread, and one thread does
    # not stall when other programs share the cores (several threads can, badly).
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs to train (default {EPOCHS})")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_EPOCHS} epochs")
    args = parser.parse_args()
    main(epochs=args.epochs, quick=args.quick)
