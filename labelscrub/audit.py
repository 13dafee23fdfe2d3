"""`labelscrub audit`: the label-review page of a clean run (audit.html), for people to look at the suspects, decide
on them and download their decisions for `labelscrub apply`.

Tables and curves come from run.json; the gallery holds the most suspicious samples of each class (highest score
first), at most MAX_SHOWN in all unless --per-class asks for more, with thumbnails read from the run's DATA. When
DATA has moved or is gone the page is still written, without pictures, and says so.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from labelscrub.apply import run_manifest
from labelscrub.atomic import write_text
from labelscrub.audit_page import render_page
from labelscrub.config import CleanConfig
from labelscrub.errors import LabelscrubError
from labelscrub.report import read_report_metadata
from labelscrub.sources import LabeledImages, open_data
from labelscrub.thumbnails import thumbnails

AUDIT_NAME = "audit.html"
MAX_SHOWN = 2000  # cards in the gallery, all classes together, unless --per-class asks for more
DEFAULT_PER_CLASS = 60  # cards per class when there are few classes
EXAMPLES_PER_CLASS = 3  # confident samples of a class shown beside its suspects
MAX_EXAMPLES = 2000  # examples in all: at most as many pictures again as the gallery's (fewer per class)
MAX_MATRIX_CLASSES = 20  # the noise matrix shows the classes with the most dropped samples
SPARKLINE_QUANTILE = 99  # sparklines share one scale: this percentile of the shown losses
REPORT_COLUMNS = ["sample_id", "label", "predicted", "p_label", "loss", "loss_trajectory", "dropped",
                  "first_dropped_epoch", "score", "confused_with", "suggested_label", "suggestion_confidence", "error"]
SHOWN_OPTIONS = ["epochs", "warmup", "ramp", "rho_max", "select", "rank_by", "smoothing", "loss_pass", "stem",
                 "image_size", "batch_size", "lr", "seed", "relabel", "relabel_confidence"]
# What the page reads from run.json, so a file of another shape is refused in one line instead of a traceback
RUN_COUNTS = ("samples", "classes", "dropped", "in_manifest", "unreadable")
RUN_SECTIONS = {"config": dict, "noise": dict, "epochs": list, "unreadable_samples": list, "dropped_by_class": dict}
RUN_IDENTITY = ("outputs", "counts", "class_names", "config", "timings", "epochs")  # differ between runs
RUN_RECORDS = {"epochs": set(), "unreadable_samples": {"sample_id", "error"},
               "noise_matrix": {"given", "predicted", "count"}}


@dataclass(frozen=True)
class AuditResult:
    path: Path
    cards: int  # samples in the gallery
    pictures: int  # of which with a thumbnail
    size_bytes: int
    notices: list[str]  # what the page says is missing (no pictures, ...)


def write_audit(run_dir: str | Path, out: str | Path | None = None, *, per_class: int | None = None) -> AuditResult:
    """Write the audit page of the clean run in `run_dir` (default `run_dir/audit.html`).

    Example:
        result = labelscrub.write_audit("runs/digits")
        print(result.path, result.cards)
    """
    run_dir = Path(run_dir)
    run = _read_run_json(run_dir)
    report = _read_report(run_dir)
    class_names = list(run["class_names"])
    shown, capped = gallery_rows(report, len(class_names), per_class)
    notices: list[str] = []
    # the report's metadata holds DATA as an absolute path; run.json holds it as typed, maybe relative
    run["data"] = read_report_metadata(run_dir / "report.parquet").get("data") or run.get("data")
    images = _open_images(run["data"], run.get("config", {}), notices)
    examples = example_rows(report, shown)
    pictured = np.union1d(shown, [row for rows in examples.values() for row in rows]).astype(np.int64)
    pictures = _pictures(images, report, pictured, notices)
    rule = _gallery_rule(report, shown, capped, len(class_names), per_class_limit(len(class_names), per_class))
    view = _view(run_dir, run, report, class_names, shown, pictures, rule, notices)
    view["page_data"]["examples"] = _examples(report, examples, pictures, len(class_names))
    target = Path(out) if out is not None else run_dir / AUDIT_NAME
    page = render_page(view)
    write_text(target, page)
    with_picture = sum(row in pictures for row in shown.tolist())  # of the cards; examples have pictures too
    return AuditResult(path=target, cards=len(shown), pictures=with_picture, size_bytes=len(page.encode()),
                       notices=notices)


def per_class_limit(num_classes: int, per_class: int | None) -> int:
    """Cards per class: `per_class` when asked, else DEFAULT_PER_CLASS, fewer with many classes so the gallery
    stays within MAX_SHOWN (at least one per class)."""
    if per_class is not None:
        if per_class < 1:
            raise LabelscrubError(f"--per-class must be at least 1, not {per_class}")
        return per_class
    return max(1, min(DEFAULT_PER_CLASS, MAX_SHOWN // max(1, num_classes)))


def gallery_rows(report: dict[str, np.ndarray], num_classes: int, per_class: int | None) -> tuple[np.ndarray, bool]:
    """Report rows shown in the gallery, class by class: per given class the readable samples with the highest
    scores (ties in report order). Without `per_class`, at most MAX_SHOWN in all: with more classes than that, the
    highest scores of all classes, and the rest of the classes have no card. Also says whether that cap cut it."""
    limit = per_class_limit(num_classes, per_class)
    score = np.where(np.isnan(report["score"]), -np.inf, report["score"])
    candidates = np.flatnonzero(report["error_free"] & (report["label"] >= 0))
    chosen = _highest_per_class(candidates, score, report["label"], limit)
    if per_class is not None or len(chosen) <= MAX_SHOWN:
        return chosen, False
    highest = np.argsort(-score[chosen], kind="stable")[:MAX_SHOWN]
    return chosen[np.sort(highest)], True  # sorted positions keep the class-by-class order


def example_rows(report: dict[str, np.ndarray], shown: np.ndarray) -> dict[int, list[int]]:
    """Per class a shown sample is labelled as or suggested for, its most confident samples (readable, not dropped,
    highest p(label) first): what the class looks like, beside the suspects to compare with. EXAMPLES_PER_CLASS of
    each, fewer when that would pass MAX_EXAMPLES in all."""
    needed = np.union1d(report["label"][shown], report["suggested"][shown])
    needed = needed[needed >= 0]
    if not len(needed):
        return {}
    limit = min(EXAMPLES_PER_CLASS, max(1, MAX_EXAMPLES // len(needed)))
    p_label = report["p_label"]
    candidates = np.flatnonzero(report["error_free"] & ~report["dropped"] & np.isfinite(p_label)
                                & np.isin(report["label"], needed))
    examples: dict[int, list[int]] = {}
    for row in _highest_per_class(candidates, p_label, report["label"], limit).tolist():
        examples.setdefault(int(report["label"][row]), []).append(row)
    return examples


def _highest_per_class(rows: np.ndarray, values: np.ndarray, labels: np.ndarray, limit: int) -> np.ndarray:
    """Of `rows`, at most `limit` per class with the highest `values` (ties in row order), class by class."""
    by_class = rows[np.lexsort((-values[rows], labels[rows]))]
    sorted_labels = labels[by_class]
    rank_in_class = np.arange(len(by_class)) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    return by_class[rank_in_class < limit]


def _gallery_rule(report: dict[str, np.ndarray], shown: np.ndarray, capped: bool, num_classes: int,
                  limit: int) -> str:
    if not capped:
        return f"{limit} samples of each class with the highest scores, {len(shown):,} in all"
    without = num_classes - len(np.unique(report["label"][shown]))
    return (f"{len(shown):,} samples with the highest scores of all classes, at most {limit} of each: the gallery "
            f"holds at most {MAX_SHOWN:,}, so {without:,} of the {num_classes:,} classes have no card here "
            "(report.parquet has every sample)")


def _read_run_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    if not path.exists():
        raise LabelscrubError(f"{run_dir}: no run.json here; pass the --out folder of a finished `labelscrub clean`")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LabelscrubError(f"{path}: not readable JSON ({error}); rerun `labelscrub clean`") from None
    problem = _shape_problem(run)
    if problem is not None:
        raise LabelscrubError(f"{path}: not the run.json of a labelscrub run ({problem}); pass the --out folder of "
                              "`labelscrub clean`, or rerun it to write run.json again")
    return run


def _shape_problem(run: Any) -> str | None:
    """What in a parsed run.json the page could not read, or None: the parts it uses must have their types."""
    if not isinstance(run, dict):
        return f"a JSON {type(run).__name__} instead of an object"
    names = run.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        return "class_names is missing or not a list of names"
    counts = run.get("counts")
    if not isinstance(counts, dict) or not all(_is_count(counts.get(name)) for name in RUN_COUNTS):
        return f"counts is missing or lacks one of {', '.join(RUN_COUNTS)}"
    for name, kind in RUN_SECTIONS.items():
        if run.get(name) is not None and not isinstance(run[name], kind):
            return f"{name} is not a JSON {'object' if kind is dict else 'list'}"
    noise = run.get("noise") or {}
    if not isinstance(noise.get("classes") or {}, dict) or not isinstance(noise.get("noise_matrix") or [], list):
        return "noise.classes or noise.noise_matrix has the wrong type"
    for name, fields in RUN_RECORDS.items():
        records = noise.get(name) if name == "noise_matrix" else run.get(name)
        if not all(isinstance(record, dict) and fields <= set(record) for record in records or []):
            return f"an entry of {name} is not an object with {', '.join(sorted(fields)) or 'fields'}"
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_report(run_dir: Path) -> dict[str, np.ndarray]:
    path = run_dir / "report.parquet"
    if not path.exists():
        raise LabelscrubError(f"{run_dir}: no report.parquet here; pass the --out folder of a finished "
                              "`labelscrub clean`")
    table = pq.read_table(path, columns=REPORT_COLUMNS)

    def numbers(name: str, fill: float) -> np.ndarray:
        return table.column(name).fill_null(fill).to_numpy().astype(np.float64)

    return {
        "sample_id": np.array(table.column("sample_id").to_pylist(), dtype=object),
        "label": table.column("label").fill_null(-1).to_numpy().astype(np.int64),
        "predicted": table.column("predicted").fill_null(-1).to_numpy().astype(np.int64),
        "p_label": numbers("p_label", math.nan),
        "loss": numbers("loss", math.nan),
        "score": numbers("score", math.nan),
        "dropped": table.column("dropped").fill_null(False).to_numpy(zero_copy_only=False).astype(bool),
        "first_dropped_epoch": table.column("first_dropped_epoch").fill_null(-1).to_numpy().astype(np.int64),
        "suggested": table.column("suggested_label").fill_null(-1).to_numpy().astype(np.int64),
        "confidence": numbers("suggestion_confidence", math.nan),
        "confused_with": np.array(table.column("confused_with").to_pylist(), dtype=object),
        "error_free": np.array([error is None for error in table.column("error").to_pylist()]),
        "trajectory": table.column("loss_trajectory"),
    }


def _open_images(data: str | None, config: dict[str, Any], notices: list[str]) -> LabeledImages | None:
    if data is None:
        notices.append("No pictures: the run does not say where its data is.")
        return None
    try:
        return open_data(data, image_column=config.get("image_column"), label_column=config.get("label_column"),
                         id_column=config.get("id_column"),
                         allow_outside_root=bool(config.get("allow_outside_root"))).train
    except (LabelscrubError, OSError) as error:
        notices.append(f"No pictures: the run's data could not be read ({error}). Move it back to {data} and run "
                       "`labelscrub audit` again to see them.")
        return None


def _pictures(images: LabeledImages | None, report: dict[str, np.ndarray], shown: np.ndarray,
              notices: list[str]) -> dict[int, str]:
    """{report row: thumbnail data URI} for the shown rows whose image could be read."""
    if images is None or not len(shown):
        return {}
    index_of = {sample_id: index for index, sample_id in enumerate(images.sample_ids)}
    source_of = {int(row): index_of.get(report["sample_id"][row]) for row in shown}
    missing = sum(index is None for index in source_of.values())
    if missing:
        notices.append(f"{missing} of the shown samples are no longer in the run's data (it changed since the "
                       "run); they are shown without pictures.")
    found = thumbnails(images, [index for index in source_of.values() if index is not None])
    return {row: found[index] for row, index in source_of.items() if index is not None and index in found}


def _view(run_dir: Path, run: dict[str, Any], report: dict[str, np.ndarray], class_names: list[str],
          shown: np.ndarray, pictures: dict[int, str], gallery_rule: str, notices: list[str]) -> dict[str, Any]:
    config = run.get("config", {})
    noise = run.get("noise") or {}
    return {
        "run_name": run_dir.resolve().name,
        "run_dir": _as_shown(run_dir),
        "data": _as_shown(run.get("data")),
        "notices": notices,
        "counts": run["counts"],
        "noise": noise,
        "heldout_accuracy": run.get("heldout_accuracy"),
        "method": config.get("method", "?"),
        "options": {name: config[name] for name in SHOWN_OPTIONS if name in config},
        "epochs": run.get("epochs", []),
        "classes": _class_rows(run, class_names),
        "matrix": _matrix(noise.get("noise_matrix") or [], class_names),
        "unreadable": run.get("unreadable_samples", []),
        "gallery_rule": gallery_rule,
        "page_data": {"key": _storage_key(run), "classes": class_names,
                      "loss_top": _sparkline_top(report, shown),
                      "cards": _cards(report, shown, pictures, config)},
    }


def _as_shown(path: str | Path | None) -> str:
    """A path as the reader of the page would type it: relative to the current folder when it lies inside it (the
    page is usually built from where the run was started), else absolute."""
    if path is None:
        return "?"
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def _class_rows(run: dict[str, Any], class_names: list[str]) -> list[dict[str, Any]]:
    per_class = (run.get("noise") or {}).get("classes") or {}
    dropped = run.get("dropped_by_class") or {}
    rows = []
    for name in class_names:
        entry = per_class.get(name, {})
        rows.append({"name": name, "samples": entry.get("samples", 0),
                     "estimated_noise_rate": entry.get("estimated_noise_rate"),
                     "dropped": entry.get("dropped", dropped.get(name, 0)),
                     "confused_with": entry.get("confused_with"), "confused_share": entry.get("confused_share")})
    return rows


def _matrix(cells: list[dict[str, Any]], class_names: list[str]) -> dict[str, Any]:
    """The given x predicted counts of dropped samples, over the MAX_MATRIX_CLASSES classes that take part most."""
    weight: dict[str, int] = {}
    for cell in cells:
        for name in (cell["given"], cell["predicted"]):
            weight[name] = weight.get(name, 0) + cell["count"]
    involved = sorted(weight, key=lambda name: (-weight[name], name))
    kept = set(involved[:MAX_MATRIX_CLASSES])
    order = [name for name in class_names if name in kept]
    position = {name: index for index, name in enumerate(order)}
    counts = [[0] * len(order) for _ in order]
    for cell in cells:
        if cell["given"] in position and cell["predicted"] in position:
            counts[position[cell["given"]]][position[cell["predicted"]]] += cell["count"]
    return {"rows": order, "columns": order, "counts": counts,
            "left_out_classes": max(0, len(involved) - MAX_MATRIX_CLASSES)}


def _cards(report: dict[str, np.ndarray], shown: np.ndarray, pictures: dict[int, str],
           config: dict[str, Any]) -> list[dict[str, Any]]:
    readable = report["error_free"] & (report["label"] >= 0)
    scores = np.where(readable & ~np.isnan(report["score"]), report["score"], -np.inf)
    # rank: the share of readable samples scoring at least as high (0 = the most suspicious), for all shown at once
    ascending = np.sort(scores[readable])
    at_least = len(ascending) - np.searchsorted(ascending, scores[shown], side="left")
    ranks = at_least / max(1, len(ascending))
    # what the run's manifest did with each sample, as `clean` wrote it (relabelling keeps dropped samples that
    # have a sure suggestion, under it)
    run_config = CleanConfig.from_dict(config)
    in_manifest, manifest_labels = run_manifest(report["label"], report["dropped"], report["suggested"],
                                                report["confidence"], usable=readable, relabel=run_config.relabel,
                                                relabel_confidence=run_config.relabel_confidence)
    cards = []
    for row, rank in zip(shown.tolist(), ranks.tolist()):
        suggested = int(report["suggested"][row])
        given = int(report["label"][row])
        dropped = bool(report["dropped"][row])
        decided_label = int(manifest_labels[row])
        decision = "drop" if not in_manifest[row] else ("relabel" if decided_label != given else "keep")
        first_dropped = int(report["first_dropped_epoch"][row])
        cards.append({
            "id": str(report["sample_id"][row]), "given": given, "predicted": int(report["predicted"][row]),
            "p_given": _rounded(report["p_label"][row]), "suggested": suggested,
            "confidence": _rounded(report["confidence"][row]), "dropped": dropped,
            "confused": report["confused_with"][row], "score": _rounded(report["score"][row], fallback=-1.0),
            "loss": _rounded(report["loss"][row], fallback=-1.0), "rank": round(rank, 4),
            "trajectory": [_rounded(value, fallback=0.0) for value in report["trajectory"][row].as_py() or []],
            "first_dropped": None if first_dropped < 0 else first_dropped,
            "picture": pictures.get(row), "run_decision": decision, "run_label": decided_label,
        })
    return cards


def _examples(report: dict[str, np.ndarray], examples: dict[int, list[int]], pictures: dict[int, str],
              num_classes: int) -> list[list[dict[str, Any]]]:
    """The page's examples: per class index, a list (empty for classes no card needs) of id, picture, p(label)."""
    listed: list[list[dict[str, Any]]] = [[] for _ in range(num_classes)]
    for label, rows in examples.items():
        listed[label] = [{"id": str(report["sample_id"][row]), "picture": pictures.get(row),
                          "p": _rounded(report["p_label"][row], fallback=0.0)} for row in rows]
    return listed


def _sparkline_top(report: dict[str, np.ndarray], shown: np.ndarray) -> float:
    values = [value for row in shown.tolist() for value in (report["trajectory"][row].as_py() or [])
              if value is not None and math.isfinite(value)]
    return float(max(np.percentile(values, SPARKLINE_QUANTILE), 1e-6)) if values else 1.0


def _storage_key(run: dict[str, Any]) -> str:
    """Where the page keeps decisions in the browser: one key per run, from what run.json says about it (outputs,
    counts, timings, curves), not where its folder is now, so a page rebuilt after the folder moved finds them."""
    identity = json.dumps([run.get(name) for name in RUN_IDENTITY], sort_keys=True)
    return "labelscrub-audit:" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def _rounded(value: float, fallback: float | None = None) -> float | None:
    return fallback if value is None or not math.isfinite(value) else round(float(value), 4)
