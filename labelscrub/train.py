"""Training primitives shared by every method: set-up, one training epoch, the probe pass, held-out accuracy.

No file I/O here: progress goes to a `Progress` callback and results come back as arrays. The methods that decide
which samples train (Step-E and the baselines) live in `methods.py` and are built from these pieces.

Two ways to measure every sample's loss each epoch (`CleanConfig.loss_pass`):
- "train" (default): the loss of each trained sample is read off the training forward pass it already gets (train
  mode, augmented, before that step's update); the samples left out of the epoch get one forward pass without
  gradient after the epoch's steps, measured the same way. No extra pass over the kept data, and left-out samples
  cost a forward pass instead of a training step. They are measured after the steps, in full batches, because
  on a GPU a small forward pass beside every step costs about as much as a full one.
- "probe": the paper's separate pass after the epoch, in eval mode without augmentation, over every sample.

Under torchrun (distributed.py) each rank trains on its share of the shuffled kept samples through the
DistributedDataParallel wrapper (`Setup.train_forward`), and measures its share of the rows to measure through the
plain module; the recorder's tensors are then combined so every rank holds every sample's measurement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from labelscrub.augment import channel_stats, for_training_side, normalize
from labelscrub.batches import auto_workers, stream
from labelscrub.config import CleanConfig
from labelscrub.distributed import Processes
from labelscrub.measurement import Probe, TopClasses
from labelscrub.model import build_model
from labelscrub.precision import autocast_for, resolve_precision, uses_channels_last
from labelscrub.progress import Progress
from labelscrub.schedule import drop_count, learning_rate


@dataclass
class EpochTraining:
    mean_loss: float  # mean training loss over the epoch's batches
    seconds: float
    truncated: int  # samples whose gradient loss truncation withheld
    measured: Probe | None  # every recorded sample's measurement from this epoch's forward passes ("train" pass)
    skipped_steps: int = 0  # steps left out because a gradient was not finite (`_gradients_finite`)


class _Recorder:
    """Per-sample loss, prediction and margin gathered on the device during an epoch; copied to the host once.
    Every per-sample field is an (N, ...) tensor holding NaN (floats) or -1 (ints) where not measured."""

    def __init__(self, count: int, device: torch.device, *, keep_probabilities: bool = False,
                 top: TopClasses | None = None):
        self.keep_probabilities = keep_probabilities
        self.probabilities: torch.Tensor | None = None  # (count, classes), allocated at the first record
        self.losses = torch.full((count,), float("nan"), device=device)
        self.margin = torch.full((count,), float("nan"), device=device)
        self.decoy_loss = torch.full((count,), float("nan"), device=device)
        self.mean_class_loss = torch.full((count,), float("nan"), device=device)
        self.predicted = torch.full((count,), -1, dtype=torch.int64, device=device)
        self._measured = torch.zeros(count, dtype=torch.bool, device=device)  # the rows this process recorded
        self.top_classes = self.top_log_probs = self.rest_log_prob = None  # with `top` only (Probe.top_classes)
        self._classes_to_read = None
        if top is not None:
            # int32, not torch's int64 indices: at ImageNet's 1.28 M samples x 16 classes that saves 80 MB twice
            self.top_classes = torch.full((count, top.count), -1, dtype=torch.int32, device=device)
            self.top_log_probs = torch.full((count, top.count), float("nan"), device=device)
            self.rest_log_prob = torch.full((count,), float("nan"), device=device)
            if top.classes is not None:
                self._classes_to_read = torch.from_numpy(np.asarray(top.classes, np.int32)).to(device)

    def record(self, rows: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
               decoys: torch.Tensor | None) -> None:
        """Store the measurements of `rows`; without `decoys` their decoy loss stays NaN."""
        log_probs = F.log_softmax(logits.detach().float(), dim=1)
        loss, predicted, margin, decoy_loss, mean_class_loss = _measure(log_probs, targets,
                                                                        targets if decoys is None else decoys)
        self.losses[rows], self.predicted[rows], self.margin[rows] = loss, predicted, margin
        self._measured[rows] = True
        self.mean_class_loss[rows] = mean_class_loss
        if decoys is not None:
            self.decoy_loss[rows] = decoy_loss
        if self.keep_probabilities:
            if self.probabilities is None:
                self.probabilities = torch.full((len(self.losses), logits.shape[1]), float("nan"),
                                                device=logits.device)
            self.probabilities[rows] = F.softmax(logits.detach().float(), dim=1)
        if self.top_classes is not None:
            self._record_top(rows, log_probs, targets)

    def _record_top(self, rows: torch.Tensor, log_probs: torch.Tensor, targets: torch.Tensor) -> None:
        others = log_probs.scatter(1, targets[:, None], float("-inf"))
        chosen = others.topk(self.top_classes.shape[1], dim=1).indices
        if self._classes_to_read is not None:
            fixed = self._classes_to_read[rows].long()
            chosen = torch.where(fixed[:, :1] >= 0, fixed, chosen)  # a sample not measured before chooses now
        self.top_classes[rows] = chosen.int()
        self.top_log_probs[rows] = others.gather(1, chosen)
        outside = log_probs.shape[1] - 1 - chosen.shape[1]
        # logsumexp of nothing but -inf is -inf: with no class outside, the stand-in is never read
        self.rest_log_prob[rows] = others.scatter(1, chosen, float("-inf")).logsumexp(1) - math.log(max(1, outside))

    def combine(self, processes: Processes) -> None:
        """Take every rank's measurements of its rows, so each rank holds all of them (nothing in one process)."""
        if not processes.distributed:
            return
        # None: a tensor allocated at the first record, which another rank may have made; private fields are
        # bookkeeping (the rows measured here, the classes to read), not measurements
        tensors = {name: value for name, value in vars(self).items()
                   if not name.startswith("_") and (isinstance(value, torch.Tensor) or value is None)}
        measured = self._measured.nonzero()[:, 0]
        for name, value in processes.combine_rows(tensors, len(self.losses), measured).items():
            setattr(self, name, value)

    def result(self) -> Probe:
        losses = self.losses.cpu().numpy()
        probabilities = None if self.probabilities is None else self.probabilities.cpu().numpy()
        top = {} if self.top_classes is None else {
            name: getattr(self, name).cpu().numpy() for name in ("top_classes", "top_log_probs", "rest_log_prob")}
        return Probe(losses, self.predicted.cpu().numpy(), np.exp(-losses), self.margin.cpu().numpy(),
                     probabilities=probabilities, decoy_loss=self.decoy_loss.cpu().numpy(),
                     mean_class_loss=self.mean_class_loss.cpu().numpy(), **top)


def _measure(log_probs: torch.Tensor, targets: torch.Tensor,
             decoys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cross-entropy, argmax class, margin, cross-entropy of the decoy label, mean cross-entropy over all classes)
    per row of `log_probs` (log-softmax, without gradient)."""
    picked = log_probs.gather(1, targets[:, None])[:, 0]
    others = log_probs.scatter(1, targets[:, None], float("-inf"))
    decoy = log_probs.gather(1, decoys[:, None])[:, 0]
    return -picked, log_probs.argmax(1), others.max(1).values - picked, -decoy, -log_probs.mean(1)


@dataclass
class Setup:
    """Everything one training run holds on its device."""

    model: torch.nn.Module  # the plain module: its state_dict is what gets saved
    forward: Callable[[torch.Tensor], torch.Tensor]  # the module, or its torch.compile'd version: measures
    # training steps: `forward`, or under torchrun the DistributedDataParallel wrapper of the module
    train_forward: Callable[[torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    pixels: torch.Tensor  # uint8 (N, 3, S, S), on the device when it fits
    labels: torch.Tensor  # int64 (N,) on the device; unlabelled samples hold 0 and are never trained on
    decoys: torch.Tensor  # int64 (N,) on the device: per sample a fixed class drawn uniformly among the others
    mean: torch.Tensor
    std: torch.Tensor
    generator: torch.Generator  # drives shuffling and augmentation
    device: torch.device
    config: CleanConfig
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    autocast: Callable[[], AbstractContextManager]
    normalization: dict[str, list[float]]
    processes: Processes
    channels_last: bool  # batches in the channels-last layout, as the model (precision.py)

    def batches_of(self, images: torch.Tensor, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """The normalised rows `batches[i]` of `images` on the device, one tensor per batch (batches.py)."""
        workers = self.config.loader_workers
        if workers is None:
            workers = auto_workers(images, self.device, processes_here=self.processes.local_size)
        for raw in stream(images, batches, self.device, workers):
            batch = normalize(raw, self.mean, self.std)
            yield batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch


def make_setup(pixels: torch.Tensor, labels: np.ndarray, eligible: np.ndarray, num_classes: int,
               config: CleanConfig, device: torch.device, *, processes: Processes | None = None) -> Setup:
    """A freshly initialised model and optimiser, seeded by config.seed. `config` must be resolved. Under
    torchrun (`processes`) every rank builds the same one, and DistributedDataParallel wraps it for training."""
    torch.manual_seed(config.seed)
    eligible_index = np.flatnonzero(eligible)
    eligible_pixels = pixels[torch.from_numpy(eligible_index).to(pixels.device)] if len(eligible_index) else pixels
    mean, std = channel_stats(eligible_pixels)
    model = build_model(num_classes, config.stem).to(device)
    precision = resolve_precision(config.precision, device)
    channels_last = uses_channels_last(precision, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)
    processes = processes or Processes.single(device)
    forward = torch.compile(model) if config.compile else model
    if processes.distributed:
        wrapped = processes.wrap(model)
        train_forward = torch.compile(wrapped) if config.compile else wrapped
    else:
        train_forward = forward
    return Setup(
        model=model, forward=forward, train_forward=train_forward, optimizer=optimizer, pixels=pixels,
        labels=torch.from_numpy(np.where(labels >= 0, labels, 0)).to(device),
        decoys=torch.from_numpy(decoy_labels(labels, num_classes, config.seed)).to(device),
        mean=torch.tensor(mean, device=device)[None, :, None, None],
        std=torch.tensor(std, device=device)[None, :, None, None],
        generator=torch.Generator().manual_seed(config.seed), device=device, config=config,
        augment=for_training_side(config.image_size),
        autocast=autocast_for(precision, device), channels_last=channels_last,
        normalization={"mean": mean, "std": std}, processes=processes)


def decoy_labels(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """Per sample a class other than its label, uniformly drawn and fixed by the seed: a label known to be wrong."""
    given = np.where(labels >= 0, labels, 0)
    if num_classes < 2:
        return given
    offset = np.random.default_rng(seed).integers(1, num_classes, size=len(given))
    return (given + offset) % num_classes


def train_epoch(setup: Setup, kept: np.ndarray, epoch: int, *, schedule_epochs: int, truncate_rho: float = 0.0,
                record: np.ndarray | None = None, keep_probabilities: bool = False, top: TopClasses | None = None,
                progress: Progress | None = None) -> EpochTraining:
    """One pass over the samples where `kept` is True, shuffled and augmented.

    `truncate_rho` > 0 is loss truncation: inside every batch the ceil(rho * B) highest losses get no gradient.
    `record` (a mask) asks for the measurement of those samples from this epoch's forward passes: kept samples from
    their training step, the others from a forward pass without gradient after the last step; with
    `keep_probabilities` the measurement includes every class's probability, with `top` the log-probabilities of a
    few classes per sample (`TopClasses`).
    The learning rate follows `learning_rate` over `schedule_epochs`.
    """
    progress = progress or Progress()
    config, processes = setup.config, setup.processes
    processes.check_same(kept, epoch)
    batches, first_seen = _training_batches(setup, kept)
    augmentation = processes.augmentation_generator(setup.generator, config.seed, epoch)
    recorder = (_Recorder(len(kept), setup.device, keep_probabilities=keep_probabilities, top=top)
                if record is not None else None)
    progress.epoch_started(epoch, schedule_epochs, len(batches))
    setup.model.train()
    started, truncated, skipped = time.perf_counter(), 0, 0
    loss_sum = torch.zeros((), device=setup.device)
    for step, (batch_index, images) in enumerate(zip(batches, setup.batches_of(setup.pixels, batches))):
        # Progress is counted in epochs, so an epoch with fewer (kept) samples does not stretch the decay.
        lr = learning_rate(epoch + step / len(batches), peak=config.lr, epochs=schedule_epochs,
                           warmup_epochs=config.lr_warmup)
        for group in setup.optimizer.param_groups:
            group["lr"] = lr
        index = torch.from_numpy(batch_index).to(setup.device)
        images = _augmented(setup, images, augmentation)
        targets = setup.labels[index]
        with setup.autocast():
            logits = setup.train_forward(images)
        losses = F.cross_entropy(logits.float(), targets, reduction="none")
        if recorder is not None:
            # a sample repeated to even out the ranks' shares trains again but is measured once
            fresh = slice(None) if first_seen is None else torch.from_numpy(first_seen[step]).to(setup.device)
            recorder.record(index[fresh], logits[fresh], targets[fresh], setup.decoys[index[fresh]])
        n_cut = drop_count(truncate_rho, len(batch_index)) if truncate_rho > 0 else 0
        if n_cut:
            keep_in_batch = torch.ones_like(losses, dtype=torch.bool)
            keep_in_batch[losses.detach().topk(n_cut).indices] = False
            loss = losses[keep_in_batch].mean()
            truncated += n_cut
        else:
            loss = losses.mean()
        setup.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if _gradients_finite(setup):
            setup.optimizer.step()
        else:
            skipped += 1
        loss_sum += loss.detach()  # no .item() here: a host sync every step would stall the GPU
        progress.batch_done()
    processes.broadcast_buffers(setup.model)
    if recorder is not None:
        _measure_without_gradient(setup, processes.share(np.flatnonzero(record & ~kept)), recorder, augmentation)
        recorder.combine(processes)
    # over every rank: the mean of their mean losses (equal batch counts), the sum of their truncated samples
    mean_loss, truncated = processes.sum([loss_sum.item() / max(1, len(batches)) / processes.size, truncated])
    measured = recorder.result() if recorder is not None else None
    # every rank skips the same steps: the gradients they check are the all-reduced ones
    return EpochTraining(mean_loss, time.perf_counter() - started, int(truncated), measured, skipped)


def _gradients_finite(setup: Setup) -> bool:
    """False when a gradient holds NaN or inf, so the step must not reach the weights: one such step makes every
    weight NaN for good (through the momentum too). Checked on the CPU, where oneDNN's convolution weight gradient
    has come out NaN for small feature maps in about one training in five on some processors, the same seed
    otherwise training normally; there every step waits for its result anyway, and the check (a sum per tensor)
    costs about 1% of a step. Not on a GPU, where it would stall the launch queue every step."""
    if setup.device.type != "cpu":
        return True
    sums = [parameter.grad.sum() for parameter in setup.model.parameters() if parameter.grad is not None]
    return bool(torch.stack(sums).sum().isfinite()) if sums else True


def shuffled_batches(train_index: np.ndarray, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    order = train_index[torch.randperm(len(train_index), generator=generator).numpy()]
    return _chunks(order, batch_size)


def _training_batches(setup: Setup, kept: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """This process's batches of the kept samples, and under torchrun per batch which rows appear for the first
    time this epoch (the others repeat samples so every rank takes as many steps: trained, not measured)."""
    processes = setup.processes
    if not processes.distributed:
        return shuffled_batches(np.flatnonzero(kept), setup.config.batch_size, setup.generator), None
    order = np.flatnonzero(kept)[torch.randperm(int(kept.sum()), generator=setup.generator).numpy()]
    rows, first_seen = processes.training_share(order)
    batches = _chunks(rows, setup.config.batch_size)
    if first_seen is None:  # torchrun with one process: nothing is repeated
        return batches, None
    return batches, np.split(first_seen, np.cumsum([len(batch) for batch in batches])[:-1])


def _augmented(setup: Setup, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return setup.augment(images, generator) if setup.config.augment else images


def _chunks(rows: np.ndarray, size: int) -> list[np.ndarray]:
    """`rows` in consecutive batches of `size`, except that a last batch under half of `size` joins the one before.

    Batch norm in train mode normalises each batch by its own statistics, and at 32 px with the ImageNet stem the
    last stage sees one value per image and channel: a tail of 2 or 3 images gives degenerate statistics, a wild
    step and corrupted running statistics, from which a run's selection may not recover."""
    chunks = [rows[start:start + size] for start in range(0, len(rows), size)]
    if len(chunks) > 1 and len(chunks[-1]) < size / 2:
        chunks[-2:] = [np.concatenate(chunks[-2:])]
    return chunks


def _measure_without_gradient(setup: Setup, rows: np.ndarray, recorder: _Recorder,
                              augmentation: torch.Generator) -> None:
    """Measure left-out samples as the trained ones are measured (train mode, augmented), without gradient and
    without touching the model: batch-norm momentum 0 keeps the running statistics as they are."""
    if not len(rows):
        return
    norms = [module for module in setup.model.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [module.momentum for module in norms]
    for module in norms:
        module.momentum = 0.0
    # Batch norm in train mode needs two samples; a single left-out sample is measured in eval mode.
    setup.model.train(len(rows) > 1)
    try:
        chunks = _chunks(rows, setup.config.eval_batch_size)
        with torch.no_grad(), setup.autocast():
            for chunk, images in zip(chunks, setup.batches_of(setup.pixels, chunks)):
                index = torch.from_numpy(chunk).to(setup.device)
                recorder.record(index, setup.forward(_augmented(setup, images, augmentation)), setup.labels[index],
                                setup.decoys[index])
    finally:
        for module, momentum in zip(norms, momenta):
            module.momentum = momentum
        setup.model.train()


def probe(setup: Setup, images: torch.Tensor, targets: np.ndarray, index: np.ndarray, *,
          keep_probabilities: bool = False, top: TopClasses | None = None) -> Probe:
    """Cross-entropy, prediction, margin and probability of the given label for the samples in `index`: eval mode,
    no augmentation, no gradient. Entries outside `index` stay NaN / -1. The decoy loss is measured only when
    `images` are the setup's own training pixels, whose decoys `setup.decoys` holds (NaN otherwise). Under torchrun
    each rank measures its share of `index` and every rank returns all of them."""
    count = len(targets)
    recorder = _Recorder(count, setup.device, keep_probabilities=keep_probabilities, top=top)
    targets_t = torch.from_numpy(np.where(targets >= 0, targets, 0)).to(setup.device)
    decoys = setup.decoys if images is setup.pixels else None
    setup.model.eval()
    chunks = _chunks(setup.processes.share(index), setup.config.eval_batch_size)
    with torch.no_grad(), setup.autocast():
        for chunk, batch in zip(chunks, setup.batches_of(images, chunks)):
            logits = setup.forward(batch)
            rows = torch.from_numpy(chunk).to(setup.device)
            recorder.record(rows, logits, targets_t[rows], None if decoys is None else decoys[rows])
    recorder.combine(setup.processes)
    return recorder.result()


def heldout_accuracy(setup: Setup, heldout: tuple[torch.Tensor, np.ndarray] | None) -> float | None:
    """Top-1 accuracy on the readable held-out samples (labels < 0 mark unreadable ones)."""
    if heldout is None:
        return None
    pixels, labels = heldout
    readable = np.flatnonzero(labels >= 0)
    if not len(readable):
        return None
    result = probe(setup, pixels, labels, readable)
    return float((result.predicted[readable] == labels[readable]).mean())
