"""`geospot predict --map out.html`: a self-contained, offline HTML map of predictions.

One inline SVG in an equirectangular projection (x = lon + 180, y = 90 - lat on a 360x180
viewBox): country outlines from the dashboard's packaged Natural Earth file when it is
installed, else a plain 30° lat/lon grid; one dot per prediction (hover: the image, the
coordinates, the place), telescoping turns joined by a thin line, then a table. No
scripts, no CDN, no fetch: the file opens anywhere, also offline."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

WORLD_FILE = Path(__file__).resolve().parent.parent / "dashboard" / "static" / "world-110m.json"


def _xy(lat: float, lon: float) -> tuple[float, float]:
    return lon + 180.0, 90.0 - lat


def country_paths(world_file: Path = WORLD_FILE) -> list[str]:
    """SVG path data per country ring ([] when the outline file is not installed)."""
    if not world_file.exists():
        return []
    try:
        world = json.loads(world_file.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    paths = []
    for country in world.get("countries", []):
        for flat in country.get("rings", []):
            pts = [_xy(flat[i + 1], flat[i]) for i in range(0, len(flat) - 1, 2)]
            if len(pts) >= 3:
                paths.append("M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in pts) + "Z")
    return paths


def _grid() -> str:
    lines = [f'<line x1="{lon + 180}" y1="0" x2="{lon + 180}" y2="180"/>' for lon in range(-150, 180, 30)]
    lines += [f'<line x1="0" y1="{90 - lat}" x2="360" y2="{90 - lat}"/>' for lat in range(-60, 90, 30)]
    return '<g class="grid">' + "".join(lines) + "</g>"


def render_map(rows: Sequence[dict], title: str = "geospot predictions", world_file: Path = WORLD_FILE) -> str:
    """`rows`: dicts with name, latitude, longitude (NaN = unparsed), place, raw_text and
    optionally turns: [(lat, lon) | None, ...], and photo_gps: (lat, lon) | None with km_from_gps
    (a geotagged photo: its true place is drawn, joined to the guess)."""
    paths = country_paths(world_file)
    land = (
        '<g class="land">' + "".join(f'<path d="{d}"/>' for d in paths) + "</g>" if paths else ""
    )
    dots, trails = [], []
    for i, r in enumerate(rows):
        lat, lon = float(r["latitude"]), float(r["longitude"])
        turns = [t for t in r.get("turns") or () if t is not None]
        if len(turns) > 1:
            pts = " ".join("{:.2f},{:.2f}".format(*_xy(a, b)) for a, b in turns)
            trails.append(f'<polyline class="trail" points="{pts}"/>')
        truth = r.get("photo_gps")
        if truth is not None:
            tx, ty = _xy(*truth)
            tip = html.escape(f"{r['name']}: the photo's GPS {truth[0]:.4f}, {truth[1]:.4f}")
            dots.append(f'<rect class="truth" x="{tx - 1.2:.2f}" y="{ty - 1.2:.2f}" width="2.4" height="2.4">'
                        f'<title>{tip}</title></rect>')
            # the joining line is straight on this flat map: drawn only where it does not cross the
            # antimeridian (there it would run the wrong way round the world)
            if not (math.isnan(lat) or math.isnan(lon)) and abs(lon - truth[1]) <= 180:
                trails.append('<line class="miss" x1="{:.2f}" y1="{:.2f}" x2="{:.2f}" y2="{:.2f}"/>'.format(
                    *_xy(lat, lon), tx, ty))
        if math.isnan(lat) or math.isnan(lon):
            continue
        x, y = _xy(lat, lon)
        tip = html.escape(f"{r['name']}: {lat:.4f}, {lon:.4f} {r.get('place', '')}")
        dots.append(f'<circle cx="{x:.2f}" cy="{y:.2f}" r="1.6"><title>{tip}</title></circle>'
                    f'<text x="{x + 2.2:.2f}" y="{y + 1:.2f}">{i + 1}</text>')
    geotagged = any(r.get("photo_gps") is not None for r in rows)

    def km(r: dict) -> str:
        return "" if not geotagged else "<td>{}</td>".format(
            "-" if r.get("km_from_gps") is None else f"{r['km_from_gps']:,.0f}")

    table = "".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}<td><pre>{}</pre></td></tr>".format(
            i + 1,
            html.escape(str(r["name"])),
            "-" if math.isnan(float(r["latitude"])) else f"{float(r['latitude']):.4f}",
            "-" if math.isnan(float(r["longitude"])) else f"{float(r['longitude']):.4f}",
            html.escape(r.get("place", "")),
            km(r),
            html.escape(r.get("raw_text", "")),
        )
        for i, r in enumerate(rows)
    )
    located = sum(not math.isnan(float(r["latitude"])) for r in rows)
    km_head = "<th>km from the photo's GPS</th>" if geotagged else ""
    legend = (" Red dots: the answers; green squares: where the photos' GPS says they were taken, joined to "
              "the answer." if geotagged else "")
    outline_note = ("Country outlines: Natural Earth (public domain)." if paths
                    else "Plain lat/lon grid (country outlines not installed).")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}}
svg{{width:100%;max-width:1100px;background:#dbe9f4;border:1px solid #9ab}}
.land path{{fill:#f4f1e8;stroke:#9a9a8a;stroke-width:.15}}
.grid line{{stroke:#9ab;stroke-width:.15}}
circle{{fill:#d62728;stroke:#fff;stroke-width:.4}}
text{{font-size:3px;fill:#222}}
.trail{{fill:none;stroke:#555;stroke-width:.3;stroke-dasharray:1 .6}}
.truth{{fill:#2ca02c;stroke:#fff;stroke-width:.3}}
.miss{{stroke:#2ca02c;stroke-width:.3}}
table{{border-collapse:collapse;margin-top:1em}}td,th{{border:1px solid #ccc;padding:3px 8px;vertical-align:top}}
pre{{margin:0;font-size:12px;white-space:pre-wrap}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<svg viewBox="0 0 360 180" preserveAspectRatio="xMidYMid meet" overflow="hidden" xmlns="http://www.w3.org/2000/svg">
<rect width="360" height="180" fill="#dbe9f4"/>{land}{_grid()}{''.join(trails)}{''.join(dots)}
</svg>
<p>{located} of {len(rows)} image{'' if len(rows) == 1 else 's'} located.{legend} {outline_note}</p>
<table><tr><th>#</th><th>image</th><th>latitude</th><th>longitude</th><th>place</th>{km_head}<th>answer</th></tr>{table}</table>
</body></html>
"""
