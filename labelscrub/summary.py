"""What a clean run says about itself: run.json, and the `labelscrub` metadata of its report and Parquet manifest.

run.json holds the version, the data and device, the counts (samples, trainable, unreadable, dropped, kept,
relabelled, restored, in the manifest, with a suggestion, classes, held-out samples), the class names, the dropped
samples per class, the noise section (`noise_summary`), notes from reading the data, the first 100 unreadable
samples, the rho schedule, the held-out accuracy, the per-epoch summaries, timings, throughput, the output paths,
the resolved configuration and, under torchrun, the processes (`distributed.Processes.summary`; None otherwise).
The report metadata repeats the version, data, configuration, class names, noise section and epochs, and adds the
planned rho schedule, the normalisation, the method and what `score` means.

Everything here is a pure function of what the run read and what training found: the estimators (noise.py,
mistakes.py, confusion.py) only estimate, and this module words their results for the outputs.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labelscrub.apply import run_manifest
from labelscrub.config import CleanConfig
from labelscrub.measurement import TrainingOutcome
from labelscrub.mistakes import MistakeEstimate, combined_rates, doubt_is_settled
from labelscrub.schedule import rho_schedule
from labelscrub.sources import LabeledImages
from labelscrub.version import __version__

if TYPE_CHECKING:
    import torch

    from labelscrub.confusion import ConfusionEstimate
    from labelscrub.noise import NoiseEstimate


@dataclass(frozen=True)
class Run:
    """What a clean run worked on, besides what training found."""

    data_path: Path  # DATA as the caller gave it
    config: CleanConfig  # resolved
    images: LabeledImages  # the training samples
    heldout: LabeledImages | None
    errors: list[str | None]  # per training sample: why it cannot be read, None where it decoded
    device: torch.device


@dataclass(frozen=True)
class Selection:
    """Per training sample, what the run decided; boolean arrays except `manifest_labels`."""

    eligible: np.ndarray  # readable and labelled: trained and measured
    dropped: np.ndarray  # eligible and left out of the final selection
    rescued: np.ndarray  # dropped, but written to the manifest (relabelling, a suggestion sure enough)
    relabelled: np.ndarray  # rescued under a suggested label other than the given one
    in_manifest: np.ndarray
    manifest_labels: np.ndarray  # int64 class index each sample is written under

    @classmethod
    def of(cls, outcome: TrainingOutcome, labels: np.ndarray, eligible: np.ndarray, *, relabel: bool,
           relabel_confidence: float) -> Selection:
        dropped = eligible & ~outcome.final_kept
        in_manifest, manifest_labels = run_manifest(labels, dropped, outcome.suggested, outcome.suggestion_confidence,
                                                    usable=eligible, relabel=relabel,
                                                    relabel_confidence=relabel_confidence)
        rescued = dropped & in_manifest
        return cls(eligible=eligible, dropped=dropped, rescued=rescued,
                   relabelled=rescued & (manifest_labels != labels), in_manifest=in_manifest,
                   manifest_labels=manifest_labels)


@dataclass(frozen=True)
class Timings:
    load_seconds: float  # reading and decoding the data
    total_seconds: float  # the whole run until run.json is written


def score_meaning(config: CleanConfig) -> str:
    """What the report's `score` column holds, in words, for the report metadata."""
    if config.method == "oneshot":
        return "loss of the ranking model after the warm-up epochs; higher = more likely mislabeled"
    measured = ("cross-entropy of the given label" if config.rank_by == "loss" or config.method == "spl"
                else "log-probability of the best other class minus that of the given label")
    where = ("in the training forward pass (augmented)" if config.loss_pass == "train"
             else "in the probe pass (eval mode, un-augmented)")
    # spl ranks by the loss its threshold reads, never by the smoothed score
    last_only = config.smoothing == 0 or config.method == "spl"
    over = "last epoch" if last_only else f"moving average over epochs (smoothing {config.smoothing:g})"
    return f"{measured}, measured {where}, {over}; higher = more likely mislabeled"


def report_metadata(run: Run, outcome: TrainingOutcome, noise: dict[str, Any]) -> dict[str, Any]:
    config = run.config
    return {
        "labelscrub_version": __version__,
        "data": str(run.data_path.resolve()),  # retrain --compare and its held-out data come from here
        "config": config.to_dict(),
        "class_names": run.images.class_names,
        # with auto, the share each epoch dropped (known only as the run went); else the plan
        "rho_schedule": [summary.rho for summary in outcome.epochs] if config.rho_max == "auto" else rho_schedule(
            config.epochs, rho_max=outcome.rho_max, warmup=config.warmup, ramp=config.ramp),
        "noise": noise,
        "epochs": [dataclasses.asdict(summary) for summary in outcome.epochs],
        "normalization": outcome.normalization,
        "method": config.method,
        "score": score_meaning(config),
    }


def run_summary(run: Run, outcome: TrainingOutcome, selection: Selection, noise: dict[str, Any], timings: Timings,
                outputs: dict[str, Path], *, distributed: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of run.json."""
    images, epochs = run.images, outcome.epochs
    eligible, dropped = selection.eligible, selection.dropped
    dropped_by_class = Counter(images.class_names[label] for label in images.labels[dropped])
    train_seconds = sum(e.train_seconds for e in epochs)
    probe_seconds = sum(e.probe_seconds for e in epochs)
    return {
        "labelscrub_version": __version__,
        "data": str(run.data_path),
        "device": str(run.device),
        "counts": {
            "samples": len(images), "trainable": int(eligible.sum()), "unreadable": int((~eligible).sum()),
            "dropped": int(dropped.sum()), "kept": int((eligible & ~dropped).sum()),
            # --relabel: dropped samples written to the manifest under their suggested label (or, where the
            # suggestion is the given label, under that label)
            "relabelled": int(selection.relabelled.sum()),
            "restored": int((selection.rescued & ~selection.relabelled).sum()),
            "in_manifest": int(selection.in_manifest.sum()),
            "with_suggestion": int((eligible & (outcome.suggested >= 0)).sum()),
            "classes": len(images.class_names), "heldout_samples": len(run.heldout) if run.heldout is not None else 0,
        },
        "class_names": images.class_names,
        "dropped_by_class": {name: dropped_by_class.get(name, 0) for name in images.class_names},
        "noise": noise,
        "notes": images.notes,
        "unreadable_samples": [{"sample_id": sample_id, "error": error}
                               for sample_id, error in zip(images.sample_ids, run.errors) if error][:100],
        "rho_schedule": [e.rho for e in epochs],
        "heldout_accuracy": epochs[-1].heldout_accuracy if epochs else None,
        "epochs": [dataclasses.asdict(e) for e in epochs],
        "timings": {"load_seconds": timings.load_seconds, "train_seconds": train_seconds,
                    "probe_seconds": probe_seconds, "total_seconds": timings.total_seconds},
        "throughput": {
            "train_images_per_second": sum(e.trained for e in epochs) / max(train_seconds, 1e-9),
            # None with the "train" loss pass: there is no separate probe pass to time
            "probe_images_per_second": (int(eligible.sum()) * len(epochs) / probe_seconds) if probe_seconds else None,
        },
        "outputs": {name: str(path) for name, path in outputs.items()},
        "config": run.config.to_dict(),
        "distributed": distributed,
    }


def noise_summary(*, estimate: NoiseEstimate | None, mistakes: MistakeEstimate | None,
                  confusion: ConfusionEstimate | None, rho_max: float, labels: np.ndarray, predicted: np.ndarray,
                  eligible: np.ndarray, dropped: np.ndarray, relabelled: np.ndarray, class_names: list[str]) -> dict:
    """What run.json and the report metadata say about the noise: the estimate, and per class its size, estimated
    rate (the largest of the decoy estimate, the plausible-mistake share where it counts and the confused share),
    the class its confused labels came from, dropped and relabelled counts; plus the noise matrix, the (given label,
    predicted label) counts among dropped samples, as a list of non-zero cells, largest first (a list stays
    readable with many classes)."""
    combined = None if estimate is None else combined_rates(estimate, mistakes)
    classes, sizes, rates = {}, [], []
    for label, name in enumerate(class_names):
        members = eligible & (labels == label)
        spread = None if estimate is None or np.isnan(estimate.per_class[label]) else float(estimate.per_class[label])
        mistaken = None if mistakes is None or np.isnan(mistakes.per_class[label]) else float(mistakes.per_class[label])
        confused = None if confusion is None else float(confusion.share[label])
        source = None if confusion is None or confusion.source[label] < 0 else class_names[confusion.source[label]]
        rate = None if spread is None else max(float(combined[label]), confused or 0.0)
        if rate is not None:
            sizes.append(int(members.sum()))
            rates.append(rate)
        classes[name] = {"samples": int(members.sum()), "estimated_noise_rate": rate,
                         "spread_share": spread, "mistake_share": mistaken,
                         "confused_share": confused, "confused_with": source,
                         "dropped": int((members & dropped).sum()), "relabelled": int((members & relabelled).sum())}
    cells: dict[tuple[int, int], int] = {}
    for given, guess in zip(labels[dropped].tolist(), predicted[dropped].tolist()):
        cells[given, guess] = cells.get((given, guess), 0) + 1
    matrix = [{"given": class_names[given], "predicted": class_names[guess], "count": count}
              for (given, guess), count in sorted(cells.items(), key=lambda item: (-item[1], item[0]))]
    if estimate is None or (confusion is None and mistakes is None):
        overall = None if estimate is None else estimate.overall
    else:
        overall = float(np.dot(sizes, rates) / max(1, sum(sizes)))
    return {
        "estimated_noise_rate": overall,
        "estimated_after_epoch": None if estimate is None else estimate.epoch,
        "spread_noise_rate": None if estimate is None else estimate.overall,
        # the plausible-mistake count (mistakes.py), size-weighted over the classes it read; None: not read
        "mistake_noise_rate": _mistake_rate(mistakes, labels, eligible),
        # the exponent of p(c) the count's reference was read with: higher where the wrong labels look like
        # people's mistakes rather than random ones (mistakes.towards_people)
        "mistake_plausibility": None if mistakes is None else mistakes.plausibility,
        # how evenly the labels the network confidently disagreed with in the count's window spread over the
        # classes: low where they gather on look-alike classes, as people's mistakes do (mistakes.disagreement_evenness)
        "disagreement_evenness": None if mistakes is None or np.isnan(mistakes.evenness) else float(mistakes.evenness),
        # why the decoy estimate was not trusted and capped (None: trusted), and what it read before the cap
        "spread_doubt": None if estimate is None else estimate.doubt,
        # why the final estimate is in doubt: the decoy estimate's doubt, unless the plausible-mistake count
        # replaced it (a decoy estimate doubted only for still falling: mistakes.count_is_used)
        "estimate_doubt": None if estimate is None or doubt_is_settled(estimate, mistakes) else estimate.doubt,
        "uncapped_noise_rate": None if estimate is None else estimate.uncapped,
        "confusion_after_epoch": None if confusion is None else confusion.epoch,
        # per sample the classes besides its label the confusion estimate read, where every class's probability
        # would not fit (confusion.TopLogProbs); None: every class
        "confusion_classes_read": None if confusion is None else confusion.classes_read,
        "rho_max_used": rho_max,
        "classes": classes,
        "noise_matrix": matrix,
    }


def _mistake_rate(mistakes: MistakeEstimate | None, labels: np.ndarray, eligible: np.ndarray) -> float | None:
    if mistakes is None:
        return None
    sizes = np.bincount(labels[eligible], minlength=len(mistakes.per_class))
    read = ~np.isnan(mistakes.per_class)
    return float(np.dot(sizes[read], mistakes.per_class[read]) / max(1, sizes[read].sum())) if read.any() else None
