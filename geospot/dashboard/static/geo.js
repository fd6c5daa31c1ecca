// geospot dashboard — the map's geometry: the world outlines, rings and great circles that may
// run past ±180°, destination circles. Classic script: app.js and explain.js share its names.
"use strict";

let WORLD = null;
async function world() {
  if (!WORLD) WORLD = await getJSON("/static/world-110m.json");
  return WORLD;
}

function ringPath(flat, shift) {
  let d = "";
  for (let i = 0; i < flat.length; i += 2) d += (i ? "L" : "M") + (flat[i] + shift).toFixed(1) + " " + (-flat[i + 1]).toFixed(1);
  return d + "Z";
}

// Rings and great circles may run past ±180° (drawn continuous); draw them again shifted a turn.
function shifts(lons) {
  const out = [0];
  if (Math.max(...lons) > 180) out.push(-360);
  if (Math.min(...lons) < -180) out.push(360);
  return out;
}

const RAD = Math.PI / 180;
function greatCircle(lat1, lon1, lat2, lon2, n = 24) {
  const v = (la, lo) => [Math.cos(la * RAD) * Math.cos(lo * RAD), Math.cos(la * RAD) * Math.sin(lo * RAD), Math.sin(la * RAD)];
  const a = v(lat1, lon1), b = v(lat2, lon2);
  const dot = Math.min(1, Math.max(-1, a[0] * b[0] + a[1] * b[1] + a[2] * b[2]));
  const om = Math.acos(dot);
  const pts = [];
  let prevLon = lon1;
  for (let i = 0; i <= n; i++) {
    const t = i / n;
    const [ka, kb] = om < 1e-9 ? [1 - t, t] : [Math.sin((1 - t) * om) / Math.sin(om), Math.sin(t * om) / Math.sin(om)];
    const p = [ka * a[0] + kb * b[0], ka * a[1] + kb * b[1], ka * a[2] + kb * b[2]];
    let lon = Math.atan2(p[1], p[0]) / RAD;
    lon += 360 * Math.round((prevLon - lon) / 360);  // stay continuous
    prevLon = lon;
    pts.push([lon, Math.atan2(p[2], Math.hypot(p[0], p[1])) / RAD]);
  }
  return pts;
}

function linePaths(pts, cls, extra) {
  return shifts(pts.map(p => p[0])).map(s => svg("path", { class: cls, ...extra,
    d: pts.map((p, i) => (i ? "L" : "M") + (p[0] + s).toFixed(3) + " " + (-p[1]).toFixed(3)).join("") }));
}

function rewardColor(r, lo, hi) {  // low reward red -> high reward yellow-green
  const t = hi > lo ? (r - lo) / (hi - lo) : 0.5;
  return `hsl(${Math.round(t * 110)}, 90%, 55%)`;
}

const finalGuess = ro => { for (let i = ro.guesses.length - 1; i >= 0; i--) if (ro.guesses[i]) return ro.guesses[i]; return null; };

const EARTH_KM = 6371.0;
// The small circle `km` from (lat, lon): n points, longitudes kept continuous (may pass ±180°).
function kmCircle(lat, lon, km, n = 72) {
  const d = km / EARTH_KM, la = lat * RAD, pts = [];
  let prev = lon;
  for (let i = 0; i <= n; i++) {
    const b = 2 * Math.PI * i / n;
    const la2 = Math.asin(Math.sin(la) * Math.cos(d) + Math.cos(la) * Math.sin(d) * Math.cos(b));
    let lo2 = lon + Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(la), Math.cos(d) - Math.sin(la) * Math.sin(la2)) / RAD;
    lo2 += 360 * Math.round((prev - lo2) / 360);
    prev = lo2;
    pts.push([lo2, la2 / RAD]);
  }
  return pts;
}

function haversineKm(lat1, lon1, lat2, lon2) {
  const a = Math.sin((lat2 - lat1) * RAD / 2) ** 2
    + Math.cos(lat1 * RAD) * Math.cos(lat2 * RAD) * Math.sin((lon2 - lon1) * RAD / 2) ** 2;
  return 2 * EARTH_KM * Math.asin(Math.sqrt(Math.min(1, a)));
}
