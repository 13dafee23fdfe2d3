"""The Step-E training loop. Reads top to bottom; does no file I/O (progress goes to a callback).

Per epoch t:
  1. train on the kept samples (shuffled, augmented), SGD with Nesterov momentum and per-step cosine decay;
  2. probe: every readable training sample's cross-entropy with the model in eval mode, no augmentation, no
     gradient, dropped samples included so a dropped sample can come back;
  3. held-out accuracy, when there is held-out data;
  4. keep mask for epoch t+1 = `select_kept(probe losses, rho_at(t+1))`.
After the last epoch the same rule with the last epoch's rho gives the final `dropped` status.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from labelscrub.augment import channel_stats, normalize, random_crop_flip, random_resized_crop_flip
from labelscrub.config import CleanConfig
from labelscrub.model import build_model
from labelscrub.schedule import learning_rate, rho_at, select_kept


@dataclass
class EpochSummary:
    epoch: int
    rho: float  # share of samples excluded from this epoch's updates
    trained: int  # samples that took part in gradient updates
    dropped: int  # samples excluded by the schedule
    train_loss: float  # mean training cross-entropy over the epoch's batches (augmented)
    probe_loss: float  # mean probe cross-entropy over all readable samples
    heldout_accuracy: float | None
    train_seconds: float
    probe_seconds: float
    train_images_per_second: float
    probe_images_per_second: float


@dataclass
class TrainingOutcome:
    model: torch.nn.Module
    loss_history: np.ndarray  # (epochs, N) float32 probe losses; NaN for samples never probed
    kept_history: np.ndarray  # (epochs, N) bool: True where the sample took part in that epoch's updates
    final_kept: np.ndarray  # (N,) bool: the final selection (eligible samples only)
    predicted: np.ndarray  # (N,) int64 final prediction, -1 for unreadable samples
    p_label: np.ndarray  # (N,) float32 final probability of the given label
    final_loss: np.ndarray  # (N,) float32 final probe loss
    normalization: dict[str, list[float]]
    epochs: list[EpochSummary] = field(default_factory=list)


@dataclass
class Probe:
    losses: np.ndarray
    predicted: np.ndarray
    p_label: np.ndarray


class Progress:
    """Callbacks the loop calls; the default does nothing. The CLI passes one that draws bars or prints lines."""

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None: ...

    def batch_done(self) -> None: ...

    def epoch_done(self, summary: EpochSummary, epochs: int) -> None: ...


def train_step_e(pixels: torch.Tensor, labels: np.ndarray, sample_ids: list[str], eligible: np.ndarray,
                 num_classes: int, config: CleanConfig, device: torch.device, *,
                 heldout: tuple[torch.Tensor, np.ndarray] | None = None,
                 progress: Progress | None = None) -> TrainingOutcome:
    """Train with the Step-E schedule. `pixels` is uint8 (N, 3, S, S); `eligible` marks the samples that may be
    trained on (readable, labelled). `config` must be resolved."""
    progress = progress or Progress()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    on_cuda = device.type == "cuda"
    n_samples, epochs = len(labels), config.epochs
    eligible_index = np.flatnonzero(eligible)
    mean, std = channel_stats(pixels[torch.from_numpy(eligible_index)] if len(eligible_index) else pixels)
    mean_t = torch.tensor(mean, device=device)[None, :, None, None]
    std_t = torch.tensor(std, device=device)[None, :, None, None]
    labels_t = torch.from_numpy(np.where(labels >= 0, labels, 0)).to(device)
    augment = random_crop_flip if config.stem == "cifar" else random_resized_crop_flip

    model = build_model(num_classes, config.stem).to(device)
    if on_cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_cuda else nullcontext

    def prepare(index: torch.Tensor) -> torch.Tensor:
        batch = normalize(pixels[index.to(pixels.device)].to(device, non_blocking=True), mean_t, std_t)
        return batch.contiguous(memory_format=torch.channels_last) if on_cuda else batch

    def probe(images: torch.Tensor, targets: torch.Tensor, index: np.ndarray) -> Probe:
        model.eval()
        losses, predicted, p_label = (np.full(len(targets), np.nan, np.float32), np.full(len(targets), -1, np.int64),
                                      np.full(len(targets), np.nan, np.float32))
        with torch.no_grad(), autocast():
            for start in range(0, len(index), config.eval_batch_size):
                chunk = torch.from_numpy(index[start:start + config.eval_batch_size])
                batch = normalize(images[chunk.to(images.device)].to(device), mean_t, std_t)
                logits = model(batch.contiguous(memory_format=torch.channels_last) if on_cuda else batch).float()
                target = targets[chunk.to(targets.device)]
                log_probs = F.log_softmax(logits, dim=1)
                picked = log_probs.gather(1, target[:, None])[:, 0]
                losses[chunk.numpy()] = (-picked).cpu().numpy()
                predicted[chunk.numpy()] = logits.argmax(1).cpu().numpy()
                p_label[chunk.numpy()] = picked.exp().cpu().numpy()
        return Probe(losses, predicted, p_label)

    loss_history = np.full((epochs, n_samples), np.nan, dtype=np.float32)
    kept_history = np.zeros((epochs, n_samples), dtype=bool)
    kept = eligible.copy()
    summaries: list[EpochSummary] = []
    for epoch in range(epochs):
        rho = rho_at(epoch, rho_max=config.rho_max, warmup=config.warmup, ramp=config.ramp)
        kept_history[epoch] = kept
        train_index = np.flatnonzero(kept)
        order = train_index[torch.randperm(len(train_index), generator=generator).numpy()]
        batches = [order[start:start + config.batch_size] for start in range(0, len(order), config.batch_size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            # Batch norm cannot train on a batch of one; the straggler joins the previous batch.
            batches[-2:] = [np.concatenate(batches[-2:])]
        progress.epoch_started(epoch, epochs, len(batches))

        # 1. train on the kept samples
        model.train()
        started, loss_sum = time.perf_counter(), 0.0
        for step, batch_index in enumerate(batches):
            # Progress is counted in epochs, so an epoch with fewer (kept) samples does not stretch the decay.
            lr = learning_rate(epoch + step / max(1, len(batches)), peak=config.lr, epochs=epochs,
                               warmup_epochs=config.lr_warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = torch.from_numpy(batch_index)
            images = prepare(index)
            if config.augment:
                images = augment(images, generator)
            with autocast():
                loss = F.cross_entropy(model(images), labels_t[index.to(device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            progress.batch_done()
        train_seconds = time.perf_counter() - started

        # 2. probe every readable sample, dropped ones included
        started = time.perf_counter()
        measured = probe(pixels, labels_t, eligible_index)
        probe_seconds = time.perf_counter() - started
        loss_history[epoch] = measured.losses

        # 3. held-out accuracy
        heldout_accuracy = None
        if heldout is not None:
            heldout_pixels, heldout_labels = heldout
            readable = np.flatnonzero(heldout_labels >= 0)
            if len(readable):
                result = probe(heldout_pixels, torch.from_numpy(np.where(heldout_labels >= 0, heldout_labels, 0)).to(device),
                               readable)
                heldout_accuracy = float((result.predicted[readable] == heldout_labels[readable]).mean())

        # 4. the keep mask for the next epoch (after the last one: the final selection)
        next_rho = rho_at(min(epoch + 1, epochs - 1), rho_max=config.rho_max, warmup=config.warmup, ramp=config.ramp)
        kept = select_kept(measured.losses, sample_ids, next_rho, eligible)

        summaries.append(EpochSummary(
            epoch=epoch, rho=rho, trained=len(train_index), dropped=int(eligible.sum() - len(train_index)),
            train_loss=loss_sum / max(1, len(batches)), probe_loss=float(np.nanmean(measured.losses)) if len(eligible_index) else float("nan"),
            heldout_accuracy=heldout_accuracy, train_seconds=train_seconds, probe_seconds=probe_seconds,
            train_images_per_second=len(train_index) / max(train_seconds, 1e-9),
            probe_images_per_second=len(eligible_index) / max(probe_seconds, 1e-9)))
        progress.epoch_done(summaries[-1], epochs)

    return TrainingOutcome(
        model=model, loss_history=loss_history, kept_history=kept_history, final_kept=kept,
        predicted=measured.predicted, p_label=measured.p_label, final_loss=measured.losses,
        normalization={"mean": mean, "std": std}, epochs=summaries)
