// geospot dashboard — explainers under a run's map: the reward kernel exp(−d/τ) around one
// image's truth at the run's current τ, and the base vs current policy's guesses for that image
// (the first held-out eval's records beside the latest's). Uses app.js's el/svg/getJSON/fmt and
// geo.js's world/kmCircle/greatCircle/linePaths; all run data enters through textContent.
"use strict";

const KERNEL_KM = [5000, 750, 100, 25, 1];
const TAU_RE = /(^|[\/_])tau(_km)?$/i;

// The latest logged τ (km) and its step, or null when the run logs none (its reward has no τ).
function latestTau(steps) {
  for (let i = steps.length - 1; i >= 0; i--) {
    const m = steps[i].metrics || {};
    const key = Object.keys(m).filter(k => TAU_RE.test(k) && Number.isFinite(m[k]) && m[k] > 0).sort()[0];
    if (key) return { tau: m[key], step: steps[i].step, key };
  }
  return null;
}

const kernel = (d, tau) => Math.exp(-d / tau);

// x compression of a local map at `lat`: degrees of longitude are cos(lat) as long as latitude's.
const squash = lat => Math.max(0.2, Math.cos(lat * RAD));

// A small map centred on (lat, lon) showing `radiusKm` around it: the world's outlines plus
// `layers` (in lon/lat degrees), x scaled by cos(lat) so that circles around the truth look round.
async function zoomMap(lat, lon, radiusKm, layers, cls = "", aspect = 1.5) {
  const w = await world(), c = squash(lat);
  const hh = Math.min(90, Math.max(0.004, radiusKm / 111.2));  // half height, degrees of latitude
  const hw = Math.min(180 * c, hh * aspect);
  const node = svg("svg", { class: "minimap " + cls, viewBox: `${c * lon - hw} ${-lat - hh} ${2 * hw} ${2 * hh}`,
    preserveAspectRatio: "xMidYMid slice" });
  const geo = svg("g", { transform: `scale(${c} 1)` });
  for (const ctry of w.countries)
    geo.appendChild(svg("path", { class: "land", d: ctry.rings.map(r => shifts(r.filter((_, i) => i % 2 === 0))
      .map(s => ringPath(r, s)).join("")).join("") }));
  geo.append(...layers);
  // a diamond at the truth, outside the squashed group so it stays square
  const u = hh / 30;
  node.append(geo, svg("rect", { class: "mtruth", x: c * lon - u, y: -lat - u, width: 2 * u, height: 2 * u,
    transform: `rotate(45 ${c * lon} ${-lat})` }));
  return node;
}

const ringD = (lat, lon, km) => { const pts = kmCircle(lat, lon, km);
  return shifts(pts.map(p => p[0])).map(s => pts.map((p, i) => (i ? "L" : "M") + (p[0] + s).toFixed(5) + " "
    + (-p[1]).toFixed(5)).join("") + "Z").join(""); };

// One panel per distance: the kernel's value as bands of colour out to 1.4 d, the ring at d.
async function kernelPanel(lat, lon, d, tau) {
  const bands = [];
  const R = d * 1.4, N = 14;
  for (let i = N; i >= 1; i--) {
    const r = R * i / N;
    bands.push(svg("path", { class: "band", d: ringD(lat, lon, r), fill: rewardColor(kernel(r - R / N / 2, tau), 0, 1) }));
  }
  const ring = svg("path", { class: "ring", d: ringD(lat, lon, d) });
  const map = await zoomMap(lat, lon, R, [...bands, ring], "square", 1);
  const v = kernel(d, tau);
  return el("figure", { class: "kpanel", "data-km": d },
    map, el("figcaption", {}, el("b", {}, `${d} km`), " → ", el("span", { class: "kval", "data-value": v.toFixed(6) },
      v >= 0.001 ? v.toFixed(3) : v.toExponential(1))));
}

// The GeoGuessr score / 5000 is itself exp(−d/1492.7 km): a fixed τ (envs/rewards.py GeoScoreReward).
const GEOSCORE_TAU_KM = 1492.7;

// envView: what the server says of the run's rewards (/api/run's env, dashboard/env_view.py):
// reward = env_type's {env, name (reward=auto resolved), tau (exp(−d/τ) at the logged τ), kernel (a
// kernel of the distance: one can draw it), text (what a turn earns beyond that)}; mix = the same for
// the mix_env_type playing a share of each batch (its `share`), or null. A mixed run's τ-kernel is
// drawn where it logs τ (the curriculum is the picture to see), the other env's reward said in words.
// A run whose env the server does not know is drawn as single-turn's τ-kernel.
const UNKNOWN_REWARD = { env: "?", name: "kernel", tau: true, kernel: true, text: "" };

// one env's reward in a sentence, for the share of each batch's images that play it
function paidSentence(r, share, tauInfo) {
  const who = typeof share === "number" ? `${Math.round(share * 100)}% of each batch's images` : "A share of each batch's images";
  const paid = r.name === "own" ? "its own reward" : r.name.includes(":") ? `by your ${r.name}`
    : !r.kernel ? "per turn" : r.tau
    ? `exp(−d/τ)${tauInfo ? ` (τ = ${fmt(tauInfo.tau, 4)} km now)` : ""}` : "GeoScore / 5000";
  return ` ${who} play ${r.env}, paid ${paid}.${r.text ? ` ${r.text}` : ""}`;
}

async function kernelExplainer(im, tauInfo, envView, kind = null) {
  const box = el("div", { class: "explainer", id: "kernel-explainer" });
  if (kind === "sft") {
    box.append(el("h3", {}, "reward kernel"), el("p", { class: "muted" },
      "An SFT run has no reward: it learns the answer's tokens (cross-entropy). GRPO runs show their reward here."));
    return box;
  }
  // the run's envs, each with the share of each batch's images it plays (a mixed run has two)
  const main = (envView && envView.reward) || UNKNOWN_REWARD, mix = envView && envView.mix;
  const played = mix ? [{ ...main, share: typeof mix.share === "number" ? 1 - mix.share : null }, mix] : [main];
  // the one drawn: a τ-kernel at the logged τ (the curriculum's picture), else GeoScore's fixed kernel
  const drawn = (tauInfo && played.find(r => r.kernel && r.tau)) || played.find(r => r.kernel && !r.tau && r.name === "geoscore");
  const others = played.filter(r => r !== drawn).map(r => mix ? paidSentence(r, r.share, tauInfo) : "").join("");
  if (!drawn) {
    box.append(el("h3", {}, "reward kernel"), el("p", { class: "muted" }, (!main.kernel
      ? `This run's reward (env_type=${main.env}${main.name.includes(":") ? `, reward=${main.name}` : ""}) is not a `
        + `kernel of the distance, so there is none to draw. ${main.text}`
      : "This run logs no τ (tau_km) yet: its reward is the distance kernel exp(−d/τ), drawn once it does.")
      + (mix ? others : "")));
    return box;
  }
  const tau = drawn.tau ? tauInfo.tau : GEOSCORE_TAU_KM;
  const who = mix ? ` ${Math.round((drawn.share || 0) * 100)}% of each batch's images play ${drawn.env}, paid this.` : "";
  box.append(drawn.tau
    ? el("h3", {}, `reward kernel exp(−d/τ) around image ${im.image_id}'s truth, τ = ${fmt(tau, 4)} km (step ${tauInfo.step})`)
    : el("h3", {}, `reward S(d) = GeoScore / 5000 = exp(−d/${tau} km) around image ${im.image_id}'s truth (fixed)`),
  el("p", { class: "muted" }, (drawn.tau ? "A guess d km from the truth earns exp(−d/τ): " : "A guess d km from the truth scores S(d): ")
      + "the colour of its band (red 0 → green 1). "
      + "A small τ pays only near-exact guesses; a large τ still separates guesses thousands of km off."
      + who + (drawn.text ? ` ${drawn.text}` : "") + others));
  const panels = await Promise.all(KERNEL_KM.map(d => kernelPanel(im.lat, im.lon, d, tau)));
  box.append(el("div", { class: "kpanels" }, panels), kernelCurve(tau));
  return box;
}

// exp(−d/τ) against d on a log axis (1 km … 20 000 km), the five distances marked.
function kernelCurve(tau) {
  const W = 600, H = 120, L = 34, R = 8, T = 8, B = 20, lo = 0, hi = Math.log10(20000);
  const x = d => L + (Math.log10(Math.max(d, 1)) - lo) / (hi - lo) * (W - L - R), y = v => T + (1 - v) * (H - T - B);
  const pts = [];
  for (let i = 0; i <= 120; i++) { const d = 10 ** (lo + (hi - lo) * i / 120); pts.push(`${i ? "L" : "M"}${x(d).toFixed(1)} ${y(kernel(d, tau)).toFixed(1)}`); }
  const kids = [svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    svg("line", { class: "taumark", x1: x(tau), y1: T, x2: x(tau), y2: H - B }),
    svg("text", { class: "tick", x: x(tau) + 3, y: T + 9 }, `τ = ${fmt(tau, 4)} km`),
    svg("path", { class: "kcurve", d: pts.join("") })];
  for (const v of [0, 0.5, 1]) kids.push(svg("text", { class: "tick", x: L - 4, y: y(v) + 3, "text-anchor": "end" }, String(v)));
  for (const d of [1, 10, 100, 1000, 10000])
    kids.push(svg("text", { class: "tick", x: x(d), y: H - 6, "text-anchor": "middle" }, `${d >= 1000 ? d / 1000 + "k" : d} km`));
  for (const d of KERNEL_KM)
    kids.push(svg("circle", { class: "kpt", cx: x(d), cy: y(kernel(d, tau)), r: 3.5, fill: rewardColor(kernel(d, tau), 0, 1) }));
  return svg("svg", { class: "kcurvebox", viewBox: `0 0 ${W} ${H}` }, ...kids);
}

// One policy's guesses for the image: great circles from the truth, dots coloured by reward.
async function policyPanel(title, step, im, tau, cls) {
  const guesses = im.rollouts.map(ro => ({ g: finalGuess(ro), ro })).filter(x => x.g)
    .map(x => ({ ...x, d: haversineKm(im.lat, im.lon, x.g[0], x.g[1]) }));
  const far = Math.max(50, ...guesses.map(x => x.d)) * 1.25;
  const u = Math.min(90, far / 111.2) / 40;
  const score = d => tau ? kernel(d, tau) : null;
  const layers = [];
  for (const x of guesses) {
    layers.push(...linePaths(greatCircle(im.lat, im.lon, x.g[0], x.g[1]), "mgc"));
    const c = svg("ellipse", { class: "mguess", cx: x.g[1], cy: -x.g[0], rx: u / squash(im.lat), ry: u,
      fill: tau ? rewardColor(score(x.d), 0, 1) : "var(--guess)" });
    c.appendChild(svg("title", {}, `${fmt(x.d)} km`));
    layers.push(c);
  }
  const map = await zoomMap(im.lat, im.lon, far, layers, cls);
  // the median as the tiles and the eval metrics count it: an unparsed answer is a miss at ∞ (app.js medianKm)
  const med = medianKm(im.rollouts);
  const missed = im.rollouts.length - guesses.length;
  const n = im.rollouts.length;
  return el("figure", { class: "policy " + cls, "data-step": step },
    el("h4", {}, `${title} · step ${step}`), map,
    el("figcaption", { class: "median" }, `median ${med === Infinity ? "∞" : fmt(med)} km over ${n} answer${n === 1 ? "" : "s"}`
      + (missed ? ` (${missed} unparsed: misses at ∞)` : "")
      + (tau && med !== null && med !== Infinity ? ` · exp(−d/τ) ${fmt(score(med))}` : "")),
    el("ol", { class: "guesslist" }, guesses.map(x => el("li", {},
      `(${fmt(x.g[0], 3)}, ${fmt(x.g[1], 3)}) ${fmt(x.d)} km` + (tau ? ` · r ${fmt(score(x.d))}` : "")))));
}

// The explainers of a RunView; redrawn when the picked image, τ or the eval steps change.
class Explainer {
  constructor(view) {
    this.view = view; this.cache = new Map(); this.key = null;
    this.node = el("section", { class: "explain", id: "explain" });
  }
  async evalImages(step) {
    if (!this.cache.has(step))
      this.cache.set(step, getJSON(`/api/images?run=${enc(this.view.name)}&step=${step}&split=eval`));
    return (await this.cache.get(step)).images;
  }
  async draw() {
    const v = this.view, tauInfo = latestTau(v.steps || []);
    const evalSteps = [...new Set(v.imageSteps.filter(s => s.split === "eval").map(s => s.step))].sort((a, b) => a - b);
    const [base, cur] = [evalSteps[0], evalSteps[evalSteps.length - 1]];
    const shown = (v.images || []).find(i => i.image_id === v.picked) || (v.images || [])[0] || null;
    const key = JSON.stringify([tauInfo && tauInfo.tau, base, cur, v.picked, shown && shown.image_id]);
    if (key === this.key) return;
    this.key = key;
    const [baseIms, curIms] = evalSteps.length ? await Promise.all([this.evalImages(base), this.evalImages(cur)]) : [[], []];
    const id = v.picked || (shown && shown.image_id);
    const inBoth = curIms.find(i => i.image_id === id && baseIms.some(b => b.image_id === id))
      || curIms.find(i => baseIms.some(b => b.image_id === i.image_id));
    const im = inBoth || shown;
    if (key !== this.key) return;  // a newer draw started meanwhile
    if (!im) { this.node.replaceChildren(); return; }
    // the kernel around the picked image's truth (a training image too); the policies need a held-out one
    const parts = [await kernelExplainer(shown || im, tauInfo, v.env, v.kind)];
    const box = el("div", { class: "explainer", id: "policy-explainer" });
    if (inBoth && base !== cur) {
      const tau = tauInfo && tauInfo.tau, b = baseIms.find(i => i.image_id === inBoth.image_id);
      box.append(el("h3", {}, `base vs current policy on held-out image ${inBoth.image_id} (first eval vs latest)`),
        el("div", { class: "policies" }, await policyPanel("base", base, b, tau, "base"),
          await policyPanel("current", cur, inBoth, tau, "current")));
    } else {
      box.append(el("h3", {}, "base vs current policy"), el("p", { class: "muted" },
        "Needs two held-out evals that share an image (eval_every): the first is the base policy, the latest the current."));
    }
    parts.push(box);
    if (key === this.key) this.node.replaceChildren(...parts);
  }
}
