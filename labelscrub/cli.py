"""The command line: a thin view on the library. Each command parses options into keyword arguments, makes one
library call, and turns `LabelscrubError` into a one-line message and a non-zero exit."""

from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path

import click

from labelscrub.apply import apply_decisions
from labelscrub.audit import DEFAULT_PER_CLASS, MAX_SHOWN, write_audit
from labelscrub.batches import MAX_AUTO_WORKERS
from labelscrub.checkpoint import CHECKPOINT_NAME
from labelscrub.config import (
    IMAGENET_SIDE,
    LOSS_PASSES,
    MANIFEST_FORMATS,
    METHOD_NAMES,
    PRECISIONS,
    RAMP_SHARE,
    RANKINGS,
    REFERENCE_BATCH,
    REFERENCE_LR,
    SELECTIONS,
    SMALL_IMAGE_SIDE,
    STEMS,
    WARMUP_SHARE,
    CleanConfig,
)
from labelscrub.distributed import Launch
from labelscrub.errors import LabelscrubError, ProcessStopped, ReportedElsewhere
from labelscrub.pipeline import clean as clean_data
from labelscrub.progress import ConsoleProgress, applied_summary, audit_summary, closing_summary, retrain_summary
from labelscrub.retrain import default_out_dir
from labelscrub.retrain import retrain as retrain_data
from labelscrub.suggest import SUGGEST_EPOCHS
from labelscrub.version import __version__

# Every option's default and its help text come from here, so a default is changed in config.py alone.
DEFAULTS = CleanConfig()


def training_options(*, from_run: bool):
    """Options shared by every command that trains a model, declared once. With `from_run` (retrain) every default
    is "the clean run's value", so only what the user types overrides the recipe."""

    def default(value):
        return None if from_run else value

    def show(help_text: str, value) -> str:
        return help_text + (" [default: the clean run's]" if from_run else f" [default: {value}]")

    options = [
        click.option("--epochs", type=int, default=default(DEFAULTS.epochs),
                     help=show("Training epochs.", DEFAULTS.epochs)),
        click.option("--batch-size", type=int, default=default(DEFAULTS.batch_size),
                     help=show("Samples per SGD step.", DEFAULTS.batch_size)),
        click.option("--lr", type=float, default=default(DEFAULTS.lr),
                     help=show("Peak learning rate.", f"{REFERENCE_LR} x batch-size/{REFERENCE_BATCH}")),
        click.option("--stem", type=click.Choice(STEMS), default=default(DEFAULTS.stem),
                     help=show("ResNet stem: cifar for small images, imagenet for large; auto picks by size.",
                               DEFAULTS.stem)),
        click.option("--image-size", type=int, default=default(DEFAULTS.image_size),
                     help=show("Training side in pixels.", f"native size (cifar stem) or {IMAGENET_SIDE}")),
        click.option("--no-augment", "augment", flag_value=False, default=default(DEFAULTS.augment),
                     help="Train without random crops and flips."),
        click.option("--device", default=default(DEFAULTS.device),
                     help=show("auto, cpu, cuda, cuda:N or mps.", DEFAULTS.device)),
        click.option("--seed", type=int, default=default(DEFAULTS.seed),
                     help=show("Seed for initialisation, order and augmentation.", DEFAULTS.seed)),
        click.option("--loader-workers", type=int, default=default(DEFAULTS.loader_workers),
                     help=show("Processes streaming batches from host memory or the memory-mapped file.",
                               f"up to {MAX_AUTO_WORKERS} when a CUDA GPU trains on large images (over "
                               f"{SMALL_IMAGE_SIDE} px) held by the host, else 0")),
        click.option("--precision", type=click.Choice(PRECISIONS), default=default(DEFAULTS.precision),
                     help=show("bf16 autocast with channels-last, or fp32; auto: bf16 on CUDA and on CPUs with "
                               "native bf16, fp32 elsewhere. Per-sample measurements are fp32.", DEFAULTS.precision)),
        click.option("--compile/--no-compile", "compile", default=default(DEFAULTS.compile),
                     help=show("torch.compile the network (worth it on CUDA for long runs).",
                               "yes" if DEFAULTS.compile else "no")),
    ]

    def decorate(command):
        return functools.reduce(lambda wrapped, option: option(wrapped), reversed(options), command)

    return decorate


class RhoMax(click.ParamType):
    """--rho-max: the word auto, or a number."""

    name = "auto|FLOAT"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "auto":
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither auto nor a number such as 0.2", param, ctx)


@click.group()
@click.version_option(__version__, prog_name="labelscrub")
def cli() -> None:
    """Find mislabeled samples in image-classification datasets and write cleaned label files."""


@cli.command()
@click.argument("data", type=click.Path(path_type=str))
@click.option("--out", "out", type=click.Path(path_type=str), default="labelscrub-out", show_default=True,
              help="Output folder (report.parquet, manifest, model.pt, run.json).")
@click.option("--overwrite", is_flag=True, default=False, help="Replace the outputs in a non-empty --out folder.")
@click.option("--resume", is_flag=True, default=False,
              help="Continue an interrupted run from the checkpoint in --out (same DATA and options).")
@training_options(from_run=False)
@click.option("--method", type=click.Choice(METHOD_NAMES), default=DEFAULTS.method, show_default=True,
              help="stepe, or a baseline to compare with: erm (no dropping), truncation, spl, oneshot.")
@click.option("--rho-max", type=RhoMax(), default=DEFAULTS.rho_max, show_default=True,
              help="Final share of samples left out of training: auto estimates the noise rate in the warm-up "
              "(per class with --select per-class), or give a number such as 0.2.")
@click.option("--warmup", type=int, default=DEFAULTS.warmup,
              help=f"Epochs trained on all samples [default: {WARMUP_SHARE:.0%} of epochs].")
@click.option("--ramp", type=int, default=DEFAULTS.ramp,
              help=f"Epochs for rho to rise to rho-max [default: {RAMP_SHARE:.0%} of epochs].")
@click.option("--select", type=click.Choice(SELECTIONS), default=DEFAULTS.select, show_default=True,
              help="Drop the highest scores overall, or the same share of every class.")
@click.option("--rank-by", type=click.Choice(RANKINGS), default=DEFAULTS.rank_by, show_default=True,
              help="Score: margin of the best other class over the given label, or the loss of that label.")
@click.option("--smoothing", type=float, default=DEFAULTS.smoothing, show_default=True,
              help="Average the score across epochs: weight of the previous epochs' score, 0 = last epoch only.")
@click.option("--loss-pass", type=click.Choice(LOSS_PASSES), default=DEFAULTS.loss_pass, show_default=True,
              help="train: losses from the training forward pass (no extra cost); probe: the paper's separate "
              "eval pass after every epoch.")
@click.option("--image-column", default=DEFAULTS.image_column,
              help="Parquet column with the images [default: found automatically].")
@click.option("--label-column", default=DEFAULTS.label_column,
              help="Column with the labels [default: found automatically].")
@click.option("--id-column", default=DEFAULTS.id_column,
              help="Column with stable sample ids [default: file.parquet:row].")
@click.option("--holdout", default=DEFAULTS.holdout, type=click.Path(path_type=str),
              help="Held-out data to report accuracy on [default: the val/test split of DATA, if any].")
@click.option("--allow-outside-root", is_flag=True, default=DEFAULTS.allow_outside_root,
              help="Let a CSV/JSONL label file name relative paths outside its own folder (../).")
@click.option("--max-bad-fraction", type=float, default=DEFAULTS.max_bad_fraction, show_default=True,
              help="Stop before training when more than this share of the samples cannot be read.")
@click.option("--image-memory-gb", type=float, default=DEFAULTS.image_memory_gb, show_default=True,
              help="Decoded images beyond this size are kept in a memory-mapped file in --out instead of RAM.")
@click.option("--relabel/--no-relabel", default=DEFAULTS.relabel, show_default=True,
              help="Keep dropped samples that have a sure suggested label in the manifest, under that label "
              "(the others are still dropped); --no-relabel: the manifest holds only the kept samples, under their "
              "given labels.")
@click.option("--relabel-confidence", type=float, default=DEFAULTS.relabel_confidence, show_default=True,
              help="How sure a suggestion must be for --relabel to write it to the manifest.")
@click.option("--suggest-confidence", type=float, default=DEFAULTS.suggest_confidence, show_default=True,
              help=f"Probability the model must give a class, over the last {SUGGEST_EPOCHS} epochs, to suggest it "
              "as the label.")
@click.option("--manifest-format", type=click.Choice(MANIFEST_FORMATS), default=DEFAULTS.manifest_format,
              help="Manifest file type [default: parquet for Parquet input, csv otherwise].")
@click.option("--no-audit", "audit", flag_value=False, default=True,
              help="Do not write the review page audit.html (`labelscrub audit` writes it later).")
@click.option("--quiet", is_flag=True, default=False, help="Print nothing but errors.")
def clean(data: str, out: str, overwrite: bool, resume: bool, quiet: bool, **options) -> None:
    """Train on DATA with the Step-E schedule and write a report and a cleaned manifest.

    DATA is an image folder (DATA/<class>/<image>, or train/ and val/ splits), a Parquet file or folder, or a
    CSV/JSONL label file with path,label columns.

    Example:

        labelscrub clean sample_data/digits --out runs/digits --epochs 15
    """
    progress = None if quiet else ConsoleProgress()
    result = _library_call(lambda: clean_data(data, out, overwrite=overwrite, resume=resume, progress=progress,
                                              **options), out)
    if not quiet and result is not None:  # None: a torchrun process other than rank 0
        click.echo(closing_summary(result))


@cli.command()
@click.argument("source", type=click.Path(path_type=str))
@click.option("--test", default=None, type=click.Path(path_type=str),
              help="Data to measure on, labels taken as true [default: the clean run's held-out split].")
@click.option("--out", "out", type=click.Path(path_type=str), default=None,
              help="Output folder for metrics.json and model.pt [default: SOURCE's folder/retrain].")
@click.option("--overwrite", is_flag=True, default=False, help="Replace the outputs in a non-empty --out folder.")
@click.option("--resume", is_flag=True, default=False,
              help="Continue an interrupted retrain from the checkpoint in --out.")
@click.option("--compare", is_flag=True, default=False,
              help="Also train on every original sample (the noisy baseline) and print both accuracies.")
@click.option("--equal-steps", is_flag=True, default=False,
              help="Train the kept samples for as many SGD steps as all samples get in the recipe's epochs "
              "(more epochs when many were dropped).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeat every training with this many seeds (--seed, --seed+1, ...) and print the mean and "
              "range: one training moves by about a point from seed to seed.")
@training_options(from_run=True)
@click.option("--quiet", is_flag=True, default=False, help="Print nothing but errors and the accuracy.")
def retrain(source: str, test: str | None, out: str | None, overwrite: bool, resume: bool, compare: bool,
            equal_steps: bool, seeds: int, quiet: bool, **options) -> None:
    """Train a fresh ResNet-18 on the samples a clean run kept and measure it on held-out data.

    SOURCE is the --out folder of `labelscrub clean`, or its manifest. The recipe is the clean run's unless
    options override it; training is plain cross-entropy on every kept sample.

    Example:

        labelscrub retrain runs/digits --compare
    """
    progress = None if quiet else ConsoleProgress()
    result = _library_call(lambda: retrain_data(source, test=test, out=out, compare=compare, equal_steps=equal_steps,
                                                seeds=seeds, overwrite=overwrite, resume=resume, progress=progress,
                                                **options),
                           out or str(default_out_dir(source)))
    if result is not None:
        click.echo(retrain_summary(result))


@cli.command(name="apply")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.argument("decisions", type=click.Path(path_type=str))
@click.option("--out", "out", type=click.Path(path_type=str), default=None,
              help="Output folder for the manifest and decisions.json [default: RUN_DIR/applied].")
@click.option("--overwrite", is_flag=True, default=False, help="Replace the outputs in a non-empty --out folder.")
def apply_review(run_dir: str, decisions: str, out: str | None, overwrite: bool) -> None:
    """Apply a person's review of a clean run and write a new manifest.

    RUN_DIR is the --out folder of `labelscrub clean`; DECISIONS is the decisions.csv downloaded from the review
    page (sample_id,decision,label; decision keep, drop or relabel). The review is applied on top of the run's own
    decisions; `labelscrub retrain` trains on the result with the run's recipe.

    Example:

        labelscrub apply runs/digits decisions.csv
    """
    try:
        result = apply_decisions(run_dir, decisions, out=out, overwrite=overwrite)
    except LabelscrubError as error:
        raise click.ClickException(str(error)) from None
    click.echo(applied_summary(result))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("-o", "--out", "out", type=click.Path(path_type=str), default=None,
              help="The page to write [default: RUN_DIR/audit.html].")
@click.option("--per-class", type=int, default=None,
              help=f"Samples of each class in the gallery [default: {DEFAULT_PER_CLASS}, fewer with many classes, "
              f"at most {MAX_SHOWN:,} in all unless asked for more].")
def audit(run_dir: str, out: str | None, per_class: int | None) -> None:
    """Write the label-review page of a clean run: one HTML file that works offline.

    It shows the run's numbers, curves and noise matrix, and the most suspicious samples of each class with their
    pictures, each with keep / drop / relabel controls; its "Download decisions" button saves decisions.csv for
    `labelscrub apply`. `clean` writes it already; run this to rebuild it (after moving the data back, say).

    Example:

        labelscrub audit runs/digits
    """
    try:
        result = write_audit(run_dir, out, per_class=per_class)
    except LabelscrubError as error:
        raise click.ClickException(str(error)) from None
    click.echo(audit_summary(result))


def _library_call(call, out: str):
    """`call()`, with the library's errors as one line and a non-zero exit. Under torchrun an error every process
    meets is printed by rank 0 alone, and a process that stopped is reported by one survivor."""
    launch = Launch.from_environment()
    try:
        return call()
    except ProcessStopped as error:
        if error.reporter:
            click.echo(f"Error: {_stopped_message(error, out, launch)}", err=True)
        sys.exit(1)
    except ReportedElsewhere:
        sys.exit(1)
    except LabelscrubError as error:
        where = f"process {launch.rank}: " if launch is not None and launch.rank else ""
        raise click.ClickException(where + str(error)) from None
    except KeyboardInterrupt:
        if launch is None or launch.rank == 0:
            _interrupted(out)
        sys.exit(130)


def _stopped_message(error: ProcessStopped, out: str, launch: Launch | None) -> str:
    if launch is not None and launch.restarts < launch.max_restarts:
        return f"{error}; torchrun restarts the processes, which resume from the last finished epoch saved in {out}"
    if not (Path(out) / CHECKPOINT_NAME).exists():
        return f"{error} before the first epoch finished; start the run again (with --overwrite)"
    return f"{error}; the last finished epoch is saved in {out}; continue with: {_resume_command(launch)}"


def _resume_command(launch: Launch | None) -> str:
    """The command line that continues this run from its checkpoint (under torchrun any number of processes can)."""
    arguments = [argument for argument in sys.argv[1:] if argument not in ("--resume", "--overwrite")]
    if launch is None:
        return shlex.join(["labelscrub", *arguments, "--resume"])
    machines = launch.processes // launch.local_processes
    launcher = shlex.join(["torchrun", "--nproc_per_node", str(launch.local_processes)])
    if machines > 1:
        launcher += f" --nnodes {machines} <the same rendezvous options, on every machine>"
    return f"{launcher} {shlex.join(['-m', 'labelscrub', *arguments, '--resume'])}"


def _interrupted(out: str) -> None:
    """Ctrl-C: the epoch in progress is discarded, the last epoch's checkpoint stays; say how to go on."""
    command = _resume_command(Launch.from_environment())
    click.echo(f"\ninterrupted; the last finished epoch is saved in {out}. Resume with:\n  {command}", err=True)
    sys.exit(130)


def main() -> None:
    cli(prog_name="labelscrub")

