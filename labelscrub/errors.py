"""The error types: problems the user can fix (bad input, a bad option, an occupied output folder), and under
torchrun the ways a process learns that the run ends elsewhere (failures.py).

The CLI prints a message as one line and exits non-zero; anything else that escapes is a bug in labelscrub.
"""


class LabelscrubError(Exception):
    """A problem with the user's input or options. The message names the file, row or option and what to do."""


class ProcessStopped(LabelscrubError):
    """Another process of the run stopped (or torchrun stopped this one because of it)."""

    def __init__(self, stopped: list[int] | None, processes: int, *, reporter: bool):
        self.stopped = stopped  # the ranks that did not answer; None when the store could not tell
        self.processes = processes
        self.reporter = reporter  # the lowest surviving rank says it; the others stay silent
        if stopped is None:
            what = "another process stopped"
        elif stopped:
            what = f"process {', '.join(map(str, stopped))} of {processes} stopped"
        else:
            what = "the processes were stopped"
        super().__init__(what)


class ReportedElsewhere(LabelscrubError):
    """An error another process of the run reports: this one ends quietly, so the user reads it once."""


class FailedOnMain(ReportedElsewhere):
    """Rank 0's error, seen by the other ranks: rank 0 prints it, they end quietly."""
