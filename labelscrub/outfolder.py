"""The output folder guard every command runs before it reads anything: never inside the input, never a folder
holding files unless the user said to replace them (--overwrite) or to continue the run left there (--resume)."""

from __future__ import annotations

from pathlib import Path

from labelscrub.checkpoint import CHECKPOINT_NAME
from labelscrub.errors import LabelscrubError


def prepare_out_dir(out_dir: Path, data_path: Path, overwrite: bool, *, resume: bool = False,
                    restarted: bool = False) -> bool:
    """Refuse an output folder inside the input, or one holding files, unless --overwrite or --resume. Return
    whether the run resumes: `restarted` (torchrun restarted the processes) resumes from a checkpoint if there is
    one, else starts again over what the first attempt, which passed this check, left."""
    if restarted and not resume:
        resume, overwrite = (out_dir / CHECKPOINT_NAME).exists(), True
    data_root = (data_path if data_path.is_dir() else data_path.parent).resolve()
    if data_path.is_dir() and out_dir.resolve().is_relative_to(data_root):
        raise LabelscrubError(f"{out_dir}: the output folder is inside the input {data_path}; "
                              "labelscrub never writes into its input, choose a folder outside it")
    if out_dir.exists() and not out_dir.is_dir():
        raise LabelscrubError(f"{out_dir}: exists and is not a folder; choose another --out")
    if resume:
        if not (out_dir / CHECKPOINT_NAME).exists():
            raise LabelscrubError(f"{out_dir}: no {CHECKPOINT_NAME} to resume from (the run finished, or never "
                                  "completed an epoch); run again without --resume")
        return True
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise LabelscrubError(f"{out_dir}: the output folder is not empty; pass --overwrite to replace its "
                              "labelscrub outputs, or choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LabelscrubError(f"{out_dir}: cannot create the output folder ({error.strerror or error})") from None
    return False


def restart_note(restarts: int, resumed: bool, out_dir: Path) -> str | None:
    """What a run that torchrun restarted (`restarts` > 0) tells the user about where it goes on from. Finding no
    checkpoint is worth a warning: a restart may move rank 0 to another machine, which sees no checkpoint unless
    `out_dir` is on a filesystem every machine shares, and the run would silently start over."""
    if not restarts:
        return None
    if resumed:
        return f"torchrun restarted the processes (restart {restarts}); resuming from the checkpoint in {out_dir}"
    return (f"torchrun restarted the processes (restart {restarts}) and found no checkpoint in {out_dir}: starting "
            "again from the first epoch (no epoch had finished, or --out is not on a filesystem every machine sees)")
