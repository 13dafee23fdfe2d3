"""What cleaning costs: Step-E against plain training at equal epochs, and the data path against the bare network.
Run by hand, never in CI; every ratio it prints is measured within the one run (see BENCHMARKS.md).

    python benchmarks/speed_benchmark.py --data ../shared/datasets/cifar10 --train-per-class 1000 \
        --epochs 10 --stem imagenet --image-size 32

1. Bare network: training steps (forward, backward, SGD) and eval forward passes on random tensors already on the
   device, in the same precision and memory format as a run: the ceiling a run's throughput is compared with.
2. `labelscrub.clean` on the same data with each variant (default: erm, stepe, stepe with the paper's probe pass),
   in turn, `--repeats` times; the fastest repeat of each is kept. Wall time excludes reading and decoding, which
   is the same for every variant and measured once.
3. With `--memory`, one `labelscrub clean` in a child process whose peak resident memory is read from the kernel.

4. With `--cpu-loop`, the whole `clean` (Step-E) in fp32 against bf16 at each of `--sides`, in one run: seconds
   per epoch, training images/s, the measurement of left-out samples, and the share of an epoch each section takes
   (the training step; augmentation, batching, recording and the left-out measurement, timed inside the run by
   loop_profile.py), with each bf16 run's speed-up over fp32 at the same side:

    python benchmarks/speed_benchmark.py --cpu-loop --train-per-class 1000 --epochs 4 --sides 32 64

A variant with the benchmark's own option `host_images=true` keeps its decoded images in host memory on a CUDA
run, as a dataset too large for the GPU's share would be, so the streaming path (batches.py) is timed on small data:

    python benchmarks/speed_benchmark.py --train-per-class 0 --epochs 3 --stem cifar --device cuda \
        --batch-size 512 --variants stepe "stepe:host_images=true" "stepe:host_images=true,loader_workers=0"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

import labelscrub
import labelscrub.decoding
from labelscrub.config import CleanConfig
from labelscrub.model import pick_device
from labelscrub.train import make_setup

sys.path.insert(0, str(Path(__file__).parent))
from loop_profile import SECTIONS, SectionClock, sections_of_training  # noqa: E402
from noise_benchmark import first_per_class, parse_method_spec  # noqa: E402

BARE_STEPS = 30  # timed steps of the bare network, after as many untimed ones


def main() -> None:
    args = _arguments()
    if args.cpu_loop:
        cpu_loop(args)
        return
    device = pick_device(args.device)
    config = CleanConfig(stem=args.stem, image_size=args.image_size, batch_size=args.batch_size,
                         compile=args.compile).resolve(typical_side=args.image_size or 32)
    bare_train, bare_eval = bare_network_throughput(config, device, args.bare_steps)
    print(f"bare network on {device}: train {bare_train:,.0f} img/s, eval forward {bare_eval:,.0f} img/s", flush=True)
    if not args.variants:
        return
    with tempfile.TemporaryDirectory(prefix="labelscrub-speed-") as scratch:
        data = subset(Path(args.data), args.train_per_class, Path(scratch) / "data")
        timings: dict[str, list[dict]] = {spec: [] for spec in args.variants}
        for repeat in range(args.repeats):
            for spec in args.variants:
                method_spec, host_images = split_host_images(spec)
                method, options = parse_method_spec(method_spec)
                with images_kept_on_host() if host_images else contextlib.nullcontext():
                    result = labelscrub.clean(
                        data, Path(scratch) / "runs" / f"{repeat}-{len(timings[spec])}", overwrite=True,
                        method=method, epochs=args.epochs, stem=args.stem, image_size=args.image_size,
                        batch_size=args.batch_size, device=args.device, compile=args.compile, rho_max=args.rho_max,
                        **options)
                measured = summarize(result.summary)
                timings[spec].append(measured)
                print(json.dumps({"variant": spec, "repeat": repeat, **measured}), flush=True)
        rows = [{"variant": spec, **min(runs, key=lambda run: run["seconds"])} for spec, runs in timings.items()]
        reference = rows[0]["seconds"]
        print(f"\n{pq.read_metadata(data / 'train.parquet').num_rows:,} training images, {args.epochs} epochs, "
              f"batch {args.batch_size}, device {device}; fastest of {args.repeats} repeat(s)\n")
        print(table(rows, reference, bare_train))
        if args.memory:
            peak = peak_memory_of_clean(data, args, Path(scratch) / "memory")
            print(f"\npeak resident memory of `labelscrub clean` (1 epoch, child process): {peak / 2**30:.2f} GiB")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/datasets/cifar10", help="folder with train.parquet")
    parser.add_argument("--train-per-class", type=int, default=1000, help="0 = all")
    parser.add_argument("--variants", nargs="*", default=["erm", "stepe", "stepe:loss_pass=probe"],
                        help="methods or METHOD:option=value,... variants; the first is the reference")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rho-max", type=float, default=0.2)
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="also measure the peak memory of a clean")
    parser.add_argument("--bare-steps", type=int, default=BARE_STEPS, help="timed steps of the bare network")
    parser.add_argument("--cpu-loop", action="store_true",
                        help="time the whole clean in fp32 and bf16 on the CPU, with the sections of an epoch")
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 64], help="--cpu-loop: training sides")
    return parser.parse_args()


def cpu_loop(args: argparse.Namespace) -> None:
    """fp32 against bf16 for the whole Step-E clean on the CPU at each side, sections of an epoch included."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="labelscrub-speed-") as scratch:
        data = subset(Path(args.data), args.train_per_class, Path(scratch) / "data")
        images = pq.read_metadata(data / "train.parquet").num_rows
        for side in args.sides:
            for precision in ("fp32", "bf16"):
                bare = CleanConfig(stem=args.stem, image_size=side, batch_size=args.batch_size,
                                   precision=precision).resolve(typical_side=side)
                bare_train, _ = bare_network_throughput(bare, torch.device("cpu"), args.bare_steps)
                clock = SectionClock()
                with sections_of_training(clock):
                    result = labelscrub.clean(
                        data, Path(scratch) / "runs" / f"{side}-{precision}", overwrite=True, method="stepe",
                        epochs=args.epochs, stem=args.stem, image_size=side, batch_size=args.batch_size,
                        device="cpu", rho_max=args.rho_max, precision=precision, audit=False)
                row = {"side": side, "precision": result.summary["config"]["precision"], "bare_train": bare_train,
                       **loop_timings(result.summary, clock.seconds, args.epochs)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{images:,} training images, {args.epochs} epochs of Step-E "
          f"(rho_max {args.rho_max}), batch {args.batch_size}, {torch.get_num_threads()} threads\n")
    print(loop_table(rows))


def loop_timings(summary: dict, sections: dict[str, float], epochs: int) -> dict:
    """Per epoch: seconds, training images/s, and each section's share of the training time (the step is the
    rest); the measurement pass is the left-out samples' forward passes."""
    train_seconds = summary["timings"]["train_seconds"]
    shares = {name: sections.get(name, 0.0) / train_seconds for name in SECTIONS}
    return {"seconds_per_epoch": train_seconds / epochs,
            "train_images_per_second": summary["throughput"]["train_images_per_second"],
            "measurement_seconds_per_epoch": sections.get("left-out measurement", 0.0) / epochs,
            "shares": {"training step": 1.0 - sum(shares.values()), **shares}}


def loop_table(rows: list[dict]) -> str:
    fp32 = {row["side"]: row["seconds_per_epoch"] for row in rows if row["precision"] == "fp32"}
    lines = ["| side | precision | bare step img/s | s / epoch | x fp32 speed | train img/s | "
             "left-out measurement s / epoch | " + " | ".join(f"{name} %" for name in ("training step", *SECTIONS))
             + " |", "| --- " * (7 + 1 + len(SECTIONS)) + "|"]
    for row in rows:
        speedup = fp32.get(row["side"], row["seconds_per_epoch"]) / row["seconds_per_epoch"]
        shares = " | ".join(f"{100 * share:.1f}" for share in row["shares"].values())
        lines.append(f"| {row['side']} | {row['precision']} | {row['bare_train']:,.0f} | "
                     f"{row['seconds_per_epoch']:.1f} | {speedup:.2f} | "
                     f"{row['train_images_per_second']:,.0f} | {row['measurement_seconds_per_epoch']:.1f} | "
                     f"{shares} |")
    return "\n".join(lines)


def split_host_images(spec: str) -> tuple[str, bool]:
    """"stepe:host_images=true,loader_workers=0" -> ("stepe:loader_workers=0", True): the benchmark's own option
    taken out of a variant before the rest is read as labelscrub options."""
    method, _, rest = spec.partition(":")
    pairs = [pair for pair in rest.split(",") if pair]
    host = [pair for pair in pairs if pair.partition("=")[0] == "host_images"]
    if len(host) > 1 or (host and host[0] not in ("host_images=true", "host_images=false")):
        raise SystemExit(f"error: write host_images=true or host_images=false once in {spec!r}")
    others = [pair for pair in pairs if pair not in host]
    return (f"{method}:{','.join(others)}" if others else method), host == ["host_images=true"]


@contextlib.contextmanager
def images_kept_on_host():
    """labelscrub puts decoded images on a CUDA GPU when they take under a quarter of its free memory; this
    stands in for a dataset above that share, whose batches then stream from host memory."""
    place = labelscrub.decoding.to_device
    labelscrub.decoding.to_device = lambda pixels, device: torch.from_numpy(pixels)
    try:
        yield
    finally:
        labelscrub.decoding.to_device = place


def subset(source: Path, per_class: int, target: Path) -> Path:
    """The first `per_class` training images of every class (all with 0), as a Parquet folder."""
    table = pq.read_table(source / "train.parquet")
    rows = first_per_class(table.column("label").to_numpy(), per_class)
    target.mkdir(parents=True)
    pq.write_table(table.take(pa.array(rows)).replace_schema_metadata(table.schema.metadata),
                   target / "train.parquet")
    return target


def bare_network_throughput(config: CleanConfig, device: torch.device, steps: int = BARE_STEPS) -> tuple[float, float]:
    """Images per second of training steps and of eval forward passes on ready-made tensors, with the network,
    optimiser, precision and memory format a run gets from `make_setup`."""
    side, batch = config.image_size, config.batch_size
    pixels = torch.zeros(batch, 3, side, side, dtype=torch.uint8, device=device)
    labels = np.random.default_rng(0).integers(0, 10, batch)
    setup = make_setup(pixels, labels, np.ones(batch, dtype=bool), 10, config, device)
    images = torch.randn(batch, 3, side, side, device=device)
    if setup.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    def train_step() -> None:
        with setup.autocast():
            loss = F.cross_entropy(setup.forward(images).float(), setup.labels)
        setup.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        setup.optimizer.step()

    def eval_step() -> None:
        with torch.no_grad(), setup.autocast():
            setup.forward(images)

    setup.model.train()
    train_rate = _rate(train_step, batch, device, steps)
    setup.model.eval()
    return train_rate, _rate(eval_step, batch, device, steps)


def _rate(step, batch: int, device: torch.device, steps: int) -> float:
    for _ in range(steps):
        step()
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return steps * batch / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarize(summary: dict) -> dict:
    timings, throughput = summary["timings"], summary["throughput"]
    return {"seconds": timings["total_seconds"] - timings["load_seconds"],
            "train_seconds": timings["train_seconds"], "probe_seconds": timings["probe_seconds"],
            "train_images_per_second": throughput["train_images_per_second"],
            "probe_images_per_second": throughput["probe_images_per_second"] or 0.0,
            "dropped": summary["counts"]["dropped"]}


def table(rows: list[dict], reference: float, bare_train: float) -> str:
    lines = ["| variant | seconds (train + probe + bookkeeping) | x first | train img/s | of bare network | "
             "probe img/s | probe s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        probe = f"{row['probe_images_per_second']:,.0f}" if row["probe_seconds"] else "no pass"
        lines.append(f"| {row['variant']} | {row['seconds']:.1f} | {row['seconds'] / reference:.3f} | "
                     f"{row['train_images_per_second']:,.0f} | {row['train_images_per_second'] / bare_train:.2f} | "
                     f"{probe} | {row['probe_seconds']:.1f} |")
    return "\n".join(lines)


def peak_memory_of_clean(data: Path, args: argparse.Namespace, out: Path) -> int:
    """Peak resident bytes of one `labelscrub clean` epoch in a child process (ru_maxrss of the children)."""
    command = [sys.executable, "-m", "labelscrub", "clean", str(data), "--out", str(out), "--epochs", "1",
               "--stem", args.stem, "--image-size", str(args.image_size), "--device", args.device, "--quiet"]
    subprocess.run(command, check=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


if __name__ == "__main__":
    main()
