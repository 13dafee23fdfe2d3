"""Training primitives shared by every method: set-up, one training epoch, the probe pass, held-out accuracy.

No file I/O here: progress goes to a `Progress` callback and results come back as arrays. The methods that decide
which samples train (Step-E and the baselines) live in `methods.py` and are built from these pieces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from labelscrub.augment import channel_stats, normalize, random_crop_flip, random_resized_crop_flip
from labelscrub.config import CleanConfig
from labelscrub.model import build_model
from labelscrub.schedule import drop_count, learning_rate


@dataclass
class EpochSummary:
    epoch: int
    rho: float  # the method's target share of withheld samples this epoch (0 for erm)
    trained: int  # samples in this epoch's batches
    dropped: int  # readable samples whose gradient was withheld (left out of batches, or truncated inside them)
    train_loss: float  # mean training cross-entropy over the epoch's batches (augmented)
    probe_loss: float  # mean probe cross-entropy over all readable samples
    heldout_accuracy: float | None
    train_seconds: float
    probe_seconds: float
    train_images_per_second: float
    probe_images_per_second: float
    phase: str = "main"  # "warmup-ranking" for the first training of the one-shot method


@dataclass
class Probe:
    losses: np.ndarray  # (N,) float32 cross-entropy of the given label; NaN where not probed
    predicted: np.ndarray  # (N,) int64 argmax class; -1 where not probed
    p_label: np.ndarray  # (N,) float32 probability of the given label; NaN where not probed
    probabilities: np.ndarray | None = None  # (N, classes) float32 softmax, only when asked for


class Progress:
    """Callbacks the loops call; the default does nothing. The CLI passes one that draws bars or prints lines."""

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None: ...

    def batch_done(self) -> None: ...

    def epoch_done(self, summary: EpochSummary, epochs: int) -> None: ...


@dataclass
class Setup:
    """Everything one training run holds on its device."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    pixels: torch.Tensor  # uint8 (N, 3, S, S), on the device when it fits
    labels: torch.Tensor  # int64 (N,) on the device; unlabelled samples hold 0 and are never trained on
    mean: torch.Tensor
    std: torch.Tensor
    generator: torch.Generator  # drives shuffling and augmentation
    device: torch.device
    config: CleanConfig
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    autocast: Callable[[], AbstractContextManager]
    normalization: dict[str, list[float]]

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda"


def make_setup(pixels: torch.Tensor, labels: np.ndarray, eligible: np.ndarray, num_classes: int,
               config: CleanConfig, device: torch.device) -> Setup:
    """A freshly initialised model and optimiser, seeded by config.seed. `config` must be resolved."""
    torch.manual_seed(config.seed)
    eligible_index = np.flatnonzero(eligible)
    mean, std = channel_stats(pixels[torch.from_numpy(eligible_index).to(pixels.device)] if len(eligible_index) else pixels)
    model = build_model(num_classes, config.stem).to(device)
    on_cuda = device.type == "cuda"
    if on_cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)
    return Setup(
        model=model, optimizer=optimizer, pixels=pixels,
        labels=torch.from_numpy(np.where(labels >= 0, labels, 0)).to(device),
        mean=torch.tensor(mean, device=device)[None, :, None, None],
        std=torch.tensor(std, device=device)[None, :, None, None],
        generator=torch.Generator().manual_seed(config.seed), device=device, config=config,
        augment=random_crop_flip if config.stem == "cifar" else random_resized_crop_flip,
        autocast=(lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_cuda else nullcontext,
        normalization={"mean": mean, "std": std})


def _batch(setup: Setup, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    batch = normalize(images[index.to(images.device)].to(setup.device, non_blocking=True), setup.mean, setup.std)
    return batch.contiguous(memory_format=torch.channels_last) if setup.channels_last else batch


def train_epoch(setup: Setup, kept: np.ndarray, epoch: int, *, schedule_epochs: int, truncate_rho: float = 0.0,
                progress: Progress | None = None) -> tuple[float, float, int]:
    """One pass over the samples where `kept` is True, shuffled and augmented.

    `truncate_rho` > 0 is loss truncation: inside every batch the ceil(rho * B) highest losses get no gradient.
    The learning rate follows `learning_rate` over `schedule_epochs`. Returns (mean loss, seconds, truncated).
    """
    progress = progress or Progress()
    config = setup.config
    train_index = np.flatnonzero(kept)
    order = train_index[torch.randperm(len(train_index), generator=setup.generator).numpy()]
    batches = [order[start:start + config.batch_size] for start in range(0, len(order), config.batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        # Batch norm cannot train on a batch of one; the straggler joins the previous batch.
        batches[-2:] = [np.concatenate(batches[-2:])]
    progress.epoch_started(epoch, schedule_epochs, len(batches))
    setup.model.train()
    started, loss_sum, truncated = time.perf_counter(), 0.0, 0
    for step, batch_index in enumerate(batches):
        # Progress is counted in epochs, so an epoch with fewer (kept) samples does not stretch the decay.
        lr = learning_rate(epoch + step / len(batches), peak=config.lr, epochs=schedule_epochs,
                           warmup_epochs=config.lr_warmup)
        for group in setup.optimizer.param_groups:
            group["lr"] = lr
        index = torch.from_numpy(batch_index)
        images = _batch(setup, setup.pixels, index)
        if config.augment:
            images = setup.augment(images, setup.generator)
        with setup.autocast():
            losses = F.cross_entropy(setup.model(images), setup.labels[index.to(setup.device)], reduction="none")
        losses = losses.float()
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
        setup.optimizer.step()
        loss_sum += loss.item()
        progress.batch_done()
    return loss_sum / max(1, len(batches)), time.perf_counter() - started, truncated


def probe(setup: Setup, images: torch.Tensor, targets: np.ndarray, index: np.ndarray, *,
          keep_probabilities: bool = False) -> Probe:
    """Cross-entropy, prediction and probability of the given label for the samples in `index`: eval mode, no
    augmentation, no gradient. Entries outside `index` stay NaN / -1."""
    count = len(targets)
    losses = np.full(count, np.nan, np.float32)
    predicted = np.full(count, -1, np.int64)
    p_label = np.full(count, np.nan, np.float32)
    probabilities = None
    targets_t = torch.from_numpy(np.where(targets >= 0, targets, 0))
    setup.model.eval()
    with torch.no_grad(), setup.autocast():
        for start in range(0, len(index), setup.config.eval_batch_size):
            chunk = torch.from_numpy(index[start:start + setup.config.eval_batch_size])
            log_probs = F.log_softmax(setup.model(_batch(setup, images, chunk)).float(), dim=1)
            picked = log_probs.gather(1, targets_t[chunk].to(setup.device)[:, None])[:, 0]
            rows = chunk.numpy()
            losses[rows] = (-picked).cpu().numpy()
            predicted[rows] = log_probs.argmax(1).cpu().numpy()
            p_label[rows] = picked.exp().cpu().numpy()
            if keep_probabilities:
                if probabilities is None:
                    probabilities = np.full((count, log_probs.shape[1]), np.nan, np.float32)
                probabilities[rows] = log_probs.exp().cpu().numpy()
    return Probe(losses, predicted, p_label, probabilities)


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
