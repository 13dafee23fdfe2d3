"""`retrain()`: train a fresh ResNet-18 on a cleaned manifest and measure it on held-out data.

The recipe comes from the clean run (the `labelscrub` metadata of report.parquet beside the manifest, of the source
run's report when the manifest is an `apply` output, or of a manifest.parquet) with any training options overriding
it; training is plain cross-entropy on every kept sample.
Test data is `test` (any input form, labels taken as true) or the held-out data the clean run found. With
`compare=True` the same recipe and seed also train on every sample of the original input (the noisy baseline).
With `seeds=N` every training is repeated with the seeds seed .. seed+N-1 and the mean and range are reported: one
training moves by about a point from seed to seed, as much as cleaning gains where few labels are wrong.
A checkpoint after every epoch lets `resume=True` continue an interrupted retrain.

Under torchrun (distributed.py) every process trains its share through DistributedDataParallel and measures its
share of the test data; rank 0 alone prepares the output folder, reads and writes the checkpoint and the outputs,
and the other processes return None.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import labelscrub.checkpoint as checkpoint
import labelscrub.distributed as distributed
from labelscrub.apply import source_report
from labelscrub.atomic import outputs_together, write_text
from labelscrub.config import CleanConfig
from labelscrub.decoding import decode_to_device, spill_folder
from labelscrub.distributed import Processes
from labelscrub.errors import LabelscrubError
from labelscrub.failures import watching
from labelscrub.images import typical_side
from labelscrub.manifest import MANIFEST_NAMES
from labelscrub.measurement import EpochSummary
from labelscrub.model import cpu_state_dict, save_model
from labelscrub.outfolder import prepare_out_dir, restart_note
from labelscrub.precision import with_precision
from labelscrub.progress import Progress, decoding
from labelscrub.report import read_report_metadata
from labelscrub.sources import LabeledImages, align_classes, open_data, read_heldout
from labelscrub.train import Setup, make_setup, probe, train_epoch

# Options of the clean run that retrain may override (shared with `clean` in the CLI).
TRAINING_OPTIONS = ("epochs", "batch_size", "lr", "stem", "image_size", "augment", "device", "seed", "compile",
                    "loader_workers", "precision")


@dataclass
class RetrainResult:
    out_dir: Path
    metrics_path: Path
    model_path: Path
    accuracy: float
    baseline_accuracy: float | None  # with compare=True: the same recipe on every original sample
    metrics: dict[str, Any] = field(repr=False)
    # with seeds > 1: per seed its accuracies (and difference), first the seed the saved model trained with
    by_seed: list[SeedOutcome] = field(default_factory=list)

    @property
    def difference(self) -> float | None:
        return None if self.baseline_accuracy is None else self.accuracy - self.baseline_accuracy


@dataclass(frozen=True)
class SeedOutcome:
    seed: int
    accuracy: float
    baseline_accuracy: float | None

    @property
    def difference(self) -> float | None:
        return None if self.baseline_accuracy is None else self.accuracy - self.baseline_accuracy


@dataclass(frozen=True)
class _Plan:
    """What a retrain trains and tests on, and with which recipe."""

    manifest: Path
    metadata: dict[str, Any]  # the clean run's report metadata; empty if there is none
    kept: LabeledImages  # the manifest's samples, in the clean run's classes
    test: LabeledImages
    class_names: list[str]
    config: CleanConfig  # the recipe, resolved
    given: CleanConfig  # the recipe before resolving: its lr None when the default (which follows the processes)
    cleaned_config: CleanConfig  # the recipe for the kept samples: with --equal-steps, more epochs
    compare: bool  # also train the recipe on every original sample (the noisy baseline)
    seeds: int = 1  # each training repeated with the seeds config.seed .. config.seed + seeds - 1

    @property
    def phases(self) -> list[_Phase]:
        """The trainings in order: per seed the cleaned one, then its baseline, so that an interrupted run has
        finished whole pairs."""
        kinds = ("cleaned", "baseline") if self.compare else ("cleaned",)
        return [_Phase(kind, self.config.seed + offset) for offset in range(self.seeds) for kind in kinds]


@dataclass(frozen=True)
class _Phase:
    kind: str  # "cleaned" or "baseline"
    seed: int

    def name(self, first_seed: int) -> str:
        """Its key in the checkpoint: the kind alone for the recipe's own seed, as before --seeds existed."""
        return self.kind if self.seed == first_seed else f"{self.kind} seed {self.seed}"


def retrain(source: str | Path, *, test: str | Path | None = None, out: str | Path | None = None,
            compare: bool = False, equal_steps: bool = False, seeds: int = 1, overwrite: bool = False,
            resume: bool = False, progress: Progress | None = None, **training_options: Any) -> RetrainResult | None:
    """Train on the kept samples of a clean run (its folder, or its manifest) and measure held-out accuracy.
    Under torchrun, processes other than rank 0 return None.

    Example:
        result = labelscrub.retrain("runs/digits", compare=True, epochs=15)
        print(result.accuracy, result.baseline_accuracy)
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise LabelscrubError(f"seeds must be a whole number of at least 1, not {seeds!r}")
    started = time.perf_counter()
    with distributed.start(training_options.get("device") or "auto") as processes, watching(processes):
        # rank 0 checks first: an error in the options, the run or the data is reported once, not by every process
        manifest, metadata, config, out_dir = processes.first_on_main(
            lambda: _source(source, out, training_options))
        resume = processes.from_main(lambda: prepare_out_dir(out_dir, manifest, overwrite, resume=resume,
                                                             restarted=processes.restarts > 0))
        config = with_precision(config, processes.device)
        plan = processes.first_on_main(lambda: _plan(manifest, metadata, config, test=test, equal_steps=equal_steps,
                                                     compare=compare, seeds=seeds, processes=processes.size))
        progress = (progress or Progress()) if processes.is_main else Progress()
        if note := restart_note(processes.restarts, resume, out_dir):
            progress.note(note)
        current = _fingerprint(plan)
        checkpoint.check_same_everywhere(current, processes)
        saved = processes.from_main(lambda: checkpoint.load(out_dir, current)) if resume else None
        plan = processes.first_on_main(lambda: _resumed(plan, saved, processes.size))
        finished = _train_phases(plan, out_dir, current, saved, progress=progress, processes=processes)
        if not processes.is_main:
            return None
    cleaned = finished["cleaned"]["metrics"]
    baseline = finished["baseline"]["metrics"] if compare else None
    metrics = {"test_data": str(plan.test.location), "manifest": str(manifest), "config": plan.config.to_dict(),
               "cleaned": cleaned, "wall_seconds": time.perf_counter() - started,
               "distributed": processes.summary(plan.config)}
    if baseline is not None:
        metrics["noisy_baseline"] = baseline
        metrics["accuracy_difference"] = cleaned["accuracy"] - baseline["accuracy"]
    by_seed = _by_seed(plan, finished) if plan.seeds > 1 else []
    if by_seed:
        metrics["seeds"] = _over_seeds(by_seed)
    model_path, metrics_path = out_dir / "model.pt", out_dir / "metrics.json"
    with outputs_together():
        save_model(finished["cleaned"]["model"], model_path, plan.class_names, plan.config,
                   finished["cleaned"]["normalization"])
        write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    checkpoint.remove(out_dir)
    return RetrainResult(out_dir=out_dir, metrics_path=metrics_path, model_path=model_path,
                         accuracy=cleaned["accuracy"], baseline_accuracy=baseline["accuracy"] if baseline else None,
                         metrics=metrics, by_seed=by_seed)


def _by_seed(plan: _Plan, finished: dict[str, Any]) -> list[SeedOutcome]:
    first = plan.config.seed
    outcomes = []
    for offset in range(plan.seeds):
        seed = first + offset
        cleaned = finished[_Phase("cleaned", seed).name(first)]["metrics"]["accuracy"]
        baseline = finished[_Phase("baseline", seed).name(first)]["metrics"]["accuracy"] if plan.compare else None
        outcomes.append(SeedOutcome(seed, cleaned, baseline))
    return outcomes


def _over_seeds(outcomes: list[SeedOutcome]) -> dict[str, Any]:
    """metrics.json's "seeds": every seed's accuracies, and their mean and range."""
    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "min": float(min(values)), "max": float(max(values))}

    summary: dict[str, Any] = {"per_seed": [dataclasses.asdict(outcome) for outcome in outcomes],
                               "accuracy": spread([outcome.accuracy for outcome in outcomes])}
    if outcomes[0].baseline_accuracy is not None:
        summary["baseline_accuracy"] = spread([outcome.baseline_accuracy for outcome in outcomes])
        summary["difference"] = spread([outcome.difference for outcome in outcomes])
    return summary


def _source(source: str | Path, out: str | Path | None,
            training_options: dict[str, Any]) -> tuple[Path, dict[str, Any], CleanConfig, Path]:
    """The manifest, the clean run's metadata, the recipe with the options applied, and the output folder."""
    unknown = sorted(set(training_options) - set(TRAINING_OPTIONS))
    if unknown:
        raise LabelscrubError(f"unknown option(s) {', '.join(unknown)}; retrain takes {', '.join(TRAINING_OPTIONS)}")
    manifest, metadata = _locate(Path(source))
    config = _recipe(metadata, {k: v for k, v in training_options.items() if v is not None})
    return manifest, metadata, config, Path(out) if out is not None else default_out_dir(source)


def default_out_dir(source: str | Path) -> Path:
    """Where a retrain writes without --out: `retrain` beside the manifest (in the clean run's folder)."""
    source = Path(source)
    return (source if source.is_dir() else source.parent) / "retrain"


def _plan(manifest: Path, metadata: dict[str, Any], config: CleanConfig, *, test: str | Path | None,
          equal_steps: bool, compare: bool, seeds: int = 1, processes: int = 1) -> _Plan:
    kept = open_data(manifest, image_column=config.image_column, label_column=config.label_column,
                     id_column=config.id_column).train
    class_names = metadata.get("class_names") or kept.class_names
    kept = align_classes(kept, class_names)  # a class may have lost every sample to cleaning
    test_set = _test_data(test, metadata, config, class_names)
    given = config
    if config.image_size is None or config.lr is None:
        config = config.resolve(typical_side(kept), processes=processes)
    cleaned_config = _with_equal_steps(config, metadata, kept) if equal_steps else config
    return _Plan(manifest=manifest, metadata=metadata, kept=kept, test=test_set, class_names=class_names,
                 config=config, given=given, cleaned_config=cleaned_config, compare=compare, seeds=seeds)


def _fingerprint(plan: _Plan) -> dict[str, Any]:
    """What a retrain's checkpoint must match to be resumed, and every process must share."""
    return checkpoint.fingerprint(
        data=str(plan.manifest.resolve()), sample_ids=plan.kept.sample_ids, labels=plan.kept.labels,
        config={**checkpoint.as_given(plan.config, plan.given), "test": str(plan.test.location),
                "compare": plan.compare, "cleaned_epochs": plan.cleaned_config.epochs,
                **({"seeds": plan.seeds} if plan.seeds > 1 else {})})


def _resumed(plan: _Plan, saved: dict | None, processes: int) -> _Plan:
    """`plan` continued from the checkpoint `saved` on `processes` processes: with the interrupted run's global
    batch and learning rate (checkpoint.keep_global_batch)."""
    return dataclasses.replace(plan, config=checkpoint.keep_global_batch(plan.config, saved, processes),
                               cleaned_config=checkpoint.keep_global_batch(plan.cleaned_config, saved, processes))


def _train_phases(plan: _Plan, out_dir: Path, current: dict[str, Any], saved: dict | None, *, progress: Progress,
                  processes: Processes) -> dict[str, dict[str, Any]]:
    """Each training of the plan, by its phase name: its metrics, and for the first cleaned one (the model saved)
    its weights and normalisation. Each finished one is kept in the checkpoint (written by rank 0), so a resumed
    --compare or --seeds run does not train it again."""
    config = plan.config
    finished: dict[str, Any] = saved["finished"] if saved else {}
    with spill_folder(out_dir) as cache:
        test = decode_to_device(plan.test, config, cache, "test.npy", processes.device,
                                on_progress=decoding(progress, "test"), processes=processes)[:2]
        for phase in plan.phases:
            name = phase.name(config.seed)
            if name in finished:
                continue
            images = plan.kept if phase.kind == "cleaned" else processes.first_on_main(
                lambda: _original_data(plan.metadata, config, plan.class_names))

            def on_epoch(epoch: int, setup: Setup, name: str = name) -> None:
                if processes.is_main:
                    checkpoint.save(out_dir, {**checkpoint.pack_training(phase=name, epoch=epoch, setup=setup,
                                                                         fingerprint=current), "finished": finished})

            recipe = plan.cleaned_config if phase.kind == "cleaned" else config
            resume_from = saved if saved is not None and saved["phase"] == name else None
            outcome = _fit_and_measure(images, dataclasses.replace(recipe, seed=phase.seed), processes, test,
                                       plan.class_names, cache, progress, resume_from=resume_from, on_epoch=on_epoch)
            # only the first cleaned model is saved: the checkpoint need not carry every seed's weights
            finished[name] = outcome if name == "cleaned" else {"metrics": outcome["metrics"]}
    return finished


def _locate(source: Path) -> tuple[Path, dict[str, Any]]:
    """The manifest to train on and the clean run's metadata (empty if there is none)."""
    if not source.exists():
        raise LabelscrubError(f"{source}: no such file or folder; pass a clean run's folder or its manifest")
    if source.is_dir():
        found = [source / name for name in MANIFEST_NAMES if (source / name).exists()]
        if not found:
            raise LabelscrubError(f"{source}: no manifest.csv/.jsonl/.parquet here; pass the --out folder of "
                                  "`labelscrub clean` or a manifest file")
        manifest = found[0]
    else:
        manifest = source
    candidates = [manifest.parent / "report.parquet", manifest]
    reviewed = source_report(manifest.parent)
    if reviewed is not None:  # an `apply` output: the recipe, held-out data and sample count are its run's
        candidates.insert(0, reviewed)
    for candidate in candidates:
        if candidate.suffix == ".parquet" and candidate.exists():
            metadata = read_report_metadata(candidate)
            if metadata:
                return manifest, metadata
    return manifest, {}


def _recipe(metadata: dict[str, Any], overrides: dict[str, Any]) -> CleanConfig:
    values = dict(metadata.get("config", {}))
    if "batch_size" in overrides and "lr" not in overrides:
        values["lr"] = None  # the learning rate scales with the batch size again
    if "stem" in overrides and "image_size" not in overrides:
        values["image_size"] = None  # the new stem picks its own input size
    values.update(overrides)
    values["method"] = "erm"
    return CleanConfig.from_dict(values)


def _with_equal_steps(config: CleanConfig, metadata: dict[str, Any], kept: LabeledImages) -> CleanConfig:
    """The recipe with its epochs scaled so the kept samples get as many SGD steps as all of the clean run's
    samples would in the recipe's epochs: fewer samples at equal epochs also means fewer steps."""
    classes = (metadata.get("noise") or {}).get("classes")
    if not classes:
        raise LabelscrubError("--equal-steps needs the clean run's report beside the manifest (its sample count); "
                              "pass the clean run's folder")
    trained_before = sum(entry["samples"] for entry in classes.values())
    kept_count = max(1, int((kept.labels >= 0).sum()))
    epochs = max(config.epochs, round(config.epochs * trained_before / kept_count))
    return dataclasses.replace(config, epochs=epochs)


def _test_data(test: str | Path | None, metadata: dict[str, Any], config: CleanConfig,
               class_names: list[str]) -> LabeledImages:
    columns = dict(image_column=config.image_column, label_column=config.label_column, id_column=config.id_column)
    if test is not None:
        return read_heldout(test, class_names, **columns)
    if config.holdout:
        return read_heldout(config.holdout, class_names, **columns)
    data = metadata.get("data")
    heldout = open_data(data, **columns).heldout if data and Path(data).exists() else None
    if heldout is None:
        raise LabelscrubError("no held-out data: the clean run found no val/test split; pass --test DATA")
    return align_classes(heldout, class_names)


def _no_sample(images: LabeledImages) -> None:
    raise LabelscrubError(f"{images.location}: no readable, labelled sample to train on")


def _original_data(metadata: dict[str, Any], config: CleanConfig, class_names: list[str]) -> LabeledImages:
    data = metadata.get("data")
    if not data or not Path(data).exists():
        raise LabelscrubError(f"--compare needs the clean run's original input, which is not found ({data}); "
                              "it trains on every original sample")
    original = open_data(data, image_column=config.image_column, label_column=config.label_column,
                         id_column=config.id_column).train
    return align_classes(original, class_names)


def _fit_and_measure(images: LabeledImages, config: CleanConfig, processes: Processes,
                     test: tuple[torch.Tensor, np.ndarray], class_names: list[str], cache: Path, progress: Progress,
                     *, resume_from: dict | None, on_epoch: Callable[[int, Setup], None]) -> dict[str, Any]:
    """Plain training on every readable sample of `images`, then top-1, per-class accuracy and confusion matrix.
    Returns the metrics with the trained weights and normalisation."""
    started = time.perf_counter()
    pixels, labels, _ = decode_to_device(images, config, cache, "train.npy", processes.device,
                                         on_progress=decoding(progress, "train"), processes=processes)
    eligible = labels >= 0
    if not eligible.any():
        processes.first_on_main(lambda: _no_sample(images))
    setup = make_setup(pixels, labels, eligible, len(class_names), config, processes.device, processes=processes)
    first = 0 if resume_from is None else checkpoint.restore_training(resume_from, setup)
    for epoch in range(first, config.epochs):
        training = train_epoch(setup, eligible, epoch, schedule_epochs=config.epochs, progress=progress)
        train_loss, seconds = training.mean_loss, training.seconds
        on_epoch(epoch, setup)  # saved before the epoch is announced: once seen finished, it can be resumed from
        progress.epoch_done(EpochSummary(
            epoch=epoch, rho=0.0, trained=int(eligible.sum()), dropped=0, train_loss=train_loss,
            probe_loss=float("nan"), heldout_accuracy=None, train_seconds=seconds, probe_seconds=0.0,
            train_images_per_second=int(eligible.sum()) / max(seconds, 1e-9), probe_images_per_second=0.0,
            phase="retrain", skipped_steps=training.skipped_steps), config.epochs)
    test_pixels, test_labels = test
    readable = np.flatnonzero(test_labels >= 0)
    predicted = probe(setup, test_pixels, test_labels, readable).predicted[readable]
    truth = test_labels[readable]
    confusion = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, name in enumerate(class_names)}
    metrics = {
        "accuracy": float((predicted == truth).mean()) if len(readable) else float("nan"),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),  # rows: true class, columns: predicted class
        "class_names": class_names,
        "train_samples": int(eligible.sum()),
        "test_samples": len(readable),
        "epochs": config.epochs,
        "wall_seconds": time.perf_counter() - started,
        "recipe": dataclasses.asdict(config),
    }
    return {"metrics": metrics, "model": cpu_state_dict(setup.model), "normalization": setup.normalization}
