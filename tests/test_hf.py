"""Hugging Face models and datasets fit like any Keras model (issue 22).

Real components, nothing downloaded: BERT and GPT-2 built from small configs with random weights,
a BERT tokenizer from a vocabulary file written to tmp, a GPT-2 tokenizer from a ``tokenizers``
WordLevel model, ``datasets.Dataset.from_dict(...).with_format("torch")`` batched by a DataLoader
with transformers' collators. Each test asserts a known answer: the task's answer, the hand
loop's weights, ``exp`` of the model's loss, the logits of a plain forward.
"""
import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import kerastorch as kt

transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
tokenizers = pytest.importorskip("tokenizers")
# The modeling classes load lazily and their first use imports most of torch (dynamo, DTensor): here, at collection,
# not inside whichever test builds a model first.
BertForSequenceClassification = transformers.BertForSequenceClassification
GPT2LMHeadModel = transformers.GPT2LMHeadModel

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
SENTENCES = ["the cat sat on the mat", "a dog ran in the park today", "birds sing at dawn",
             "we write small tests for big models"]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hf_text_classification.py"


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models: one thread is as fast, and several slow down when other work shares the cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ builders
@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert-vocab")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(folder))  # a local folder: no download
    assert tokenizer("alpha mu")["input_ids"] == [2, 5, 16, 3]  # [CLS] alpha mu [SEP]: the vocabulary is in use
    return tokenizer


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    words = sorted({word for sentence in SENTENCES for word in sentence.split()})
    vocab = {"[PAD]": 0, "[UNK]": 1, "<eos>": 2, **{word: i + 3 for i, word in enumerate(words)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                                eos_token="<eos>")


def tiny_bert(tokenizer, seed=0, **overrides):
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                                     num_labels=2, **overrides)
    return BertForSequenceClassification(config)


def tiny_gpt2(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
                                     bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config)


def alpha_sentences(count, seed):
    """Sentences of 3 to 8 words; odd ones hold "alpha" (label 1), even ones do not (label 0)."""
    generator = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for index in range(count):
        length = int(torch.randint(3, 9, (1,), generator=generator))
        words = torch.randint(1, len(WORDS), (length,), generator=generator).tolist()
        if index % 2:
            words[int(torch.randint(0, length, (1,), generator=generator))] = 0
        texts.append(" ".join(WORDS[w] for w in words))
        labels.append(index % 2)
    return {"text": texts, "label": labels}


def tokenized(data, tokenizer):
    dataset = datasets.Dataset.from_dict(data)
    return dataset.map(lambda batch: tokenizer(batch["text"]), batched=True, remove_columns=["text"]) \
        .with_format("torch")


def bert_loader(tokenizer, count, seed, batch_size=32, labels=True):
    data = alpha_sentences(count, seed)
    if not labels:
        del data["label"]
    return DataLoader(tokenized(data, tokenizer), batch_size=batch_size,
                      collate_fn=transformers.DataCollatorWithPadding(tokenizer))


def gpt2_loader(tokenizer):
    dataset = tokenized({"text": SENTENCES}, tokenizer)
    return DataLoader(dataset, batch_size=4, collate_fn=transformers.DataCollatorForLanguageModeling(tokenizer,
                                                                                                      mlm=False))


def state(model):
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


# --------------------------------------------------------------------------------------------- tests
@pytest.mark.slow  # a fresh interpreter imports torch: seconds
def test_import_kerastorch_does_not_import_transformers_or_datasets():
    code = "import sys, kerastorch; print(sorted({'transformers', 'datasets', 'tokenizers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_collated_batch_calls_forward_with_its_labels_and_targets_them(bert_tokenizer):
    batch = next(iter(bert_loader(bert_tokenizer, 8, seed=0, batch_size=8)))
    assert type(batch).__name__ == "BatchEncoding"  # a UserDict, not a dict
    moved = kt.data.move_to_device(batch, torch.device("cpu"))
    assert type(moved) is dict and moved.keys() == batch.keys()
    x, y, w = kt.data.unpack_batch(moved)
    assert x.keys() == {"input_ids", "token_type_ids", "attention_mask", "labels"}  # the labels go to forward
    assert y is moved["labels"] and w is None
    assert y.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]


def test_wrap_keeps_the_state_dict_keys_and_the_save_pretrained_round_trip(bert_tokenizer, gpt2_tokenizer,
                                                                           tmp_path):
    for net, loader in ((tiny_bert(bert_tokenizer), bert_loader(bert_tokenizer, 32, seed=0)),
                        (tiny_gpt2(gpt2_tokenizer), gpt2_loader(gpt2_tokenizer))):
        keys = list(net.state_dict())
        model = kt.Model.wrap(net)
        assert list(model.state_dict()) == keys
        model.compile(optimizer="adamw", device="cpu")
        model.fit(loader, epochs=1, verbose=0)
        folder = tmp_path / type(net).__name__
        model.save_pretrained(folder)
        loaded = type(net).from_pretrained(folder)  # the plain transformers class reads what the wrapped one wrote
        assert type(loaded) is type(net) and list(loaded.state_dict()) == keys
        assert all(torch.equal(loaded.state_dict()[key], value) for key, value in model.state_dict().items())
        assert loaded.config.architectures == [type(net).__name__]  # the wrapped class is named as the original


@pytest.mark.slow
def test_a_bert_fine_tune_finds_the_word_alpha(bert_tokenizer):
    model = kt.Model.wrap(tiny_bert(bert_tokenizer))
    model.compile(optimizer="adamw", optimizer_kwargs={"lr": 3e-3}, metrics=["accuracy"], device="cpu")
    train, held_out = bert_loader(bert_tokenizer, 256, seed=1), bert_loader(bert_tokenizer, 128, seed=2, batch_size=64)
    history = model.fit(train, epochs=5, validation_data=held_out, verbose=0)
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    result = model.evaluate(held_out)
    assert result["accuracy"] > 0.95 and result["loss"] < 0.2
    assert history["val_accuracy"].iloc[-1] == pytest.approx(result["accuracy"])


def test_predict_returns_the_logits_with_and_without_labels(bert_tokenizer):
    model = kt.Model.wrap(tiny_bert(bert_tokenizer))
    unlabeled = bert_loader(bert_tokenizer, 20, seed=3, batch_size=8, labels=False)
    logits = model.predict(unlabeled)
    model.eval()
    with torch.no_grad():
        expected = torch.cat([model(**batch).logits for batch in unlabeled])
    assert logits.shape == (20, 2) and torch.allclose(logits, expected, atol=1e-6)
    assert torch.allclose(model.predict(bert_loader(bert_tokenizer, 20, seed=3, batch_size=8)), expected, atol=1e-6)


def test_fit_equals_a_hand_loop_over_the_same_batches(bert_tokenizer):
    """Dropout on, accumulation over 2 batches and norm clipping: the same weights, bit for bit."""
    loader = bert_loader(bert_tokenizer, 96, seed=4, batch_size=16)

    hand_net = tiny_bert(bert_tokenizer)
    optimizer = torch.optim.AdamW(hand_net.parameters(), lr=1e-3)
    torch.manual_seed(5)
    hand_net.train()
    for _ in range(2):
        for index, batch in enumerate(loader):
            (hand_net(**batch).loss / 2).backward()
            if index % 2 == 1:
                torch.nn.utils.clip_grad_norm_(hand_net.parameters(), 1.0, foreach=True)
                optimizer.step()
                optimizer.zero_grad()

    model = kt.Model.wrap(tiny_bert(bert_tokenizer))
    model.compile(optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3), grad_accum_steps=2, grad_clip_norm=1.0,
                  device="cpu")
    torch.manual_seed(5)
    model.fit(loader, epochs=2, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(state(hand_net).values(), state(model).values()))


def test_a_tiny_gpt2_overfits_four_sentences_and_logs_perplexity(gpt2_tokenizer):
    loader = gpt2_loader(gpt2_tokenizer)
    batch = next(iter(loader))
    assert (batch["labels"] == -100).sum() == 4  # padding is left out of the loss
    model = kt.Model.wrap(tiny_gpt2(gpt2_tokenizer))
    model.compile(optimizer="adamw", optimizer_kwargs={"lr": 1e-2}, metrics=["perplexity"], device="cpu")
    history = model.fit(loader, epochs=60, verbose=0)
    assert history["loss"].iloc[-1] < 0.1
    # one batch per epoch: the epoch's perplexity is exp of the step's loss
    assert history["perplexity"].tolist() == pytest.approx(history["loss"].map(torch.tensor).map(torch.exp)
                                                           .map(float).tolist(), rel=1e-5)


def test_perplexity_equals_exp_of_the_model_loss_on_a_batch(gpt2_tokenizer):
    model = tiny_gpt2(gpt2_tokenizer).eval()
    batch = next(iter(gpt2_loader(gpt2_tokenizer)))
    with torch.no_grad():
        output = model(**batch)
    metric = kt.metrics.get("perplexity")
    metric.update(output.logits, batch["labels"])
    assert float(metric.result()) == pytest.approx(float(output.loss.exp()), rel=1e-6)
    wrapped = kt.Model.wrap(model)
    wrapped.compile(metrics=["perplexity"], device="cpu")
    result = wrapped.evaluate(gpt2_loader(gpt2_tokenizer))
    assert result["loss"] == pytest.approx(float(output.loss), rel=1e-6)
    assert result["perplexity"] == pytest.approx(float(output.loss.exp()), rel=1e-6)


def test_a_compiled_loss_wins_over_the_model_loss_with_one_warning_per_fit(bert_tokenizer):
    model = kt.Model.wrap(tiny_bert(bert_tokenizer, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    model.compile(optimizer="sgd", loss="cross_entropy", metrics=["accuracy"], device="cpu")
    loader = bert_loader(bert_tokenizer, 32, seed=6, batch_size=16)
    with pytest.warns(UserWarning, match=r"the compiled loss wins") as record:
        model.fit(loader, epochs=2, validation_data=loader, verbose=0)
    assert sum("compiled loss wins" in str(w.message) for w in record) == 1
    batch = next(iter(loader))
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
    logs = model.test_step(dict(batch))  # the compiled cross entropy of the logits, not the model's loss
    assert float(logs["loss"]) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, batch["labels"])))


def test_a_model_without_labels_and_no_compiled_loss_says_how_to_get_a_loss(bert_tokenizer):
    model = kt.Model.wrap(tiny_bert(bert_tokenizer))
    model.compile(optimizer="adamw", device="cpu")
    before = state(model)
    with pytest.raises(RuntimeError, match=r"No loss was compiled\. Call compile\(loss=\.\.\.\) before "
                                           r"fit/evaluate, or let the model compute its own loss.*'labels' entry.*"
                                           r"Received: output SequenceClassifierOutput \{'logits': tensor \(8, 2\)\}"):
        model.fit(bert_loader(bert_tokenizer, 16, seed=7, batch_size=8, labels=False), verbose=0)
    assert all(torch.equal(before[key], value) for key, value in state(model).items())


def test_a_tuple_output_with_the_loss_first_trains_on_it(bert_tokenizer):
    """``return_dict=False``: forward returns (loss, logits) when given labels."""
    loader = bert_loader(bert_tokenizer, 32, seed=8, batch_size=16)
    as_dict = kt.Model.wrap(tiny_bert(bert_tokenizer, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    as_tuple = kt.Model.wrap(tiny_bert(bert_tokenizer, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                       return_dict=False))
    for model in (as_dict, as_tuple):
        model.compile(optimizer="sgd", optimizer_kwargs={"lr": 0.1}, metrics=["accuracy"], device="cpu")
    first, second = (model.fit(loader, epochs=2, verbose=0) for model in (as_dict, as_tuple))
    assert first[["loss", "accuracy"]].values.tolist() == second[["loss", "accuracy"]].values.tolist()
    assert all(torch.equal(a, b) for a, b in zip(state(as_dict).values(), state(as_tuple).values()))


def test_checkpoint_and_resume_continue_exactly(bert_tokenizer, tmp_path):
    loader = bert_loader(bert_tokenizer, 32, seed=9, batch_size=16)
    straight = kt.Model.wrap(tiny_bert(bert_tokenizer))
    straight.compile(optimizer="adamw", metrics=["accuracy"], device="cpu")
    straight.fit(loader, epochs=2, verbose=0)

    first = kt.Model.wrap(tiny_bert(bert_tokenizer))
    first.compile(optimizer="adamw", metrics=["accuracy"], device="cpu")
    first.fit(loader, epochs=1, verbose=0)
    first.save(tmp_path / "one-epoch.pt")
    resumed = kt.Model.wrap(tiny_bert(bert_tokenizer, seed=1))
    resumed.compile(optimizer="adamw", metrics=["accuracy"], device="cpu")
    history = resumed.fit(loader, epochs=2, verbose=0, resume_from=tmp_path / "one-epoch.pt")
    assert history["loss"].tolist() == straight.history["loss"].tolist()
    assert all(torch.equal(a, b) for a, b in zip(state(straight).values(), state(resumed).values()))


@pytest.mark.slow
def test_the_example_runs_quick_and_finds_alpha(capsys):
    spec = importlib.util.spec_from_file_location("kerastorch_example_hf_text_classification", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no compiled-vs-model loss warning: compile has no loss
        history = module.main(quick=True)
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert history["val_accuracy"].iloc[-1] > 0.95
    out = capsys.readouterr().out
    assert "'alpha beta gamma': holds alpha" in out and "'zeta eta theta': no alpha" in out


def test_accumulation_over_padded_token_batches_has_the_gradient_of_the_whole_batch(gpt2_tokenizer):
    """Two batches of 2 sentences with different numbers of tokens, one window of 2: the gradient of the mean over
    all the tokens of the 4 sentences (the token counts weigh the batches, as transformers' Trainer does)."""
    dataset = tokenized({"text": SENTENCES}, gpt2_tokenizer)
    collator = transformers.DataCollatorForLanguageModeling(gpt2_tokenizer, mlm=False)
    halves = DataLoader(dataset, batch_size=2, collate_fn=collator)
    first, second = list(halves)
    assert (first["labels"][:, 1:] != -100).sum() != (second["labels"][:, 1:] != -100).sum()
    model = kt.Model.wrap(tiny_gpt2(gpt2_tokenizer).double())
    model.compile(optimizer="sgd", device="cpu", grad_accum_steps=2)
    seen = []
    model.optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(
        {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}))
    model.fit(halves, epochs=1, verbose=0)
    reference = tiny_gpt2(gpt2_tokenizer).double()
    reference(**next(iter(DataLoader(dataset, batch_size=4, collate_fn=collator)))).loss.backward()
    assert len(seen) == 1
    for name, parameter in reference.named_parameters():
        # float64, yet GPT-2's attention differs by ~1e-9 between batch shapes; equal weights would be ~1e-3 off
        torch.testing.assert_close(seen[0][name], parameter.grad, rtol=0, atol=1e-6)


def test_predict_of_a_causal_lm_over_batches_of_different_lengths_pads_with_minus_100(gpt2_tokenizer):
    """Batches padded to their own lengths give logits (B, T_batch, V); predict joins them padded to the longest."""
    dataset = tokenized({"text": SENTENCES}, gpt2_tokenizer)
    collator = transformers.DataCollatorForLanguageModeling(gpt2_tokenizer, mlm=False)
    loader = DataLoader(dataset, batch_size=1, collate_fn=collator)
    lengths = [batch["input_ids"].shape[1] for batch in loader]
    assert len(set(lengths)) > 1
    model = kt.Model.wrap(tiny_gpt2(gpt2_tokenizer))
    model.compile(device="cpu")
    logits = model.predict(loader)
    assert tuple(logits.shape) == (4, max(lengths), len(gpt2_tokenizer))
    model.eval()
    for row, (batch, length) in enumerate(zip(loader, lengths, strict=True)):
        with torch.no_grad():
            expected = model(**batch).logits[0]
        torch.testing.assert_close(logits[row, :length], expected)
        assert bool((logits[row, length:] == -100).all())


def test_a_datasets_dataset_is_batched_as_the_trainer_does(bert_tokenizer):
    """``fit(dataset)``: the text column left out, "label" as "labels", each batch padded to its longest row."""
    data = alpha_sentences(64, seed=3)
    dataset = datasets.Dataset.from_dict(data).map(lambda rows: bert_tokenizer(rows["text"]), batched=True)
    model = kt.Model.wrap(tiny_bert(bert_tokenizer))
    model.compile(optimizer="adamw", optimizer_kwargs={"lr": 3e-3}, metrics=["accuracy"], device="cpu")
    seen = []
    original = model.train_step
    model.train_step = lambda batch: seen.append(batch) or original(batch)
    history = model.fit(dataset, batch_size=16, epochs=1, verbose=0)
    assert sorted(seen[0]) == ["attention_mask", "input_ids", "labels", "token_type_ids"]
    first = seen[0]
    lengths = first["attention_mask"].sum(1)
    assert first["input_ids"].shape[1] == int(lengths.max())  # padded to the batch's longest row
    assert bool((first["input_ids"][first["attention_mask"] == 0] == 0).all())
    assert history["loss"].notna().all()
    assert model.predict(dataset.remove_columns("label"), batch_size=16).shape == (64, 2)
