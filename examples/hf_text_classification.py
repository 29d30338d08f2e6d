"""Fine-tune a Hugging Face BERT classifier with kerastorch: compile / fit / evaluate / predict, no Trainer.

Everything runs offline: the BERT is built from a small config with random weights and the
tokenizer from a vocabulary file written to a temporary folder; nothing is downloaded. The task
has a known answer: a sentence of random words is positive when it holds the word "alpha".

What it shows:

* ``kt.Model.wrap(BertForSequenceClassification(config))``: the transformers model keeps its
  ``state_dict`` keys, ``save_pretrained`` and ``from_pretrained``;
* a ``datasets.Dataset`` tokenized with ``.map``, ``.with_format("torch")``, batched by a
  ``DataLoader`` with ``DataCollatorWithPadding`` (it renames "label" to "labels");
* ``compile`` without a ``loss``: the model computes its own loss from the batch's "labels",
  and ``metrics=["accuracy"]`` gets the logits and the labels;
* ``fit(train, validation_data=val)``, ``evaluate(val)`` and ``predict`` on sentences without
  labels, which returns the logits.

Run it (a few seconds on a laptop CPU)::

    python examples/hf_text_classification.py            # 8 epochs
    python examples/hf_text_classification.py --quick    # 5 epochs on less data
    python examples/hf_text_classification.py --save-to bert-alpha   # also save_pretrained there
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast, DataCollatorWithPadding

import kerastorch as kt

SEED = 0
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tokenizer() -> BertTokenizerFast:
    """A BERT WordPiece tokenizer over WORDS, from a vocabulary file in a temporary folder (removed after)."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
        return BertTokenizerFast.from_pretrained(folder)


def sentences(count: int, generator: torch.Generator) -> dict[str, list]:
    """``count`` sentences of 3 to 8 random words; every other one holds "alpha" (label 1), the rest do not."""
    texts, labels = [], []
    for index in range(count):
        length = int(torch.randint(3, 9, (1,), generator=generator))
        words = torch.randint(1, len(WORDS), (length,), generator=generator).tolist()  # never "alpha" (index 0)
        label = index % 2
        if label:
            words[int(torch.randint(0, length, (1,), generator=generator))] = 0
        texts.append(" ".join(WORDS[w] for w in words))
        labels.append(label)
    return {"text": texts, "label": labels}


def tokenized(data: dict[str, list], tokenizer: BertTokenizerFast) -> Dataset:
    """Token ids, attention mask and label of each sentence, as tensors (what the collator pads into batches)."""
    dataset = Dataset.from_dict(data).map(lambda batch: tokenizer(batch["text"]), batched=True, remove_columns=["text"])
    return dataset.with_format("torch")


def main(quick: bool = False, epochs: int | None = None, seed: int = SEED, save_to: str | None = None) -> Any:
    """Train and report; returns ``model.history`` (one row per epoch: loss, accuracy, val_loss, val_accuracy, lr)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tokenizer = make_tokenizer()
    train = tokenized(sentences(256 if quick else 1024, generator), tokenizer)
    val = tokenized(sentences(128 if quick else 256, generator), tokenizer)
    collate = DataCollatorWithPadding(tokenizer)  # pads each batch to its longest sentence; "label" -> "labels"
    train_loader = DataLoader(train, batch_size=32, shuffle=True, collate_fn=collate)
    val_loader = DataLoader(val, batch_size=64, collate_fn=collate)

    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2)
    model = kt.Model.wrap(BertForSequenceClassification(config))
    model.compile(optimizer="adamw", optimizer_kwargs={"lr": 3e-3}, metrics=["accuracy"], device="cpu")
    history = model.fit(train_loader, epochs=epochs or (5 if quick else 8), validation_data=val_loader, verbose=2)
    print("evaluate:", {name: round(value, 4) for name, value in model.evaluate(val_loader).items()})

    new = ["alpha beta gamma", "beta gamma delta", "kappa mu alpha iota", "zeta eta theta"]
    unlabeled = DataLoader(tokenized({"text": new}, tokenizer), batch_size=4, collate_fn=collate)
    logits = model.predict(unlabeled)  # no labels: the model's logits, shape (4, 2)
    for text, label in zip(new, logits.argmax(1).tolist(), strict=True):
        print(f"{text!r}: {'holds alpha' if label else 'no alpha'}")
    if save_to is not None:
        model.save_pretrained(save_to)  # BertForSequenceClassification.from_pretrained(save_to) loads it back
        tokenizer.save_pretrained(save_to)
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less data and 5 epochs")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--save-to", default=None, help="a folder for save_pretrained (model and tokenizer)")
    arguments = parser.parse_args()
    main(quick=arguments.quick, epochs=arguments.epochs, save_to=arguments.save_to)
