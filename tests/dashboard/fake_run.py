"""An RL-shaped run for dashboard tests: G rollouts per image, telescoping turns whose
guesses tighten around the truth as training goes on (coarse -> refine -> final)."""

from __future__ import annotations

import math
import random

from PIL import Image

from geospot.runs.writer import ImageRecord, RolloutRecord

PLACES = [("paris", 48.86, 2.35), ("nairobi", -1.29, 36.82), ("lima", -12.05, -77.04),
          ("tokyo", 35.68, 139.69), ("sydney", -33.87, 151.21), ("anchorage", 61.22, -149.9)]


def haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(min(1.0, a)))


def street_scene(k: int) -> Image.Image:
    """A 96x72 stand-in photo: sky, ground, a road and a house, coloured per place."""
    from PIL import ImageDraw

    img = Image.new("RGB", (96, 72), (110 + 20 * k % 100, 160, 220))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 40, 96, 72), fill=(70 + 25 * k % 120, 120 - 10 * k, 60))
    d.polygon([(40, 72), (56, 72), (50, 40), (46, 40)], fill=(60, 60, 65))
    d.rectangle((8 + 8 * k, 24, 30 + 8 * k, 42), fill=(200 - 20 * k, 170, 140))
    d.polygon([(6 + 8 * k, 24), (32 + 8 * k, 24), (19 + 8 * k, 14)], fill=(150, 50 + 20 * k, 40))
    return img


def image_records(step: int, total: int, *, G: int = 8, turns: int = 3, n_images: int = 6, seed: int = 0,
                  text: str | None = None) -> list[ImageRecord]:
    rng = random.Random(seed * 1000 + step)
    spread = 40.0 * (1 - step / max(1, total)) + 0.5  # degrees: guesses tighten over training
    records = []
    for k, (name, lat, lon) in enumerate(PLACES[:n_images]):
        rollouts = []
        for _g in range(G):
            guesses, dists = [], []
            for t in range(turns):
                s = spread / (t + 1)
                glat = max(-89.0, min(89.0, lat + rng.gauss(0, s)))
                glon = (lon + rng.gauss(0, s) + 180) % 360 - 180
                guesses.append((round(glat, 4), round(glon, 4)))
                dists.append(haversine(lat, lon, glat, glon))
            body = "\n---\n".join(f"Latitude: {a}\nLongitude: {b}" for a, b in guesses)
            rollouts.append(RolloutRecord(
                text=text if text is not None else body, guesses=tuple(guesses), distance_km=dists[-1],
                reward=math.exp(-dists[-1] / 500), turn_distances_km=tuple(dists),
                turn_rewards=tuple(math.exp(-d / 500) for d in dists)))
        img = street_scene(k)
        records.append(ImageRecord(image_id=f"{name}-{k}", lat=lat, lon=lon, rollouts=tuple(rollouts), image=img,
                                   labels={"country": name}))
    return records


def step_metrics(step: int, total: int) -> dict[str, float]:
    f = step / max(1, total)
    return {"reward_mean": 0.1 + 0.6 * f, "median_km": 3000 * (1 - f) + 30, "acc_25km": 0.4 * f,
            "acc_200km": 0.6 * f, "acc_750km": 0.8 * f, "tau_km": 2000 * (1 - f) + 25, "format_rate": 0.7 + 0.3 * f,
            "turn_1_km": 3000 * (1 - f) + 300, "turn_2_km": 2000 * (1 - f) + 100, "turn_3_km": 1500 * (1 - f) + 30}


def fill(writer, steps: int = 10, *, image_every: int = 2, start: int = 0, **kw) -> None:
    """Write `steps` steps (metrics each step, images every `image_every`) through any RunWriter."""
    if start == 0:
        # reward=kernel: it logs tau_km (telescoping's reward=auto would be the GeoScore, no τ)
        writer.log_config("rl", {"model_name": "tiny:qwen2_5_vl:tiny", "group_size": 8, "env_type": "telescoping",
                                 "reward": "kernel"})
        writer.set_status("running")
    for s in range(start, start + steps):
        writer.log_step(s, step_metrics(s, 20))
        if s % image_every == 0:
            writer.log_images(s, image_records(s, 20, **kw))
