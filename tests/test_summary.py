"""Tests for kerastorch.summary: exact tables, parameter counts, inputs and errors."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchinfo
from torch import nn

from kerastorch.summary import SummaryText, summary

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>; KERASTORCH_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("KERASTORCH_UPDATE_GOLDEN") == "1":
        path.write_text(text + "\n")
    assert text == path.read_text().rstrip("\n")


def rows(text: str) -> list[list[str]]:
    """Table body split into [name, shape, params], between the two '=' rules."""
    lines = text.splitlines()
    first, second = [i for i, line in enumerate(lines) if set(line) == {"="}]
    pattern = re.compile(r"^\s*(.+?)\s{2,}(\[.*\]|--)\s+([\d,]+)$")
    return [list(pattern.match(line).groups()) for line in lines[first + 1:second]]


def stat(text: str, label: str) -> str:
    return next(line.split(": ")[1] for line in text.splitlines() if line.startswith(label))


class DNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 4)
        self.fc2 = nn.Linear(4, 8)
        self.fc3 = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return nn.Sigmoid()(self.fc3(x))  # made in forward: unregistered, no row


class TextCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10000, 3, padding_idx=1)
        self.conv = nn.Sequential(
            nn.Conv1d(3, 16, 5), nn.MaxPool1d(2), nn.ReLU(),
            nn.Conv1d(16, 128, 2), nn.MaxPool1d(2), nn.ReLU())
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(6144, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.conv(self.embedding(x).transpose(1, 2)))


class SharedLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.fc(x)))


class ScaledModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.scale = nn.Parameter(torch.ones(3))  # on the parent, not on a leaf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 4)
        self.b = nn.Linear(3, 4)
        self.head = nn.Linear(8, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.a(a), self.b(b)], dim=1))


def test_dnn_matches_torchsummary_table_exactly():
    check_golden("summary_dnn.txt", summary(DNN(), input_shape=(2,), print_fn=None))


def test_text_cnn_rows_and_golden():
    text = summary(TextCNN(), input_shape=(200,), input_dtype=torch.LongTensor, print_fn=None)
    assert rows(text) == [
        ["Embedding-1", "[-1, 200, 3]", "30,000"], ["Conv1d-2", "[-1, 16, 196]", "256"],
        ["MaxPool1d-3", "[-1, 16, 98]", "0"], ["ReLU-4", "[-1, 16, 98]", "0"],
        ["Conv1d-5", "[-1, 128, 97]", "4,224"], ["MaxPool1d-6", "[-1, 128, 48]", "0"],
        ["ReLU-7", "[-1, 128, 48]", "0"], ["Flatten-8", "[-1, 6144]", "0"],
        ["Linear-9", "[-1, 1]", "6,145"], ["Sigmoid-10", "[-1, 1]", "0"]]
    assert stat(text, "Total params") == "40,625"
    # int64 input: 200 * 8 bytes.
    assert stat(text, "Input size (MB)") == f"{200 * 8 / 1024**2:0.6f}"
    check_golden("summary_textcnn.txt", text)


def test_text_cnn_frozen_embedding_split():
    net = TextCNN()
    net.embedding.weight.requires_grad_(False)
    text = summary(net, input_shape=(200,), input_dtype=torch.int64, print_fn=None)
    assert stat(text, "Total params") == "40,625"
    assert stat(text, "Trainable params") == "10,625"
    assert stat(text, "Non-trainable params") == "30,000"
    check_golden("summary_textcnn_frozen.txt", text)


def test_resnet18_total_matches_torchinfo_and_parameters():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(weights=None)
    text = summary(net, input_shape=(3, 224, 224), print_fn=None)
    info = torchinfo.summary(net, input_size=(1, 3, 224, 224), verbose=0, device="cpu")
    assert sum(p.numel() for p in net.parameters()) == info.total_params == 11_689_512
    assert stat(text, "Total params") == "11,689,512"
    assert sum(int(r[2].replace(",", "")) for r in rows(text)) == 11_689_512
    assert rows(text)[-1] == ["Linear-57", "[-1, 1000]", "513,000"]


def test_shared_layer_shown_twice_counted_once():
    text = summary(SharedLinear(), input_shape=(4,), print_fn=None)
    assert rows(text) == [["Linear-1", "[-1, 4]", "20"], ["Linear-2 (shared)", "[-1, 4]", "0"]]
    assert stat(text, "Total params") == "20"


def test_tied_weights_counted_once():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.out = nn.Linear(4, 10, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.emb(x))

    text = summary(Tied(), input_shape=(3,), input_dtype=torch.long, print_fn=None)
    assert rows(text) == [["Embedding-1", "[-1, 3, 4]", "40"],
                          ["Linear-2 (shared)", "[-1, 3, 10]", "0"]]
    assert stat(text, "Total params") == "40"  # torchinfo itself reports 80 here


def test_parameter_on_parent_is_counted():
    text = summary(ScaledModel(), input_shape=(2,), print_fn=None)
    assert rows(text) == [["Linear-1", "[-1, 3]", "9"], ["ScaledModel (own params)", "--", "3"]]
    assert stat(text, "Total params") == "12"


def test_unused_layer_is_counted_and_labelled():
    class WithSpare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(2, 2)
            self.spare = nn.Linear(2, 5)  # registered but never called

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    text = summary(WithSpare(), input_shape=(2,), print_fn=None)
    assert rows(text) == [["Linear-1", "[-1, 2]", "6"], ["Linear (not called)", "--", "15"]]
    assert stat(text, "Total params") == "21"


def test_multiple_inputs_by_shape_and_per_input_dtype():
    text = summary(TwoInputs(), input_shape=[(2,), (3,)], print_fn=None)
    assert rows(text) == [["Linear-1", "[-1, 4]", "12"], ["Linear-2", "[-1, 4]", "16"],
                          ["Linear-3", "[-1, 1]", "9"]]
    assert stat(text, "Input size (MB)") == f"{5 * 4 / 1024**2:0.6f}"

    class IndexTimesWeight(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.e = nn.Embedding(1, 2)

        def forward(self, i: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return self.e(i) * w

    text = summary(IndexTimesWeight(), input_shape=[(3,), (3, 1)],
                   input_dtype=[torch.LongTensor, torch.float32], print_fn=None)
    assert rows(text) == [["Embedding-1", "[-1, 3, 2]", "2"]]
    assert stat(text, "Input size (MB)") == f"{(3 * 8 + 3 * 4) / 1024**2:0.6f}"


def test_dict_and_tuple_input_data():
    t1, t2 = torch.rand(5, 2), torch.rand(5, 3)
    text = summary(TwoInputs(), input_data={"a": t1, "b": t2}, print_fn=None)
    assert [r[1] for r in rows(text)] == ["[-1, 4]", "[-1, 4]", "[-1, 1]"]
    assert summary(TwoInputs(), input_data=(t1, t2), print_fn=None) == text


def test_integer_inputs_are_valid_indices_and_batch_size_scales_input():
    # Embedding(1, ...) accepts only index 0: random ints would fail.
    text = summary(nn.Embedding(1, 2), input_shape=(7,), input_dtype=torch.long,
                   batch_size=4, print_fn=None)
    assert rows(text) == [["Embedding-1", "[-1, 7, 2]", "2"]]
    assert stat(text, "Input size (MB)") == f"{4 * 7 * 8 / 1024**2:0.6f}"
    assert stat(text, "Forward/backward pass size (MB)") == f"{2 * 4 * 7 * 2 * 4 / 1024**2:0.6f}"


def test_tuple_output_shows_first_tensor():
    text = summary(nn.LSTM(3, 4, batch_first=True), input_shape=(5, 3), print_fn=None)
    assert rows(text) == [["LSTM-1", "[-1, 5, 4]", "144"]]


def test_depth_folds_deeper_modules_and_rows_add_up():
    net = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU())))
    full = summary(net, input_shape=(2,), print_fn=None)
    assert [r[0] for r in rows(full)] == ["Linear-1", "Linear-2", "ReLU-3"]
    folded = summary(net, input_shape=(2,), depth=1, print_fn=None)
    assert rows(folded) == [["Linear-1", "[-1, 3]", "9"], ["Sequential-2", "[-1, 4]", "16"]]
    assert stat(folded, "Total params") == stat(full, "Total params") == "25"


def test_long_names_widen_columns_and_stay_aligned():
    class AVeryLongCustomLayerNameIndeed(nn.Linear):
        pass

    text = summary(AVeryLongCustomLayerNameIndeed(3, 2), input_shape=(3,), print_fn=None)
    lines = text.splitlines()
    name = "AVeryLongCustomLayerNameIndeed-1"
    assert lines[3] == f"{name}  {'[-1, 2]':>25} {'8':>15}"
    assert len(lines[1]) == len(lines[3]) == len(lines[0]) - 1
    assert lines[1].endswith("Output Shape         Param #")


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"needs `input_shape` or `input_data`.*neither"):
        summary(DNN(), print_fn=None)
    with pytest.raises(ValueError, match=r"needs `input_shape` or `input_data`.*both"):
        summary(DNN(), input_shape=(2,), input_data=torch.rand(1, 2), print_fn=None)
    with pytest.raises(TypeError, match=r"input_dtype.*'int'"):
        summary(DNN(), input_shape=(2,), input_dtype="int", print_fn=None)
    with pytest.raises(TypeError, match="input_dtype"):
        summary(DNN(), input_shape=(2,), input_dtype=torch.ones(1), print_fn=None)
    with pytest.raises(ValueError, match="input_dtype has 1 entries"):
        summary(TwoInputs(), input_shape=[(2,), (3,)], input_dtype=[torch.float32])
    with pytest.raises(ValueError, match="positive ints"):
        summary(DNN(), input_shape=(0,), print_fn=None)


def test_train_and_eval_flags_restored_per_module():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout(0.5))
    net.train()
    net[1].eval()  # a frozen BatchNorm inside a training model
    summary(net, input_shape=(2,), print_fn=None)
    assert [m.training for m in net.modules()] == [True, True, False, True]
    net.eval()
    summary(net, input_shape=(2,), print_fn=None)
    assert not any(m.training for m in net.modules())


def test_side_effects_rng_and_torchinfo_cache():
    from torchinfo import torchinfo as impl

    net = DNN()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    summary(net, input_shape=(2,), print_fn=None)
    # The dummy inputs come from a private generator: the global stream is untouched.
    assert torch.equal(torch.rand(3), expected)
    assert "DNN" not in impl._cached_forward_pass  # no lingering reference to the model


def test_print_fn(capsys):
    text = summary(DNN(), input_shape=(2,), print_fn=None)
    assert capsys.readouterr().out == ""
    assert text.startswith("-" * 64)
    assert summary(DNN(), input_shape=(2,)) == text
    assert capsys.readouterr().out == text + "\n"
    seen: list[str] = []
    summary(DNN(), input_shape=(2,), print_fn=seen.append)
    assert seen == [text]


def test_a_printed_summary_is_not_echoed_again(capsys):
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    text = summary(net, input_shape=(2,))
    printed = capsys.readouterr().out
    assert printed == str(text) + "\n" and "Total params: 17" in text
    assert repr(text) == "<model summary: printed above; str() gives the text>"
    shown = []
    import IPython.display
    original = IPython.display.display
    IPython.display.display = lambda *a, **k: shown.append(a)
    try:
        text._ipython_display_()  # a notebook cell ending in model.summary(): nothing more
        quiet = summary(net, input_shape=(2,), print_fn=None)
        quiet._ipython_display_()  # not printed: the notebook shows it, once
    finally:
        IPython.display.display = original
    assert len(shown) == 1 and shown[0][0]["text/plain"] == str(quiet)
    assert shown[0][0]["text/html"] == quiet._repr_html_() and repr(quiet) == str(quiet)


def test_the_html_summary_is_a_table_of_the_same_rows_and_totals_and_the_text_is_unchanged():
    text = summary(DNN(), input_shape=(2,), print_fn=None)
    check_golden("summary_dnn.txt", str(text))  # the printed text is the golden table, as before
    page = text._repr_html_()
    assert page.startswith('<table class="kerastorch-summary"><thead><tr><th>Layer (type)</th><th>Output Shape</th>')
    cells = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td[^>]*>(.*?)</td></tr>", page)
    assert cells == [("Linear-1", "[-1, 4]", "12"), ("Linear-2", "[-1, 8]", "40"), ("Linear-3", "[-1, 1]", "9")]
    assert cells == [tuple(row) for row in rows(text)]  # the text's rows, one for one
    totals = re.findall(r'<th colspan="2" style="text-align: left">(.*?)</th><td[^>]*>(.*?)</td>', page)
    assert totals == [(label, stat(text, label)) for label in (
        "Total params", "Trainable params", "Non-trainable params", "Input size (MB)",
        "Forward/backward pass size (MB)", "Params size (MB)", "Estimated Total Size (MB)")]
    assert totals[0] == ("Total params", "61")
    shared = summary(SharedLinear(), input_shape=(4,), print_fn=None)._repr_html_()  # names are escaped
    assert "<td>Linear-2 (shared)</td><td>[-1, 4]</td>" in shared
    assert SummaryText("a < b")._repr_html_() == "<pre>a &lt; b</pre>"  # a bare string: the text, preformatted
