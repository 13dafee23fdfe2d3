// The audit page's review decisions: what a person decided per sample id, kept in localStorage per run and written
// to or read from decisions.csv, the file `labelscrub apply` reads (labelscrub/decisions.py holds its format).
// Part of the page script that labelscrub/audit_page.py assembles; audit.js uses reviewDecisions().
//
// Decisions live in a Map, never in a plain object: a sample id can be any text, "constructor" and "__proto__"
// included, and those are properties every object already has.

const HEADER = ["sample_id", "decision", "label"];
const WORDS = ["keep", "drop", "relabel"];

// Spreadsheets run a cell that starts with =, +, - or @ as a formula; a leading apostrophe makes it text, and
// `labelscrub apply` takes it off again. Apostrophes already there get one more, so '=x comes back as '=x.
function guardFormula(text) {
  return /^'*[=+\-@]/.test(text) ? "'" + text : text;
}
function unguardFormula(text) {
  return text.replace(/^'(?='*[=+\-@])/, "");
}

function csvField(text) {
  // quoted also when spaces surround it, so no program trims an id that has them
  return /[",\r\n]|^\s|\s$/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

// The records of a CSV text, each with the line it ends on (as Python's csv module counts), quotes undone.
function parseCsv(text) {
  const records = [];
  let fields = [""];
  let quoted = false;
  let line = 1;
  const body = text.replace(/^\ufeff/, "");  // spreadsheet programs save UTF-8 with a byte-order mark
  for (let at = 0; at < body.length; at += 1) {
    const char = body[at];
    if (quoted) {
      if (char === '"' && body[at + 1] === '"') {
        fields[fields.length - 1] += '"';
        at += 1;
      } else if (char === '"') {
        quoted = false;
      } else {
        if (char === "\n") line += 1;
        fields[fields.length - 1] += char;
      }
    } else if (char === '"') {
      quoted = true;
    } else if (char === ",") {
      fields.push("");
    } else if (char === "\n" || char === "\r") {
      if (char === "\r" && body[at + 1] === "\n") at += 1;
      records.push({ line, fields });
      fields = [""];
      line += 1;
    } else {
      fields[fields.length - 1] += char;
    }
  }
  if (fields.length > 1 || fields[0] !== "") records.push({ line, fields });
  return records.filter((record) => record.fields.some((field) => field.trim() !== ""));
}

function reviewDecisions(data) {
  const classes = data.classes;
  const classIndex = new Map(classes.map((name, index) => [name, index]));
  const cardOf = new Map(data.cards.map((card) => [card.id, card]));
  // by sample id: {decision, label (class index, -1 for none), reviewed}; entries for samples that have no card on
  // this page come from an imported file and go out again with the next download
  let saved = load();

  function load() {
    try {
      const entries = JSON.parse(localStorage.getItem(data.key) || "[]");
      return new Map(Array.isArray(entries) ? entries : []);
    } catch (error) {
      return new Map();
    }
  }
  function store() {
    try {
      localStorage.setItem(data.key, JSON.stringify([...saved]));
    } catch (error) {
      // private browsing or a full quota: the decisions still live in the page until it is closed
    }
  }
  function of(card) {
    return saved.get(card.id) || { decision: card.run_decision, label: card.run_label, reviewed: false };
  }
  function changed(card, decision) {
    return decision.decision !== card.run_decision ||
      (decision.decision === "relabel" && decision.label !== card.run_label);
  }
  function set(card, decision) {
    const kept = decision.decision === "relabel" && decision.label === card.given;
    const settled = kept ? { ...decision, decision: "keep" } : decision;
    if (!changed(card, settled) && !settled.reviewed) saved.delete(card.id);
    else saved.set(card.id, settled);
  }
  function row(sampleId, decision, label) {
    return [sampleId, decision, label < 0 ? "" : classes[label]].map(guardFormula).map(csvField).join(",");
  }
  function csv() {
    const lines = [HEADER.join(",")];
    data.cards.forEach((card) => {
      const decision = of(card);
      if (!changed(card, decision) && !decision.reviewed) return;
      lines.push(row(card.id, decision.decision, decision.decision === "relabel" ? decision.label : card.given));
    });
    saved.forEach((decision, sampleId) => {
      if (!cardOf.has(sampleId)) lines.push(row(sampleId, decision.decision, decision.label));
    });
    return lines.join("\n") + "\n";
  }
  return {
    of, changed, csv,
    decided: (card) => saved.has(card.id),  // whether the person decided on it (else it shows the run's decision)
    set(card, decision) {
      set(card, decision);
      store();
    },
    clear() {
      saved = new Map();
      store();
    },
    // Reads a decisions.csv back: every row is checked first, and a bad one refuses the whole file (Error
    // "line N: ..."). Imported rows count as reviewed. Returns how many rows came in and how many of them are for
    // samples without a card here.
    importCsv(text) {
      const decided = readRows(parseCsv(text), classIndex, cardOf, classes);
      decided.forEach(({ sampleId, decision }) => {
        if (cardOf.has(sampleId)) set(cardOf.get(sampleId), decision);
        else saved.set(sampleId, decision);
      });
      store();
      return { rows: decided.length, elsewhere: decided.filter((entry) => !cardOf.has(entry.sampleId)).length };
    },
  };
}

function readRows(records, classIndex, cardOf, classes) {
  if (!records.length || records[0].fields.map((field) => field.trim()).join(",") !== HEADER.join(",")) {
    throw new Error("line 1: expected the header " + HEADER.join(","));
  }
  const seen = new Map();
  return records.slice(1).map(({ line, fields }) => {
    const refuse = (why) => { throw new Error("line " + line + ": " + why); };
    if (fields.length !== HEADER.length) refuse("expected 3 fields (" + HEADER.join(",") + ")");
    const sampleId = unguardFormula(fields[0]);
    const word = fields[1].trim().toLowerCase();
    const name = unguardFormula(fields[2].trim());
    if (!WORDS.includes(word)) refuse("unknown decision " + JSON.stringify(fields[1]) + "; use keep, drop, relabel");
    if (name !== "" && !classIndex.has(name)) refuse("unknown class " + JSON.stringify(name));
    if (word === "relabel" && name === "") refuse("relabel needs the new class name in the label column");
    if (seen.has(sampleId)) refuse("sample " + JSON.stringify(sampleId) + " is already decided on line " +
      seen.get(sampleId));
    seen.set(sampleId, line);
    const card = cardOf.get(sampleId);
    const label = name === "" ? (card ? card.given : -1) : classIndex.get(name);
    if (word === "keep" && card && label !== card.given) {
      refuse("keep of " + JSON.stringify(sampleId) + " names " + JSON.stringify(name) + ", but its label is " +
        JSON.stringify(classes[card.given]) + "; write relabel to change it");
    }
    return { sampleId, decision: { decision: word, label, reviewed: true } };
  });
}
