// geospot dashboard: the world map of an image's guesses, drawn by app.js's run page.
// A classic script sharing the page's globals: el() and svg() are app.js's, geo.js's world() and the rest its own.
"use strict";

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
