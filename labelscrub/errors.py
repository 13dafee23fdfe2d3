"""The error type for problems the user can fix: bad input, a bad option, an occupied output folder.

The CLI prints its message as one line and exits non-zero; anything else that escapes is a bug in labelscrub.
"""


class LabelscrubError(Exception):
    """A problem with the user's input or options. The message names the file, row or option and what to do."""
