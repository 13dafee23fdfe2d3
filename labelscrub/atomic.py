"""Writing output files so that a reader never sees half of one: write to a temporary name in the same folder,
flush to disk, then rename into place (a rename within one file system is atomic)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labelscrub.errors import LabelscrubError


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on failure it is removed."""
    temporary = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise LabelscrubError(f"{target}: cannot write the output file ({error.strerror or error}); "
                              "check free disk space and write permission") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
