// The review page: one image at a time, keyboard first. Every text goes in through textContent
// (never innerHTML), every verdict is shown as saved only after the server answered, and the next
// images are fetched and decoded ahead so that a key press shows the next one at once.
"use strict";

const AHEAD = 4;        // images fetched and decoded ahead of the one shown
const BATCH = 10;       // images asked for at a time
const KEEP_BEHIND = 30; // decoded images kept for the left arrow; older ones are let go
const $ = (id) => document.getElementById(id);
const S = {
  token: "", labeler: "", reasons: [], seq: [], at: 0, busy: false, loading: null, exhausted: false,
  picked: "", showScores: false, timings: [], saved: [],
};
window.labelState = S; // read by the browser tests and the latency benchmark

async function api(path, body) {
  const options = { headers: {} };
  if (S.token) options.headers.Authorization = "Bearer " + S.token;
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    const detail = data && data.detail;
    throw new Error(typeof detail === "string" ? detail : (detail ? JSON.stringify(detail) : "HTTP " + response.status));
  }
  return data;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function placeholder(kind, reason) {
  const node = el("div", (kind === "image" ? "image unavailable: " : "cut-out unavailable: ") + reason, "placeholder");
  node.dataset.reason = reason;
  return node;
}

async function loadImage(item, kind) {
  try {
    const headers = S.token ? { Authorization: "Bearer " + S.token } : {};
    const response = await fetch(`/api/image/${item.index}/${kind}`, { headers });
    if (!response.ok) {
      let reason = "HTTP " + response.status;
      try { const body = await response.json(); if (body.detail) reason = String(body.detail); } catch (e) { /* keep */ }
      item[kind + "El"] = placeholder(kind, reason);
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const img = new Image();
    img.alt = kind === "image" ? "generated image" : "merchant's cut-out";
    img.src = url;
    item[kind + "Url"] = url;
    try { await img.decode(); } catch (e) { item[kind + "El"] = placeholder(kind, "the browser cannot decode it"); return; }
    item[kind + "El"] = img;
  } catch (e) {
    item[kind + "El"] = placeholder(kind, "could not reach the server (" + e.message + ")");
    item.ready = null; // try again next time it is shown
  }
}

function prepare(item) {
  if (item && !item.ready) {
    item.ready = Promise.all([loadImage(item, "image"), item.has_cutout ? loadImage(item, "cutout") : null]);
  }
  return item ? item.ready : Promise.resolve();
}

function release(item) {
  for (const kind of ["image", "cutout"]) {
    if (item[kind + "Url"]) URL.revokeObjectURL(item[kind + "Url"]);
    item[kind + "Url"] = item[kind + "El"] = null;
  }
  item.ready = null;
}

function status(text, cls) {
  const node = $("status");
  node.textContent = text;
  node.className = cls || "";
}

function renderProgress(p) {
  if (!p) return;
  $("bar").style.width = (100 * p.share).toFixed(2) + "%";
  $("progress-text").textContent =
    `${p.mine} by ${S.labeler} · run ${p.done} / ${p.total} (${(100 * p.share).toFixed(1)}%) · ${p.rate_per_min}/min`;
}

function renderReasons() {
  for (const button of $("reasons").children) button.classList.toggle("picked", button.dataset.code === S.picked);
}

function renderScores(item) {
  const table = $("scores");
  table.replaceChildren();
  for (const [name, value] of Object.entries(item.scores || {})) {
    const row = el("tr");
    row.append(el("td", name), el("td", value));
    table.append(row);
  }
  table.hidden = !S.showScores;
  $("btn-scores").textContent = S.showScores ? "scores: shown" : "scores: hidden";
}

function renderVerdict(item) {
  const node = $("verdict");
  const v = item.verdict;
  node.textContent = v ? `your verdict: ${v.label}${v.reason ? " · " + v.reason : ""}` : "";
  node.className = v ? v.label : "";
}

async function show(tKey) {
  const item = S.seq[S.at];
  if (!item) return finish();
  $("finish").hidden = true;
  await prepare(item);
  if (S.seq[S.at] !== item) return; // moved on while it loaded
  $("main-image").replaceChildren(item.imageEl);
  $("cutout-box").hidden = !item.has_cutout;
  $("cutout").replaceChildren(...(item.has_cutout && item.cutoutEl ? [item.cutoutEl] : []));
  $("category").textContent = item.category || "(none)";
  $("image-id").textContent = item.id;
  $("prompt").textContent = item.prompt || "(no visual description left after cleaning)";
  $("raw-prompt").textContent = item.raw_prompt;
  S.picked = item.verdict ? item.verdict.reason : "";
  renderReasons();
  renderScores(item);
  renderVerdict(item);
  document.body.dataset.shown = item.id;
  if (tKey !== undefined) {
    // After the frame that shows it: a rAF callback runs before the paint, a task queued from it after.
    requestAnimationFrame(() => setTimeout(() => S.timings.push({ id: item.id, ms: performance.now() - tKey }), 0));
  }
  for (let k = 1; k <= AHEAD; k++) prepare(S.seq[S.at + k]);
  if (S.at - KEEP_BEHIND >= 0 && S.seq[S.at - KEEP_BEHIND].ready) release(S.seq[S.at - KEEP_BEHIND]);
  if (S.seq.length - S.at <= AHEAD + 2) more();
}

function more() {
  if (S.loading || S.exhausted) return S.loading || Promise.resolve();
  S.loading = (async () => {
    try {
      const holding = S.seq.slice(S.at).map((item) => item.id);
      const data = await api("/api/next", { labeler: S.labeler, count: BATCH, holding });
      const known = new Set(S.seq.map((item) => item.id));
      for (const item of data.items) if (!known.has(item.id)) S.seq.push(item);
      if (!data.items.length) S.exhausted = true;
      renderProgress(data.progress);
      for (let k = 1; k <= AHEAD; k++) prepare(S.seq[S.at + k]);
    } catch (e) {
      status("could not load more images: " + e.message, "error");
    } finally {
      S.loading = null;
    }
  })();
  return S.loading;
}

function nextOpen(from) {
  let k = from;
  while (k < S.seq.length && S.seq[k].verdict) k++;
  return k;
}

async function verdict(label, tKey) {
  const item = S.seq[S.at];
  if (!item || S.busy) return;
  S.busy = true;
  status("saving…");
  try {
    const reason = label === "skip" ? "" : S.picked;
    const data = await api("/api/label", { labeler: S.labeler, id: item.id, label, reason });
    item.verdict = { label, reason };
    S.saved.push({ id: item.id, label, reason });
    status(`saved: ${label}${reason ? " · " + reason : ""} (${item.id})`, "saved");
    renderProgress(data.progress);
    S.at = nextOpen(S.at + 1);
    if (S.at >= S.seq.length) await more();
    await show(tKey);
  } catch (e) {
    status("NOT saved: " + e.message, "error");
  } finally {
    S.busy = false;
  }
}

async function undo() {
  if (S.busy) return;
  S.busy = true;
  try {
    const data = await api("/api/undo", { labeler: S.labeler });
    renderProgress(data.progress);
    if (!data.undone) { status("nothing to undo"); return; }
    let k = S.seq.findIndex((item) => item.id === data.undone.id);
    if (k < 0) { S.seq.splice(Math.min(S.at, S.seq.length), 0, data.undone); k = Math.min(S.at, S.seq.length - 1); }
    S.seq[k].verdict = null;
    S.at = k;
    S.exhausted = false;
    status(`undone: ${data.undone.id} (label it again)`, "saved");
    await show();
  } catch (e) {
    status("undo NOT saved: " + e.message, "error");
  } finally {
    S.busy = false;
  }
}

async function move(step, tKey) {
  if (S.busy) return;
  if (step < 0) {
    if (S.at === 0) return;
    S.at -= 1;
  } else {
    if (S.at >= S.seq.length) return;
    if (S.at + 1 >= S.seq.length) await more();
    S.at += 1;
  }
  await show(tKey);
}

async function finish() {
  document.body.dataset.shown = "finish";
  $("finish").hidden = false;
  try {
    const data = await api("/api/summary?labeler=" + encodeURIComponent(S.labeler));
    const table = $("finish-counts");
    table.replaceChildren();
    const add = (name, mine, all) => { const row = el("tr"); row.append(el("td", name), el("td", String(mine)), el("td", String(all))); table.append(row); };
    add("", "you", "everyone");
    for (const name of Object.keys(data.all.labels)) add(name, data.mine.labels[name] || 0, data.all.labels[name]);
    for (const name of Object.keys(data.all.reasons)) add("reason: " + name, data.mine.reasons[name] || 0, data.all.reasons[name]);
    $("finish-text").textContent = `No more images for ${S.labeler}. Labelers so far: ${data.labelers.join(", ")}.`;
    $("finish-command").textContent = data.command;
    renderProgress(data.progress);
  } catch (e) {
    $("finish-text").textContent = "could not load the counts: " + e.message;
  }
}

function toggleScores() {
  S.showScores = !S.showScores;
  if (S.seq[S.at]) renderScores(S.seq[S.at]);
}

function pick(code) {
  S.picked = S.picked === code ? "" : code;
  renderReasons();
}

async function begin() {
  $("who").textContent = S.labeler;
  const data = await api("/api/next", { labeler: S.labeler, count: BATCH, holding: [], recent: 20 });
  S.seq = [...data.recent, ...data.items];
  S.at = data.recent.length;
  S.exhausted = data.items.length === 0;
  renderProgress(data.progress);
  await show();
}

function askName() {
  $("name").hidden = false;
  $("name-input").focus();
  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("name-input").value.trim();
    if (!name || /[,"\u0000-\u001f]/.test(name)) { $("name-error").textContent = "a name without commas or quotes, please"; return; }
    localStorage.setItem("aigc-eval-labeler", name);
    S.labeler = name;
    $("name").hidden = true;
    begin().catch((e) => status("could not start: " + e.message, "error"));
  });
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.tagName === "INPUT") return;
  const key = event.key, t = event.timeStamp; // the event's time, on performance.now()'s clock
  if (!$("help").hidden) { if (key === "Escape" || key === "?") $("help").hidden = true; event.preventDefault(); return; }
  if (key === "?") { $("help").hidden = false; event.preventDefault(); return; }
  if (!S.labeler) return;
  const reason = S.reasons.find((r) => r.key === key);
  const actions = {
    a: () => verdict("accept", t), r: () => verdict("reject", t), s: () => verdict("skip", t), u: () => undo(),
    ArrowLeft: () => move(-1, t), ArrowRight: () => move(1, t), v: toggleScores,
    p: () => { $("raw-prompt").hidden = !$("raw-prompt").hidden; },
  };
  if (reason) pick(reason.code);
  else if (actions[key]) actions[key]();
  else return;
  event.preventDefault();
});

async function start() {
  const params = new URLSearchParams(location.search);
  S.token = params.get("token") || "";
  try {
    const config = await api("/api/config");
    S.reasons = config.reasons;
    for (const r of S.reasons) {
      const button = el("button", "");
      button.type = "button";
      button.dataset.code = r.code;
      button.append(el("kbd", r.key), document.createTextNode(" " + r.code));
      button.addEventListener("click", () => pick(r.code));
      $("reasons").append(button);
    }
    S.labeler = params.get("labeler") || config.labeler || localStorage.getItem("aigc-eval-labeler") || "";
  } catch (e) {
    status("could not start: " + e.message, "error");
    return;
  }
  const clicks = { accept: () => verdict("accept"), reject: () => verdict("reject"), skip: () => verdict("skip"),
                   undo: () => undo(), prev: () => move(-1), next: () => move(1) };
  for (const button of $("actions").querySelectorAll("button")) button.addEventListener("click", clicks[button.dataset.act]);
  $("btn-scores").addEventListener("click", toggleScores);
  $("btn-help").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
  $("btn-raw").addEventListener("click", () => { $("raw-prompt").hidden = !$("raw-prompt").hidden; });
  $("btn-back").addEventListener("click", () => move(-1));
  if (!S.labeler) return askName();
  begin().catch((e) => status("could not start: " + e.message, "error"));
}

start();
