"""bench_peers: kerastorch against a hand loop and other training frameworks.

What it measures
    Microseconds per training step, and samples per second, of contenders that
    train the same ``nn.Module`` (deep copies of one template: identical
    initial weights) on the same data with the same batch size, loss, Adam
    optimizer and an accuracy metric:

    * ``hand(DataLoader)``              the hand-written loop (see bench_core): the
      baseline of the ratio columns;
    * ``kerastorch fit(DataLoader)``    and ``kerastorch fit(x, y)`` (in-memory tensors);
    * ``lightning Trainer.fit``         a LightningModule logging loss and accuracy
      per epoch; ``Trainer(max_epochs, logger=False, enable_checkpointing=False,
      enable_progress_bar=False, enable_model_summary=False)``;
    * ``poutyne fit_generator``         ``poutyne.Model(network, optimizer, loss,
      batch_metrics=[accuracy]).fit_generator(loader, verbose=False)``;
    * ``keras fit (torch backend)``     Keras 3 with ``KERAS_BACKEND=torch``: a
      ``Sequential`` holding a ``TorchModuleWrapper`` of the same module,
      ``fit(x_numpy, y_numpy, batch_size, epochs, verbose=0)``.

    Peers come from the ``bench`` extra (``pip install kerastorch[bench]``); a
    peer that does not import is listed as skipped. Workloads: the seed's
    two-ring MLP (batch 100), LeNet on random 3x32x32 images (batch 64) and
    torchvision's ResNet-18 (num_classes=10) on 256 random 3x32x32 images
    (batch 64, 4 steps an epoch: CPUs are slow at it, and short rounds are steadier).

How it is timed
    One process; one warm-up epoch per contender, then interleaved rounds
    (``--rounds`` times a per-workload factor, see ``ROUND_FACTOR``) of
    ``--epochs`` epochs each. Since a peer's ``fit`` is a black box,
    every contender (hand loop included) is timed the same way: wall time of
    whole epochs, from the framework's own epoch-begin hook to its epoch-end
    hook (epoch metrics already read), divided by the steps. What a call spends
    outside its epochs (building a Trainer, set-up, teardown, for Lightning its
    epoch-end metric reduction) is the ``call overhead`` column, per call.
    ``torch.set_num_threads(1)`` by default (``--threads``).

    ``--device cuda`` runs the same rows on the GPU (in-memory tensors moved to
    the GPU first, DataLoaders pinned) and adds, for the image workloads, rows
    for bf16 and fp16 mixed precision (``compile(precision=...)``),
    channels_last and ``torch.compile`` wherever ``Model.compile`` has an option
    for them; a hand-loop row (``hand(slicing)``, data already on the GPU) gives
    the reference for each, and a kerastorch option that does not exist yet is
    listed as skipped. On CPU only the fp32 rows run (``--extra-rows`` forces
    the extra rows on CPU, as a smoke test).

How to read it
    ``x hand`` is the per-step cost relative to the hand loop over a DataLoader:
    below 1 is faster (in-memory slicing beats per-sample collate), above 1 is
    framework overhead. ``samples/s`` is images per second for the image
    workloads. The last-epoch column shows each contender's logged loss and
    accuracy, to see that all of them trained the same problem.

    Targets, printed as PASS/FAIL under the tables, from *paired* ratios: in
    each round every contender runs back to back, so the ratio of two
    contenders' samples from the same round is mostly free of the slow spells
    of a shared machine; the target uses the median of those per-round ratios
    and also prints in how many rounds kerastorch was the faster one, with a
    one-sided sign-test p-value (below 0.05: not a coin flip). Per workload:
    ``kerastorch fit(DataLoader)`` at most 1.05x ``hand(DataLoader)``, and
    faster (below 1.00x) than each peer's row. On compute-bound workloads
    (ResNet-18 on a CPU) the frameworks differ by far less than the noise: read
    the win count and p-value there before the median.

    Wall time on a shared machine drifts, counts do not: each contender also
    runs one epoch while every Python function call (``sys.setprofile``) and
    every aten operator call (a ``TorchDispatchMode``) is counted, per step and
    without per-call set-up (``work_per_step``). ``aten ops/step`` is the tensor
    work: for kerastorch it must be the hand loop's (at most 1.02x: a few
    bookkeeping ops); ``py calls/step`` is the framework's Python overhead
    (most of a DataLoader row's calls are the DataLoader's own per-sample
    indexing and collate): kerastorch's must be below every peer's. These two
    targets are deterministic.

Usage
    python benchmarks/bench_peers.py [--rounds 11] [--epochs N] [--device cpu|cuda] [--json out.json] [--quick]
"""
from __future__ import annotations

import inspect
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torchvision  # noqa: E402

import _peers  # noqa: E402  (sets KERAS_BACKEND=torch before anything imports keras)
import kerastorch as kt  # noqa: E402
from _harness import (  # noqa: E402
    Comparison,
    Row,
    Target,
    base_parser,
    epochs_only,
    fmt,
    interleave,
    paired_target,
    print_rows,
    rows_for,
    setup,
    work_per_step,
    write_json,
)
from _workloads import (  # noqa: E402
    KerastorchFit,
    Workload,
    hand_dataloader,
    hand_slicing,
    images,
    lenet_workload,
    ring_workload,
    seeded,
)

BASELINE = "hand(DataLoader)"
# Rounds per workload = --rounds x this factor. The MLP's steps are the noisiest (mostly Python);
# ResNet-18's rounds are kept short (4 steps an epoch) and numerous, because this machine's speed
# drifts by 20-30% over tens of seconds and only contenders timed close together cancel it.
ROUND_FACTOR = {"two-ring MLP": 3, "LeNet 3x32x32": 2, "ResNet-18 3x32x32": 3}


def resnet_workload(samples: int = 256, epochs: int = 1) -> Workload:
    x, y = images(samples, seed=3)
    return Workload("ResNet-18 3x32x32", seeded(lambda: torchvision.models.resnet18(num_classes=10)),
                    x, y, batch_size=64, task="multiclass", lr=1e-3, epochs=epochs)


def core_contenders(workload: Workload, device: torch.device, peers: list[str], notes: list[str]) -> list:
    """The fp32 rows: hand loop, kerastorch both ways, and each installed peer."""
    racers = [hand_dataloader(workload, device),
              # The fastest hand loop over in-memory tensors: one permutation per epoch, one gather, slices,
              # the metric kept on the device (the yardstick of fit(x, y) and of fit(DataLoader(TensorDataset))).
              hand_slicing(workload, device),
              KerastorchFit("kerastorch fit(DataLoader)", workload, "loader", device),
              KerastorchFit("kerastorch fit(x, y)", workload, "tensors", device)]
    for peer in peers:
        try:
            racers.append(_peers.PEER_CLASSES[peer](workload, device))
        except Exception as err:  # noqa: BLE001 - one broken peer must not stop the others
            notes.append(f"{workload.name}: {peer}: could not be set up ({type(err).__name__}: {str(err)[:200]})")
    return racers


def installed_peers(notes: list[str]) -> list[str]:
    peers = []
    for peer in _peers.PEER_CLASSES:
        reason = _peers.missing(peer)
        if reason is None:
            peers.append(peer)
        else:
            notes.append(f"{peer}: {reason}")
    return peers


def compile_options() -> set[str]:
    """Named parameters of Model.compile (``**extra`` would swallow unknown ones silently)."""
    parameters = inspect.signature(kt.Model.compile).parameters.values()
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD}


def extra_contenders(workload: Workload, device: torch.device, notes: list[str]) -> list:
    """Mixed precision, channels_last and torch.compile rows (image workloads)."""
    options, racers = compile_options(), []
    for label, dtype in (("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)):
        if dtype == torch.float16 and device.type != "cuda":
            notes.append(f"{workload.name}: {label}: skipped (fp16 autocast needs CUDA)")
            continue
        racers.append(hand_slicing(workload, device, name=f"hand(slicing) {label}", precision=dtype))
        if "precision" in options:
            racers.append(KerastorchFit(f"kerastorch fit(x, y) {label}", workload, "tensors", device,
                                        compile_kwargs={"precision": label}))
    racers.append(hand_slicing(workload, device, name="hand(slicing) channels_last", channels_last=True))
    layout = next((name for name in ("channels_last", "memory_format") if name in options), None)
    if layout is None:
        notes.append(f"{workload.name}: kerastorch channels_last: skipped (Model.compile has no "
                     "channels_last / memory_format option yet)")
    else:
        value = True if layout == "channels_last" else torch.channels_last
        racers.append(KerastorchFit("kerastorch fit(x, y) channels_last", workload, "tensors", device,
                                    compile_kwargs={layout: value}))
    racers.append(hand_slicing(workload, device, name="hand(slicing) torch.compile", compiled=True))
    if "jit_compile" in options:
        racers.append(KerastorchFit("kerastorch fit(x, y) jit_compile", workload, "tensors", device,
                                    compile_kwargs={"jit_compile": True}))
    else:
        notes.append(f"{workload.name}: kerastorch torch.compile: skipped (Model.compile has no "
                     "jit_compile option yet)")
    return racers


def samples_per_second(workload: Workload, row: Row) -> float:
    """From the median step time and the mean batch size (images/s for the image workloads)."""
    return len(workload.x) / workload.steps_per_epoch * 1e6 / row.median


def call_overhead_ms(row: Row) -> float:
    """Median over rounds of the time a call spends outside its epochs."""
    calls, epochs = row.extra["call_seconds"], row.extra["epoch_seconds"]
    return statistics.median(total - sum(times) for total, times in zip(calls, epochs, strict=False)) * 1e3


def targets_for(table: list[Row], peers: list[str]) -> list[Target]:
    """The acceptance checks of one workload's table (see "How to read it")."""
    by_name = {row.contender: row for row in table}
    ours, name = by_name.get("kerastorch fit(DataLoader)"), table[0].workload
    if ours is None:  # its warm-up failed: the failure is among the notes
        return [Target(f"{name}: kerastorch fit(DataLoader) did not run", float("nan"), 1.05, False)]
    hand = by_name[BASELINE]
    targets = [paired_target(f"{name}: kerastorch fit(DataLoader) vs {BASELINE} <= 1.05x",
                             Comparison(ours, hand), 1.05),
               count_target(f"{name}: kerastorch fit(DataLoader) does the hand loop's tensor work "
                            "(aten ops/step <= 1.02x)", ours, hand, "aten_ops_per_step", 1.02)]
    slicing = by_name.get("hand(slicing)")
    if slicing is not None:  # issue 18's yardstick: the fastest hand loop over the same in-memory tensors
        targets.append(paired_target(f"{name}: kerastorch fit(DataLoader) vs hand(slicing) <= 1.05x",
                                     Comparison(ours, slicing), 1.05))
    for peer in peers:
        row = by_name.get(_peers.PEER_CLASSES[peer].label)
        if row is not None:
            targets.append(paired_target(f"{name}: kerastorch fit(DataLoader) faster than {row.contender}",
                                         Comparison(ours, row), 1.00, strict=True))
            targets.append(count_target(f"{name}: kerastorch fit(DataLoader) makes fewer Python calls per "
                                        f"step than {row.contender}", ours, row, "python_calls_per_step",
                                        1.00, strict=True))
    return targets


def count_target(description: str, row: Row, reference: Row, key: str, limit: float,
                 strict: bool = False) -> Target:
    """``row``'s count per step over ``reference``'s (see ``work_per_step``): deterministic, no noise."""
    value = row.extra[key] / reference.extra[key]
    return Target(f"{description} [{row.extra[key]:,.1f} vs {reference.extra[key]:,.1f}]", value, limit,
                  value < limit if strict else value <= limit)


def parse_args():
    parser = base_parser(__doc__, rounds=11)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--extra-rows", action="store_true",
                        help="add the mixed-precision / channels_last / torch.compile rows on CPU too")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    return args


def main() -> None:
    args = parse_args()
    setup(args)
    _peers.quiet()
    device = torch.device(args.device)
    workloads = [ring_workload(epochs=2), lenet_workload(samples=256 if args.quick else 2048),
                 resnet_workload(samples=128 if args.quick else 256)]
    rows, notes, targets = [], [], []
    peers = installed_peers(notes)
    for workload in workloads:
        epochs, rounds = args.epochs or workload.epochs, args.rounds * ROUND_FACTOR.get(workload.name, 1)
        print(f"# {workload.name}: {len(workload.x)} samples, batch {workload.batch_size}, "
              f"{workload.steps_per_epoch} steps/epoch, {rounds} rounds of {epochs} epoch(s)", file=sys.stderr)
        racers = core_contenders(workload, device, peers, notes)
        if (device.type == "cuda" or args.extra_rows) and workload.x.dim() == 4:
            racers += extra_contenders(workload, device, notes)
        timings = interleave(racers, rounds, epochs, args.threads, failures=notes)
        table = rows_for(workload.name, racers, timings, epochs, BASELINE, epochs_only)
        counted = {racer.name: work_per_step(racer) for racer in racers if racer.name in timings}
        for row in table:
            row.extra["samples_per_second"] = round(samples_per_second(workload, row), 1)
            row.extra["call_overhead_ms"] = round(call_overhead_ms(row), 3)
            row.extra.update(counted[row.contender])
        rows.append((workload, table))
        targets += targets_for(table, peers)
    print()
    print(f"# device {device}; us/step from whole epochs (epoch hooks); call overhead = per fit call, "
          "outside epochs; rounds: "
          + ", ".join(f"{workload.name} {len(table[0].samples)}" for workload, table in rows))
    for _, table in rows:
        print_rows(table, "hand", extra_columns=[
            ("samples/s", lambda row: fmt(row.extra["samples_per_second"], 0)),
            ("call overhead ms", lambda row: fmt(row.extra["call_overhead_ms"], 2)),
            ("py calls/step", lambda row: fmt(row.extra["python_calls_per_step"], 0)),
            ("aten ops/step", lambda row: fmt(row.extra["aten_ops_per_step"], 1)),
            ("faults/step", lambda row: fmt(row.extra["page_faults_per_step"], 0))])
        print()
    for note in notes:
        print(f"note: {note}")
    for target in targets:
        print(target.line())
    write_json(args.json, "bench_peers", args, [row for _, table in rows for row in table],
               targets=targets, notes=notes)


if __name__ == "__main__":
    main()
