"""examples/explore.ipynb, executed headless with nbclient: what a notebook user sees, read from the stored outputs."""
import json
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
def test_the_summary_table_shows_once(executed):
    shown = [text for _, out in outputs(executed) for text in texts(out) if "Total params" in text]
    assert len(shown) == 1


@pytest.mark.slow
def test_images_and_one_growing_epoch_table(executed):
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    fit_cell = next(cell for cell in code if "history = model.fit" in cell.source)
    images = [out for out in fit_cell.outputs if "image/png" in out.get("data", {})]
    assert len(images) == 1  # the live plot: one figure, updated in place
    tables = [out for out in fit_cell.outputs if "kerastorch-epochs" in out.get("data", {}).get("text/html", "")]
    assert len(tables) == 1 and tables[0]["data"]["text/html"].count("<tr>") == 1 + 8
    all_images = [out for _, out in outputs(executed) if "image/png" in out.get("data", {})]
    assert len(all_images) >= 3  # lr_find's plot, the live plot, plot_history
