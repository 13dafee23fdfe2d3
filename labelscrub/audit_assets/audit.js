// The audit page's gallery: cards built from the JSON block, filters, and the review controls. Part of the page
// script that labelscrub/audit_page.py assembles (after decisions.js, whose reviewDecisions() keeps the decisions).
// Every value from the data goes into the page through textContent or setAttribute, never as HTML.
(function () {
  const data = JSON.parse(document.getElementById("audit-data").textContent);
  const classes = data.classes;
  const SVG = "http://www.w3.org/2000/svg";

  // Decisions a person made, by sample id, kept in localStorage per run so they survive a reload; cards without
  // one show what labelscrub decided.
  const decisions = reviewDecisions(data);
  const decisionOf = decisions.of;
  const picker = classPicker(classes);
  const changed = decisions.changed;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function sparkline(card) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 100 28");
    svg.setAttribute("preserveAspectRatio", "none");
    const values = card.trajectory;
    const last = Math.max(1, values.length - 1);
    const y = (value) => 26 - 24 * Math.min(value, data.loss_top) / data.loss_top;
    if (card.first_dropped !== null) {
      const mark = document.createElementNS(SVG, "rect");
      const left = 100 * card.first_dropped / last;
      mark.setAttribute("x", left.toFixed(1));
      mark.setAttribute("y", "0");
      mark.setAttribute("width", (100 - left).toFixed(1));
      mark.setAttribute("height", "28");
      mark.setAttribute("fill", "rgba(200,64,42,0.08)");
      svg.appendChild(mark);
    }
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#2f5fb3");
    line.setAttribute("stroke-width", "1.5");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.setAttribute("points", values.map((value, epoch) =>
      (100 * epoch / last).toFixed(1) + "," + y(value).toFixed(1)).join(" "));
    svg.appendChild(line);
    const title = document.createElementNS(SVG, "title");
    title.textContent = "loss per epoch" + (card.first_dropped !== null ? "; shaded: left out of training" : "");
    svg.appendChild(title);
    return svg;
  }

  function buildCard(card) {
    const node = element("article", "card");
    node.dataset.id = card.id;
    if (card.picture) {
      const picture = element("img", "picture");
      picture.loading = "lazy";  // pictures below the fold wait until scrolled to: the page opens at once
      picture.decoding = "async";
      picture.src = card.picture;
      picture.alt = card.id;
      node.appendChild(picture);
    } else {
      node.appendChild(element("div", "picture nopicture", "no picture"));
    }
    node.appendChild(element("div", "id", card.id));
    node.appendChild(element("div", "", "label: " + classes[card.given] +
      (card.p_given === null ? "" : " (p " + card.p_given.toFixed(2) + ")")));
    node.appendChild(element("div", "", "predicted: " + (card.predicted < 0 ? "-" : classes[card.predicted])));
    node.appendChild(element("div", "", card.suggested < 0 ? "no confident suggestion" :
      "suggested: " + classes[card.suggested] + " (" + card.confidence.toFixed(2) + ")"));
    node.appendChild(sparkline(card));
    let why = "kept (score in the top " + Math.max(1, Math.round(100 * card.rank)) + "%)";
    if (card.dropped) {
      why = card.confused ? "dropped: labels confused with " + card.confused :
        "dropped: loss ranking (top " + Math.max(1, Math.round(100 * card.rank)) + "%)";
    }
    node.appendChild(element("div", card.dropped ? "why" : "why kept", why));

    const decide = element("div", "decide");
    const choice = element("select", "choice");
    ["keep", "drop", "relabel"].forEach((word) => {
      const option = element("option", "", word);
      option.value = word;
      choice.appendChild(option);
    });
    const target = element("button", "target");  // opens the page's one class picker
    target.type = "button";
    target.title = "relabel to another class";
    const reviewedBox = element("input");
    reviewedBox.type = "checkbox";
    const reviewedLabel = element("label");
    reviewedLabel.appendChild(reviewedBox);
    reviewedLabel.appendChild(document.createTextNode(" reviewed"));
    decide.appendChild(choice);
    decide.appendChild(target);
    decide.appendChild(reviewedLabel);
    node.appendChild(decide);
    const note = element("div", "changed", "");
    node.appendChild(note);

    let relabelTo = card.given;
    function show() {
      const decision = decisionOf(card);
      choice.value = decision.decision;
      relabelTo = decision.decision === "relabel" ? decision.label : relabelTo;
      target.textContent = classes[relabelTo] + " \u25be";
      target.dataset.label = String(relabelTo);
      target.hidden = decision.decision !== "relabel";
      reviewedBox.checked = decision.reviewed;
      node.classList.toggle("drop", decision.decision === "drop");
      node.classList.toggle("relabel", decision.decision === "relabel");
      node.classList.toggle("reviewed", decision.reviewed);
      note.textContent = changed(card, decision) ? "changed from " + card.run_decision : "";
    }
    function update() {
      const decision = {
        decision: choice.value,
        label: choice.value === "relabel" ? relabelTo : card.given,
        reviewed: reviewedBox.checked,
      };
      decisions.set(card, decision);
      show();
      tally();
    }
    choice.addEventListener("change", () => {
      if (choice.value === "relabel" && relabelTo === card.given) {
        relabelTo = card.suggested >= 0 && card.suggested !== card.given ? card.suggested :
          (card.predicted >= 0 && card.predicted !== card.given ? card.predicted : (card.given + 1) % classes.length);
      }
      update();
    });
    target.addEventListener("click", () => picker.open(target, (label) => {
      relabelTo = label;
      update();
    }));
    reviewedBox.addEventListener("change", update);
    show();
    return node;
  }

  // Cards are built when first shown, PAGE at a time (more as the reader scrolls down or presses "Show more"),
  // so a page of 2,000 suspects opens as fast as one of 100.
  const PAGE = 120;
  const gallery = document.getElementById("gallery");
  const moreButton = document.getElementById("more");
  const nodes = new Map();
  let filtered = [];
  let visible = 0;
  function nodeFor(card) {
    if (!nodes.has(card.id)) nodes.set(card.id, buildCard(card));
    return nodes.get(card.id);
  }
  function showMore() {
    const next = filtered.slice(visible, visible + PAGE);
    gallery.append(...next.map(nodeFor));
    visible += next.length;
    moreButton.hidden = visible >= filtered.length;
    document.getElementById("shown").textContent = visible + " of " + filtered.length + " shown" +
      (filtered.length < data.cards.length ? " (" + data.cards.length + " in all)" : "");
  }
  moreButton.addEventListener("click", showMore);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) showMore();
    }, { rootMargin: "600px" }).observe(moreButton);
  }

  const classFilter = document.getElementById("filter-class");
  classes.forEach((name, index) => {
    const option = element("option", "", name);
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

  document.getElementById("download").addEventListener("click", () => {
    const link = element("a");
    link.href = URL.createObjectURL(new Blob([decisions.csv()], { type: "text/csv" }));
    link.download = "decisions.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  document.getElementById("reset").addEventListener("click", () => {
    if (!window.confirm("Forget every decision made on this page?")) return;
    decisions.clear();
    nodes.clear();  // rebuilt from labelscrub's decisions as they are shown again
    render();
    tally();
  });
  const importStatus = document.getElementById("import-status");
  document.getElementById("import").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      const { rows, elsewhere } = decisions.importCsv(await file.text());
      importStatus.textContent = "imported " + rows + " decisions from " + file.name + (elsewhere ?
        " (" + elsewhere + " for samples without a card here: kept, and downloaded again)" : "");
      importStatus.classList.remove("failed");
    } catch (error) {
      importStatus.textContent = file.name + " not imported: " + error.message;
      importStatus.classList.add("failed");
    }
    event.target.value = "";  // choosing the same file again imports it again
    nodes.clear();  // rebuilt with the imported decisions as they are shown again
    render();
    tally();
  });
  [classFilter, statusFilter, sortBy].forEach((control) => control.addEventListener("change", render));
  render();
  tally();
})();
