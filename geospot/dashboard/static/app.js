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

const LIVE_REDRAW_MS = 2000;  // a live run's map and strip are redrawn at most this often (RunView.liveShow)
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
const PICK_HINT = () => el("p", { class: "muted" }, "Click an image (a green diamond or a photo) to see its rollouts.");
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
    Object.assign(this, { kind: d.kind, config: d.config, setup: d.setup || {}, env: d.env || { layouts: [], reward: null }, status: d.status, steps: d.steps, imageSteps: d.image_steps, seq: d.seq, generation: d.generation });
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
    this.detail = el("div", { class: "side detail" }, PICK_HINT());
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
    if (!this.cache.has(key)) {
      const asked = getJSON(`/api/images?run=${enc(this.name)}&step=${step}&split=${enc(this.split)}`);
      this.cache.set(key, asked);
      asked.catch(() => this.cache.delete(key));  // a failed fetch (server restarting) is asked again, not kept
    }
    return (await this.cache.get(key)).images;
  }
  // The slider and its label at the current index (no fetch, no redraw); the step shown, or null.
  drawPosition() {
    const list = this.stepList();
    this.slider.max = Math.max(0, list.length - 1);
    this.slider.value = Math.max(0, this.index);
    const step = this.currentStep();
    if (step === null) { this.stepLabel.textContent = "no images recorded yet"; return null; }
    this.stepLabel.textContent = `step ${step} (${this.index + 1}/${list.length})`;
    this.stepLabel.setAttribute("data-step", step);
    return step;
  }
  async showStep() {
    const step = this.drawPosition();
    if (step === null) { this.map.setImages([]); return; }
    const token = this.showToken = (this.showToken || 0) + 1;
    let images;
    try { images = await this.fetchStep(step); } catch (e) {  // the server away a moment: the next move asks again
      if (token === this.showToken) setLive(`step ${step} could not be loaded (${e.message || e})`);
      return;
    }
    // only a later showStep (slider, play, a live redraw) supersedes this one: dropping it whenever
    // live events moved the index left a fast run's map behind its label
    if (token !== this.showToken) return;
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
    if (redraw && !this.picked) this.heldLive = this.index >= this.stepList().length - 1 && !this.timer;
    this.picked = id;
    const im = (this.images || []).find(i => i.image_id === id);
    if (redraw) { this.map.select(id); this.drawStrip(); this.explain(); } else this.map.select(im ? id : null);
    // a picked image holds the map on its step while the run trains on (live following pauses): ✕ lets go
    const unpick = el("button", { class: "unpick", title: "let go of this image: follow the run live again", onclick: () => this.unpick() }, "✕");
    if (!im) { this.detail.replaceChildren(el("p", { class: "muted" }, `${id} is not recorded at this step. `, unpick)); return; }
    const lab = Object.entries(im.labels || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
    const layouts = this.env.layouts;
    this.detail.replaceChildren(
      el("h3", {}, `image ${im.image_id} `, unpick),
      im.has_thumb ? el("img", { src: `/api/thumb?run=${enc(this.name)}&id=${enc(im.image_id)}`, alt: im.image_id }) : "",
      el("p", {}, `truth ${fmt(im.lat, 5)}, ${fmt(im.lon, 5)}`, lab ? el("br") : "", lab),
      ...im.rollouts.map(ro => el("div", { class: "rollout" },
        el("div", {}, el("b", {}, `#${ro.idx}`),  // held-out evals pay no reward: distance only
          `  ${ro.reward === null ? "" : `reward ${fmt(ro.reward)} · `}${ro.distance_km === null ? "final answer unparsed" : `${fmt(ro.distance_km)} km`}`),
        ro.guesses.length > 1 ? el("div", { class: "turns" }, turnSpans(layouts, ro, im.labels)) : "",
        el("pre", { class: "text" }, ro.text))));
  }
  unpick() {
    this.picked = null;
    this.map.select(null); this.drawStrip(); this.explain();
    this.detail.replaceChildren(PICK_HINT());
    if (this.heldLive && !this.timer) { this.index = this.stepList().length - 1; this.liveShow(); }  // live again
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
  // A fast run (a tiny model: several steps a second) logs images faster than a page can show them:
  // redrawn on every event, the strip's thumbnails were replaced before they loaded. Live events
  // redraw at most once per LIVE_REDRAW_MS, the last one always.
  liveShow() {
    const wait = (this.lastLiveShow || 0) + LIVE_REDRAW_MS - Date.now();
    if (wait <= 0) { this.lastLiveShow = Date.now(); this.showStep(); return; }
    if (this.liveTimer) return;
    this.liveTimer = setTimeout(() => {
      this.liveTimer = null;
      if (this.index < this.stepList().length - 1) return;  // the reader left the live end meanwhile
      this.lastLiveShow = Date.now(); this.showStep();
    }, wait);
  }
  subscribe() {
    const es = new EventSource(`/api/events?run=${enc(this.name)}&since=${this.seq}&generation=${enc(this.generation)}`);
    onLeave(() => { es.close(); clearTimeout(this.liveTimer); });
    // the run was started afresh in its folder, or a resume dropped steps past its checkpoint: load it again
    es.addEventListener("reset", () => { es.close(); route(); });
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
      // at the end: follow live, unless an image is picked (the newest step holds other images)
      const following = this.index >= this.stepList().length - 1 && !this.timer && !this.picked;
      if (!this.imageSteps.some(x => x.step === s.step && x.split === s.split)) {
        this.imageSteps.push(s); this.imageSteps.sort((a, b) => a.step - b.step);
      }
      this.drawHead();
      // following the live end: the newest step, redrawn at most every LIVE_REDRAW_MS; a reader on an
      // earlier step (or playing) keeps it, only the slider's length grows
      if (following) { this.index = this.stepList().length - 1; this.liveShow(); }
      else if (s.step === this.currentStep() && s.split === this.split) this.showStep();  // more of what is shown
      else this.drawPosition();
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
