// The dashboard page: fetches the JSON endpoints and draws Plotly charts. All text from the
// store goes into the page through textContent (never innerHTML) and into Plotly escaped.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const fmt = (x, d = 4) => (x === null || x === undefined ? "" : Number(x).toFixed(d));
let points = [];

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  return q.toString();
}

async function getJSON(path, params) {
  const response = await fetch(path + "?" + query(params || {}));
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function filters() {
  return { grain: $("grain").value, by: $("by").value, category: $("category").value, generator_version: $("version").value };
}

function groups(pts) {
  const out = new Map();
  for (const p of pts) { if (!out.has(p.group)) out.set(p.group, []); out.get(p.group).push(p); }
  return out;
}

function trace(pts, name, key, low, high, extra) {
  const x = [], y = [], up = [], down = [], custom = [];
  for (const p of pts) {
    if (p[key] === null || p[key] === undefined) continue;
    x.push(p.period); y.push(p[key]); custom.push(p.group);
    up.push(high && p[high] !== null ? p[high] - p[key] : 0);
    down.push(low && p[low] !== null ? p[key] - p[low] : 0);
  }
  return Object.assign({ x, y, customdata: custom, name: esc(name || "all"), type: "scatter", mode: "lines+markers",
    error_y: low ? { type: "data", symmetric: false, array: up, arrayminus: down, thickness: 1 } : undefined }, extra || {});
}

function markers(releases) {
  const shapes = [], annotations = [];
  for (const r of releases) {
    shapes.push({ type: "line", xref: "x", yref: "paper", x0: r.first_day, x1: r.first_day, y0: 0, y1: 1, line: { dash: "dot", color: "#888", width: 1 } });
    annotations.push({ x: r.first_day, y: 1, xref: "x", yref: "paper", text: esc(r.generator_version), showarrow: false, font: { size: 10 }, yanchor: "bottom" });
  }
  return { shapes, annotations };
}

function draw(id, title, traces, releases, yaxis) {
  const layout = Object.assign({ title: { text: esc(title), font: { size: 13 } }, margin: { l: 45, r: 10, t: 40, b: 35 },
    showlegend: traces.length > 1, legend: { orientation: "h" }, yaxis: yaxis || {} }, markers(releases));
  Plotly.react($(id), traces, layout, { displaylogo: false, responsive: true });
  $(id).removeAllListeners && $(id).removeAllListeners("plotly_click");
  $(id).on("plotly_click", (event) => {
    const point = event.points[0];
    drill(point.x, point.customdata);
  });
}

function render(data) {
  points = data.points;
  const byGroup = groups(points);
  const series = (key, low, high, extra) => [...byGroup].map(([g, pts]) => trace(pts, g, key, low, high, extra));
  draw("chart-total", "mean total score", series("total_mean", "total_low", "total_high"), data.releases);
  const withP = points.some((p) => p.p_accept_mean !== null);
  draw("chart-p_accept", withP ? "mean p_accept" : "p_accept (not calibrated)", series("p_accept_mean", "p_accept_low", "p_accept_high"), data.releases);
  draw("chart-clip", "mean CLIPScore", series("clip_mean", "clip_low", "clip_high"), data.releases);
  draw("chart-regenerate", "regenerate rate", series("regenerate_rate", "regenerate_low", "regenerate_high"), data.releases, { tickformat: ".0%" });
  const codes = [...new Set(points.flatMap((p) => Object.keys(p.issues)))].sort();
  const issueTraces = codes.map((code) => trace(points.filter((p) => p.group === (points[0] || {}).group)
    .map((p) => Object.assign({}, p, { r: p.issues[code] ? p.issues[code].rate : 0, lo: p.issues[code] ? p.issues[code].low : null, hi: p.issues[code] ? p.issues[code].high : null })), code, "r", "lo", "hi"));
  draw("chart-issues", "product issue rates" + ($("by").value ? " (first group)" : ""), issueTraces, data.releases, { tickformat: ".0%" });
  draw("chart-volume", "volume (rows)", series("n_rows", null, null, { type: "bar", mode: undefined }), data.releases);
  const body = $("points").querySelector("tbody");
  body.replaceChildren();
  for (const p of points) {
    const tr = document.createElement("tr");
    cell(tr, p.period, "text"); cell(tr, p.group, "text"); cell(tr, String(p.n_rows)); cell(tr, String(p.n_ok));
    cell(tr, fmt(p.total_mean)); cell(tr, fmt(p.total_low)); cell(tr, fmt(p.total_high)); cell(tr, fmt(p.clip_mean)); cell(tr, fmt(p.regenerate_rate));
    tr.dataset.period = p.period;
    tr.dataset.group = p.group;
    body.appendChild(tr);
  }
  document.body.dataset.rendered = String(Date.now());
}

function nextDay(period, days) {
  const d = new Date(period + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

async function drill(period, group) {
  const f = filters();
  const params = { since: period, until: nextDay(period, f.grain === "week" ? 7 : 1), category: f.category, generator_version: f.generator_version };
  if (f.by) params[f.by] = group;
  const data = await getJSON("/api/drilldown", params);
  $("drill-title").textContent = `${params.since} .. ${params.until}` + (f.by ? `, ${f.by} ${group}` : "");
  const body = $("drill").querySelector("tbody");
  body.replaceChildren();
  for (const img of data.images) {
    const tr = document.createElement("tr");
    cell(tr, img.image_id, "text"); cell(tr, img.category, "text"); cell(tr, img.generator_version, "text"); cell(tr, img.scored_day, "text");
    cell(tr, fmt(img.total_score)); cell(tr, fmt(img.clip_score)); cell(tr, img.product_issues, "text"); cell(tr, img.regenerate, "text");
    const td = cell(tr, "", "text");
    if (img.image_url && /^https?:\/\//i.test(img.image_url)) {
      const a = document.createElement("a"); a.href = img.image_url; a.rel = "noreferrer";
      const pic = document.createElement("img"); pic.className = "thumb"; pic.loading = "lazy"; pic.src = img.image_url; pic.alt = img.image_id;
      a.appendChild(pic); td.appendChild(a);
    } else if (img.image_url) { td.textContent = img.image_url; }
    body.appendChild(tr);
  }
  document.body.dataset.drilled = String(Date.now());
}

async function alarms() {
  const data = await getJSON("/api/alarms", {});
  $("alarm-window").textContent = `(window ${data.window[0]} .. ${data.window[1]} against ${data.baseline[0]} .. ${data.baseline[1]})`;
  const list = $("alarms");
  list.replaceChildren();
  for (const a of data.alarms) { const li = document.createElement("li"); li.textContent = a.line; list.appendChild(li); }
  if (!data.alarms.length) { const li = document.createElement("li"); li.className = "muted"; li.textContent = "none"; list.appendChild(li); }
}

async function compare(event) {
  if (event) event.preventDefault();
  const params = { a_since: $("a-since").value, a_until: $("a-until").value, b_since: $("b-since").value, b_until: $("b-until").value,
    a_version: $("a-version").value, b_version: $("b-version").value, category: $("category").value };
  const out = $("compare-out");
  out.replaceChildren();
  let data;
  try { data = await getJSON("/api/compare", params); } catch (e) { out.textContent = e.message; return; }
  const table = document.createElement("table");
  const head = document.createElement("tr");
  for (const h of ["metric", "pairing", "n A", "n B", "mean A", "mean B", "B - A", "95% low", "95% high", "t-test p", "rank test p"]) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
  table.appendChild(head);
  for (const [metric, r] of Object.entries(data.tests)) {
    const tr = document.createElement("tr");
    for (const v of [metric, r.pairing, r.n_a, r.n_b, fmt(r.mean_a), fmt(r.mean_b), fmt(r.difference), fmt(r.ci_low), fmt(r.ci_high), fmt(r.t_test_p, 4), fmt(r.rank_test_p, 4)]) cell(tr, String(v));
    table.appendChild(tr);
  }
  out.appendChild(table);
  const p = document.createElement("p");
  const d = data.distance;
  p.textContent = d.cmmd !== undefined ? `KID (CLIP embeddings) ${fmt(d.kid_mean)} ± ${fmt(d.kid_std)}, CMMD ${fmt(d.cmmd)} (${d.n_a} / ${d.n_b} embeddings)${d.warning ? "; " + d.warning : ""}` : "no stored embeddings on both sides: no KID or CMMD";
  out.appendChild(p);
  const moved = document.createElement("p");
  moved.textContent = "moved most (mean total, B - A): " + data.moved.map((m) => `${m.category || "(none)"} ${m.difference >= 0 ? "+" : ""}${fmt(m.difference)}`).join(", ");
  out.appendChild(moved);
  document.body.dataset.compared = String(Date.now());
}

async function refresh() {
  render(await getJSON("/api/overview", filters()));
}

function fill(select, values) {
  for (const v of values) { const o = document.createElement("option"); o.value = v; o.textContent = v || "(none)"; select.appendChild(o); }
}

async function start() {
  const meta = await getJSON("/api/meta");
  fill($("category"), meta.categories);
  for (const id of ["version", "a-version", "b-version"]) fill($(id), meta.generator_versions);
  if (meta.last_day) {  // this week against the four before it
    const end = nextDay(meta.last_day, 1);
    $("b-until").value = end; $("b-since").value = nextDay(end, -7); $("a-until").value = nextDay(end, -7); $("a-since").value = nextDay(end, -35);
  }
  for (const id of ["grain", "by", "category", "version"]) $(id).addEventListener("change", refresh);
  $("compare-form").addEventListener("submit", compare);
  await Promise.all([refresh(), alarms()]);
}

start();
