// geospot dashboard — hand-written vanilla JS, no libraries, no build step.
// Rule: data from runs (model text, ids, labels, config) only ever enters the page through
// textContent or attribute setters (see `el`), never through an HTML-parsing sink.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const $main = document.getElementById("main");
const enc = encodeURIComponent;

// ---- tiny DOM helpers ------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.setAttribute("class", v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  return node;
}
const svg = (tag, attrs, ...kids) => el("svg:" + tag, attrs, ...kids);

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
// RL steps that trained nothing (every group's rewards equal: no datum, the weights did not move)
const IDLE_TITLE = "steps on which every group's rewards were equal, so GRPO had nothing to compare and the weights did not change";
const idleText = (steps, idle) => !idle ? "" : idle === steps ? " (none trained)" : ` (${idle} trained nothing)`;
const stepsCell = (steps, idle) => el("td", { class: "num", "data-key": "steps", title: idle ? IDLE_TITLE : "" },
  `${steps}${idleText(steps, idle)}`);
const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v)) ? "–"
  : typeof v !== "number" ? String(v)
  : Math.abs(v) >= 1000 ? v.toFixed(0) : Number(v.toPrecision(d)).toString();

// Page-level resources (timers, event streams) are closed when the route changes.
let cleanups = [];
function onLeave(fn) { cleanups.push(fn); }
function leave() { cleanups.forEach(fn => { try { fn(); } catch (e) { /* ignore */ } }); cleanups = []; }

function setLive(state) {
  const node = document.getElementById("live");
  node.textContent = state;
  node.className = "live " + (state === "live" ? "on" : "off");
}

// ---- run list ---------------------------------------------------------------------------
// Training-batch figures (RL's reward, median km of its rollouts) are not comparable across runs;
// the held-out columns are: each run's latest eval on its held-out images.
const LIST_KEYS = [["reward", /(^|[\/_])reward(_mean)?$/i, "max"]];
const HELDOUT_KEYS = [["held-out GeoScore", "geoscore", 0], ["held-out median km", "median_km", 1],
  ["held-out acc@750", "acc_750km", 3]];

// What a run's episodes and held-out evals ask (`setup` of /api/runs and /api/run, app.py run_setup:
// the same env keys; only the list fills in the model of a run started from another's weights):
// RL's env_type (+ the mix_env_type playing a share of each batch), SFT's prompt_style, whose
// held-out eval asks `asks` (the server's: single-turn for a mix of envs). Held-out numbers of
// different envs differ in kind.
function envLabel(s) {
  s = s || {};
  const reasoning = s.reasoning ? " + reasoning" : "";
  if (s.env_type) {
    // a mixed run: mix_share of each batch's images play mix_env_type, the rest env_type
    const pct = typeof s.mix_share === "number" ? x => ` ${Math.round(x * 100)}%` : () => "";
    const env = s.mix_env_type ? `${s.env_type}${pct(1 - s.mix_share)} + ${s.mix_env_type}${pct(s.mix_share)}` : s.env_type;
    return { text: env + reasoning, title: `RL env_type=${s.env_type}` + (s.mix_env_type ? `, mix_env_type=${s.mix_env_type} (the share of each batch's images that play it: mix_share=${s.mix_share})` : "") };
  }
  if (s.prompt_style) {
    const asks = s.asks || s.prompt_style;
    return { text: asks + reasoning + (asks === s.prompt_style ? "" : ` (SFT on ${s.prompt_style})`),
      title: `SFT prompt_style=${s.prompt_style}; its held-out eval asks ${asks}` };
  }
  return { text: "–", title: "the run's config names no env_type or prompt_style" };
}

// The model: model_name, or the start run's (an RL run from an SFT run's weights names none itself).
function modelCell(s) {
  s = s || {};
  const from = s.start_run || (s.start ? s.start.split("/").filter(Boolean).pop() : null);
  const title = s.start ? `started from ${s.start}` + (s.start_run && s.model ? `: the model of run ${s.start_run}` : "") : null;
  return el("td", { "data-key": "model", title }, s.model || (from ? "" : "–"),
    from ? el("span", { class: "muted" }, s.model ? ` ← ${from}` : `from ${from}`) : "");
}

function bestOf(best, re) {
  const k = Object.keys(best).find(k => re.test(k));
  return k === undefined ? null : best[k];
}

async function renderList() {
  document.getElementById("crumbs").textContent = "runs";
  const picked = new Set();
  const draw = async () => {
    let data;
    try { data = await getJSON("/api/runs"); } catch (e) { $main.replaceChildren(el("p", { class: "error" }, String(e))); return; }
    const cmp = el("button", { id: "compare-btn", disabled: true, onclick: () => {
      const [a, b] = [...picked]; location.hash = `#/compare/${enc(a)}/${enc(b)}`; } });
    // the button says what it needs: two picked runs (it read "compare selected (2)" with none picked)
    const ready = () => {
      cmp.disabled = picked.size !== 2;
      cmp.textContent = picked.size === 2 ? "compare the 2 picked runs" : `pick 2 runs to compare (${picked.size} picked)`;
    };
    const rows = data.runs.map(r => { const env = envLabel(r.setup); return el("tr", { "data-run": r.name },
      el("td", {}, el("input", { type: "checkbox", checked: picked.has(r.name), onchange: ev => {
        ev.target.checked ? picked.add(r.name) : picked.delete(r.name);
        ready(); } })),
      el("td", {}, el("a", { href: `#/run/${enc(r.name)}` }, r.name)),
      el("td", {}, r.kind || "–"),
      el("td", { "data-key": "env", title: env.title }, env.text),
      modelCell(r.setup),
      el("td", {}, el("span", { class: "badge " + r.status }, r.status)),
      stepsCell(r.steps, r.idle_steps),
      ...HELDOUT_KEYS.map(([, k]) => el("td", { class: "num heldout", "data-key": k }, fmt((r.heldout || {})[k]))),
      el("td", { class: "num", "data-key": "heldout-step" }, (r.heldout || {}).step ?? "–"),
      ...LIST_KEYS.map(([, re]) => el("td", { class: "num" }, fmt(bestOf(r.best, re)))));
    });
    ready();
    // The list redraws every 5 s, so while any run trains it is as live as a run's own page.
    setLive(data.runs.some(r => r.status === "running") ? "live" : "not live");
    $main.replaceChildren(
      el("h2", {}, "Runs"), el("p", { class: "muted" }, `in ${data.runs_dir}`),
      data.runs.length ? el("table", { id: "runs" },
        el("tr", {}, el("th"), el("th", {}, "name"), el("th", {}, "kind"),
          el("th", { title: "what the run's episodes and held-out evals ask: held-out numbers of different envs are not comparable" }, "env"),
          el("th", {}, "model"), el("th", {}, "status"),
          el("th", {}, "steps"), ...HELDOUT_KEYS.map(([t]) => el("th", { title: "latest eval on held-out images" }, t)),
          el("th", {}, "held-out at step"), ...LIST_KEYS.map(([t]) => el("th", {}, "best training " + t))), rows)
        : el("p", { class: "muted" }, "No runs yet: train with a run folder under this directory."),
      el("p", {}, cmp));
  };
  await draw();
  const timer = setInterval(draw, 5000);
  onLeave(() => clearInterval(timer));
}

// ---- charts ------------------------------------------------------------------------------
// Metric names differ between loops (reward, reward_mean, train/reward...): group by pattern.
const GROUPS = [
  { title: "held-out GeoScore", re: /^eval\/geoscore$/i },
  { title: "reward", re: /(^|[\/_])reward/i, not: /turn|std/i },
  { title: "median distance (km, log)", re: /median_km/i, not: /turn/i, log: true },
  { title: "accuracy @25 / 200 / 750 km", re: /acc_(25|200|750)km/i },
  { title: "τ (km)", re: /(^|[\/_])tau(_km)?$/i },
  { title: "format rate", re: /format|parse/i, not: /answer_format/i },
  // reasoning=true runs only (the RL steps and held-out evals log these; other runs have none)
  { title: "reasoning tokens per turn", re: /(^|[\/_])reasoning_tokens$/i },
  { title: "reasoning: truncated / answer-format rate", re: /(^|[\/_])(truncation_rate|answer_format_rate)$/i },
  { title: "per-turn distance (km, log)", re: /turn_?\d.*km|km.*turn_?\d/i, log: true },
  { title: "label accuracy (label turns)", re: /label_[a-z]+_acc$/i },
  { title: "geohash characters shared per turn", re: /geohash_shared$/i },
];
const COLORS = ["#4fb3ff", "#ffb347", "#3ddc84", "#ff6b5a", "#c58cff", "#ffe066"];

function groupKeys(keys) {
  return GROUPS.map(g => ({ ...g, keys: keys.filter(k => g.re.test(k) && !(g.not && g.not.test(k))).sort() }))
    .filter(g => g.keys.length);
}

// series: [{label, color, dash, pts: [[x, y], ...]}]; cursorX marks the map's step.
function lineChart(title, series, { log = false, cursorX = null } = {}) {
  const W = 320, H = 150, L = 42, R = 6, T = 6, B = 18;
  const fy = v => log ? Math.log10(Math.max(v, 1e-3)) : v;
  const finite = p => Number.isFinite(p[1]);  // a logged null (an infinite distance) or NaN is not drawn
  const all = series.flatMap(s => s.pts).filter(finite);
  const box = el("div", { class: "chart", "data-title": title }, el("h3", {}, title));
  if (!all.length) { box.appendChild(el("p", { class: "muted" }, "no data")); return box; }
  let [x0, x1] = [Math.min(...all.map(p => p[0])), Math.max(...all.map(p => p[0]))];
  let [y0, y1] = [Math.min(...all.map(p => fy(p[1]))), Math.max(...all.map(p => fy(p[1])))];
  // One step (a single eval): the point sits mid-axis between whole steps, not on the left edge.
  if (x1 === x0) { x1 = x0 + 1; if (x0 >= 1) x0 -= 1; }
  // One value: a band of ±10 % around it (±0.5 on a log axis, ±1 around 0), so the ticks differ;
  // never below 0 for values that are not (an accuracy that stayed at 0 reads 0 .. 1, not -1 .. 1).
  // Float noise of one value (τ 2000 and 1999.9999999999998) is one value, not a jump across the chart.
  if (y1 - y0 <= 1e-9 * Math.max(1, Math.abs(y0), Math.abs(y1))) {
    const mid = (y0 + y1) / 2;
    const pad = log ? 0.5 : Math.abs(mid) * 0.1 || 1, floor = !log && mid >= 0 ? 0 : -Infinity;
    y0 = Math.max(mid - pad, floor); y1 = mid + pad;
  }
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => T + (1 - (fy(y) - y0) / (y1 - y0)) * (H - T - B);
  const tickY = v => log ? fmt(10 ** v) : fmt(v);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" },
    svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    svg("text", { class: "tick", x: L - 4, y: T + 8, "text-anchor": "end" }, tickY(y1)),
    svg("text", { class: "tick", x: L - 4, y: H - B, "text-anchor": "end" }, tickY(y0)),
    svg("text", { class: "tick", x: L, y: H - 4 }, fmt(x0)),
    svg("text", { class: "tick", x: W - R, y: H - 4, "text-anchor": "end" }, fmt(x1)));
  // The step cursor moves with the map's slider: box.moveCursor repositions it in place
  // instead of rebuilding every chart on each slider tick.
  let cursor = null;
  box.moveCursor = x => {
    if (x === null || x === undefined) { if (cursor) cursor.remove(); cursor = null; return; }
    if (!cursor) g.insertBefore(cursor = svg("line", { class: "cursor", y1: T, y2: H - B }), g.querySelector("polyline"));
    cursor.setAttribute("x1", sx(x)); cursor.setAttribute("x2", sx(x));
  };
  box.moveCursor(cursorX);
  for (const s of series) {
    const pts = s.pts.filter(finite);
    if (!pts.length) continue;
    const xy = pts.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`);
    g.appendChild(svg("polyline", { fill: "none", stroke: s.color, "stroke-width": 1.6, "stroke-dasharray": s.dash,
      "vector-effect": "non-scaling-stroke", points: xy.join(" ") }));
    // A lone point draws no line: a dot (a zero-length line with round caps stays round when the
    // chart stretches) and its value.
    if (pts.length === 1) {
      g.appendChild(svg("polyline", { class: "dot", fill: "none", stroke: s.color, "stroke-width": 7, "stroke-linecap": "round",
        "vector-effect": "non-scaling-stroke", points: `${xy[0]} ${xy[0]}` }));
      // above the dot, or below it when the dot is at the top (a value above the chart is cut off)
      const py = sy(pts[0][1]);
      g.appendChild(svg("text", { class: "tick value", x: sx(pts[0][0]) + 6, y: py - 5 < T + 8 ? py + 12 : py - 5 }, fmt(pts[0][1])));
    }
  }
  box.appendChild(g);
  // The legend names what is drawn: a run that never logged a key (no held-out eval, no τ) adds no entry.
  const drawn = series.filter(s => s.pts.some(finite));
  box.appendChild(el("div", { class: "legend" }, drawn.map(s => el("span", {}, el("i", { class: "sw", "data-c": s.color }), s.label))));
  box.querySelectorAll("i.sw").forEach(i => { i.style.background = i.getAttribute("data-c"); });
  return box;
}

// runs: [{name, steps: [{step, metrics}]}]; one chart per metric group, one line per key x run.
function drawCharts(node, runs, cursorX) {
  node.cursorX = cursorX;
  const keys = [...new Set(runs.flatMap(r => r.steps.flatMap(s => Object.keys(s.metrics))))];
  const groups = groupKeys(keys);
  const charts = groups.map(grp => {
    const series = [];
    runs.forEach((run, ri) => grp.keys.forEach((k, ki) => series.push({
      label: runs.length > 1 ? `${run.name}: ${k}` : k,
      color: COLORS[(runs.length > 1 ? ri : ki) % COLORS.length], dash: runs.length > 1 && ki ? "4 3" : null,
      pts: run.steps.filter(s => k in s.metrics).map(s => [s.step, s.metrics[k]]) })));
    return lineChart(grp.title, series, { log: grp.log, cursorX });
  });
  // Everything else (loss, lr, tokens/s, eval/...) one at a time, picked from a menu; the
  // choice lives on the node so live redraws keep it.
  const grouped = new Set(groups.flatMap(g => g.keys));
  const rest = keys.filter(k => !grouped.has(k)).sort();
  if (rest.length) {
    const key = rest.includes(node.dataset.extra) ? node.dataset.extra
      : rest.find(k => /(^|[\/_])loss$/i.test(k)) || rest.find(k => /geoscore/i.test(k)) || rest[0];
    const chart = lineChart(key, runs.map((run, ri) => ({ label: runs.length > 1 ? `${run.name}: ${key}` : key,
      color: COLORS[ri % COLORS.length], pts: run.steps.filter(s => key in s.metrics).map(s => [s.step, s.metrics[key]]) })),
    { cursorX });
    const pick = el("select", { class: "extra", onchange: ev => { node.dataset.extra = ev.target.value; drawCharts(node, runs, node.cursorX); } },
      rest.map(k => el("option", { value: k, selected: k === key }, k)));
    chart.firstChild.replaceChildren("more: ", pick);
    charts.push(chart);
  }
  node.replaceChildren(...(charts.length ? charts : [el("p", { class: "muted" }, "no metrics yet")]));
}

// Only the cursor moved (slider, play): reposition it in every chart of `node`.
function moveChartCursor(node, cursorX) {
  node.cursorX = cursorX;
  for (const chart of node.children) if (chart.moveCursor) chart.moveCursor(cursorX);
}

// ---- the map: equirectangular, SVG user units are degrees (x = lon, y = -lat) --------------
// world(), shifts(), greatCircle(), linePaths(), rewardColor(), finalGuess(): geo.js


class WorldMap {
  constructor(onPick) {
    this.onPick = onPick;
    this.view = { x: -180, y: -90, w: 360, h: 180 };
    this.node = svg("svg", { class: "map", viewBox: "-180 -90 360 180", preserveAspectRatio: "xMidYMid meet" });
    const clip = svg("clipPath", { id: "mapclip" }, svg("rect", { x: -180, y: -90, width: 360, height: 180 }));
    this.base = svg("g", { "clip-path": "url(#mapclip)" });
    this.data = svg("g", { "clip-path": "url(#mapclip)", class: "data" });
    this.node.append(svg("defs", {}, clip), this.base, this.data);
    this.images = []; this.selected = null;
    this._zoomPan();
  }
  async drawBase() {
    const w = await world();
    const grat = [];
    for (let lon = -180; lon <= 180; lon += 30) grat.push(`M${lon} -90L${lon} 90`);
    for (let lat = -60; lat <= 60; lat += 30) grat.push(`M-180 ${-lat}L180 ${-lat}`);
    this.base.appendChild(svg("path", { class: "grat", d: grat.join("") }));
    for (const c of w.countries) {
      const d = c.rings.map(r => shifts(r.filter((_, i) => i % 2 === 0)).map(s => ringPath(r, s)).join("")).join("");
      this.base.appendChild(svg("path", { class: "country", d, "data-name": c.name }));
    }
  }
  // Markers keep a constant size on screen: radius in degrees scales with the zoom.
  get unit() { return this.view.w / 360; }
  setImages(images) { this.images = images; this.draw(); }
  select(id) { this.selected = id; this.draw(); }
  draw() {
    const u = this.unit, layer = [];
    const rewards = this.images.flatMap(im => im.rollouts.map(r => r.reward)).filter(r => r !== null);
    const [lo, hi] = [Math.min(...rewards), Math.max(...rewards)];
    const lines = [], guesses = [], truths = [], turns = [];
    for (const im of this.images) {
      const sel = this.selected === im.image_id, dim = this.selected !== null && !sel;
      const pick = () => this.onPick(im.image_id);
      im.rollouts.forEach(ro => {
        const g = finalGuess(ro);
        if (!g) return;
        lines.push(...linePaths(greatCircle(im.lat, im.lon, g[0], g[1]), "gc" + (dim ? " dim" : "")));
        const c = svg("circle", { class: "guess" + (dim ? " dim" : ""), cx: g[1], cy: -g[0], r: 2.2 * u,
          fill: rewardColor(ro.reward, lo, hi), "data-image": im.image_id, onclick: pick });
        c.size = 2.2;
        c.appendChild(svg("title", {}, `guess ${ro.idx}: ${ro.reward === null ? "" : `reward ${fmt(ro.reward)}, `}`
          + `${fmt(ro.distance_km)} km`));
        guesses.push(c);
        if (sel && ro.guesses.length > 1) {  // telescoping: coarse -> refine -> final
          const path = ro.guesses.filter(Boolean);
          for (let i = 1; i < path.length; i++)
            turns.push(...linePaths(greatCircle(path[i - 1][0], path[i - 1][1], path[i][0], path[i][1], 12), "turnpath"));
          path.forEach((p, i) => {
            const dot = svg("circle", { class: "turn", cx: p[1], cy: -p[0], r: (1.0 + 0.4 * i) * u, "data-turn": i + 1 });
            dot.size = 1.0 + 0.4 * i;
            turns.push(dot);
          });
        }
      });
      const t = svg("rect", { class: "truth" + (dim ? " dim" : ""), x: im.lon - 2.6 * u, y: -im.lat - 2.6 * u,
        width: 5.2 * u, height: 5.2 * u, transform: `rotate(45 ${im.lon} ${-im.lat})`, "data-image": im.image_id, onclick: pick });
      t.appendChild(svg("title", {}, `truth ${im.image_id}: ${fmt(im.lat, 4)}, ${fmt(im.lon, 4)}`));
      t.centre = [im.lon, -im.lat];
      truths.push(t);
    }
    layer.push(...lines, ...turns, ...guesses, ...truths);  // final guesses stay on top of their paths
    this.data.replaceChildren(...layer);
  }
  // Zoom / pan change only the markers' size in degrees (constant on screen): resize them in
  // place rather than rebuilding every great circle on each wheel or drag event.
  rescale() {
    const u = this.unit;
    for (const c of this.data.querySelectorAll("circle")) if (c.size) c.setAttribute("r", c.size * u);
    for (const t of this.data.querySelectorAll("rect.truth")) {
      const [x, y] = t.centre;
      t.setAttribute("x", x - 2.6 * u); t.setAttribute("y", y - 2.6 * u);
      t.setAttribute("width", 5.2 * u); t.setAttribute("height", 5.2 * u);
    }
  }
  // Zoom to the selected image's truth and guesses (or to all images): late in training the
  // clusters are a few pixels wide at world scale.
  fit() {
    const ims = this.images.filter(im => this.selected === null || im.image_id === this.selected);
    const pts = ims.flatMap(im => [[im.lat, im.lon], ...im.rollouts.flatMap(r => r.guesses.filter(Boolean))]);
    if (!pts.length) return this._setView({ x: -180, y: -90, w: 360 });
    const xs = pts.map(p => p[1]), ys = pts.map(p => -p[0]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const w = Math.max(4, (x1 - x0) * 1.3, (y1 - y0) * 2.6);
    this._setView({ x: (x0 + x1) / 2 - w / 2, y: (y0 + y1) / 2 - w / 4, w });
  }
  _setView(v) {
    v.w = Math.min(360, Math.max(1, v.w)); v.h = v.w / 2;
    v.x = Math.min(180 - v.w, Math.max(-180, v.x)); v.y = Math.min(90 - v.h, Math.max(-90, v.y));
    this.view = v;
    this.node.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
    this.rescale();
  }
  _zoomPan() {
    const toDeg = ev => {
      const r = this.node.getBoundingClientRect();
      return [this.view.x + (ev.clientX - r.left) / r.width * this.view.w, this.view.y + (ev.clientY - r.top) / r.height * this.view.h];
    };
    this.node.addEventListener("wheel", ev => {
      ev.preventDefault();
      const [mx, my] = toDeg(ev), k = ev.deltaY < 0 ? 0.8 : 1.25, v = this.view;
      this._setView({ x: mx - (mx - v.x) * k, y: my - (my - v.y) * k, w: v.w * k });
    }, { passive: false });
    let drag = null;
    this.node.addEventListener("mousedown", ev => { drag = { start: toDeg(ev), view: { ...this.view } }; });
    window.addEventListener("mouseup", () => { drag = null; });
    this.node.addEventListener("mousemove", ev => {
      if (!drag) return;
      const r = this.node.getBoundingClientRect();
      const dx = ev.movementX / r.width * this.view.w, dy = ev.movementY / r.height * this.view.h;
      this._setView({ x: this.view.x - dx, y: this.view.y - dy, w: this.view.w });
    });
    this.node.addEventListener("dblclick", () => this._setView({ x: -180, y: -90, w: 360 }));
  }
}

// ---- what each turn of a rollout asked -----------------------------------------------------
// A rollout's turns are named by the env that played them: the server works the layouts out from
// the run's config (/api/run's env.layouts, geospot/dashboard/env_view.py: the env kinds' own
// turns): per env, [{field, name, title, weight, partial}], field "" for a coordinate turn. A label
// turn has no coordinates (its guess is null): its answer is the label in its text, and its reward
// says whether it was right. A layout the server does not give is named turn 1, turn 2, ...
const turnsOf = n => Array.from({ length: n }, (_, i) => ({ name: `turn ${i + 1}` }));

// The layout of one rollout. Of two envs (a mixed run), a rollout longer than one of them is the
// other's; a hierarchical rollout's first answer is a label ("Country: ...") where the other
// env's is coordinates, so a first turn without coordinates whose text names its field is one.
function rolloutLayout(layouts, ro, texts) {
  const n = ro.guesses.length, fits = layouts.filter(l => n <= l.length);
  if (fits.length > 1) {
    const hier = fits.find(l => l[0].field);
    if (hier) {
      const labelled = !ro.guesses[0] && new RegExp(`^\\W*${hier[0].field}\\W*[:=]`, "im").test(texts[0] || "");
      return labelled ? hier : fits.find(l => !l[0].field);
    }
  }
  const layout = fits.find(l => l.length === n) || fits[0];
  return layout || turnsOf(n);
}

// The label a label turn's text names, as geo/parse_labels.py reads it: the last "<field>: value"
// line, else the first non-empty line, after any <think> block; null when there is none.
const LABEL_STRIP = " \t*_`\"'.:;-#>";
function stripLabel(s) {
  let a = 0, b = s.length;
  while (a < b && LABEL_STRIP.includes(s[a])) a++;
  while (b > a && LABEL_STRIP.includes(s[b - 1])) b--;
  return s.slice(a, b).trim();
}
function parseLabel(text, field) {
  let body = String(text || "").replace(/<think>[\s\S]*?<\/think>/gi, " ");
  const close = body.toLowerCase().lastIndexOf("</think>");
  if (close >= 0) body = body.slice(close + 8);
  const open = body.search(/<think>/i);
  if (open >= 0) body = body.slice(0, open);
  const keyed = [...body.matchAll(new RegExp(`^\\W*${field}\\W*[:=]\\s*(.+)$`, "gim"))].map(m => m[1]);
  const line = keyed.length ? keyed[keyed.length - 1] : body.split("\n").find(l => stripLabel(l));
  const label = line === undefined ? "" : stripLabel(line);
  return label && label.length <= 80 ? label : null;
}

// Was a label turn right? Its reward says so (hierarchical.py): the turn's weight if right, weight x
// hier_partial_credit for a wrong one after a wrong one, 0 if wrong, the format penalty (< 0) if it
// gave no label. Eval records keep no turn rewards: there only an answer equal to the stored truth
// label is known right (the env also accepts ISO codes and aliases, which the page cannot check).
function labelVerdict(turn, reward, answer, truth) {
  const near = (a, b) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));
  if (typeof reward === "number") {
    if (reward < 0) return "unparsed";
    if (typeof turn.weight === "number" && turn.weight > 0) {
      if (near(reward, turn.weight)) return "right";
      if (turn.partial > 0 && near(reward, turn.weight * turn.partial)) return "partial";
      return "wrong";
    }
    if (turn.weight === undefined) return reward > 0 ? "right" : "wrong";
    return null;  // a weight of 0 pays the same either way
  }
  if (answer && truth && answer.trim().toLowerCase() === String(truth).trim().toLowerCase()) return "right";
  return null;
}
const VERDICT = { right: ["✓", "right"], wrong: ["✗", "wrong"], partial: ["✗", "wrong (partial credit: the label before was wrong too)"] };

// One rollout's turns, as spans joined by arrows.
function turnSpans(layouts, ro, labels) {
  const texts = String(ro.text || "").split("\n---\n");
  // texts align with turns unless a turn's own text held the separator
  const aligned = texts.length === ro.guesses.length;
  const layout = rolloutLayout(layouts, ro, texts);
  const spans = ro.guesses.map((g, t) => {
    const turn = layout[t] || { name: `turn ${t + 1}` };
    const r = ro.turn_rewards[t], d = ro.turn_distances_km[t];
    const rew = typeof r === "number" ? ` r=${fmt(r)}` : "";
    if (turn.field) {
      const answer = aligned ? parseLabel(texts[t], turn.field) : null;
      const truth = (labels || {})[turn.field];
      const verdict = labelVerdict(turn, r, answer, truth);
      if (verdict === "unparsed" || (verdict === null && !answer && aligned)) {
        return el("span", { class: "turn unparsed", "data-field": turn.field, title: "no label in this turn's answer: the episode ended here" },
          `${turn.name} unparsed${rew}`);
      }
      const [mark, word] = VERDICT[verdict] || ["", ""];
      const title = (verdict ? `${word}` : "not graded in this record") + (truth ? `; the truth is ${truth}` : "");
      return el("span", { class: "turn label" + (verdict ? " " + verdict : ""), "data-field": turn.field, title },
        `${turn.name}: ${answer ?? "(see the text)"}` + (mark ? ` ${mark}` : "")
        + (verdict && verdict !== "right" && truth ? ` (${truth})` : "") + rew);
    }
    return el("span", { class: "turn" + (g ? "" : " unparsed"), title: turn.title },
      `${turn.name} ${g ? `(${fmt(g[0], 4)}, ${fmt(g[1], 4)})` : "unparsed"}` + (g && d !== null && d !== undefined ? ` ${fmt(d)} km` : "") + rew);
  });
  return spans.flatMap((s, i) => i ? [" → ", s] : [s]);
}

// The median distance of an image's rollouts as the eval metrics compute it (geo/metrics.py): an
// unparsed answer (no distance) is a miss at infinite distance, and an even count takes the mean
// of the two middle values, so the median is Infinity once half or more are unparsed.
function medianKm(rollouts) {
  const ds = rollouts.map(r => r.distance_km ?? Infinity).sort((a, b) => a - b), m = ds.length >> 1;
  return !ds.length ? null : ds.length % 2 ? ds[m] : (ds[m - 1] + ds[m]) / 2;
}

// ---- one run: charts + map + slider + images + detail, live through SSE -------------------
class RunView {
  // onLive: who sets the page's live badge (the compare page: one badge for both runs)
  constructor(name, { charts = true, onChange = null, onLive = null } = {}) {
    this.name = name; this.withCharts = charts; this.onChange = onChange; this.onLive = onLive;
    this.cache = new Map(); this.index = -1; this.split = "train"; this.picked = null;
    this.node = el("section", { class: "run", "data-run": name });
  }
  async load() {
    const d = await getJSON(`/api/run?run=${enc(this.name)}`);
    Object.assign(this, { kind: d.kind, config: d.config, setup: d.setup || {}, env: d.env || { layouts: [], reward: null }, status: d.status, steps: d.steps, imageSteps: d.image_steps, seq: d.seq });
    const splits = [...new Set(this.imageSteps.map(s => s.split))];
    if (splits.length && !splits.includes(this.split)) this.split = splits[0];
    this.build(splits);
    // a run that has ended says so at once (its stream's first status event may come later);
    // a running one says "live" only once its stream is open (es.onopen)
    if (this.status !== "running") this.showLive();
    await this.map.drawBase();
    this.index = this.stepList().length - 1;
    await this.showStep();
    this.subscribe();
    return this;
  }
  stepList() { return this.imageSteps.filter(s => s.split === this.split).map(s => s.step); }
  build(splits) {
    this.head = el("div", { class: "runhead" });
    this.chartsNode = el("div", { class: "charts" });
    this.map = new WorldMap(id => this.pick(id));
    this.slider = el("input", { type: "range", id: "step-slider", min: 0, max: 0, value: 0, oninput: () => {
      this.index = Number(this.slider.value); this.showStep(); } });
    this.stepLabel = el("span", { class: "muted", id: "step-label" });
    this.playBtn = el("button", { id: "play", onclick: () => this.togglePlay() }, "▶ play");
    const fitBtn = el("button", { id: "fit", title: "zoom to the selected image (or all images)", onclick: () => this.map.fit() }, "⤢ fit");
    const splitSel = splits.length > 1 ? el("select", { onchange: ev => {
      this.split = ev.target.value; this.index = this.stepList().length - 1; this.showStep(); } },
      splits.map(s => el("option", { value: s, selected: s === this.split }, s))) : null;
    this.strip = el("div", { class: "strip" });
    this.explainer = new Explainer(this);  // explain.js: the reward kernel, base vs current policy
    this.detail = el("div", { class: "side detail" }, el("p", { class: "muted" }, "Click an image (a green diamond or a photo) to see its rollouts."));
    this.node.replaceChildren(this.head, this.withCharts ? this.chartsNode : "",
      el("div", { class: "mapwrap" },
        el("div", {}, el("div", { class: "maptools" }, this.playBtn, fitBtn, this.slider, this.stepLabel, splitSel),
          this.map.node, el("p", { class: "muted" }, "◆ truth, ● final guesses (colour = reward, red low → green high), lines = great circles. Wheel to zoom, drag to pan, double-click to reset, ⤢ to fit."),
          this.strip),
        this.detail), this.withCharts ? this.explainer.node : "");  // the run page, not compare
    this.drawHead(); this.drawCharts();
  }
  drawHead() {
    const env = envLabel(this.setup);
    this.head.replaceChildren(el("h2", {}, this.name), el("span", { class: "muted" }, this.kind || ""),
      el("span", { class: "muted", id: "run-env", title: env.title }, env.text),
      el("span", { class: "badge " + this.status, id: "run-status" }, this.status),
      // training steps: the eval before training (step 0) logs only eval/ metrics
      this.stepsCount(),
      el("span", { class: "muted", id: "image-steps", title: "steps whose rollouts were kept for the map (the slider's steps): "
        + "training steps (train) and held-out evals (eval)" }, plural(this.imageSteps.length, "image step")));
  }
  stepsCount() {
    const trained = this.steps.filter(s => Object.keys(s.metrics).some(k => !k.startsWith("eval/")));
    const idle = trained.filter(s => s.metrics.datums === 0).length;
    return el("span", { class: "muted", id: "steps-count", title: idle ? IDLE_TITLE : "" },
      plural(trained.length, "step") + idleText(trained.length, idle));
  }
  currentStep() { const l = this.stepList(); return l.length ? l[Math.max(0, Math.min(this.index, l.length - 1))] : null; }
  drawCharts() {
    if (this.withCharts) drawCharts(this.chartsNode, [{ name: this.name, steps: this.steps }], this.currentStep());
    if (this.onChange) this.onChange();
  }
  async fetchStep(step) {
    const key = `${this.split}:${step}`;
    if (!this.cache.has(key)) this.cache.set(key, getJSON(`/api/images?run=${enc(this.name)}&step=${step}&split=${enc(this.split)}`));
    return (await this.cache.get(key)).images;
  }
  async showStep() {
    const list = this.stepList();
    this.slider.max = Math.max(0, list.length - 1);
    this.slider.value = Math.max(0, this.index);
    const step = this.currentStep();
    if (step === null) { this.stepLabel.textContent = "no images recorded yet"; this.map.setImages([]); return; }
    this.stepLabel.textContent = `step ${step} (${this.index + 1}/${list.length})`;
    this.stepLabel.setAttribute("data-step", step);
    const images = await this.fetchStep(step);
    if (step !== this.currentStep()) return;  // the slider moved on meanwhile
    this.images = images;
    this.map.setImages(images);
    this.drawStrip();
    if (this.picked) this.pick(this.picked, false);
    this.explain();
    if (this.withCharts) moveChartCursor(this.chartsNode, step);  // the metrics did not change: only the cursor
  }
  drawStrip() {
    this.strip.replaceChildren(...this.images.map(im => {
      const n = im.rollouts.length, missed = im.rollouts.filter(r => r.distance_km === null).length;
      const med = medianKm(im.rollouts);
      const title = `median distance of the ${plural(n, "rollout")}' final answers. As in the eval metrics, an unparsed `
        + "answer counts as a miss at infinite distance (and an even count takes the mean of the two middle "
        + "distances), so the median is ∞ once half or more are unparsed";
      return el("div", { class: "card" + (im.image_id === this.picked ? " sel" : ""), "data-image": im.image_id, onclick: () => this.pick(im.image_id) },
        im.has_thumb ? el("img", { src: `/api/thumb?run=${enc(this.name)}&id=${enc(im.image_id)}`, alt: im.image_id, loading: "lazy" })
          : el("div", { class: "noimg" }),
        el("div", {}, im.image_id),
        el("div", { class: "muted median", title }, med === Infinity ? "median ∞ km" : `median ${fmt(med)} km`),
        missed ? el("div", { class: "muted unparsed", title }, `${missed} of ${n} unparsed`) : "");
    }));
  }
  pick(id, redraw = true) {
    this.picked = id;
    const im = (this.images || []).find(i => i.image_id === id);
    if (redraw) { this.map.select(id); this.drawStrip(); this.explain(); } else this.map.select(im ? id : null);
    if (!im) { this.detail.replaceChildren(el("p", { class: "muted" }, `${id} is not recorded at this step.`)); return; }
    const lab = Object.entries(im.labels || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
    const layouts = this.env.layouts;
    this.detail.replaceChildren(
      el("h3", {}, `image ${im.image_id}`),
      im.has_thumb ? el("img", { src: `/api/thumb?run=${enc(this.name)}&id=${enc(im.image_id)}`, alt: im.image_id }) : "",
      el("p", {}, `truth ${fmt(im.lat, 5)}, ${fmt(im.lon, 5)}`, lab ? el("br") : "", lab),
      ...im.rollouts.map(ro => el("div", { class: "rollout" },
        el("div", {}, el("b", {}, `#${ro.idx}`),  // held-out evals pay no reward: distance only
          `  ${ro.reward === null ? "" : `reward ${fmt(ro.reward)} · `}${ro.distance_km === null ? "final answer unparsed" : `${fmt(ro.distance_km)} km`}`),
        ro.guesses.length > 1 ? el("div", { class: "turns" }, turnSpans(layouts, ro, im.labels)) : "",
        el("pre", { class: "text" }, ro.text))));
  }
  togglePlay() {
    if (this.timer) { clearInterval(this.timer); this.timer = null; this.playBtn.textContent = "▶ play"; return; }
    if (this.index >= this.stepList().length - 1) this.index = -1;
    this.playBtn.textContent = "⏸ pause";
    this.timer = setInterval(() => {
      if (this.index >= this.stepList().length - 1) return this.togglePlay();
      this.index += 1; this.showStep();
    }, 700);
    onLeave(() => clearInterval(this.timer));
  }
  subscribe() {
    const es = new EventSource(`/api/events?run=${enc(this.name)}&since=${this.seq}`);
    onLeave(() => es.close());
    es.onopen = () => this.showLive();
    es.onerror = () => setLive("reconnecting…");
    es.addEventListener("step", ev => {
      const s = JSON.parse(ev.data), i = this.steps.findIndex(x => x.step === s.step);
      if (i >= 0) this.steps[i] = s; else { this.steps.push(s); this.steps.sort((a, b) => a.step - b.step); }
      this.drawHead(); this.drawCharts(); this.explain();
    });
    es.addEventListener("images", ev => {
      const s = JSON.parse(ev.data);
      this.cache.delete(`${s.split}:${s.step}`);
      const following = this.index >= this.stepList().length - 1 && !this.timer;  // at the end: follow live
      if (!this.imageSteps.some(x => x.step === s.step && x.split === s.split)) {
        this.imageSteps.push(s); this.imageSteps.sort((a, b) => a.step - b.step);
      }
      if (following) this.index = this.stepList().length - 1;
      this.drawHead(); this.showStep();
    });
    es.addEventListener("status", ev => { this.status = JSON.parse(ev.data).status; this.drawHead(); this.showLive(); });
    // A killed run writes nothing: ask the server (which checks the writer's pid / heartbeat)
    // while the run claims to be running.
    const poll = setInterval(async () => {
      if (this.status !== "running") return;
      try { this.status = (await getJSON(`/api/status?run=${enc(this.name)}`)).status; } catch (e) { return; }
      if (this.status !== "running") { this.drawHead(); this.showLive(); }
    }, 5000);
    onLeave(() => clearInterval(poll));
  }
  explain() { if (this.withCharts) this.explainer.draw().catch(e => this.explainer.node.replaceChildren(el("p", { class: "error" }, String(e)))); }
  showLive() {
    if (this.onLive) this.onLive();
    else setLive(this.status === "running" ? "live" : this.status || "not live");
  }
}

async function renderRun(name) {
  document.getElementById("crumbs").textContent = `runs / ${name}`;
  const view = new RunView(name);
  $main.replaceChildren(view.node);
  await view.load();
}

async function renderCompare(a, b) {
  document.getElementById("crumbs").textContent = `compare ${a} ↔ ${b}`;
  const charts = el("div", { class: "charts", id: "compare-charts" });
  let views = [];
  const redraw = () => { if (views.length === 2 && views.every(v => v.steps)) drawCharts(charts, views, null); };
  // One badge for two runs: "live" while either trains (its stream open), else both statuses
  // ("done", or "done / stopped"), never only the one that loaded last.
  const live = () => {
    const st = views.map(v => v.status);
    setLive(st.includes("running") ? "live" : st.every(x => x === st[0]) ? st[0] || "not live" : st.join(" / "));
  };
  views = [a, b].map(n => new RunView(n, { charts: false, onChange: redraw, onLive: live }));
  $main.replaceChildren(el("h2", {}, "Compare"), charts, el("div", { class: "compare" }, views.map(v => v.node)));
  await Promise.all(views.map(v => v.load()));
  redraw();
}

// ---- router ----------------------------------------------------------------------------------
async function route() {
  leave();
  setLive("not live");
  // A hand-typed or truncated hash (`#/run/%E0%A4%A`) must not throw: undecodable parts stay as typed.
  const decode = s => { try { return decodeURIComponent(s); } catch (e) { return s; } };
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decode);
  try {
    if (parts[0] === "run" && parts[1]) await renderRun(parts.slice(1).join("/"));
    else if (parts[0] === "compare" && parts.length >= 3) await renderCompare(parts[1], parts[2]);
    else await renderList();
  } catch (e) {
    // a run page opened before its run has written anything: say so and look again until it has
    const waiting = parts[0] === "run" && /HTTP 404/.test(String(e));
    $main.replaceChildren(el("p", { class: "error", id: "route-error" }, waiting
      ? `no run named ${parts.slice(1).join("/")} in this runs folder yet: looking again every 2 s` : String(e)));
    if (waiting) { const t = setTimeout(route, 2000); onLeave(() => clearTimeout(t)); }
  }
}
window.addEventListener("hashchange", route);
route();
