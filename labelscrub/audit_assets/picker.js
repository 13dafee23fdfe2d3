// The audit page's class picker: one searchable list for the whole page, opened from a card to relabel it. A
// <select> of every class on every card would be 120,000 <option>s per batch of cards with 1,000 classes.
// Part of the page script that labelscrub/audit_page.py assembles; audit.js calls classPicker().

const LISTED = 50;  // matches listed at once; typing more of the name narrows them

function classPicker(classes) {
  const box = document.createElement("div");
  box.id = "picker";
  box.hidden = true;
  box.setAttribute("role", "dialog");
  box.setAttribute("aria-label", "relabel to class");
  const search = document.createElement("input");
  search.type = "search";
  search.placeholder = "type part of a class name";
  search.setAttribute("aria-label", "class name");
  const list = document.createElement("ul");
  list.setAttribute("role", "listbox");
  const more = document.createElement("div");
  more.className = "more";
  box.append(search, list, more);
  document.body.appendChild(box);

  let chosen = null;  // what to call with the picked class index
  let opener = null;  // the button that opened the picker, focused again when it closes
  let matches = [];
  let active = 0;

  // `refocus`: give the focus back to the card's button; not when it left for something the person clicked
  function close(refocus = true) {
    box.hidden = true;
    chosen = null;
    if (opener && refocus) opener.focus();
    opener = null;
  }
  function pick(index) {
    const then = chosen;
    close();
    if (then) then(index);
  }
  function listMatches() {
    const wanted = search.value.trim().toLowerCase();
    matches = [];
    for (let index = 0; index < classes.length; index += 1) {
      if (classes[index].toLowerCase().includes(wanted)) matches.push(index);
    }
    active = Math.min(active, Math.max(0, matches.length - 1));
    list.replaceChildren(...matches.slice(0, LISTED).map((index, position) => {
      const item = document.createElement("li");
      item.textContent = classes[index];
      item.dataset.index = String(index);
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", String(position === active));
      item.addEventListener("mousedown", (event) => {
        event.preventDefault();  // keeps the focus in the search field until the pick is done
        pick(index);
      });
      return item;
    }));
    more.textContent = matches.length > LISTED ? (matches.length - LISTED) + " more: type to narrow" :
      (matches.length ? "" : "no class matches");
  }
  search.addEventListener("input", () => {
    active = 0;
    listMatches();
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
    else if (event.key === "Enter" && matches.length) pick(matches[active]);
    else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const step = event.key === "ArrowDown" ? 1 : -1;
      active = Math.max(0, Math.min(Math.min(matches.length, LISTED) - 1, active + step));
      listMatches();
    } else return;
    event.preventDefault();
    event.stopPropagation();  // the page's own shortcuts do not see keys meant for the picker
  });
  search.addEventListener("blur", () => {
    if (!box.hidden) close(false);
  });

  return {
    // Opens below `button`; `then(classIndex)` is called with the class picked (not at all on Escape).
    open(button, then) {
      chosen = then;
      opener = button;
      search.value = "";
      active = 0;
      listMatches();
      const place = button.getBoundingClientRect();
      box.style.left = Math.max(0, window.scrollX + place.left) + "px";
      box.style.top = (window.scrollY + place.bottom + 2) + "px";
      box.hidden = false;
      search.focus();
    },
    isOpen: () => !box.hidden,
  };
}
