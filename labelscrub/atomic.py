"""Writing output files so that a reader never sees half of one: write to a temporary name in the same folder,
flush to disk, then rename into place (a rename within one file system is atomic).

Inside `outputs_together()` the renames wait until every file of the block is written, so a failure part-way (a
full disk while writing the manifest) leaves none of the block's new files rather than a report without a manifest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from labelscrub.errors import LabelscrubError

_staged: ContextVar[list[tuple[Path, Path]] | None] = ContextVar("labelscrub_staged_outputs", default=None)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` (at the end of an enclosing
    `outputs_together()` block, if any), on failure it is removed."""
    temporary = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        yield temporary
        _fsync(temporary)
        staged = _staged.get()
        if staged is None:
            os.replace(temporary, target)
        else:
            staged.append((temporary, target))
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _write_error(target, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def outputs_together() -> Iterator[None]:
    staged: list[tuple[Path, Path]] = []
    token = _staged.set(staged)
    try:
        yield
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    finally:
        _staged.reset(token)
    for temporary, target in staged:
        try:
            os.replace(temporary, target)
        except OSError as error:
            raise _write_error(target, error) from None


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _write_error(target: Path, error: OSError) -> LabelscrubError:
    return LabelscrubError(f"{target}: cannot write the output file ({error.strerror or error}); "
                           "check free disk space and write permission")


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
