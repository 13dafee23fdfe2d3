"""The audit page's HTML: one self-contained file (inline CSS, JS and SVG; no network at all).

The sections that only show numbers (overview, per-class table, noise matrix, curves, unreadable files) are
rendered here, every string through `html.escape`. The gallery is built in the browser by audit_assets/audit.js
from a JSON block, which is escaped so that no value can close its <script> element.
"""

from __future__ import annotations

import json
from html import escape
from importlib.resources import files
from typing import Any

from labelscrub.charts import Series, heatmap, line_chart

MAX_UNREADABLE_SHOWN = 100  # run.json keeps the first 100 as well
# The page script, in this order inside one <script> element: later files use what earlier ones define
SCRIPT_FILES = ("decisions.js", "picker.js", "cards.js", "review_keys.js", "audit.js")


def render_page(view: dict[str, Any]) -> str:
    """The whole page from the gathered `view` (audit.py): run facts, classes, curves, matrix and cards."""
    assets = files("labelscrub") / "audit_assets"
    title = f"labelscrub audit: {view['run_name']}"
    notices = "".join(f'<div class="notice">{escape(text)}</div>' for text in view["notices"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{assets.joinpath("audit.css").read_text(encoding="utf-8")}</style>
</head><body>
<header><h1>{escape(title)}</h1>
<div class="where">run {escape(view['run_dir'])} &middot; data {escape(view['data'])}</div></header>
<main>
{notices}
{_overview(view)}
<div class="two">{_curves(view)}{_matrix(view)}</div>
{_class_table(view)}
{_gallery(view)}
{_unreadable(view)}
</main>
<script type="application/json" id="audit-data">{_script_json(view['page_data'])}</script>
<script>"use strict";
{"".join(assets.joinpath(name).read_text(encoding="utf-8") for name in SCRIPT_FILES)}</script>
</body></html>
"""


def _overview(view: dict[str, Any]) -> str:
    counts, noise = view["counts"], view["noise"]
    samples = max(1, counts["samples"])

    def tile(value: str, what: str, test_id: str) -> str:
        return f'<div class="tile"><b data-count="{test_id}">{escape(value)}</b><span>{escape(what)}</span></div>'

    def share(count: int) -> str:
        return f"{count:,} ({count / samples:.1%})"

    tiles = [
        tile(f"{counts['samples']:,}", "samples", "samples"),
        tile(f"{counts['classes']:,}", "classes", "classes"),
        tile(share(counts["dropped"]), "dropped", "dropped"),
        tile(share(counts["in_manifest"]), "in the manifest", "in_manifest"),
        tile(share(counts["unreadable"]), "unreadable", "unreadable"),
        tile(_percent(noise.get("estimated_noise_rate")), "estimated noise rate", "estimated_noise_rate"),
        tile(_percent(noise.get("rho_max_used")), "rho_max used", "rho_max_used"),
        tile(_percent(view["heldout_accuracy"]), "held-out accuracy", "heldout_accuracy"),
    ]
    if counts.get("relabelled"):
        tiles.insert(4, tile(f"{counts['relabelled']:,}", "relabelled in the manifest", "relabelled"))
    options = ", ".join(f"{name} {value}" for name, value in view["options"].items())
    doubt = noise.get("estimate_doubt")
    doubt_line = f'<p class="notice">The noise estimate was doubted and capped: {escape(doubt)}</p>' if doubt else ""
    return (f'<section id="overview"><h2>Overview</h2><div class="tiles">{"".join(tiles)}</div>{doubt_line}'
            f'<div class="options">method {escape(view["method"])}: {escape(options)}</div></section>')


def _curves(view: dict[str, Any]) -> str:
    epochs = view["epochs"]
    rates = line_chart("Share left out of training and held-out accuracy", [
        Series("rho_t (share left out)", [epoch.get("rho") for epoch in epochs], "#c8402a"),
        Series("held-out accuracy", [epoch.get("heldout_accuracy") for epoch in epochs], "#2e7d4f", dashed=True),
    ], y_label="share", y_max=1.0, percent=True)
    losses = line_chart("Mean loss of kept and left-out samples", [
        Series("kept samples", [epoch.get("kept_loss") for epoch in epochs], "#2f5fb3"),
        Series("left-out samples", [epoch.get("left_out_loss") for epoch in epochs], "#c8402a", dashed=True),
    ], y_label="mean loss")
    return f'<section id="curves"><h2>Training</h2>{rates}{losses}</section>'


def _matrix(view: dict[str, Any]) -> str:
    matrix = view["matrix"]
    if not matrix["rows"]:
        return '<section id="matrix"><h2>Noise matrix</h2><p class="muted">No sample was dropped.</p></section>'
    note = ""
    if matrix["left_out_classes"]:
        note = (f'<p class="muted">The {len(matrix["rows"])} classes with the most dropped samples; '
                f'{matrix["left_out_classes"]} more are in run.json (noise.noise_matrix).</p>')
    grid = heatmap(matrix["rows"], matrix["columns"], matrix["counts"], title="given label x predicted label")
    return (f'<section id="matrix"><h2>Noise matrix</h2><p class="muted">Dropped samples by given label (rows) and '
            f'the label the model predicts (columns).</p>{note}<div class="scroll">{grid}</div></section>')


def _class_table(view: dict[str, Any]) -> str:
    rows = []
    for entry in view["classes"]:
        samples = max(1, entry["samples"])
        drop_share = entry["dropped"] / samples
        confused = "" if not entry.get("confused_with") else \
            f"{escape(entry['confused_with'])} ({_percent(entry.get('confused_share'))})"
        rows.append(f'<tr data-class="{escape(entry["name"])}"><td>{escape(entry["name"])}</td>'
                    f'<td class="num">{entry["samples"]:,}</td>'
                    f'<td class="num">{_percent(entry.get("estimated_noise_rate"))}</td>'
                    f'<td class="num" data-dropped>{entry["dropped"]:,}</td><td>{confused}</td>'
                    f'<td><div class="bar" title="{drop_share:.1%} dropped"><i style="width:{100 * drop_share:.1f}%">'
                    f"</i></div></td></tr>")
    return ('<section id="classes"><h2>Classes</h2><div class="scroll"><table><thead><tr><th>class</th>'
            '<th>samples</th><th>estimated noise</th><th>dropped</th><th>labels confused with</th>'
            f'<th>share dropped</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div></section>')


def _gallery(view: dict[str, Any]) -> str:
    return f"""<section id="review"><h2>Suspects to review</h2>
<p class="muted">The {escape(view['gallery_rule'])}. Set each card to keep, drop or relabel and tick reviewed;
decisions stay in this browser. <b>Download decisions</b>, then
<code>labelscrub apply {escape(view['run_dir'])} decisions.csv</code> writes a manifest with them; <b>Import
decisions</b> reads such a file back, to go on in another browser. Ids and classes that start with =, +, - or @ are
written with a leading apostrophe, so spreadsheets keep them as text.</p>
<div class="toolbar">
<label>class <select id="filter-class"><option value="">all classes</option></select></label>
<label>show <select id="filter-status"><option value="all">all</option><option value="dropped">dropped</option>
<option value="kept">kept</option><option value="confused">confused pairs</option>
<option value="suggestion">with a suggestion</option><option value="changed">changed by you</option>
<option value="reviewed">reviewed</option></select></label>
<label>sort <select id="sort-by"><option value="score">most suspicious first</option>
<option value="loss">highest final loss</option><option value="p_given">lowest p(label)</option>
<option value="id">sample id</option></select></label>
<button id="download" class="primary" type="button">Download decisions</button>
<label class="import">Import decisions <input id="import" type="file" accept=".csv,text/csv"></label>
<button id="reset" type="button">Reset</button>
<button id="accept-shown" type="button" title="relabel every card shown that has a suggestion to it">Accept
suggestions shown</button>
<button id="keep-shown" type="button" title="keep every card shown under its label">Keep all shown</button>
<span id="status"></span>
<span id="shown"></span><span id="tally"></span>
</div>
<p class="keys muted">Keys: <kbd>j</kbd> <kbd>n</kbd> <kbd>&darr;</kbd> next card, <kbd>p</kbd> <kbd>&uarr;</kbd>
previous, <kbd>k</kbd> keep, <kbd>d</kbd> drop, <kbd>r</kbd> relabel to the suggestion, <kbd>1</kbd>-<kbd>9</kbd>
relabel to the first nine classes ({escape(_first_classes(view))}), <kbd>x</kbd> reviewed. Click a picture to
enlarge it; <kbd>Esc</kbd> closes. Beside each card: the most confident samples of its label and of the
suggestion.</p>
<div id="gallery"></div>
<p><button id="more" type="button">Show more</button></p></section>"""


def _first_classes(view: dict[str, Any]) -> str:
    names = view["page_data"]["classes"]
    return ", ".join(f"{number} {name}" for number, name in enumerate(names[:9], start=1)) + \
        (", ..." if len(names) > 9 else "")


def _unreadable(view: dict[str, Any]) -> str:
    unreadable = view["unreadable"]
    if not unreadable:
        return ""
    rows = "".join(f"<tr><td>{escape(entry['sample_id'])}</td><td>{escape(entry['error'])}</td></tr>"
                   for entry in unreadable[:MAX_UNREADABLE_SHOWN])
    more = view["counts"]["unreadable"] - min(len(unreadable), MAX_UNREADABLE_SHOWN)
    tail = f'<p class="muted">{more:,} more in report.parquet (the error column).</p>' if more > 0 else ""
    return (f'<section id="unreadable"><h2>Unreadable files</h2><table><thead><tr><th>sample</th><th>error</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>{tail}</section>")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _script_json(value: Any) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' that could end the element or start a comment."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
