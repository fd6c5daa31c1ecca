// geospot dashboard: the metric charts (SVG line charts, one per metric group), drawn by app.js.
// A classic script sharing the page's globals: el() and svg() are app.js's, called only once every script has loaded.
"use strict";

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
