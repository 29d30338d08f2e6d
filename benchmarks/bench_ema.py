"""bench_ema: what an EMA update costs next to the training step it follows.

What it measures
    Milliseconds of torchvision's ResNet-18 (10 classes) on random 3x64x64 images, batch 8, on the CPU
    with at most 2 threads:

    * ``training step``: forward, cross-entropy, backward and an SGD (momentum 0.9) step, the hand loop;
    * ``EMA update``: :meth:`kerastorch.averaging.WeightAverage.update`, what ``kt.callbacks.EMA`` runs
      after each optimizer step (one ``torch._foreach_lerp_`` over the 62 parameter tensors, 11.2 M floats);
      ``update_every=4``: the same, amortized over the 4 steps it spans;
    * ``fit step`` / ``fit step + EMA``: ``model.fit`` on the same data without and with
      ``callbacks=[EMA()]``, per training step (the callback's whole cost: hook, counters and update).

How it is timed
    Each row runs ``--steps`` steps per repeat after a warm-up; the table shows the minimum over
    ``--repeats`` repeats (the least disturbed on a shared machine), the fit rows interleaved so that
    both see the same machine. The share column is the row's time over the training step's
    (the fit rows: the difference between them over ``fit step``). Target: EMA under 3% of the step.

How to read it
    The update is memory-bound: it reads the average and the weights and writes the average (12 bytes
    per parameter), about 60% of the traffic of SGD-with-momentum's own step (20 bytes). Its share
    therefore grows with parameters per unit of compute: ResNet-18 on 8 small images is a hard case.

Usage
    OMP_NUM_THREADS=2 python benchmarks/bench_ema.py [--steps 10] [--repeats 5] [--json out.json] [--skip-fit]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")  # before torch is imported

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

import kerastorch as kt  # noqa: E402
from kerastorch.averaging import WeightAverage  # noqa: E402

BATCH, SIZE, TARGET = 8, 64, 0.03


def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def timed(run, steps: int) -> float:
    """Milliseconds per step of ``run()`` called ``steps`` times."""
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return (time.perf_counter() - start) * 1000 / steps


def hand_rows(x: torch.Tensor, y: torch.Tensor, steps: int, repeats: int) -> tuple[float, float]:
    model = resnet().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    average = WeightAverage(model, "ema")
    update = lambda: average.update(0.001)  # noqa: E731
    step(), update()  # warm-up: allocations, first kernels
    pairs = [(timed(step, steps), timed(update, steps)) for _ in range(repeats)]  # interleaved: the same load
    return min(p[0] for p in pairs), min(p[1] for p in pairs)


def fit_rows(x: torch.Tensor, y: torch.Tensor, steps: int, repeats: int) -> tuple[float, float]:
    xs, ys = x.repeat(steps, 1, 1, 1), y.repeat(steps)
    models = {}
    for name in ("plain", "ema"):
        model = kt.Model.wrap(resnet())
        model.compile(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), "cross_entropy", device="cpu")
        models[name] = model

    def fit(name: str) -> float:
        callbacks = [kt.callbacks.EMA(final_weights="raw")] if name == "ema" else []
        start = time.perf_counter()
        models[name].fit(xs, ys, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
        return (time.perf_counter() - start) * 1000 / steps

    fit("plain"), fit("ema")  # warm-up
    samples: dict[str, list[float]] = {"plain": [], "ema": []}
    for round_index in range(repeats):
        for name in (("plain", "ema") if round_index % 2 == 0 else ("ema", "plain")):
            samples[name].append(fit(name))
    return min(samples["plain"]), min(samples["ema"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--skip-fit", action="store_true", help="only the hand loop's rows (quicker)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, int(os.environ["OMP_NUM_THREADS"])))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    step_ms, update_ms = hand_rows(x, y, args.steps, args.repeats)
    rows = [("training step (hand loop)", step_ms, None), ("EMA update", update_ms, update_ms / step_ms),
            ("EMA, update_every=4", update_ms / 4, update_ms / 4 / step_ms)]
    if not args.skip_fit:
        fit_ms, fit_ema_ms = fit_rows(x, y, args.steps, args.repeats)
        rows += [("fit step", fit_ms, None), ("fit step + EMA", fit_ema_ms, (fit_ema_ms - fit_ms) / fit_ms)]
    print(f"ResNet-18, batch {BATCH}x3x{SIZE}x{SIZE}, CPU, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; min of {args.repeats} repeats of {args.steps} steps")
    print(f"{'row':<28}{'ms/step':>10}{'share':>9}")
    for name, ms, share in rows:
        print(f"{name:<28}{ms:>10.2f}{'' if share is None else f'{share:>8.1%}':>9}")
    verdict = "PASS" if update_ms / step_ms < TARGET else "FAIL"
    print(f"target: EMA update under {TARGET:.0%} of the training step: {verdict} ({update_ms / step_ms:.1%})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": [{"name": n, "ms_per_step": ms, "share": s} for n, ms, s in rows],
                       "threads": torch.get_num_threads(), "verdict": verdict}, f, indent=2)


if __name__ == "__main__":
    main()
