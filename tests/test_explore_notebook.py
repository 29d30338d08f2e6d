"""examples/explore.ipynb: executed headless with nbclient, and as stored (what GitHub or nbviewer shows)."""
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "examples" / "explore.ipynb"


@pytest.fixture(scope="module")
def executed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=600, store_widget_state=True,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    return nb


def outputs(nb):
    return [(i, out) for i, cell in enumerate(nb.cells) if cell.cell_type == "code" for out in cell.outputs]


def texts(out):
    if out.output_type == "stream":
        return [out.text]
    return [v if isinstance(v, str) else json.dumps(v) for k, v in out.get("data", {}).items() if k != "image/png"]


@pytest.mark.slow
def test_no_error_and_nothing_on_stderr(executed):
    assert [i for i, out in outputs(executed) if out.output_type == "error"] == []
    assert [out.text for _, out in outputs(executed) if out.output_type == "stream" and out.name == "stderr"] == []


@pytest.mark.slow
def test_no_progress_bar_is_left_in_a_failed_state(executed):
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "FloatProgressModel"]
    assert bars, "the notebook shows widget bars (ipywidgets is installed)"
    assert [b for b in bars if b.get("bar_style") == "danger"] == []
    finished = [b for b in bars if b.get("bar_style") == "success"]  # evaluate's bar stays, finished
    assert finished and all(b["value"] == b["max"] for b in finished)


@pytest.mark.slow
def test_the_summary_table_shows_once_as_html_with_the_text_beside_it(executed):
    shown = [out for _, out in outputs(executed) if any("Total params" in text for text in texts(out))]
    assert len(shown) == 1 and shown[0].output_type == "display_data"
    assert shown[0].data["text/html"].startswith('<table class="kerastorch-summary">')
    assert shown[0].data["text/plain"].startswith("-" * 64)  # the printed text, for viewers without HTML


@pytest.mark.slow
def test_images_and_one_growing_epoch_table(executed):
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    fit_cell = next(cell for cell in code if "history = model.fit" in cell.source)
    images = [out for out in fit_cell.outputs if "image/png" in out.get("data", {})]
    assert len(images) == 1  # the live plot: one figure, updated in place
    tables = [out for out in fit_cell.outputs if "kerastorch-epochs" in out.get("data", {}).get("text/html", "")]
    assert len(tables) == 1 and tables[0]["data"]["text/html"].count("<tr>") == 1 + 8
    all_images = [out for _, out in outputs(executed) if "image/png" in out.get("data", {})]
    assert len(all_images) == 5  # lr_find's plot, the live plot, plot_history, the confusion matrix, top losses


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def stored_without_widgets():
    """The stored notebook as a viewer without widget state sees it: no widget views, no widget metadata."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.metadata.pop("widgets", None)
    for _, out in outputs(nb):
        out.get("data", {}).pop(WIDGET_VIEW, None)
    return nb


def test_the_stored_fit_cell_shows_the_final_bar_without_widget_state():
    nb = stored_without_widgets()
    fit_cell = next(cell for cell in nb.cells if cell.cell_type == "code" and "history = model.fit" in cell.source)
    bars = [out.data for out in fit_cell.outputs if "Epoch 8/8" in out.get("data", {}).get("text/plain", "")]
    assert len(bars) == 1, "the widget's stored fallback is the last epoch's bar"
    plain, page = bars[0]["text/plain"], bars[0]["text/html"]
    count = re.search(r"Epoch 8/8: 100%\|\S*\| (\d+)/(\d+) ", plain)
    assert count and count[1] == count[2] == "22", plain  # 1400 samples in batches of 64: 22 of 22, not 0%
    assert '<progress value="22" max="22"></progress> 22/22' in page and " 0%" not in plain + page
    assert "loss=" in plain and "accuracy=" in plain  # the epoch's values beside the bar


def test_the_stored_lr_find_suggestion_is_the_lr_the_epoch_table_shows():
    nb = stored_without_widgets()
    shown = {text for _, out in outputs(nb) for text in texts(out)}
    finder = next(text for text in shown if text.startswith("LRFinderResult("))
    suggestion = re.search(r"suggestion=(\d\.\d\de[-+]\d\d),", finder)[1]  # three significant digits
    tables = [text for text in shown if re.match(r"\+[-+]+\n\|\s+epoch \|", text)]  # both fits' epoch tables
    lrs = {line.split("|")[-2].strip() for table in tables for line in table.splitlines()
           if re.match(r"\|\s+\d+ \|", line)}  # the last column of each epoch row
    assert len(tables) == 2 and lrs == {"0.0115"} and float(suggestion) == 0.0115
