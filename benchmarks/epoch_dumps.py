"""Keep every epoch's per-sample measurements of a run on planted noise, to try noise-estimate rules offline.

One `labelscrub.clean` run (any method) on planted noise, exactly as the CLI trains it, that also saves after each
epoch every sample's class probabilities, loss, decoy loss, mean class loss and whether the epoch trained on it
(`dumps/epoch-NN.npz`), plus the true and noisy labels and the decoys (`dumps/labels.npz`). An `erm` run trains on
everything, so its dumps hold the same first half as a Step-E run with --rho-max auto of the same seed (which
drops nothing before its estimate) and show how plain training memorises after it; it also gives erm's held-out
accuracy. Run by hand, never in CI:

    OMP_NUM_THREADS=1 python benchmarks/epoch_dumps.py --noise idn40 --method erm --seed 0

`estimate_offline.py` reads the dumps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from noise_benchmark import NOISE_SETTINGS, add_protocol_arguments, dropped_by_row, plant, protocol_recipe, score_by_row

import labelscrub
from labelscrub import methods
from labelscrub.planted import auroc, detection_scores
from labelscrub.task import SampleState, Task
from labelscrub.train import decoy_labels


class _EnoughEpochs(Exception):
    """Raised after the epoch --stop-after names, to end the run there."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise", default="idn40", choices=sorted(NOISE_SETTINGS))
    parser.add_argument("--method", default="erm")
    parser.add_argument("--rho-max", default="auto")
    parser.add_argument("--loss-pass", default="train", choices=["train", "probe"],
                        help="where the dumped measurements come from (clean --loss-pass)")
    add_protocol_arguments(parser)
    parser.add_argument("--out", default=None)
    parser.add_argument("--stop-after", type=int, default=None,
                        help="end the run after this many epochs, on the schedule of --epochs: enough for the "
                        "estimate's window at a fraction of the time; no held-out accuracy then")
    args = parser.parse_args()
    suffix = "" if args.loss_pass == "train" else f"-{args.loss_pass}"
    out = Path(args.out or f"benchmarks/results/dumps/{args.noise}-{args.method}{suffix}-s{args.seed}")
    dumps = out / "dumps"
    dumps.mkdir(parents=True, exist_ok=True)
    rho_max = args.rho_max if args.rho_max == "auto" else float(args.rho_max)

    original = Task.updated
    trained = {}  # the samples the epoch trained on, from train_epoch

    def updated(task: Task, samples: SampleState, epoch: int, measured) -> SampleState:
        np.savez(dumps / f"epoch-{epoch:02d}.npz", probabilities=measured.probabilities.astype(np.float16),
                 losses=measured.losses, decoy_loss=measured.decoy_loss, mean_class_loss=measured.mean_class_loss,
                 kept=trained["kept"])
        if args.stop_after is not None and epoch + 1 >= args.stop_after:
            raise _EnoughEpochs
        return original(task, samples, epoch, measured)

    def keeping_probabilities(measure):
        return lambda *arguments, **options: measure(*arguments, **{**options, "keep_probabilities": True})

    def noting_kept(train_epoch):
        def train(setup, kept, *arguments, **options):
            trained["kept"] = kept.copy()
            return train_epoch(setup, kept, *arguments, **options)
        return train

    Task.updated = updated
    methods.train_epoch = noting_kept(keeping_probabilities(methods.train_epoch))
    methods.probe = keeping_probabilities(methods.probe)  # --loss-pass probe measures in a pass of its own

    with tempfile.TemporaryDirectory(prefix="labelscrub-dumps-") as scratch:
        data, true_labels, noisy = plant(args.noise, args, Path(scratch))
        np.savez(dumps / "labels.npz", true=true_labels, noisy=noisy,
                 decoys=decoy_labels(noisy, int(true_labels.max()) + 1, args.seed))
        try:
            result = labelscrub.clean(data, out / "run", overwrite=True, method=args.method, rho_max=rho_max,
                                      loss_pass=args.loss_pass, **protocol_recipe(args))
        except _EnoughEpochs:
            row = {"noise": args.noise, "method": args.method, "seed": args.seed, "epochs_dumped": args.stop_after,
                   "planted": float((noisy != true_labels).mean())}
            (out / "row.json").write_text(json.dumps(row, indent=2))
            print(json.dumps(row), flush=True)
            return
        report = result.report()
        dropped = dropped_by_row(report, len(noisy))
        score = score_by_row(report, len(noisy))
    noise = result.summary["noise"]
    row = {"noise": args.noise, "method": args.method, "seed": args.seed,
           "planted": float((noisy != true_labels).mean()),
           "estimated": noise["estimated_noise_rate"], "spread": noise["spread_noise_rate"],
           "heldout_accuracy": result.heldout_accuracy, **detection_scores(dropped, noisy != true_labels),
           "auroc": auroc(score, noisy != true_labels)}
    (out / "row.json").write_text(json.dumps(row, indent=2))
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
