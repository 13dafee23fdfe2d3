// The audit page's cards: one suspect each, with its picture, labels, loss curve, confident examples of its classes
// and the review controls. Part of the page script that labelscrub/audit_page.py assembles; audit.js builds them.
// Every value from the data goes into the page through textContent or setAttribute, never as HTML.

const SVG = "http://www.w3.org/2000/svg";

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function picture(source, id, className, lightbox) {
  if (!source) return element("div", className + " nopicture", className === "picture" ? "no picture" : "?");
  const image = element("img", className);
  image.loading = "lazy";  // pictures below the fold wait until scrolled to: the page opens at once
  image.decoding = "async";
  image.src = source;
  image.alt = id;
  image.title = id;
  image.addEventListener("click", () => lightbox.open(source, id));
  return image;
}

function sparkline(card, lossTop) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 100 28");
  svg.setAttribute("preserveAspectRatio", "none");
  const values = card.trajectory;
  const last = Math.max(1, values.length - 1);
  const y = (value) => 26 - 24 * Math.min(value, lossTop) / lossTop;
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


// The most confident samples of a class (not dropped, highest p(label)): what the class looks like, to compare with
function exampleStrip(what, classIndex, card, page) {
  const strip = element("div", "examples");
  strip.dataset.class = String(classIndex);
  strip.appendChild(element("span", "", what + " " + page.classes[classIndex] + ":"));
  const shown = (page.examples[classIndex] || []).filter((example) => example.id !== card.id);
  shown.forEach((example) => {
    const image = picture(example.picture, example.id, "example", page.lightbox);
    image.title = example.id + " (p " + example.p.toFixed(2) + ")";
    strip.appendChild(image);
  });
  if (!shown.length) strip.appendChild(element("span", "muted", " none confident"));
  return strip;
}

// The card of `card` (one entry of the page data's cards): {node, show}; show() redraws it after a decision.
// `page`: classes, examples, lossTop, decisions, picker, lightbox, and decide(card, change) to record a decision.
function cardView(card, page) {
  const classes = page.classes;
  const node = element("article", "card");
  node.dataset.id = card.id;
  node.tabIndex = -1;  // the keyboard's current card takes the focus
  node.appendChild(picture(card.picture, card.id, "picture", page.lightbox));
  node.appendChild(element("div", "id", card.id));
  node.appendChild(element("div", "", "label: " + classes[card.given] +
    (card.p_given === null ? "" : " (p " + card.p_given.toFixed(2) + ")")));
  node.appendChild(element("div", "", "predicted: " + (card.predicted < 0 ? "-" : classes[card.predicted])));
  node.appendChild(element("div", "", card.suggested < 0 ? "no confident suggestion" :
    "suggested: " + classes[card.suggested] + " (" + card.confidence.toFixed(2) + ")"));
  node.appendChild(sparkline(card, page.lossTop));
  let why = "kept (score in the top " + Math.max(1, Math.round(100 * card.rank)) + "%)";
  if (card.dropped) {
    why = card.confused ? "dropped: labels confused with " + card.confused :
      "dropped: score ranking (top " + Math.max(1, Math.round(100 * card.rank)) + "%)";
  }
  node.appendChild(element("div", card.dropped ? "why" : "why kept", why));
  node.appendChild(exampleStrip("labelled", card.given, card, page));
  if (card.suggested >= 0 && card.suggested !== card.given) {
    node.appendChild(exampleStrip("suggested", card.suggested, card, page));
  }
  const controls = reviewControls(card, page);
  node.appendChild(controls.node);
  const note = element("div", "changed", "");
  node.appendChild(note);

  function show() {
    const decision = page.decisions.of(card);
    controls.show(decision);
    node.classList.toggle("drop", decision.decision === "drop");
    node.classList.toggle("relabel", decision.decision === "relabel");
    node.classList.toggle("reviewed", decision.reviewed);
    note.textContent = page.decisions.changed(card, decision) ? "changed from " + card.run_decision : "";
  }
  show();
  return { node, show };
}

// keep / drop / relabel, the class to relabel to (through the page's one picker) and "reviewed"
function reviewControls(card, page) {
  const node = element("div", "decide");
  const choice = element("select", "choice");
  ["keep", "drop", "relabel"].forEach((word) => {
    const option = element("option", "", word);
    option.value = word;
    choice.appendChild(option);
  });
  const target = element("button", "target");
  target.type = "button";
  target.title = "relabel to another class";
  const reviewedBox = element("input");
  reviewedBox.type = "checkbox";
  const reviewedLabel = element("label");
  reviewedLabel.append(reviewedBox, document.createTextNode(" reviewed"));
  node.append(choice, target, reviewedLabel);

  let relabelTo = card.given;
  choice.addEventListener("change", () => {
    if (choice.value !== "relabel") page.decide(card, { decision: choice.value });
    else page.decide(card, { decision: "relabel", label: relabelTo === card.given ? likelyClass(card, page) :
      relabelTo });
  });
  target.addEventListener("click", () => page.picker.open(target, (label) =>
    page.decide(card, { decision: "relabel", label })));
  reviewedBox.addEventListener("change", () => page.decide(card, { reviewed: reviewedBox.checked }));
  return {
    node,
    show(decision) {
      choice.value = decision.decision;
      if (decision.decision === "relabel") relabelTo = decision.label;
      target.textContent = page.classes[relabelTo] + " \u25be";
      target.dataset.label = String(relabelTo);
      target.hidden = decision.decision !== "relabel";
      reviewedBox.checked = decision.reviewed;
    },
  };
}

// The class a relabel starts from: the suggestion, else the prediction, else the next class
function likelyClass(card, page) {
  if (card.suggested >= 0 && card.suggested !== card.given) return card.suggested;
  if (card.predicted >= 0 && card.predicted !== card.given) return card.predicted;
  return (card.given + 1) % page.classes.length;
}
