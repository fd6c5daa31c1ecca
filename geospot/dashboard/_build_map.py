"""Build `static/world-110m.json` (country outlines for the dashboard's map), run ONCE by a
maintainer; the output is committed as package data so the dashboard needs no download.

Source: the `world-atlas` npm package (countries-110m.json, TopoJSON), a redistribution of
Natural Earth's 1:110m Admin 0 country boundaries. Natural Earth is public domain
(https://www.naturalearthdata.com/about/terms-of-use/). Made with Natural Earth.

    cd /tmp && npm pack world-atlas && tar xzf world-atlas-*.tgz
    python -m geospot.dashboard._build_map /tmp/package/countries-110m.json

Output: {"source": ..., "countries": [{"name": str, "rings": [[lon, lat, lon, lat, ...], ...]}]}
(longitudes may run past ±180 where a ring crosses the antimeridian) with coordinates rounded to 0.1°
(finer than a 110m outline is anyway) — flat arrays keep the file small and the browser code trivial.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).parent / "static" / "world-110m.json"


def decode_arcs(topo: dict) -> list[list[tuple[float, float]]]:
    """TopoJSON arcs are delta-encoded integer positions on a quantized grid."""
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            pts.append((x * sx + tx, y * sy + ty))
        arcs.append(pts)
    return arcs


def ring(arcs: list[list[tuple[float, float]]], refs: list[int]) -> list[tuple[float, float]]:
    """A ring is a list of arc indexes; ~i means arc i reversed. Shared end points are dropped."""
    out: list[tuple[float, float]] = []
    for i in refs:
        pts = arcs[i] if i >= 0 else arcs[~i][::-1]
        out.extend(pts if not out else pts[1:])
    return out


def unwrap(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Make longitudes continuous across the antimeridian (Russia, Fiji run past 180°, the
    browser draws such rings twice, shifted by 360°, and clips to the map). A ring that
    circles a pole (Antarctica) does not close after unwrapping: close it along the pole."""
    out = [pts[0]]
    for lon, lat in pts[1:]:
        prev = out[-1][0]
        lon += 360 * round((prev - lon) / 360)
        out.append((lon, lat))
    if abs(out[-1][0] - out[0][0]) > 180:
        pole = -90.0 if sum(p[1] for p in out) < 0 else 90.0
        out += [(out[-1][0], pole), (out[0][0], pole)]
    return out


def simplify(pts: list[tuple[float, float]], step: float = 0.1) -> list[float]:
    """Round to `step` degrees and drop consecutive duplicates; flat [lon, lat, ...]."""
    flat: list[float] = []
    last = None
    for lon, lat in pts:
        p = (round(lon / step) * step, round(lat / step) * step)
        if p != last:
            flat += [round(p[0], 1), round(p[1], 1)]
            last = p
    return flat


def build(src: Path) -> dict:
    topo = json.loads(src.read_text())
    arcs = decode_arcs(topo)
    countries = []
    for geom in topo["objects"]["countries"]["geometries"]:
        polys = {"Polygon": [geom.get("arcs", [])], "MultiPolygon": geom.get("arcs", [])}.get(geom["type"], [])
        rings = [simplify(unwrap(ring(arcs, r))) for poly in polys for r in poly]
        rings = [r for r in rings if len(r) >= 6]  # at least a triangle
        if rings:
            countries.append({"name": geom.get("properties", {}).get("name", ""), "rings": rings})
    return {
        "source": "Natural Earth 1:110m Admin 0 countries (public domain) via world-atlas 2 (countries-110m.json)",
        "countries": countries,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    data = build(Path(argv[0]))
    OUT.write_text(json.dumps(data, separators=(",", ":")))
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB, {len(data['countries'])} countries)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
