"""Reading a person's review of a clean run: the decisions.csv the review page downloads.

Format: UTF-8 CSV (a leading byte-order mark is tolerated), header exactly `sample_id,decision,label`, then one row
per reviewed sample. `decision` is keep, drop or relabel. `label` is a class name: for relabel the new class
(required); for keep it may be empty or the sample's own class (another is refused: keeping means the given label,
relabel changes it); for drop it is ignored, but a non-empty one must still name a class of the run, so a typo is
caught instead of silently ignored. Spaces around the decision and the label are ignored; the sample id is matched
exactly, spaces included. Blank lines are skipped.

Spreadsheets read a cell that starts with =, +, - or @ as a formula, so the page writes such an id or class name
with a leading apostrophe ('=x); one apostrophe before those characters is removed here ('=x is the id =x).

The whole file is checked against the run before anything is applied: each problem is a `LabelscrubError` of one
line naming the file, the line number and what to do.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from labelscrub.errors import LabelscrubError

HEADER = ("sample_id", "decision", "label")
DECISION_WORDS = ("keep", "drop", "relabel")
LISTED_CLASSES = 10  # class names shown in an "unknown class" message; more would not fit one line
# A text the page wrote with an apostrophe so that a spreadsheet keeps it as text ('=x, ''=x for the id '=x)
FORMULA_GUARD = re.compile(r"^'(?='*[=+\-@])")


@dataclass(frozen=True)
class Decision:
    line: int  # line of the file, for messages and the applied record
    sample_id: str
    decision: str  # keep, drop or relabel
    row: int  # the sample's row in the run's report
    label: int  # relabel: the new class index; keep and drop: -1


@dataclass(frozen=True)
class _Run:
    """What the decisions are checked against, from the run's report."""

    row_of: dict[str, int]  # sample id -> report row
    labels: list[int]  # per row, the given class index (-1: none)
    class_names: list[str]
    class_of: dict[str, int]  # class name -> index
    problems: list[str | None]  # per row, why the sample cannot be in a manifest; None where it can


def read_decisions(path: str | Path, *, sample_ids: list[str], labels: list[int], class_names: list[str],
                   problems: list[str | None]) -> list[Decision]:
    """The decisions of `path`, checked against a run: its report's `sample_ids`, their given class indices
    (`labels`, -1 where none), its `class_names` and, per sample, why it cannot be in a manifest (`problems`: the
    report's error, None where the sample is usable)."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise _error(path, 1, f"the file is empty; expected the header {','.join(HEADER)}")
    line, header = rows[0]
    if tuple(field.strip() for field in header) != HEADER:
        raise _error(path, line, f"expected the header {','.join(HEADER)}, found {','.join(header)!r}; start the "
                                 "file with that header (download decisions.csv from the review page again)")
    run = _Run(row_of={sample_id: row for row, sample_id in enumerate(sample_ids)}, labels=list(labels),
               class_names=class_names, class_of={name: index for index, name in enumerate(class_names)},
               problems=problems)
    decided_on: dict[str, int] = {}
    decisions = []
    for line, fields in rows[1:]:
        decision = _checked(path, line, fields, run)
        if decision.sample_id in decided_on:
            raise _error(path, line, f"sample {decision.sample_id!r} is already decided on line "
                                     f"{decided_on[decision.sample_id]}; keep one row per sample")
        decided_on[decision.sample_id] = line
        decisions.append(decision)
    return decisions


def without_formula_guard(text: str) -> str:
    """`text` as it was before the page guarded it against spreadsheet formulas: '=x -> =x; 'x stays 'x."""
    return FORMULA_GUARD.sub("", text, count=1)


def _checked(path: Path, line: int, fields: list[str], run: _Run) -> Decision:
    """One row as a decision, or the one-line error that says what is wrong with it."""
    if len(fields) != len(HEADER):
        raise _error(path, line, f"expected {len(HEADER)} fields ({','.join(HEADER)}), found {len(fields)}; "
                                 "quote a field that contains a comma")
    sample_id, word = without_formula_guard(fields[0]), fields[1].strip()  # the id exactly as written
    label = without_formula_guard(fields[2].strip())
    decision = word.lower()
    if decision not in DECISION_WORDS:
        raise _error(path, line, f"unknown decision {word!r}; use {', '.join(DECISION_WORDS)}")
    if sample_id not in run.row_of:
        hint = "; ids are matched exactly, remove the spaces around it" if sample_id.strip() in run.row_of else ""
        raise _error(path, line, f"unknown sample id {sample_id!r}; use the ids of the run's report "
                                 f"(sample_id column){hint}")
    row, class_of = run.row_of[sample_id], run.class_of
    if decision == "relabel" and not label:
        raise _error(path, line, f"relabel of {sample_id!r} needs the new class name in the label column")
    if label and label not in class_of:
        names = run.class_names
        shown = ", ".join(names[:LISTED_CLASSES]) + (", ..." if len(names) > LISTED_CLASSES else "")
        raise _error(path, line, f"unknown class {label!r}; use one of the run's classes ({shown})")
    if decision == "keep" and label and class_of[label] != run.labels[row] and run.labels[row] >= 0:
        raise _error(path, line, f"keep of {sample_id!r} names the class {label!r}, but its label is "
                                 f"{run.class_names[run.labels[row]]!r}; write relabel to change it, or leave the "
                                 "label empty")
    problem = run.problems[row]
    if decision != "drop" and problem is not None:
        raise _error(path, line, f"sample {sample_id!r} cannot be {'kept' if decision == 'keep' else 'relabelled'}"
                                 f", the run could not use it ({problem}); drop it or remove the line")
    return Decision(line=line, sample_id=sample_id, decision=decision, row=row,
                    label=class_of[label] if decision == "relabel" else -1)


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Every non-blank row with its line number (the record's last line), fields as written (the csv module has
    taken the line ends off)."""
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
            if any(field.strip() for field in record):  # spreadsheets leave empty lines or rows of bare commas
                rows.append((reader.line_num, record))
    except csv.Error as error:
        raise _error(path, reader.line_num, f"not valid CSV ({error}); save the file as CSV") from None
    return rows


def _error(path: Path, line: int, message: str) -> LabelscrubError:
    return LabelscrubError(f"{path} line {line}: {message}")
