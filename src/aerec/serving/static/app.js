// The demo page: search items, pick a few, show the service's recommendations for the picks.
"use strict";

const picked = new Map();  // item id -> title, in the order picked
let searchSeq = 0;
let recommendSeq = 0;

const $ = (id) => document.getElementById(id);

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
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
  for (const item of items) {
    const li = document.createElement("li");
    li.dataset.item = item.item;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = label(item);
    const add = document.createElement("button");
    add.type = "button";
    add.className = "add";
    add.textContent = picked.has(item.item) ? "picked" : "add";
    add.disabled = picked.has(item.item);
    add.addEventListener("click", () => pick(item, add));
    li.append(title, add);
    list.append(li);
  }
}

function pick(item, button) {
  picked.set(item.item, label(item));
  button.textContent = "picked";
  button.disabled = true;
  renderPicked();
  recommend();
}

function unpick(id) {
  picked.delete(id);
  renderPicked();
  recommend();
  search();
}

function renderPicked() {
  const list = $("picked");
  list.replaceChildren();
  for (const [id, title] of picked) {
    const li = document.createElement("li");
    li.dataset.item = id;
    const text = document.createElement("span");
    text.textContent = title;
    const remove = document.createElement("button");
    remove.type = "button";
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
    if (seq === recommendSeq) $("status").textContent = `Could not recommend: ${err.message}`;
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
    row.append(title, score);
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
    renderPicked();
    recommend();
    search();
  });
  showModel();
  renderPicked();
  search();
});
