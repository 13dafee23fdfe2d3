// The audit page's gallery: the cards of the JSON block, shown a batch at a time, filtered and sorted, and the
// toolbar (download, import, reset, decisions on every card shown). Part of the page script that
// labelscrub/audit_page.py assembles, last: decisions.js, picker.js, cards.js and review_keys.js come before it.
(function () {
  const data = JSON.parse(document.getElementById("audit-data").textContent);
  const classes = data.classes;

  // Decisions a person made, by sample id, kept in localStorage per run so they survive a reload; cards without
  // one show what labelscrub decided.
  const decisions = reviewDecisions(data);
  const decisionOf = decisions.of;
  const changed = decisions.changed;
  const picker = classPicker(classes);
  const lightbox = largeView();
  const page = { classes, examples: data.examples, lossTop: data.loss_top, decisions, picker, lightbox, decide };
  const status = document.getElementById("status");

  function decide(card, change) {
    const next = { ...decisionOf(card), ...change };
    if (next.decision !== "relabel") next.label = card.given;
    decisions.set(card, next);
    if (views.has(card.id)) views.get(card.id).show();
    tally();
  }

  // Cards are built when first shown, PAGE at a time (more as the reader scrolls down or presses "Show more"),
  // so a page of 2,000 suspects opens as fast as one of 100.
  const PAGE = 120;
  const gallery = document.getElementById("gallery");
  const moreButton = document.getElementById("more");
  const views = new Map();  // sample id -> {node, show}
  let filtered = [];
  let visible = 0;
  function viewOf(card) {
    if (!views.has(card.id)) views.set(card.id, cardView(card, page));
    return views.get(card.id);
  }
  function showMore() {
    const next = filtered.slice(visible, visible + PAGE);
    gallery.append(...next.map((card) => viewOf(card).node));
    visible += next.length;
    moreButton.hidden = visible >= filtered.length;
    document.getElementById("shown").textContent = visible + " of " + filtered.length + " shown" +
      (filtered.length < data.cards.length ? " (" + data.cards.length + " in all)" : "");
    return next.length > 0;
  }
  moreButton.addEventListener("click", showMore);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) showMore();
    }, { rootMargin: "600px" }).observe(moreButton);
  }
  const shownCards = () => filtered.slice(0, visible);
  const keys = reviewShortcuts({ shownCards, more: showMore, viewOf, decisionOf, decide, classes,
    busy: () => picker.isOpen() || lightbox.isOpen() });
  gallery.addEventListener("click", (event) => {
    const node = event.target.closest("article.card");
    const card = node && filtered.find((entry) => entry.id === node.dataset.id);
    if (card) keys.makeCurrent(card, !event.target.closest("button, select, input, label, img"));
  });

  const classFilter = document.getElementById("filter-class");
  classes.forEach((name, index) => {
    const option = document.createElement("option");
    option.textContent = name;
    option.value = String(index);
    classFilter.appendChild(option);
  });
  const statusFilter = document.getElementById("filter-status");
  const sortBy = document.getElementById("sort-by");
  const matches = {
    all: () => true,
    dropped: (card) => card.dropped,
    kept: (card) => !card.dropped,
    confused: (card) => card.confused !== null,
    suggestion: (card) => card.suggested >= 0,
    changed: (card) => changed(card, decisionOf(card)),
    reviewed: (card) => decisionOf(card).reviewed,
  };
  const orders = {
    score: (a, b) => b.score - a.score,
    loss: (a, b) => b.loss - a.loss,
    p_given: (a, b) => (a.p_given ?? 1) - (b.p_given ?? 1),
    id: (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  };

  function render() {
    const wantedClass = classFilter.value;
    const keep = matches[statusFilter.value];
    filtered = data.cards
      .filter((card) => (wantedClass === "" || card.given === Number(wantedClass)) && keep(card))
      .sort(orders[sortBy.value]);
    visible = 0;
    gallery.replaceChildren();
    showMore();
  }
  function tally() {
    const reviewed = data.cards.filter((card) => decisionOf(card).reviewed).length;
    const altered = data.cards.filter((card) => changed(card, decisionOf(card))).length;
    document.getElementById("tally").textContent = altered + " changed, " + reviewed + " reviewed";
  }
  function say(text, failed) {
    status.textContent = text;
    status.classList.toggle("failed", Boolean(failed));
  }

  // One decision on every card shown (`choose(card)` gives it, or null to leave the card): asks first when that
  // would replace decisions the person made by hand.
  function decideShown(what, choose) {
    const planned = shownCards().map((card) => [card, choose(card)]).filter(([, change]) => change);
    const replaced = planned.filter(([card, change]) => decisions.decided(card) &&
      (decisionOf(card).decision !== change.decision || decisionOf(card).label !== (change.label ?? card.given)));
    if (replaced.length && !window.confirm(what + ": this replaces " + replaced.length + " of your decisions.")) return;
    planned.forEach(([card, change]) => decide(card, change));
    say(what + ": " + planned.length + " of the " + visible + " cards shown");
  }
  document.getElementById("accept-shown").addEventListener("click", () => decideShown("suggestions accepted",
    (card) => (card.suggested >= 0 && card.suggested !== card.given ? { decision: "relabel", label: card.suggested } :
      null)));
  document.getElementById("keep-shown").addEventListener("click", () => decideShown("kept",
    () => ({ decision: "keep" })));

  document.getElementById("download").addEventListener("click", () => {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([decisions.csv()], { type: "text/csv" }));
    link.download = "decisions.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  document.getElementById("reset").addEventListener("click", () => {
    if (!window.confirm("Forget every decision made on this page?")) return;
    decisions.clear();
    views.clear();  // rebuilt from labelscrub's decisions as they are shown again
    render();
    tally();
  });
  document.getElementById("import").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      const { rows, elsewhere } = decisions.importCsv(await file.text());
      say("imported " + rows + " decisions from " + file.name + (elsewhere ?
        " (" + elsewhere + " for samples without a card here: kept, and downloaded again)" : ""));
    } catch (error) {
      say(file.name + " not imported: " + error.message, true);
    }
    event.target.value = "";  // choosing the same file again imports it again
    views.clear();  // rebuilt with the imported decisions as they are shown again
    render();
    tally();
  });
  [classFilter, statusFilter, sortBy].forEach((control) => control.addEventListener("change", render));
  render();
  tally();
})();
