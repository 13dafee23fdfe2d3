"""The one configuration object that crosses from the CLI (or a Python caller) into the library.

`CleanConfig` is frozen; `resolve()` fills the values left to "auto" once the data has been looked at, and the
resolved copy is what gets written, as JSON, into every output file. Each default says its unit or effect.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from labelscrub.errors import LabelscrubError

STEMS = ("auto", "cifar", "imagenet")
MANIFEST_FORMATS = ("csv", "jsonl", "parquet")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "bf16", "fp32")  # see precision.py
METHOD_NAMES = ("stepe", "erm", "truncation", "spl", "oneshot")  # see methods.py
LOSS_PASSES = ("train", "probe")  # see train.py
SELECTIONS = ("global", "per-class")  # see schedule.select_kept
RANKINGS = ("loss", "margin")  # see ranking.py

# Images whose typical side is at most this many pixels are trained at native size with the CIFAR stem.
SMALL_IMAGE_SIDE = 64
# The standard ResNet input side for the ImageNet stem.
IMAGENET_SIDE = 224
# Peak learning rate when the user sets none: REFERENCE_LR at REFERENCE_BATCH samples per step, scaled linearly with
# the batch size (the global one under torchrun: batch size x processes).
REFERENCE_LR = 0.1
REFERENCE_BATCH = 128
# Share of the epochs used for warm-up and for the ramp when the user does not set them.
WARMUP_SHARE = 0.2
RAMP_SHARE = 0.2


@dataclass(frozen=True)
class CleanConfig:
    # --- data ---
    image_column: str | None = None  # Parquet column holding the image; None = found automatically
    label_column: str | None = None  # column holding the label; None = found automatically
    id_column: str | None = None  # column holding a stable sample id; None = "file.parquet:row"
    holdout: str | None = None  # extra held-out data (any input form); None = the split found in DATA, if any
    allow_outside_root: bool = False  # label files may name relative paths outside their folder (../)
    max_bad_fraction: float = 0.1  # stop before training when more than this share of samples cannot be read
    image_memory_gb: float = 4.0  # decoded images beyond this many GB go to a memory-mapped file in the output folder
    # --- model and input ---
    stem: str = "auto"  # "cifar" (3x3 conv, no max-pool), "imagenet" (7x7 stride-2 + max-pool) or "auto"
    image_size: int | None = None  # training side in pixels; None = native side (CIFAR stem) or 224
    augment: bool = True  # padded random crop / random-resized crop plus horizontal flip
    # --- optimisation ---
    epochs: int = 30  # full passes over the kept samples
    batch_size: int = 128  # samples per SGD step, per process under torchrun
    # peak learning rate; None = REFERENCE_LR x batch_size x processes / REFERENCE_BATCH
    lr: float | None = None
    lr_warmup: float = 2.0  # epochs over which the learning rate rises linearly from 0 to its peak
    momentum: float = 0.9  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 penalty on all weights
    # --- which samples train when (methods.py) ---
    method: str = "stepe"  # stepe | erm | truncation | spl | oneshot
    # Step-E schedule (also the drop share of truncation, the start of spl and the cut of oneshot)
    # final share of training samples left out of the gradient updates; "auto" = the noise rate estimated in the
    # warm-up (noise.py), per class with select="per-class"
    rho_max: float | str = "auto"
    warmup: int | None = None  # epochs trained on everything; None = 20% of epochs
    ramp: int | None = None  # epochs over which rho rises linearly to rho_max; None = 20% of epochs
    loss_pass: str = "train"  # "train": losses from the training forward pass; "probe": a separate eval pass
    select: str = "global"  # "global": drop the highest scores overall; "per-class": the same share of every class
    # "margin": best other class over the given one (ranks people's mistakes better than the loss, BENCHMARKS.md);
    # "loss": cross-entropy of the given label
    rank_by: str = "margin"
    smoothing: float = 0.8  # score = smoothing x previous score + (1 - smoothing) x this epoch's value
    # --- run ---
    device: str = "auto"  # "auto" = cuda, then mps, then cpu
    compile: bool = False  # torch.compile the network (CUDA: faster steps after a minute or so of compiling)
    # "bf16": autocast with channels-last; "fp32"; "auto" = bf16 on CUDA and on CPUs with AMX, else fp32.
    # Per-sample measurements are fp32 in both (precision.py).
    precision: str = "auto"
    seed: int = 0  # drives shuffling, augmentation and initialisation
    # processes streaming batches of host-held images to a CUDA GPU (batches.py); None = up to MAX_AUTO_WORKERS when
    # large images (over SMALL_IMAGE_SIDE) stay on the host of a CUDA run, else none. Changes speed only, never results.
    loader_workers: int | None = None
    eval_batch_size: int = 512  # samples per forward pass in the probe and held-out passes
    manifest_format: str | None = None  # csv | jsonl | parquet; None = parquet for Parquet input, csv otherwise
    # the manifest keeps dropped samples that have a sure suggested label, under that label: on CIFAR-10N's worst
    # labels it retrained 0.7-1.4 points above the kept samples alone (3 seeds), level with them on random1 and aggre
    relabel: bool = True
    # ...a suggestion at least this sure: on human noise, less sure ones are right too rarely to beat leaving the
    # sample out (docs/METHOD.md, "Relabelling")
    relabel_confidence: float = 0.95
    # a suggested label needs at least this (moving-average) probability of its class; lower thresholds suggest
    # more wrong classes
    suggest_confidence: float = 0.8

    def __post_init__(self) -> None:
        _check(self.method in METHOD_NAMES,
               f"--method must be one of {', '.join(METHOD_NAMES)}, not {self.method!r}")
        _check(self.loss_pass in LOSS_PASSES,
               f"--loss-pass must be one of {', '.join(LOSS_PASSES)}, not {self.loss_pass!r}")
        _check(self.select in SELECTIONS, f"--select must be one of {', '.join(SELECTIONS)}, not {self.select!r}")
        _check(self.rank_by in RANKINGS, f"--rank-by must be one of {', '.join(RANKINGS)}, not {self.rank_by!r}")
        _check(0.0 < self.suggest_confidence <= 1.0,
               f"--suggest-confidence must be in (0, 1], not {self.suggest_confidence}")
        _check(0.0 <= self.relabel_confidence <= 1.0,
               f"--relabel-confidence must be in [0, 1], not {self.relabel_confidence}")
        _check(0.0 <= self.smoothing < 1.0, f"--smoothing must be in [0, 1), not {self.smoothing}")
        _check(self.stem in STEMS, f"--stem must be one of {', '.join(STEMS)}, not {self.stem!r}")
        _check(self.device in DEVICES or self.device.startswith("cuda:"),
               f"--device must be one of {', '.join(DEVICES)} (or cuda:N), not {self.device!r}")
        _check(self.precision in PRECISIONS,
               f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        _check(self.manifest_format in (None, *MANIFEST_FORMATS),
               f"--manifest-format must be one of {', '.join(MANIFEST_FORMATS)}, not {self.manifest_format!r}")
        _check(self.epochs >= 1, f"--epochs must be at least 1, not {self.epochs}")
        _check(self.batch_size >= 1, f"--batch-size must be at least 1, not {self.batch_size}")
        _check(self.loader_workers is None or self.loader_workers >= 0,
               f"--loader-workers must be 0 or more, not {self.loader_workers}")
        _check(self.eval_batch_size >= 1, f"eval_batch_size must be at least 1, not {self.eval_batch_size}")
        _check(self.rho_max == "auto" or (isinstance(self.rho_max, int | float) and 0.0 <= self.rho_max < 1.0),
               f"--rho-max must be auto or a number in [0, 1), not {self.rho_max!r}")
        _check(self.warmup is None or self.warmup >= 0, f"--warmup must be >= 0, not {self.warmup}")
        _check(self.ramp is None or self.ramp >= 0, f"--ramp must be >= 0, not {self.ramp}")
        _check(self.lr_warmup >= 0, f"lr_warmup must be >= 0, not {self.lr_warmup}")
        _check(0.0 <= self.max_bad_fraction <= 1.0,
               f"--max-bad-fraction must be in [0, 1], not {self.max_bad_fraction}")
        _check(self.image_memory_gb >= 0, f"image_memory_gb must be >= 0, not {self.image_memory_gb}")
        _check(self.lr is None or self.lr > 0, f"--lr must be positive, not {self.lr}")
        _check(self.image_size is None or self.image_size >= 4,
               f"--image-size must be at least 4, not {self.image_size}")

    def resolve(self, typical_side: int, *, processes: int = 1) -> CleanConfig:
        """Return a copy with every "auto"/None training value replaced by the value actually used.

        `typical_side` is the median image side of the training data, in pixels; `processes` is how many
        processes each take a batch per step (torchrun's WORLD_SIZE), which scales the default learning rate;
        The precision depends on the device, not the data: precision.resolve_precision resolves it.
        """
        stem = self.stem
        if stem == "auto":
            stem = "cifar" if typical_side <= SMALL_IMAGE_SIDE else "imagenet"
        image_size = self.image_size or (typical_side if stem == "cifar" else IMAGENET_SIDE)
        return dataclasses.replace(
            self,
            stem=stem,
            image_size=image_size,
            lr=self.lr if self.lr is not None else default_lr(self.batch_size, processes),
            warmup=self.warmup if self.warmup is not None else max(1, math.floor(WARMUP_SHARE * self.epochs)),
            ramp=self.ramp if self.ramp is not None else max(1, math.floor(RAMP_SHARE * self.epochs)),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CleanConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        # runs written before these options: no relabelling unless asked, then with every suggestion
        values = {"relabel": False, "relabel_confidence": 0.0, **values}
        return cls(**{key: value for key, value in values.items() if key in known})


def default_lr(batch_size: int, processes: int = 1) -> float:
    """The peak learning rate when none is given: linear in the global batch (batch per process x processes)."""
    return REFERENCE_LR * batch_size * processes / REFERENCE_BATCH


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise LabelscrubError(message)
