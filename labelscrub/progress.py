"""What the user sees while a run goes. `Progress` is the set of callbacks the library calls (the default does
nothing); `ConsoleProgress` draws a line that counts the images being decoded and a progress bar per epoch on a
terminal, one line per finished step otherwise (logs, CI), and the CLI passes none with --quiet. Then the closing
summaries."""

from __future__ import annotations

import functools
import shlex
import sys
import time
from collections.abc import Callable
from typing import TextIO

import click

from labelscrub.measurement import EpochSummary


class Progress:
    """Callbacks the loops call; the default does nothing. The CLI passes one that draws bars or prints lines."""

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None: ...

    def batch_done(self) -> None: ...

    def epoch_done(self, summary: EpochSummary, epochs: int) -> None: ...

    def note(self, message: str) -> None:
        """Something the user should know while the run goes on (an estimate that cannot be trusted)."""

    def decoded(self, what: str, done: int, total: int) -> None:
        """`done` of the `total` `what` images ("train", "test") read and decoded: 0 first, `total` last."""


def decoding(progress: Progress, what: str) -> Callable[[int, int], None]:
    """The `on_progress` callback of `images.decode_all` that tells `progress` which images are decoded."""
    return functools.partial(progress.decoded, what)


# Seconds between redraws of the decoding line: often enough to look alive, rarely enough to cost nothing.
REDRAW_SECONDS = 0.2


class ConsoleProgress(Progress):
    def __init__(self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.bar = None
        self.clock = clock
        self.decode_started = 0.0
        self.drawn_at: float | None = None  # when the decoding line was last drawn; None before the first
        self.drawn_width = 0

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None:
        if self.interactive:
            self.bar = click.progressbar(length=batches, label=f"epoch {epoch + 1}/{epochs}", file=self.stream,
                                         show_eta=True, show_percent=True)
            self.bar.__enter__()

    def batch_done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def epoch_done(self, summary: EpochSummary, epochs: int) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        click.echo(describe_epoch(summary, epochs), file=self.stream)

    def note(self, message: str) -> None:
        click.echo(f"warning: {message}", file=self.stream)

    def decoded(self, what: str, done: int, total: int) -> None:
        """On a terminal one line redrawn in place (count, rate, elapsed time); the finished count, alone, in logs."""
        now = self.clock()
        if done == 0:
            self.decode_started, self.drawn_at, self.drawn_width = now, None, 0
        elapsed = now - self.decode_started
        rate = f"{done / elapsed:,.0f} images/s" if elapsed > 0 else "- images/s"
        if done >= total:
            line = f"decoded {total:,} {what} images in {_minutes(elapsed)} ({rate})"
            if self.interactive:
                self._draw(line, end="\n")
            else:
                click.echo(line, file=self.stream)
        elif self.interactive and (self.drawn_at is None or now - self.drawn_at >= REDRAW_SECONDS):
            self._draw(f"decoding {what} images {done:,}/{total:,}  {rate}  {_minutes(elapsed)}")
            self.drawn_at = now

    def _draw(self, line: str, *, end: str = "") -> None:
        """Overwrite the decoding line in place, blanking what a longer previous line left."""
        self.stream.write("\r" + line.ljust(self.drawn_width) + end)
        self.stream.flush()
        self.drawn_width = len(line)


def _minutes(seconds: float) -> str:
    """Elapsed time as m:ss."""
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def describe_epoch(summary: EpochSummary, epochs: int) -> str:
    parts = [f"epoch {summary.epoch + 1}/{epochs}"]
    if summary.phase != "main":
        parts.append(f"[{summary.phase}]")
    if summary.phase != "retrain":
        parts.append(f"rho {summary.rho:.3f}  dropped {summary.dropped}")
    parts.append(f"train loss {summary.train_loss:.3f}")
    if summary.phase != "retrain":  # measured on every readable sample, the left-out ones too
        parts.append(f"all-sample loss {summary.probe_loss:.3f}")
    if summary.heldout_accuracy is not None:
        parts.append(f"held-out acc {summary.heldout_accuracy:.1%}")
    parts.append(f"({summary.train_seconds + summary.probe_seconds:.1f}s)")
    if summary.skipped_steps:
        parts.append(f"[{summary.skipped_steps} steps skipped: gradient not finite]")
    return "  ".join(parts)


def closing_summary(result) -> str:
    counts = result.summary["counts"]
    by_class = sorted(result.summary["dropped_by_class"].items(), key=lambda item: (-item[1], item[0]))
    top = ", ".join(f"{name} ({count})" for name, count in by_class[:3] if count) or "none"
    share = counts["dropped"] / max(1, counts["trainable"])
    lines = [
        f"{counts['samples']} samples, {counts['classes']} classes: dropped {counts['dropped']} ({share:.1%}), "
        f"kept {counts['kept']}, unreadable {counts['unreadable']}",
        f"most drops: {top}",
    ]
    noise = result.summary["noise"]
    if noise["estimated_noise_rate"] is not None:
        per_class = [(name, entry["estimated_noise_rate"]) for name, entry in noise["classes"].items()
                     if entry["estimated_noise_rate"] is not None]
        noisiest = ", ".join(f"{name} {rate:.0%}" for name, rate in sorted(per_class, key=lambda x: -x[1])[:3])
        lines.append(f"estimated noise rate: {noise['estimated_noise_rate']:.1%} (noisiest classes: {noisiest}); "
                     f"rho_max used: {noise['rho_max_used']:.3f}")
        if noise.get("mistake_noise_rate") is not None:
            lines.append(f"labels wrong at random: {noise['spread_noise_rate']:.1%}; plausible mistakes (labels "
                         f"of a class the image resembles): {noise['mistake_noise_rate']:.1%}")
        if noise.get("estimate_doubt"):
            lines.append(f"warning: the noise estimate cannot be trusted ({noise['estimate_doubt']}): it read "
                         f"{noise['uncapped_noise_rate']:.1%}, capped at {noise['spread_noise_rate']:.1%}")
        elif noise.get("spread_doubt"):
            lines.append(f"the estimate of labels wrong at random was doubted ({noise['spread_doubt']}); the "
                         f"plausible mistakes counted in mid-training set the estimate instead")
        confused = [f"{name} from {entry['confused_with']} {entry['confused_share']:.0%}"
                    for name, entry in noise["classes"].items() if entry.get("confused_with")]
        if confused:
            lines.append(f"labels confused with one other class: {', '.join(confused)}")
    if result.summary["config"]["relabel"]:
        lines.append(f"relabelled {counts['relabelled']} dropped samples to their suggested label "
                     f"({counts['restored']} more kept under their own); manifest holds {counts['in_manifest']}")
    lines += [f"note: {note}" for note in result.summary.get("notes", [])]
    unreadable = result.summary.get("unreadable_samples", [])
    if unreadable:
        lines.append(f"unreadable (listed in the report's error column), first: {unreadable[0]['sample_id']}: "
                     f"{unreadable[0]['error']}")
    if result.heldout_accuracy is not None:
        lines.append(f"held-out accuracy (final model): {result.heldout_accuracy:.1%}")
    lines += [f"report:   {result.report_path}", f"manifest: {result.manifest_path}",
              f"model:    {result.model_path}", f"run:      {result.run_json_path}"]
    if result.audit_path is not None:
        lines.append(f"audit:    {result.audit_path} (open it in a browser to review the suspects)")
    return "\n".join(lines)


def audit_summary(result) -> str:
    lines = [f"audit page: {result.path} ({result.size_bytes / 1e6:.1f} MB, {result.cards} samples to review, "
             f"{result.pictures} with pictures)"]
    lines += [f"note: {notice}" for notice in result.notices]
    return "\n".join(lines)


def retrain_summary(result) -> str:
    cleaned = result.metrics["cleaned"]
    lines = [f"retrained on {cleaned['train_samples']} kept samples: test accuracy {result.accuracy:.2%} "
             f"({cleaned['test_samples']} test samples)"]
    if result.baseline_accuracy is not None:
        baseline = result.metrics["noisy_baseline"]
        lines.append(f"noisy baseline on all {baseline['train_samples']} samples: {result.baseline_accuracy:.2%}")
        lines.append(f"difference: {100 * result.difference:+.2f} points"
                     + ("" if result.by_seed else " (one seed; --seeds 3 repeats both trainings for the spread)"))
    if result.by_seed:
        lines.extend(_over_seeds(result.metrics["seeds"]))
    lines.append(f"metrics: {result.metrics_path}")
    return "\n".join(lines)


def _over_seeds(seeds: dict) -> list[str]:
    """The lines of a retrain repeated over seeds (metrics.json's "seeds"): mean and range of each accuracy, and
    what the difference says."""
    def spread(values: dict, unit: str = "%") -> str:
        mean, low, high = (100 * values[key] for key in ("mean", "min", "max"))
        if unit == "%":
            return f"{mean:.2f}% ({low:.2f}% to {high:.2f}%)"
        return f"{mean:+.2f} points ({low:+.2f} to {high:+.2f})"

    numbers = [entry["seed"] for entry in seeds["per_seed"]]
    lines = [f"over {len(numbers)} seeds ({numbers[0]}-{numbers[-1]}): kept samples {spread(seeds['accuracy'])}"]
    if "difference" not in seeds:
        return lines
    lines[0] += f", all samples {spread(seeds['baseline_accuracy'])}"
    difference = seeds["difference"]
    if difference["min"] > 0:
        verdict = "the kept samples train better with every seed"
    elif difference["max"] < 0:
        verdict = "the kept samples train worse with every seed"
    else:
        verdict = "its sign changes from seed to seed: within the luck of a training"
    lines.append(f"difference over the seeds: {spread(difference, 'points')}: {verdict}")
    return lines


def applied_summary(result) -> str:
    counts = result.counts
    retrain = shlex.join(["labelscrub", "retrain", str(result.out_dir), "--compare"])
    return "\n".join([
        f"review applied: kept {counts['kept']}, dropped {counts['dropped']}, relabelled {counts['relabelled']}",
        f"manifest: {result.manifest_path} ({counts['manifest_samples']} samples)",
        f"retrain on it with the run's recipe: {retrain}",
    ])
