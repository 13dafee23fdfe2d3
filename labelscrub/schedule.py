"""The Step-E schedule and the selection rule: pure functions, no model and no I/O.

Epochs are numbered from 0. `rho_at(t)` is the share of training samples left out of epoch t; the samples left out
are chosen by `select_kept` from the scores (ranking.py) measured up to epoch t-1.
"""

from __future__ import annotations

import math

import numpy as np


def rho_at(epoch: int, *, rho_max: float, warmup: int, ramp: int) -> float:
    """Share of samples excluded from gradient updates in `epoch`.

    1. Warm-up: epochs 0 .. warmup-1 train on everything (rho = 0).
    2. Ramp: epoch warmup + i (i = 0 .. ramp-1) uses rho_max * (i + 1) / ramp, so the ramp's last epoch reaches rho_max.
    3. Plateau: every later epoch uses rho_max. With ramp = 0 the plateau starts right after the warm-up.
    """
    if epoch < warmup:
        return 0.0
    if ramp <= 0:
        return rho_max
    return rho_max * min(1.0, (epoch - warmup + 1) / ramp)


def rho_schedule(epochs: int, *, rho_max: float, warmup: int, ramp: int) -> list[float]:
    """`rho_at` for every epoch of a run."""
    return [rho_at(epoch, rho_max=rho_max, warmup=warmup, ramp=ramp) for epoch in range(epochs)]


def drop_count(rho: float, n_samples: int) -> int:
    """Number of samples to exclude: ceil(rho * n), computed so float noise (0.2 * 10 = 2.0000000000000004)
    does not add a sample."""
    return min(n_samples, math.ceil(round(rho * n_samples, 9)))


def select_kept(scores: np.ndarray, sample_ids: list[str] | np.ndarray, rho: float,
                eligible: np.ndarray | None = None, groups: np.ndarray | None = None,
                group_rho: dict[int, float] | None = None) -> np.ndarray:
    """Boolean keep mask: False for the ceil(rho * n) highest-scoring eligible samples.

    - `scores`: one ranking score per sample (higher = more likely mislabeled). NaN ranks above everything, since a
      sample whose loss cannot be computed is not one to trust.
    - Ties are broken by sample id: among equal scores the lexicographically smaller id is dropped first, so the
      result never depends on the order the samples were read in.
    - `eligible`: samples that take part (others, e.g. unreadable ones, are never kept and do not count in n).
    - `groups` (per-class selection): the rule applies within each group (class) separately, ceil(rho * n_group)
      from each, so a hard class is not emptied while an easy class keeps its wrong labels.
    - `group_rho` (with `groups`): a share of its own for each group named in it, e.g. each class's estimated
      noise rate; groups not named use `rho`.
    """
    if groups is not None:
        eligible = np.ones(len(scores), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
        keep = eligible.copy()
        for group in np.unique(groups[eligible]):
            members = eligible & (groups == group)
            share = (group_rho or {}).get(int(group), rho)
            keep &= select_kept(scores, sample_ids, share, members) | ~members
        return keep
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(sample_ids, dtype=object)
    eligible = np.ones(len(scores), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    candidates = np.flatnonzero(eligible)
    keep = eligible.copy()
    n_drop = drop_count(rho, len(candidates))
    if n_drop == 0:
        return keep
    ranked = np.where(np.isnan(scores[candidates]), np.inf, scores[candidates])
    # np.lexsort sorts by the last key first: highest score first, then smallest id.
    order = np.lexsort((ids[candidates].astype(str), -ranked))
    keep[candidates[order[:n_drop]]] = False
    return keep


def learning_rate(epoch_progress: float, *, peak: float, epochs: int, warmup_epochs: float) -> float:
    """Learning rate after `epoch_progress` epochs (fractional) of `epochs`.

    1. Linear warm-up from 0 to `peak` over the first `warmup_epochs` (large steps on a freshly initialised
       network with barely-settled batch-norm statistics blow the loss up, worst on small datasets).
    2. Cosine decay from `peak` to 0 over the whole run (the warm-up is a ramp on top of it, not a delay).
    """
    fraction = min(max(epoch_progress / epochs, 0.0), 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
    ramp = min(1.0, epoch_progress / warmup_epochs) if warmup_epochs > 0 else 1.0
    return peak * ramp * cosine
