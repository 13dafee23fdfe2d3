"""What several processes cost and give on the CPU (gloo): run by hand, never in CI; the figures are in BENCHMARKS.md.

    python benchmarks/distributed_benchmark.py --gather-samples 50000 1000000 --epochs-data sample_data/digits \
        --decode-images 256

1. gather: the per-epoch combine of the per-sample measurements (`Processes.combine_rows`, the recorder's five
   (N,) tensors, each process holding its half) in 2 gloo processes, for each N of --gather-samples: the bytes
   each process contributes to the all_gathers and the seconds it takes (median of --repeats), plus the keep-mask
   check. No training: synthetic tensors.
2. epochs: `labelscrub clean` for --epochs epochs on --epochs-data with each --layouts entry PxT: P processes
   (torchrun when P > 1) of T threads each, the per-process batch --batch-size / P so the global batch is the same:
   the mean seconds of a training epoch (run.json's train_seconds; decoding and start-up excluded). The default
   compares 1 process with every core, 2 processes with half of them each, and 1 process with 1 thread.
3. decode: the decoding path under torchrun (local rank 0 decodes into the memory-mapped file every process maps)
   on --decode-images synthetic JPEGs of --decode-source-side x 3/4 of it pixels, decoded at --image-size: images
   per second, and the file's size, N x 3 x S x S bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from labelscrub.distributed import start
from labelscrub.images import decode_all
from labelscrub.sources import LabeledImages

ROOT = Path(__file__).resolve().parent.parent
# The recorder's per-sample tensors: loss, margin, decoy loss, mean class loss (float32) and prediction (int64).
FLOAT_FIELDS = ("losses", "margin", "decoy_loss", "mean_class_loss")


def main() -> None:
    args = _arguments()
    if "gather" in args.parts:
        for count in args.gather_samples:
            print(json.dumps({"part": "gather", **gather_cost(count, args.repeats)}), flush=True)
    if "epochs" in args.parts:
        for layout in args.layouts:
            processes, threads = map(int, layout.split("x"))
            print(json.dumps({"part": "epochs", **epoch_seconds(Path(args.epochs_data), processes, threads, args)}),
                  flush=True)
    if "decode" in args.parts:
        print(json.dumps({"part": "decode", **decode_throughput(args.decode_images, args.decode_source_side,
                                                                  args.image_size)}), flush=True)


def gather_cost(count: int, repeats: int) -> dict:
    """Seconds and bytes of one epoch's combine of `count` samples' measurements in 2 gloo processes."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as scratch:
        context = multiprocessing.get_context("spawn")
        children = [context.Process(target=_gather_child, args=(rank, port, count, repeats, scratch))
                    for rank in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join()
            if child.exitcode != 0:
                raise SystemExit(f"a gather process failed with exit code {child.exitcode}")
        return json.loads((Path(scratch) / "rank0.json").read_text())


def _gather_child(rank: int, port: int, count: int, repeats: int, scratch: str) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with start("cpu") as processes:
        mine = torch.from_numpy(processes.share(np.arange(count)))
        tensors = {name: torch.full((count,), float("nan")) for name in FLOAT_FIELDS}
        for tensor in tensors.values():
            tensor[mine] = torch.rand(len(mine))
        tensors["predicted"] = torch.full((count,), -1, dtype=torch.int64)
        tensors["predicted"][mine] = torch.randint(0, 1000, (len(mine),))
        seconds, check_seconds = [], []
        for _ in range(repeats + 1):  # the first, untimed, connects the processes
            processes.stats.bytes = 0
            started = time.perf_counter()
            processes.combine_rows(tensors, count, mine)
            seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            processes.check_same(np.ones(count, dtype=bool), 0)
            check_seconds.append(time.perf_counter() - started)
        result = {"samples": count, "processes": 2, "bytes_per_process": processes.stats.bytes,
                  "seconds": statistics.median(seconds[1:]), "keep_check_seconds": statistics.median(check_seconds[1:])}
    (Path(scratch) / f"rank{rank}.json").write_text(json.dumps(result))


def epoch_seconds(data: Path, processes: int, threads: int, args: argparse.Namespace) -> dict:
    """Mean training-epoch seconds of a short clean by `processes` processes of `threads` threads each."""
    batch = args.batch_size // processes
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        clean = ["-m", "labelscrub", "clean", str(data), "--out", str(out), "--epochs", str(args.epochs),
                 "--batch-size", str(batch), "--lr", str(args.lr), "--rho-max", "0.2", "--device", "cpu",
                 "--no-audit", "--quiet"]
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
        command = [sys.executable, *(launcher if processes > 1 else []), *clean]
        environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        subprocess.run(command, env=environment, check=True, capture_output=True, text=True)
        summary = json.loads((out / "run.json").read_text())
    epochs = summary["epochs"]
    return {"processes": processes, "threads_per_process": threads, "batch_per_process": batch,
            "samples": summary["counts"]["trainable"], "epochs": len(epochs),
            "epoch_seconds": sum(epoch["train_seconds"] for epoch in epochs) / len(epochs),
            "gather_seconds_per_epoch": (summary["distributed"] or {}).get("gather_seconds_per_epoch", 0.0)}


def decode_throughput(count: int, source_side: int, size: int) -> dict:
    """Images per second of local rank 0's decoding into the memory-mapped file, and the file's bytes."""
    encoded = [_photo_like_jpeg(index, source_side) for index in range(count)]
    images = LabeledImages(kind="folder", location=Path("synthetic"), sample_ids=[str(i) for i in range(count)],
                           labels=np.zeros(count, dtype=np.int64), class_names=["a"],
                           iter_encoded=lambda: ((index, data, None) for index, data in enumerate(encoded)))
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "node0-train.npy"
        started = time.perf_counter()
        pixels, errors = decode_all(images, size, memory_budget_bytes=0, spill_path=path)
        pixels.flush()
        seconds = time.perf_counter() - started
        assert not any(errors) and isinstance(pixels, np.memmap)
        file_bytes = path.stat().st_size
    return {"images": count, "source": f"{source_side}x{source_side * 3 // 4} JPEG",
            "jpeg_kilobytes": round(sum(map(len, encoded)) / count / 1e3, 1), "side": size,
            "images_per_second": count / seconds, "file_bytes": file_bytes,
            "formula_bytes": count * 3 * size * size, "cores": os.cpu_count()}


def _photo_like_jpeg(seed: int, side: int) -> bytes:
    """A JPEG with a photo's mix of smooth regions and texture (pure noise compresses and decodes unlike photos)."""
    generator = np.random.default_rng(seed)
    coarse = generator.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((side, side * 3 // 4), Image.BICUBIC)
    texture = generator.normal(0, 12, size=(side * 3 // 4, side, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + texture, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("gather", "epochs", "decode"),
                        default=["gather", "epochs", "decode"])
    parser.add_argument("--gather-samples", type=int, nargs="+", default=[50_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5, help="timed combines per sample count (median)")
    parser.add_argument("--epochs-data", default=str(ROOT / "sample_data" / "digits"))
    parser.add_argument("--epochs", type=int, default=2)
    cores = os.cpu_count() or 1
    parser.add_argument("--layouts", nargs="+", default=[f"1x{cores}", f"2x{max(1, cores // 2)}", "1x1"],
                        help="PxT: P processes of T threads each")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch: per process, batch / processes")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--decode-images", type=int, default=256)
    parser.add_argument("--decode-source-side", type=int, default=500, help="JPEG width; height is 3/4 of it")
    parser.add_argument("--image-size", type=int, default=224, help="decoded side S")
    return parser.parse_args()


if __name__ == "__main__":
    main()
