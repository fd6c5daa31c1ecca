"""A procedural, seeded world of street-view-like images: the workhorse of the learning
tests, the demo and the benchmarks (no downloads, ~1-2 ms per 224 px image on one core).

The world (fixed by `seed`)
  * A few "continents" (caps on the sphere). `n_regions` country centres are spread over
    them by farthest-point sampling; countries are the Voronoi cells of those centres (on
    the whole sphere, so any coordinate has a country).
  * Each country has `subregions` region centres and `cities` city points inside its cell.
    Region = nearest region centre of the point's country; city = nearest city of it.
  * Every name is procedural ("Valoria", "Kesh", ...). `world.geocoder(lats, lons)` gives
    these GeoLabels for any coordinate, so country/region/city accuracy of predictions can
    be measured exactly like reverse geocoding on the real Earth.

What an image shows (a deterministic function of the location, plus per-image jitter)
  * latitude (continuous): sky colour, light level, vegetation/ground colour (tropical
    green -> arid -> temperate -> boreal -> snow); hemisphere: the side the light comes
    from (sky brightens to the left in the north, to the right in the south).
  * country: road colour, centre-line colour and style (solid/dashed/double/none), edge
    lines, sign shape (circle/triangle/square/diamond), sign colours, driving side (the
    side the sign stands on), building palette, horizon height.
  * region (within the country): a 2x2 on/off pattern inside the sign (a unique code per
    region of that country) and a shift of the building tint.
  * city proximity: building height and density (urban gradient around each city).
  * per image: camera yaw (vanishing point), horizon jitter, brightness, colour jitter,
    sensor noise, sign position and size, building layout. Two samples never share pixels.

What a model can and cannot infer
  * CAN: |latitude| to within a band (sky/vegetation), the hemisphere (light side), the
    country exactly (road+sign+markings combination, unless `ambiguity` twins it), the
    region exactly from the sign pattern (when the sign is visible), and roughly how
    close to a city it is.
  * CANNOT: longitude except through the country/region identity; the position inside a
    region beyond "near/far from a city"; which city of a region it is near; anything
    when the sign is hidden (probability grows with `difficulty`) beyond the country.
    So the best possible error is roughly the spread of samples around a region centre
    (hundreds of km), never ~0 km: the world rewards coarse-to-fine reasoning, not
    memorising pixels.
  * `ambiguity > 0`: that fraction of countries is paired with a far-away "twin" (>= 5000
    km apart) and both render identically, including the latitude cues (the twin's
    latitude is shown) and the region patterns. A model can only say "one of the two";
    averaging their coordinates lands in neither (what issue 12 measures).

Images are painted at <= 112 px (RENDER_MAX) and nearest-upsampled for larger sizes: the cues
are coarse by design, and this keeps 224 px above 500 images/s on one core.

Difficulty (0..1) scales noise, colour jitter, the chance the sign is hidden and how far
country colours are pulled toward a common grey.

Samples: `world.sample(i)` is sample i of the world (id `synthetic-<seed>-<i>`), its
location drawn near a random city of a random country (uniform over countries), its
labels from the geocoder. Streams split indices into train/val/test by hashing the id,
so the held-out split is unseen images of the same world.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

from geospot.data.types import Sample
from geospot.geo import EARTH_RADIUS_KM, UNKNOWN, GeoLabels

EARTH_KM = EARTH_RADIUS_KM
RENDER_MAX = 112  # paint resolution cap (px); larger outputs are upsampled

_SYLLABLES = (
    "va lo ri ke sh an to mi ra del ur os ta ne bi ka zo lu mar en ga il ho pe qu "
    "sa tir vel dor fen gal hal jor kas lin mor nar pol rus sen tal ven wyr yas zan"
).split()


def _unit(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def _latlon(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.degrees(np.arcsin(np.clip(v[..., 2], -1, 1))), np.degrees(np.arctan2(v[..., 1], v[..., 0]))


def _random_sphere(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _farthest_points(rng: np.random.Generator, cand: np.ndarray, k: int) -> np.ndarray:
    """Indices of k candidates spread out (greedy farthest-point on the sphere)."""
    k = min(k, len(cand))
    chosen = [int(rng.integers(len(cand)))]
    best = cand @ cand[chosen[0]]  # max cosine to the chosen set (lower = farther)
    for _ in range(k - 1):
        i = int(np.argmin(best))
        chosen.append(i)
        best = np.maximum(best, cand @ cand[i])
    return np.array(chosen)


def _names(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    out = []
    while len(out) < n:
        name = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4)))).capitalize()
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


# |latitude| control points -> colours (RGB 0..255). Piecewise-linear in |lat|.
_LAT_PTS = np.array([0, 20, 32, 50, 62, 75, 90], np.float32)
_SKY_TOP = np.array([[30, 100, 215], [45, 115, 220], [70, 135, 215], [90, 140, 200],
                     [120, 150, 185], [165, 180, 200], [185, 195, 210]], np.float32)
_SKY_LOW = np.array([[160, 205, 240], [175, 210, 235], [205, 215, 220], [190, 210, 230],
                     [195, 205, 215], [215, 220, 228], [230, 235, 240]], np.float32)
_GROUND = np.array([[25, 115, 35], [70, 140, 50], [185, 165, 100], [80, 145, 60],
                    [50, 95, 60], [150, 150, 135], [232, 236, 242]], np.float32)
_LIGHT = np.array([1.08, 1.06, 1.04, 1.0, 0.9, 0.8, 0.72], np.float32)


def _interp_rows(x: float, table: np.ndarray) -> np.ndarray:
    j = min(int(np.searchsorted(_LAT_PTS, x, side="right")) - 1, len(_LAT_PTS) - 2)
    t = (x - _LAT_PTS[j]) / (_LAT_PTS[j + 1] - _LAT_PTS[j])
    return (table[j] * (1 - t) + table[j + 1] * t).astype(np.float32)


@dataclass(frozen=True)
class _Look:
    """Appearance parameters of one country (twins share one)."""

    road: np.ndarray  # (3,)
    marking: np.ndarray  # (3,)
    marking_style: int  # 0 none, 1 solid, 2 dashed, 3 double
    edge_lines: bool
    sign_shape: int  # 0 circle, 1 triangle, 2 square, 3 diamond
    sign_fill: np.ndarray
    sign_border: np.ndarray
    left_side: bool
    building: np.ndarray  # base building colour
    horizon: float
    app_lat: float  # the centre latitude the sky/vegetation shows
    aridity: float


class SyntheticWorld:
    """See the module docstring. All arrays are fixed by `seed`; rendering is vectorised."""

    def __init__(self, seed: int = 0, n_regions: int = 16, image_size: int = 112,
                 difficulty: float = 0.3, ambiguity: float = 0.0, subregions: int = 4,
                 cities: int = 6, continents: int = 6, spread_km: float | None = None):
        if n_regions < 1 or subregions < 1 or cities < 1:
            raise ValueError("SyntheticWorld: n_regions, subregions and cities must be >= 1")
        if not 0.0 <= difficulty <= 1.0 or not 0.0 <= ambiguity <= 1.0:
            raise ValueError("SyntheticWorld: difficulty and ambiguity must be in [0, 1]")
        self.seed, self.n_regions, self.image_size = int(seed), int(n_regions), int(image_size)
        self.difficulty, self.ambiguity = float(difficulty), float(ambiguity)
        rng = np.random.default_rng([self.seed, 7919])

        # Continents: spherical caps; land candidates are the sphere points inside one.
        cont_c = _unit(np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-50)), np.sin(np.radians(65)), continents))),
                       rng.uniform(-180, 180, continents))
        cont_r = rng.uniform(1500, 3500, continents) / EARTH_KM
        pts = _random_sphere(rng, 40000)
        land = (np.arccos(np.clip(pts @ cont_c.T, -1, 1)) < cont_r).any(1)
        self.land_pts = pts[land]

        # Countries: spread over land.
        self.centres = self.land_pts[_farthest_points(rng, self.land_pts, n_regions)]
        self.n_regions = nc = len(self.centres)
        owner = np.argmax(self.land_pts @ self.centres.T, 1)
        cell_km = float(np.sqrt(len(self.land_pts) / 40000 * 4 * np.pi * EARTH_KM**2 / nc))
        self.spread_km = spread_km if spread_km is not None else 0.18 * cell_km

        # Regions and cities inside each country's cell (on land where possible).
        self.sub = np.zeros((nc, subregions, 3))
        self.city = np.zeros((nc, cities, 3))
        for c in range(nc):
            cand = self.land_pts[owner == c]
            if len(cand) < max(subregions, cities):
                jitter = rng.normal(scale=20 / EARTH_KM, size=(max(subregions, cities) * 4, 3))
                extra = self.centres[c] + jitter
                cand = np.concatenate([cand, extra / np.linalg.norm(extra, axis=1, keepdims=True)])
            self.sub[c] = cand[_farthest_points(rng, cand, subregions)]
            self.city[c] = cand[rng.choice(len(cand), size=cities, replace=len(cand) < cities)]

        taken: set[str] = set()
        self.country_names = _names(rng, nc, taken)
        self.region_names = [[f"{n}" for n in _names(rng, subregions, taken)] for _ in range(nc)]
        self.city_names = [_names(rng, cities, taken) for _ in range(nc)]
        clat, _ = _latlon(self.centres)
        self.centre_lat = clat

        # Region codes: a distinct non-empty 2x2 pattern per region of a country.
        codes = rng.permutation(np.arange(1, 16))
        self.region_code = np.array([[(codes[k % 15] >> b) & 1 for b in range(4)] for k in range(subregions)], bool)
        self.region_tint = rng.uniform(-35, 35, size=(nc, subregions, 3)).astype(np.float32)

        looks = [self._make_look(rng, c) for c in range(nc)]
        # Twins: pair far-apart countries; the second copies the first's look entirely.
        self.twin = np.full(nc, -1)
        self.look_owner = np.arange(nc)  # whose look (and region tints) a country shows
        n_pairs = int(round(self.ambiguity * nc / 2))
        order = rng.permutation(nc)
        for a in order:
            if n_pairs == 0:
                break
            if self.twin[a] >= 0:
                continue
            d = np.arccos(np.clip(self.centres @ self.centres[a], -1, 1)) * EARTH_KM
            far = [b for b in np.argsort(-d) if b != a and self.twin[b] < 0 and d[b] >= 5000]
            if not far:
                continue
            b = int(far[0])
            self.twin[a], self.twin[b] = b, a
            looks[b] = looks[a]
            self.look_owner[b] = a
            n_pairs -= 1
        self.looks = looks
        self._noise: dict[int, np.ndarray] = {}

    # -- world ---------------------------------------------------------------------------

    def _make_look(self, rng: np.random.Generator, c: int) -> _Look:
        grey = rng.uniform(60, 150)
        tint = rng.uniform(-45, 45, 3)
        pull = 0.6 * self.difficulty  # harder worlds: country colours closer to grey
        road = np.clip(grey + tint * (1 - pull), 0, 255)
        return _Look(
            road=road.astype(np.float32),
            marking=np.array(
                [[245, 245, 240], [240, 200, 30], [235, 120, 40], [90, 200, 240]][int(rng.integers(4))], np.float32
            ),
            marking_style=int(rng.integers(4)),
            edge_lines=bool(rng.integers(2)),
            sign_shape=int(rng.integers(4)),
            sign_fill=(rng.uniform(0, 255, 3) * (1 - pull) + 128 * pull).astype(np.float32),
            sign_border=np.array(
                [[200, 20, 20], [20, 20, 20], [250, 250, 250], [20, 60, 200], [240, 190, 0]][int(rng.integers(5))],
                np.float32,
            ),
            left_side=bool(rng.integers(2)),
            building=rng.uniform(80, 220, 3).astype(np.float32),
            horizon=float(rng.uniform(0.36, 0.5)),
            app_lat=float(self.centre_lat[c]),
            aridity=float(rng.uniform(0, 1)),
        )

    def locate(self, lats, lons) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(country_idx, region_idx, city_idx, city_distance_km) for each coordinate."""
        v = _unit(np.atleast_1d(np.asarray(lats, np.float64)), np.atleast_1d(np.asarray(lons, np.float64)))
        c = np.argmax(v @ self.centres.T, 1)
        r = np.argmax(np.einsum("nd,nkd->nk", v, self.sub[c]), 1)
        cos_city = np.einsum("nd,nkd->nk", v, self.city[c])
        k = np.argmax(cos_city, 1)
        d = np.arccos(np.clip(cos_city[np.arange(len(v)), k], -1, 1)) * EARTH_KM
        return c, r, k, d

    def geocoder(self, lats, lons) -> list[GeoLabels]:
        """Synthetic GeoLabels for any coordinates (use as compute_metrics' geocoder)."""
        lats = np.atleast_1d(np.asarray(lats, np.float64))
        lons = np.atleast_1d(np.asarray(lons, np.float64))
        ok = np.isfinite(lats) & np.isfinite(lons)
        out = [UNKNOWN] * len(lats)
        if ok.any():
            c, r, k, _ = self.locate(lats[ok], lons[ok])
            for j, ci, ri, ki in zip(np.flatnonzero(ok), c, r, k):
                out[j] = GeoLabels(self.country_names[ci], self.region_names[ci][ri], self.city_names[ci][ki])
        return out

    def location(self, index: int) -> tuple[float, float]:
        """The coordinate of sample `index`: near a random city of a random country."""
        rng = np.random.default_rng([self.seed, 104729, int(index)])
        c = int(rng.integers(self.n_regions))
        k = int(rng.integers(self.city.shape[1]))
        v = self.city[c, k] + rng.normal(scale=self.spread_km / EARTH_KM, size=3)
        lat, lon = _latlon(v)
        return float(lat), float(lon)

    def sample(self, index: int, size: int | None = None, source: str = "synthetic") -> Sample:
        lat, lon = self.location(index)
        c, r, k, d = where = self.locate(lat, lon)
        img = self.render(lat, lon, np.random.default_rng([self.seed, 15485863, int(index)]), size, where)
        labels = {"country": self.country_names[c[0]], "region": self.region_names[c[0]][r[0]],
                  "city": self.city_names[c[0]][k[0]]}
        return Sample(id=f"synthetic-{self.seed}-{index}", image=img, lat=lat, lon=lon,
                      labels=labels, source=source)

    # -- rendering -----------------------------------------------------------------------

    def _noise_bank(self, size: int) -> np.ndarray:
        if size not in self._noise:
            rng = np.random.default_rng([self.seed, size, 31])
            self._noise[size] = rng.normal(0, 1, size=(2 * size, 2 * size, 3)).astype(np.float32)
        return self._noise[size]

    def render(self, lat: float, lon: float, rng: np.random.Generator, size: int | None = None,
               where: tuple | None = None) -> Image.Image:
        """The image at (lat, lon); `rng` draws the per-image jitter; `where` = locate(lat, lon) if known."""
        out_size = int(size or self.image_size)
        # Cues are coarse by design, so paint at <= RENDER_MAX px and let PIL upsample:
        # keeps 224 px at > 500 images/s on one core.
        S = min(out_size, RENDER_MAX)
        c_, r_, _, dcity = where if where is not None else self.locate(lat, lon)
        c, r = int(c_[0]), int(r_[0])
        look = self.looks[c]
        if self.twin[c] >= 0 and look.app_lat != self.centre_lat[c]:
            app_lat = look.app_lat + (lat - self.centre_lat[c])  # a twin shows its partner's band
        else:
            app_lat = lat
        hemi = 1.0 if app_lat >= 0 else -1.0
        a = min(abs(float(app_lat)), 90.0)
        diff = self.difficulty
        urban = float(np.exp(-((dcity[0] / max(self.spread_km, 1.0)) ** 2)))

        y = (np.arange(S, dtype=np.float32) + 0.5)[:, None] / S  # (S,1)
        x = (np.arange(S, dtype=np.float32) + 0.5)[None, :] / S  # (1,S)
        img = np.empty((S, S, 3), np.float32)
        # Light level and a per-image colour cast, applied to every colour before painting.
        gain = (float(_interp_rows(a, _LIGHT[:, None])[0]) * rng.uniform(0.9, 1.1)
                * rng.uniform(1 - 0.06 * (0.5 + diff), 1 + 0.06 * (0.5 + diff), 3)).astype(np.float32)

        h = look.horizon + rng.uniform(-0.04, 0.04)
        hr = int(h * S)
        # Sky: vertical gradient from the latitude band; the light side follows the hemisphere.
        t = (y[:hr, 0] / max(h, 1e-3))[:, None]
        sky = (_interp_rows(a, _SKY_TOP) * (1 - t) + _interp_rows(a, _SKY_LOW) * t) * gain  # (hr,3)
        side = 1.0 + 0.22 * hemi * (0.5 - x[0])  # (S,)
        img[:hr] = sky[:, None, :] * side[None, :, None]
        # Ground: vegetation colour from the band, shifted by the country's aridity.
        g = _interp_rows(a, _GROUND)
        g = (g * (1 - 0.35 * look.aridity) + np.array([190, 170, 110], np.float32) * 0.35 * look.aridity) * gain
        tg = ((y[hr:, 0] - h) / (1 - h))[:, None]
        img[hr:] = (g * (1.0 - 0.35 * tg))[:, None, :]

        # Buildings: a skyline above the horizon, taller and denser near a city.
        # (Fixed-size draws: the rng stream must not depend on the location, so twins and
        # neighbours differ only where the world says they do.)
        n_b = int(4 + 10 * urban) + int(rng.integers(0, 4))
        edges = np.sort(rng.uniform(0, 1, 18)[:n_b])
        heights = rng.uniform(0.03, 0.08, 18)[:n_b] + (0.05 + 0.25 * urban) * rng.uniform(0.4, 1.0, 18)[:n_b]
        present = rng.uniform(0, 1, 18)[:n_b] < (0.35 + 0.6 * urban)
        col_idx = np.searchsorted(edges, x[0]) - 1
        ci = np.maximum(col_idx, 0)
        col_h = np.where((col_idx >= 0) & present[ci], heights[ci], 0.0)
        bmask = (y[:hr] > (h - col_h)[None, :])  # (hr,S)
        bcol = np.minimum(np.maximum(look.building + self.region_tint[self.look_owner[c], r], 0), 255) * gain
        shade = (0.8 + 0.2 * ((ci % 3) / 2.0)).astype(np.float32)  # facades differ
        bimg = bcol[None, None, :] * shade[None, :, None]
        np.copyto(img[:hr], np.broadcast_to(bimg, (hr, S, 3)), where=bmask[..., None])

        # Road: a trapezoid to a vanishing point that moves with the camera yaw.
        vx = 0.5 + rng.uniform(-0.12, 0.12)
        yy = y[hr:]  # (R,1)
        p = (yy - h) / (1 - h)  # 0 at horizon, 1 at the bottom
        centre = vx + (0.5 - vx) * p
        half = 0.015 + 0.42 * p
        dx = np.abs(x - centre)  # (R,S)
        road = dx < half
        ground = img[hr:]
        np.copyto(ground, look.road * gain, where=road[..., None])
        lw = 0.004 + 0.014 * p
        style = look.marking_style
        if style:
            if style == 3:
                mark = np.abs(dx - 2.2 * lw) < lw
            else:
                mark = dx < lw
            if style == 2:  # perspective dashes: equal spacing in ground distance ~ 1/p
                mark &= np.sin(3.0 / (p + 0.02) + rng.uniform(0, 6.28)) > 0
            np.copyto(ground, look.marking * gain, where=(mark & road)[..., None])
        if look.edge_lines:
            edge = (np.abs(dx - 0.9 * half) < 0.7 * lw) & road
            np.copyto(ground, 235 * gain, where=edge[..., None])

        # Sign: country shape/colours on the driving side; a 2x2 region code inside.
        if rng.uniform() >= 0.05 + 0.5 * diff:
            self._draw_sign(img, look, self.region_code[r], rng, h, vx, S, gain)

        # Sensor noise (per image).
        bank = self._noise_bank(S)
        oy, ox = rng.integers(0, S, 2)
        img += bank[oy:oy + S, ox:ox + S] * (3.0 + 14.0 * diff)
        np.clip(img, 0, 255, out=img)
        im = Image.fromarray(img.astype(np.uint8), "RGB")
        return im if S == out_size else im.resize((out_size, out_size), Image.NEAREST)

    def _draw_sign(self, img, look: _Look, code, rng, h, vx, S, gain) -> None:
        size = rng.uniform(0.17, 0.22)  # ~20-25 px at 112 px: the region code must survive 14 px patches
        cx = (0.14 if look.left_side else 0.86) + rng.uniform(-0.04, 0.04)
        cy = h + rng.uniform(-0.08, 0.0)
        x0, x1 = int((cx - size / 2) * S), int((cx + size / 2) * S)
        y0, y1 = int((cy - size / 2) * S), int((cy + size / 2) * S)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, S), min(y1, S)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return
        # Pole below the sign.
        px0, px1 = int((cx - 0.008) * S), max(int((cx + 0.008) * S), int((cx - 0.008) * S) + 1)
        img[y1:min(int((cy + 0.25) * S), S), px0:px1] = np.array([110, 110, 115], np.float32) * gain
        v = (np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5) / S - cy  # local coords, -size/2..size/2
        u = (np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5) / S - cx
        s = size / 2
        shape = look.sign_shape
        if shape == 0:
            inner = np.sqrt(u**2 + v**2) / s
        elif shape == 1:  # upward equilateral triangle, inradius s/2: max over its 3 edges
            inner = np.maximum(2 * v / s, 2 * (0.866 * np.abs(u) - 0.5 * v) / s)
        elif shape == 2:
            inner = np.maximum(np.abs(u), np.abs(v)) / s * 1.05
        else:
            inner = (np.abs(u) + np.abs(v)) / s
        patch = img[y0:y1, x0:x1]
        np.copyto(patch, look.sign_border * gain, where=(inner < 1.0)[..., None])
        np.copyto(patch, look.sign_fill * gain, where=(inner < 0.78)[..., None])
        # Region code: 2x2 cells in the middle of the sign.
        cell = s * 0.42
        for b in range(4):
            if code[b]:
                qu = (-0.5 if b % 2 == 0 else 0.5) * cell * 1.1
                qv = (-0.5 if b < 2 else 0.5) * cell * 1.1
                m = (np.abs(u - qu) < cell * 0.45) & (np.abs(v - qv) < cell * 0.45)
                np.copyto(patch, np.float32(15), where=m[..., None])


@functools.lru_cache(maxsize=16)
def cached_world(seed: int = 0, n_regions: int = 16, image_size: int = 112, difficulty: float = 0.3,
                 ambiguity: float = 0.0, subregions: int = 4, cities: int = 6) -> SyntheticWorld:
    """Worlds are cheap (~0.1 s) but streams, geocoders and evals share one per parameter set."""
    return SyntheticWorld(seed=seed, n_regions=n_regions, image_size=image_size, difficulty=difficulty,
                          ambiguity=ambiguity, subregions=subregions, cities=cities)
