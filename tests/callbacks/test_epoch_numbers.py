"""Callbacks number epochs as model.history does: on across fit calls, so a second fit overwrites nothing."""
import torch

from kerastorch.callbacks import CSVLogger, ModelCheckpoint, TensorBoard
from support import TinyNet


def model_and_data():
    torch.manual_seed(0)
    model = TinyNet()
    model.compile("sgd", "mse", device="cpu")
    return model, torch.randn(8, 2), torch.randn(8, 1)


def test_csv_rows_and_checkpoint_names_continue_in_a_second_fit(tmp_path):
    model, x, y = model_and_data()
    callbacks = [CSVLogger(tmp_path / "log.csv", append=True), ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"))]
    model.fit(x, y, epochs=2, verbose=0, callbacks=callbacks)
    model.fit(x, y, epochs=3, verbose=0, callbacks=callbacks)
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["epoch", "1", "2", "3", "4", "5"]
    assert sorted(p.name for p in tmp_path.glob("ep*.pt")) == ["ep1.pt", "ep2.pt", "ep3.pt", "ep4.pt", "ep5.pt"]
    assert model.history["epoch"].tolist() == [1, 2, 3, 4, 5]


def test_tensorboard_steps_continue_in_a_second_fit(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, x, y = model_and_data()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[TensorBoard(tmp_path)])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[TensorBoard(tmp_path)])
    events = EventAccumulator(str(tmp_path / "train"))
    events.Reload()
    assert [event.step for event in events.Scalars("epoch_loss")] == [1, 2, 3, 4]
