"""Reading a person's review of a clean run: the decisions.csv the review page downloads.

Format: UTF-8 CSV (a leading byte-order mark is tolerated), header exactly `sample_id,decision,label`, then one row
per reviewed sample. `decision` is keep, drop or relabel. `label` is a class name: for relabel the new class
(required); for keep and drop it may be empty or the sample's class and is ignored, but a non-empty one must still
name a class of the run, so a typo is caught instead of silently ignored. Whitespace around fields is stripped and
blank lines are skipped.

The whole file is checked against the run before anything is applied: each problem is a `LabelscrubError` of one
line naming the file, the line number and what to do.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from labelscrub.errors import LabelscrubError

HEADER = ("sample_id", "decision", "label")
DECISION_WORDS = ("keep", "drop", "relabel")
LISTED_CLASSES = 10  # class names shown in an "unknown class" message; more would not fit one line


@dataclass(frozen=True)
class Decision:
    line: int  # line of the file, for messages and the applied record
    sample_id: str
    decision: str  # keep, drop or relabel
    row: int  # the sample's row in the run's report
    label: int  # relabel: the new class index; keep and drop: -1


def read_decisions(path: str | Path, *, sample_ids: list[str], class_names: list[str],
                   problems: list[str | None]) -> list[Decision]:
    """The decisions of `path`, checked against a run: its report's `sample_ids`, its `class_names` and, per sample,
    why it cannot be in a manifest (`problems`: the report's error, None where the sample is usable)."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise _error(path, 1, f"the file is empty; expected the header {','.join(HEADER)}")
    line, header = rows[0]
    if tuple(header) != HEADER:
        raise _error(path, line, f"expected the header {','.join(HEADER)}, found {','.join(header)!r}; start the "
                                 "file with that header (download decisions.csv from the review page again)")
    row_of = {sample_id: row for row, sample_id in enumerate(sample_ids)}
    class_of = {name: index for index, name in enumerate(class_names)}
    decided_on: dict[str, int] = {}
    decisions = []
    for line, fields in rows[1:]:
        if len(fields) != len(HEADER):
            raise _error(path, line, f"expected {len(HEADER)} fields ({','.join(HEADER)}), found {len(fields)}; "
                                     "quote a field that contains a comma")
        sample_id, word, label = fields
        decision = word.lower()
        if decision not in DECISION_WORDS:
            raise _error(path, line, f"unknown decision {word!r}; use {', '.join(DECISION_WORDS)}")
        if sample_id not in row_of:
            raise _error(path, line, f"unknown sample id {sample_id!r}; use the ids of the run's report "
                                     "(sample_id column)")
        if sample_id in decided_on:
            raise _error(path, line, f"sample {sample_id!r} is already decided on line {decided_on[sample_id]}; "
                                     "keep one row per sample")
        if decision == "relabel" and not label:
            raise _error(path, line, f"relabel of {sample_id!r} needs the new class name in the label column")
        if label and label not in class_of:
            shown = ", ".join(class_names[:LISTED_CLASSES]) + (", ..." if len(class_names) > LISTED_CLASSES else "")
            raise _error(path, line, f"unknown class {label!r}; use one of the run's classes ({shown})")
        problem = problems[row_of[sample_id]]
        if decision != "drop" and problem is not None:
            raise _error(path, line, f"sample {sample_id!r} cannot be {'kept' if decision == 'keep' else 'relabelled'}"
                                     f", the run could not use it ({problem}); drop it or remove the line")
        decided_on[sample_id] = line
        decisions.append(Decision(line=line, sample_id=sample_id, decision=decision, row=row_of[sample_id],
                                  label=class_of[label] if decision == "relabel" else -1))
    return decisions


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Every non-blank row with its line number (the record's last line), fields stripped."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet programs save UTF-8 with a BOM
    except UnicodeDecodeError:
        raise LabelscrubError(f"{path}: not UTF-8 text; save the decisions as a UTF-8 CSV file") from None
    except OSError as error:
        raise LabelscrubError(f"{path}: cannot read the decisions file ({error.strerror or error}); pass the "
                              "decisions.csv downloaded from the review page") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        for record in reader:
            fields = [field.strip() for field in record]
            if any(fields):  # spreadsheets often leave empty lines or rows of bare commas at the end
                rows.append((reader.line_num, fields))
    except csv.Error as error:
        raise _error(path, reader.line_num, f"not valid CSV ({error}); save the file as CSV") from None
    return rows


def _error(path: Path, line: int, message: str) -> LabelscrubError:
    return LabelscrubError(f"{path} line {line}: {message}")
