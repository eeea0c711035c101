// The demo page: search items, pick a few, show the service's recommendations for the picks and
// the items most similar to one pick; a recommended or similar item joins the picks with a click.
"use strict";

const picked = new Map();  // item id -> title, in the order picked
let similarOf = null;  // the pick whose similar items are shown
let searchSeq = 0;
let recommendSeq = 0;
let similarSeq = 0;

const $ = (id) => document.getElementById(id);

async function getJSON(url, options) {
  const response = await fetch(url, options);
  // A proxy or a server that went away may answer with something else than our JSON.
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function label(item) {
  return item.title || `item ${item.item}`;
}

async function showModel() {
  try {
    const info = await getJSON("/health");
    $("model-info").textContent =
      `${info.model} trained on ${info.dataset} · ${info.n_items.toLocaleString()} items · aerec ${info.version}`;
  } catch (err) {
    $("model-info").textContent = `service unavailable: ${err.message}`;
  }
}

async function search() {
  const seq = ++searchSeq;
  const q = $("search").value;
  try {
    const body = await getJSON(`/items?q=${encodeURIComponent(q)}&limit=15`);
    if (seq === searchSeq) renderResults(body.items);
  } catch (err) {
    if (seq === searchSeq) $("results").textContent = err.message;
  }
}

function renderResults(items) {
  const list = $("results");
  list.replaceChildren();
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "No item matches.";
    list.append(li);
  }
  for (const item of items) list.append(itemRow(item));
}

// A list entry for an item: its title and a button that adds it to the picks.
function itemRow(item) {
  const li = document.createElement("li");
  li.dataset.item = item.item;
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = label(item);
  li.append(title, addButton(item));
  return li;
}

function addButton(item) {
  const add = document.createElement("button");
  add.type = "button";
  add.className = "add";
  add.dataset.item = item.item;
  add.setAttribute("aria-label", `add ${label(item)} to your picks`);
  add.addEventListener("click", () => pick(item));
  markAdd(add);
  return add;
}

function markAdd(button) {
  const has = picked.has(button.dataset.item);
  button.textContent = has ? "picked" : "add";
  button.disabled = has;
}

function pick(item) {
  if (picked.has(item.item)) return;
  picked.set(item.item, label(item));
  similarOf = item.item;
  afterPicksChange();
}

function unpick(id) {
  picked.delete(id);
  if (similarOf === id) similarOf = picked.size ? [...picked.keys()].pop() : null;
  afterPicksChange();
}

function afterPicksChange() {
  renderPicked();
  for (const button of document.querySelectorAll("button.add")) markAdd(button);
  recommend();
  showSimilar();
}

function renderPicked() {
  const list = $("picked");
  list.replaceChildren();
  for (const [id, title] of picked) {
    const li = document.createElement("li");
    li.dataset.item = id;
    li.classList.toggle("current", id === similarOf);
    const text = document.createElement("button");
    text.type = "button";
    text.className = "show-similar";
    text.title = "show similar items";
    text.textContent = title;
    text.addEventListener("click", () => {
      similarOf = id;
      renderPicked();
      showSimilar();
    });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.title = "remove";
    remove.setAttribute("aria-label", `remove ${title}`);
    remove.textContent = "×";
    remove.addEventListener("click", () => unpick(id));
    li.append(text, remove);
    list.append(li);
  }
  $("picked-empty").hidden = picked.size > 0;
  $("clear").hidden = picked.size === 0;
  $("picked-count").textContent = picked.size ? `(${picked.size})` : "";
}

async function recommend() {
  const seq = ++recommendSeq;
  const recs = $("recs");
  if (!picked.size) {
    recs.replaceChildren();
    $("status").textContent = "Pick items to see recommendations.";
    return;
  }
  $("status").textContent = "Scoring…";
  try {
    const body = await getJSON("/recommend", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ items: [...picked.keys()], n: 10 }),
    });
    if (seq !== recommendSeq) return;
    renderRecommendations(body);
  } catch (err) {
    if (seq !== recommendSeq) return;
    // The list on screen answered other picks: clear it rather than show it as current.
    recs.replaceChildren();
    $("status").textContent = `Could not recommend: ${err.message}`;
  }
}

function renderRecommendations(body) {
  const recs = $("recs");
  recs.replaceChildren();
  const scores = body.recommendations.map((r) => r.score);
  const top = Math.max(...scores);
  const bottom = Math.min(...scores);
  for (const rec of body.recommendations) {
    const li = document.createElement("li");
    li.className = "rec";
    li.dataset.item = rec.item;
    const row = document.createElement("div");
    row.className = "row";
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = label(rec);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = rec.score.toFixed(3);
    row.append(title, score, addButton(rec));
    const bar = document.createElement("div");
    bar.className = "bar";
    const share = top > bottom ? (rec.score - bottom) / (top - bottom) : 1;
    bar.style.width = `${Math.round(15 + 85 * share)}%`;
    li.append(row, bar);
    recs.append(li);
  }
  const unknown = body.unknown_items.length ? ` (unknown ids ignored: ${body.unknown_items.join(", ")})` : "";
  $("status").textContent =
    `Top ${body.recommendations.length} for ${picked.size} picked item${picked.size === 1 ? "" : "s"}${unknown}`;
}

async function showSimilar() {
  const seq = ++similarSeq;
  const list = $("similar");
  const status = $("similar-status");
  $("similar-title").hidden = similarOf === null;
  if (similarOf === null) {
    list.replaceChildren();
    delete list.dataset.of;
    status.hidden = true;
    return;
  }
  $("similar-of").textContent = picked.get(similarOf) || `item ${similarOf}`;
  try {
    const body = await getJSON(`/items/${encodeURIComponent(similarOf)}/similar?n=8`);
    if (seq !== similarSeq) return;
    list.replaceChildren(...body.similar.map(itemRow));
    list.dataset.of = similarOf;  // which pick the list answers (a test waits on it)
    status.textContent = body.definition;
    status.hidden = false;
  } catch (err) {
    if (seq !== similarSeq) return;
    list.replaceChildren();
    list.dataset.of = similarOf;
    status.textContent = `No similar items: ${err.message}`;
    status.hidden = false;
  }
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("input", debounce(search, 150));
  $("clear").addEventListener("click", () => {
    picked.clear();
    similarOf = null;
    afterPicksChange();
  });
  showModel();
  renderPicked();
  search();
});
