import numpy as np
import pytest

from geospot.data.synthetic import EARTH_KM, SyntheticWorld, _latlon


def test_world_is_deterministic_and_samples_differ():
    a, b = SyntheticWorld(seed=3, n_regions=8), SyntheticWorld(seed=3, n_regions=8)
    assert a.country_names == b.country_names
    np.testing.assert_array_equal(a.centres, b.centres)
    s1, s2 = a.sample(5), b.sample(5)
    assert (s1.id, s1.lat, s1.lon, s1.labels) == (s2.id, s2.lat, s2.lon, s2.labels)
    np.testing.assert_array_equal(np.asarray(s1.image), np.asarray(s2.image))
    assert not np.array_equal(np.asarray(a.sample(6).image), np.asarray(s1.image))
    assert SyntheticWorld(seed=4, n_regions=8).country_names != a.country_names


def test_same_location_never_gives_identical_pixels():
    w = SyntheticWorld(seed=0, n_regions=8)
    im1 = np.asarray(w.render(10.0, 20.0, np.random.default_rng(1)))
    im2 = np.asarray(w.render(10.0, 20.0, np.random.default_rng(2)))
    assert im1.shape == (112, 112, 3) and not np.array_equal(im1, im2)


def test_image_sizes():
    w = SyntheticWorld(seed=0, n_regions=4, image_size=224)
    assert w.sample(0).image.size == (224, 224)
    assert w.sample(0, size=64).image.size == (64, 64)


def test_geocoder_matches_sample_labels_and_centres():
    w = SyntheticWorld(seed=1, n_regions=12)
    samples = [w.sample(i) for i in range(30)]
    labels = w.geocoder([s.lat for s in samples], [s.lon for s in samples])
    for s, g in zip(samples, labels):
        assert (g.country, g.region, g.city) == (s.labels["country"], s.labels["region"], s.labels["city"])
    clat, clon = _latlon(w.centres)
    assert [g.country for g in w.geocoder(clat, clon)] == w.country_names
    # Unparsed predictions (NaN) get empty labels instead of a wrong country.
    g = w.geocoder([np.nan, clat[0]], [0.0, clon[0]])
    assert g[0].country == "" and g[1].country == w.country_names[0]


def test_samples_cover_countries_and_stay_near_cities():
    w = SyntheticWorld(seed=0, n_regions=8)
    lats, lons = zip(*(w.location(i) for i in range(400)))
    c, _, _, d_km = w.locate(lats, lons)
    assert set(c.tolist()) == set(range(8))
    assert np.median(d_km) < 3 * w.spread_km


def test_country_changes_the_look():
    """Two countries' images differ in road colour more than two images of one country."""
    w = SyntheticWorld(seed=0, n_regions=6, difficulty=0.0)
    by_country: dict[int, list] = {}
    for i in range(120):
        s = w.sample(i)
        c = w.country_names.index(s.labels["country"])
        by_country.setdefault(c, []).append(np.asarray(s.image, np.float32)[100:, 40:72].mean((0, 1)))
    means = {c: np.mean(v, 0) for c, v in by_country.items() if len(v) >= 3}
    within = np.mean([np.abs(np.asarray(v) - means[c]).mean() for c, v in by_country.items() if c in means])
    keys = list(means)
    between = np.mean([np.abs(means[a] - means[b]).mean() for a in keys for b in keys if a < b])
    assert between > 2 * within


def test_ambiguity_twins_are_far_apart_and_look_alike():
    w = SyntheticWorld(seed=2, n_regions=10, ambiguity=0.4, difficulty=0.0)
    pairs = [(a, int(b)) for a, b in enumerate(w.twin) if b > a]
    assert len(pairs) == 2
    for a, b in pairs:
        assert w.looks[a] is w.looks[b]
        d = np.arccos(np.clip(w.centres[a] @ w.centres[b], -1, 1)) * EARTH_KM
        assert d >= 5000
    a, b = pairs[0]
    other = next(c for c in range(10) if w.twin[c] < 0)
    (la, lo), (lb, lob), (lc, loc) = (_latlon(w.centres[k]) for k in (a, b, other))
    img = lambda lat, lon: np.asarray(w.render(float(lat), float(lon), np.random.default_rng(0)), np.float32)
    twin_diff = np.abs(img(la, lo) - img(lb, lob)).mean()
    other_diff = np.abs(img(la, lo) - img(lc, loc)).mean()
    assert twin_diff < 0.5 * other_diff
    assert SyntheticWorld(seed=2, n_regions=10).twin.max() == -1


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="difficulty"):
        SyntheticWorld(difficulty=2.0)


@pytest.mark.slow
def test_country_is_learnable_from_pixels():
    """A tiny conv net on 56 px thumbnails learns the country far above chance in seconds:
    the cue a ~1M-param VLM at 112 px has to pick up."""
    import torch

    torch.manual_seed(0)
    w = SyntheticWorld(seed=0, n_regions=8, difficulty=0.3)
    samples = [w.sample(i, size=56) for i in range(1400)]
    x = torch.tensor(np.stack([np.asarray(s.image) for s in samples]), dtype=torch.float32).permute(0, 3, 1, 2) / 255
    y = torch.tensor([w.country_names.index(s.labels["country"]) for s in samples])
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 5, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(512, 8),
    )
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _epoch in range(12):
        for i in range(0, 1200, 64):
            loss = torch.nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    acc = (net(x[1200:]).argmax(1) == y[1200:]).float().mean().item()
    assert acc > 0.6  # chance is 0.125
