// The audit page at a reviewer's speed: keyboard shortcuts on the current card, and a large view of a picture.
// Part of the page script that labelscrub/audit_page.py assembles; audit.js calls largeView() and reviewShortcuts().

// A picture at a size one can judge it by (the page holds thumbnails, scaled up here); Escape or a click closes it.
function largeView() {
  const dialog = document.createElement("dialog");
  dialog.id = "lightbox";
  const image = document.createElement("img");
  const caption = document.createElement("div");
  dialog.append(image, caption);
  dialog.addEventListener("click", () => dialog.close());
  document.body.appendChild(dialog);
  return {
    open(source, id) {
      image.src = source;
      image.alt = id;
      caption.textContent = id;
      dialog.showModal();  // modal: Escape closes it, and the page's shortcuts wait
    },
    isOpen: () => dialog.open,
  };
}

// The keys, for the help line: j n or Down next card, p or Up previous, k keep, d drop, r relabel to the suggestion,
// 1-9 relabel to the first nine classes, x reviewed (on and off). They act on the current card, outlined; before
// any is, the first shown card is.
// `gallery`: shownCards() the cards on screen in order, more() shows the next batch (false when there is none),
// viewOf(card) its {node}, decisionOf(card), decide(card, change), classes, and busy() while a dialog is open.
function reviewShortcuts(gallery) {
  let currentId = null;

  // `focus`: take the focus off any control (a select that has it would eat the keys); not for a click on a control
  function makeCurrent(card, focus = true) {
    document.querySelectorAll("#gallery article.card.current").forEach((node) => node.classList.remove("current"));
    currentId = card.id;
    const node = gallery.viewOf(card).node;
    node.classList.add("current");
    if (!focus) return;
    node.focus({ preventScroll: true });
    node.scrollIntoView({ block: "nearest" });
  }
  function current() {
    const cards = gallery.shownCards();
    return cards.find((card) => card.id === currentId) || cards[0];
  }
  function move(step) {
    let cards = gallery.shownCards();
    const at = cards.findIndex((card) => card.id === currentId);
    const next = at < 0 ? 0 : at + step;
    if (next >= cards.length && gallery.more()) cards = gallery.shownCards();
    if (cards.length) makeCurrent(cards[Math.max(0, Math.min(cards.length - 1, next))]);
  }
  function relabel(card, label) {
    if (label >= 0 && label < gallery.classes.length) gallery.decide(card, { decision: "relabel", label });
  }
  const moves = { j: 1, n: 1, ArrowDown: 1, p: -1, ArrowUp: -1 };
  const actions = {
    k: (card) => gallery.decide(card, { decision: "keep" }),
    d: (card) => gallery.decide(card, { decision: "drop" }),
    r: (card) => card.suggested !== card.given && relabel(card, card.suggested),
    x: (card) => gallery.decide(card, { reviewed: !gallery.decisionOf(card).reviewed }),
  };

  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("input, select, textarea");
    if (typing || event.ctrlKey || event.metaKey || event.altKey || gallery.busy()) return;
    const digit = /^[1-9]$/.test(event.key) ? Number(event.key) - 1 : -1;
    if (Object.hasOwn(moves, event.key)) {
      move(moves[event.key]);
    } else if (Object.hasOwn(actions, event.key) || digit >= 0) {
      const card = current();
      if (!card) return;
      makeCurrent(card);
      if (digit >= 0) relabel(card, digit);
      else actions[event.key](card);
    } else {
      return;
    }
    event.preventDefault();
  });
  return { makeCurrent };
}
