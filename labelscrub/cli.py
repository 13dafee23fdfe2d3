"""The command line: a thin view on the library. Each command parses options into keyword arguments, makes one
library call, and turns `LabelscrubError` into a one-line message and a non-zero exit."""

from __future__ import annotations

import functools

import click

from labelscrub import __version__
from labelscrub.config import MANIFEST_FORMATS, STEMS
from labelscrub.errors import LabelscrubError
from labelscrub.pipeline import clean as clean_data
from labelscrub.progress import ConsoleProgress, closing_summary


def training_options(command):
    """Options shared by every command that trains a model, declared once."""
    options = [
        click.option("--epochs", type=int, default=30, show_default=True, help="Training epochs."),
        click.option("--batch-size", type=int, default=128, show_default=True, help="Samples per SGD step."),
        click.option("--lr", type=float, default=None, help="Peak learning rate [default: 0.1 x batch-size/128]."),
        click.option("--stem", type=click.Choice(STEMS), default="auto", show_default=True,
                     help="ResNet stem: cifar for small images, imagenet for large; auto picks by image size."),
        click.option("--image-size", type=int, default=None,
                     help="Training side in pixels [default: native size (cifar stem) or 224]."),
        click.option("--no-augment", "augment", flag_value=False, default=True,
                     help="Train without random crops and flips."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for initialisation, order and "
                     "augmentation."),
    ]
    return functools.reduce(lambda wrapped, option: option(wrapped), reversed(options), command)


@click.group()
@click.version_option(__version__, prog_name="labelscrub")
def cli() -> None:
    """Find mislabeled samples in image-classification datasets and write cleaned label files."""


@cli.command()
@click.argument("data", type=click.Path(path_type=str))
@click.option("--out", "out", type=click.Path(path_type=str), default="labelscrub-out", show_default=True,
              help="Output folder (report.parquet, manifest, model.pt, run.json).")
@click.option("--overwrite", is_flag=True, help="Replace the outputs in a non-empty --out folder.")
@training_options
@click.option("--rho-max", type=float, default=0.2, show_default=True,
              help="Final share of samples left out of training (your estimate of the noise rate).")
@click.option("--warmup", type=int, default=None, help="Epochs trained on all samples [default: 20% of epochs].")
@click.option("--ramp", type=int, default=None, help="Epochs for rho to rise to rho-max [default: 20% of epochs].")
@click.option("--image-column", default=None, help="Parquet column with the images [default: found automatically].")
@click.option("--label-column", default=None, help="Column with the labels [default: found automatically].")
@click.option("--id-column", default=None, help="Column with stable sample ids [default: file.parquet:row].")
@click.option("--holdout", default=None, type=click.Path(path_type=str),
              help="Held-out data to report accuracy on [default: the val/test split of DATA, if any].")
@click.option("--image-memory-gb", type=float, default=4.0, show_default=True,
              help="Decoded images beyond this size are kept in a memory-mapped file in --out instead of RAM.")
@click.option("--manifest-format", type=click.Choice(MANIFEST_FORMATS), default=None,
              help="Manifest file type [default: parquet for Parquet input, csv otherwise].")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
def clean(data: str, out: str, overwrite: bool, quiet: bool, **options) -> None:
    """Train on DATA with the Step-E schedule and write a report and a cleaned manifest.

    DATA is an image folder (DATA/<class>/<image>, or train/ and val/ splits), a Parquet file or folder, or a
    CSV/JSONL label file with path,label columns.

    Example:

        labelscrub clean sample_data/digits --out runs/digits --epochs 15
    """
    progress = None if quiet else ConsoleProgress()
    try:
        result = clean_data(data, out, overwrite=overwrite, progress=progress, **options)
    except LabelscrubError as error:
        raise click.ClickException(str(error)) from None
    if not quiet:
        click.echo(closing_summary(result))


def main() -> None:
    cli(prog_name="labelscrub")
